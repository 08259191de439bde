"""CLIP: an image encoder and a text encoder that meet in one embedding space (Radford et al. 2021, §2.4).

Read top to bottom: the config, the shared transformer pieces, the two image encoders (a Vision
Transformer and OpenAI's modified ResNet), then `CLIP`, which adds the text tower and the learned
temperature, and finally `build_model`, which reads a checkpoint's shapes to rebuild the architecture.

Parameter names follow OpenAI's state-dict layout (which open_clip shares), so that real checkpoints load
without renaming. Everything runs batch-first, `[batch, tokens, width]`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass
class CLIPConfig:
    """Every size of a CLIP model. `vision_layers` picks the image encoder: an int is the depth of a
    Vision Transformer, a 4-tuple is the number of bottleneck blocks in each stage of a ModifiedResNet."""

    embed_dim: int = 512  # the shared embedding space both towers project into
    image_size: int = 224
    vision_layers: int | tuple[int, int, int, int] = 12
    vision_width: int = 768  # ViT: token width; ResNet: channels of the first stage (x32 at the end)
    patch_size: int = 32  # ViT only
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    head_width: int = 64  # OpenAI fixes 64 channels per attention head, so heads = width // 64
    # The text tower's kind. CLIP's is GPT-style: causal attention, read at the end-of-text token. The
    # BERT-style alternatives (Sec. 2.4 and the encoder comparison) attend both ways, padding masked out, and
    # read the start-of-text token ("first", BERT's [CLS]) or the mean over the caption's tokens ("mean").
    text_causal: bool = True
    text_pool: str = "eot"  # eot | first | mean
    quick_gelu: bool = True  # OpenAI's models use x * sigmoid(1.702 x); open_clip's non-"quickgelu" use GELU
    # The temperature's starting point, as the scale 1/T that multiplies the cosine similarities: CLIP starts at
    # 1/0.07 and learns it. A short run barely moves it (Adam moves its log by at most the learning rate a step),
    # so there the start is close to a fixed choice.
    logit_scale_init: float = 1 / 0.07

    @property
    def is_vit(self) -> bool:
        return isinstance(self.vision_layers, int)


# ----------------------------------------------------------------------------- shared pieces


class LayerNorm(nn.LayerNorm):
    """LayerNorm that always normalises in fp32: under bf16/fp16 autocast the mean and variance of a
    512-wide row lose too much precision, and torch's CPU autocast does not upcast layer_norm for us."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.to(x.dtype)


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that OpenAI trained with; weights trained with it need it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention on `F.scaled_dot_product_attention`, with `nn.MultiheadAttention`'s
    parameter names (`in_proj_weight`, `in_proj_bias`, `out_proj`): one fused matmul makes q, k and v.

    Setting `keep_weights = True` switches this one module to an explicit softmax(QKᵀ/√d) path that stores
    the per-head weights in `.weights` (see `capture_attention`). The normal path never pays for it."""

    def __init__(self, width: int, heads: int, causal: bool = False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        self.keep_weights, self.weights = False, None

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """`padding` [B, L] (bool, True at padding positions) hides those keys from every query; a causal
        tower never needs it, since no token before the end-of-text token can see what follows."""
        B, L, C = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, d]
        if self.keep_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            if self.causal:
                future = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(future, float("-inf"))
            if padding is not None:
                scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
            self.weights = scores.softmax(dim=-1)
            y = self.weights.to(v.dtype) @ v
        else:
            keep = None if padding is None else ~padding[:, None, None, :]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=self.causal)
        return self.out_proj(y.transpose(1, 2).reshape(B, L, C))


class ResidualAttentionBlock(nn.Module):
    """A pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)), MLP 4x wide."""

    def __init__(self, width: int, heads: int, act: type[nn.Module], causal: bool = False):
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = Attention(width, heads, causal)
        self.ln_2 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, 4 * width), gelu=act(), c_proj=nn.Linear(4 * width, width)))

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), padding)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, act: type[nn.Module], causal: bool = False):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, act, causal) for _ in range(layers))
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                # Keep only each block's input; recompute its activations in backward (memory for compute).
                x = checkpoint(block, x, padding, use_reentrant=False)
            else:
                x = block(x, padding)
        return x

    def init_weights(self):
        """GPT-2-style init, as OpenAI's CLIP: output projections scaled down by sqrt(2 * layers) so the
        residual stream's variance does not grow with depth."""
        proj_std = self.width**-0.5 * (2 * self.layers) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=self.width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.zeros_(block.attn.out_proj.bias)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * self.width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)


# ----------------------------------------------------------------------------- image encoders


def grid_positional_embedding(embedding: torch.Tensor, grid: int) -> torch.Tensor:
    """A [1 + g*g, C] position embedding (one leading token, then a g x g grid) for a `grid` x `grid` input.
    At the native grid it is returned as is (so the model stays identical to the reference); at another one
    the grid part is resized bicubically, which lets an encoder built for one resolution run at another:
    trained at a lower one first (`data.low_res_steps`, RECLIP's schedule), or evaluated at a higher one."""
    native = round((embedding.shape[0] - 1) ** 0.5)
    if grid == native:
        return embedding
    spatial = embedding[1:].reshape(1, native, native, -1).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial.float(), size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([embedding[:1], spatial.to(embedding.dtype).permute(0, 2, 3, 1).reshape(grid * grid, -1)])


class VisionTransformer(nn.Module):
    """ViT (Dosovitskiy et al. 2020) as CLIP uses it: patches by a strided conv, a learned class token,
    an extra LayerNorm before the transformer (`ln_pre`), and the class token's output projected."""

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int,
                 output_dim: int, act: type[nn.Module]):
        super().__init__()
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, act)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def init_weights(self):
        # OpenAI leaves the ViT's blocks at PyTorch's defaults; we give it the text tower's scaled init.
        self.transformer.init_weights()

    def forward(self, x: torch.Tensor, project: bool = True) -> torch.Tensor:
        """[B, output_dim] features; with `project=False` the class token's [B, width] before `proj`."""
        x = self.conv1(x)
        position = grid_positional_embedding(self.positional_embedding, x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # [B, grid*grid, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + position.to(x.dtype)
        x = self.ln_post(self.transformer(self.ln_pre(x))[:, 0])
        return self.project(x) if project else x

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The last linear map: the class token's [B, width] into the joint space [B, output_dim]."""
        return x @ self.proj


class Bottleneck(nn.Module):
    """ResNet bottleneck with OpenAI's anti-aliasing: a stride is an average pool after the 3x3 conv
    (Zhang 2019), never a strided conv, so downsampling blurs before it subsamples."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:  # the skip path must match shape: pool, then 1x1 conv
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(F.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class AttentionPool2d(nn.Module):
    """CLIP's replacement for global average pooling: one attention layer whose single query is the
    mean of the feature map, attending over every spatial position (with learned position embeddings)."""

    def __init__(self, spatial_dim: int, embed_dim: int, heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial_dim**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj, self.q_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim)
        self.v_proj, self.c_proj = nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, output_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor, project: bool = True) -> torch.Tensor:
        """[B, output_dim]; with `project=False` the pooled [B, C] before the output map `c_proj`."""
        position = grid_positional_embedding(self.positional_embedding, x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + position.to(x.dtype)
        B, L, C = x.shape
        heads = lambda t: t.view(B, -1, self.heads, C // self.heads).transpose(1, 2)  # noqa: E731
        # Only the mean token's output is used, so only it needs a query.
        q, k, v = heads(self.q_proj(x[:, :1])), heads(self.k_proj(x)), heads(self.v_proj(x))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, C)
        return self.project(y) if project else y

    def project(self, y: torch.Tensor) -> torch.Tensor:
        """The last linear map: the pooled [B, C] into the joint space [B, output_dim]."""
        return self.c_proj(y)


class ModifiedResNet(nn.Module):
    """OpenAI's ResNet: a 3-conv stem with an average pool instead of a max pool, anti-aliased
    bottlenecks, and attention pooling. Four stages of width w, 2w, 4w, 8w (x4 expansion) downsample 32x."""

    def __init__(self, layers: tuple[int, int, int, int], output_dim: int, heads: int, image_size: int,
                 width: int = 64):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width // 2)
        self.conv2, self.bn2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False), nn.BatchNorm2d(width // 2)
        self.conv3, self.bn3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(image_size // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * 4
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, project: bool = True) -> torch.Tensor:
        x = x.to(self.conv1.weight.dtype)
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.avgpool(x)))))
        return self.attnpool(x, project)

    def project(self, y: torch.Tensor) -> torch.Tensor:
        """The last linear map, the attention pool's `c_proj`: [B, 32 * width] into the joint space."""
        return self.attnpool.project(y)

    def init_weights(self):
        std = self.attnpool.c_proj.in_features**-0.5
        for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(proj.weight, std=std)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:  # each block starts as the identity: its residual branch outputs zero
                nn.init.zeros_(block.bn3.weight)


# ----------------------------------------------------------------------------- CLIP


def build_image_encoder(c: CLIPConfig, output_dim: int | None = None) -> nn.Module:
    """The image tower of config `c` (a ViT, or a ModifiedResNet when `vision_layers` is a tuple), projecting
    to `output_dim` (default: the joint embedding size). Call its `init_weights()` before training."""
    output_dim = output_dim or c.embed_dim
    if c.is_vit:
        act = QuickGELU if c.quick_gelu else nn.GELU
        return VisionTransformer(c.image_size, c.patch_size, c.vision_width, c.vision_layers,
                                 c.vision_width // c.head_width, output_dim, act)
    return ModifiedResNet(tuple(c.vision_layers), output_dim, c.vision_width * 32 // c.head_width, c.image_size,
                          c.vision_width)


def eot_trim_length(text: torch.Tensor) -> int:
    """The positions a batch of tokens needs: up to its longest caption's end-of-text token (which has the
    largest id), rounded up to a multiple of 8. Reading it synchronises with the tensor's device."""
    return min(text.shape[1], -(-(int(text.argmax(dim=-1).max()) + 1) // 8) * 8)


def trimmed_tokens(text: torch.Tensor) -> torch.Tensor:
    """`text` cut to `eot_trim_length` positions: what `CLIP.encode_text` would run anyway, decided where the
    tokens are (on the host, before they move to a GPU)."""
    return text[:, :eot_trim_length(text)]


class CLIP(nn.Module):
    """The two towers and the temperature. The text tower's parameters sit at the top level, as in
    OpenAI's layout: `token_embedding`, `positional_embedding`, `transformer`, `ln_final`, `text_projection`."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = c = config
        act = QuickGELU if c.quick_gelu else nn.GELU
        self.visual = build_image_encoder(c)
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(c.context_length, c.text_width))
        self.transformer = Transformer(c.text_width, c.text_layers, c.text_width // c.head_width, act,
                                       causal=c.text_causal)
        self.ln_final = LayerNorm(c.text_width)
        self.text_projection = nn.Parameter(torch.empty(c.text_width, c.embed_dim))
        # The temperature is learned as a log-scale, starting at 1/0.07 (§2.5) unless the config says otherwise.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(c.logit_scale_init)))
        # Run the text tower only up to the batch's longest caption (see encode_text). A switch only so
        # that `python -m miniclip bench` can measure what it saves; it never changes the features.
        self.trim_text = True
        self.init_weights()

    def init_weights(self):
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=self.config.text_width**-0.5)
        self.transformer.init_weights()
        self.visual.init_weights()

    def set_grad_checkpointing(self, enable: bool = True):
        self.transformer.grad_checkpointing = enable
        if self.config.is_vit:
            self.visual.transformer.grad_checkpointing = enable

    def encode_image(self, image: torch.Tensor, project: bool = True) -> torch.Tensor:
        """Unnormalised image features [B, embed_dim]. `project=False`: the image tower's representation before
        its last linear map into the joint space (the ViT's class token after `ln_post`; the ResNet's attention
        pool before `c_proj`), which is where the paper's linear probes read its ViTs."""
        return self.visual(image, project)

    def project_image(self, representation: torch.Tensor) -> torch.Tensor:
        """`encode_image(x, project=False)` mapped into the joint space: equal to `encode_image(x)`, so one pass
        through the image tower gives both representations."""
        return self.visual.project(representation)

    def text_positions(self, text: torch.Tensor) -> int:
        """How many positions `encode_text` runs the text tower over for this batch of tokens.

        Under the causal mask no token sees the positions after it, so the padding beyond the longest
        EOT in the batch cannot change any EOT feature: run only that far (rounded up to a multiple of 8,
        so that batches share a few shapes). Captions of ~15 tokens then cost ~24 positions, not 77.

        Tokens already shorter than the context were cut by the caller (`trimmed_tokens`, which the trainer
        applies on the host): they are run as they are, so that a GPU step never waits for this count."""
        if not self.trim_text or text.shape[1] < self.config.context_length:
            return text.shape[1]
        return eot_trim_length(text)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """Unnormalised text features [B, embed_dim], read at each sequence's end-of-text token (CLIP's tower;
        see `CLIPConfig.text_pool` for the BERT-style readings)."""
        eot = text.argmax(dim=-1)  # EOT has the largest id in the vocabulary
        n = self.text_positions(text)
        x = self.token_embedding(text[:, :n]) + self.positional_embedding[:n]
        positions = torch.arange(n, device=text.device)
        padding = None if self.config.text_causal else positions[None, :] > eot[:, None]
        x = self.transformer(x, padding)
        pool = self.config.text_pool
        if pool == "mean":  # over start-of-text ... end-of-text, the caption's own tokens, each normalised
            inside = (positions[None, :] <= eot[:, None]).to(x.dtype)
            x = (self.ln_final(x) * inside[..., None]).sum(1) / inside.sum(1, keepdim=True)
        else:  # one token per caption: normalise only that one
            x = self.ln_final(x[:, 0] if pool == "first" else x[torch.arange(x.shape[0], device=x.device), eot])
        return x @ self.text_projection

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled cosine similarities: (logits_per_image [B_img, B_txt], logits_per_text = its transpose)."""
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


@contextmanager
def capture_attention(model: nn.Module):
    """Within the block, every `Attention` in `model` stores its per-head weights [B, heads, L, L];
    yields the list of those modules, in forward order. Outside it, attention runs on the fused kernel."""
    modules = [m for m in model.modules() if isinstance(m, Attention)]
    for m in modules:
        m.keep_weights = True
    try:
        yield modules
    finally:
        for m in modules:
            m.keep_weights = False


# ----------------------------------------------------------------------------- loading checkpoints


def config_from_state_dict(sd: dict[str, torch.Tensor], quick_gelu: bool = True) -> CLIPConfig:
    """Read every size off the tensors' shapes, as OpenAI's `build_model` does."""
    def count(prefix: str, depth: int) -> int:
        return len({k.split(".")[depth] for k in sd if k.startswith(prefix)})

    if "visual.proj" in sd:  # Vision Transformer
        width, patch = sd["visual.conv1.weight"].shape[0], sd["visual.conv1.weight"].shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = dict(vision_layers=count("visual.transformer.resblocks.", 3), vision_width=width,
                      patch_size=patch, image_size=patch * grid)
    else:  # ModifiedResNet
        grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = dict(vision_layers=tuple(count(f"visual.layer{i}.", 2) for i in range(1, 5)),
                      vision_width=sd["visual.layer1.0.conv1.weight"].shape[0], image_size=grid * 32)
    return CLIPConfig(
        embed_dim=sd["text_projection"].shape[1], context_length=sd["positional_embedding"].shape[0],
        vocab_size=sd["token_embedding.weight"].shape[0], text_width=sd["ln_final.weight"].shape[0],
        text_layers=count("transformer.resblocks.", 2), quick_gelu=quick_gelu, **vision)


def build_model(state_dict: dict[str, torch.Tensor], quick_gelu: bool = True) -> CLIP:
    """Rebuild a CLIP from an OpenAI- or open_clip-format state dict and load it strictly (fp32, eval mode).
    The activation cannot be read off the weights: OpenAI's models use QuickGELU (the default), open_clip's
    models without "-quickgelu" in their name use GELU (`quick_gelu=False`)."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    for key in ("input_resolution", "context_length", "vocab_size"):  # metadata in OpenAI's JIT archives
        sd.pop(key, None)
    model = CLIP(config_from_state_dict(sd, quick_gelu))
    model.load_state_dict(sd, strict=True)
    return model.eval()
