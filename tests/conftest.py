"""Fixtures shared by several test files."""

import pytest
import torch

from miniclip.model import CLIP, CLIPConfig

# A ViT CLIP small enough to run analyses on in milliseconds: 32-pixel images in a 4x4 patch grid.
TINY_VIT = CLIPConfig(embed_dim=32, image_size=32, vision_layers=2, vision_width=64, patch_size=8, text_width=64,
                      text_layers=1)


@pytest.fixture(scope="module")
def tiny_vit() -> CLIP:
    """A freshly initialised (seed 0) `TINY_VIT` in eval mode, one per test module."""
    torch.manual_seed(0)
    return CLIP(TINY_VIT).eval()
