"""The attribute evaluator: each score against a hand computation on fixed features, then end to end."""

import json
import math

import pytest
import torch

from miniclip.checkpoint import save_checkpoint
from miniclip.cli import main
from miniclip.config import load_config
from miniclip.data.shapes import SHAPES, ShapesConfig, ShapesWorld
from miniclip.eval.attributes import (
    attribute_report,
    paired_difference,
    relation_captions,
    relation_hits,
    scored,
    shape_given_colour_hits,
    wilson_interval,
    zero_shot_hits,
)
from miniclip.model import CLIP


def test_wilson_interval_by_hand():
    # p = 0.8, n = 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416, half 1.96 * sqrt(0.016 + 0.009604) / 1.38416
    lo, hi = wilson_interval(8, 10)
    assert math.isclose(lo, 0.4902, abs_tol=1e-4) and math.isclose(hi, 0.9433, abs_tol=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    r = scored(torch.tensor([True, True, False, True]), chance=0.25)
    assert r["accuracy"] == 0.75 and r["n"] == 4 and r["chance"] == 0.25 and r["lo"] < 0.75 < r["hi"]


def test_zero_shot_hits_pick_the_most_similar_prompt():
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.1]])
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert zero_shot_hits(images, classes, torch.tensor([0, 1, 0])).tolist() == [True, True, False]


def test_shape_given_colour_looks_only_at_the_true_colours_pairs():
    logits = torch.zeros(2, 8 * len(SHAPES))
    logits[0, 3 * 8 + 5] = 1.0  # image 0 (colour 3, shape 5): its colour's best pair is shape 5 ...
    logits[0, 0 * 8 + 2] = 9.0  # ... though a pair of another colour scores higher overall
    logits[1, 1 * 8 + 4] = 1.0  # image 1 (colour 1, shape 6): its colour's best pair is shape 4
    hits = shape_given_colour_hits(logits, torch.tensor([3, 1]), torch.tensor([5, 6]))
    assert hits.tolist() == [True, False]


def test_relation_hits_compare_true_and_swapped_captions():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    true = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    swapped = torch.tensor([[0.1, 0.9], [0.9, 0.1]])
    assert relation_hits(image, true, swapped).tolist() == [True, False]


def test_paired_difference_by_hand():
    # Differences 1, 0, 0, 1, -1: mean 0.2, sample sd sqrt((0.64 + 0.04 + 0.04 + 0.64 + 1.44) / 4) = sqrt(0.7).
    a = torch.tensor([True, True, False, True, False])
    b = torch.tensor([False, True, False, False, True])
    d = paired_difference(a, b)
    half = 1.96 * math.sqrt(0.7) / math.sqrt(5)
    assert d["n"] == 5 and math.isclose(d["difference"], 0.2, abs_tol=1e-6)
    assert math.isclose(d["lo"], 0.2 - half, abs_tol=1e-6) and math.isclose(d["hi"], 0.2 + half, abs_tol=1e-6)


def test_relation_captions_swap_the_objects_and_keep_the_words():
    world = ShapesWorld(ShapesConfig(image_size=32))
    batch = world.render(range(40), split="test", n_objects=2)
    keep, true, swapped = relation_captions(world, batch)
    assert len(keep) > 20
    for row, t, s in zip(keep, true, swapped):
        assert t != s and sorted(t.split()) == sorted(s.split())
        first = batch.meta[row]["objects"][0]
        assert t.split(" of ", 1)[1].split(None, 1)[1].startswith(f"{first['colour']} {first['shape']}")


@pytest.fixture(scope="module")
def tiny_shapes_checkpoint(tmp_path_factory):
    config = load_config("configs/ci.yaml")
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("attributes"), "final", CLIP(config.model), step=0,
                           run_config=config.to_dict())


def test_the_report_covers_every_attribute_with_its_chance(tiny_shapes_checkpoint, capsys):
    assert main(["eval", "attributes", "--checkpoint", str(tiny_shapes_checkpoint), "--n", "32", "--probe-n", "64",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    chances = {"colour": 1 / 8, "shape": 1 / 8, "size": 1 / 2, "shape_given_colour": 1 / 8, "seen_pairs": 1 / 64,
               "heldout_pairs": 1 / 64, "count": 1 / 4, "relation": 1 / 2, "probe_colour": 1 / 8,
               "probe_shape": 1 / 8, "probe_size": 1 / 2, "probe_count": 1 / 4}
    for task, chance in chances.items():
        assert report[task]["chance"] == chance and 0 <= report[task]["lo"] <= report[task]["hi"] <= 1, task
    assert report["colour"]["n"] == 32 and report["count"]["n"] == 32 and report["probe_count"]["n"] == 32


def test_a_model_that_knows_shape_scores_it(monkeypatch):
    """With image features that are the shape (one-hot) and text features that are the shape word a prompt
    names, shape and shape-given-colour are perfect, and colour is not: the evaluator rewards what the
    features hold, nothing else."""
    world = ShapesWorld(ShapesConfig(image_size=32))

    batch = world.render(range(16), split="test", n_objects=1)  # what attribute_report renders first
    shapes = world.labels(batch, "shape")
    monkeypatch.setattr("miniclip.eval.attributes.encode_texts",
                        lambda model, texts: torch.nn.functional.one_hot(
                            torch.tensor([next((i for i, s in enumerate(SHAPES) if s in t), 15) for t in texts]),
                            16).float())
    monkeypatch.setattr("miniclip.eval.attributes.encode_images",
                        lambda model, images: torch.nn.functional.one_hot(shapes[: len(images)], 16).float())
    report = attribute_report(torch.nn.Identity(), world, n=16, probes=False)
    assert report["shape"]["accuracy"] == 1.0 and report["shape_given_colour"]["accuracy"] == 1.0
    assert report["colour"]["accuracy"] < 0.5
