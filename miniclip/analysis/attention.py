"""Where does the image encoder look? Attention maps, attention rollout, and a localisation score.

For a Vision Transformer, the class token's row of each layer's attention matrix says how much each patch
contributes to the class token at that layer, per head (`cls_attention`). One layer alone is a poor
explanation of the output: information also flows through the residual stream and mixes across layers.
**Attention rollout** (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers") accounts for
both: average the heads, add the identity for the residual connection, renormalise each row so it is a
distribution again, and multiply the layers' matrices together (`attention_rollout`).

OpenAI's ModifiedResNet has exactly one attention: its `AttentionPool2d`, where a single query (the mean
of the final feature map) attends over the final grid. `attnpool_attention` recomputes those weights from
the layer's own parameters. At 64 px the final grid is 2x2, so these maps are coarse.

The Shapes world knows every object's mask, which turns "the map looks right" into a number
(`localisation_scores`): the fraction of the map's mass inside the objects' masks, and the pointing game
(is the map's peak inside a mask?). Both are compared with what a map that ignores the image would get
(the masks' share of the picture), and `trained_vs_init` scores the same architecture freshly initialised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from miniclip.data.shapes import ShapesConfig, ShapesWorld
from miniclip.data.transforms import normalize
from miniclip.model import CLIP, capture_attention


@dataclass
class ViTAttention:
    """Per-layer, per-head attention weights of a ViT image encoder for a batch of images.

    `weights` is [layers, batch, heads, tokens, tokens]; token 0 is the class token and tokens 1… are the
    patches in row-major order of a `grid` x `grid` layout. Every row sums to 1."""

    weights: torch.Tensor
    grid: int

    def cls(self) -> torch.Tensor:
        """The class token's attention to the patches, [layers, batch, heads, grid, grid]."""
        return cls_attention(self.weights, self.grid)

    def rollout(self) -> torch.Tensor:
        """Attention rollout from the class token to the patches, [batch, grid, grid]."""
        return attention_rollout(self.weights, self.grid)


@torch.no_grad()
def vit_attention(model: CLIP, images: torch.Tensor) -> ViTAttention:
    """Run the ViT image encoder on normalised `images` [B, 3, H, W] and keep every layer's weights."""
    if not model.config.is_vit:
        raise ValueError("vit_attention needs a Vision Transformer; for a ModifiedResNet use attnpool_attention")
    device = next(model.parameters()).device
    with capture_attention(model.visual) as layers:
        model.encode_image(images.to(device))
        weights = torch.stack([layer.weights.float().cpu() for layer in layers])
    return ViTAttention(weights, model.config.image_size // model.config.patch_size)


def cls_attention(weights: torch.Tensor, grid: int) -> torch.Tensor:
    """[layers, B, heads, T, T] -> the class token's row over the patches, [layers, B, heads, grid, grid]."""
    return weights[..., 0, 1:].reshape(*weights.shape[:-2], grid, grid)


def attention_rollout(weights: torch.Tensor, grid: int) -> torch.Tensor:
    """Abnar & Zuidema's rollout: per layer A = mean over heads + I (the residual), rows renormalised;
    then R = A_L · … · A_1. Returns the class token's row of R over the patches, [B, grid, grid].

    The class token's own column is dropped, so the patch values sum to less than 1; `localisation_scores`
    renormalises a map before scoring it."""
    _, _, _, tokens, _ = weights.shape
    eye = torch.eye(tokens, dtype=weights.dtype)
    rollout = eye.expand(weights.shape[1], tokens, tokens)
    for layer in weights:  # first layer first: R_l = A_l · R_(l-1)
        a = layer.mean(dim=1) + eye
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a @ rollout
    return rollout[:, 0, 1:].reshape(-1, grid, grid)


@torch.no_grad()
def attnpool_attention(model: CLIP, images: torch.Tensor) -> torch.Tensor:
    """ModifiedResNet: the attention pool's weights from its single (mean) query to every cell of the final
    feature grid, [B, heads, grid, grid]. The weight the query gives to itself (the mean token) is left out,
    so each head's map sums to less than 1.

    Computed from the pool's own parameters on its actual input (caught with a forward hook), the same
    softmax(qkᵀ/√d) its fused kernel computes."""
    if model.config.is_vit:
        raise ValueError("attnpool_attention needs a ModifiedResNet; for a ViT use vit_attention")
    pool = model.visual.attnpool
    device = next(model.parameters()).device
    caught = {}
    handle = pool.register_forward_pre_hook(lambda module, args: caught.setdefault("x", args[0]))
    try:
        model.encode_image(images.to(device))
    finally:
        handle.remove()
    x = caught["x"].float()
    grid = x.shape[-1]
    x = x.flatten(2).transpose(1, 2)  # [B, HW, C], as AttentionPool2d.forward
    x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + pool.positional_embedding.float()
    b, length, c = x.shape
    d = c // pool.heads
    q = pool.q_proj(x[:, :1]).view(b, 1, pool.heads, d).transpose(1, 2)  # [B, heads, 1, d]
    k = pool.k_proj(x).view(b, length, pool.heads, d).transpose(1, 2)  # [B, heads, L, d]
    weights = ((q @ k.transpose(-2, -1)) / d**0.5).softmax(dim=-1)[:, :, 0]  # [B, heads, L]
    return weights[:, :, 1:].reshape(b, pool.heads, grid, grid).cpu()


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """[..., g, g] attention maps -> [..., size, size], bilinear, each map rescaled to keep its total mass.
    Bilinear (not nearest) so overlays look smooth; the mass is what the localisation score compares."""
    lead, g = maps.shape[:-2], maps.shape[-1]
    flat = maps.reshape(-1, 1, g, g).float()
    up = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False).clamp(min=0)
    total = flat.sum(dim=(-2, -1), keepdim=True)
    up = up / up.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-12) * total
    return up.reshape(*lead, size, size)


def localisation_scores(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Score attention maps [B, g, g] against boolean masks [B, H, W] (H == W, any multiple of g).

    - `mass_inside`: mean over images of the fraction of the (upsampled, renormalised) map's mass that
      falls inside the mask;
    - `mask_fraction`: the mean share of the picture the masks cover, what `mass_inside` is for a uniform
      map: the floor that score must beat to mean anything;
    - `pointing`: the pointing game, played at the map's own resolution: the fraction of images whose
      peak *cell* holds some of the mask. (Played on the upsampled map instead, a peak lands on one pixel of a
      coarse cell and misses an object that covers the cell's other corner, so even the mask itself would lose.)
    - `pointing_chance`: the mean share of cells the mask touches, what a peak in a random cell scores.
    """
    if maps.shape[0] != masks.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps but {masks.shape[0]} masks")
    grid, size = maps.shape[-1], masks.shape[-1]
    if size % grid:
        raise ValueError(f"mask size {size} is not a multiple of the map's grid {grid}")
    up = upsample(maps, size)
    up = up / up.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-12)
    masks = masks.to(up.device, torch.bool)
    inside = (up * masks).sum(dim=(-2, -1))
    touched = F.max_pool2d(masks[:, None].float(), size // grid)[:, 0] > 0  # [B, g, g]: cells holding the mask
    peak = maps.to(up.device).flatten(1).argmax(dim=1)
    pointing = touched.flatten(1).gather(1, peak[:, None])[:, 0]
    return {"mass_inside": inside.mean().item(), "mask_fraction": masks.float().mean(dim=(-2, -1)).mean().item(),
            "pointing": pointing.double().mean().item(), "pointing_chance": touched.double().mean().item(),
            "n": int(maps.shape[0])}


def image_attention_maps(model: CLIP, images: torch.Tensor, method: str = "rollout") -> torch.Tensor:
    """One map per image, [B, g, g]: ViT `"rollout"` or `"last"` (the last layer's class-token attention,
    mean over heads); for a ModifiedResNet, the attention pool's map averaged over heads (`method` ignored)."""
    if not model.config.is_vit:
        return attnpool_attention(model, images).mean(dim=1)
    attention = vit_attention(model, images)
    if method == "rollout":
        return attention.rollout()
    if method == "last":
        return attention.cls()[-1].mean(dim=1)
    raise ValueError(f"unknown method {method!r}; choose 'rollout' or 'last'")


@torch.no_grad()
def shapes_localisation(model: CLIP, n: int = 64, *, n_objects: int = 1, method: str = "rollout",
                        split: str = "test", world_seed: int = 0, batch_size: int = 64) -> dict[str, float]:
    """Localisation score of `model` on `n` Shapes test scenes of `n_objects` objects each.

    With one object, the mask is the named object's (every caption names it). With more, the image
    encoder's attention is not conditioned on any text, so the target is the union of all objects' masks.
    Scenes are rendered at the model's image size."""
    world = ShapesWorld(ShapesConfig(image_size=model.config.image_size, seed=world_seed))
    maps, masks = [], []
    for start in tqdm(range(0, n, batch_size), desc="localisation", leave=False):
        batch = world.render(range(start, min(start + batch_size, n)), split, n_objects=n_objects)
        maps.append(image_attention_maps(model, normalize(batch.images), method))
        masks.append(batch.masks.any(dim=1))
    used = method if model.config.is_vit else "attnpool"
    return localisation_scores(torch.cat(maps), torch.cat(masks)) | {"method": used, "n_objects": n_objects}


def fresh_init_like(model: CLIP, seed: int = 0) -> CLIP:
    """The same architecture at initialisation: a new CLIP with `model`'s config, initialised from `seed`
    without touching the global random state, on `model`'s device, in eval mode."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = CLIP(model.config)
    return fresh.to(device).eval()


def trained_vs_init(model: CLIP, n: int = 64, *, seed: int = 0, **kwargs) -> dict[str, dict]:
    """`shapes_localisation` of the trained `model` and of the same architecture freshly initialised
    (`fresh_init_like(model, seed)`), on the same scenes. Extra arguments go to `shapes_localisation`."""
    return {"trained": shapes_localisation(model, n, **kwargs),
            "init": shapes_localisation(fresh_init_like(model, seed), n, **kwargs)}
