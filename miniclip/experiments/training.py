"""Short training runs for experiments, built from the package's own `Trainer` and data stream.

`Trainer.run()` is the right tool for a run whose checkpoint is kept (the encoder variants). The other
experiments need two things it does not offer: a zero-shot evaluation at chosen points along the run (to draw
curves against samples seen), and a say over the batches (to corrupt captions). So they drive the same
`Trainer` one step at a time, with its own `train_step` and `optimizer_step`: the model, optimizer groups,
learning-rate schedule, temperature clamp and loss are exactly those of a normal run.
"""

from __future__ import annotations

import tempfile
import time
from typing import Callable, Iterator

from tqdm.auto import tqdm

from miniclip.config import Config
from miniclip.data.loaders import train_batches
from miniclip.tokenizer import tokenize
from miniclip.train.trainer import Trainer, TrainingDiverged


def eval_points(steps: int, n: int) -> list[int]:
    """`n` + 1 evenly spaced steps from 0 (the model at initialisation) to `steps`, without repeats."""
    return sorted({round(i * steps / n) for i in range(n + 1)})


def train_contrastive(config: Config, *, batches: Iterator | None = None, evaluate: Callable | None = None,
                      eval_steps: list[int] = (), progress: bool = True, desc: str | None = None) -> dict:
    """Train a CLIP for `config.optim.steps` steps; evaluate it at `eval_steps` with `evaluate(model)`.

    `batches` (default: the config's own training stream) yields (images, captions). Returns the model, the
    curve (one dict per evaluation, with `step`, `samples` and the mean training loss since the previous
    point), the final validation metrics (the trainer's own `Validator`) and the wall time."""
    with tempfile.TemporaryDirectory() as tmp:  # nothing is saved: the trainer only needs a directory
        trainer = Trainer(config, tmp, progress=False)
    batches = batches if batches is not None else train_batches(config)
    context, batch_size = config.model.context_length, config.optim.batch_size
    curve, losses, t0 = [], [], time.time()

    def record():
        point = {"step": trainer.step, "samples": trainer.step * batch_size,
                 "train_loss": sum(losses) / len(losses) if losses else None}
        if evaluate is not None:
            point.update(evaluate(trainer.model))
        curve.append(point)
        losses.clear()

    if 0 in eval_steps:
        record()
    for _ in tqdm(range(config.optim.steps), desc=desc or config.name, disable=not progress, dynamic_ncols=True):
        images, captions = next(batches)
        loss = trainer.train_step(images, tokenize(captions, context))  # moved to the model's device there
        trainer.optimizer_step(loss)
        trainer.step += 1
        losses.append(loss.item())
        if trainer.bad_in_a_row >= config.train.max_bad_steps:
            raise TrainingDiverged(f"{config.name}: {trainer.bad_in_a_row} non-finite losses in a row at step "
                                   f"{trainer.step}; lower optim.lr")
        if trainer.step in eval_steps:
            record()
    val = trainer.validator(trainer.model) if trainer.validator is not None else {}
    return {"model": trainer.model.eval(), "curve": curve, "val": val, "wall_s": time.time() - t0,
            "bad_steps": trainer.bad_steps}
