"""Two experiments with known ground truth in the Shapes world: a planted bias, and noisy captions.

**Planted bias.** The world can append a word (", vintage") to the caption of every picture with an
attribute (the textured "photo" style) with probability p, and never otherwise. A model trained on it can
only associate the word with that attribute through the data, so the association a probe measures should
rise with p, from nothing at p = 0. That is a test of the probe: it measures what it claims to.

The probe (`planted_association`): how much adding the word to a neutral prompt ("a photo of a circle" ->
"a photo of a circle, vintage") raises its similarity to pictures with the attribute, minus how much it
raises it for pictures without (a similarity gap, with a bootstrap interval over pictures). A second,
cruder reading, `miniclip.analysis.bias.association` on the bare word, is reported beside it.

**Noisy captions.** A fraction of the training captions is replaced by the caption of another picture in
the same batch (a mismatched pair, the commonest noise in web data); zero-shot accuracy on clean test
pictures shows what the noise costs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import numpy as np
import torch

from miniclip.analysis.bias import association, bootstrap_mean_gap
from miniclip.data.loaders import train_batches
from miniclip.data.seeds import stable_seed
from miniclip.data.shapes import PlantedCorrelation, ShapesWorld
from miniclip.data.transforms import normalize
from miniclip.eval.zeroshot import encode_images, encode_texts
from miniclip.experiments.shapes_eval import ShapesZeroShot, clip_scorer, shapes_world
from miniclip.experiments.store import cached_part, derived_config
from miniclip.experiments.training import train_contrastive

# ----------------------------------------------------------------------------- the association probe


@torch.no_grad()
def planted_association(model, world, word: str, attribute: str, value, n: int, n_boot: int = 1000,
                        seed: int = 0) -> dict:
    """How strongly `model` ties `word` to pictures whose `attribute` equals `value` (see the module doc).

    `world` is the clean world (no planted word); the pictures are its first `n` test scenes. Which of them
    have the attribute is read off a copy of the world with the word planted at p = 1, p_otherwise = 0, so
    the rule is the world's own, not a second implementation of it.

    - `association`: per picture, the mean over neutral prompts ("a photo of a circle", … one per shape) of
      sim(picture, prompt + ", word") - sim(picture, prompt); then the mean of that over pictures with the
      attribute minus the mean over pictures without (bootstrap 95% CI over pictures). Subtracting the
      prompt without the word removes whatever the prompt itself says about the picture: only the word's
      own pull is left, and a word the model never saw has none.
    - `word_prompt`: `miniclip.analysis.bias.association` for the bare word as a prompt: the gap in mean
      similarity between the two groups, cruder (it includes the word's accidental position in embedding
      space).
    """
    marker = ShapesWorld(replace(world.config, planted=PlantedCorrelation(word, attribute, value, 1.0, 0.0)))
    holds = marker.scenes(range(n), "test").planted
    if holds.all() or not holds.any():
        raise ValueError(f"the {n} test pictures are all on one side of {attribute}={value!r}; use more")
    images = normalize(world.render(range(n), "test").images)
    was_training = model.training
    model.eval()
    try:
        features = encode_images(model, images)
        base = world.class_prompts("shape")
        plain, with_word = encode_texts(model, base), encode_texts(model, [f"{p}, {word}" for p in base])
        pull = (features @ (with_word - plain).t()).mean(1, keepdim=True)  # [n, 1]: the word's pull per picture
        gap, low, high = bootstrap_mean_gap(pull[holds], pull[~holds], n_boot, seed)
        bare = association(model, {"with": images[holds], "without": images[~holds]}, word, n_boot, seed)[0]
    finally:
        model.train(was_training)
    return {"association": gap.item(), "ci95": [low.item(), high.item()],
            "word_prompt": {k: bare[k] for k in ("prompt", "gap", "ci_low", "ci_high")},
            "n_with": int(holds.sum()), "n_without": int((~holds).sum())}


def fit_slope(x: list[float], y: list[float]) -> dict:
    """Least-squares line y = slope * x + intercept, with R^2."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    return {"slope": float(slope), "intercept": float(intercept),
            "r2": float(1 - (residual ** 2).sum() / total) if total > 0 else None}


def run_planted(settings: dict, profile: str) -> dict:
    """Settings: `base`, `overrides`, `word`, `attribute`, `value`, `rates` (the p values), `probe_images`,
    `eval_images`. One model per p, trained the same way; the probe runs on each."""
    runs = []
    clean_world = zeroshot = None
    for p in settings["rates"]:
        planted = {"word": settings["word"], "attribute": settings["attribute"], "value": settings["value"],
                   "p": p, "p_otherwise": 0.0}
        config = derived_config(settings["base"], {**settings.get("overrides", {}), "data.shapes.planted": planted},
                                name=f"planted-p{p:g}", profile=profile)
        if clean_world is None:
            clean = derived_config(settings["base"], settings.get("overrides"), profile=profile)
            clean_world = shapes_world(clean)
            zeroshot = ShapesZeroShot(clean_world, settings["eval_images"])

        def one_model(config=config, p=p):
            run = train_contrastive(config, desc=config.name)
            probe = planted_association(run["model"], clean_world, settings["word"], settings["attribute"],
                                        settings["value"], settings["probe_images"], seed=config.train.seed)
            return {"p": p, **probe, "zeroshot": zeroshot(clip_scorer(run["model"])), "val": run["val"],
                    "wall_s": run["wall_s"]}

        key = {"config": config.to_dict(), "probe_images": settings["probe_images"],
               "eval_images": settings["eval_images"]}
        runs.append(cached_part("planted", config.name, profile, key, one_model))
    return {"runs": runs, "fit": fit_slope([r["p"] for r in runs], [r["association"] for r in runs]),
            "word": settings["word"], "attribute": settings["attribute"], "value": settings["value"]}


# ----------------------------------------------------------------------------- noisy captions


def corrupt_captions(batches: Iterator, fraction: float, seed: int = 0) -> Iterator:
    """Replace each caption, with probability `fraction`, by the caption of another picture of the same batch.
    Which ones, and by which, is seeded by (seed, batch number): reruns corrupt identically."""
    for step, (images, captions) in enumerate(batches):
        n = len(captions)
        g = torch.Generator().manual_seed(stable_seed(seed, step))
        replace = (torch.rand(n, generator=g) < fraction).tolist()
        shift = torch.randint(1, max(n, 2), (n,), generator=g).tolist()  # 1..n-1: never the picture's own
        yield images, [captions[(i + shift[i]) % n] if replace[i] else c for i, c in enumerate(captions)]


def run_noisy(settings: dict, profile: str) -> dict:
    """Settings: `base`, `overrides`, `fractions`, `eval_images`. Same model, data and steps for every
    fraction; only the captions differ."""
    runs, zeroshot = [], None
    for fraction in settings["fractions"]:
        config = derived_config(settings["base"], settings.get("overrides"), name=f"noisy-{fraction:g}",
                                profile=profile)
        zeroshot = zeroshot or ShapesZeroShot(shapes_world(config), settings["eval_images"])

        def one_model(config=config, fraction=fraction):
            batches = corrupt_captions(train_batches(config), fraction, config.train.seed)
            run = train_contrastive(config, batches=batches, desc=config.name)
            return {"fraction": fraction, "zeroshot": zeroshot(clip_scorer(run["model"])), "val": run["val"],
                    "wall_s": run["wall_s"]}

        key = {"config": config.to_dict(), "fraction": fraction, "eval_images": settings["eval_images"]}
        runs.append(cached_part("noisy", config.name, profile, key, one_model))
    return {"runs": runs, "note": "val_loss is measured on clean validation pairs."}
