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
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from miniclip.data.paths import data_root
from miniclip.model import build_model

RESULTS_DIR = Path("runs/bench")


def flickr8k_captions(n: int) -> tuple[list[str], str]:
    """The first n real Flickr8k captions (cycled if needed), and where they came from. Caption length
    matters to the text tower's cost, so the benchmark uses real ones whenever they are on disk."""
    path = data_root() / "flickr8k.zip"
    if path.exists():
        with zipfile.ZipFile(path) as zf:
            name = next(m for m in zf.namelist() if m.endswith("Flickr8k.token.txt"))
            lines = zf.read(name).decode("utf-8").splitlines()
        captions = [line.split("\t", 1)[1] for line in lines if "\t" in line]
        return [captions[i % len(captions)] for i in range(n)], str(path)
    # Without the data, a fixed caption of typical Flickr8k length (~12 words) stands in, and says so.
    return ["a black dog is running through the tall green grass near a lake ."] * n, "synthetic (no Flickr8k)"


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
    results = {"environment": environment(), "runs": []}
    for precision in precisions:
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
