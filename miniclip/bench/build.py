"""Build times: how long `pytest --nbval notebooks` takes (ci profile), and, asked for (`--book`), what `make
book` spends its time on, stage by stage: the install, each book model, each experiment, the executed book and
each of its chapters, then a rebuild with nothing changed. Recorded, never gated: a failing stage is noted and
the next one still runs.

The stages are the commands `make book` itself runs, one at a time: `make train` is one `train --if-changed` per
model config (the Makefile's list, read with `make print-models`), `make experiments` one `experiments NAME` per
experiment, and the final `make book` then finds both done and spends its time executing the chapters. In a
fresh clone the sum is what `make book` costs; in a checkout that already built, the cached stages take seconds.
Chapter times are jupyter-cache's own records (the seconds each notebook's execution took in this build).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timezone
from pathlib import Path

from miniclip.bench.results import RESULTS_DIR, write_results
from miniclip.env import ROOT, machine
from miniclip.experiments.registry import EXPERIMENTS

BOOK_CACHE = ROOT / "_build" / ".jupyter_cache"  # the cpu book's (Makefile: BOOK_BUILD)
REBUILD = "book rebuilt, nothing changed"
NOT_BOOK_STAGES = ("nbval", REBUILD)  # timed beside `make book`, not part of what it costs


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(command: list[str], log: Path | None = None, env: dict | None = None) -> dict:
    """Run `command` (with `env` added) from the repository root; its seconds, exit code and the load average
    after it. Its output goes to `log` (for long stages: readable while they run), else is kept as a tail."""
    t0 = time.perf_counter()
    env = {**os.environ, **(env or {})}
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            proc = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        tail = log.read_text(errors="replace")[-2000:]
    else:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        tail = proc.stdout[-2000:] + proc.stderr[-1000:]
    return {"command": " ".join(command), "seconds": time.perf_counter() - t0, "returncode": proc.returncode,
            "load_after": _load(), "tail": tail}


def book_models(profile: str = "cpu") -> list[str]:
    """The model configs `make train` trains for `profile`, as the Makefile lists them."""
    out = subprocess.run(["make", "-s", "print-models", f"PROFILE={profile}"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def chapter_seconds(cache_dir: Path, since: float) -> dict[str, float]:
    """Seconds each notebook took to execute, from jupyter-cache's records made after `since` (a time.time())."""
    from jupyter_cache import get_cache  # installed with jupyter-book (the book extra)

    if not cache_dir.exists():
        return {}
    records = get_cache(str(cache_dir)).list_cache_records()
    # jupyter-cache stores UTC times, which SQLite hands back without their time zone
    return {Path(r.uri).stem: r.data.get("execution_seconds", float("nan")) for r in records
            if r.created.replace(tzinfo=r.created.tzinfo or timezone.utc).timestamp() >= since - 1}


def book_stages(python: str = sys.executable, profile: str = "cpu") -> list[tuple[str, list[str]]]:
    """(name, command) for every stage of `make book`, in the order it runs them."""
    stages = [("install", ["make", "install"])]
    for config in book_models(profile):
        stages.append((f"model {Path(config).stem}", [python, "-m", "miniclip", "train", "--config", config,
                                                       "--if-changed"]))
    for name in EXPERIMENTS:
        stages.append((f"experiment {name}", [python, "-m", "miniclip", "experiments", name, "--profile", profile]))
    stages.append(("book (chapters executed)", ["make", "book", f"PROFILE={profile}"]))
    stages.append((REBUILD, ["make", "book", f"PROFILE={profile}"]))
    return stages


def run_build_bench(book: bool = False, out_dir: Path | None = RESULTS_DIR) -> dict:
    """How long the notebooks take under `pytest --nbval` (ci profile), and with `book`, each stage of `make
    book` in the cpu profile (see the module's docstring). Recorded, never gated."""
    results = {"environment": machine(), "load_at_start": _load(), "stages": {}}
    logs = (out_dir or RESULTS_DIR) / "build-logs"
    print("timing pytest --nbval notebooks (ci profile) ...", file=sys.stderr, flush=True)
    results["stages"]["nbval"] = timed([sys.executable, "-m", "pytest", "--nbval", "notebooks", "-q",
                                        "-p", "no:cacheprovider"], env={"MINICLIP_PROFILE": "ci"})
    if book:
        for name, command in book_stages():
            log = logs / (name.split(" (")[0].replace(" ", "-").replace(",", "") + ".log")
            print(f"timing {name} ... (output: {log})", file=sys.stderr, flush=True)
            started = time.time()
            stage = results["stages"][name] = timed(command, log)
            if name.startswith("book"):
                stage["chapters"] = chapter_seconds(BOOK_CACHE, started)
            print(f"  {stage['seconds']:.0f} s, exit {stage['returncode']}", file=sys.stderr, flush=True)
        results["book_total_seconds"] = sum(s["seconds"] for n, s in results["stages"].items()
                                            if n not in NOT_BOOK_STAGES)
    print(stage_table(results))
    if out_dir is not None:
        results["path"] = str(write_results(results, out_dir, "build.json"))
    return results


def stage_table(results: dict) -> str:
    """The stages (and each executed chapter) with their minutes and share of the book's total."""
    total = results.get("book_total_seconds")
    lines = [f"{'stage':<40} {'minutes':>8} {'share':>6}  exit  load after"]
    for name, s in results["stages"].items():
        share = f"{s['seconds'] / total:6.0%}" if total and name not in NOT_BOOK_STAGES else ""
        lines.append(f"{name:<40} {s['seconds'] / 60:8.1f} {share:>6}  {s['returncode']:>4}  {s['load_after']}")
        for chapter, seconds in sorted(s.get("chapters", {}).items(), key=lambda kv: -kv[1]):
            lines.append(f"  {chapter:<38} {seconds / 60:8.1f}")
    if total:
        lines.append(f"{'make book, all stages':<40} {total / 60:8.1f}")
    return "\n".join(lines)
