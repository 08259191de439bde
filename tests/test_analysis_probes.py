"""Bias probes and measured limitations: against numpy brute force, on constructed features whose answer is
known, and end to end on a tiny random model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from miniclip.analysis.bias import (
    association,
    bootstrap_mean_gap,
    caption_groups,
    flickr8k_bias,
    group_gaps,
    topk_composition,
)
from miniclip.analysis.limitations import (
    count_prompt,
    flickr8k_counting,
    pairwise_accuracy,
    prompt_sensitivity,
    relation_captions,
    shapes_counting,
    shapes_prompt_sensitivity,
    shapes_prompt_sets,
    shapes_relations,
    swap_count,
    template_prompt_sets,
)
from miniclip.eval.zeroshot import encode_images, encode_texts


@pytest.fixture(scope="module")
def model(tiny_vit):  # tests/conftest.py
    return tiny_vit


class _Captioned(torch.utils.data.Dataset):
    """A Flickr8k stand-in: images with lists of captions."""

    def __init__(self, captions):
        self.captions = captions
        self.images = torch.randn(len(captions), 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.captions)

    def __getitem__(self, i):
        return self.images[i], self.captions[i][0]


# ------------------------------------------------------------------------------------------------- bias


def test_default_prompts_are_well_formed():
    from miniclip.analysis.bias import ACTIVITY_PROMPTS, OCCUPATION_PROMPTS

    assert "a photo of an engineer." in OCCUPATION_PROMPTS and "a photo of a doctor." in OCCUPATION_PROMPTS
    assert all(p.startswith("a photo of a person ") for p in ACTIVITY_PROMPTS)


def test_caption_groups_use_whole_words_and_drop_mixed_or_unmarked_images():
    groups = caption_groups([["A man rides a bike", "a guy on a bike"], ["Two girls play"], ["a woman and a man"],
                             ["a dog runs"], ["the mannequin in a shop window", "Women talk"]])
    assert groups == ["male words", "female words", None, None, "female words"]


def test_bootstrap_gap_matches_numpy_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 0.1, size=(200, 2)), rng.normal(0.2, 0.1, size=(150, 2))
    b[:, 1] = a[:150, 1]  # the second column: the same distribution in both groups
    gap, low, high = bootstrap_mean_gap(torch.tensor(a), torch.tensor(b), n_boot=500)
    np.testing.assert_allclose(gap.numpy(), a.mean(0) - b.mean(0), rtol=1e-5)
    assert (low <= gap).all() and (gap <= high).all()
    assert low[0] > 0  # a real 0.1 gap with 150+ samples per group is clearly non-zero
    assert low[1] < 0 < high[1]
    half_width = (high[0] - low[0]).item() / 2
    standard_error = np.sqrt(a[:, 0].var(ddof=1) / 200 + b[:, 0].var(ddof=1) / 150)
    assert half_width == pytest.approx(1.96 * standard_error, rel=0.2)  # the bootstrap agrees with the normal CI


def test_group_gaps_rows_hold_each_groups_mean_similarity():
    fa, fb = F.normalize(torch.randn(5, 4), dim=-1), F.normalize(torch.randn(7, 4), dim=-1)
    text = F.normalize(torch.randn(2, 4), dim=-1)
    rows = group_gaps({"x": fa, "y": fb}, text, ["p", "q"], n_boot=50)
    for j, row in enumerate(rows):
        assert row["mean_x"] == pytest.approx((fa @ text[j]).mean().item(), abs=1e-6)
        assert row["gap"] == pytest.approx(row["mean_x"] - row["mean_y"], abs=1e-6)
        assert row["n"] == (5, 7) and row["groups"] == ("x", "y")
    with pytest.raises(ValueError, match="exactly two"):
        group_gaps({"x": fa}, text, ["p", "q"])


def test_topk_composition_on_features_where_one_group_matches_the_prompt():
    prompt = torch.tensor([[1.0, 0.0]])
    matching = F.normalize(torch.tensor([[1.0, 0.1 * i] for i in range(5)]), dim=-1)
    other = F.normalize(torch.tensor([[0.1 * i, 1.0] for i in range(15)]), dim=-1)
    features = torch.cat([matching, other, torch.tensor([[1.0, 0.0]])])
    groups = ["a"] * 5 + ["b"] * 15 + [None]  # the ungrouped best match must not count
    (row,) = topk_composition(features, groups, prompt, ["p"], k=5, n_boot=200)
    assert row["share_a"] == 1.0 and row["share_b"] == 0.0 and row["pool"] == 20
    assert row["base_rate_a"] == 0.25 and row["ci_high_a"] == 1.0 and row["ci_low_a"] > row["base_rate_a"]


@torch.no_grad()
def test_association_equals_brute_force_on_a_tiny_model(model):
    g = torch.Generator().manual_seed(1)
    with_attr, without = torch.randn(4, 3, 32, 32, generator=g), torch.randn(6, 3, 32, 32, generator=g)
    rows = association(model, {"photo": with_attr, "other": without}, "a vintage photo", n_boot=100)
    assert len(rows) == 1 and rows[0]["prompt"] == "a vintage photo"
    text = encode_texts(model, ["a vintage photo"])[0]
    expected = (encode_images(model, with_attr) @ text).mean() - (encode_images(model, without) @ text).mean()
    assert rows[0]["gap"] == pytest.approx(expected.item(), abs=1e-5)
    assert rows[0]["ci_low"] <= rows[0]["gap"] <= rows[0]["ci_high"]


@torch.no_grad()
def test_flickr8k_bias_end_to_end_on_a_stand_in(model):
    data = _Captioned([["a man cooks"], ["a woman cooks"], ["a boy runs"], ["two girls"], ["a dog"],
                       ["a man and a woman"], ["a lady reads"], ["guys play football"]])
    result = flickr8k_bias(model, data, prompts=["a photo of a person cooking."],
                           retrieval_prompts=["a photo of a nurse."], k=3, n_boot=50)
    assert result["group_sizes"] == {"male words": 3, "female words": 3} and result["excluded"] == 2
    assert len(result["gaps"]) == 1 and result["topk"][0]["k"] == 3
    assert result["topk"][0]["share_male words"] + result["topk"][0]["share_female words"] == pytest.approx(1)


# ---------------------------------------------------------------------------------------------- limitations


def test_count_prompts_and_relation_captions_use_the_shapes_grammar():
    assert count_prompt(1, "circle", "red") == "a photo of a red circle"
    assert count_prompt(3, "cross", "orange") == "a photo of three orange crosses"
    objects = [{"shape": "circle", "colour": "red", "size": "small", "position": "top left"},
               {"shape": "square", "colour": "blue", "size": "large", "position": "bottom right"}]
    true, swapped, rel = relation_captions(objects)
    assert (true, swapped, rel) == ("a photo of a red circle to the left of a blue square",
                                    "a photo of a blue square to the left of a red circle", "left of")
    assert sorted(true.split()) == sorted(swapped.split())  # the same bag of words


def test_swap_count_changes_only_the_counted_noun_phrase():
    assert swap_count("Two dogs run on the beach .") == ("A dog run on the beach .", "plural->singular")
    assert swap_count("A man rides a bike") == ("Two men rides a bike", "singular->plural")
    assert swap_count("three young children play") == ("a young child play", "plural->singular")
    assert swap_count("an old woman and two dogs") == ("two old women and two dogs", "singular->plural")
    assert swap_count("two elderly people sit") == ("an elderly person sit", "plural->singular")
    assert swap_count("a sheep grazes") is None  # same word either way: no contrast
    assert swap_count("a red car on a road") is None


def test_pairwise_accuracy_counts_ties_as_half():
    result = pairwise_accuracy(torch.tensor([1.0, 0.5, 0.2, 0.3]), torch.tensor([0.0, 0.5, 0.9, 0.1]), n_boot=100)
    assert result["accuracy"] == pytest.approx(2.5 / 4) and result["chance"] == 0.5 and result["n"] == 4
    assert result["ci_low"] <= result["accuracy"] <= result["ci_high"]


@torch.no_grad()
def test_flickr8k_counting_matches_brute_force(model):
    data = _Captioned([["Two dogs play", "a cat sleeps"], ["a red car"], ["A boy jumps", "two boys jump"]])
    result = flickr8k_counting(model, data, n_boot=50)
    assert result["n"] == 4
    feats = encode_images(model, data.images)
    pairs = [(0, "Two dogs play", "A dog play"), (0, "a cat sleeps", "two cats sleeps"),
             (2, "A boy jumps", "Two boys jumps"), (2, "two boys jump", "a boy jump")]
    wins = [(feats[i] @ encode_texts(model, [t, f]).t()).argmax().item() == 0 for i, t, f in pairs]
    assert result["accuracy"] == pytest.approx(np.mean(wins))
    assert set(result["per_direction"]) == {"plural->singular", "singular->plural"}
    assert result["per_direction"]["plural->singular"]["n"] == 2
    # the text-only baseline scores the same pairs against an unrelated image (here 3 // 2 = 1 item away)
    other_wins = [(feats[(i + 1) % 3] @ encode_texts(model, [t, f]).t()).argmax().item() == 0 for i, t, f in pairs]
    assert result["unrelated_image_baseline"]["accuracy"] == pytest.approx(np.mean(other_wins))


@torch.no_grad()
def test_shapes_counting_and_relations_run_and_are_consistent(model):
    counting = shapes_counting(model, n=6, max_count=3)
    confusion = np.array(counting["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 18 and (confusion.sum(1) == 6).all()
    assert counting["accuracy"] == pytest.approx(np.trace(confusion) / 18) and counting["chance"] == 1 / 3
    relations = shapes_relations(model, n=12, n_boot=50)
    assert relations["n"] + relations["skipped_lookalikes"] == 12 and relations["chance"] == 0.5
    assert sum(r["n"] for r in relations["per_relation"].values()) == relations["n"]
    for true, swapped in relations["examples"]:
        assert true != swapped and sorted(true.split()) == sorted(swapped.split())


@torch.no_grad()
def test_prompt_sensitivity_matches_brute_force(model):
    features = F.normalize(torch.randn(10, 32, generator=torch.Generator().manual_seed(2)), dim=-1)
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    sets = template_prompt_sets(["dog", "cat"], ("a photo of a {}.", "a {}.", "a drawing of a {}."))
    result = prompt_sensitivity(model, features, labels, sets)
    for template, prompts in sets.items():
        predicted = (features @ encode_texts(model, prompts).t()).argmax(1)
        assert result["per_template"][template] == pytest.approx((predicted == labels).float().mean().item())
    values = list(result["per_template"].values())
    assert result["range"] == pytest.approx(max(values) - min(values)) and result["chance"] == 0.5
    names = shapes_prompt_sets("shape")
    assert "a photo of {}" in names and "a picture of {}" in names and names["{}"][0] == "a circle"
    shapes = shapes_prompt_sensitivity(model, n=8, kind="shape")
    assert shapes["n"] == 8 and shapes["chance"] == 1 / 8 and len(shapes["per_template"]) == len(names)
