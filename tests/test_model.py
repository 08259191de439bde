"""Our CLIP against open_clip's, on shared random weights: same features, same state-dict layout."""

import dataclasses
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from miniclip.bench.reference import open_clip_model, perturb_, small_vit_open_clip
from miniclip.model import (
    CLIP,
    CLIPConfig,
    LayerNorm,
    build_model,
    capture_attention,
    eot_trim_length,
    grid_positional_embedding,
    trimmed_tokens,
)

CAPTIONS = [
    "a dog runs across the grass .",
    "",
    "Two children, one in a red coat, play in the snow near a wooden fence & a frozen lake!",
    "word " * 100,  # longer than the context: truncated, EOT last
    "a photo of a cat",
]


def _compare(reference: torch.nn.Module, image_size: int, quick_gelu: bool, batch: int = 3):
    ours = build_model(reference.state_dict(), quick_gelu=quick_gelu)
    torch.manual_seed(1)
    images = torch.randn(batch, 3, image_size, image_size)
    text = open_clip.tokenize(CAPTIONS)
    with torch.no_grad():
        diffs = {}
        for name, x in (("image", images), ("text", text)):
            theirs = getattr(reference, f"encode_{name}")(x)
            mine = getattr(ours, f"encode_{name}")(x)
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
            diffs[name] = (mine - theirs).abs().max().item()
    return ours, diffs


@pytest.mark.parametrize("name,image_size", [("ViT-B-32-quickgelu", 224), ("RN50-quickgelu", 224)])
def test_matches_open_clip_pretrained_architectures(name, image_size):
    reference = open_clip_model(name)
    ours, diffs = _compare(reference, image_size, quick_gelu=True, batch=2)
    assert ours.config.is_vit == name.startswith("ViT")
    print(name, diffs)


def test_matches_open_clip_small_vit_with_gelu():
    reference = small_vit_open_clip(quick_gelu=False)
    ours, diffs = _compare(reference, 64, quick_gelu=False)
    assert ours.config == CLIPConfig(embed_dim=256, image_size=64, vision_layers=6, vision_width=256, patch_size=8,
                                     text_width=256, text_layers=4, quick_gelu=False)


def test_gradients_match_open_clip_in_training_mode():
    reference = small_vit_open_clip(quick_gelu=True).train()
    ours = build_model(reference.state_dict()).train()
    torch.manual_seed(2)
    images, text = torch.randn(4, 3, 64, 64), open_clip.tokenize(CAPTIONS[:4])

    def loss_of(model):
        logits = model.logit_scale.exp() * F.normalize(model.encode_image(images), dim=-1) @ F.normalize(
            model.encode_text(text), dim=-1).t()
        labels = torch.arange(4)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2

    loss_of(reference).backward()
    loss_of(ours).backward()
    theirs = dict(reference.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, rtol=1e-4, atol=1e-5, msg=name)


def test_state_dict_round_trips_and_loads_strictly():
    reference = small_vit_open_clip(quick_gelu=True)
    ours = build_model(reference.state_dict())
    assert set(ours.state_dict()) == set(reference.state_dict())
    again = build_model(ours.state_dict())
    for k, v in ours.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    # DDP checkpoints carry a "module." prefix; OpenAI's JIT archives carry three metadata entries.
    wrapped = {f"module.{k}": v for k, v in ours.state_dict().items()}
    wrapped.update(input_resolution=torch.tensor(64), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    build_model(wrapped)
    broken = dict(ours.state_dict())
    broken["visual.extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        build_model(broken)


def test_resnet_config_is_inferred():
    sd = open_clip_model("RN50-quickgelu").state_dict()
    cfg = build_model(sd).config
    assert (cfg.vision_layers, cfg.vision_width, cfg.image_size, cfg.embed_dim) == ((3, 4, 6, 3), 64, 224, 1024)


def test_forward_returns_symmetric_logits_and_initial_temperature():
    torch.manual_seed(0)
    model = CLIP(CLIPConfig(embed_dim=32, image_size=32, vision_layers=2, vision_width=64, patch_size=8,
                            text_width=64, text_layers=2))
    assert math.isclose(model.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-6)
    per_image, per_text = model(torch.randn(3, 3, 32, 32), open_clip.tokenize(CAPTIONS[:2]))
    assert per_image.shape == (3, 2) and torch.equal(per_text, per_image.t())
    hotter = CLIP(dataclasses.replace(model.config, logit_scale_init=30.0))  # another start, still learned
    assert math.isclose(hotter.logit_scale.exp().item(), 30.0, rel_tol=1e-6) and hotter.logit_scale.requires_grad


@pytest.mark.parametrize("vision_layers,width", [(2, 64), ((1, 1, 1, 1), 8)])
def test_the_image_representation_before_the_projection_is_what_the_last_linear_map_reads(vision_layers, width):
    torch.manual_seed(0)
    model = CLIP(CLIPConfig(embed_dim=32, image_size=64, vision_layers=vision_layers, vision_width=width,
                            patch_size=16, text_width=64, text_layers=1)).eval()
    images = torch.randn(3, 3, 64, 64)
    before = model.encode_image(images, project=False)
    v = model.visual
    if model.config.is_vit:  # the class token after ln_post, [B, width]
        assert before.shape == (3, width)
        projected = before @ v.proj
    else:  # the attention pool's output before c_proj, [B, 32 * width]
        assert before.shape == (3, 32 * width)
        projected = v.attnpool.c_proj(before)
    assert torch.allclose(projected, model.encode_image(images), atol=1e-6)


@pytest.mark.parametrize("vision_layers,width", [(2, 64), ((1, 1, 1, 1), 8)])
def test_an_image_encoder_runs_at_another_resolution_with_its_position_embeddings_resized(vision_layers, width):
    # What `data.low_res_steps` trains with: a model built for 64 px run on 32 px images uses its position grid
    # resized to the smaller one, and is then the model built for 32 px with that resized grid as its own.
    torch.manual_seed(0)
    config = CLIPConfig(embed_dim=32, image_size=64, vision_layers=vision_layers, vision_width=width,
                        patch_size=16, text_width=64, text_layers=1)
    model = CLIP(config).eval()
    small = CLIP(dataclasses.replace(config, image_size=32)).eval()
    pool = "attnpool." if not config.is_vit else ""
    state = model.state_dict()
    grid = 2 if config.is_vit else 1  # 32 px: 2 x 2 patches of 16, or a ResNet's 32x downsampled 1 x 1 map
    state[f"visual.{pool}positional_embedding"] = grid_positional_embedding(
        state[f"visual.{pool}positional_embedding"], grid)
    small.load_state_dict(state)
    images = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(model.encode_image(images), small.encode_image(images), rtol=0, atol=1e-6)
    assert model.encode_image(torch.randn(2, 3, 96, 96)).shape == (2, 32)  # and at a larger one
    model.train().encode_image(images).sum().backward()  # the native grid learns from the smaller images
    assert state[f"visual.{pool}positional_embedding"].shape[0] == grid * grid + 1
    embedding = model.state_dict()[f"visual.{pool}positional_embedding"]
    native_grad = dict(model.named_parameters())[f"visual.{pool}positional_embedding"].grad
    assert native_grad is not None and native_grad[1:].abs().sum() > 0
    assert grid_positional_embedding(embedding, round((embedding.shape[0] - 1) ** 0.5)) is embedding


def test_resized_position_embeddings_keep_the_leading_token_constants_and_what_varies_along_one_axis_only():
    torch.manual_seed(0)
    lead = torch.randn(1, 4)
    constant = torch.cat([lead, torch.ones(9, 4) * torch.tensor([1.0, -2.0, 0.5, 3.0])])
    for grid in (2, 5):
        resized = grid_positional_embedding(constant, grid)
        assert resized.shape == (grid * grid + 1, 4) and torch.equal(resized[0], lead[0])
        torch.testing.assert_close(resized[1:], constant[1:2].expand(grid * grid, 4))
    by_column = torch.cat([lead, torch.randn(1, 3, 4).expand(3, 3, 4).reshape(9, 4)])  # rows all alike
    rows = grid_positional_embedding(by_column, 5)[1:].reshape(5, 5, 4)
    torch.testing.assert_close(rows, rows[:1].expand(5, 5, 4))  # still alike: no mixing across the other axis


def test_text_padding_beyond_the_longest_eot_is_never_computed():
    """Running only up to the longest EOT (rounded up to 8) gives the features of the full 77 positions."""
    torch.manual_seed(0)
    model = CLIP(CLIPConfig(embed_dim=32, image_size=32, vision_layers=1, vision_width=64, patch_size=8,
                            text_width=64, text_layers=2)).eval()
    text = open_clip.tokenize(["a dog", "a dog on a beach"])
    seen = []
    handle = model.transformer.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    with torch.no_grad():
        trimmed = model.encode_text(text)
        full = model.ln_final(model.transformer(model.token_embedding(text) + model.positional_embedding))
        full = full[torch.arange(2), text.argmax(-1)] @ model.text_projection
    handle.remove()
    assert seen[0] == 8
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-6)


def test_captured_attention_weights_equal_a_direct_softmax():
    torch.manual_seed(0)
    model = CLIP(CLIPConfig(embed_dim=32, image_size=32, vision_layers=2, vision_width=128, patch_size=8,
                            text_width=128, text_layers=2)).eval()
    perturb_(model)
    images, text = torch.randn(2, 3, 32, 32), open_clip.tokenize(CAPTIONS[:2])
    block = model.visual.transformer.resblocks[1]
    inputs = []
    handle = block.ln_1.register_forward_hook(lambda m, i, o: inputs.append(o))
    with torch.no_grad():
        plain_image, plain_text = model.encode_image(images), model.encode_text(text)
        with capture_attention(model) as attns:
            image_features, text_features = model.encode_image(images), model.encode_text(text)
    handle.remove()
    torch.testing.assert_close(image_features, plain_image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(text_features, plain_text, rtol=1e-5, atol=1e-5)
    assert all(not a.keep_weights for a in attns)

    x = inputs[-1]  # the normalised input of the block's attention
    q, k, _ = F.linear(x, block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, dim=-1)
    q, k = (t.view(2, -1, 2, 64).transpose(1, 2) for t in (q, k))  # 128 wide = 2 heads of 64
    direct = torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1)
    torch.testing.assert_close(block.attn.weights, direct, rtol=1e-5, atol=1e-6)
    assert block.attn.weights.shape == (2, 2, 17, 17)  # 16 patches + class token
    text_weights = model.transformer.resblocks[0].attn.weights
    assert torch.all(text_weights.triu(1) == 0)  # causal: no token attends to the future


def test_layernorm_computes_in_fp32_under_autocast():
    ln = LayerNorm(64)
    torch.nn.init.normal_(ln.weight)
    x = (torch.randn(4, 64) * 50 + 1000).bfloat16()
    expected = F.layer_norm(x.float(), (64,), ln.weight, ln.bias).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ln(x)
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    config = CLIPConfig(embed_dim=32, image_size=32, vision_layers=2, vision_width=64, patch_size=8,
                        text_width=64, text_layers=2)
    plain, ckpt = CLIP(config), CLIP(config)
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing(True)
    images, text = torch.randn(2, 3, 32, 32), open_clip.tokenize(CAPTIONS[:2])
    for m in (plain, ckpt):
        m(images, text)[0].sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_the_stable_interfaces_are_importable_from_the_package():
    import miniclip

    assert miniclip.tokenize("a dog").shape == (1, 77)
    assert torch.equal(miniclip.tokenize(["a dog"], context_length=32), open_clip.tokenize(["a dog"], 32))
    f = F.normalize(torch.randn(4, 8), dim=-1)
    assert miniclip.ClipLoss()(f, f, torch.tensor(10.0)).ndim == 0
    assert miniclip.build_model is build_model


def test_tokens_trimmed_on_the_host_give_the_same_features_without_a_second_count():
    """`trimmed_tokens` cuts where `encode_text` would; tokens already shorter than the context run as given."""
    torch.manual_seed(0)
    model = CLIP(CLIPConfig(embed_dim=32, image_size=32, vision_layers=1, vision_width=64, patch_size=8,
                            text_width=64, text_layers=2)).eval()
    text = open_clip.tokenize(["a dog", "a dog on a beach"])
    short = trimmed_tokens(text)
    assert short.shape == (2, eot_trim_length(text)) == (2, 8)
    assert model.text_positions(short) == 8
    assert model.text_positions(torch.cat([short, short], 1)) == 16  # shorter than 77: taken as cut by the caller
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(short), model.encode_text(text), rtol=0, atol=0)


def _text_tower(causal: bool, pool: str) -> CLIP:
    torch.manual_seed(0)
    model = CLIP(CLIPConfig(embed_dim=32, image_size=32, vision_layers=1, vision_width=64, patch_size=8,
                            text_width=64, text_layers=2, text_causal=causal, text_pool=pool)).eval()
    perturb_(model)
    return model


@pytest.mark.parametrize("pool", ["eot", "first", "mean"])
def test_bidirectional_text_towers_match_a_direct_computation_with_padding_masked(pool):
    model = _text_tower(False, pool)
    text = open_clip.tokenize(["a dog", "a dog runs on a long sandy beach"])
    eot = text.argmax(-1)
    with torch.no_grad():
        features = model.encode_text(text)
        # Each caption alone, without any padding: what the masked batch must give.
        alone = []
        for row, end in zip(text, eot.tolist()):
            x = model.token_embedding(row[None, :end + 1]) + model.positional_embedding[:end + 1]
            x = model.ln_final(model.transformer(x))[0]
            alone.append({"eot": x[end], "first": x[0], "mean": x.mean(0)}[pool] @ model.text_projection)
    torch.testing.assert_close(features, torch.stack(alone), rtol=1e-5, atol=1e-5)


def test_a_bidirectional_tower_reads_later_words_at_the_first_token_and_a_causal_one_cannot():
    text = open_clip.tokenize(["a dog on the grass", "a dog on the beach"])  # differ only in the last word
    for causal, differs in ((True, False), (False, True)):
        with torch.no_grad():
            first = _text_tower(causal, "first").encode_text(text)
        assert (not torch.allclose(first[0], first[1])) == differs, causal


def test_bidirectional_text_gradients_reach_every_text_parameter():
    model = _text_tower(False, "mean").train()
    model.encode_text(open_clip.tokenize(CAPTIONS)).pow(2).sum().backward()
    text_params = [n for n, _ in model.named_parameters() if not n.startswith("visual") and n != "logit_scale"]
    assert all(model.get_parameter(n).grad is not None and model.get_parameter(n).grad.abs().sum() > 0
               for n in text_params)
