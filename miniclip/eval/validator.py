"""Periodic validation during training: a held-out contrastive loss and a small zero-shot check.

The zero-shot check (`data.zeroshot`) is the Shapes world's held-out pairs, or a stratified sample of a labelled
test set read from the data root: `cifar10` or `intel-scenes`, with one prompt per class (the first template
of the set's default template set, `miniclip.eval.classnames.prompts_for_classes`: "a photo of a cat.", "a photo
of the sea."). A missing test set is a note, not a failed run.

The validation sets are built once (decoded or rendered into memory) and reused at every check, so the
numbers along a run are comparable and cheap. They are deliberately small: this is a training-curve
monitor, not the book's evaluation (that lives in `zeroshot.py` and `probes.py`, on the full test sets).
"""

from __future__ import annotations

import warnings

import torch

from miniclip.data.flickr8k import Flickr8k
from miniclip.data.folders import open_test_set
from miniclip.data.loaders import shapes_config
from miniclip.data.paths import MissingDataError
from miniclip.data.shapes import ShapesDataset, ShapesWorld
from miniclip.data.transforms import eval_transform, normalize
from miniclip.eval.classnames import prompts_for_classes
from miniclip.eval.zeroshot import encode_images, encode_texts, fill_template, topk_accuracy
from miniclip.loss import ClipLoss


def _stratified(labels: list[int], n: int) -> list[int]:
    """About n indices with every class equally represented (the first ones of each class)."""
    classes = sorted(set(labels))
    per_class = max(1, n // len(classes))
    picked, seen = [], dict.fromkeys(classes, 0)
    for i, y in enumerate(labels):
        if seen[y] < per_class:
            picked.append(i)
            seen[y] += 1
    return picked


class Validator:
    def __init__(self, config, device: torch.device):
        self.config, self.device = config, device
        self.image_size = config.model.image_size
        self.last: dict = {}
        self._val = None  # (images, captions)
        self._zeroshot = None  # (images, labels, prompts or class names, kind)
        self._shapes_attributes = None  # {kind: (images, labels, prompts)} for single test objects
        self.notes: list[str] = []

    # ------------------------------------------------------------------------- data, built on first use

    def _val_set(self):
        if self._val is None:
            d = self.config.data
            if d.dataset == "shapes":
                stream = ShapesDataset(shapes_config(d.shapes, self.image_size, self.config.train.seed), split="val",
                                       batch_size=d.val_size, num_samples=d.val_size, rank=0, world_size=1)
                self._val = next(iter(stream))
            else:
                self._val = self._flickr8k_dev()
        return self._val

    def _flickr8k_dev(self):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dev = Flickr8k(split="dev", transform=eval_transform(self.image_size))
        except MissingDataError as e:
            self.notes.append(f"no validation loss: {e}")
            return (torch.empty(0), [])
        items = [dev[i] for i in range(min(self.config.data.val_size, len(dev)))]
        items = [it for it in items if it is not None]
        return torch.stack([im for im, _ in items]), [c for _, c in items]

    def _zeroshot_set(self):
        if self._zeroshot is None:
            d = self.config.data
            kind = d.zeroshot if d.zeroshot != "auto" else ("shapes" if d.dataset == "shapes" else "cifar10")
            if kind == "shapes":
                self._zeroshot = self._shapes_heldout(d)
            elif kind in ("cifar10", "intel-scenes"):
                self._zeroshot = self._test_set(kind, d.zeroshot_size)
            else:
                self._zeroshot = ()
        return self._zeroshot

    def _shapes_heldout(self, d):
        """Single objects whose (colour, shape) pair training never showed, classified among all pairs."""
        world = ShapesWorld(shapes_config(d.shapes, self.image_size, self.config.train.seed))
        return (*world.heldout_zeroshot(d.zeroshot_size), "shapes_heldout")

    def _shapes_single_objects(self):
        """Single test objects to name by shape and by colour alone: a run that learns only colour (the easy
        feature) shows it here while it trains, whatever its loss does."""
        if self._shapes_attributes is None:
            d = self.config.data
            world = ShapesWorld(shapes_config(d.shapes, self.image_size, self.config.train.seed))
            batch = world.render(range(d.zeroshot_size), split="test", n_objects=1)
            images = normalize(batch.images)
            self._shapes_attributes = {kind: (images, world.labels(batch, kind), world.class_prompts(kind))
                                       for kind in ("shape", "colour")}
        return self._shapes_attributes

    def _test_set(self, spec: str, size: int):
        """About `size` images of a labelled test set, every class equally, and one prompt per class. The metrics
        are named after the set with `_` for `-` (`zeroshot_intel_scenes_top1`), like the other metric names."""
        try:
            test = open_test_set(spec, eval_transform(self.image_size))
        except MissingDataError as e:
            self.notes.append(f"no zero-shot check: {e}")
            return ()
        names, templates = prompts_for_classes(test.classes)
        idx = _stratified(list(test.targets), size)
        items = [test[i] for i in idx]
        keep = [i for i, it in enumerate(items) if it is not None]
        images = torch.stack([items[i][0] for i in keep])
        labels = torch.tensor([items[i][1] for i in keep])
        return images, labels, [fill_template(templates[0], name) for name in names], spec.replace("-", "_")

    # ------------------------------------------------------------------------- the check

    @torch.no_grad()
    def __call__(self, model) -> dict:
        was_training = model.training
        model.eval()
        metrics = {}
        images, captions = self._val_set()
        if len(images):
            img, txt = encode_images(model, images), encode_texts(model, captions)
            loss_fn, bs, losses = ClipLoss(gather=False), min(self.config.optim.batch_size, len(images)), []
            scale = model.logit_scale.exp().float().to(img.device)  # features are on the CPU, the model may not be
            for i in range(0, len(images) - bs + 1, bs):  # equal batches: the loss depends on batch size
                losses.append(loss_fn(img[i:i + bs], txt[i:i + bs], scale).item())
            metrics["val_loss"] = sum(losses) / len(losses)
        zs = self._zeroshot_set()
        if zs:
            images, labels, prompts, kind = zs
            classifier = encode_texts(model, prompts)
            scores = encode_images(model, images) @ classifier.t()
            acc = topk_accuracy(scores, labels)
            metrics.update({f"zeroshot_{kind}_top1": acc["top1"], f"zeroshot_{kind}_top5": acc["top5"],
                            f"zeroshot_{kind}_chance": 1 / len(prompts)})
            if kind == "shapes_heldout":
                for attribute, (images, labels, prompts) in self._shapes_single_objects().items():
                    scores = encode_images(model, images) @ encode_texts(model, prompts).t()
                    metrics[f"zeroshot_{attribute}_top1"] = topk_accuracy(scores, labels, ks=(1,))["top1"]
        if was_training:
            model.train()
        self.last = metrics
        return metrics

