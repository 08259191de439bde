"""One training step (forward, symmetric loss, backward, AdamW), ours against open_clip's on the same
architecture, weights and real captions, eager or compiled, with each of our optimisations switched off in
turn (the ablations); per contender its speed, FLOPs, MFU and peak memory (`run_model_bench`), or the memory
alone (`run_memory_bench`).

Speed is a ratio taken in one run with the contenders interleaved round by round, so that machine noise
(other processes, thermal state) hits all of them alike.
"""

from __future__ import annotations

import statistics
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from miniclip.bench.flops import matmul_peaks, mfu, step_flops
from miniclip.bench.memory import step_memory
from miniclip.bench.reference import (
    open_clip_config,
    open_clip_model,
    perturb_,
    require_open_clip,
    small_vit_open_clip,
)
from miniclip.bench.results import RESULTS_DIR, write_results
from miniclip.config import load_config
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.paths import MissingDataError
from miniclip.env import machine, synchronize
from miniclip.errors import UsageError
from miniclip.loss import ClipLoss
from miniclip.model import CLIP, CLIPConfig, build_model, capture_attention, config_from_state_dict
from miniclip.tokenizer import tokenize
from miniclip.train.trainer import to_training_layout


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
    oc = require_open_clip()
    torch.manual_seed(seed)
    c = open_clip_config(config)
    vision = {**c["vision_cfg"], "layers": c["vision_cfg"]["layers"] if config.is_vit else tuple(config.vision_layers)}
    model = oc.model.CLIP(embed_dim=c["embed_dim"], vision_cfg=oc.model.CLIPVisionCfg(**vision),
                          text_cfg=oc.model.CLIPTextCfg(**c["text_cfg"]), quick_gelu=c["quick_gelu"])
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
    if arch not in require_open_clip().list_models():
        raise UsageError(f"unknown --arch {arch!r} (use small, a config file such as configs/cpu-flickr8k.yaml, "
                         "or an open_clip model name such as ViT-B-32-quickgelu)")
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


# Our variants: each switches one optimisation of our trainer's step off. `enabled` says how the gain reads: an
# optimisation that is on gains t(variant)/t(miniclip); a candidate that is off (none now) would gain
# t(miniclip)/t(variant).
VARIANTS = {
    "no text trim": dict(enabled=True, what="text tower over the whole 77-token context instead of up to "
                                            "the batch's longest caption (CLIP.trim_text)"),
    "explicit attention": dict(enabled=True, what="fused SDPA replaced by softmax(QK^T/sqrt(d))V written out "
                                                  "(the capture_attention path)"),
    "no channels_last": dict(enabled=True, what="ModifiedResNet weights and images in the default (NCHW) memory "
                                                "format instead of channels_last (ResNet only)"),
}


@dataclass
class Contender:
    name: str
    step: Callable[[], None]
    text_positions: int
    variant_of: str | None = None


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
    sd = reference.state_dict()
    quick_gelu = not isinstance(getattr(reference.transformer.resblocks[0].mlp, "gelu", None), torch.nn.GELU)
    ours = build_model(sd, quick_gelu=quick_gelu)
    with torch.no_grad():  # same weights, same inputs: the features must agree before anything is timed
        few_images, few_text = images[:8].cpu(), text[:8].cpu()
        max_diff = max((ours.encode_image(few_images) - reference.encode_image(few_images)).abs().max().item(),
                       (ours.encode_text(few_text) - reference.encode_text(few_text)).abs().max().item())

    # Ours as the trainer runs it: a ModifiedResNet's weights and images in channels_last.
    resnet = to_training_layout(ours)
    our_images = images.contiguous(memory_format=torch.channels_last) if resnet else images

    def our_model() -> CLIP:
        model = build_model(sd, quick_gelu=quick_gelu)
        to_training_layout(model)
        return model

    def make(model, loss_fn, x=our_images, context=nullcontext):
        return _make_step(model, loss_fn, x, text, cfg.precision, device, cfg.compile, context)

    full, trimmed = text.shape[1], ours.text_positions(text)
    contenders = [Contender("miniclip", make(ours, ClipLoss()), trimmed),
                  Contender("open_clip", make(reference, require_open_clip().loss.ClipLoss(), images), full)]
    if cfg.ablations and not cfg.compile:
        untrimmed = our_model()
        untrimmed.trim_text = False
        contenders.append(Contender("no text trim", make(untrimmed, ClipLoss()), full, "miniclip"))
        contenders.append(Contender("explicit attention", make(our_model(), ClipLoss(), context=capture_attention),
                                    trimmed, "miniclip"))
        if resnet:
            default_layout = build_model(sd, quick_gelu=quick_gelu)
            contenders.append(Contender("no channels_last", make(default_layout, ClipLoss(), images), trimmed,
                                        "miniclip"))
    return contenders, max_diff


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
            synchronize(device)
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
            synchronize(device)
            t0 = time.perf_counter()
            c.step()
            synchronize(device)
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
    require_open_clip()  # the reference every step is compared with: fail now, not after the matmul peaks
    results = {"environment": machine(), "runs": [], "skipped": []}
    results["matmul_gflops"] = peaks or matmul_peaks(precisions, device)
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
        results["path"] = str(write_results(results, out_dir, name))
    return results


def _print_step_result(r: dict):
    cfg = r["config"]
    head = f"{cfg['arch']} {cfg['precision']} b{cfg['batch_size']} {'compiled' if cfg['compile'] else 'eager'}"
    for name, c in r["contenders"].items():
        if "median_s" not in c:
            print(f"{head}  {name}: {c.get('error', 'memory only')[:80]}", flush=True)
            continue
        extra = f"MFU {c['mfu']:.0%}" if "mfu" in c else ""
        if name == "miniclip" and "speedup" in r:
            s = r["speedup"]
            extra += f"  x{s['median']:.2f} vs open_clip ({s['min']:.2f}-{s['max']:.2f})"
        if "gain" in c:
            extra += f"  gain x{c['gain']['median']:.2f}: {c['verdict']}"
        print(f"{head}  {name}: {c['median_s']:.3f} s/step, {c['samples_per_s']:.1f} samples/s  {extra}", flush=True)


def run_memory_bench(batch_sizes=(64, 128), arch: str | CLIPConfig = "small", precision: str = "fp32",
                     device: str = "cpu", out_dir: Path | None = RESULTS_DIR) -> dict:
    """Peak memory of one training step per contender (no timing rounds)."""
    results = {"environment": machine(), "runs": []}
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
        results["path"] = str(write_results(results, out_dir, f"memory-{arch_name(arch)}-{device}.json"))
    return results
