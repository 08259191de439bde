"""An exponential moving average (EMA) of a model's weights, the copy that is evaluated and published.

After every optimizer step each averaged tensor moves a little towards the live one:

    ema <- d * ema + (1 - d) * weight,    d = min(decay, (1 + n) / (10 + n))

where `n` counts the updates so far. The ramp in `d` lets the average follow the fast early changes (a
decay of 0.995 from step 0 would keep the random initialisation in the mix for hundreds of steps) and settle
to `decay` later, as in Tarvainen & Valpola's mean teacher and the EMA that timm and open_clip offer. The
average is a full model of its own, so validation, `final.safetensors` and everything that reads a
checkpoint use it unchanged. Integer buffers (none in CLIP today) would be copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay used for update number `updates + 1`: `min(decay, (1 + updates) / (10 + updates))`."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightAverage:
    """`WeightAverage(model, decay)`; call `.update(model)` after each optimizer step; `.model` is the average."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = ema_decay_at(self.decay, self.updates)
        live = model.state_dict()
        for name, avg in self.model.state_dict().items():
            if avg.is_floating_point():
                avg.lerp_(live[name].to(avg.dtype), 1 - d)  # avg + (1 - d) * (live - avg)
            else:
                avg.copy_(live[name])
        self.updates += 1

    def state_dict(self) -> dict:
        """What a checkpoint's training state keeps to resume the average exactly."""
        return {"updates": self.updates, "weights": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(state["weights"])
