"""Robustness to distribution shift (§3.3): corruptions, style shift, and effective robustness.

The paper's claim: a zero-shot CLIP classifier loses much less accuracy under distribution shift than a
classifier fitted to one dataset (an ImageNet model, or a logistic regression on CLIP's own features), at
equal accuracy on the original distribution. "Effective robustness" (Taori et al., 2020) makes *equal
accuracy* precise: plot accuracy under shift against accuracy without it for a family of ordinary models,
fit a line (in logit space), and measure how far above that line a model lies.

Here:

- **Corruptions** of CIFAR-10 images (or another labelled test set's, e.g. the Intel scenes), three severities
  each: Gaussian noise, Gaussian blur, contrast reduction and JPEG compression, in the spirit of CIFAR-10-C
  (Hendrycks & Dietterich, 2019) but our own, simpler parameters (`CORRUPTIONS`). They act on the pixels the
  model sees (after resize and centre crop, before CLIP's normalisation), on whole batches, and are
  deterministic: the noise of image `i` is a function of (seed, the index of its batch's first image), so a
  given batch size reproduces bit for bit. Blur widths are given in pixels of a 32-px image and scaled to the
  actual size, so a severity means the same for CIFAR's native 32 px and a 64-px model.
- **Style shift** in the Shapes world: single objects drawn in some styles (flat, textured photo) against
  the same kind of objects drawn in others (outline sketch, pixel noise).
- **Effective robustness**: the baseline family is a set of linear probes trained on clean (or source-style)
  features with 1, 2, 4, … examples per class and on the whole training part, so it spans a range of clean
  accuracies. For each shift a line `logit(shifted) = a * logit(clean) + b` is fitted to the family, and
  every classifier's effective robustness is its shifted accuracy minus the line's prediction at its clean
  accuracy. `robustness_table`'s rows hold, per classifier and shift, the clean and shifted accuracy
  that the paper's Fig. 13/14-style plot needs.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.v2.functional import gaussian_blur as tv_blur

from miniclip.data.folders import open_test_set
from miniclip.data.seeds import stable_seed
from miniclip.eval.classnames import prompts_for_classes
from miniclip.eval.features import (
    FeatureCache,
    cached_image_features,
    dataset_fingerprint,
    load_pixels,
    pixel_transform,
    test_set_features,
    transform_key,
)
from miniclip.eval.probes import (
    few_shot_probe,
    prepare_features,
    probe_accuracy,
    sample_few_shot,
    stratified_split,
    train_probe,
    zero_shot_accuracy,
)
from miniclip.eval.zeroshot import classifier_weights

# --------------------------------------------------------------------------------------------------------
# Corruptions: float images in [0, 1], [B, 3, H, W] -> the same shape, dtype and range
# --------------------------------------------------------------------------------------------------------

# Severity 1, 2, 3 of each corruption.
CORRUPTIONS = {
    "gaussian_noise": (0.04, 0.08, 0.16),  # standard deviation, in units of the [0, 1] pixel range
    "gaussian_blur": (0.6, 1.2, 2.4),  # sigma, in pixels of a 32-px image
    "contrast": (0.5, 0.3, 0.15),  # factor on each pixel's distance from the image's mean
    "jpeg": (30, 15, 5),  # JPEG quality
}


def gaussian_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Add N(0, sigma^2) noise to every pixel and clip to [0, 1]; the noise is drawn from `seed`."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=g, dtype=torch.float32).to(images.device, images.dtype)
    return (images + sigma * noise).clamp(0, 1)


def gaussian_blur(images: torch.Tensor, sigma32: float) -> torch.Tensor:
    """Gaussian blur with standard deviation `sigma32` pixels of a 32-px image (scaled to the image's size),
    a kernel of ±3 sigma (capped below the image size) and reflected borders (torchvision's)."""
    size = min(images.shape[-2:])
    sigma = sigma32 * size / 32
    radius = min(math.ceil(3 * sigma), size // 2 - 1)
    return tv_blur(images, kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma]).clamp(0, 1)


def contrast(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Pull every pixel towards its image's mean grey level: `mean + factor * (x - mean)`."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + factor * (images - mean)).clamp(0, 1)


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip through JPEG at `quality` (libjpeg via torchvision, the whole batch in one call each way)."""
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    decoded = decode_jpeg(encode_jpeg(list(pixels), quality=int(quality)))
    return (torch.stack(decoded).float() / 255).to(images.device, images.dtype)


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """`images` [B, 3, H, W] in [0, 1] under corruption `name` at `severity` (1-3). Deterministic."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {tuple(CORRUPTIONS)}")
    if not 1 <= severity <= len(CORRUPTIONS[name]):
        raise ValueError(f"severity must be 1..{len(CORRUPTIONS[name])}, got {severity}")
    level = CORRUPTIONS[name][severity - 1]
    if name == "gaussian_noise":
        return gaussian_noise(images, level, seed)
    if name == "gaussian_blur":
        return gaussian_blur(images, level)
    if name == "contrast":
        return contrast(images, level)
    return jpeg(images, level)


def corruption_fn(name: str, severity: int, seed: int = 0):
    """The corruption as `miniclip.eval.features.encode_pixels` applies it per batch: the batch's noise seed
    is derived from (seed, index of its first image)."""
    return lambda images, first_index: corrupt(images, name, severity, stable_seed(seed, first_index))


def psnr(reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [0, 1] (inf where they are equal)."""
    mse = (reference.float() - distorted.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


# --------------------------------------------------------------------------------------------------------
# Effective robustness
# --------------------------------------------------------------------------------------------------------


def _logit(p: float, eps: float = 1e-4) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def effective_robustness(rows: list[dict], baseline_family: str = "probe") -> list[dict]:
    """Add `expected` and `effective_robustness` to each row (a dict with `shift`, `family`, `clean`
    and `shifted` accuracies), from a line fitted per shift in logit space to the rows of
    `baseline_family`. A shift whose family has fewer than two distinct clean accuracies gets `None`."""
    out = [dict(r) for r in rows]
    for shift in dict.fromkeys(r["shift"] for r in out):
        family = [r for r in out if r["shift"] == shift and r["family"] == baseline_family]
        xs = np.array([_logit(r["clean"]) for r in family])
        ys = np.array([_logit(r["shifted"]) for r in family])
        fit = np.polyfit(xs, ys, 1) if len(set(xs.round(9))) >= 2 else None
        for r in out:
            if r["shift"] != shift:
                continue
            if fit is None:
                r["expected"] = r["effective_robustness"] = None
            else:
                expected = 1 / (1 + math.exp(-(fit[0] * _logit(r["clean"]) + fit[1])))
                r["expected"], r["effective_robustness"] = expected, r["shifted"] - expected
            r["fit"] = None if fit is None else [float(fit[0]), float(fit[1])]
    return out


def probe_family(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, shots=(1, 2, 4, 8, 16),
                 seed: int = 0) -> list[tuple[str, object]]:
    """The baseline family: k-shot probes (one seed each) and the full probe (C swept on `val`), all trained on
    the given clean/source features (k larger than the rarest class's count in `train` is skipped). Returns
    `[(name, sklearn classifier)]`."""
    smallest_class = np.unique(y[train], return_counts=True)[1].min() if len(train) else 0
    family = [(f"{k}-shot probe", few_shot_probe(x, y, train, k, seed)[0]) for k in shots if k <= smallest_class]
    classifier, _, _ = train_probe(x[train], y[train], x[val], y[val])
    family.append(("linear probe", classifier))
    return family


def robustness_table(zero_shot_weights: torch.Tensor, family: list[tuple[str, object]], clean: tuple,
                     shifted: dict[str, tuple], normalize: bool = True) -> list[dict]:
    """One row per (classifier, shift): its accuracy on `clean = (features, labels)` and on each
    `shifted[name] = (features, labels)`, with effective robustness against the probe family."""
    rows = []

    def accuracy(classifier, features, labels) -> float:
        return probe_accuracy(classifier, prepare_features(features, normalize), np.asarray(labels))

    clean_zs = zero_shot_accuracy(*clean, zero_shot_weights)
    clean_probe = {name: accuracy(c, *clean) for name, c in family}
    for shift, (features, labels) in shifted.items():
        rows.append(dict(classifier="zero-shot", family="zero-shot", shift=shift, clean=clean_zs,
                         shifted=zero_shot_accuracy(features, labels, zero_shot_weights)))
        for name, classifier in family:
            rows.append(dict(classifier=name, family="probe", shift=shift, clean=clean_probe[name],
                             shifted=accuracy(classifier, features, labels)))
    return effective_robustness(rows)


def summarise(rows: list[dict]) -> dict:
    """Per shift: zero-shot and full-probe accuracies (clean, shifted) and zero-shot's effective robustness."""
    out = {}
    for r in rows:
        if r["classifier"] in ("zero-shot", "linear probe"):
            key = "zero_shot" if r["classifier"] == "zero-shot" else "probe"
            entry = out.setdefault(r["shift"], {})
            entry[f"{key}_clean"], entry[f"{key}_shifted"] = r["clean"], r["shifted"]
            if key == "zero_shot":
                entry["zero_shot_effective_robustness"] = r["effective_robustness"]
    return out


# --------------------------------------------------------------------------------------------------------
# CIFAR-10 under corruptions
# --------------------------------------------------------------------------------------------------------


def corruption_robustness(model, spec: str = "cifar10", template_set: str | None = None,
                      cache: FeatureCache | None = None, n_shifted: int = 1000, corruptions=None,
                      severities=(1, 2, 3), shots=(1, 2, 4, 8, 16), seed: int = 0, normalize: bool = True,
                      batch_size: int = 256) -> dict:
    """Zero-shot and clean-trained probes on a labelled test set's images (`open_test_set` spec: CIFAR-10 by
    default, `intel-scenes`, `imagefolder:PATH` …) under each corruption and severity.

    The zero-shot classifier uses the set's English names and `template_set` (default: the set's own, see
    `miniclip.eval.classnames.prompts_for_classes`; ValueError for a set that does not fit the names). The
    probes train on the clean probe-train part of `stratified_split` (C swept on its
    validation part); every accuracy is measured on `n_shifted` images of the test part (an equal number per
    class, drawn with `seed`), clean and corrupted, so the clean and shifted numbers of a row are the same
    images. Returns `rows` (see `robustness_table`), a per-shift `summary` and the sizes."""
    cache = cache or FeatureCache()
    corruptions = tuple(CORRUPTIONS) if corruptions is None else tuple(corruptions)
    features, labels, class_names = test_set_features(model, spec, cache, batch_size)
    train, val, test = stratified_split(labels.numpy())
    y = labels.numpy()
    smallest = int(np.bincount(y[test]).min())  # the test part's smallest class bounds the balanced subset
    if n_shifted // len(class_names) > smallest:
        raise ValueError(f"n_shifted={n_shifted} asks for {n_shifted // len(class_names)} test images a class, but "
                         f"the test part has {smallest} of its smallest class (use --n-shifted "
                         f"{smallest * len(class_names)} or less)")
    subset = sample_few_shot(y, test, n_shifted // len(class_names), seed)
    x = prepare_features(features, normalize)
    family = probe_family(x, y, train, val, shots, seed)
    weights = classifier_weights(model, *prompts_for_classes(class_names, template_set))

    dataset = open_test_set(spec, pixel_transform(model.config.image_size))
    pixels_memo: list = []

    def subset_pixels():  # decoded at most once, and only if some corrupted features are not cached
        if not pixels_memo:
            pixels, _ = load_pixels(dataset)
            pixels_memo.append((pixels[torch.as_tensor(subset)], labels[torch.as_tensor(subset)]))
        return pixels_memo[0]

    base_key = {"dataset": spec, "files": dataset_fingerprint(dataset), "transform": transform_key(dataset.transform),
                "subset": hashlib.sha256(subset.tobytes()).hexdigest()[:16], "seed": seed}
    shifted = {}
    for name in corruptions:
        for severity in severities:
            key = {"name": f"{spec.partition(':')[0]}-{name}-{severity}", "corruption": name, "severity": severity,
                   "level": CORRUPTIONS[name][severity - 1], **base_key}
            shifted[f"{name}@{severity}"] = cached_image_features(
                model, subset_pixels, key, cache, corruption_fn(name, severity, seed), batch_size)
    clean = (features[torch.as_tensor(subset)], labels[torch.as_tensor(subset)])
    rows = robustness_table(weights, family, clean, shifted, normalize)
    return dict(rows=rows, summary=summarise(rows), n_shifted=len(subset), n_probe_train=len(train),
                n_probe_val=len(val), corruptions={n: CORRUPTIONS[n] for n in corruptions}, normalize=normalize)


# --------------------------------------------------------------------------------------------------------
# Shapes under style shift
# --------------------------------------------------------------------------------------------------------

SOURCE_STYLES = ("flat", "photo")
TARGET_STYLES = ("sketch", "noisy")


def shapes_style_features(model, world, style: str, split: str, n: int, cache: FeatureCache | None = None,
                          batch_size: int = 256, project: bool = True) -> tuple[torch.Tensor, object]:
    """Features of `n` single-object scenes of `split` drawn in `style` (cached; `project=False`: before the
    projection into the joint space), and their scenes (for labels of any kind: `world.labels(scenes, kind)`)."""
    scenes = world.scenes(range(n), split, n_objects=1, style=style)
    key = {"name": f"shapes-{style}-{split}", "world": world.config.to_dict(), "split": split, "n": n,
           "style": style, "n_objects": 1}

    def pixels():
        return world.render(range(n), split, n_objects=1, style=style).images, torch.zeros(n, dtype=torch.long)

    features, _ = cached_image_features(model, pixels, key, cache, batch_size=batch_size, project=project)
    return features, scenes


def shapes_style_shift(model, world, kinds=("colour", "shape"), source=SOURCE_STYLES, target=TARGET_STYLES,
                       n_train: int = 1000, n_val: int = 300, n_test: int = 500, shots=(1, 2, 4, 8, 16),
                       seed: int = 0, normalize: bool = True, cache: FeatureCache | None = None,
                       batch_size: int = 256) -> dict:
    """Zero-shot and source-trained probes on Shapes single objects, in the source styles and the target ones.

    For each class `kind` (e.g. "colour": 8 classes; "shape": 8): the probes train on `n_train` scenes of
    the train split drawn in *each* source style (C swept on the val split, same styles); zero-shot uses the
    world's own prompts ("a photo of a red circle" style grammar). Both are scored on `n_test` test-split
    scenes drawn in every style: "clean" is the source styles' test images together, and each style is a
    shift (the source styles appear as shifts too, as a check: their shifted accuracy sits on the line)."""
    cache = cache or FeatureCache()
    parts = {}
    for style in source:
        for split, n in (("train", n_train), ("val", n_val)):
            parts[style, split] = shapes_style_features(model, world, style, split, n, cache, batch_size)
    for style in tuple(source) + tuple(target):
        parts[style, "test"] = shapes_style_features(model, world, style, "test", n_test, cache, batch_size)

    results = {}
    for kind in kinds:
        def take(style, split):
            features, scenes = parts[style, split]
            return features, world.labels(scenes, kind)

        train_f, train_y = (torch.cat(t) for t in zip(*(take(s, "train") for s in source)))
        val_f, val_y = (torch.cat(t) for t in zip(*(take(s, "val") for s in source)))
        x = prepare_features(torch.cat([train_f, val_f]), normalize)
        y = torch.cat([train_y, val_y]).numpy()
        train_idx, val_idx = np.arange(len(train_y)), np.arange(len(train_y), len(y))
        # k-shot members need every class present k times in the pool; Shapes classes are drawn uniformly
        family = probe_family(x, y, train_idx, val_idx, shots, seed)
        weights = classifier_weights(model, world.class_prompts(kind), ("{}",))
        clean = tuple(torch.cat(t) for t in zip(*(take(s, "test") for s in source)))
        shifted = {style: take(style, "test") for style in tuple(source) + tuple(target)}
        rows = robustness_table(weights, family, clean, shifted, normalize)
        results[kind] = dict(rows=rows, summary=summarise(rows), classes=len(world.class_names(kind)))
    return dict(kinds=results, source=list(source), target=list(target), n_train=n_train, n_val=n_val,
                n_test=n_test, normalize=normalize)


__all__ = [
    "CORRUPTIONS", "SOURCE_STYLES", "TARGET_STYLES", "contrast", "corrupt", "corruption_fn", "corruption_robustness",
    "effective_robustness", "gaussian_blur", "gaussian_noise", "jpeg", "probe_family", "psnr", "robustness_table",
    "shapes_style_features", "shapes_style_shift", "summarise",
]
