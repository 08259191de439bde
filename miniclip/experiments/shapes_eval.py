"""One zero-shot yardstick on Shapes for every experiment: colour, shape and both, on seen and held-out pairs.

Every model in these experiments, contrastive or predictive, is asked the same question: given a picture of
one object, which of the 64 prompts "a photo of a <colour> <shape>" fits it best? Each model answers with
its own score (cosine similarity for CLIP, a caption's log-likelihood for the captioning LM, the predicted
words for bag-of-words). From the winning prompt we read off three accuracies:

- `colour`: the prompt names the right colour (chance 1/8);
- `shape`: the prompt names the right shape (chance 1/8);
- `colour_shape`: both (chance 1/64).

They are reported on two sets of single objects: `seen`, new pictures of (colour, shape) pairs training shows
(the test split), and `heldout`, pairs training never shows, where `colour_shape` is true zero-shot
composition. Reporting colour and shape apart matters: a small model learns colour long before shape, and a
single top-1 over 64 classes would hide which it has learned.
"""

from __future__ import annotations

from typing import Callable

import torch

from miniclip.data.loaders import shapes_config
from miniclip.data.shapes import SHAPES, ShapesWorld
from miniclip.data.transforms import normalize
from miniclip.eval.zeroshot import encode_images, encode_texts

# scores(images [N, 3, H, W] normalised, prompts) -> [N, len(prompts)]; higher means a better fit
Scorer = Callable[[torch.Tensor, list[str]], torch.Tensor]


class ShapesZeroShot:
    def __init__(self, world: ShapesWorld, n: int):
        self.prompts = world.class_prompts("colour_shape")
        self.sets = {}
        for name, split in (("seen", "test"), ("heldout", "heldout")):
            batch = world.render(range(n), split, n_objects=1)
            self.sets[name] = (normalize(batch.images), world.labels(batch, "colour_shape"))

    @torch.no_grad()
    def __call__(self, scores: Scorer) -> dict[str, float]:
        """`{set}_{colour|shape|colour_shape}` top-1 accuracies for one model's scorer."""
        out = {}
        for name, (images, labels) in self.sets.items():
            out.update({f"{name}_{k}": v for k, v in label_accuracies(scores(images, self.prompts), labels).items()})
        return out


def label_accuracies(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Colour, shape and colour+shape accuracy of the top-scoring colour_shape class (label = colour*8 + shape)."""
    pred = scores.argmax(1).cpu()
    n_shapes = len(SHAPES)
    return {"colour": (pred // n_shapes == labels // n_shapes).float().mean().item(),
            "shape": (pred % n_shapes == labels % n_shapes).float().mean().item(),
            "colour_shape": (pred == labels).float().mean().item()}


CHANCE = {"colour": 1 / 8, "shape": 1 / 8, "colour_shape": 1 / 64}


def clip_scorer(model) -> Scorer:
    """CLIP's zero-shot score: cosine similarity of the image and prompt embeddings."""
    def scores(images, prompts):
        was_training = model.training
        model.eval()
        try:
            return encode_images(model, images) @ encode_texts(model, prompts).t()
        finally:
            model.train(was_training)

    return scores


def shapes_world(config) -> ShapesWorld:
    """The Shapes world a training config trains on (its held-out pairs, languages, planted word, seed)."""
    return ShapesWorld(shapes_config(config.data.shapes, config.model.image_size, config.train.seed))
