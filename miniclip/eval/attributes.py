"""What a Shapes model knows, attribute by attribute: `python -m miniclip eval attributes --checkpoint CKPT`.

A single zero-shot number hides which attributes a model learned. In the Shapes world we know every object's
attributes, so each can be tested alone, with its own chance level:

- **single objects** (one object per picture, test split), zero-shot from the world's own prompt grammar:
  colour among 8, shape among 8, size among 2, (colour, shape) among all 64 pairs for pairs training showed
  ("seen pairs") and for the pairs it held out ("held-out pairs", true composition), and *shape given colour*:
  the 64-pair scores restricted to the 8 pairs of the object's true colour, so that colour cannot help;
- **counting**: pictures of 1 to `max_objects` objects, "a photo of three shapes" among the counts;
- **relations**: two-object pictures, the true caption ("a red circle left of a blue square") against the
  same words with the objects swapped ("a blue square left of a red circle"). A text tower that reads
  captions as bags of words cannot tell them apart (chance 50%);
- **linear probes** of colour, shape and size on the image features of single objects, and of the count on
  those of the counting pictures (logistic regression, C swept on a validation set): what the image side
  holds, whether or not the text side can name it.

Every accuracy comes with its chance level and a 95% Wilson interval over the test pictures.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from miniclip.data.shapes import SHAPES, ShapesWorld
from miniclip.data.shapes_text import POSITIONS, SceneObject, relation_test_pair
from miniclip.data.transforms import normalize
from miniclip.eval.probes import prepare_features, train_probe
from miniclip.eval.zeroshot import encode_images, encode_texts

# Index offsets that keep the probe's pictures apart from the zero-shot test pictures (same split, other items).
PROBE_OFFSET = 1_000_000


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion `correct / n` (95% for z = 1.96); sound near 0 and 1,
    where the normal approximation gives intervals outside [0, 1]."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def scored(hits: torch.Tensor, chance: float) -> dict:
    """An accuracy from per-item hits (bool), with its chance level and 95% interval."""
    n, correct = len(hits), int(hits.sum())
    lo, hi = wilson_interval(correct, n)
    return {"accuracy": correct / n if n else float("nan"), "n": n, "chance": chance, "lo": lo, "hi": hi}


def zero_shot_hits(image_features: torch.Tensor, class_features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image: is the most similar class prompt the true one? (Features need not be normalised.)"""
    logits = F.normalize(image_features, dim=-1) @ F.normalize(class_features, dim=-1).t()
    return logits.argmax(1) == labels


def shape_given_colour_hits(pair_logits: torch.Tensor, colour: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """Per image: among the len(SHAPES) pairs of its true colour (pair id = colour * len(SHAPES) + shape),
    is its own shape the best scored?"""
    n_shapes = len(SHAPES)
    rows = pair_logits.view(len(pair_logits), -1, n_shapes)[torch.arange(len(pair_logits)), colour]
    return rows.argmax(1) == shape


def relation_hits(image_features: torch.Tensor, true_text: torch.Tensor, swapped_text: torch.Tensor) -> torch.Tensor:
    """Per image: does the true relation caption score above the same words with the two objects swapped?"""
    image = F.normalize(image_features, dim=-1)
    return (image * F.normalize(true_text, dim=-1)).sum(-1) > (image * F.normalize(swapped_text, dim=-1)).sum(-1)


def relation_captions(world: ShapesWorld, batch, frame: str = "photo", lang: str = "en") -> tuple[list, list, list]:
    """For two-object pictures whose objects differ in look: (kept rows, true captions, swapped captions), from
    `shapes_text.relation_test_pair` (the first relation that holds, and the same words in the other order)."""
    keep, true, swapped = [], [], []
    for row, meta in enumerate(batch.meta):
        a, b = (SceneObject(o["shape"], o["colour"], o["size"], POSITIONS.index(o["position"]))
                for o in meta["objects"][:2])
        if (a.shape, a.colour) == (b.shape, b.colour):
            continue
        caption, twin, _ = relation_test_pair(a, b, frame, lang)
        keep.append(row)
        true.append(caption)
        swapped.append(twin)
    return keep, true, swapped


@torch.no_grad()
def relation_test(model, world: ShapesWorld, n: int = 512, frame: str = "photo", lang: str = "en") -> torch.Tensor:
    """Per two-object test picture (the first `n`, those whose objects differ in look): is the true relation
    caption scored above the swapped one? The same pictures for every model, so two models' hits pair up."""
    model.eval()
    two = world.render(range(n), split="test", n_objects=2)
    keep, true, swapped = relation_captions(world, two, frame, lang)
    x = encode_images(model, normalize(two.images))[keep]
    return relation_hits(x, encode_texts(model, true), encode_texts(model, swapped)).cpu()


def paired_difference(a: torch.Tensor, b: torch.Tensor, z: float = 1.96) -> dict:
    """Accuracy of hits `a` minus that of hits `b` on the same items, with a 95% interval from the spread of
    the per-item differences (paired: an item both get right or both get wrong adds no noise)."""
    d = a.float() - b.float()
    n = len(d)
    half = z * d.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("inf")
    mean = d.mean().item()
    return {"difference": mean, "n": n, "lo": mean - half, "hi": mean + half}


@torch.no_grad()
def attribute_report(model, world: ShapesWorld, n: int = 512, probe_n: int = 1000, lang: str = "en",
                     frame: str = "photo", probes: bool = True, relations: bool = True) -> dict:
    """Every measure of the module docstring for `model` in `world` (the world the model trained in, so that
    its held-out pairs are the ones training never showed): `{task: {accuracy, n, chance, lo, hi}}`, the
    probes' under `probe_<attribute>`. `n` test pictures per task; `probe_n` pictures to fit each probe;
    `probes` / `relations` False skip those measures (for callers that score them their own way)."""
    model.eval()

    def image_features(batch) -> torch.Tensor:
        return encode_images(model, normalize(batch.images))

    def prompts(kind: str) -> torch.Tensor:
        return encode_texts(model, world.class_prompts(kind, lang, frame))

    report = {}
    single = world.render(range(n), split="test", n_objects=1)
    x = image_features(single)
    colour, shape = world.labels(single, "colour"), world.labels(single, "shape")
    for kind in ("colour", "shape", "size"):
        classes = prompts(kind)
        report[kind] = scored(zero_shot_hits(x, classes, world.labels(single, kind)), 1 / len(classes))
    pairs = prompts("colour_shape")
    pair_logits = F.normalize(x, dim=-1) @ F.normalize(pairs, dim=-1).t()
    report["shape_given_colour"] = scored(shape_given_colour_hits(pair_logits, colour, shape), 1 / len(SHAPES))
    report["seen_pairs"] = scored(zero_shot_hits(x, pairs, world.labels(single, "colour_shape")), 1 / len(pairs))
    if len(world.heldout_pairs):
        held = world.render(range(n), split="heldout", n_objects=1)
        report["heldout_pairs"] = scored(zero_shot_hits(image_features(held), pairs,
                                                        world.labels(held, "colour_shape")), 1 / len(pairs))

    k_max = world.config.max_objects

    def counted(offset: int, total: int):
        """`total` test pictures, as many of each count 1..k_max: (image features, count labels)."""
        batches = [world.render(range(offset + k * total, offset + k * total + max(1, total // k_max)),
                                split="test", n_objects=k) for k in range(1, k_max + 1)]
        return torch.cat([image_features(b) for b in batches]), torch.cat([world.labels(b, "count") for b in batches])

    count_x, count_y = counted(0, n)
    report["count"] = scored(zero_shot_hits(count_x, prompts("count"), count_y), 1 / k_max)

    if relations and k_max >= 2:
        report["relation"] = scored(relation_test(model, world, n, frame, lang), 0.5)

    if probes:
        fit = world.render(range(PROBE_OFFSET, PROBE_OFFSET + probe_n), split="test", n_objects=1)
        val = world.render(range(2 * PROBE_OFFSET, 2 * PROBE_OFFSET + probe_n // 2), split="test", n_objects=1)
        fx, vx, tx = (prepare_features(f) for f in (image_features(fit), image_features(val), x))
        for kind in ("colour", "shape", "size"):
            hits = probe_hits(fx, world.labels(fit, kind), vx, world.labels(val, kind), tx, world.labels(single, kind))
            report[f"probe_{kind}"] = scored(hits, 1 / len(world.class_names(kind)))
        # Counting too: whether the image side holds the count, whatever the prompts make of it.
        (fit_x, fit_y), (val_x, val_y) = counted(PROBE_OFFSET, probe_n), counted(2 * PROBE_OFFSET, probe_n // 2)
        fx, vx, tx = (prepare_features(f) for f in (fit_x, val_x, count_x))
        report["probe_count"] = scored(probe_hits(fx, fit_y, vx, val_y, tx, count_y), 1 / k_max)
    return report


def probe_hits(fit_x: np.ndarray, fit_y: torch.Tensor, val_x: np.ndarray, val_y: torch.Tensor, test_x: np.ndarray,
               test_y: torch.Tensor) -> torch.Tensor:
    """Per test item: does a logistic probe, fitted on `fit_x` with C chosen on `val_x` (features from
    `prepare_features`), predict its label?"""
    classifier, _, _ = train_probe(fit_x, fit_y.numpy(), val_x, val_y.numpy())
    return torch.from_numpy(np.asarray(classifier.predict(test_x))) == test_y


def format_report(report: dict) -> str:
    """The report as an aligned text table, one task a line."""
    lines = [f"{'task':<20} {'accuracy':>9} {'95% interval':>17} {'chance':>7} {'n':>6}"]
    for task, r in report.items():
        interval = f"{r['lo']:.1%}-{r['hi']:.1%}"
        lines.append(f"{task:<20} {r['accuracy']:>9.1%} {interval:>17} {r['chance']:>7.1%} {r['n']:>6}")
    return "\n".join(lines)
