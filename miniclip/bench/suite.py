"""The whole suite: `python -m miniclip bench all` runs every benchmark of a `SuiteConfig` (`run_all`), each
with its own peak-memory reading, writes all-<device>.json and prints one summary table (`summary_rows`,
`format_summary`)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from miniclip.bench.build import run_build_bench
from miniclip.bench.data_path import run_data_bench
from miniclip.bench.evaluation import CPU_CHECKPOINT, CPU_RESNET_CONFIG, run_eval_bench
from miniclip.bench.flops import matmul_peaks
from miniclip.bench.memory import current_rss_mb, peak_rss_mb, reset_peak_rss
from miniclip.bench.recipe import RecipeBenchConfig, ratio_text, run_recipe_bench
from miniclip.bench.results import RESULTS_DIR, finished_stamp, write_results
from miniclip.bench.step import arch_name, run_model_bench
from miniclip.env import machine
from miniclip.model import CLIPConfig


@dataclass
class SuiteConfig:
    """What `bench all` runs. The defaults are the cpu suite (about 10-15 minutes on 2 cores); `for_device`
    gives the GPU one (ViT-B/32 at 224 px, bf16, batch 256)."""

    device: str = "cpu"
    archs: tuple = ("small", CPU_RESNET_CONFIG)  # each timed eager, with ablations
    compile_archs: tuple = ("small",)  # also timed compiled (ours and open_clip only) ...
    compile_batch_sizes: tuple = (128,)  # ... at these batch sizes (compiling takes minutes on 2 cores)
    precisions: tuple = ("fp32", "bf16")
    batch_sizes: tuple = (64, 128)
    rounds: int = 5
    warmup: int = 1
    data_seconds: float = 4.0
    render_size: int = 64  # Shapes are rendered at the size the timed model eats (224 for the GPU suite)
    data_configs: tuple = ("configs/cpu-shapes.yaml", "configs/cpu-flickr8k.yaml")
    shard_samples: int = 2000
    cache_images: int = 512
    feed_steps: int = 60  # whole training runs of each Flickr8k config, fed with and without reading its photos
    eval_checkpoint: str | CLIPConfig = CPU_CHECKPOINT
    zeroshot_images: int = 1000
    retrieval_images: int | None = None
    sections: tuple = ("model", "data", "eval")  # "build" (every notebook) and "recipe" (~1 h) only if asked
    peak_size: int = 2048  # the matmul peak's square size (at least 8192 on a GPU) and how long it runs
    peak_seconds: float = 2.0

    @classmethod
    def for_device(cls, device: str) -> "SuiteConfig":
        if device.startswith("cuda"):
            return cls(device=device, archs=("ViT-B-32-quickgelu",), compile_archs=("ViT-B-32-quickgelu",),
                       compile_batch_sizes=(256,), precisions=("bf16", "fp32"), batch_sizes=(256,), rounds=10,
                       warmup=3, render_size=224)
        return cls(device=device)


def run_all(suite: SuiteConfig | None = None, out_dir: Path | None = RESULTS_DIR) -> dict:
    """Every benchmark of `suite`, each with its own peak-memory reading; writes all-<device>.json and
    prints one summary table."""
    suite = suite or SuiteConfig()
    t_start = time.perf_counter()
    results = {"environment": machine(), "suite": asdict(suite), "sections": {}}
    results["matmul_gflops"] = matmul_peaks(suite.precisions, suite.device, suite.peak_size, suite.peak_seconds)

    def section(name: str, fn: Callable[[], dict]):
        print(f"\n== {name} ==", flush=True)
        reset_peak_rss()
        rss_at_start, t0 = current_rss_mb(), time.perf_counter()
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001 -- one failing section must not lose the others' results
            r = {"error": f"{type(e).__name__}: {e}"}
            print(f"{name} failed: {r['error']}", flush=True)
        # The peak includes what the process still holds from earlier sections (rss_at_start_mb).
        r["wall_s"], r["peak_rss_mb"], r["rss_at_start_mb"] = time.perf_counter() - t0, peak_rss_mb(), rss_at_start
        if suite.device.startswith("cuda"):
            r["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        results["sections"][name] = r

    if "model" in suite.sections:
        for arch in suite.archs:
            section(f"model {arch_name(arch)}", lambda arch=arch: run_model_bench(
                suite.precisions, suite.batch_sizes, arch, suite.rounds, suite.warmup, suite.device, False,
                peaks=results["matmul_gflops"], out_dir=out_dir))
        for arch in suite.compile_archs:
            section(f"model {arch_name(arch)} compiled", lambda arch=arch: run_model_bench(
                suite.precisions, suite.compile_batch_sizes, arch, suite.rounds, suite.warmup, suite.device, True,
                peaks=results["matmul_gflops"], out_dir=out_dir))
    if "data" in suite.sections:
        section("data", lambda: run_data_bench(suite.data_configs, out_dir, suite.data_seconds, suite.device,
                                               suite.shard_samples, suite.cache_images, suite.render_size,
                                               suite.feed_steps))
    if "eval" in suite.sections:
        section("eval", lambda: run_eval_bench(suite.eval_checkpoint, suite.zeroshot_images, suite.retrieval_images,
                                               suite.device, out_dir))
    if "build" in suite.sections:
        section("build", lambda: run_build_bench(out_dir=out_dir))
    if "recipe" in suite.sections:
        section("recipe", lambda: run_recipe_bench(RecipeBenchConfig(out=Path(out_dir or RESULTS_DIR) / "recipe")))
    results["wall_s"] = time.perf_counter() - t_start
    results.update(finished_stamp())
    results["summary"] = summary_rows(results)
    table = format_summary(results["summary"])
    print("\n" + table)
    if out_dir is not None:
        results["path"] = str(write_results(results, out_dir, f"all-{suite.device.split(':')[0]}.json"))
        print(f"\nresults written to {results['path']} ({results['wall_s']:.0f} s)")
    return results


def summary_rows(results: dict) -> list[dict]:
    """The suite's headline numbers as rows {section, item, value, note}, values already formatted."""
    rows = []

    def add(section, item, value, note=""):
        row = {"section": section, "item": item, "value": value, "note": note}
        if row not in rows:  # e.g. the same bf16 skip, reported by every model section
            rows.append(row)

    for precision, gflops in results["matmul_gflops"].items():
        add("ceiling", f"{precision} matmul peak", f"{gflops:.1f} GFLOP/s", "large torch.mm")
    for name, sec in results["sections"].items():
        if "error" in sec:
            add(name, "failed", sec["error"][:60])
        elif name.startswith("model"):
            _model_rows(sec, add)
        elif name == "data":
            _data_rows(sec, add)
        elif name == "eval":
            _eval_rows(sec, add)
        elif name == "build":
            for stage, s in sec["stages"].items():
                add("build", stage, f"{s['seconds']:.0f} s", f"exit {s['returncode']}")
        elif name == "recipe":
            for label, r in sec["ratios"].items():
                add("recipe", f"time to quality, {label}", ratio_text(r), f"to mean R@10 {r['target']:.1%}")
        start = f"{sec['rss_at_start_mb']:.0f} MiB at its start" if sec.get("rss_at_start_mb") else ""
        gpu = f"; {sec['cuda_max_allocated_mb']:.0f} MiB on GPU" if "cuda_max_allocated_mb" in sec else ""
        add("memory", f"{name} peak RSS", f"{sec['peak_rss_mb']:.0f} MiB", start + gpu)
    _render_vs_step_row(results, add)
    add("total", "wall time", f"{results.get('wall_s', 0):.0f} s")
    return rows


def _model_rows(sec: dict, add):
    for skip in sec["skipped"]:
        add("step", f"{skip['precision']} skipped", "-", skip["reason"][:70])
    for r in sec["runs"]:
        cfg = r["config"]
        head = f"{cfg['arch']} {cfg['precision']} b{cfg['batch_size']} {'compiled' if cfg['compile'] else 'eager'}"
        ours, theirs = r["contenders"]["miniclip"], r["contenders"]["open_clip"]
        if "speedup" in r:
            s = r["speedup"]
            add("step", f"{head}: speedup vs open_clip", f"x{s['median']:.2f}",
                f"per round {s['min']:.2f}-{s['max']:.2f}; {ours['samples_per_s']:.1f} vs "
                f"{theirs['samples_per_s']:.1f} samples/s")
        for name, c in ((n, c) for n, c in r["contenders"].items() if "error" in c):
            add("step", f"{head}: {name}", "failed", c["error"][:70])
        if "mfu" in ours:
            add("MFU", f"{head}: miniclip", f"{ours['mfu']:.0%}",
                f"{ours['achieved_gflops']:.1f} GFLOP/s; open_clip {theirs.get('mfu', float('nan')):.0%}")
        for name, c in r["contenders"].items():
            if "gain" in c:
                add("ablation", f"{head}: {name}", f"x{c['gain']['median']:.2f}", c["verdict"])


def _render_vs_step_row(results: dict, add):
    """Shapes rendered on the device against the fastest timed training step of a model of the same image size:
    on a GPU, where the cpu-profile consumers say little, this is the data path's margin."""
    render = results["sections"].get("data", {}).get("producers", {}).get("shapes_render", {})
    steps = [(r["contenders"]["miniclip"]["samples_per_s"], r["config"]) for name, sec in results["sections"].items()
             if name.startswith("model") for r in sec.get("runs", [])
             if r["model_config"]["image_size"] == render.get("image_size")
             and "samples_per_s" in r["contenders"]["miniclip"]]
    if "samples_per_s" in render and steps:
        rate, cfg = max(steps, key=lambda s: s[0])
        add("data", f"shapes_render vs fastest {render['image_size']} px step",
            f"x{render['samples_per_s'] / rate:.1f}",
            f"{cfg['arch']} {cfg['precision']} b{cfg['batch_size']}: {rate:.1f} samples/s")


def _data_rows(sec: dict, add):
    for name, p in sec["producers"].items():
        if "skipped" in p:
            add("data", name, "skipped", p["skipped"][:70])
            continue
        rate = p.get("samples_per_s", p.get("read_samples_per_s"))
        ratio = p.get("ratio_to_training")
        add("data", name, f"{rate:.0f} samples/s",
            f"x{ratio:.1f} what {p['feeds']} training consumes" if ratio else "no consumer measured")
    cache = sec["ablations"].get("flickr8k_uint8_cache", {})
    if "gain" in cache:
        add("ablation", "flickr8k uint8 decoded cache", f"x{cache['gain']:.2f}",
            f"{cache['cache_samples_per_s']:.0f} vs {cache['jpeg_samples_per_s']:.0f} samples/s/thread "
            "(data.cache_images)")
    for name, feed in sec.get("feed", {}).items():
        for size, r in feed.get("sizes", {}).items():
            add("data", f"{name} training at {size} px, photos read", f"{r['read_of_ready']:.0%} of ready batches",
                f"{r['cached_of_ready']:.0%} with data.cache_images "
                f"({r['samples_per_s']['ready']:.0f} samples/s ready)")


def _eval_rows(sec: dict, add):
    add("eval", "encode images (model alone)", f"{sec['encode_images_per_s']:.0f} images/s", sec["model"][:60])
    for task in ("zeroshot", "retrieval"):
        t = sec[task]
        if "skipped" in t:
            add("eval", task, "skipped", t["skipped"][:70])
        else:
            add("eval", f"{task} end to end", f"{t['images_per_s']:.0f} images/s",
                f"{t['images']} images of {t['dataset']} in {t['seconds']:.1f} s")
    add("eval", "R@K computation", f"{sec['recall_at_k_s'] * 1000:.0f} ms",
        "{} images x {} captions".format(*sec["recall_at_k_shape"]))


def format_summary(rows: list[dict]) -> str:
    """The summary rows as one aligned text table."""
    header = {"section": "section", "item": "benchmark", "value": "result", "note": "detail"}
    widths = {k: max(len(str(r[k])) for r in [header, *rows]) for k in ("section", "item", "value")}
    lines = []
    for i, r in enumerate([header, *rows]):
        lines.append(f"{r['section']:<{widths['section']}}  {r['item']:<{widths['item']}}  "
                     f"{r['value']:>{widths['value']}}  {r['note']}".rstrip())
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)
