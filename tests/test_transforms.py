"""Colour modes, decoding faults, CLIP's preprocessing and batching (no data files needed)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from miniclip.data import transforms as tr
from miniclip.data.transforms import (
    OPENAI_MEAN,
    OPENAI_STD,
    PairCollator,
    RandomResizedCrop,
    SharedInt,
    ToNormalizedTensor,
    eval_transform,
    load_image,
    to_rgb,
    train_transform,
)

W, H = 20, 12  # deliberately not square, so size mix-ups show


def _jpeg_bytes(size=(W, H), colour=(200, 30, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _palette_with_transparency() -> Image.Image:
    img = Image.new("P", (W, H), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (made transparent), 1 red
    img.paste(1, (0, 0, W // 2, H))  # left half red, right half transparent
    img.info["transparency"] = 0
    return img


# mode name -> (image, expected RGB of pixel (W-1, 0)). The expected values say what "correct" means per mode.
CASES = {
    "1": (Image.new("1", (W, H), 1), (255, 255, 255)),
    "L": (Image.new("L", (W, H), 77), (77, 77, 77)),
    "LA transparent": (Image.new("LA", (W, H), (0, 0)), (255, 255, 255)),
    "P": (Image.new("RGB", (W, H), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE), (0, 128, 255)),
    "P transparent": (_palette_with_transparency(), (255, 255, 255)),
    "RGBA opaque": (Image.new("RGBA", (W, H), (10, 20, 30, 255)), (10, 20, 30)),
    "RGBA transparent": (Image.new("RGBA", (W, H), (0, 0, 0, 0)), (255, 255, 255)),
    "RGBA half": (Image.new("RGBA", (W, H), (255, 0, 0, 128)), (255, 127, 127)),
    "CMYK white": (Image.new("CMYK", (W, H), (0, 0, 0, 0)), (255, 255, 255)),
    "CMYK black": (Image.new("CMYK", (W, H), (0, 0, 0, 255)), (0, 0, 0)),
    "I;16 mid-grey": (Image.fromarray(np.full((H, W), 32768, np.uint16)), (128, 128, 128)),
    "I;16 white": (Image.fromarray(np.full((H, W), 65535, np.uint16)), (255, 255, 255)),
    "I 16-bit": (Image.fromarray(np.full((H, W), 32768, np.int32)), (128, 128, 128)),
    "I 8-bit": (Image.fromarray(np.full((H, W), 200, np.int32)), (200, 200, 200)),
    "F 0..1": (Image.fromarray(np.full((H, W), 0.5, np.float32)), (128, 128, 128)),
    "F 0..255": (Image.fromarray(np.full((H, W), 100.0, np.float32)), (100, 100, 100)),
    "YCbCr": (Image.new("RGB", (W, H), (50, 100, 150)).convert("YCbCr"), (50, 100, 150)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_to_rgb_every_mode(case):
    img, expected = CASES[case]
    rgb = to_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == (W, H)
    got = rgb.getpixel((W - 1, 0))
    # Within 4 levels: Pillow's YCbCr round trip is off by up to 3.
    assert all(abs(g - e) <= 4 for g, e in zip(got, expected)), (case, img.mode, got, expected)
    x = eval_transform(8)(img)
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and torch.isfinite(x).all()


def test_palette_transparency_keeps_opaque_colour():
    rgb = to_rgb(_palette_with_transparency())
    assert rgb.getpixel((0, 0)) == (255, 0, 0) and rgb.getpixel((W - 1, 0)) == (255, 255, 255)


def test_sixteen_bit_gradient_is_not_clipped():
    # Pillow's own convert("L") clips 16-bit values at 255: a gradient would come out almost all white.
    ramp = np.linspace(0, 65535, W * H).reshape(H, W).astype(np.uint16)
    a = np.asarray(to_rgb(Image.fromarray(ramp)))[..., 0]
    assert a.min() == 0 and a.max() == 255 and 120 <= a.mean() <= 135


def test_wide_range_float_and_int_are_stretched():
    for arr in (np.linspace(-5, 5, W * H, dtype=np.float32), np.linspace(-1e6, 1e6, W * H).astype(np.int32)):
        a = np.asarray(to_rgb(Image.fromarray(arr.reshape(H, W))))[..., 0]
        assert a.min() == 0 and a.max() == 255


def test_rgb_is_returned_unchanged():
    img = Image.new("RGB", (W, H))
    assert to_rgb(img) is img


def test_to_normalized_tensor_is_bit_identical_to_torchvision():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    reference = T.Compose([T.ToTensor(), T.Normalize(OPENAI_MEAN, OPENAI_STD)])(img)
    assert torch.equal(ToNormalizedTensor()(img), reference)


def test_eval_transform_matches_openai_preprocessing():
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    openai = T.Compose(
        [
            T.Resize(32, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(32),
            lambda im: im.convert("RGB"),
            T.ToTensor(),
            T.Normalize(OPENAI_MEAN, OPENAI_STD),
        ]
    )
    assert torch.equal(eval_transform(32)(img), openai(img))


def test_train_transform_shape_and_seeded_determinism():
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    t = train_transform(16)
    torch.manual_seed(5)
    a = t(img)
    torch.manual_seed(5)
    b = t(img)
    assert a.shape == (3, 16, 16) and torch.equal(a, b)
    assert t.draft_size == 16 and eval_transform(16).draft_size == 16


def test_random_resized_crop_boxes_stay_inside_and_respect_scale():
    crop = RandomResizedCrop(8, scale=(0.5, 1.0))
    torch.manual_seed(0)
    for width, height in [(160, 120), (30, 200), (7, 7)]:
        areas = []
        for _ in range(200):
            left, top, right, bottom = crop.box(width, height)
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            areas.append((right - left) * (bottom - top) / (width * height))
        if (width, height) == (160, 120):  # away from rounding effects, the area fraction is in range
            assert 0.48 <= min(areas) and max(areas) <= 1.0 and max(areas) - min(areas) > 0.3


def test_load_image_decodes_bytes_paths_and_files(tmp_path):
    data = _jpeg_bytes()
    path = tmp_path / "ok.jpg"
    path.write_bytes(data)
    for source in (data, path, str(path), io.BytesIO(data)):
        img = load_image(source)
        assert img.mode == "RGB" and img.size == (W, H)


def test_load_image_draft_downscales_large_jpegs():
    big = _jpeg_bytes(size=(400, 300))
    assert load_image(big, draft_size=64).size == (100, 75)  # 1/4: the smallest reduction keeping both >= 64
    assert load_image(big).size == (400, 300)
    buf = io.BytesIO()
    Image.new("CMYK", (400, 300), (0, 255, 255, 0)).save(buf, "JPEG")  # print-workflow JPEG: pure red
    cmyk = load_image(buf.getvalue(), draft_size=64)
    assert cmyk.mode == "RGB" and cmyk.size == (100, 75) and cmyk.getpixel((5, 5)) == (255, 0, 0)


def test_truncated_and_garbage_are_none_and_counted(tmp_path):
    data = _jpeg_bytes(size=(64, 64))
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2])
    garbage = np.random.default_rng(3).integers(0, 256, 500, dtype=np.uint8).tobytes()
    before = tr.decode_failures.value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the once-per-process warning; counted below instead
        assert load_image(data[: len(data) // 2]) is None
        assert load_image(bad) is None
        assert load_image(garbage) is None
        assert load_image(b"") is None
        assert load_image(tmp_path / "does-not-exist.jpg") is None
    assert tr.decode_failures.value == before + 5


def test_collate_drops_nones_and_counts():
    collate = PairCollator()
    x = torch.zeros(3, 4, 4)
    images, captions = collate([(x, "a"), None, (x + 1, "b"), None])
    assert images.shape == (2, 3, 4, 4) and captions == ["a", "b"] and collate.dropped.value == 2
    images, labels = collate([(x, 3), (x, 1)])
    assert labels.dtype == torch.long and labels.tolist() == [3, 1]
    images, captions = collate([None])
    assert len(images) == 0 and captions == [] and collate.dropped.value == 3


def test_shared_int_survives_copies():
    import copy

    n = SharedInt(4)
    n.add(3)
    assert int(n) == 7
    clone = copy.deepcopy(n)  # outside a process launch a copy is a private snapshot, not an error
    clone.add()
    assert n.value == 7 and clone.value == 8
