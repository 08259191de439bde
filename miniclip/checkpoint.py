"""Checkpoints without pickle: weights in safetensors, everything else in JSON or a weights-only torch file.

A checkpoint `<dir>/<tag>` is three files:

- `<tag>.safetensors`: the model's weights (OpenAI/open_clip names, loadable by `build_model`);
- `<tag>.json`: the model config, the run config, the step and the last metrics;
- `<tag>.state.pt`: optimizer, gradient scaler, RNG and data position, for exact resume. It holds only
  tensors and plain Python values, so it loads with `torch.load(..., weights_only=True)`, which refuses
  to unpickle arbitrary objects.

Every file is written to a temporary name and renamed into place, so a run killed mid-save leaves the
previous checkpoint intact. The JSON is renamed last and records the step, so a half-renamed set is
detected on load instead of silently mixing two steps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from miniclip.model import CLIP, CLIPConfig


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, inconsistent or not a miniclip checkpoint."""


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | Path, tag: str, model: CLIP, *, step: int, run_config: dict | None = None,
                    metrics: dict | None = None, training_state: dict | None = None) -> Path:
    """Write `<tag>.safetensors`, `<tag>.state.pt` (if `training_state` is given) and `<tag>.json`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic(directory / f"{tag}.safetensors", lambda p: save_file(weights, str(p), metadata={"step": str(step)}))
    if training_state is not None:
        _atomic(directory / f"{tag}.state.pt", lambda p: torch.save({"step": step, **training_state}, p))
    meta = {"format": "miniclip-checkpoint-v1", "step": step, "model": dataclasses.asdict(model.config),
            "config": run_config, "metrics": metrics or {}}
    _atomic(directory / f"{tag}.json", lambda p: p.write_text(json.dumps(meta, indent=2)))
    return directory / f"{tag}.safetensors"


def _paths(path: str | Path) -> tuple[Path, Path, Path]:
    """Accept `dir/tag`, `dir/tag.safetensors` or `dir/tag.json`."""
    path = Path(path)
    stem = path.name.removesuffix(".safetensors").removesuffix(".json")
    base = path.with_name(stem)
    return base.with_suffix(".safetensors"), base.with_suffix(".json"), path.with_name(f"{stem}.state.pt")


def read_metadata(path: str | Path) -> dict:
    _, meta_path, _ = _paths(path)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"no checkpoint metadata at {meta_path}") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{meta_path} is not valid JSON ({e}); the checkpoint is corrupt") from e
    if meta.get("format") != "miniclip-checkpoint-v1" or "model" not in meta:
        raise CheckpointError(f"{meta_path} is not a miniclip checkpoint")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> CLIP:
    """Rebuild the model from `<tag>.json`'s config and load `<tag>.safetensors` strictly."""
    weights_path, _, _ = _paths(path)
    meta = read_metadata(path)
    fields = {f.name for f in dataclasses.fields(CLIPConfig)}
    model_cfg = dict(meta["model"])
    if isinstance(model_cfg.get("vision_layers"), list):
        model_cfg["vision_layers"] = tuple(model_cfg["vision_layers"])
    model = CLIP(CLIPConfig(**{k: v for k, v in model_cfg.items() if k in fields}))
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            saved_step = (f.metadata() or {}).get("step")
        state = load_file(str(weights_path), device=str(device))
    except FileNotFoundError as e:
        raise CheckpointError(f"no weights at {weights_path}") from e
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise CheckpointError(f"cannot read {weights_path}: {e}") from e
    if saved_step is not None and int(saved_step) != meta["step"]:
        raise CheckpointError(f"{weights_path} is at step {saved_step} but its metadata says {meta['step']}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights_path} does not match its config: {e}") from e
    return model.to(device).eval()


def load_training_state(path: str | Path) -> dict:
    """The optimizer/RNG/data state saved beside the weights, loaded with weights_only=True."""
    _, _, state_path = _paths(path)
    meta = read_metadata(path)
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"no training state at {state_path}") from e
    except Exception as e:
        raise CheckpointError(f"cannot read {state_path}: {e}") from e
    if state.get("step") != meta["step"]:
        raise CheckpointError(f"{state_path} is at step {state.get('step')} but its metadata says {meta['step']}")
    return state
