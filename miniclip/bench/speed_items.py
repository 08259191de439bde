"""`python -m miniclip bench speed-items`: what each of the trainer's GPU speed items buys, measured by turning
it off.

The trainer's data path and step carry six speed items (see `TrainConfig`): batches in page-locked memory
copied with `non_blocking` (`train.pin_memory`), cuDNN's autotuner (`train.cudnn_benchmark`), TF32 matmuls in
fp32 runs (`train.tf32`), a thread that receives and tokenises batches while the GPU works (`train.prefetch`),
DataLoader workers (`data.num_workers`), and tokens trimmed on the host rather than after a device sync
(`train.trim_on_host`). Each is measured the same way: a short run of a real config with
everything on, then one run per item with only that item off, all in one process and on the same batches, and
the training throughput of each (samples/s over the logged windows after the first, which holds the start-up
and cuDNN's autotuning) set against the all-on run's. On the CPU every item but the workers does nothing, and
the table says so rather than reporting noise as an effect.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch

from miniclip.bench.results import RESULTS_DIR, write_results
from miniclip.config import load_config
from miniclip.env import machine
from miniclip.train.runs import read_metrics
from miniclip.train.trainer import Trainer

# (name, the override that turns it off, whether it can matter on the CPU)
ITEMS = (
    ("pinned memory + non_blocking copies", "train.pin_memory=false", False),
    ("cuDNN autotuner", "train.cudnn_benchmark=false", False),
    ("TF32 matmuls (fp32 runs)", "train.tf32=false", False),
    ("prefetch thread (tokenising off the main thread)", "train.prefetch=false", False),
    ("DataLoader workers", "data.num_workers=0", True),
    ("token trimming on the host (no device sync)", "train.trim_on_host=false", False),
)


def run_throughput(config_path: str, overrides: list[str], steps: int, log_every: int, device: str,
                   out: Path) -> dict:
    """Train `config_path` (with `overrides`) for `steps` steps into `out`, without validation or zero-shot
    checks; return its samples/s (median of the logged windows after the first) and peak memory."""
    config = load_config(config_path, [*overrides, f"optim.steps={steps}", "optim.warmup_steps=1",
                                       f"train.log_every={log_every}", f"train.val_every={steps + 1}",
                                       f"train.save_every={steps}", "data.zeroshot=none", f"train.device={device}"])
    Trainer(config, out, progress=False).run()
    logged, _ = read_metrics(out)
    rates = [r["samples_per_s"] for r in logged[1:]] or [r["samples_per_s"] for r in logged]
    return {"samples_per_s": statistics.median(rates), "windows": len(rates),
            "peak_memory_mb": max(r["peak_memory_mb"] for r in logged)}


def run_speed_items(config_path: str = "configs/gpu-shapes.yaml", steps: int = 60, log_every: int = 10,
                    device: str = "auto", num_workers: int = 2, out_dir: Path | None = RESULTS_DIR) -> dict:
    """All items on, then each off in turn, on `config_path` for `steps` steps each (with `num_workers` loader
    workers in every run but the one that measures them). Writes `speed-items-<device>.json` to `out_dir`."""
    base = [f"data.num_workers={num_workers}"]
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    with tempfile.TemporaryDirectory(prefix="speed-items-") as tmp:
        all_on = run_throughput(config_path, base, steps, log_every, device, Path(tmp) / "all-on")
        rows = [{"item": "all on", "override": "", **all_on, "ratio_to_all_on": 1.0, "matters_here": True}]
        for k, (name, override, matters_on_cpu) in enumerate(ITEMS):
            measured = run_throughput(config_path, [*base, override], steps, log_every, device, Path(tmp) / f"off-{k}")
            rows.append({"item": f"without {name}", "override": override, **measured,
                         "ratio_to_all_on": measured["samples_per_s"] / all_on["samples_per_s"],
                         "matters_here": on_cuda or matters_on_cpu})
    result = {"environment": machine(), "config": config_path, "steps": steps, "device": device,
              "num_workers": num_workers, "rows": rows}
    if out_dir is not None:
        result["path"] = str(write_results(result, out_dir, f"speed-items-{'cuda' if on_cuda else 'cpu'}.json"))
    return result


def speed_items_table(result: dict) -> list[str]:
    """The result as printable lines: each run's samples/s and its ratio to the all-on run."""
    lines = [f"{'run':<58} {'samples/s':>10} {'vs all on':>10}"]
    for row in result["rows"]:
        note = "" if row["matters_here"] else "  (does nothing on this device)"
        lines.append(f"{row['item']:<58} {row['samples_per_s']:>10.1f} {row['ratio_to_all_on']:>9.2f}x{note}")
    return lines
