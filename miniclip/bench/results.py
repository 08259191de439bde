"""Where the benchmarks' results go: one JSON file per benchmark under `RESULTS_DIR` (runs/bench/)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from miniclip.env import git_commit

RESULTS_DIR = Path("runs/bench")


def write_results(results: dict, out_dir: Path, name: str) -> Path:
    """Write `results` as indented JSON to `out_dir`/`name` (values JSON cannot hold, such as paths, as strings)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


def finished_stamp() -> dict:
    """When a benchmark finished (UTC) and from what code, so that a committed copy of its JSON says what it
    measured."""
    return {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit()}
