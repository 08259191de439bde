"""Fixtures shared by several test files."""

import zipfile

import pytest
import torch
from PIL import Image

from miniclip.model import CLIP, CLIPConfig

# A ViT CLIP small enough to run analyses on in milliseconds: 32-pixel images in a 4x4 patch grid.
TINY_VIT = CLIPConfig(embed_dim=32, image_size=32, vision_layers=2, vision_width=64, patch_size=8, text_width=64,
                      text_layers=1)


@pytest.fixture(scope="module")
def tiny_vit() -> CLIP:
    """A freshly initialised (seed 0) `TINY_VIT` in eval mode, one per test module."""
    torch.manual_seed(0)
    return CLIP(TINY_VIT).eval()


# The Intel scenes' classes, in label order (sorted folder names), and the sizes and modes a copy may hold: most
# photos are 150x150 RGB JPEGs, some are shorter (150x113), and a re-packaged copy may hold grayscale or PNG files.
INTEL_SCENES_FOLDERS = ("buildings", "forest", "glacier", "mountain", "sea", "street")
_SCENE_VARIANTS = (("RGB", (150, 150), "JPEG"), ("RGB", (150, 113), "JPEG"), ("L", (150, 150), "JPEG"),
                   ("RGB", (150, 150), "PNG"), ("RGBA", (113, 150), "PNG"))


def write_intel_scenes(test_dir, per_class: int = 5) -> int:
    """`test_dir/<class>/<n>.jpg|png` for the six Intel scene classes, every variant of `_SCENE_VARIANTS` in
    turn, each class a different colour. Returns the number of images written."""
    for c, folder in enumerate(INTEL_SCENES_FOLDERS):
        (test_dir / folder).mkdir(parents=True)
        for n in range(per_class):
            mode, size, fmt = _SCENE_VARIANTS[n % len(_SCENE_VARIANTS)]
            colour = (40 * c, 200 - 30 * c, 20 * n, 255)[:len(mode)] if mode != "L" else 40 * c
            suffix = ".jpg" if fmt == "JPEG" else ".png"
            Image.new(mode, size, colour).save(test_dir / folder / f"{1000 * c + n}{suffix}", fmt)
    return per_class * len(INTEL_SCENES_FOLDERS)


@pytest.fixture(scope="session")
def intel_scenes_roots(tmp_path_factory) -> dict:
    """Two data roots holding a tiny Intel scenes test set (5 images per class) as the user keeps it:
    `folder` has `intel-scenes/test/<class>/*`, `zip` has `intel-scenes-test.zip` with that layout inside."""
    folder = tmp_path_factory.mktemp("intel-folder")
    count = write_intel_scenes(folder / "intel-scenes" / "test")
    zipped = tmp_path_factory.mktemp("intel-zip")
    with zipfile.ZipFile(zipped / "intel-scenes-test.zip", "w") as z:
        for f in sorted((folder / "intel-scenes").rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder).as_posix())
    return {"folder": folder, "zip": zipped, "count": count}
