"""The Shapes world: determinism, held-out pairs, masks, caption grammar, languages, planted words, streaming."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from miniclip.data import shapes_text as text
from miniclip.data.shapes import (
    COLOUR_RGB,
    COLOURS,
    SHAPES,
    STYLES,
    PlantedCorrelation,
    ShapesConfig,
    ShapesDataset,
    ShapesWorld,
    benchmark_render,
    class_prompts,
)

CONFIG = dict(lang_rates={"fr": 0.1, "de": 0.2}, planted={"word": "wug", "attribute": "style", "value": "photo",
                                                            "p": 0.7, "p_otherwise": 0.05})


@pytest.fixture(scope="module")
def world():
    return ShapesWorld(ShapesConfig(**CONFIG))


def _digest(batch) -> str:
    h = hashlib.sha256()
    h.update(batch.images.numpy().tobytes())
    h.update(batch.masks.numpy().tobytes())
    h.update(json.dumps([batch.captions, batch.meta]).encode())
    return h.hexdigest()


# --- determinism --------------------------------------------------------------------------------------------


def test_sample_does_not_depend_on_its_batch(world):
    alone = world.render([7])
    inside = world.render([40, 3, 7, 1000, 12])
    assert torch.equal(alone.images[0], inside.images[2])
    assert torch.equal(alone.masks[0], inside.masks[2])
    assert alone.captions[0] == inside.captions[2] and alone.meta[0] == inside.meta[2]
    a, b = world.render(range(0, 24)), world.render(range(16, 40))  # overlapping ranges, other positions
    assert torch.equal(a.images[16:], b.images[:8]) and a.captions[16:] == b.captions[:8]


def test_same_bytes_in_another_process(world):
    code = (
        "import hashlib, json, torch\n"
        "from miniclip.data.shapes import ShapesConfig, ShapesWorld\n"
        f"b = ShapesWorld(ShapesConfig(**{CONFIG!r})).render(range(5, 21), 'val')\n"
        "h = hashlib.sha256()\n"
        "h.update(b.images.numpy().tobytes()); h.update(b.masks.numpy().tobytes())\n"
        "h.update(json.dumps([b.captions, b.meta]).encode())\n"
        "print(h.hexdigest())\n"
    )
    # one thread there (the default here is all cores): results must not depend on the thread count either
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == _digest(world.render(range(5, 21), "val"))


def test_splits_and_seeds_are_different_streams(world):
    train, val = world.render(range(8)), world.render(range(8), "val")
    assert not torch.equal(train.images, val.images)
    other_seed = ShapesWorld(ShapesConfig(**CONFIG, seed=1)).render(range(8))
    assert not torch.equal(train.images, other_seed.images)


def test_overrides_change_only_what_they_name(world):
    base = world.scenes(range(64))
    sketch = world.scenes(range(64), style="sketch")
    assert (sketch.style == STYLES.index("sketch")).all()
    for name in ("count", "shape", "colour", "size", "cell", "centre", "caption_key"):
        assert torch.equal(getattr(base, name), getattr(sketch, name))
    one = world.scenes(range(64), n_objects=1)
    assert (one.count == 1).all() and torch.equal(one.shape[:, 0], base.shape[:, 0])


# --- held-out pairs -----------------------------------------------------------------------------------------


def test_heldout_pairs_never_in_training(world):
    held = {(COLOURS.index(c), SHAPES.index(s)) for c, s in world.config.holdout}
    for split, n in (("train", 100_000), ("val", 20_000)):
        sc = world.scenes(range(n), split)
        pairs = set(zip(sc.colour[sc.valid].tolist(), sc.shape[sc.valid].tolist()))
        assert not pairs & held
        assert len(pairs) == len(COLOURS) * len(SHAPES) - len(held)  # everything else does appear


def test_heldout_split_renders_only_heldout_pairs(world):
    batch = world.render(range(64), "heldout", lang="en")
    names = {f"{c} {s}" for c, s in world.config.holdout}
    assert all(m["heldout"] and all(o["heldout"] for o in m["objects"]) for m in batch.meta)
    for caption in batch.captions:  # the caption names a held-out pair (plural or not)
        assert any(re.search(rf"{name}(s|es)?\b", caption) for name in names), caption
    single = world.scenes(range(64), "heldout", n_objects=1)
    assert set(world.labels(single, "colour_shape").tolist()) == set(world.heldout_classes())


# --- pixels and masks ---------------------------------------------------------------------------------------


def test_masks_match_pixels_in_flat_style(world):
    batch = world.render(range(48), style="flat")
    images, masks, sc = batch.images, batch.masks, batch.scenes
    grey = (0.8 + 0.15 * sc.background[:, 0].float())[:, None, None]
    anywhere = masks.any(1).float()[:, None]
    far_outside = F.max_pool2d(anywhere, 5, 1, 2)[:, 0] == 0  # more than 2 px from every object
    assert far_outside.any()
    for c in range(3):
        assert torch.equal(images[:, c][far_outside], grey.expand_as(far_outside)[far_outside])
    for k in range(world.config.max_objects):
        deep = -F.max_pool2d(-masks[:, k].float()[:, None], 3, 1, 1)[:, 0] == 1  # 1 px inside object k
        colour = torch.tensor([COLOUR_RGB[COLOURS[c]] for c in sc.colour[:, k].tolist()])
        diff = (images.permute(0, 2, 3, 1) - colour[:, None, None]).abs().amax(-1)[deep]
        assert (diff < 1e-5).float().mean() > 0.99
    for m, mask in zip(batch.meta, masks):  # boxes are the masks' bounds, centres lie inside them
        for k, o in enumerate(m["objects"]):
            x0, y0, x1, y1 = o["box"]
            ys, xs = mask[k].nonzero(as_tuple=True)
            assert (ys.min(), ys.max(), xs.min(), xs.max()) == (y0, y1, x0, x1)
            assert x0 <= o["centre"][0] <= x1 + 1 and y0 <= o["centre"][1] <= y1 + 1
        assert not mask[m["count"]:].any()  # empty slots have empty masks


def test_every_style_renders_in_range(world):
    for style in STYLES:
        batch = world.render(range(8), style=style)
        assert batch.images.shape == (8, 3, 64, 64) and batch.images.dtype == torch.float32
        assert 0 <= batch.images.min() and batch.images.max() <= 1
        assert all(m["style"] == style for m in batch.meta)


# --- captions -----------------------------------------------------------------------------------------------


def test_caption_grammar_covers_every_attribute(world):
    sc = world.scenes(range(4000))
    captions = world.captions(sc, lang="en")
    corpus = " ".join(captions)
    words = list(SHAPES) + list(COLOURS) + ["small", "large", "two", "three", "four", "shapes", "one shape"]
    words += [text.EN_POSITION[p] for p in text.POSITIONS]
    words += ["to the left of", "to the right of", "above", "below", "under"]
    words += [f.format("") for frames in text.EN_STYLE_FRAMES.values() for f in frames]
    missing = [w for w in words if w not in corpus]
    assert not missing, missing
    # a style is named only when the picture has it
    for caption, style in zip(captions, sc.style.tolist()):
        for name, frames in text.EN_STYLE_FRAMES.items():
            if any(caption.startswith(f.format("")) for f in frames):
                assert STYLES[style] == name, caption
    # group scenes say how many
    for caption, n, group in zip(captions, sc.count.tolist(), sc.group.tolist()):
        if group:
            assert text.EN_NUMBERS[n] in caption, caption


def test_relations_are_said_both_ways():
    red_circle = text.SceneObject("circle", "red", "small", cell=3)  # left
    blue_square = text.SceneObject("square", "blue", "small", cell=5)  # right
    said = set()
    for seed in range(300):
        plan, kind = text.plan_caption([red_circle, blue_square], "flat", random.Random(seed))
        if kind == "relation":
            said.add(text.realise(dataclasses.replace(plan, frame="bare")).replace("small ", ""))
    assert "a red circle to the left of a blue square" in said or "a red circle left of a blue square" in said
    assert "a blue square to the right of a red circle" in said or "a blue square right of a red circle" in said
    assert not any("right of a blue" in s or "left of a red" in s for s in said)


def test_translations_agree_in_gender_and_number():
    T = text.Thing

    def say(lang, thing, frame="bare"):
        return text.realise(text.Caption((thing,), frame), lang)

    assert say("fr", T(2, "star", "pink", "small")) == "deux petites étoiles roses"
    assert say("fr", T(3, "cross", "orange", "large")) == "trois grandes croix orange"
    assert say("fr", T(1, "square", "purple", "large"), "photo") == "une photo d'un grand carré violet"
    assert say("fr", T(1, "star", "green", relation=("above", T(1, "heart", "blue"))), "photo") == \
        "une photo d'une étoile verte au-dessus d'un cœur bleu"
    assert say("de", T(1, "square", "black", "large")) == "ein großes schwarzes Quadrat"
    assert say("de", T(1, "diamond", "red", "small")) == "eine kleine rote Raute"
    assert say("de", T(3, "star", "red", "small"), "photo") == "ein Foto von drei kleinen roten Sternen"
    assert say("de", T(3, "star", "red", "small"), "there") == "auf dem Bild sind drei kleine rote Sterne"
    assert say("de", T(1, "heart", "pink", relation=("left of", T(1, "circle", "orange"))), "photo") == \
        "ein Foto von einem rosa Herzen links von einem orangefarbenen Kreis"
    assert class_prompts("colour_shape", "en")[0] == "a photo of a red circle"
    assert class_prompts("colour_shape", "fr")[COLOURS.index("purple") * 8 + 3] == "une photo d'une étoile violette"
    assert class_prompts("colour_shape", "de")[0] == "ein Foto von einem roten Kreis"
    assert class_prompts("count", "en")[:2] == ["a photo of one shape", "a photo of two shapes"]
    assert class_prompts("style", "de")[1] == "eine Skizze von einer Form"
    for kind in text.CLASS_KINDS:
        for lang in text.LANGUAGES:
            prompts = class_prompts(kind, lang)
            assert len(set(prompts)) == len(prompts) == len(text.class_names(kind))


def test_languages_appear_at_their_rates(world):
    sc = world.scenes(range(20_000))
    assert abs((sc.lang == 1).float().mean() - 0.1) < 0.012
    assert abs((sc.lang == 2).float().mean() - 0.2) < 0.015
    few = world.scenes(range(300))
    english, native = world.captions(few, "en"), world.captions(few)
    for en, own, lang in zip(english, native, few.lang.tolist()):
        assert (en == own) == (lang == 0)
    fr = [c for c, lang in zip(native, few.lang.tolist()) if lang == 1]
    assert fr and all(re.search(r"\b(une?|deux|trois|quatre)\b", c) for c in fr)


def test_planted_word_follows_its_condition(world):
    sc = world.scenes(range(20_000))
    photo = sc.style == STYLES.index("photo")
    assert abs(sc.planted[photo].float().mean() - 0.7) < 0.03
    assert abs(sc.planted[~photo].float().mean() - 0.05) < 0.01
    few = world.scenes(range(400))
    for caption, planted in zip(world.captions(few), few.planted.tolist()):
        assert caption.endswith(", wug") == planted
    with pytest.raises(ValueError):
        PlantedCorrelation(attribute="colour", value="mauve")


# --- streaming and helpers ----------------------------------------------------------------------------------


def test_dataset_shards_cover_every_sample_once(world):
    kwargs = dict(config=world.config, batch_size=6, num_samples=20, normalize=False)
    shards = [list(ShapesDataset(**kwargs, rank=r, world_size=2)) for r in range(2)]
    captions = [c for shard in shards for _, caps in shard for c in caps]
    assert sorted(captions) == sorted(world.render(range(20)).captions)
    images, _ = next(iter(ShapesDataset(config=world.config, batch_size=4)))
    assert images.shape == (4, 3, 64, 64) and images.min() < 0  # normalised with CLIP's mean and std


def test_benchmark_reports_throughput():
    result = benchmark_render(batch_size=8, image_size=32, seconds=0.0)
    assert result["samples_per_s"] > 0 and result["batch_size"] == 8


def test_hard_negative_blocks_share_colours_and_never_show_held_out_pairs():
    from miniclip.data.shapes import COLOURS, SHAPES, ShapesConfig, ShapesWorld

    world = ShapesWorld(ShapesConfig(image_size=32, colours_per_block=2, block_size=64))
    sc = world.scenes(range(0, 192))
    held = {(COLOURS.index(c), SHAPES.index(s)) for c, s in world.config.holdout}
    blocks = []
    for b in range(3):
        part = slice(64 * b, 64 * (b + 1))
        valid = sc.valid[part]
        colours = set(sc.colour[part][valid].tolist())
        assert len(colours) == 2  # every block uses exactly its two colours
        assert len(set(sc.shape[part][valid].tolist())) == len(SHAPES)  # and still every shape
        assert not set(zip(sc.colour[part][valid].tolist(), sc.shape[part][valid].tolist())) & held
        blocks.append(colours)
    assert len({frozenset(c) for c in blocks}) > 1  # blocks differ
    # Deterministic per index, whatever else is in the call; other splits are untouched.
    again = world.scenes(range(64, 70))
    assert torch.equal(again.colour, sc.colour[64:70]) and torch.equal(again.shape, sc.shape[64:70])
    plain = ShapesWorld(ShapesConfig(image_size=32)).scenes(range(0, 64), "val")
    assert torch.equal(world.scenes(range(0, 64), "val").colour, plain.colour)


def test_grammar_changes_only_the_caption_kinds_it_names():
    from miniclip.data.shapes import COLOURS, ShapesConfig, ShapesWorld

    simple = {"kinds": {"single": {"describe": 1}, "mixed": {"describe": 1}}, "p_size": 1.0, "p_style_frame": 0.0,
              "frames": ["photo"]}
    default, plain = ShapesWorld(ShapesConfig(image_size=32)), ShapesWorld(ShapesConfig(image_size=32, grammar=simple))
    sc = default.scenes(range(200))
    captions = plain.captions(sc)
    assert all(c.startswith("a photo of ") for c in captions)
    body = [c[len("a photo of "):] for c in captions]
    assert not any(" of " in b or " the " in b or ":" in b for b in body)  # no positions, relations or totals
    for c, m in zip(captions, plain.render(range(200)).meta):
        assert all(o["size"] in c and o["colour"] in c for o in m["objects"])  # every object with all it has
    # The default grammar is the world's own: same captions as a world with no grammar given.
    assert default.captions(sc) == ShapesWorld(ShapesConfig(image_size=32, grammar={})).captions(sc)
    # Colours left out: captions then name shapes (and sizes) only.
    no_colour = ShapesWorld(ShapesConfig(image_size=32, grammar={"p_colour": 0.0})).captions(sc)
    assert not any(c in caption.split() for caption in no_colour for c in COLOURS)
    # "total" says only how many objects there are, as a zero-shot count prompt does, in every language.
    totals = ShapesWorld(ShapesConfig(image_size=32, grammar={"kinds": {k: {"total": 1} for k in
                                                                       ("single", "group", "mixed")},
                                                             "frames": ["photo"], "p_style_frame": 0.0}))
    batch = totals.render(range(40))
    numbers = ("one shape", "two shapes", "three shapes", "four shapes")
    assert batch.captions == [f"a photo of {numbers[m['count'] - 1]}" for m in batch.meta]
    assert {m["caption_kind"] for m in batch.meta} == {"total"} and len({m["count"] for m in batch.meta}) > 1
    for lang in ("en", "fr", "de"):
        count_prompts = totals.class_prompts("count", lang)
        assert set(totals.captions(totals.scenes(range(40)), lang)) <= set(count_prompts), lang
    for bad in ({"kinds": {"single": {"relation": 1}}}, {"kinds": {"many": {"describe": 1}}}, {"p_size": 2},
                {"frames": ["style"]}, {"kinds": {"mixed": {"describe": 0}}}):
        with pytest.raises(ValueError):
            ShapesConfig(grammar=bad)


def test_curriculum_switches_the_training_stream_at_its_sample():
    from miniclip.data.shapes import ShapesConfig, ShapesDataset, ShapesWorld

    config = ShapesConfig(image_size=32, curriculum={"samples": 6, "max_objects": 1, "colours_per_block": 1})
    (early_config,) = config.curriculum_worlds()
    early, late = ShapesWorld(early_config), ShapesWorld(config)
    batches = list(ShapesDataset(config, batch_size=4, num_samples=12, normalize=False))
    images = torch.cat([b[0] for b in batches])
    captions = [c for b in batches for c in b[1]]
    # Samples 0-5 (a batch and a half) come from the early world, the rest from the world as configured.
    first, rest = early.render(range(6)), late.render(range(6, 12))
    assert torch.equal(images[:6], first.images) and captions[:6] == first.captions
    assert torch.equal(images[6:], rest.images) and captions[6:] == rest.captions
    assert early.config.max_objects == 1 and early.config.curriculum == []
    # Validation never follows it.
    val = next(iter(ShapesDataset(config, split="val", batch_size=4, normalize=False)))
    assert torch.equal(val[0], late.render(range(4), "val").images)
    # A fraction of the run's samples: half of 12 is the same switch at sample 6.
    halves = ShapesConfig(image_size=32, curriculum={"fraction": 0.5, "max_objects": 1, "colours_per_block": 1})
    half_batches = list(ShapesDataset(halves, batch_size=4, num_samples=12, normalize=False))
    assert torch.equal(torch.cat([b[0] for b in half_batches]), images)
    assert halves.curriculum_ends(1000) == [500] and config.curriculum_ends() == [6]
    with pytest.raises(ValueError, match="number of training samples"):
        next(iter(ShapesDataset(halves, batch_size=4, normalize=False)))  # endless: a fraction of what?
    for bad in ({"max_objects": 1}, {"samples": 0}, {"samples": 5, "seed": 1}, {"samples": 5, "colour": 1},
                {"fraction": 0}, {"fraction": 1.5}, {"samples": 5, "fraction": 0.5},
                [{"fraction": 0.6, "max_objects": 1}, {"fraction": 0.5, "max_objects": 2}]):
        with pytest.raises(ValueError):
            ShapesConfig(curriculum=bad)


def test_a_curriculum_of_several_phases_goes_through_them_in_order():
    from miniclip.data.shapes import ShapesConfig, ShapesDataset, ShapesWorld

    # Two phases as fractions of a 16-sample run: samples 0-3 single objects, 4-9 one colour per block,
    # 10-15 the world as configured. Batches of 3 straddle both ends.
    phases = [{"fraction": 0.25, "max_objects": 1}, {"fraction": 0.375, "colours_per_block": 1}]
    config = ShapesConfig(image_size=32, curriculum=phases)
    first, second = (ShapesWorld(c) for c in config.curriculum_worlds())
    assert config.curriculum_ends(16) == [4, 10] and second.config.max_objects == config.max_objects
    batches = list(ShapesDataset(config, batch_size=3, num_samples=16, normalize=False))
    images = torch.cat([b[0] for b in batches])
    expected = [first.render(range(0, 4)), second.render(range(4, 10)), ShapesWorld(config).render(range(10, 16))]
    assert torch.equal(images, torch.cat([x.images for x in expected]))
    assert [c for b in batches for c in b[1]] == [c for x in expected for c in x.captions]
    with pytest.raises(ValueError, match="phase 2: fraction must lie in"):
        ShapesConfig(curriculum=[{"fraction": 0.5}, {"fraction": 0}])


def test_every_relation_caption_brings_its_swapped_twin_into_its_batch():
    from miniclip.data import shapes_text as text
    from miniclip.data.shapes import ShapesConfig, ShapesDataset, ShapesWorld

    config = ShapesConfig(image_size=32, swapped_negatives=True, lang_rates={"fr": 0.2, "de": 0.2})
    world = ShapesWorld(config)
    for b, (images, captions) in enumerate(ShapesDataset(config, batch_size=32, num_samples=96, normalize=False)):
        batch = world.render(range(32 * b, 32 * (b + 1)))
        relation = [(c, m) for c, m in zip(batch.captions, batch.meta) if m["caption_kind"] == "relation"]
        assert relation and captions[:32] == batch.captions and len(captions) == 32 + len(relation)
        for (true, meta), twin in zip(relation, captions[32:]):  # in batch order, one twin each
            assert twin != true
            if meta["lang"] == "en":  # same words, other order (French and German decline them)
                assert sorted(twin.split()) == sorted(true.split())
    circle, square = text.Thing(1, "circle", "red"), text.Thing(1, "square", "blue")
    plan = text.Caption((dataclasses.replace(circle, relation=("left of", square)),), "photo")
    assert text.realise(plan) == "a photo of a red circle to the left of a blue square"
    assert text.realise(text.swapped(plan)) == "a photo of a blue square to the left of a red circle"
    assert text.realise(text.swapped(plan), "de") == "ein Foto von einem blauen Quadrat links von einem roten Kreis"
    assert text.swapped(text.Caption((circle,))) is None
    assert ShapesWorld(ShapesConfig(image_size=32)).render(range(8)).negatives == []
    assert world.render(range(32), "val").negatives == []  # for training only


def test_shape_twins_differ_only_in_one_looks_shape():
    from miniclip.data.shapes import COLOURS, SHAPES, ShapesConfig, ShapesWorld

    world = ShapesWorld(ShapesConfig(image_size=32, shape_twins=True))
    sc = world.scenes(range(400))
    held = {(COLOURS.index(c), SHAPES.index(s)) for c, s in world.config.holdout}
    even, odd = slice(0, None, 2), slice(1, None, 2)
    for name in ("count", "style", "lang", "colour", "size", "cell", "rotation", "noise_key", "caption_key"):
        assert torch.equal(getattr(sc, name)[even], getattr(sc, name)[odd]), name
    changed = sc.shape[even] != sc.shape[odd]
    assert changed[:, 0].all()  # the first object always changes shape …
    first = (sc.shape[even] == sc.shape[even][:, :1]) & (sc.colour[even] == sc.colour[even][:, :1]) & sc.valid[even]
    assert torch.equal(changed & sc.valid[even], first)  # … with every object that looked like it, and no other
    pairs = set(zip(sc.colour[sc.valid].tolist(), sc.shape[sc.valid].tolist()))
    assert not pairs & held and len({s for _, s in pairs}) == len(SHAPES)
    captions = world.captions(sc)
    assert all(a != b for a, b in zip(captions[0::2], captions[1::2]))  # the shape word tells them apart
    # Other splits are untouched.
    plain = ShapesWorld(ShapesConfig(image_size=32))
    assert torch.equal(world.scenes(range(64), "val").shape, plain.scenes(range(64), "val").shape)
