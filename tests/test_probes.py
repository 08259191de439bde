"""Linear and few-shot probes, the feature cache, retrieval ties and the probe commands, on tiny fixtures."""

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from miniclip.data.transforms import normalize
from miniclip.eval.features import FeatureCache, cached_image_features, encode_pixels, model_fingerprint
from miniclip.eval.probes import (
    cached_linear_probe,
    few_shot,
    linear_probe,
    mean_interval,
    parametric_binary_search,
    retrieval_recall,
    sample_few_shot,
    stratified_split,
    zero_shot_accuracy,
)
from miniclip.model import CLIP, CLIPConfig

TINY = CLIPConfig(embed_dim=16, image_size=32, vision_layers=1, vision_width=64, patch_size=16, text_width=64,
                  text_layers=1)


def blobs(n_per_class=40, classes=4, dim=8, spread=1.5, seed=0):
    """Gaussian clusters: features a linear classifier separates well but not perfectly."""
    g = np.random.default_rng(seed)
    centres = g.normal(size=(classes, dim)) * spread
    y = np.repeat(np.arange(classes), n_per_class)
    return torch.tensor(centres[y] + g.normal(size=(len(y), dim)), dtype=torch.float32), torch.tensor(y)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return CLIP(TINY).eval()


# ----------------------------------------------------------------------------- splits and samples


def test_stratified_split_is_a_deterministic_partition_with_class_proportions():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    train, val, test = stratified_split(labels, (0.5, 0.2, 0.3), seed=1)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
    for part, frac in ((train, 0.5), (val, 0.2), (test, 0.3)):
        counts = np.bincount(labels[part], minlength=3)
        assert np.all(np.abs(counts - frac * np.array([50, 30, 20])) <= 1)
    again = stratified_split(labels, (0.5, 0.2, 0.3), seed=1)
    other = stratified_split(labels, (0.5, 0.2, 0.3), seed=2)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(train, other[0])


def test_few_shot_sample_has_exactly_k_per_class_from_the_pool_and_seeds_differ():
    labels = np.repeat(np.arange(5), 20)
    pool = np.arange(0, 100, 2)  # every other image: 10 per class
    a = sample_few_shot(labels, pool, 4, seed=0)
    assert np.array_equal(np.bincount(labels[a]), [4] * 5)
    assert set(a) <= set(pool) and len(set(a)) == len(a)
    assert np.array_equal(a, sample_few_shot(labels, pool, 4, seed=0))
    assert not np.array_equal(a, sample_few_shot(labels, pool, 4, seed=1))
    with pytest.raises(ValueError, match="fewer than k"):
        sample_few_shot(labels, pool, 11, seed=0)


# ----------------------------------------------------------------------------- the probe


def test_binary_search_finds_the_peak_and_evaluates_few_points():
    calls = []

    def score(i):
        calls.append(i)
        return -abs(i - 37)

    best, scores = parametric_binary_search(score, 0, 96, 16)
    assert best == 37 and scores[37] == 0
    assert len(calls) == len(set(calls)) < 20  # 7 starting points + 2 per halving, not all 97


def test_binary_search_in_threads_evaluates_the_same_points_as_one_after_another():
    from concurrent.futures import ThreadPoolExecutor

    def score(i):
        return -abs(i - 53) + (i % 3 == 0)  # ridged, so the path of the search matters

    serial = parametric_binary_search(score, 0, 96, 16)
    with ThreadPoolExecutor(3) as pool:
        threaded = parametric_binary_search(score, 0, 96, 16, pool.map)
    assert threaded == serial and serial[0] in serial[1]


def test_linear_probe_matches_scikit_learns_own_fit_and_score():
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    features, labels = blobs()
    split = stratified_split(labels.numpy(), seed=0)
    result = linear_probe(features, labels, split, log10_range=(-3, 3), steps_per_decade=2)
    x = F.normalize(features, dim=-1).double().numpy()
    y = labels.numpy()
    train, val, test = split
    # The chosen C is the best on the validation part among the C values the sweep tried ...
    with threadpool_limits(limits=1):  # tiny fits: BLAS threads only add synchronisation time
        for C, acc in result["sweep"].items():
            ref = LogisticRegression(C=C, max_iter=1000).fit(x[train], y[train]).score(x[val], y[val])
            assert acc == pytest.approx(ref)
    assert result["val_accuracy"] == max(result["sweep"].values())
    # ... and the test accuracy is scikit-learn's score of a fresh fit on train + val at that C.
    tv = np.concatenate([train, val])
    with threadpool_limits(limits=1):
        reference = LogisticRegression(C=result["C"], max_iter=1000).fit(x[tv], y[tv]).score(x[test], y[test])
    assert result["test_accuracy"] == pytest.approx(reference)
    assert result["test_accuracy"] > 0.6  # well above chance (0.25) on separable blobs


def test_a_cached_probe_gives_the_probes_numbers_and_recomputes_for_another_split(tmp_path):
    features, labels = blobs()
    split = stratified_split(labels.numpy(), seed=0)
    cache = FeatureCache(tmp_path)
    direct = linear_probe(features, labels, split, log10_range=(-6, 6))
    direct.pop("classifier")
    first = cached_linear_probe(features, labels, split, cache=cache)
    again = cached_linear_probe(features, labels, split, cache=cache)
    assert first == direct and again == direct and (cache.hits, cache.misses) == (1, 1)
    cached_linear_probe(features, labels, stratified_split(labels.numpy(), seed=1), cache=cache)
    cached_linear_probe(features, labels, split, normalize=False, cache=cache)
    assert (cache.hits, cache.misses) == (1, 3)


def test_few_shot_reports_each_seed_and_a_t_interval():
    features, labels = blobs(n_per_class=30)
    train, _, test = stratified_split(labels.numpy(), seed=0)
    out = few_shot(features, labels, train, test, shots=(1, 4), seeds=(0, 1, 2), progress=False)
    for k in (1, 4):
        entry = out["shots"][k]
        assert len(entry["accuracy"]) == 3 and entry["seeds"] == [0, 1, 2]
        assert entry["lo"] <= entry["mean"] <= entry["hi"]
        assert entry["mean"] == pytest.approx(np.mean(entry["accuracy"]))
    assert out["shots"][1]["C"] == [1.0, 1.0, 1.0]


def test_mean_interval_against_scipy():
    from scipy import stats

    values = [0.2, 0.25, 0.31, 0.22]
    got = mean_interval(values)
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert (got["lo"], got["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert mean_interval([0.5]) == dict(mean=0.5, lo=0.5, hi=0.5, n=1)


def test_zero_shot_accuracy_is_cosine_argmax():
    weights = F.normalize(torch.eye(3, 4), dim=-1)
    features = torch.tensor([[5.0, 0, 0, 1], [0, 0.1, 0, 0], [0, 0, -1, 0], [0, 0, 2, 0]])
    labels = torch.tensor([0, 1, 2, 2])  # the third row points away from class 2: argmax is 0 (all tie at 0)
    assert zero_shot_accuracy(features, labels, weights) == pytest.approx(3 / 4)


# ----------------------------------------------------------------------------- feature cache


def test_feature_cache_hits_on_the_same_key_and_misses_on_another(tmp_path, tiny_model):
    pixels = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(6)
    calls = []

    def load():
        calls.append(1)
        return pixels, labels

    cache = FeatureCache(tmp_path)
    key = {"name": "toy", "dataset": "six random images", "transform": "none"}
    first, y1 = cached_image_features(tiny_model, load, key, cache, batch_size=4)
    second, y2 = cached_image_features(tiny_model, load, key, cache, batch_size=4)
    assert (cache.hits, cache.misses, len(calls)) == (1, 1, 1)
    assert torch.equal(first, second) and torch.equal(y1, y2)
    assert torch.allclose(first, encode_pixels(tiny_model, pixels), atol=1e-6)
    cached_image_features(tiny_model, load, {**key, "transform": "other"}, cache)
    assert (cache.hits, cache.misses, len(calls)) == (1, 2, 2)
    # A model with different weights never reads the first model's features.
    other = CLIP(TINY).eval()
    assert model_fingerprint(other) != model_fingerprint(tiny_model)
    cached_image_features(other, load, key, cache)
    assert cache.misses == 3
    # The representation before the projection has entries of its own, wider, written by the same miss that
    # encoded the joint-space features: asking for it afterwards is a hit and decodes nothing.
    before, _ = cached_image_features(tiny_model, load, key, cache, batch_size=4, project=False)
    assert (cache.hits, cache.misses, len(calls)) == (2, 3, 3) and before.shape == (6, TINY.vision_width)
    assert torch.allclose(before @ tiny_model.visual.proj, first, atol=1e-5)


def test_one_pass_gives_both_representations_equal_to_direct_calls(tmp_path, tiny_model):
    pixels = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    calls = []

    def load():
        calls.append(1)
        return pixels, torch.arange(6)

    cache = FeatureCache(tmp_path)
    key = {"name": "toy", "dataset": "six random images", "transform": "none"}
    before, _ = cached_image_features(tiny_model, load, key, cache, batch_size=4, project=False)
    joint, _ = cached_image_features(tiny_model, load, key, cache, batch_size=4)
    assert (cache.hits, cache.misses, len(calls)) == (1, 1, 1)
    with torch.no_grad():  # the same operations on the same batches as encode_image: equal to the last bit
        x = normalize(pixels[:4].float() / 255.0)
        assert torch.equal(joint[:4], tiny_model.encode_image(x))
        assert torch.equal(before[:4], tiny_model.encode_image(x, project=False))
        assert torch.equal(tiny_model.project_image(before), joint)


def test_encode_pixels_matches_the_eval_transform(tiny_model):
    from PIL import Image

    from miniclip.data.transforms import eval_transform
    from miniclip.eval.features import pixel_transform

    g = np.random.default_rng(0)
    images = [Image.fromarray(g.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(3)]
    pixels = torch.stack([pixel_transform(32)(im) for im in images])
    assert pixels.dtype == torch.uint8
    reference = tiny_model.encode_image(torch.stack([eval_transform(32)(im) for im in images]))
    assert torch.allclose(encode_pixels(tiny_model, pixels), reference, atol=1e-5)


def test_raw_pixel_baseline_is_the_resized_pixels_flattened_and_cached(tmp_path):
    from PIL import Image

    from miniclip.data.folders import open_test_set
    from miniclip.eval.features import pixel_transform, raw_pixel_features, test_set_pixels

    g = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "set" / name).mkdir(parents=True)
        for i in range(3):  # odd sizes: the baseline resizes and centre-crops like the model's input
            pixels = g.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "set" / name / f"{i}.png")
    cache = FeatureCache(tmp_path / "cache")
    x, y, names = test_set_pixels(f"imagefolder:{tmp_path / 'set'}", 8, cache)
    assert x.shape == (6, 3 * 8 * 8) and names == ["cat", "dog"] and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert x.min() >= -0.5 and x.max() <= 0.5
    first = open_test_set(f"imagefolder:{tmp_path / 'set'}", pixel_transform(8))[0][0]
    assert torch.allclose(x[0], first.flatten().float() / 255 - 0.5)
    again, _, _ = test_set_pixels(f"imagefolder:{tmp_path / 'set'}", 8, cache)
    assert (cache.hits, cache.misses) == (1, 1) and torch.equal(again, x)
    # Rendered images (Shapes) are area-averaged down: each output value is the mean of a 2 x 2 block.
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    small = raw_pixel_features(images, 2).reshape(2, 3, 2, 2)
    assert torch.allclose(small[1, 2, 0, 1], images[1, 2, :2, 2:].float().mean() / 255 - 0.5)


# ----------------------------------------------------------------------------- retrieval


def brute_force_ranks(sim: np.ndarray, text_to_image: np.ndarray):
    """Pessimistic ranks, written independently: every wrong item scoring >= the right one goes first."""
    t2i = [sum(sim[i, t] >= sim[text_to_image[t], t] for i in range(sim.shape[0]) if i != text_to_image[t])
           for t in range(sim.shape[1])]
    i2t = []
    for i in range(sim.shape[0]):
        best = max(sim[i, t] for t in range(sim.shape[1]) if text_to_image[t] == i)
        i2t.append(sum(sim[i, t] >= best for t in range(sim.shape[1]) if text_to_image[t] != i))
    return np.array(t2i), np.array(i2t)


def test_retrieval_with_five_captions_and_exact_ties_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    # Small integer features: dot products are exact in float32, so many scores tie exactly.
    images = torch.randint(-1, 2, (8, 3), generator=g).float()
    text_to_image = torch.arange(8).repeat_interleave(5)
    texts = torch.randint(-1, 2, (40, 3), generator=g).float()
    images[7] = images[6]  # two identical images: their captions tie with each other's image
    sim = (images @ texts.t()).numpy()
    t2i, i2t = brute_force_ranks(sim, text_to_image.numpy())
    assert (sim[:, :, None] == sim[:, None, :]).sum() > sim.size  # the fixture really has ties
    got = retrieval_recall(images, texts, text_to_image, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert got[f"text_to_image_R@{k}"] == pytest.approx(np.mean(t2i < k))
        assert got[f"image_to_text_R@{k}"] == pytest.approx(np.mean(i2t < k))
    constant = retrieval_recall(torch.ones(8, 3), torch.ones(40, 3), text_to_image, ks=(1, 5))
    assert all(v == 0.0 for v in constant.values())  # all ties: nothing is retrieved, not everything


# ----------------------------------------------------------------------------- commands


def test_probe_commands_parse_and_run_on_a_tiny_checkpoint(tmp_path, tiny_model, capsys, monkeypatch):
    from PIL import Image

    from miniclip.checkpoint import save_checkpoint
    from miniclip.cli.eval import add_probe_commands

    g = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):  # two classes of different mean colour, 30 images each
        (tmp_path / "set" / name).mkdir(parents=True)
        for i in range(30):
            a = np.clip(g.normal(80 + 100 * c, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(tmp_path / "set" / name / f"{i}.png")
    ckpt = save_checkpoint(tmp_path / "run", "final", tiny_model, step=0)
    parser = argparse.ArgumentParser()
    add_probe_commands(parser.add_subparsers(dest="what", required=True))
    common = ["--checkpoint", str(ckpt), "--data", f"imagefolder:{tmp_path / 'set'}", "--json",
              "--cache-dir", str(tmp_path / "cache")]

    args = parser.parse_args(["probe", *common])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_train"] + result["n_val"] + result["n_test"] == 60 and result["cache_misses"] == 1
    assert 0 <= result["test_accuracy"] <= 1 and 0 <= result["zero_shot_accuracy"] <= 1

    args = parser.parse_args(["fewshot", *common, "--shots", "1", "2", "--seeds", "2"])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["shots"]) == {"1", "2"} and result["cache_hits"] == 1 and result["cache_misses"] == 0

    args = parser.parse_args(["robustness", *common, "--n-shifted", "10"])
    monkeypatch.setattr("miniclip.eval.robustness.CORRUPTIONS", {"contrast": (0.5, 0.3, 0.15)})
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["summary"]) == {"contrast@1", "contrast@2", "contrast@3"}
    assert result["n_shifted"] == 10


def test_probe_commands_read_the_intel_scenes_from_the_data_root(tmp_path, tiny_model, capsys, monkeypatch,
                                                                intel_scenes_roots):
    from miniclip.checkpoint import save_checkpoint
    from miniclip.cli.eval import add_probe_commands

    monkeypatch.setenv("MINICLIP_DATA", str(intel_scenes_roots["zip"]))
    ckpt = save_checkpoint(tmp_path / "run", "final", tiny_model, step=0)
    parser = argparse.ArgumentParser()
    add_probe_commands(parser.add_subparsers(dest="what", required=True))
    common = ["--checkpoint", str(ckpt), "--data", "intel-scenes", "--json", "--cache-dir", str(tmp_path / "cache")]

    args = parser.parse_args(["probe", *common])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["classes"] == 6 and result["n_train"] + result["n_val"] + result["n_test"] == 30
    assert 0 <= result["zero_shot_accuracy"] <= 1 and result["cache_misses"] == 1
    # One pass cached both representations of the Intel scenes (the joint features and those before the projection).
    assert [p.name.split("-")[:2] for p in (tmp_path / "cache").iterdir()] == [["intel", "scenes"]] * 2

    args = parser.parse_args(["fewshot", *common, "--shots", "1", "2", "--seeds", "2"])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["shots"]) == {"1", "2"} and result["classes"] == 6 and result["cache_hits"] == 1

    args = parser.parse_args(["robustness", *common, "--n-shifted", "6"])
    monkeypatch.setattr("miniclip.eval.robustness.CORRUPTIONS", {"contrast": (0.5, 0.3, 0.15)})
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_shifted"] == 6 and result["cache_hits"] == 1 and result["summary"]


def test_equivalent_shots_interpolates_in_log2_k():
    from miniclip.eval.probes import equivalent_shots

    ks, means = [1, 2, 4, 8, 16], [0.2, 0.3, 0.4, 0.5, 0.6]
    assert equivalent_shots(ks, means, 0.1) == 0.0             # even one shot is above it
    assert equivalent_shots(ks, means, 0.7) is None            # never reached
    assert equivalent_shots(ks, means, 0.4) == pytest.approx(4.0)
    # halfway between 0.4 (k=4) and 0.5 (k=8) lies halfway in log2 k: 2 ** 2.5
    assert equivalent_shots(ks, means, 0.45) == pytest.approx(2 ** 2.5)
