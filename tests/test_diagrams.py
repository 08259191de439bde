"""The conceptual diagrams are drawn from the objects they explain: their labels must follow the config, and
their matrices must have the shape and diagonal the objective says."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from miniclip.book.diagrams import PAIR_COLOUR, draw_architecture, draw_data_parallel, draw_objective  # noqa: E402
from miniclip.model import CLIPConfig  # noqa: E402


def _texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def _cells(fig, colour: str) -> int:
    """How many plain rectangles (matrix cells and embedding squares) have this face colour."""
    target = mcolors.to_rgba(colour)
    return sum(isinstance(p, plt.Rectangle) and p.get_facecolor() == target for ax in fig.axes for p in ax.patches)


def test_architecture_labels_follow_the_config():
    vit = CLIPConfig(embed_dim=512, image_size=224, vision_layers=12, vision_width=768, patch_size=32,
                     text_width=512, text_layers=12)
    text = _texts(draw_architecture(vit, "ViT-B/32"))
    assert "7×7 patches of 32 px" in text
    assert "12 layers × width 768, 12 heads" in text
    assert "linear projection 768 → 512" in text and "linear projection 512 → 512" in text
    assert "12 layers × width 512, 8 heads" in text and "512-d space" in text

    resnet = CLIPConfig(embed_dim=256, image_size=64, vision_layers=(1, 2, 3, 4), vision_width=32,
                        text_width=192, text_layers=4)
    text = _texts(draw_architecture(resnet))
    assert "stages of 1/2/3/4 bottlenecks" in text and "widths 128…1024 channels" in text
    assert "attention pool over the 2×2 map" in text and "output 256-d" in text
    assert "linear projection 192 → 256" in text and "4 layers × width 192, 3 heads" in text
    assert "linear projection 32" not in text  # a ResNet has no separate image projection
    plt.close("all")


@pytest.mark.parametrize("world, local", [(3, 2), (2, 4)])
def test_data_parallel_draws_the_global_batch(world, local):
    fig = draw_data_parallel(world=world, local=local)
    n = world * local
    assert _cells(fig, PAIR_COLOUR) == n  # one true pair per row of the global matrix
    assert f"{n} × {n} scores" in _texts(fig)
    assert sum(f"process {r}" in _texts(fig) for r in range(world)) == world
    plt.close(fig)


def test_objective_has_n_true_pairs():
    fig = draw_objective(n=4)
    assert _cells(fig, PAIR_COLOUR) == 4
    assert "$S_{44}$" in _texts(fig) and "$S_{55}$" not in _texts(fig)
    plt.close(fig)
