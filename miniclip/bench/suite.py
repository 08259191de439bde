"""Benchmarks: how fast miniclip trains and evaluates, against open_clip and against this machine's ceiling.

`python -m miniclip bench all` runs the suite and prints one summary table; each part also runs alone:

- model:  one training step (forward, symmetric loss, backward, AdamW), ours against open_clip on the same
          architecture, weights and real captions, eager and compiled, with each of our optimisations switched
          off in turn (ablations); the step's FLOPs counted and its MFU against the measured matmul peak;
- data:   Shapes rendering, Flickr8k decode+augment (and from a decoded uint8 cache), shard reading, against
          what a cpu-profile training step consumes;
- eval:   zero-shot classification and retrieval throughput;
- memory: peak resident memory of one training step per contender (and `torch.cuda.max_memory_allocated`);
- build:  how long `pytest --nbval notebooks` (and, asked for, `make book`) take; recorded, never gated.

Speed is only measured here, as ratios taken in one run with the contenders interleaved round by round, so
that machine noise (other processes, thermal state) hits all of them alike. Tests never time anything.
Results are JSON under runs/bench/. See bench/README.md for what each number means.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Subset
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from tqdm.auto import tqdm

from miniclip.bench.reference import _open_clip, open_clip_model, perturb_, small_vit_open_clip
from miniclip.checkpoint import load_model
from miniclip.config import load_config
from miniclip.data.flickr8k import Flickr8k, benchmark_flickr8k
from miniclip.data.folders import open_test_set
from miniclip.data.paths import MissingDataError
from miniclip.data.shapes import benchmark_render
from miniclip.data.shards import benchmark_shards
from miniclip.data.transforms import eval_transform, train_transform
from miniclip.env import machine as environment
from miniclip.env import matmul_peak
from miniclip.env import synchronize as _synchronize
from miniclip.eval.probes import evaluate_retrieval, retrieval_recall
from miniclip.eval.zeroshot import encode_images, evaluate_zeroshot
from miniclip.loss import ClipLoss
from miniclip.model import CLIP, CLIPConfig, build_model, capture_attention, config_from_state_dict
from miniclip.tokenizer import tokenize
from miniclip.train.trainer import Trainer

RESULTS_DIR = Path("runs/bench")
# The cpu profile's Flickr8k model (a small ModifiedResNet): the architecture the channels_last trial needs.
CPU_RESNET_CONFIG = "configs/cpu-flickr8k.yaml"
CPU_CHECKPOINT = "runs/cpu/flickr8k/final.safetensors"


# ----------------------------------------------------------------------------- the machine and its memory


def reset_peak_rss() -> bool:
    """Restart the count of this process's peak resident memory, so that the next `peak_rss_mb()` is the peak
    of what ran in between. Linux only (writing 5 to /proc/self/clear_refs); False where it is not possible,
    and then `peak_rss_mb()` is the process's peak since it started."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (`resource.getrusage`; Linux counts KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def current_rss_mb() -> float | None:
    """Resident memory right now in MiB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------- the ceiling: FLOPs, MFU


def _conv_flops(c_in: int, c_out: int, kernel: int, out_side: int) -> int:
    return 2 * c_in * c_out * kernel * kernel * out_side**2


def _transformer_flops(tokens: int, width: int, layers: int) -> tuple[int, int]:
    """Per sample: (all FLOPs, those of the attention products). The q, k, v and output projections cost
    4w² per token, the 4x-wide MLP 8w²; the two attention products QKᵀ and AV cost L² x w each (all heads)."""
    attention = layers * 2 * 2 * tokens**2 * width
    return layers * 2 * 12 * tokens * width**2 + attention, attention


def _resnet_flops(c: CLIPConfig) -> tuple[int, int, int]:
    """Per sample of a ModifiedResNet forward: (all FLOPs, the first conv's, the attention products')."""
    w, side = c.vision_width, c.image_size // 2  # the stem's first conv has stride 2
    first = _conv_flops(3, w // 2, 3, side)
    flops = first + _conv_flops(w // 2, w // 2, 3, side) + _conv_flops(w // 2, w, 3, side)
    side //= 2  # the stem's average pool
    inplanes = w
    for stage, blocks in enumerate(c.vision_layers):
        planes = w * 2**stage
        for block in range(blocks):
            out = side // 2 if stage > 0 and block == 0 else side  # the stride is a pool after the 3x3 conv
            flops += _conv_flops(inplanes, planes, 1, side) + _conv_flops(planes, planes, 3, side)
            flops += _conv_flops(planes, 4 * planes, 1, out)
            if out != side or inplanes != 4 * planes:  # the skip path's 1x1 conv (after its pool)
                flops += _conv_flops(inplanes, 4 * planes, 1, out)
            inplanes, side = 4 * planes, out
    # Attention pooling: keys and values for every position plus the mean token, one query (the mean token).
    width, tokens = w * 32, side**2 + 1
    attention = 2 * 2 * tokens * width
    flops += 2 * 2 * tokens * width**2 + 2 * width**2 + attention + 2 * width * c.embed_dim
    return flops, first, attention


def _vit_flops(c: CLIPConfig) -> tuple[int, int, int]:
    """Per sample of a VisionTransformer forward: (all FLOPs, the patch embedding's, the attention products')."""
    grid = c.image_size // c.patch_size
    first = _conv_flops(3, c.vision_width, c.patch_size, grid)
    blocks, attention = _transformer_flops(grid**2 + 1, c.vision_width, c.vision_layers)  # patches + class token
    return first + blocks + 2 * c.vision_width * c.embed_dim, first, attention


def step_flops(config: CLIPConfig, batch_size: int, text_positions: int | None = None) -> dict[str, int]:
    """FLOPs of one training step of `config`'s CLIP on a batch, counted analytically (a multiply-add is 2).

    Counted: every convolution, linear layer and projection, both attention products (QKᵀ and AV, dense: the
    zeros of the causal mask are counted, as the kernels compute them), and the B x B similarity matrix of
    the loss. Not counted: normalisations, activations, softmax, pooling, embedding lookups and the optimizer,
    which are elementwise and memory-bound rather than FLOP-bound. `text_positions` is how far the text tower
    runs (default: the whole context; `CLIP.text_positions` gives what ours runs).

    Backward costs twice the forward (a gradient for the input and one for the weights of each product),
    except that the first convolution's input is the image, which needs no gradient. These are the model's
    FLOPs, the ones MFU is defined with: the fused attention kernel also recomputes QKᵀ during backward
    (`forward_attention / 2` more), work that `FlopCounterMode` counts and MFU does not. tests/test_bench.py
    checks both counts against `FlopCounterMode` on real steps, exactly.
    """
    n_text = config.context_length if text_positions is None else text_positions
    image, first, image_attention = _vit_flops(config) if config.is_vit else _resnet_flops(config)
    text, text_attention = _transformer_flops(n_text, config.text_width, config.text_layers)
    text += 2 * config.text_width * config.embed_dim
    parts = {"image": batch_size * image, "text": batch_size * text,
             "logits": 2 * batch_size * batch_size * config.embed_dim}
    forward = sum(parts.values())
    backward = 2 * forward - batch_size * first
    return {"forward": forward, "backward": backward, "total": forward + backward, "text_positions": n_text,
            **{f"forward_{k}": v for k, v in parts.items()},
            "forward_attention": batch_size * (image_attention + text_attention)}


def mfu(flops: float, seconds: float, peak_gflops: float) -> float:
    """Model FLOPs utilisation: the fraction of the measured matmul peak that `flops` in `seconds` achieve."""
    return flops / seconds / (peak_gflops * 1e9)


def flop_counter():
    """`FlopCounterMode` that also counts the CPU's fused attention kernel, which torch's table leaves out
    (it counts the CUDA kernels only), with torch's own formulas for scaled-dot-product attention."""
    def forward(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward})


# ----------------------------------------------------------------------------- the training step


def flickr8k_captions(n: int) -> tuple[list[str], str]:
    """The first n real Flickr8k captions (cycled if needed), and where they came from. Caption length
    matters to the text tower's cost, so the benchmark uses real ones whenever they are on disk."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the dataset's note about missing images
            dataset = Flickr8k(split="all", train=False)
    except MissingDataError:
        # Without the data, a fixed caption of typical Flickr8k length (~12 words) stands in, and says so.
        return ["a black dog is running through the tall green grass near a lake ."] * n, "synthetic (no Flickr8k)"
    captions = dataset.caption_texts()
    return [captions[i % len(captions)] for i in range(n)], str(dataset.source)


def open_clip_from_config(config: CLIPConfig, seed: int = 0):
    """open_clip's CLIP with exactly the architecture of one of our configs, seeded and perturbed weights."""
    oc = _open_clip()
    torch.manual_seed(seed)
    layers = config.vision_layers if config.is_vit else tuple(config.vision_layers)
    model = oc.model.CLIP(
        embed_dim=config.embed_dim,
        vision_cfg=oc.model.CLIPVisionCfg(layers=layers, width=config.vision_width, patch_size=config.patch_size,
                                          image_size=config.image_size, head_width=config.head_width),
        text_cfg=oc.model.CLIPTextCfg(context_length=config.context_length, vocab_size=config.vocab_size,
                                      width=config.text_width, heads=config.text_width // config.head_width,
                                      layers=config.text_layers),
        quick_gelu=config.quick_gelu)
    return perturb_(model, seed=seed).eval()


def reference_model(arch: str | CLIPConfig):
    """open_clip's model for `arch`: "small" (64 px ViT, width 256, 6+4 layers), an open_clip name such as
    "ViT-B-32-quickgelu", a config file (its model section), or a `CLIPConfig`."""
    if isinstance(arch, CLIPConfig):
        return open_clip_from_config(arch)
    if arch == "small":
        return small_vit_open_clip(quick_gelu=True)
    if arch.endswith((".yaml", ".yml")):
        return open_clip_from_config(load_config(arch).model)
    return open_clip_model(arch)


def arch_name(arch: str | CLIPConfig) -> str:
    if isinstance(arch, CLIPConfig):
        return "custom"
    return Path(arch).stem if arch.endswith((".yaml", ".yml")) else arch


@dataclass
class StepBenchConfig:
    arch: str | CLIPConfig = "small"  # see reference_model
    batch_size: int = 128
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    rounds: int = 5  # interleaved timing rounds; 0 measures memory only
    warmup: int = 1
    device: str = "cpu"
    compile: bool = False  # torch.compile the forward and loss of ours and open_clip's
    ablations: bool = True  # also time ours with each optimisation switched off (eager only)


# Our variants: each switches one optimisation off (or, for channels_last, a candidate on). `gain_if_enabled`
# is how the gain reads: an optimisation that is on gains t(variant)/t(miniclip); a candidate that is off
# would gain t(miniclip)/t(variant).
VARIANTS = {
    "no text trim": dict(enabled=True, what="text tower over the whole 77-token context instead of up to "
                                            "the batch's longest caption (CLIP.trim_text)"),
    "explicit attention": dict(enabled=True, what="fused SDPA replaced by softmax(QK^T/sqrt(d))V written out "
                                                  "(the capture_attention path)"),
    "channels_last": dict(enabled=False, what="ModifiedResNet weights and images in channels_last memory "
                                              "format (ResNet only)"),
}


@dataclass
class Contender:
    name: str
    step: Callable[[], None]
    text_positions: int
    variant_of: str | None = None
    info: dict = field(default_factory=dict)


def _make_step(model, loss_fn, images, text, precision: str, device: torch.device, compile: bool,
               context: Callable = nullcontext) -> Callable[[], None]:
    """One optimisation step: forward both towers, the symmetric loss, backward, AdamW (the paper's betas)."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def forward_loss(images, text):
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(model.encode_text(text), dim=-1)
        return loss_fn(img, txt, model.logit_scale.exp())

    if compile:
        forward_loss = torch.compile(forward_loss)

    def step():
        with context(model), autocast:
            loss = forward_loss(images, text)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _contenders(cfg: StepBenchConfig, reference, images, text, device) -> tuple[list[Contender], float]:
    """Ours, open_clip's and (with `cfg.ablations`) our variants, each with its own copy of the same weights
    and its own optimizer; and the largest feature difference between ours and open_clip's."""
    import open_clip


    sd = reference.state_dict()
    quick_gelu = not isinstance(getattr(reference.transformer.resblocks[0].mlp, "gelu", None), torch.nn.GELU)
    ours = build_model(sd, quick_gelu=quick_gelu)
    with torch.no_grad():  # same weights, same inputs: the features must agree before anything is timed
        few_images, few_text = images[:8].cpu(), text[:8].cpu()
        max_diff = max((ours.encode_image(few_images) - reference.encode_image(few_images)).abs().max().item(),
                       (ours.encode_text(few_text) - reference.encode_text(few_text)).abs().max().item())

    def make(model, loss_fn, x=images, context=nullcontext):
        return _make_step(model, loss_fn, x, text, cfg.precision, device, cfg.compile, context)

    full, trimmed = text.shape[1], ours.text_positions(text)
    contenders = [Contender("miniclip", make(ours, ClipLoss()), trimmed),
                  Contender("open_clip", make(reference, open_clip.loss.ClipLoss()), full)]
    if cfg.ablations and not cfg.compile:
        untrimmed = build_model(sd, quick_gelu=quick_gelu)
        untrimmed.trim_text = False
        contenders.append(Contender("no text trim", make(untrimmed, ClipLoss()), full, "miniclip"))
        contenders.append(Contender("explicit attention", make(build_model(sd, quick_gelu=quick_gelu), ClipLoss(),
                                                               context=capture_attention), trimmed, "miniclip"))
        if not ours.config.is_vit:
            resnet = build_model(sd, quick_gelu=quick_gelu)
            resnet.visual.to(memory_format=torch.channels_last)
            contenders.append(Contender("channels_last",
                                        make(resnet, ClipLoss(), images.contiguous(memory_format=torch.channels_last)),
                                        trimmed, "miniclip"))
    return contenders, max_diff


def step_memory(step: Callable[[], None], device: torch.device) -> dict:
    """Peak memory of one call of `step`: resident memory of the process (and its growth during the step),
    and on CUDA the most memory torch allocated on the device."""
    out = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = current_rss_mb()
    reset = reset_peak_rss()
    step()
    _synchronize(device)
    out["peak_rss_mb"] = peak_rss_mb()
    if reset and before is not None:
        out["step_rss_growth_mb"] = out["peak_rss_mb"] - before
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def bench_train_step(cfg: StepBenchConfig, peak_gflops: float | None = None) -> dict:
    """Seconds per training step of every contender, interleaved round by round; speedups over open_clip,
    each variant's gain, FLOPs and (given the matmul peak) MFU, and the peak memory of one step each."""
    device = torch.device(cfg.device)
    reference = reference_model(cfg.arch)
    config = config_from_state_dict(reference.state_dict())
    captions, caption_source = flickr8k_captions(cfg.batch_size)
    text = tokenize(captions, context_length=config.context_length).to(device)
    images = torch.randn(cfg.batch_size, 3, config.image_size, config.image_size,
                         generator=torch.Generator().manual_seed(0)).to(device)
    contenders, max_diff = _contenders(cfg, reference, images, text, device)
    del reference

    result = {"config": asdict(cfg) | {"arch": arch_name(cfg.arch)}, "model_config": asdict(config),
              "caption_source": caption_source, "max_feature_diff": max_diff,
              "mean_text_eot": float(text.argmax(-1).float().mean() + 1), "contenders": {}}
    live = []
    for c in tqdm(contenders, desc="first steps (compiling if asked) and warm-up", leave=False):
        entry = result["contenders"][c.name] = {"text_positions": c.text_positions}
        if c.variant_of:
            entry.update(VARIANTS[c.name])
        try:
            t0 = time.perf_counter()
            c.step()  # with torch.compile, this first step compiles
            _synchronize(device)
            entry["first_step_s"] = time.perf_counter() - t0
            for _ in range(cfg.warmup):
                c.step()
        except Exception as e:  # noqa: BLE001 -- a contender that cannot run is recorded, not fatal
            entry["error"] = f"{type(e).__name__}: {e}"
            print(f"  {c.name}: failed ({entry['error'][:200]})", flush=True)
            continue
        live.append(c)

    times = {c.name: [] for c in live}
    for r in tqdm(range(cfg.rounds), desc=f"timing {len(live)} contenders", leave=False):
        # interleaved, the order reversed every other round
        for c in live if r % 2 == 0 else live[::-1]:
            _synchronize(device)
            t0 = time.perf_counter()
            c.step()
            _synchronize(device)
            times[c.name].append(time.perf_counter() - t0)

    for c in live:
        entry = result["contenders"][c.name]
        entry.update(step_memory(c.step, device))
        flops = step_flops(config, cfg.batch_size, c.text_positions)
        entry["flops"] = flops["total"]
        if not times[c.name]:
            continue
        median = statistics.median(times[c.name])
        entry.update(median_s=median, min_s=min(times[c.name]), max_s=max(times[c.name]),
                     samples_per_s=cfg.batch_size / median, times_s=times[c.name],
                     achieved_gflops=flops["total"] / median / 1e9)
        if peak_gflops:
            entry["mfu"] = mfu(flops["total"], median, peak_gflops)
    _ratios(result, times)
    if device.type == "cuda":
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def _ratio_stats(numerator: list[float], denominator: list[float]) -> dict:
    per_round = [a / b for a, b in zip(numerator, denominator)]
    return {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round)}


def _ratios(result: dict, times: dict[str, list[float]]):
    """Per-round ratios: ours over open_clip (the speedup), and each variant against ours (its gain)."""
    if times.get("miniclip") and times.get("open_clip"):
        result["speedup"] = _ratio_stats(times["open_clip"], times["miniclip"])
    for name, ts in times.items():
        if name in VARIANTS and ts and times.get("miniclip"):
            on = VARIANTS[name]["enabled"]
            gain = _ratio_stats(ts, times["miniclip"]) if on else _ratio_stats(times["miniclip"], ts)
            result["contenders"][name]["gain"] = gain
            result["contenders"][name]["verdict"] = (
                ("kept: it gains" if gain["median"] > 1 else "kept, though no gain measured in this run") if on
                else ("would gain: consider enabling" if gain["median"] > 1.05 else "not enabled: no gain"))


def run_model_bench(precisions=("fp32", "bf16"), batch_sizes=(64, 128), arch: str | CLIPConfig = "small",
                    rounds: int = 5, warmup: int = 1, device: str = "cpu", compile: bool | str = False,
                    ablations: bool = True, peaks: dict | None = None, out_dir: Path | None = RESULTS_DIR) -> dict:
    """The step benchmark over precisions and batch sizes. `compile`: False (eager), True (compiled only) or
    "both". bf16 is skipped, with the reason recorded, where its matmul is slower than fp32's (CPUs without
    bf16 units); `peaks` reuses matmul peaks measured earlier in the same run."""
    results = {"environment": environment(), "runs": [], "skipped": []}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    results["matmul_gflops"] = peaks or {p: matmul_peak(dtypes[p], device=device) for p in precisions}
    modes = {False: [False], True: [True], "both": [False, True]}[compile]
    for precision in precisions:
        peak = results["matmul_gflops"].get(precision)
        if precision == "bf16" and peak is not None and peak < results["matmul_gflops"].get("fp32", 0):
            why = (f"bf16 matmul runs at {peak:.1f} GFLOP/s here, slower than fp32 "
                   f"({results['matmul_gflops'].get('fp32', 0):.1f}): this CPU has no bf16 fast path, so bf16 "
                   "training is not worth timing on it")
            print(f"skipping bf16: {why}")
            results["skipped"].append({"precision": "bf16", "reason": why})
            continue
        for compiled in modes:
            for batch_size in batch_sizes:
                cfg = StepBenchConfig(arch=arch, batch_size=batch_size, precision=precision, rounds=rounds,
                                      warmup=warmup, device=device, compile=compiled, ablations=ablations)
                r = bench_train_step(cfg, peak)
                results["runs"].append(r)
                _print_step_result(r)
    if out_dir is not None:
        name = f"model-{arch_name(arch)}-{device}{'-compiled' if compile is True else ''}.json"
        results["path"] = str(_write(results, out_dir, name))
    return results


def _print_step_result(r: dict):
    cfg = r["config"]
    head = f"{cfg['arch']} {cfg['precision']} batch {cfg['batch_size']} {'compiled' if cfg['compile'] else 'eager'}"
    for name, c in r["contenders"].items():
        if "median_s" not in c:
            print(f"{head:>40}  {name:<20} {c.get('error', 'memory only')[:80]}", flush=True)
            continue
        extra = f"MFU {c['mfu']:.0%}" if "mfu" in c else ""
        if name == "miniclip" and "speedup" in r:
            s = r["speedup"]
            extra += f"  x{s['median']:.2f} vs open_clip ({s['min']:.2f}-{s['max']:.2f})"
        if "gain" in c:
            extra += f"  gain x{c['gain']['median']:.2f}: {c['verdict']}"
        print(f"{head:>40}  {name:<20} {c['median_s']:7.3f} s/step {c['samples_per_s']:7.1f} samples/s  {extra}",
              flush=True)


def _write(results: dict, out_dir: Path, name: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


def run_memory_bench(batch_sizes=(64, 128), arch: str | CLIPConfig = "small", precision: str = "fp32",
                     device: str = "cpu", out_dir: Path | None = RESULTS_DIR) -> dict:
    """Peak memory of one training step per contender (no timing rounds)."""
    results = {"environment": environment(), "runs": []}
    for batch_size in batch_sizes:
        cfg = StepBenchConfig(arch=arch, batch_size=batch_size, precision=precision, rounds=0, warmup=0,
                              device=device)
        r = bench_train_step(cfg)
        results["runs"].append(r)
        for name, c in r["contenders"].items():
            cuda = f", CUDA {c['cuda_max_allocated_mb']:.0f} MiB" if "cuda_max_allocated_mb" in c else ""
            print(f"{arch_name(arch)} batch {batch_size} {name:<20} peak RSS {c.get('peak_rss_mb', float('nan')):.0f} "
                  f"MiB (+{c.get('step_rss_growth_mb', float('nan')):.0f} during the step){cuda}", flush=True)
    if out_dir is not None:
        results["path"] = str(_write(results, out_dir, f"memory-{arch_name(arch)}-{device}.json"))
    return results


# ----------------------------------------------------------------------------- the data path


def training_consumption(config_path: str | Path, steps: int = 3) -> dict:
    """Samples per second one training step of a config consumes (synthetic batch; model and optimizer
    real), i.e. how fast the data path has to be to keep that training fed."""
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


def benchmark_decoded_cache(image_size: int = 64, num_images: int = 512, root=None) -> dict:
    """Would a uint8 cache of decoded Flickr8k images pay? The same training augmentation (random resized
    crop, flip, normalise) timed from the JPEG bytes (what the dataset does every epoch) and from the decoded
    images held in memory as uint8 arrays (what a cache, filled once, would do), on the same images, in one
    thread. The cache's memory is reported too; the dataset does not use one (see bench/README.md)."""
    transform = train_transform(image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = Flickr8k(root, "train", transform)
    indices = list(range(min(num_images, len(dataset))))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        cache = [np.asarray(dataset.pil_image(i, draft_size=dataset.decode_size)) for i in indices]  # fill once
        fill_s = time.perf_counter() - t0
        timings = {}
        for name, sample in (("jpeg", lambda i: dataset[i][0]),
                             ("uint8_cache", lambda i: transform(Image.fromarray(cache[i])))):
            sample(0)
            t0 = time.perf_counter()
            for i in indices:
                sample(i)
            timings[name] = len(indices) / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    per_image = sum(a.nbytes for a in cache) / len(cache)
    return {"images": len(indices), "image_size": image_size, "decode_size": dataset.decode_size,
            "jpeg_samples_per_s": timings["jpeg"], "cache_samples_per_s": timings["uint8_cache"],
            "gain": timings["uint8_cache"] / timings["jpeg"], "cache_fill_s": fill_s,
            "cache_mb_per_1000_images": per_image * 1000 / 2**20,
            "cache_mb_train_split": per_image * len(dataset) / 2**20}


def run_data_bench(configs=("configs/cpu-shapes.yaml", "configs/cpu-flickr8k.yaml"), out_dir: Path | None = RESULTS_DIR,
                   seconds: float = 4.0, device: str = "cpu", shard_samples: int = 2000,
                   cache_images: int = 512, render_size: int = 64) -> dict:
    """Data-path throughput (Shapes rendering on `device` at `render_size`, Flickr8k decode+augment with and
    without a decoded cache, shard reading) beside what the cpu-profile training steps consume, at 64 px."""
    results = {"environment": environment(), "producers": {}, "consumers": {}, "ablations": {}}
    results["producers"]["shapes_render"] = benchmark_render(batch_size=256, image_size=render_size, seconds=seconds,
                                                             device=device)
    try:
        results["producers"]["flickr8k_decode_augment"] = benchmark_flickr8k(image_size=64, seconds=seconds)
        results["ablations"]["flickr8k_uint8_cache"] = benchmark_decoded_cache(64, cache_images)
    except MissingDataError as e:
        results["producers"]["flickr8k_decode_augment"] = {"skipped": str(e)}
        results["ablations"]["flickr8k_uint8_cache"] = {"skipped": str(e)}
    results["producers"]["shard_read"] = benchmark_shards(num_samples=shard_samples, image_size=64)
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
        producer["feeds"] = feeds[name]
        if produced is None:
            print(f"{name:<26}{'skipped':>12}   ({producer.get('skipped', '')[:60]})")
            continue
        ratio = produced / consumer if consumer else None
        producer["ratio_to_training"] = ratio
        print(f"{name:<26}{produced:12.0f}   {consumer or float('nan'):18.1f}   "
              f"{'x%.1f' % ratio if ratio else '-'}  ({feeds[name]})")
    cache = results["ablations"]["flickr8k_uint8_cache"]
    if "gain" in cache:
        print(f"Flickr8k augment from a uint8 cache: {cache['cache_samples_per_s']:.0f} samples/s against "
              f"{cache['jpeg_samples_per_s']:.0f} from JPEG (x{cache['gain']:.2f}; the train split would take "
              f"{cache['cache_mb_train_split']:.0f} MiB)")
    if out_dir is not None:
        results["path"] = str(_write(results, out_dir, f"data-{device}.json"))
    return results


# ----------------------------------------------------------------------------- evaluation


def _eval_model(checkpoint: str | Path | CLIPConfig, device: str) -> tuple[CLIP, str]:
    """The model to evaluate: a checkpoint if it exists, else the cpu-profile architecture with random
    weights (throughput does not depend on the weights), or the given `CLIPConfig`."""
    if isinstance(checkpoint, CLIPConfig):
        return CLIP(checkpoint).to(device).eval(), "random weights (given config)"
    if Path(checkpoint).exists():
        return load_model(checkpoint, device).eval(), str(checkpoint)

    return CLIP(load_config(CPU_RESNET_CONFIG).model).to(device).eval(), f"random weights ({CPU_RESNET_CONFIG})"


def _first_images(dataset, n: int):
    """Keep only the first n images (and their captions) of a Flickr8k dataset, for a shorter measurement."""
    dataset.image_ids, dataset.files, dataset.captions = (dataset.image_ids[:n], dataset.files[:n],
                                                          dataset.captions[:n])
    return dataset


def run_eval_bench(checkpoint: str | Path | CLIPConfig = CPU_CHECKPOINT, zeroshot_images: int = 1000,
                   retrieval_images: int | None = None, device: str = "cpu",
                   out_dir: Path | None = RESULTS_DIR) -> dict:
    """Throughput of evaluation, with the package's own functions: zero-shot classification on CIFAR-10 test
    (decode, preprocess, encode, classify) and Flickr8k test retrieval (encode every image and caption, then
    R@K), each end to end and for the model alone."""
    model, source = _eval_model(checkpoint, device)
    size, dev = model.config.image_size, torch.device(device)
    results = {"environment": environment(), "model": source, "image_size": size}

    images = torch.randn(256, 3, size, size)
    encode_images(model, images[:8])  # warm-up
    t0 = time.perf_counter()
    encode_images(model, images)
    _synchronize(dev)
    results["encode_images_per_s"] = len(images) / (time.perf_counter() - t0)

    try:
        dataset = open_test_set("cifar10", eval_transform(size))
        subset = Subset(dataset, range(min(zeroshot_images, len(dataset))))
        t0 = time.perf_counter()
        zs = evaluate_zeroshot(model, subset, dataset.class_names)
        seconds = time.perf_counter() - t0
        results["zeroshot"] = {"dataset": "cifar10 test", "images": zs["n"], "seconds": seconds,
                               "images_per_s": zs["n"] / seconds, "top1": zs["top1"]}
    except MissingDataError as e:
        results["zeroshot"] = {"skipped": str(e)}

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = Flickr8k(split="test", transform=eval_transform(size), train=False)
        if retrieval_images:
            _first_images(dataset, retrieval_images)
        t0 = time.perf_counter()
        rr = evaluate_retrieval(model, dataset)
        seconds = time.perf_counter() - t0
        results["retrieval"] = {"dataset": "flickr8k test", "images": rr["images"], "captions": rr["captions"],
                                "seconds": seconds, "images_per_s": rr["images"] / seconds,
                                "text_to_image_R@10": rr["text_to_image_R@10"]}
        n_img, n_txt = rr["images"], rr["captions"]
    except MissingDataError as e:
        results["retrieval"] = {"skipped": str(e)}
        n_img, n_txt = 1000, 5000  # Flickr8k test's size, for the R@K computation alone
    # The R@K computation alone, on random normalised features of the same shapes.
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(n_img, model.config.embed_dim, generator=g), dim=-1).to(dev)
    txt = F.normalize(torch.randn(n_txt, model.config.embed_dim, generator=g), dim=-1).to(dev)
    index = torch.arange(n_txt) * n_img // n_txt
    t0 = time.perf_counter()
    retrieval_recall(img, txt, index)
    _synchronize(dev)
    results["recall_at_k_s"] = time.perf_counter() - t0
    results["recall_at_k_shape"] = [n_img, n_txt]
    print(f"model alone: {results['encode_images_per_s']:.0f} images/s; " + "; ".join(
        f"{k}: {v['images_per_s']:.0f} images/s end to end" for k, v in results.items()
        if isinstance(v, dict) and "images_per_s" in v) + f"; R@K on {n_img}x{n_txt}: {results['recall_at_k_s']:.3f} s")
    if out_dir is not None:
        results["path"] = str(_write(results, out_dir, f"eval-{device}.json"))
    return results


# ----------------------------------------------------------------------------- build times


def _timed(command: list[str], env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    return {"command": " ".join(command), "seconds": time.perf_counter() - t0, "returncode": proc.returncode,
            "tail": proc.stdout[-2000:] + proc.stderr[-1000:]}


def run_build_bench(book: bool = False, out_dir: Path | None = RESULTS_DIR) -> dict:
    """How long the notebooks take under `pytest --nbval` (ci profile), and with `book`, `make book`'s stages
    (the cpu profile: install check, then the executed book). Recorded, never gated: a failure is noted."""
    results = {"environment": environment(), "stages": {}}
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
        results["path"] = str(_write(results, out_dir, "build.json"))
    return results


# ----------------------------------------------------------------------------- the whole suite


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
    eval_checkpoint: str | CLIPConfig = CPU_CHECKPOINT
    zeroshot_images: int = 1000
    retrieval_images: int | None = None
    sections: tuple = ("model", "data", "eval")  # "build" too if asked: it runs every notebook
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
    results = {"environment": environment(), "suite": asdict(suite), "sections": {}}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    results["matmul_gflops"] = {p: matmul_peak(dtypes[p], suite.peak_size, suite.peak_seconds, suite.device)
                                for p in suite.precisions}

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
                                               suite.shard_samples, suite.cache_images, suite.render_size))
    if "eval" in suite.sections:
        section("eval", lambda: run_eval_bench(suite.eval_checkpoint, suite.zeroshot_images, suite.retrieval_images,
                                               suite.device, out_dir))
    if "build" in suite.sections:
        section("build", lambda: run_build_bench(out_dir=out_dir))
    results["wall_s"] = time.perf_counter() - t_start
    results["summary"] = summary_rows(results)
    table = format_summary(results["summary"])
    print("\n" + table)
    if out_dir is not None:
        results["path"] = str(_write(results, out_dir, f"all-{suite.device.split(':')[0]}.json"))
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
        add("data", f"shapes_render vs fastest {render['image_size']} px step", f"x{render['samples_per_s'] / rate:.1f}",
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
            f"{cache['cache_samples_per_s']:.0f} vs {cache['jpeg_samples_per_s']:.0f} samples/s/thread; not enabled")


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
