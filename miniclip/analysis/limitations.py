"""Limitations, measured (paper §6): counting, spatial relations and prompt sensitivity.

The paper reports that CLIP struggles with "systematic" tasks such as counting objects, and later work
(ARO, Yuksekgonul et al. 2023) showed that CLIP-style models often cannot tell "the horse is eating the
grass" from "the grass is eating the horse": their text embeddings behave much like bags of words. Each
function here turns one such claim into an accuracy with its chance level.

- `shapes_counting`: scenes of 1-4 identical objects; the candidates are the same noun phrase with each
  count ("a photo of two red circles", …), written by the Shapes caption grammar. Chance is 1/4.
- `flickr8k_counting`: real captions that contain a count ("two dogs run …") against the same caption with
  only the noun phrase's number swapped ("a dog run …"; the verb is left alone, so the two differ in the
  count and nothing else); the model should prefer the true caption. Chance is 1/2.
- `shapes_relations`: two-object scenes; the true caption "a red circle left of a blue square" against
  the swapped "a blue square left of a red circle", which has exactly the same words. Chance is 1/2, and
  a bag-of-words text encoder cannot beat it.
- `prompt_sensitivity`: the spread of zero-shot accuracy across paraphrased templates.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from miniclip.data.shapes import ShapesConfig, ShapesWorld
from miniclip.data.shapes_text import (
    NEUTRAL_FRAMES,
    POSITIONS,
    Caption,
    SceneObject,
    Thing,
    class_prompts,
    realise,
    relation_test_pair,
)
from miniclip.data.transforms import normalize
from miniclip.eval.features import encode_dataset_images
from miniclip.eval.zeroshot import encode_images, encode_texts, topk_accuracy


def _shapes_world(model, **config):
    return ShapesWorld(ShapesConfig(image_size=model.config.image_size, **config))


def _render(world, n: int, split: str, batch_size: int = 256, **kwargs):
    """Render `n` scenes in batches; returns (normalised images, scenes' metadata)."""
    images, meta = [], []
    for start in range(0, n, batch_size):
        batch = world.render(range(start, min(start + batch_size, n)), split, **kwargs)
        images.append(normalize(batch.images))
        meta += batch.meta
    return torch.cat(images), meta


def pairwise_accuracy(true_scores: torch.Tensor, false_scores: torch.Tensor, n_boot: int = 1000,
                      seed: int = 0) -> dict[str, float]:
    """Fraction of items whose true caption outscores its alternative (a tie counts as half), with a
    bootstrap 95% CI over items and chance 0.5."""
    wins = (true_scores > false_scores).float() + 0.5 * (true_scores == false_scores).float()
    g = torch.Generator().manual_seed(seed)
    boots = wins[torch.randint(len(wins), (n_boot, len(wins)), generator=g)].mean(dim=1)
    low, high = torch.quantile(boots, torch.tensor([0.025, 0.975])).tolist()
    return {"accuracy": wins.mean().item(), "ci_low": low, "ci_high": high, "chance": 0.5, "n": len(wins)}


# --------------------------------------------------------------------------------------------------- counting


def count_prompt(count: int, shape: str, colour: str, frame: str = "photo", lang: str = "en") -> str:
    """The Shapes grammar's phrase for `count` identical objects: "a photo of two red circles".
    A count of one is said with the article ("a photo of a red circle"), as in training captions."""
    return realise(Caption((Thing(count, shape, colour),), frame), lang)


@torch.no_grad()
def shapes_counting(model, n: int = 400, *, max_count: int = 4, frame: str = "photo", split: str = "test",
                    seed: int = 0) -> dict:
    """Zero-shot counting on Shapes scenes of 1..`max_count` identical objects (`n` scenes per count).

    Each image is scored against `max_count` prompts that differ only in the count, for its own colour and
    shape, so colour and shape recognition cannot help. Returns overall and per-count accuracy, the
    confusion matrix (rows: true count, columns: predicted) and chance."""
    world = _shapes_world(model, seed=seed, group_prob=1.0, max_objects=max(max_count, 1))
    confusion = np.zeros((max_count, max_count), dtype=int)
    prompt_cache: dict[str, torch.Tensor] = {}
    for count in range(1, max_count + 1):
        images, meta = _render(world, n, split, n_objects=count)
        features = encode_images(model, images)
        looks = [(m["objects"][0]["shape"], m["objects"][0]["colour"]) for m in meta]
        for look in set(looks):
            if look not in prompt_cache:
                prompts = [count_prompt(c, *look, frame) for c in range(1, max_count + 1)]
                prompt_cache[look] = encode_texts(model, prompts)
        candidates = torch.stack([prompt_cache[look] for look in looks])  # [n, max_count, D]
        predicted = torch.einsum("nd,ncd->nc", features, candidates).argmax(dim=1) + 1
        confusion[count - 1] += np.bincount(predicted.numpy() - 1, minlength=max_count)
    per_count = {c: float(confusion[c - 1, c - 1] / confusion[c - 1].sum()) for c in range(1, max_count + 1)}
    return {"accuracy": float(np.trace(confusion) / confusion.sum()), "per_count": per_count,
            "confusion": confusion.tolist(), "chance": 1 / max_count, "n": int(confusion.sum()),
            "example_prompts": [count_prompt(c, "circle", "red", frame) for c in range(1, max_count + 1)]}


# Nouns Flickr8k captions count, singular -> plural.
COUNT_NOUNS = {"dog": "dogs", "man": "men", "woman": "women", "boy": "boys", "girl": "girls", "child": "children",
               "person": "people", "kid": "kids", "cat": "cats", "horse": "horses", "bird": "birds",
               "player": "players", "guy": "guys", "lady": "ladies", "cow": "cows", "sheep": "sheep"}
_SINGULAR_OF = {p: s for s, p in COUNT_NOUNS.items()}
_NUMBER = r"(two|three|four|five)"


def swap_count(caption: str) -> tuple[str, str] | None:
    """The caption with its first counted noun phrase swapped between one and several, and the direction.

    "Two dogs run on the beach" -> ("A dog run on the beach", "plural->singular"); "A man rides a bike" ->
    ("Two men rides a bike", "singular->plural"). Only the noun phrase changes (not the verb), so the pair
    differs in the count alone. Returns `None` when the caption counts none of `COUNT_NOUNS`.
    Nouns like "sheep" that read the same in both numbers are skipped going to the plural side."""
    plural = re.search(rf"\b{_NUMBER} (\w+ )?({'|'.join(_SINGULAR_OF)})\b", caption, flags=re.IGNORECASE)
    singular = re.search(rf"\b(a|an|one) (\w+ )?({'|'.join(COUNT_NOUNS)})\b", caption, flags=re.IGNORECASE)
    candidates = [m for m in (plural, singular) if m]
    if not candidates:
        return None
    m = min(candidates, key=lambda m: m.start())
    number, adjective, noun = m.group(1), m.group(2) or "", m.group(3).lower()
    if m is plural:
        article = "an" if (adjective or _SINGULAR_OF[noun])[0] in "aeiou" else "a"
        new, direction = f"{article} {adjective}{_SINGULAR_OF[noun]}", "plural->singular"
    else:
        if COUNT_NOUNS[noun] == noun:
            return None
        new, direction = f"two {adjective}{COUNT_NOUNS[noun]}", "singular->plural"
    if number[0].isupper():
        new = new[0].upper() + new[1:]
    return caption[:m.start()] + new + caption[m.end():], direction


@torch.no_grad()
def flickr8k_counting(model, dataset, *, image_features: torch.Tensor | None = None, n_boot: int = 1000,
                      seed: int = 0) -> dict:
    """For every caption of `dataset` with a count `swap_count` can change: does its own image prefer the
    true caption to the count-swapped one? Accuracy overall and per direction (a model that always prefers
    plurals would score high on one direction and low on the other), with bootstrap CIs; chance 0.5.
    `unrelated_image_baseline` is the same test with each pair scored against an unrelated image: what
    the text alone earns. Counting shows as the gap between the two, not as the distance from 0.5."""
    pairs = [(i, c, *swapped) for i, captions in enumerate(dataset.captions) for c in captions
             if (swapped := swap_count(c))]
    if not pairs:
        raise ValueError("no caption with a count to swap")
    if image_features is None:
        image_features = encode_dataset_images(model, dataset)
    index = torch.tensor([p[0] for p in pairs])
    true_text, false_text = encode_texts(model, [p[1] for p in pairs]), encode_texts(model, [p[2] for p in pairs])
    true, false = (image_features[index] * true_text).sum(-1), (image_features[index] * false_text).sum(-1)
    # The swap leaves the verb alone, so one caption of a pair may read less grammatically ("a dog run").
    # A text encoder could prefer the grammatical one without looking at the image at all; scoring the same
    # pairs against an unrelated image (half the dataset away) measures that text-only preference.
    other = (index + max(len(image_features) // 2, 1)) % len(image_features)
    true_other, false_other = (image_features[other] * true_text).sum(-1), (image_features[other] * false_text).sum(-1)
    directions = np.array([p[3] for p in pairs])
    result = pairwise_accuracy(true, false, n_boot, seed)
    result["unrelated_image_baseline"] = pairwise_accuracy(true_other, false_other, n_boot, seed)
    result["per_direction"] = {d: pairwise_accuracy(true[torch.from_numpy(directions == d)],
                                                    false[torch.from_numpy(directions == d)], n_boot, seed)
                               for d in ("plural->singular", "singular->plural") if (directions == d).any()}
    result["examples"] = [(p[1], p[2]) for p in pairs[:5]]
    return result


# ---------------------------------------------------------------------------------------------- relations


def relation_captions(objects: list[dict], frame: str = "photo", lang: str = "en") -> tuple[str, str, str]:
    """For two objects (Shapes metadata dicts), a true relation caption, its swapped-order version and the
    relation: ("a photo of a red circle left of a blue square", "a photo of a blue square left of a red
    circle", "left of"); see `shapes_text.relation_test_pair`."""
    a, b = (SceneObject(o["shape"], o["colour"], o["size"], POSITIONS.index(o["position"])) for o in objects[:2])
    return relation_test_pair(a, b, frame, lang)


@torch.no_grad()
def shapes_relations(model, n: int = 500, *, frame: str = "photo", split: str = "test", seed: int = 0,
                     n_boot: int = 1000) -> dict:
    """ARO-style relation test on two-object Shapes scenes: true caption vs the same words with the two
    objects swapped. Scenes whose two objects look alike (same colour and shape) are skipped: their swap is
    the same sentence. Returns accuracy with CI, chance 0.5, per relation, and example pairs."""
    world = _shapes_world(model, seed=seed, group_prob=0.0)
    images, meta = _render(world, n, split, n_objects=2)
    looks = [[(o["shape"], o["colour"]) for o in m["objects"]] for m in meta]
    keep = [i for i, (a, b) in enumerate(looks) if a != b]
    triples = [relation_captions(meta[i]["objects"], frame) for i in keep]
    features = encode_images(model, images[keep])
    true = (features * encode_texts(model, [t[0] for t in triples])).sum(-1)
    false = (features * encode_texts(model, [t[1] for t in triples])).sum(-1)
    relations = np.array([t[2] for t in triples])
    result = pairwise_accuracy(true, false, n_boot, seed)
    result["per_relation"] = {r: pairwise_accuracy(true[torch.from_numpy(relations == r)],
                                                   false[torch.from_numpy(relations == r)], n_boot, seed)
                              for r in sorted(set(relations.tolist()))}
    result["skipped_lookalikes"] = n - len(keep)
    result["examples"] = [t[:2] for t in triples[:5]]
    return result


# ------------------------------------------------------------------------------------- prompt sensitivity


@torch.no_grad()
def prompt_sensitivity(model, image_features: torch.Tensor, labels: torch.Tensor,
                       prompt_sets: dict[str, list[str]]) -> dict:
    """Zero-shot top-1 accuracy with each prompt set alone, and with all of them ensembled.

    `prompt_sets` maps a template's name to one prompt per class (in label order). Returns
    `per_template` {name: accuracy}, their mean, std, min, max and range, `ensemble` (accuracy of the
    renormalised mean of every set's normalised embeddings, as `classifier_weights` does) and chance."""
    image_features = image_features.float()
    weights = {name: encode_texts(model, prompts) for name, prompts in prompt_sets.items()}
    accuracy = {name: topk_accuracy(image_features @ w.t(), labels, ks=(1,))["top1"] for name, w in weights.items()}
    ensemble = torch.nn.functional.normalize(torch.stack(list(weights.values())).mean(0), dim=-1)
    values = np.array(list(accuracy.values()))
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"per_template": accuracy, "mean": float(values.mean()), "std": std,
            "min": float(values.min()), "max": float(values.max()), "range": float(values.max() - values.min()),
            "ensemble": topk_accuracy(image_features @ ensemble.t(), labels, ks=(1,))["top1"],
            "chance": 1 / len(next(iter(prompt_sets.values()))), "n": len(labels)}


def template_prompt_sets(class_names: list[str], templates) -> dict[str, list[str]]:
    """`{template: [template.format(name) for each class]}`, e.g. from `miniclip.eval.zeroshot.CIFAR_TEMPLATES`."""
    return {t: [t.format(name) for name in class_names] for t in templates}


def shapes_prompt_sets(kind: str = "colour_shape", lang: str = "en") -> dict[str, list[str]]:
    """Every paraphrase the Shapes grammar has for class prompts of `kind`: each neutral frame ("bare",
    "photo", "image", "there") in each of its variants, deduplicated ("a red circle", "an image of a red
    circle", "a picture of a red circle", …)."""
    sets: dict[str, list[str]] = {}
    for frame in NEUTRAL_FRAMES:
        for variant in range(2):
            prompts = class_prompts(kind, lang, frame, variant)
            if prompts not in sets.values():
                sets[prompts[0].replace(class_prompts(kind, lang, "bare", variant)[0], "{}")] = prompts
    return sets


@torch.no_grad()
def shapes_prompt_sensitivity(model, n: int = 500, *, kind: str = "colour_shape", split: str = "test",
                              seed: int = 0) -> dict:
    """`prompt_sensitivity` on `n` single-object Shapes scenes, classified by `kind`, over
    `shapes_prompt_sets`."""
    world = _shapes_world(model, seed=seed)
    images, _ = _render(world, n, split, n_objects=1)
    scenes = world.scenes(range(n), split, n_objects=1)
    return prompt_sensitivity(model, encode_images(model, images), world.labels(scenes, kind),
                              shapes_prompt_sets(kind)) | {"kind": kind}


__all__ = ["COUNT_NOUNS", "count_prompt", "flickr8k_counting", "pairwise_accuracy",
           "prompt_sensitivity", "relation_captions", "shapes_counting", "shapes_prompt_sensitivity",
           "shapes_prompt_sets", "shapes_relations", "swap_count", "template_prompt_sets"]
