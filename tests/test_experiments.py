"""The experiments package: the predictive models' zero-shot scoring on hand-made cases, the efficiency ratio,
caption corruption, the result cache, and every experiment end to end in the ci profile (tiny, seconds)."""

import json
import math

import pytest
import torch

from miniclip import env
from miniclip.experiments import objectives, planted, runner, store
from miniclip.experiments.objectives import EOT, PAD, BagOfWords, CaptioningLM, CompactVocabulary, pad
from miniclip.experiments.registry import ALL_EXPERIMENTS, EXPERIMENTS, OPTIONAL_EXPERIMENTS
from miniclip.model import CLIPConfig

TINY = CLIPConfig(embed_dim=32, image_size=32, vision_layers=1, vision_width=64, patch_size=16, text_width=64,
                  text_layers=1)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """Results and checkpoints go to a temporary runs/ folder, not the repository's."""
    monkeypatch.setattr(env, "ROOT", tmp_path)  # runs_dir() is ROOT/runs/<profile>
    return tmp_path / "runs"


# ----------------------------------------------------------------------------- the captioning LM's scoring


def test_padding_appends_eot_and_pads():
    assert pad([[5, 6], [7]]).tolist() == [[5, 6, EOT], [7, EOT, PAD]]


def test_captioning_log_likelihood_on_a_hand_made_distribution(monkeypatch):
    """With next-token probabilities fixed by hand (every position: token 3 w.p. 1/2, EOT 1/4, rest shared),
    log p(prompt) is the sum over its tokens and its EOT, and padding contributes nothing."""
    model = CaptioningLM(TINY, vocab_size=6).eval()
    probs = torch.tensor([0.05, 0.05, 0.25, 0.5, 0.1, 0.05])

    def fixed_logits(images, targets, image_features=None):
        return probs.log().expand(targets.shape[0], targets.shape[1], 6)

    monkeypatch.setattr(model, "token_logits", fixed_logits)
    prompts = pad([[3, 3], [4], [3, 5, 4]])
    ll = model.log_likelihood(torch.zeros(2, 3, 32, 32), prompts)
    expected = [math.log(0.5 * 0.5 * 0.25), math.log(0.1 * 0.25), math.log(0.5 * 0.05 * 0.1 * 0.25)]
    assert ll.shape == (2, 3)
    assert torch.allclose(ll, torch.tensor([expected, expected]), atol=1e-5)


def test_captioning_log_likelihood_matches_the_training_loss_pair_by_pair():
    """Scoring all (image, prompt) pairs at once equals, for each pair alone, -loss x its number of tokens:
    the zero-shot score and the training objective are the same quantity."""
    torch.manual_seed(0)
    model = CaptioningLM(TINY, vocab_size=9).eval()
    images = torch.randn(3, 3, 32, 32)
    prompts = pad([[3, 4, 5], [6], [7, 8, 3, 4]])
    ll = model.log_likelihood(images, prompts, chunk=5)  # chunks that cut across images
    with torch.no_grad():
        for i in range(3):
            for j in range(3):
                target = prompts[j:j + 1, :int((prompts[j] != PAD).sum())]
                brute = -model.loss(images[i:i + 1], target) * target.shape[1]
                assert torch.allclose(ll[i, j], brute, atol=1e-4)


def test_captioning_lm_is_causal():
    """A token's log-probability does not depend on the tokens after it."""
    torch.manual_seed(0)
    model = CaptioningLM(TINY, vocab_size=9).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = model.token_logits(images, torch.tensor([[3, 4, 5, EOT]]))
        b = model.token_logits(images, torch.tensor([[3, 4, 8, EOT]]))
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-5) and not torch.allclose(a[:, 3], b[:, 3])


# ----------------------------------------------------------------------------- bag-of-words scoring


def test_word_sets_ignore_padding_eot_and_repeats():
    hot = objectives.word_sets(pad([[3, 3, 4], [5]]), 6)
    assert hot.tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]]


def test_bag_of_words_scores_by_hand():
    """Word probabilities 0.9 (word 3), 0.5 (word 4), 0.1 (word 5): a prompt scores the mean log-probability of
    its distinct words, so {3, 4} beats {4, 5}, and the repeated word counts once."""
    p = torch.tensor([[0.5, 0.5, 0.5, 0.9, 0.5, 0.1]])
    logits = torch.log(p / (1 - p))
    prompts = objectives.word_sets(pad([[3, 4], [4, 5], [3, 3]]), 6)
    scores = objectives.bag_of_words_scores(logits, prompts)
    expected = [(math.log(0.9) + math.log(0.5)) / 2, (math.log(0.5) + math.log(0.1)) / 2, math.log(0.9)]
    assert torch.allclose(scores[0], torch.tensor(expected), atol=1e-5)
    assert scores[0].argmax() == 2


def test_bag_of_words_model_scores_through_its_head():
    torch.manual_seed(0)
    model = BagOfWords(TINY, vocab_size=7).eval()
    images, prompts = torch.randn(2, 3, 32, 32), pad([[3, 4], [5, 6, 6]])
    with torch.no_grad():
        expected = objectives.bag_of_words_scores(model(images), objectives.word_sets(prompts, 7))
        assert torch.allclose(model.prompt_scores(images, prompts), expected)
        assert model.loss(images, prompts).item() > 0


def test_compact_vocabulary_round_trip():
    vocab = CompactVocabulary.from_texts(["a red circle", "a blue square"])
    ids = vocab.encode(["a red square", "a green circle"])
    assert all(i >= 3 for i in ids[0])  # every word known
    assert objectives.UNK in ids[1]  # "green" was never seen
    assert len(vocab) == 3 + len(vocab.bpe_ids)


# ----------------------------------------------------------------------------- curves and ratios


def test_samples_to_reach_interpolates():
    assert objectives.samples_to_reach([0, 100, 200], [0.1, 0.3, 0.5], 0.4) == pytest.approx(150)
    assert objectives.samples_to_reach([0, 100], [0.1, 0.2], 0.5) is None


def test_efficiency_ratio_on_hand_made_curves():
    contrastive = [{"samples": s, "acc": a} for s, a in [(0, 0.1), (100, 0.5), (200, 0.7)]]
    predictive = [{"samples": s, "acc": a} for s, a in [(0, 0.1), (100, 0.2), (200, 0.3)]]
    r = objectives.efficiency_ratio(contrastive, predictive, "acc")
    assert r["target"] == 0.3 and r["other_samples"] == 200
    assert r["reference_samples"] == pytest.approx(50) and r["ratio"] == pytest.approx(4)
    assert objectives.efficiency_ratio(predictive, contrastive, "acc")["ratio"] is None  # never reaches 0.7
    # a reference that scores the other's best before training: no ratio, and the reason says so
    flat = [{"samples": s, "acc": a} for s, a in [(0, 0.1), (100, 0.15), (200, 0.12)]]
    early = [{"samples": s, "acc": a} for s, a in [(0, 0.2), (100, 0.5), (200, 0.7)]]
    r = objectives.efficiency_ratio(early, flat, "acc")
    assert r["ratio"] is None and r["reference_samples"] == 0 and "before training" in r["note"]


# ----------------------------------------------------------------------------- noisy captions, slope


def test_corrupt_captions():
    batches = [(torch.zeros(4), ["a", "b", "c", "d"])] * 3
    clean = [c for _, c in planted.corrupt_captions(iter(batches), 0.0)]
    assert clean == [["a", "b", "c", "d"]] * 3
    noisy = [c for _, c in planted.corrupt_captions(iter(batches), 1.0, seed=1)]
    for captions in noisy:
        assert all(c != own and c in "abcd" for c, own in zip(captions, "abcd"))
    assert noisy == [c for _, c in planted.corrupt_captions(iter(batches), 1.0, seed=1)]  # seeded


def test_fit_slope():
    fit = planted.fit_slope([0, 0.5, 1], [1, 2, 3])
    assert fit["slope"] == pytest.approx(2) and fit["intercept"] == pytest.approx(1) and fit["r2"] == pytest.approx(1)


# ----------------------------------------------------------------------------- configs and the cache


@pytest.mark.parametrize("path", sorted(store.SETTINGS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_experiment_of_every_profile_derives_valid_models(path):
    """A profile's experiment settings (the gpu ones cannot be run here) at least give configs that load, whose
    Shapes world is valid, and whose base is that profile's own."""
    from miniclip.data.loaders import shapes_config

    for name, settings in store.experiment_settings(path.stem).items():
        parts = [settings] if "base" in settings else [settings["flickr8k"], settings["shapes_vit"]]
        variants = settings.get("variants", {"": {}})
        for part in parts:
            for variant in variants.values():
                own = part is settings.get("flickr8k") or part is settings  # the part its variants change
                overrides = {**part.get("overrides", {}), **((variant or {}) if own else {})}
                config = store.derived_config(part["base"], overrides)
                assert path.stem in part["base"] or path.stem == "ci", (name, part["base"])
                if config.data.dataset == "shapes":
                    shapes_config(config.data.shapes, config.model.image_size, config.train.seed)


def test_derived_config_applies_overrides_to_the_base():
    overrides = {"optim.steps": 70, "optim.warmup_steps": 5, "data.shapes.planted": {"word": "vintage", "p": 0.5}}
    config = store.derived_config("configs/cpu-shapes.yaml", overrides, name="x", profile="ci")
    assert config.optim.steps == 70 and config.name == "x" and config.profile == "ci"
    assert config.data.shapes["planted"]["p"] == 0.5 and "lang_rates" in config.data.shapes  # merged, not replaced


def test_cache_skips_a_run_with_the_same_settings(runs, monkeypatch):
    calls = []

    def fake(settings, profile):
        calls.append(settings)
        return {"value": settings["x"] * 2}

    monkeypatch.setitem(ALL_EXPERIMENTS, "fake", fake)
    first = runner.run_experiment("fake", "ci", settings={"x": 1}, verbose=False)
    again = runner.run_experiment("fake", "ci", settings={"x": 1}, verbose=False)
    assert len(calls) == 1 and not first["cached"] and again["cached"] and again["result"] == {"value": 2}
    saved = json.loads((runs / "ci" / "experiments" / "fake.json").read_text())
    assert saved["provenance"]["settings"] == {"x": 1} and saved["provenance"]["wall_s"] >= 0
    assert {"git_commit", "machine", "torch", "seed"} <= set(saved["provenance"])
    changed = runner.run_experiment("fake", "ci", settings={"x": 2}, verbose=False)
    assert len(calls) == 2 and changed["result"] == {"value": 4}
    runner.run_experiment("fake", "ci", settings={"x": 2}, force=True, verbose=False)
    assert len(calls) == 3


def test_parts_are_cached_by_key(runs):
    """A sweep's finished trainings are kept on their own, so a stopped experiment resumes from them."""
    calls = []

    def compute():
        calls.append(1)
        return {"acc": 0.5}

    assert store.cached_part("fake", "p0", "ci", {"lr": 1}, compute) == {"acc": 0.5}
    assert store.cached_part("fake", "p0", "ci", {"lr": 1}, compute) == {"acc": 0.5}
    assert len(calls) == 1
    store.cached_part("fake", "p0", "ci", {"lr": 2}, compute)
    assert len(calls) == 2


def test_cache_follows_the_base_config(runs, monkeypatch, tmp_path):
    """Editing a base training config makes the experiments built on it stale."""
    calls = []
    monkeypatch.setitem(ALL_EXPERIMENTS, "fake", lambda settings, profile: calls.append(1) or {})
    base = tmp_path / "base.yaml"
    base.write_text("optim: {lr: 1.0e-3}\n")
    settings = {"nested": {"base": str(base)}}
    runner.run_experiment("fake", "ci", settings=settings, verbose=False)
    runner.run_experiment("fake", "ci", settings=settings, verbose=False)
    assert len(calls) == 1
    base.write_text("optim: {lr: 2.0e-3}\n")
    runner.run_experiment("fake", "ci", settings=settings, verbose=False)
    assert len(calls) == 2
    # An option that changes only how fast batches arrive (config.SPEED_ONLY) leaves the results as they are.
    base.write_text("optim: {lr: 2.0e-3}\ndata: {cache_images: true}\n")
    runner.run_experiment("fake", "ci", settings=settings, verbose=False)
    assert len(calls) == 2


# ----------------------------------------------------------------------------- every experiment, ci profile


ZS_KEYS = {f"{s}_{k}" for s in ("seen", "heldout") for k in ("colour", "shape", "colour_shape")}


def _run(name):
    record = runner.run_experiment(name, "ci", verbose=False)
    assert record["provenance"]["settings"] == store.experiment_settings("ci")[name]
    return record["result"]


def test_objectives_experiment(runs):
    result = _run("objectives")
    assert set(result["curves"]) == {"contrastive", "bag_of_words", "captioning_lm"}
    for curve in result["curves"].values():
        assert [p["samples"] for p in curve] == [0, 32, 64]
        assert all(ZS_KEYS <= set(p) and all(0 <= p[k] <= 1 for k in ZS_KEYS) for p in curve)
    for other in ("bag_of_words", "captioning_lm"):
        assert set(result["efficiency_ratio"][other]) == set(objectives.RATIO_METRICS)


def test_planted_experiment(runs):
    result = _run("planted")
    assert [r["p"] for r in result["runs"]] == [0.0, 0.95]
    for r in result["runs"]:
        assert r["ci95"][0] <= r["association"] <= r["ci95"][1] and r["n_with"] + r["n_without"] == 32
    assert set(result["fit"]) == {"slope", "intercept", "r2"}


def test_noisy_experiment(runs):
    result = _run("noisy")
    assert [r["fraction"] for r in result["runs"]] == [0.0, 0.5]
    assert all(ZS_KEYS <= set(r["zeroshot"]) and "val_loss" in r["val"] for r in result["runs"])


def test_lr_batch_experiment(runs):
    result = _run("lr_batch")
    assert {(r["lr"], r["batch_size"]) for r in result["grid"]} == {(a, b) for a in (1e-3, 3e-3) for b in (8, 16)}
    assert all(r["samples"] == 32 and math.isfinite(r["val"]["val_loss"]) for r in result["grid"])


def test_throughput_experiment(runs):
    result = _run("throughput")
    fp32 = [p for p in result["points"] if p["precision"] == "fp32"]
    assert [p["batch_size"] for p in fp32] == [4, 8]
    assert all(p["samples_per_s"] == pytest.approx(p["batch_size"] * p["steps_per_s"]) for p in fp32)
    assert any(p["precision"] == "bf16" for p in result["points"])
    assert ("bf16_skipped" in result) == (result["matmul_gflops"]["bf16"] < result["matmul_gflops"]["fp32"])


def test_encoders_experiment(runs):
    from miniclip.checkpoint import load_model
    from miniclip.data.paths import MissingDataError

    try:
        result = _run("encoders")
    except MissingDataError as e:
        pytest.skip(f"Flickr8k or CIFAR-10 not under $MINICLIP_DATA: {e}")
    assert set(result["flickr8k"]) == {"resnet", "vit", "resnet-bert", "vit-bert"}
    for name, entry in result["flickr8k"].items():
        assert {"text_to_image_R@1", "image_to_text_R@10"} <= set(entry["retrieval"])
        assert entry["retrieval"]["images"] == 16 and entry["cifar10_zeroshot"]["n"] == 20
        assert entry["model"]["text_causal"] == ("bert" not in name) and entry["seeds"] == 2
        seeds = entry["per_seed"]
        assert [s["seed"] for s in seeds] == [0, 1] and seeds[0]["checkpoint"] != seeds[1]["checkpoint"]
        for key in ("text_to_image_R@10", "cifar10_top1"):  # the mean of the seeds, inside their range
            values = [s["retrieval"].get(key, s["cifar10_zeroshot"]["top1"]) for s in seeds]
            low, high = entry["range"][key]
            assert (low, high) == (min(values), max(values))
        assert entry["retrieval"]["text_to_image_R@10"] == pytest.approx(
            sum(s["retrieval"]["text_to_image_R@10"] for s in seeds) / 2)
    assert ZS_KEYS <= set(result["shapes_vit"]["zeroshot"])
    for dataset in ("flickr8k", "shapes"):
        assert load_model(result["vit_checkpoints"][dataset]).config.is_vit


def test_recipe_experiment_is_opt_in_and_scores_every_variant_and_seed(runs):
    from miniclip.data.paths import MissingDataError

    assert "recipe" in OPTIONAL_EXPERIMENTS and "recipe" not in EXPERIMENTS  # `make experiments` leaves it out
    try:
        result = _run("recipe")
    except MissingDataError as e:
        pytest.skip(f"Flickr8k or the Intel scenes not under $MINICLIP_DATA: {e}")
    assert list(result["variants"]) == ["book", "label smoothing 0.1"] and result["seeds"] == [0, 1]
    for entry in result["variants"].values():
        seeds = entry["per_seed"]
        assert [s["seed"] for s in seeds] == [0, 1] and seeds[0]["checkpoint"] != seeds[1]["checkpoint"]
        for key in ("text_to_image_R@10", "image_to_text_R@10", "scenes_photo_top1", "scenes_ensemble_top1",
                    "scenes_caption_words_top1"):
            values = [s["scores"][key] for s in seeds]
            assert entry["mean"][key] == pytest.approx(sum(values) / 2)
            assert tuple(entry["range"][key]) == (min(values), max(values))
            assert all(0 <= v <= 1 for v in values)
    assert result["variants"]["label smoothing 0.1"]["overrides"] == {"optim.label_smoothing": 0.1}


def test_relations_experiment(runs):
    from miniclip.checkpoint import CheckpointError
    from miniclip.config import load_config
    from miniclip.train.trainer import Trainer

    with pytest.raises(CheckpointError, match="no starting model"):
        _run("relations")
    start = load_config(store.ROOT / "configs" / "ci.yaml", ["optim.steps=2", "optim.warmup_steps=1",
                                                             "data.zeroshot=none", "data.val_size=16"])
    Trainer(start, runs / "ci" / "shapes", progress=False).run()
    result = _run("relations")
    assert set(result["arms"]) == {"plain", "swapped_negatives"} and result["steps"] == 3
    for scores in (result["start"], *result["arms"].values()):
        assert scores["relation"]["chance"] == 0.5 and scores["relation"]["lo"] <= scores["relation"]["accuracy"]
        assert {"colour", "shape", "heldout_pairs", "count"} <= set(scores)
    d = result["negatives_minus_plain"]
    assert d["lo"] <= d["difference"] <= d["hi"] and d["n"] == result["start"]["relation"]["n"]
