"""Embedding maps, similarity matrices and the plotting helpers, on tiny random models."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from miniclip.analysis.embeddings import EmbeddingMap, ambiguous_pairs, first_word, joint_embedding_map, project_2d  # noqa: E402
from miniclip.analysis.similarity import image_class_similarity, image_text_similarity  # noqa: E402
from miniclip.book import viz  # noqa: E402
from miniclip.errors import MissingDependency  # noqa: E402
from miniclip.eval.features import encode_dataset_images  # noqa: E402
from miniclip.eval.zeroshot import SIMPLE_TEMPLATES  # noqa: E402


@pytest.fixture(scope="module")
def model(tiny_vit):  # tests/conftest.py
    return tiny_vit


@torch.no_grad()
def test_similarity_matrices_match_the_models_own_logits(model):
    images = torch.randn(3, 3, 32, 32)
    texts = ["a dog", "two cats on a sofa", "a red circle", "the sea"]
    sim = image_text_similarity(model, images, texts)
    logits, _ = model(images, __import__("miniclip").tokenize(texts))
    torch.testing.assert_close(sim, logits / model.logit_scale.exp(), rtol=1e-5, atol=1e-6)
    classes = image_class_similarity(model, images, ["dog", "cat"], SIMPLE_TEMPLATES)
    expected = image_text_similarity(model, images, ["a photo of a dog.", "a photo of a cat."])
    torch.testing.assert_close(classes, expected, rtol=1e-5, atol=1e-6)


class _Items(torch.utils.data.Dataset):
    def __init__(self, images, fail=()):
        self.images, self.fail = images, set(fail)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return None if i in self.fail else (self.images[i], f"caption {i}")


@torch.no_grad()
def test_encode_dataset_images_keeps_order_and_refuses_gaps(model):
    images = torch.randn(5, 3, 32, 32)
    features = encode_dataset_images(model, _Items(images), batch_size=2)
    torch.testing.assert_close(features, F.normalize(model.encode_image(images), dim=-1), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="could not be decoded"):
        encode_dataset_images(model, _Items(images, fail=[3]), batch_size=2)


def test_ambiguous_pairs_selects_and_labels():
    captions = [["A dog runs on the beach .", "a dog near the sea", "Dog on the beach"],
                ["a man in a red shirt"],
                ["Kids splash in the water", "seashells on the sand"]]
    assert first_word("Seaside, not sea: the Sea!") == "sea"  # whole words only
    indices, image_labels, texts, text_labels = ambiguous_pairs(captions)
    assert indices == [0, 2]
    assert image_labels == ["beach", "water"]  # most frequent word; ties go to the earlier word in the list
    assert text_labels == ["beach", "sea", "beach", "water", "sand"]
    assert len(texts) == 5
    assert ambiguous_pairs(captions, max_images=1)[0] == [0]


def test_tsne_map_is_seeded_and_separates_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 5
    x = np.concatenate([centres[0] + rng.normal(size=(15, 16)), centres[1] + rng.normal(size=(15, 16))])
    a, b = project_2d(x, "tsne", seed=0, max_iter=250), project_2d(x, "tsne", seed=0, max_iter=250)
    assert a.shape == (30, 2) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b)
    # the two clusters stay apart: each point's nearest neighbour is in its own cluster
    d = ((a[:, None] - a[None]) ** 2).sum(-1) + np.eye(30) * 1e9
    assert ((d.argmin(1) < 15) == (np.arange(30) < 15)).all()
    with pytest.raises(ValueError, match="unknown method"):
        project_2d(x, "pca")


class _FakeUMAP:
    """Stands in for umap.UMAP: the real one JIT-compiles for minutes on first use, too slow for a unit test
    (the book runs the real one). Records its arguments; 'projects' onto the first two coordinates."""

    calls = []

    def __init__(self, **kwargs):
        self.calls.append(kwargs)

    def fit_transform(self, x):
        return x[:, :2] * 1.0


def test_joint_map_with_umap_passes_cosine_metric_seed_and_a_neighbour_count_that_fits(monkeypatch):
    import types

    monkeypatch.setitem(__import__("sys").modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    images, texts = torch.randn(6, 8), torch.randn(4, 8)
    emap = joint_embedding_map(images, texts, image_labels=list("aabbcc"), text_labels=list("abca"),
                               method="umap", seed=3)
    np.testing.assert_allclose(emap.coords, torch.cat([images, texts])[:, :2].numpy())
    assert emap.modality.tolist() == ["image"] * 6 + ["text"] * 4 and emap.labels[6] == "a" and emap.method == "umap"
    assert _FakeUMAP.calls[-1] == {"n_components": 2, "metric": "cosine", "random_state": 3, "n_neighbors": 9,
                                   "n_jobs": 1}
    with pytest.raises(ValueError, match="one entry per"):
        joint_embedding_map(images, texts, image_labels=list("ab"), method="umap")
    monkeypatch.setitem(__import__("sys").modules, "umap", None)  # umap-learn not installed
    with pytest.raises(MissingDependency, match="pip install umap-learn"):
        project_2d(images, method="umap")


def test_joint_map_and_every_plot_build_labelled_figures(model):
    images = torch.randn(4, 3, 32, 32)
    emap = EmbeddingMap(np.random.default_rng(0).normal(size=(11, 2)), np.array(["image"] * 6 + ["text"] * 5),
                        np.array(list("aabbccabcab"), dtype=object), "tsne")
    sim = image_text_similarity(model, images, ["a", "b", "c", "d"])
    gap_rows = [{"prompt": p, "gap": g, "ci_low": g - 0.01, "ci_high": g + 0.01, "groups": ("x", "y")}
                for p, g in (("p1", 0.02), ("p2", -0.03), ("p3", 0.0))]
    topk_rows = [{"prompt": "p", "k": 5, "share_x": 0.6, "ci_low_x": 0.4, "ci_high_x": 0.8, "base_rate_x": 0.5}]
    figures = [
        viz.plot_embedding_map(emap), viz.plot_embedding_map(emap, color_by="label"),
        viz.plot_attention_heads(images[0], torch.rand(2, 3, 4, 4)),
        viz.plot_attention_overlays(images, torch.rand(4, 4, 4), titles=list("wxyz"), columns=3),
        viz.plot_localisation({"trained": {"mass_inside": 0.4, "pointing": 0.5, "mask_fraction": 0.1},
                               "init": {"mass_inside": 0.1, "pointing": 0.1, "mask_fraction": 0.1}}),
        viz.plot_similarity_matrix(sim, list("ABCD"), ["a", "b", "c", "d"]),
        viz.plot_group_gaps(gap_rows), viz.plot_topk_composition(topk_rows, "x"),
        viz.plot_accuracies({"one": 0.5, "two": 0.3}, chance=0.25, errors={"one": (0.4, 0.6), "two": (0.2, 0.4)}),
        viz.plot_confusion([[3, 1], [0, 4]], ["one", "two"]),
    ]
    for fig in figures:
        assert isinstance(fig, matplotlib.figure.Figure)
        assert fig.axes
        for ax in fig.axes:  # what miniclip.book.show insists on
            if ax.axison:
                assert ax.get_xlabel() or ax.get_ylabel() or ax.get_title()
            else:
                assert ax.get_title() is not None
        plt.close(fig)
    with pytest.raises(ValueError, match="color_by"):
        viz.plot_embedding_map(emap, color_by="size")


def test_display_image_undoes_normalisation():
    from miniclip.data.transforms import normalize

    raw = torch.rand(3, 8, 8)
    np.testing.assert_allclose(viz.display_image(normalize(raw)), raw.permute(1, 2, 0).numpy(), atol=1e-6)
