"""open_clip as an oracle: reference models with random (perturbed, seeded) weights for tests and benchmarks.

open_clip is never a runtime dependency of miniclip; it is installed with the `test` extra. Weights are
perturbed after open_clip's init because its init leaves many tensors at exactly 0 or 1 (biases, LayerNorm
gains, BatchNorm statistics, the last BatchNorm of every ResNet block), where a wrong formula or a swapped
name could still give the right answer.
"""

from __future__ import annotations

import torch
from torch import nn

from miniclip.errors import MissingDependency, UsageError
from miniclip.model import CLIPConfig


def require_open_clip():
    """The `open_clip` module, or a `MissingDependency` that says how to install it."""
    try:
        # open_clip is optional (the `test` extra), so it is imported only when a reference is asked for.
        import open_clip
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependency("this needs open_clip, the reference implementation, which is not installed "
                                "(pip install -e '.[test]')") from e
    return open_clip


@torch.no_grad()
def perturb_(model: nn.Module, scale: float = 0.02, seed: int = 0) -> nn.Module:
    """Add seeded noise to every parameter and BatchNorm statistic (variances kept positive), in place."""
    g = torch.Generator().manual_seed(seed)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if not t.is_floating_point() or name.endswith("attn_mask"):
            continue
        noise = torch.randn(t.shape, generator=g, dtype=torch.float32).to(t)
        if name.endswith("running_var"):
            t.mul_(1 + 0.1 * noise.abs())
        else:
            t.add_(scale * noise)
    return model


def open_clip_config(config: CLIPConfig) -> dict:
    """One of our architectures as an open_clip model config (the JSON form `open_clip.add_model_config` reads,
    whose `vision_cfg` and `text_cfg` are `CLIPVisionCfg` and `CLIPTextCfg` keyword arguments). open_clip's text
    tower is CLIP's, so a BERT-style one is refused."""
    if not (config.text_causal and config.text_pool == "eot"):
        raise UsageError("open_clip's text tower is CLIP's (causal, read at the end-of-text token); this config "
                         "has another (use model.text_causal true and model.text_pool eot)")
    vision = {"image_size": config.image_size, "width": config.vision_width, "head_width": config.head_width,
              "layers": config.vision_layers if config.is_vit else list(config.vision_layers),
              "patch_size": config.patch_size}
    text = {"context_length": config.context_length, "vocab_size": config.vocab_size, "width": config.text_width,
            "heads": config.text_width // config.head_width, "layers": config.text_layers}
    return {"embed_dim": config.embed_dim, "quick_gelu": config.quick_gelu, "vision_cfg": vision, "text_cfg": text}


def open_clip_model(name: str, seed: int = 0) -> nn.Module:
    """An open_clip model by name (e.g. "ViT-B-32-quickgelu", "RN50-quickgelu"), random weights, eval mode."""
    torch.manual_seed(seed)
    model = require_open_clip().create_model(name, pretrained=None)
    return perturb_(model, seed=seed).eval()


def small_vit_open_clip(quick_gelu: bool = True, seed: int = 0, image_size: int = 64, width: int = 256,
                        vision_layers: int = 6, text_layers: int = 4, patch_size: int = 8) -> nn.Module:
    """The small ViT the CPU benchmarks use: 64 px, patch 8, width 256, 6 vision + 4 text layers."""
    oc = require_open_clip()
    torch.manual_seed(seed)
    model = oc.model.CLIP(
        embed_dim=width,
        vision_cfg=oc.model.CLIPVisionCfg(layers=vision_layers, width=width, patch_size=patch_size,
                                          image_size=image_size, head_width=64),
        text_cfg=oc.model.CLIPTextCfg(context_length=77, vocab_size=49408, width=width, heads=width // 64,
                                      layers=text_layers),
        quick_gelu=quick_gelu,
    )
    return perturb_(model, seed=seed).eval()
