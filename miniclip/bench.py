"""Benchmarks: our training step against open_clip's, on the same architecture, weights and inputs.

Speed is only ever measured here (and by `python -m miniclip bench`), as a ratio taken in one run with the
two contenders interleaved round by round, so that machine noise (other processes, thermal state) hits
both alike. Tests never time anything.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from miniclip.model import build_model

RESULTS_DIR = Path("runs/bench")


def flickr8k_captions(n: int) -> tuple[list[str], str]:
    """The first n real Flickr8k captions (cycled if needed), and where they came from. Caption length
    matters to the text tower's cost, so the benchmark uses real ones whenever they are on disk."""
    from miniclip.data.flickr8k import Flickr8k
    from miniclip.data.paths import MissingDataError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the dataset's note about missing images
            dataset = Flickr8k(split="all", train=False)
    except MissingDataError:
        # Without the data, a fixed caption of typical Flickr8k length (~12 words) stands in, and says so.
        return ["a black dog is running through the tall green grass near a lake ."] * n, "synthetic (no Flickr8k)"
    captions = dataset.caption_texts()
    return [captions[i % len(captions)] for i in range(n)], str(dataset.source)


@dataclass
class StepBenchConfig:
    arch: str = "small"  # "small": 64 px ViT, width 256, 6+4 layers; or an open_clip name like "ViT-B-32-quickgelu"
    batch_size: int = 128
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    rounds: int = 7
    warmup: int = 2
    device: str = "cpu"
    compile: bool = False


def _reference_model(arch: str):
    from miniclip.reference import open_clip_model, small_vit_open_clip

    return small_vit_open_clip(quick_gelu=True) if arch == "small" else open_clip_model(arch)


def _clip_loss_open_clip():
    import open_clip

    return open_clip.loss.ClipLoss()


def bench_train_step(cfg: StepBenchConfig) -> dict:
    """Median seconds per training step (forward, symmetric loss, backward, AdamW) for both models."""
    from miniclip.loss import ClipLoss

    device = torch.device(cfg.device)
    reference = _reference_model(cfg.arch)
    ours = build_model(reference.state_dict(), quick_gelu=True)
    image_size = ours.config.image_size
    captions, caption_source = flickr8k_captions(cfg.batch_size)
    from miniclip.tokenizer import tokenize

    text = tokenize(captions, context_length=ours.config.context_length).to(device)
    images = torch.randn(cfg.batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    images = images.to(device)

    # Same weights, same inputs: check the features agree before timing anything.
    with torch.no_grad():
        max_diff = max((ours.encode_image(images[:8]) - reference.encode_image(images[:8])).abs().max().item(),
                       (ours.encode_text(text[:8]) - reference.encode_text(text[:8])).abs().max().item())

    contenders = {}
    for name, model, loss_fn in (("miniclip", ours, ClipLoss()), ("open_clip", reference, _clip_loss_open_clip())):
        model = model.to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)
        step_model = torch.compile(model) if cfg.compile else model
        contenders[name] = _make_step(step_model, model, opt, loss_fn, images, text, cfg.precision, device)

    def timed(step):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for step in contenders.values():
        for _ in range(cfg.warmup):
            step()
    times = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(cfg.rounds):  # interleave, alternating who goes first
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(contenders[name]))

    result = {"config": asdict(cfg), "caption_source": caption_source, "max_feature_diff": max_diff,
              "image_size": image_size, "mean_text_eot": float(text.argmax(-1).float().mean() + 1)}
    for name, ts in times.items():
        med = statistics.median(ts)
        result[name] = {"median_s": med, "min_s": min(ts), "max_s": max(ts),
                        "samples_per_s": cfg.batch_size / med, "times_s": ts}
    result["speedup"] = result["open_clip"]["median_s"] / result["miniclip"]["median_s"]
    per_round = [o / m for o, m in zip(times["open_clip"], times["miniclip"])]
    result["speedup_per_round"] = {"min": min(per_round), "median": statistics.median(per_round), "max": max(per_round)}
    if device.type == "cuda":
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def _make_step(step_model, model, opt, loss_fn, images, text, precision, device):
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        with autocast:
            img = F.normalize(step_model.encode_image(images), dim=-1)
            txt = F.normalize(step_model.encode_text(text), dim=-1)
            loss = loss_fn(img, txt, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def environment() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": _cpu_name(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_model_bench(precisions=("fp32", "bf16"), batch_sizes=(128,), arch="small", rounds=7, device="cpu",
                    compile=False, out_dir: Path = RESULTS_DIR) -> dict:
    results = {"environment": environment(), "runs": [], "skipped": []}
    results["matmul_gflops"] = {p: matmul_peak({"fp32": torch.float32, "bf16": torch.bfloat16}[p], device=device)
                                for p in precisions}
    for precision in precisions:
        if precision == "bf16" and results["matmul_gflops"]["bf16"] < results["matmul_gflops"].get("fp32", 0):
            why = (f"bf16 matmul runs at {results['matmul_gflops']['bf16']:.1f} GFLOP/s here, slower than fp32 "
                   f"({results['matmul_gflops'].get('fp32', 0):.1f}): this CPU has no bf16 fast path, so bf16 "
                   "training is not worth timing on it")
            print(f"skipping bf16: {why}")
            results["skipped"].append({"precision": "bf16", "reason": why})
            continue
        for batch_size in batch_sizes:
            cfg = StepBenchConfig(arch=arch, batch_size=batch_size, precision=precision, rounds=rounds,
                                  device=device, compile=compile)
            r = bench_train_step(cfg)
            results["runs"].append(r)
            print(f"{arch:>12} {precision:>5} batch {batch_size:>4}: miniclip {r['miniclip']['samples_per_s']:8.1f} "
                  f"samples/s, open_clip {r['open_clip']['samples_per_s']:8.1f} samples/s, "
                  f"speedup x{r['speedup']:.2f} (per round {r['speedup_per_round']['min']:.2f}-"
                  f"{r['speedup_per_round']['max']:.2f}), max feature diff {r['max_feature_diff']:.1e}", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"model-{arch}-{device}.json"
    path.write_text(json.dumps(results, indent=2))
    results["path"] = str(path)
    return results


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 2.0,
                device: str = "cpu") -> float:
    """This machine's large-matmul throughput in GFLOP/s: the ceiling a training step is measured against.
    A dtype the CPU has no fast path for (bf16 without AVX-512 BF16 or AMX) can be hundreds of times
    slower, so the first, untimed product is small and its speed decides whether to time a big one."""
    a = torch.randn(256, 256, dtype=dtype, device=device)
    t0 = time.perf_counter()
    a @ a
    if time.perf_counter() - t0 > 0.05:  # slower than ~0.7 GFLOP/s: report that, skip the big product
        return 2 * 256**3 / (time.perf_counter() - t0) / 1e9
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        runs += 1
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n**3 * runs / (time.perf_counter() - t0) / 1e9


def training_consumption(config_path: str | Path, steps: int = 3) -> dict:
    """Samples per second one training step of a config consumes (synthetic batch; model and optimizer
    real), i.e. how fast the data path has to be to keep that training fed."""
    from miniclip.config import load_config
    from miniclip.tokenizer import tokenize
    from miniclip.train import Trainer
    import tempfile

    config = load_config(config_path, ["data.zeroshot=none"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, tmp, progress=False)
        b, s = config.optim.batch_size, config.model.image_size
        images = torch.randn(b, 3, s, s)
        tokens = tokenize(flickr8k_captions(b)[0], config.model.context_length)
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            trainer.optimizer_step(trainer.train_step(images, tokens))
            if i:  # the first step warms up allocators and caches
                times.append(time.perf_counter() - t0)
    return {"config": str(config_path), "batch_size": b, "image_size": s,
            "samples_per_s": b / statistics.median(times)}


def run_data_bench(configs=("configs/cpu-shapes.yaml", "configs/cpu-flickr8k.yaml"), out_dir: Path = RESULTS_DIR,
                   seconds: float = 4.0) -> dict:
    """Data-path throughput (Shapes rendering, Flickr8k decode+augment, shard reading) beside what the
    cpu-profile training steps consume, all at the profile's 64 px and on this machine's threads."""
    from miniclip.data.flickr8k import benchmark_flickr8k
    from miniclip.data.paths import MissingDataError
    from miniclip.data.shapes import benchmark_render
    from miniclip.data.shards import benchmark_shards

    results = {"environment": environment(), "producers": {}, "consumers": {}}
    results["producers"]["shapes_render"] = benchmark_render(batch_size=256, image_size=64, seconds=seconds)
    try:
        results["producers"]["flickr8k_decode_augment"] = benchmark_flickr8k(image_size=64, seconds=seconds)
    except MissingDataError as e:
        results["producers"]["flickr8k_decode_augment"] = {"skipped": str(e)}
    results["producers"]["shard_read"] = benchmark_shards(num_samples=2000, image_size=64)
    for path in configs:
        if Path(path).exists():
            results["consumers"][Path(path).stem] = training_consumption(path)
    rate = {"shapes_render": "samples_per_s", "flickr8k_decode_augment": "samples_per_s",
            "shard_read": "read_samples_per_s"}
    feeds = {"shapes_render": "cpu-shapes", "flickr8k_decode_augment": "cpu-flickr8k", "shard_read": "cpu-flickr8k"}
    print(f"{'data path':<26}{'samples/s':>12}   {'training consumes':>18}   ratio")
    for name, producer in results["producers"].items():
        produced = producer.get(rate[name])
        consumer = results["consumers"].get(feeds[name], {}).get("samples_per_s")
        if produced is None:
            print(f"{name:<26}{'skipped':>12}   ({producer.get('skipped', '')[:60]})")
            continue
        ratio = produced / consumer if consumer else None
        producer["ratio_to_training"] = ratio
        print(f"{name:<26}{produced:12.0f}   {consumer or float('nan'):18.1f}   "
              f"{'x%.1f' % ratio if ratio else '-'}  ({feeds[name]})")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "data-cpu.json"
    path.write_text(json.dumps(results, indent=2))
    results["path"] = str(path)
    return results
