"""`make gpu-check`: the one script a machine with a GPU runs (in under ~8 minutes) to check what CPU sessions
cannot: the test suite with CUDA present, a 200-step run of the gpu book's Shapes model, the training step of
ViT-B/32 (224 px, bf16, batch 256) against open_clip's on the same weights, what each of the trainer's speed
items buys (`bench speed-items`), and a 50-step rehearsal of the 1M-pair config on shards written here. Each
stage runs in its own process with a time limit, so one failure does not hide the others; the results go to
one JSON summary, `runs/bench/gpu-check.json`.

The goals it checks are issue-sized, not universal: ours ≥ 1.2x open_clip's samples/s at ViT-B/32 bf16 batch
256, and the gpu-1m step's peak memory ≤ 12 GB at batch ≥ 256.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from miniclip.bench.results import RESULTS_DIR, write_results
from miniclip.data.shapes import ShapesConfig, ShapesWorld
from miniclip.data.shards import write_shards
from miniclip.env import ROOT, machine
from miniclip.errors import UsageError
from miniclip.train.runs import read_metrics

WORK = ROOT / "runs" / "gpu-check"
SPEEDUP_GOAL = 1.2
PEAK_MEMORY_GOAL_MB = 12 * 1024


@dataclass
class Stage:
    """One check: a command (run in a fresh process, under `timeout_s`) or a function, and what to read back."""

    name: str
    command: list[str] | Callable[[], dict]
    timeout_s: int
    read: Callable[[str], dict] = field(default=lambda output: {})


def last_json_line(output: str) -> dict:
    """The JSON object a `--json` command prints on its last line."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def run_metrics(run: Path) -> dict:
    """What a short training run tells: its last logged step's loss, samples/s and peak memory."""
    steps, _ = read_metrics(run)
    last = steps[-1]
    return {"steps_logged": len(steps), "loss": last["loss"], "samples_per_s": last["samples_per_s"],
            "peak_memory_mb": max(s["peak_memory_mb"] for s in steps)}


def step_bench_summary(output: str) -> dict:
    """ViT-B/32's step: samples/s of both contenders, the speedup (median of per-round ratios) and peak memory."""
    runs = last_json_line(output).get("runs", [])
    if not runs:
        return {}
    r = runs[0]
    contenders = r.get("contenders", {})
    return {"batch_size": r.get("batch_size"), "precision": r.get("precision"),
            "samples_per_s": {k: v.get("samples_per_s") for k, v in contenders.items()},
            "speedup_over_open_clip": r.get("speedup", {}).get("median"),
            "cuda_max_allocated_mb": r.get("cuda_max_allocated_mb")}


def speed_items_summary(output: str) -> dict:
    """`bench speed-items --json`: each run's samples/s as a ratio to the all-on run's."""
    rows = last_json_line(output).get("rows", [])
    return {"ratio_to_all_on": {row["item"]: round(row["ratio_to_all_on"], 3) for row in rows},
            "all_on_samples_per_s": rows[0]["samples_per_s"] if rows else None}


def write_rehearsal_shards(out: Path, n: int = 2048, image_size: int = 224) -> dict:
    """Shards of `n` Shapes pictures with their captions: the rehearsal's stand-in for the web subset, made
    here from nothing that needs downloading."""
    world = ShapesWorld(ShapesConfig(image_size=image_size))

    def samples():
        for start in range(0, n, 256):
            batch = world.render(range(start, min(n, start + 256)))
            for image, caption in zip(batch.images, batch.captions):
                yield image, caption

    return write_shards(samples(), out, shard_size=512)


def stages(python: str = sys.executable) -> list[Stage]:
    m = [python, "-m", "miniclip"]
    shards = WORK / "shards"
    return [
        Stage("tests", [python, "-m", "pytest", "-q", "-x", "tests", "-p", "no:cacheprovider"], 300,
              lambda out: {"summary": out.strip().splitlines()[-1] if out.strip() else ""}),
        Stage("train_gpu_shapes_200", m + ["train", "--config", "configs/gpu-shapes.yaml", "--out",
                                           str(WORK / "shapes"), "--set", "optim.steps=200", "--set",
                                           "optim.warmup_steps=20", "--set", "train.val_every=200", "--set",
                                           "train.save_every=200", "--set", "data.zeroshot_size=500"], 240,
              lambda out: run_metrics(WORK / "shapes")),
        Stage("bench_vit_b32_bf16_256", m + ["bench", "model", "--device", "cuda", "--arch", "ViT-B-32-quickgelu",
                                             "--precision", "bf16", "--batch-size", "256", "--rounds", "10",
                                             "--json"], 240, step_bench_summary),
        Stage("speed_items", m + ["bench", "speed-items", "--device", "cuda", "--config", "configs/gpu-shapes.yaml",
                                  "--steps", "40", "--json"], 300, speed_items_summary),
        Stage("write_rehearsal_shards", lambda: write_rehearsal_shards(shards), 120),
        Stage("rehearsal_gpu_1m_50", m + ["train", "--config", "configs/gpu-1m.yaml", "--out", str(WORK / "web1m"),
                                          "--set", f"data.dataset=shards:{shards}", "--set", "optim.steps=50",
                                          "--set", "optim.warmup_steps=5", "--set", "data.zeroshot=none",
                                          "--set", "train.val_every=50", "--set", "train.save_every=50"], 240,
              lambda out: run_metrics(WORK / "web1m")),
    ]


def run_stage(stage: Stage) -> dict:
    """Run one stage; a failure or a timeout is recorded with the end of its output, never raised."""
    t0 = time.perf_counter()
    record: dict = {"name": stage.name}
    try:
        if callable(stage.command):
            record.update(stage.command(), ok=True)
        else:
            record["command"] = " ".join(stage.command)
            done = subprocess.run(stage.command, cwd=ROOT, capture_output=True, text=True, timeout=stage.timeout_s)
            output = done.stdout + done.stderr
            record.update(rc=done.returncode, ok=done.returncode == 0)
            if record["ok"]:
                record.update(stage.read(done.stdout))
            else:
                record["output_tail"] = output[-2000:]
    except subprocess.TimeoutExpired as e:
        tail = (e.stdout or b"")[-2000:]
        record.update(ok=False, error=f"timed out after {stage.timeout_s} s",
                      output_tail=tail.decode(errors="replace") if isinstance(tail, bytes) else tail)
    except Exception as e:  # noqa: BLE001 -- one failing stage must not lose the others' results
        record.update(ok=False, error=f"{type(e).__name__}: {e}")
    record["wall_s"] = time.perf_counter() - t0
    print(f"{stage.name}: {'ok' if record['ok'] else 'FAILED'} in {record['wall_s']:.0f} s", flush=True)
    return record


def goals(results: dict[str, dict]) -> dict:
    """The issue's two goals, each with the measured value (None where its stage failed)."""
    speedup = results.get("bench_vit_b32_bf16_256", {}).get("speedup_over_open_clip")
    memory = results.get("rehearsal_gpu_1m_50", {}).get("peak_memory_mb")
    return {"speedup_vs_open_clip": {"measured": speedup, "goal": SPEEDUP_GOAL,
                                     "met": speedup is not None and speedup >= SPEEDUP_GOAL},
            "gpu_1m_peak_memory_mb": {"measured": memory, "goal": PEAK_MEMORY_GOAL_MB,
                                      "met": memory is not None and memory <= PEAK_MEMORY_GOAL_MB}}


def run_gpu_check(selected: list[Stage] | None = None, require_cuda: bool = True,
                  out_dir: Path | None = RESULTS_DIR) -> dict:
    """Every stage in order, then the summary (written to `out_dir`/gpu-check.json)."""
    if require_cuda and not torch.cuda.is_available():
        raise UsageError("make gpu-check needs a CUDA GPU, and torch sees none here (on a CPU machine run "
                         "make test)")
    t0 = time.perf_counter()
    records = [run_stage(stage) for stage in (selected if selected is not None else stages())]
    summary = {"environment": machine(), "stages": records, "ok": all(r["ok"] for r in records),
               "goals": goals({r["name"]: r for r in records}), "wall_s": time.perf_counter() - t0}
    if out_dir is not None:
        summary["path"] = str(write_results(summary, out_dir, "gpu-check.json"))
    return summary
