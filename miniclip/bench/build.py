"""Build times: how long `pytest --nbval notebooks` (and, asked for, `make book`) take. Recorded, never gated."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from miniclip.bench.results import RESULTS_DIR, write_results
from miniclip.env import machine


def _timed(command: list[str], env: dict | None = None) -> dict:
    """Run `command` with `env` added to the environment: its seconds, exit code and the tail of its output."""
    t0 = time.perf_counter()
    proc = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    return {"command": " ".join(command), "seconds": time.perf_counter() - t0, "returncode": proc.returncode,
            "tail": proc.stdout[-2000:] + proc.stderr[-1000:]}


def run_build_bench(book: bool = False, out_dir: Path | None = RESULTS_DIR) -> dict:
    """How long the notebooks take under `pytest --nbval` (ci profile), and with `book`, `make book`'s stages
    (the cpu profile: install check, then the executed book). Recorded, never gated: a failure is noted."""
    results = {"environment": machine(), "stages": {}}
    print("timing pytest --nbval notebooks (ci profile) ...", flush=True)
    results["stages"]["nbval"] = _timed([sys.executable, "-m", "pytest", "--nbval", "notebooks", "-q",
                                         "-p", "no:cacheprovider"], {"MINICLIP_PROFILE": "ci"})
    if book:
        print("timing make book (cpu profile) ...", flush=True)
        results["stages"]["make install"] = _timed(["make", "install"])
        results["stages"]["jupyter-book build (cpu)"] = _timed(
            [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "-W", "--keep-going"],
            {"MINICLIP_PROFILE": "cpu"})
    for name, stage in results["stages"].items():
        print(f"{name:<28} {stage['seconds']:8.1f} s  (exit {stage['returncode']})")
    if out_dir is not None:
        results["path"] = str(write_results(results, out_dir, "build.json"))
    return results
