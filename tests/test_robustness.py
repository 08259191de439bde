"""Corruptions (shape, range, determinism, monotone severity), effective robustness and the style-shift table."""

import math

import numpy as np
import pytest
import torch

from miniclip.eval.robustness import (
    CORRUPTIONS,
    corrupt,
    corruption_fn,
    effective_robustness,
    gaussian_blur,
    psnr,
    robustness_table,
)


def smooth_images(n=4, size=32, seed=0):
    """Photo-like test images: smooth colour gradients with a few edges, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    images[:, :, size // 3: size // 2, :] *= 0.3  # a dark band: an edge for blur and JPEG to soften
    return images.clamp(0, 1)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_keep_shape_dtype_range_and_are_deterministic(name):
    images = smooth_images()
    for severity in (1, 2, 3):
        out = corrupt(images, name, severity, seed=5)
        assert out.shape == images.shape and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, corrupt(images, name, severity, seed=5))
        assert not torch.equal(out, images)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_higher_severity_means_lower_psnr(name):
    images = smooth_images(size=64)
    quality = [psnr(images, corrupt(images, name, s, seed=0)).mean().item() for s in (1, 2, 3)]
    assert quality[0] > quality[1] > quality[2], quality


def test_noise_depends_on_the_seed_and_the_batch_position():
    images = smooth_images()
    fn = corruption_fn("gaussian_noise", 2, seed=0)
    assert torch.equal(fn(images, 0), fn(images, 0))
    assert not torch.equal(fn(images, 0), fn(images, 4))
    assert not torch.equal(corrupt(images, "gaussian_noise", 2, seed=0), corrupt(images, "gaussian_noise", 2, seed=1))
    # Its strength is what the severity says: the residual's standard deviation (away from clipping) is sigma.
    grey = torch.full((8, 3, 32, 32), 0.5)
    residual = corrupt(grey, "gaussian_noise", 1, seed=0) - grey
    assert residual.std().item() == pytest.approx(CORRUPTIONS["gaussian_noise"][0], rel=0.05)


def test_contrast_keeps_each_images_mean_and_scales_deviations():
    images = smooth_images() * 0.5 + 0.25  # away from the clip limits
    out = corrupt(images, "contrast", 2)
    factor = CORRUPTIONS["contrast"][1]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(out, mean + factor * (images - mean), atol=1e-6)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), mean.flatten(), atol=1e-6)


def test_blur_matches_a_numpy_separable_gaussian_and_scales_with_image_size():
    images = smooth_images(n=1, size=32)
    sigma = 1.2
    out = gaussian_blur(images, sigma)
    radius = math.ceil(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    a = np.pad(images[0].numpy().astype(np.float64), ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    rows = np.stack([np.convolve(r, kernel, mode="valid") for r in a.reshape(-1, a.shape[-1])]).reshape(3, -1, 32)
    cols = np.stack([np.convolve(c, kernel, mode="valid") for c in rows.transpose(0, 2, 1).reshape(-1, rows.shape[1])])
    reference = cols.reshape(3, 32, 32).transpose(0, 2, 1)
    assert np.allclose(out[0].numpy(), reference, atol=1e-5)
    # The same severity blurs a 2x larger picture of the same scene by a 2x wider kernel: downsampling the
    # blurred 64-px picture gives (nearly) the blurred 32-px one.
    big = torch.nn.functional.interpolate(images, scale_factor=2, mode="bilinear", align_corners=False)
    small_again = torch.nn.functional.avg_pool2d(gaussian_blur(big, sigma), 2)
    assert (small_again - out).abs().mean() < 0.01


def test_jpeg_is_what_torchvision_decodes_and_changes_the_image():
    from torchvision.io import decode_jpeg, encode_jpeg

    images = smooth_images(n=2)
    out = corrupt(images, "jpeg", 3)
    pixels = (images[1] * 255).round().to(torch.uint8)
    assert torch.equal((out[1] * 255).round().to(torch.uint8), decode_jpeg(encode_jpeg(pixels, quality=5)))


def test_unknown_corruption_or_severity_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(smooth_images(), "snow", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(smooth_images(), "jpeg", 4)


# ----------------------------------------------------------------------------- effective robustness


def test_effective_robustness_is_the_distance_above_the_logit_line_of_the_family():
    def logit(p):
        return math.log(p / (1 - p))

    def sigmoid(z):
        return 1 / (1 + math.exp(-z))

    # A family on the line logit(shifted) = 0.8 logit(clean) - 1, and a zero-shot point above it.
    family = [dict(classifier=f"p{c}", family="probe", shift="s", clean=c, shifted=sigmoid(0.8 * logit(c) - 1))
              for c in (0.3, 0.5, 0.7, 0.9)]
    zero_shot = dict(classifier="zs", family="zero-shot", shift="s", clean=0.6, shifted=0.5)
    rows = effective_robustness(family + [zero_shot])
    expected = sigmoid(0.8 * logit(0.6) - 1)
    assert rows[-1]["expected"] == pytest.approx(expected)
    assert rows[-1]["effective_robustness"] == pytest.approx(0.5 - expected)
    assert all(r["effective_robustness"] == pytest.approx(0, abs=1e-9) for r in rows[:-1])
    assert rows[0]["fit"] == [pytest.approx(0.8), pytest.approx(-1)]
    lone = effective_robustness([family[0], zero_shot])  # one baseline point: no line, no number
    assert lone[-1]["effective_robustness"] is None


def test_robustness_table_rows_from_features():
    from miniclip.eval.probes import fit_logistic, prepare_features

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 6, generator=g) * 3
    y = torch.arange(3).repeat(20)
    clean = centres[y] + torch.randn(60, 6, generator=g)
    shifted = centres[y] + 3 * torch.randn(60, 6, generator=g)  # the same classes, noisier
    probe = fit_logistic(prepare_features(clean), y.numpy(), C=1.0)
    weak = fit_logistic(prepare_features(clean[:6]), y[:6].numpy(), C=0.01)
    rows = robustness_table(torch.nn.functional.normalize(centres, dim=-1), [("weak", weak), ("linear probe", probe)],
                            (clean, y), {"noise": (shifted, y)})
    assert [r["classifier"] for r in rows] == ["zero-shot", "weak", "linear probe"]
    by_name = {r["classifier"]: r for r in rows}
    assert by_name["linear probe"]["clean"] == pytest.approx(probe.score(prepare_features(clean), y.numpy()))
    assert by_name["linear probe"]["shifted"] < by_name["linear probe"]["clean"]
    assert all(0 <= r["shifted"] <= 1 for r in rows)


def test_shapes_style_shift_on_a_tiny_model(tmp_path):
    from miniclip.data.shapes import ShapesConfig, ShapesWorld
    from miniclip.eval.features import FeatureCache
    from miniclip.eval.robustness import shapes_style_features, shapes_style_shift
    from miniclip.model import CLIP, CLIPConfig

    torch.manual_seed(0)
    model = CLIP(CLIPConfig(embed_dim=16, image_size=32, vision_layers=1, vision_width=64, patch_size=16,
                            text_width=64, text_layers=1)).eval()
    world = ShapesWorld(ShapesConfig(image_size=32))
    cache = FeatureCache(tmp_path)
    out = shapes_style_shift(model, world, kinds=("colour",), n_train=32, n_val=16, n_test=16, shots=(1,),
                             cache=cache)
    result = out["kinds"]["colour"]
    assert set(result["summary"]) == {"flat", "photo", "sketch", "noisy"}
    assert [r["classifier"] for r in result["rows"][:3]] == ["zero-shot", "1-shot probe", "linear probe"]
    assert cache.misses == 2 * 2 + 4  # train and val in the two source styles, test in all four
    # The test images of a style are the same scenes the world renders, and a second look is a cache hit.
    features, scenes = shapes_style_features(model, world, "sketch", "test", 16, cache)
    assert cache.hits == 1 and features.shape == (16, 16)
    assert torch.equal(world.labels(scenes, "colour"),
                       world.labels(world.render(range(16), "test", n_objects=1, style="sketch"), "colour"))


def test_corruption_robustness_on_a_tiny_intel_scenes_set_and_a_clear_error_when_too_many_are_asked(
        tmp_path, monkeypatch):
    from conftest import write_intel_scenes
    from miniclip.config import load_config
    from miniclip.eval.features import FeatureCache
    from miniclip.eval.robustness import corruption_robustness
    from miniclip.model import CLIP

    write_intel_scenes(tmp_path / "data" / "intel-scenes" / "test", per_class=20)
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path / "data"))
    torch.manual_seed(0)
    model = CLIP(load_config("configs/ci.yaml").model).eval()
    cache = FeatureCache(tmp_path / "cache")
    # The probes' test part holds 30% of each class (6 of 20): 36 balanced images at most.
    with pytest.raises(ValueError, match="--n-shifted 36 or less"):
        corruption_robustness(model, "intel-scenes", cache=cache, n_shifted=60, shots=(1, 2))
    result = corruption_robustness(model, "intel-scenes", cache=cache, n_shifted=36, shots=(1, 2),
                                   corruptions=["contrast"], severities=(1, 3))
    assert result["n_shifted"] == 36 and set(result["summary"]) == {"contrast@1", "contrast@3"}
    for shift in result["summary"].values():
        assert 0 <= shift["zero_shot_shifted"] <= 1 and 0 <= shift["probe_shifted"] <= 1
