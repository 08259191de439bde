"""Run directories, and "train unless a finished run with the same config exists".

The command line (`train --if-changed`), `make train`, the experiments and the book all go through
`train_if_changed`, so "up to date" means one thing everywhere: the run's `final` checkpoint records exactly
this config (an option added since it was saved counts at its default). A run whose `last` checkpoint records
it (one that was stopped) is resumed; anything else is trained from scratch.
"""

from __future__ import annotations

import json
from pathlib import Path

from miniclip.checkpoint import CheckpointError, verify_checkpoint
from miniclip.config import Config, changed_sections
from miniclip.env import runs_dir
from miniclip.train.trainer import Trainer


def run_dir(config: Config, out: str | Path | None = None) -> Path:
    """`runs/<profile>/<name>/` unless `out` (the CLI's `--out`) says otherwise."""
    return Path(out) if out else runs_dir(config.profile) / config.name


def trained_with(checkpoint: Path, config: Config) -> bool:
    """Whether the checkpoint `checkpoint` (a path without suffix, e.g. `<run>/final`) records exactly `config`
    and is whole (a damaged one is not up to date: it is trained again)."""
    try:
        saved = verify_checkpoint(checkpoint)["config"]
    except CheckpointError:
        return False
    return not changed_sections(saved, config)


def train_if_changed(config: Config, out: str | Path | None = None, *, progress: bool = True) -> dict:
    """Train `config` into `out` (default `run_dir(config)`) unless its `final` checkpoint has this exact config.

    Returns the trainer's result (`status`, `step`, …) plus `out`; a run that was already up to date has
    status "up to date" and trains nothing."""
    out = run_dir(config, out)
    if trained_with(out / "final", config):
        return {"status": "up to date", "step": config.optim.steps, "out": str(out)}
    resume = trained_with(out / "last", config)
    result = Trainer(config, out, resume=resume, progress=progress).run()
    return {**result, "out": str(out)}


def read_metrics(run: str | Path) -> tuple[list[dict], list[dict]]:
    """A run's metrics.jsonl split into (training-step records, validation records)."""
    records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if "kind" not in r], [r for r in records if r.get("kind") == "val"]
