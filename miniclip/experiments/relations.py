"""Relations, CLIP's known blind spot, and NegCLIP's remedy: hard negatives made by swapping two objects.

A contrastive text tower only has to tell a batch's captions apart. "a red circle left of a blue square" and
"a blue square left of a red circle" hold the same words, and a batch seldom holds both, so nothing asks the
tower to read word order: it can act as a bag of words, and then the true relation caption and its swapped
twin score alike (chance 50% on `eval.attributes.relation_test`). NegCLIP (Yuksekgonul et al., ICLR 2023)
adds, for each caption, a copy with its words reordered as an extra caption that matches no image, so the
loss now asks for exactly the missing distinction.

The experiment fine-tunes the book's Shapes model (`make train`'s run) twice, for the same steps, from the
same weights, on the same pictures and captions; the only difference is that one arm also sees each relation
caption's swapped twin as a negative (`data.shapes.swapped_negatives`). Both arms, and the starting model,
are scored on the same two-object test pictures, so their hits pair up, and the difference between the arms
comes with a paired 95% interval. Shape, colour and held-out pairs are measured too, to see what the
fine-tuning costs elsewhere. One training seed per arm: the interval is over test pictures, not seeds.
"""

from __future__ import annotations

import torch

from miniclip.checkpoint import CheckpointError, file_record, load_model
from miniclip.env import runs_dir
from miniclip.eval.attributes import attribute_report, paired_difference, relation_test, scored
from miniclip.experiments.shapes_eval import shapes_world
from miniclip.experiments.store import cached_part, derived_config
from miniclip.experiments.training import train_contrastive

ARMS = {"plain": False, "swapped_negatives": True}
KEPT = ("colour", "shape", "heldout_pairs", "count")  # the other measures reported beside relations


def run(settings: dict, profile: str) -> dict:
    """Settings: `base` (the config the starting model trained with), `start` (its checkpoint, relative to
    runs/<profile>/), `overrides` (the fine-tuning run: steps, learning rate), `eval_images`."""
    start = runs_dir(profile) / settings["start"]
    if not start.with_suffix(".safetensors").exists():
        raise CheckpointError(f"relations: no starting model at {start}.safetensors (train it first: python -m "
                              f"miniclip train --config {settings['base']}, or make train)")
    world = shapes_world(derived_config(settings["base"], profile=profile))  # the world it trained in
    n = settings["eval_images"]

    def measure(model) -> tuple[dict, list[bool]]:
        hits = relation_test(model, world, n)  # kept per picture, so that two models' hits pair up
        report = attribute_report(model, world, n, probes=False, relations=False)
        return {"relation": scored(hits, 0.5), **{k: report[k] for k in KEPT}}, hits.tolist()

    start_key = file_record(start.with_suffix(".safetensors"))
    before = cached_part("relations", "start", profile, {"start": start_key, "eval_images": n},
                         lambda: dict(zip(("scores", "hits"), measure(load_model(start)))))
    arms = {}
    for arm, negatives in ARMS.items():
        overrides = {**settings.get("overrides", {}), "train.init_from": str(start),
                     "data.shapes.swapped_negatives": negatives, "data.shapes.curriculum": {}}
        config = derived_config(settings["base"], overrides, name=f"relations-{arm}", profile=profile)

        def one_arm(config=config):
            result = train_contrastive(config, desc=config.name)
            scores, hits = measure(result["model"])
            return {"scores": scores, "hits": hits, "wall_s": result["wall_s"]}

        key = {"config": config.to_dict(), "start": start_key, "eval_images": n}
        arms[arm] = cached_part("relations", arm, profile, key, one_arm)
    hits = {name: torch.tensor(r["hits"]) for name, r in {"start": before, **arms}.items()}
    return {"start": before["scores"], "arms": {a: r["scores"] for a, r in arms.items()},
            "wall_s": {a: r["wall_s"] for a, r in arms.items()},
            "negatives_minus_plain": paired_difference(hits["swapped_negatives"], hits["plain"]),
            "negatives_minus_start": paired_difference(hits["swapped_negatives"], hits["start"]),
            "steps": config.optim.steps}  # the same for both arms
