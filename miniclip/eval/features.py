"""Frozen image features, computed once and cached on disk.

Linear probes, few-shot probes and robustness tables all start from the same thing: the image embeddings a
frozen model gives a fixed set of images. Encoding 10,000 images takes minutes on a laptop CPU and fitting a
logistic regression on them takes seconds, so the features are computed once and kept in
`runs/<profile>/features/` as safetensors, one file per (model weights, images, preprocessing) triple:

- the **model** is identified by a SHA-256 of its weights (`model_fingerprint`), so a retrained checkpoint
  at the same path never reuses stale features;
- the **images** by a caller-given description (a dataset spec and a fingerprint of its file list, or a Shapes
  world's config and indices);
- the **preprocessing** by the transform's `repr` and, for robustness, the corruption and its severity.

The key is hashed into the file name and also stored, in full, in the file's metadata, with a SHA-256 of the
tensors, so a cache file says what it holds and a damaged one (truncated, edited, or holding another key) is
reported on one line and recomputed, never used.

Features are stored *unnormalised* (`encode_image`'s output, as the reference returns it); callers
L2-normalise where they need to (zero-shot always, probes by choice). Each encoding pass stores two files:
the joint-space features, and the image tower's representation before its last linear map (`project=False`),
which the paper's probes read; the second is a by-product of the first (`CLIP.project_image`), so whichever
a chapter asks for first, the other costs no second pass over the images.

Images travel as uint8 pixels at the model's resolution (after resize and centre crop), and are turned into
the model's input per batch: `[0, 1]` floats, then an optional corruption, then CLIP's normalisation. That
order is what lets `miniclip.eval.robustness` corrupt the pixels the model actually sees.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from miniclip.data.folders import open_test_set
from miniclip.data.transforms import ImageTransform, PairCollator, normalize, to_rgb
from miniclip.env import runs_dir
from miniclip.errors import warn_damaged
from miniclip.eval.zeroshot import encode_images

# A corruption as the encoder applies it: (float images in [0, 1] [B, 3, H, W], index of the batch's first
# image in the whole set) -> corrupted images in [0, 1]. The index lets seeded corruptions give every image
# the same noise however the set is batched.
Corruption = Callable[[torch.Tensor, int], torch.Tensor]


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (hex) of the model's weights: names, dtypes, shapes and bytes of every state-dict tensor."""
    return tensors_fingerprint(model.state_dict())


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of named tensors: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def dataset_fingerprint(dataset) -> str:
    """A short SHA-256 of a file-backed dataset's identity: where it lives, its file list and labels. Datasets
    without a `files` list (in-memory ones) are fingerprinted by their `repr` and length."""
    digest = hashlib.sha256()
    files = getattr(dataset, "files", None)
    if files is not None:
        tree = getattr(dataset, "tree", None)
        digest.update(str(getattr(tree, "path", "")).encode())
        digest.update("\n".join(files).encode())
        digest.update(json.dumps(list(getattr(dataset, "targets", []))).encode())
    else:
        digest.update(f"{dataset!r}:{len(dataset)}".encode())
    return digest.hexdigest()[:16]


class PILToUint8:
    """RGB PIL image -> uint8 tensor [3, H, W] (no scaling, no normalisation)."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)

    def __repr__(self) -> str:
        return "PILToUint8()"


def transform_key(transform) -> str:
    """A description of a Compose-style transform that is the same in every process: each step's `repr`,
    or its name for plain functions (whose `repr` holds a memory address)."""
    steps = getattr(transform, "transforms", [transform])
    return " | ".join(getattr(t, "__qualname__", None) or repr(t) for t in steps)


def pixel_transform(image_size: int) -> ImageTransform:
    """`eval_transform`'s geometry (bicubic resize of the shorter side, centre
    crop) ending in uint8 pixels instead of a normalised tensor: `normalize(pixels / 255)` is then the model's
    input, equal to the eval transform's output (same float32 arithmetic)."""
    steps = [to_rgb, T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(image_size),
             PILToUint8()]
    return ImageTransform(steps, image_size, draft_size=image_size)


def load_pixels(dataset, batch_size: int = 512, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (uint8 image, label) of a dataset whose transform is `pixel_transform`, as
    `(pixels [N, 3, H, W] uint8, labels [N] int64)`. Undecodable images are dropped and counted by the collator
    (and the dataset's `failed`); a warning says how many."""
    collate = PairCollator()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate, num_workers=num_workers)
    pixels, labels = [], []
    # disable=None: a bar in a terminal, none in a redirected log (where every update would be a line)
    for images, y in tqdm(loader, desc="decoding images", leave=False, disable=None):
        if len(images):
            pixels.append(images)
            labels.append(torch.as_tensor(y))
    if not pixels:
        raise RuntimeError(f"no image of {dataset!r} could be decoded")
    if collate.dropped.value:
        warnings.warn(f"{collate.dropped.value} images of {dataset!r} could not be decoded and were left out")
    return torch.cat(pixels), torch.cat(labels)


@torch.no_grad()
def encode_pixels_both(model, pixels: torch.Tensor, batch_size: int = 256, corruption: Corruption | None = None,
                       desc: str = "encoding images") -> tuple[torch.Tensor, torch.Tensor]:
    """`(joint-space features [N, D], the representation before the projection [N, W])`, both float32 on the CPU,
    of uint8 or [0, 1] float pixels [N, 3, H, W], from one pass through the image tower.

    Each batch is scaled to [0, 1], corrupted if `corruption` is given, normalised with CLIP's statistics and
    encoded on the model's device up to the last linear map, which `CLIP.project_image` then applies: the same
    operations on the same numbers as `encode_image(x)`, so the joint features are those of a direct call."""
    device = next(model.parameters()).device
    joint, before = [], []
    for start in tqdm(range(0, len(pixels), batch_size), desc=desc, leave=False, disable=None):
        x = pixels[start:start + batch_size]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if corruption is not None:
            x = corruption(x, start)
        representation = model.encode_image(normalize(x.to(device)), project=False)
        joint.append(model.project_image(representation).float().cpu())
        before.append(representation.float().cpu())
    return torch.cat(joint), torch.cat(before)


def encode_pixels(model, pixels: torch.Tensor, batch_size: int = 256, corruption: Corruption | None = None,
                  desc: str = "encoding images", project: bool = True) -> torch.Tensor:
    """Unnormalised image features [N, D] (float32, on the CPU) of uint8 or [0, 1] float pixels [N, 3, H, W];
    with `project=False` the representation before the projection into the joint space (`CLIP.encode_image`)."""
    joint, before = encode_pixels_both(model, pixels, batch_size, corruption, desc)
    return joint if project else before


def default_cache_dir() -> Path:
    """runs/<profile>/features/."""
    return runs_dir() / "features"


class FeatureCache:
    """Tensors computed once per key and kept as safetensors files under `directory`.

    `key` is any JSON-serialisable dict; equal keys (after sorting) mean the same file. `hits` and
    `misses` count how the lookups went, which is what the tests check and what the CLI reports.
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.hits = self.misses = 0

    def path(self, key: dict) -> Path:
        text = json.dumps(key, sort_keys=True, default=str)
        name = str(key.get("name", "features")).replace("/", "_").replace(":", "_")
        return self.directory / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.safetensors"

    def get(self, key: dict) -> dict[str, torch.Tensor] | None:
        """The tensors stored under `key` (a hit), or None (a miss)."""
        path = self.path(key)
        tensors = self._load_checked(path, json.dumps(key, sort_keys=True, default=str)) if path.exists() else None
        if tensors is None:
            self.misses += 1
        else:
            self.hits += 1
        return tensors

    def put(self, key: dict, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Store `tensors` under `key` (written to a temporary name and renamed, so a killed run never leaves
        half a file under the real name) and return them."""
        path, key_text = self.path(key), json.dumps(key, sort_keys=True, default=str)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata={"key": key_text, "sha256": tensors_fingerprint(tensors)})
        tmp.replace(path)
        return tensors

    def get_or_compute(self, key: dict, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The tensors stored under `key`, or `compute()`'s, saved for next time."""
        tensors = self.get(key)
        return tensors if tensors is not None else self.put(key, compute())

    @staticmethod
    def _load_checked(path: Path, key_text: str) -> dict[str, torch.Tensor] | None:
        """The tensors in `path` if it is whole and holds `key_text`'s features; else None (said on one line
        when the file is damaged; a file from before the hash was recorded is just recomputed)."""
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            tensors = load_file(str(path))
        except Exception as e:  # noqa: BLE001 -- safetensors raises its own types for truncated or foreign files
            warn_damaged(f"feature cache {path}", f"unreadable: {e}")
            return None
        if "sha256" not in metadata:
            return None
        if metadata.get("key") != key_text:
            warn_damaged(f"feature cache {path}", "it holds the features of another key")
        elif tensors_fingerprint(tensors) != metadata["sha256"]:
            warn_damaged(f"feature cache {path}", "its tensors do not match their recorded SHA-256")
        else:
            return tensors
        return None


def cached_image_features(model, pixels_fn: Callable[[], tuple[torch.Tensor, torch.Tensor]], key: dict,
                          cache: FeatureCache | None = None, corruption: Corruption | None = None,
                          batch_size: int = 256, project: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """`(features, labels)` for the images `pixels_fn()` returns, from the cache when `key` (plus the
    model's fingerprint, and which representation) was seen before. `pixels_fn` is only called on a miss, so
    cached runs decode nothing.

    A miss encodes the images once and caches both representations, the joint-space features and those
    before the projection (`project=False`), so a later call for the other one is a hit: the probe chapter reads
    both of a test set that earlier chapters encoded for zero-shot."""
    cache = cache or FeatureCache()
    joint_key = {"model": model_fingerprint(model), **key}
    before_key = {**joint_key, "representation": "before projection"}  # the joint keys stay what they always were
    out = cache.get(joint_key if project else before_key)
    if out is None:
        pixels, labels = pixels_fn()
        joint, before = encode_pixels_both(model, pixels, batch_size, corruption,
                                           f"encoding {key.get('name', 'images')}")
        joint_out = cache.put(joint_key, {"features": joint, "labels": labels})
        before_out = cache.put(before_key, {"features": before, "labels": labels})
        out = joint_out if project else before_out
    return out["features"], out["labels"]


def test_set_features(model, spec: str = "cifar10", cache: FeatureCache | None = None, batch_size: int = 256,
                      project: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Unnormalised features, labels and readable class names of a labelled test set
    (`open_test_set` spec: `cifar10`, `intel-scenes`, `imagefolder:PATH` …), cached; `project=False`: the
    representation before the projection into the joint space."""
    dataset = open_test_set(spec, pixel_transform(model.config.image_size))
    key = {"name": spec.partition(":")[0], "dataset": spec, "files": dataset_fingerprint(dataset),
           "transform": transform_key(dataset.transform)}
    features, labels = cached_image_features(model, lambda: load_pixels(dataset), key, cache, batch_size=batch_size,
                                             project=project)
    return features, labels, list(dataset.class_names)


def raw_pixel_features(pixels: torch.Tensor, image_size: int | None = None) -> torch.Tensor:
    """uint8 images [N, 3, H, W] -> the raw-pixel baseline's features [N, 3 * size * size]: area-averaged
    down to `image_size` when given, then every RGB value scaled to [-0.5, 0.5] and flattened."""
    x = pixels.float() / 255.0
    if image_size is not None and x.shape[-1] != image_size:
        x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="area")
    return x.flatten(1) - 0.5


def test_set_pixels(spec: str = "cifar10", image_size: int = 32, cache: FeatureCache | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The raw-pixel baseline's "features" of a labelled test set: every image resized and centre-cropped
    to `image_size`, its RGB values scaled to [-0.5, 0.5] and flattened (3 x size x size numbers), with its
    labels and class names, cached like model features. A probe on these is what a linear classifier can do
    with no representation at all, the floor a learned one has to clear."""
    dataset = open_test_set(spec, pixel_transform(image_size))
    key = {"name": f"{spec.partition(':')[0]}-pixels", "dataset": spec, "files": dataset_fingerprint(dataset),
           "transform": transform_key(dataset.transform)}

    def compute():
        pixels, labels = load_pixels(dataset)
        return {"features": raw_pixel_features(pixels), "labels": labels}

    out = (cache or FeatureCache()).get_or_compute(key, compute)
    return out["features"], out["labels"], list(dataset.class_names)


def dataset_image_features(model, dataset, cache: FeatureCache | None = None) -> torch.Tensor:
    """Normalised image embeddings [len(dataset), D] of every image of a file-backed dataset (e.g. a Flickr8k
    split), row i for item i, cached on disk per (weights, files, transform): the analysis chapters score
    thousands of captions against the same test images, and encode them once."""
    key = {"name": f"{type(dataset).__name__.lower()}-{getattr(dataset, 'split', 'all')}-normalised",
           "model": model_fingerprint(model), "files": dataset_fingerprint(dataset),
           "transform": transform_key(dataset.transform)}
    return (cache or FeatureCache()).get_or_compute(
        key, lambda: {"features": encode_dataset_images(model, dataset)})["features"]


@torch.no_grad()
def encode_dataset_images(model, dataset, batch_size: int = 128, desc: str = "encoding images") -> torch.Tensor:
    """Normalised embeddings [len(dataset), D] of every image of a dataset whose items are `(image, …)`.

    Unlike `miniclip.eval.zeroshot.encode_dataset`, nothing may be dropped: row i must be item i, because
    the caller pairs rows with the dataset's captions. An undecodable image is an error that names it."""
    features = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, leave=False, disable=None):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        bad = [start + j for j, item in enumerate(items) if item is None]
        if bad:
            raise RuntimeError(f"images {bad[:5]} of {dataset!r} could not be decoded; this analysis needs all")
        features.append(encode_images(model, torch.stack([item[0] for item in items]), batch_size))
    return torch.cat(features)
