"""The ceiling a training step is measured against: its FLOPs, counted analytically (`step_flops`) and by
torch (`flop_counter`), this machine's measured matmul peak per precision (`matmul_peaks`), and the model FLOPs
utilisation (`mfu`) the two give."""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from miniclip.env import matmul_peak
from miniclip.experiments.store import derived_config
from miniclip.model import CLIPConfig


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


def matmul_peaks(precisions, device: str = "cpu", n: int = 2048, seconds: float = 2.0) -> dict[str, float]:
    """This machine's `matmul_peak` in GFLOP/s for each precision named ("fp32", "bf16")."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    return {p: matmul_peak(dtypes[p], n, seconds, device) for p in precisions}


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


def training_cost(config, tflops: float) -> dict:
    """What training `config` costs in FLOPs (`step_flops` over the full text context, an upper bound: the
    trainer runs only as far as each batch's longest caption), and the minutes that takes at a sustained
    `tflops` TFLOP/s: an estimate for a machine not at hand, never a measurement. `step_tflop` is a step at the
    model's resolution; `run_pflop` counts the steps of `data.low_res_steps` at their smaller size."""
    per_step = step_flops(config.model, config.optim.batch_size)["total"]
    low = config.data.low_res_steps  # steps at data.low_res_size px (RECLIP's schedule), if any
    low_res_model = dataclasses.replace(config.model, image_size=config.data.low_res_size or config.model.image_size)
    total = per_step * (config.optim.steps - low) + step_flops(low_res_model, config.optim.batch_size)["total"] * low
    return {"name": config.name, "profile": config.profile, "batch_size": config.optim.batch_size,
            "steps": config.optim.steps, "step_tflop": per_step / 1e12, "run_pflop": total / 1e15,
            "assumed_tflops": tflops, "minutes": total / (tflops * 1e12) / 60}


def experiment_runs(settings: dict) -> list[tuple[str, object, int]]:
    """The training runs of a profile's experiments (`configs/experiments/<profile>.yaml`, read by the caller),
    as (label, config, how many such runs). The three objectives are counted as three CLIP-sized runs (the
    predictive ones replace the text tower by a head, so this is an upper bound); timing and evaluation work is
    not counted. An estimate of what `make experiments` trains, for a machine not at hand."""
    def config(part: dict, extra: dict | None = None):
        return derived_config(part["base"], {**part.get("overrides", {}), **(extra or {})})

    runs = []
    for name, part in settings.items():
        if name == "encoders":
            seeds = len(part.get("seeds", [0]))
            runs += [(f"encoders: flickr8k {v}", config(part["flickr8k"], o), seeds)
                     for v, o in part["variants"].items()]
            runs.append(("encoders: shapes ViT", config(part["shapes_vit"]), 1))
        elif name == "lr_batch":
            for b in part["batch_sizes"]:
                steps = part["samples"] // b
                runs.append((f"lr_batch: batch {b}", config(part, {"optim.batch_size": b, "optim.steps": steps,
                                                                   "optim.warmup_steps": 0}), len(part["lrs"])))
        elif name != "throughput":  # throughput times a few steps; it trains nothing
            count = {"objectives": 3, "planted": len(part.get("rates", [])), "noisy": len(part.get("fractions", [])),
                     "relations": 2}.get(name, 1)
            runs.append((name, config(part), count))
    return runs

