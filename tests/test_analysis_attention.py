"""Attention maps against a softmax(QKᵀ/√d) computed here by hand from each layer's parameters; rollout
against a numpy brute force; the localisation score on maps whose answer is known."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from miniclip.analysis.attention import (
    attention_rollout,
    attnpool_attention,
    fresh_init_like,
    localisation_scores,
    shapes_localisation,
    trained_vs_init,
    upsample,
    vit_attention,
)
from miniclip.model import CLIP, CLIPConfig

TINY_VIT = CLIPConfig(embed_dim=32, image_size=32, vision_layers=2, vision_width=128, patch_size=8,
                      text_width=64, text_layers=1)  # 2 heads of 64
TINY_RESNET = CLIPConfig(embed_dim=32, image_size=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                         text_width=64, text_layers=1)  # attention pool over a 2x2 grid, 4 heads


def _model(config, seed=0):
    torch.manual_seed(seed)
    return CLIP(config).eval()


def _by_hand_vit_weights(model, images):
    """Every layer's attention weights, from the parameters alone, without the model's Attention module."""
    v = model.visual
    x = v.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(len(images), 1, -1), x], 1) + v.positional_embedding
    x = v.ln_pre(x)
    out = []
    for block in v.transformer.resblocks:
        h = F.layer_norm(x, (x.shape[-1],), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        width = h.shape[-1]
        heads = block.attn.heads
        d = width // heads
        q = h @ block.attn.in_proj_weight[:width].T + block.attn.in_proj_bias[:width]
        k = h @ block.attn.in_proj_weight[width:2 * width].T + block.attn.in_proj_bias[width:2 * width]
        weights = torch.empty(len(images), heads, h.shape[1], h.shape[1])
        for head in range(heads):
            qh, kh = q[..., head * d:(head + 1) * d], k[..., head * d:(head + 1) * d]
            weights[:, head] = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(d), dim=-1)
        out.append(weights)
        x = block(x)  # move on through the real block
    return torch.stack(out)


@torch.no_grad()
def test_vit_attention_equals_softmax_qk_by_hand():
    model = _model(TINY_VIT)
    images = torch.randn(3, 3, 32, 32)
    attention = vit_attention(model, images)
    assert attention.weights.shape == (2, 3, 2, 17, 17) and attention.grid == 4
    torch.testing.assert_close(attention.weights, _by_hand_vit_weights(model, images), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attention.weights.sum(-1), torch.ones(2, 3, 2, 17))
    # the class token's row over the patches, laid out on the patch grid
    torch.testing.assert_close(attention.cls()[1, 2, 0], attention.weights[1, 2, 0, 0, 1:].reshape(4, 4))
    # capturing must not change what the encoder computes
    torch.testing.assert_close(model.encode_image(images), model.encode_image(images))


@torch.no_grad()
def test_attnpool_attention_equals_softmax_qk_by_hand_and_reproduces_the_pool():
    model = _model(TINY_RESNET)
    images = torch.randn(2, 3, 64, 64)
    caught = {}
    handle = model.visual.layer4.register_forward_hook(lambda m, a, out: caught.setdefault("x", out))
    expected_output = model.encode_image(images)
    handle.remove()
    pool = model.visual.attnpool
    x = caught["x"].flatten(2).transpose(1, 2)
    x = torch.cat([x.mean(1, keepdim=True), x], 1) + pool.positional_embedding
    heads, d = pool.heads, x.shape[-1] // pool.heads
    q, k, v = pool.q_proj(x[:, :1]), pool.k_proj(x), pool.v_proj(x)
    by_hand = torch.stack([torch.softmax(q[..., h * d:(h + 1) * d] @ k[..., h * d:(h + 1) * d].transpose(1, 2)
                                         / math.sqrt(d), -1)[:, 0] for h in range(heads)], 1)  # [B, heads, 5]
    ours = attnpool_attention(model, images)
    assert ours.shape == (2, heads, 2, 2)
    torch.testing.assert_close(ours.flatten(2), by_hand[:, :, 1:], rtol=1e-5, atol=1e-6)
    # the full weights, applied to the values, give the pool's real output: they are the weights it uses
    mixed = torch.cat([by_hand[:, h:h + 1] @ v[..., h * d:(h + 1) * d] for h in range(heads)], -1)[:, 0]
    torch.testing.assert_close(pool.c_proj(mixed), expected_output, rtol=1e-4, atol=1e-5)


def _numpy_rollout(weights):
    weights = weights.numpy().astype(np.float64)
    layers, batch, heads, t, _ = weights.shape
    out = []
    for b in range(batch):
        r = np.eye(t)
        for layer in range(layers):
            a = weights[layer, b].mean(0) + np.eye(t)
            a = a / a.sum(1, keepdims=True)
            r = a @ r
        out.append(r[0, 1:])
    return np.stack(out)


def test_rollout_matches_numpy_brute_force():
    torch.manual_seed(0)
    weights = torch.softmax(torch.randn(3, 2, 4, 10, 10), dim=-1)
    rollout = attention_rollout(weights, 3)
    assert rollout.shape == (2, 3, 3)
    np.testing.assert_allclose(rollout.flatten(1).numpy(), _numpy_rollout(weights), rtol=1e-5)


def test_rollout_of_one_layer_that_attends_to_itself_stays_on_the_class_token():
    weights = torch.eye(5).expand(1, 1, 2, 5, 5)  # every token attends only to itself
    assert attention_rollout(weights, 2).abs().sum() == 0


def test_localisation_scores_on_known_maps():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True  # the top-left quarter
    peaked = torch.zeros(2, 2, 2)
    peaked[:, 0, 0] = 1.0  # all mass on the top-left cell of a 2x2 grid
    uniform = torch.ones(2, 2, 2)
    off = torch.zeros(2, 2, 2)
    off[:, 1, 1] = 1.0
    on = localisation_scores(peaked, masks)
    assert on["pointing"] == 1.0 and on["mass_inside"] > 0.7 and on["mask_fraction"] == 0.25
    assert localisation_scores(uniform, masks)["mass_inside"] == pytest.approx(0.25)
    far = localisation_scores(off, masks)
    assert far["pointing"] == 0.0 and far["mass_inside"] < 0.1
    # nearest-block upsampling would put exactly all the mass inside; bilinear keeps the total
    assert upsample(peaked, 8).sum(dim=(-2, -1)).allclose(torch.ones(2))
    assert on["pointing_chance"] == 0.25  # the mask touches one cell of four


def test_pointing_game_is_played_on_the_maps_own_grid():
    """An object straddling a cell's far corner still counts as found when the map peaks on that cell:
    the mask averaged down to the grid (the best map there is) must win every round, at any object position."""
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(32, 16, 16, dtype=torch.bool)
    for mask, (y, x) in zip(masks, torch.randint(0, 13, (32, 2), generator=generator)):
        mask[y:y + 3, x:x + 3] = True  # small objects, many across cell borders of a 4x4 grid
    oracle = F.avg_pool2d(masks[:, None].float(), 4)[:, 0]
    scores = localisation_scores(oracle, masks)
    assert scores["pointing"] == 1.0
    touched = F.max_pool2d(masks[:, None].float(), 4)[:, 0].flatten(1).sum(1) / 16
    assert scores["pointing_chance"] == pytest.approx(touched.mean().item())
    with pytest.raises(ValueError, match="multiple"):
        localisation_scores(oracle, masks[:, :15, :15])


def test_fresh_init_is_deterministic_and_leaves_global_rng_alone():
    model = _model(TINY_VIT, seed=5)
    state = torch.get_rng_state()
    a, b = fresh_init_like(model, seed=1), fresh_init_like(model, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.config == model.config
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.visual.conv1.weight, model.visual.conv1.weight)


def test_shapes_localisation_and_trained_vs_init_run_on_tiny_models():
    vit = _model(TINY_VIT)
    scores = trained_vs_init(vit, n=6, seed=1, batch_size=4)  # _model used seed 0: a different init
    for result in scores.values():
        assert 0 <= result["mass_inside"] <= 1 and result["pointing"] in {i / 6 for i in range(7)}
        assert 0 < result["mask_fraction"] < 0.5 and result["n"] == 6
    assert scores["trained"]["mass_inside"] != scores["init"]["mass_inside"]
    same = trained_vs_init(vit, n=2, seed=0)  # the same seed rebuilds the very same weights
    assert same["trained"] == same["init"]
    last = shapes_localisation(vit, n=4, method="last")
    assert last["method"] == "last"
    resnet = shapes_localisation(_model(TINY_RESNET), n=4, n_objects=2)
    assert resnet["n_objects"] == 2 and resnet["method"] == "attnpool" and 0 <= resnet["pointing"] <= 1
