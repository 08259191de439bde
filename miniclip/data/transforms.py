"""Image transforms shared by every dataset: decoding, colour modes, CLIP's preprocessing, batching.

Real image collections are messy: greyscale scans, palette GIFs with transparency, CMYK JPEGs from print
workflows, 16-bit medical PNGs, files cut short by a failed download. Everything here turns those into the
one thing the model eats, an RGB float tensor normalised with CLIP's statistics, and turns the files that
cannot be decoded at all into `None` (counted), never into a crash halfway through an epoch.
"""

from __future__ import annotations

import io
import math
import multiprocessing.context
import multiprocessing.sharedctypes
import os
import warnings
from typing import BinaryIO

import numpy as np
import torch
import torch.utils.data
import torchvision.transforms as T
from PIL import Image

from miniclip.config import DataConfig

# The per-channel statistics OpenAI's CLIP was trained with; every tier normalises with them so that
# real checkpoints and our own see inputs on the same scale.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# Transparent pixels are composited onto white. Transparent images on the web (logos, product shots,
# icons) were made to be seen on white pages, so white is what a person captioning them saw. Pillow's plain
# `convert("RGB")` just drops alpha and shows whatever colour the hidden pixels happen to hold (often black,
# sometimes garbage).
ALPHA_BACKGROUND = (255, 255, 255)


# --------------------------------------------------------------------------------------------------------
# Counting faults across DataLoader workers
# --------------------------------------------------------------------------------------------------------


class SharedInt:
    """An integer that DataLoader worker processes can add to, and the main process can read and set.

    A dataset's `__getitem__` runs in worker processes, so a plain `self.count += 1` there is lost: each
    worker increments its own copy. This keeps the integer in shared memory (`multiprocessing.RawArray`),
    which workers inherit whether they are forked or spawned, because the DataLoader hands them the dataset
    (and the collate function) when it launches them.

    There is no lock: locks are named semaphores that outlive killed workers and must be cleaned up. Instead
    each process adds into its own slot (the main process into slot 0, DataLoader worker k into slot k + 1),
    so no two processes ever write the same memory, and the value is the sum of the slots.
    """

    SLOTS = 33  # the main process and up to 32 workers; more workers share slots (a rare, harmless race)

    def __init__(self, value: int = 0):
        self._slots = multiprocessing.sharedctypes.RawArray("q", self.SLOTS)
        self._slots[0] = value

    def _my_slot(self) -> int:
        worker = torch.utils.data.get_worker_info()
        return 0 if worker is None else 1 + worker.id % (self.SLOTS - 1)

    def add(self, n: int = 1) -> None:
        self._slots[self._my_slot()] += n

    @property
    def value(self) -> int:
        return sum(self._slots)

    @value.setter
    def value(self, new: int) -> None:  # meant for the main process, e.g. set_epoch
        self._slots[:] = [int(new)] + [0] * (self.SLOTS - 1)

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"SharedInt({self.value})"

    # While a worker process is being launched, pickling hands over the shared memory itself. Any other copy
    # (deepcopy, pickle.dumps) cannot share memory, so it gets a private snapshot of the current value.
    def __getstate__(self):
        if multiprocessing.context.get_spawning_popen() is not None:
            return {"slots": self._slots}
        return {"value": self.value}

    def __setstate__(self, state):
        if "slots" in state:
            self._slots = state["slots"]
        else:
            self.__init__(state["value"])


# --------------------------------------------------------------------------------------------------------
# Colour modes
# --------------------------------------------------------------------------------------------------------


def _gray_array_to_rgb(a: np.ndarray) -> Image.Image:
    """A single-channel uint8 array as an RGB image (grey in all three channels)."""
    return Image.fromarray(a.astype(np.uint8), mode="L").convert("RGB")


def _stretch(a: np.ndarray) -> np.ndarray:
    """Map an array of unknown range linearly onto 0..255 (constant images become black)."""
    a = np.nan_to_num(a.astype(np.float64))
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def to_rgb(img: Image.Image, background: tuple[int, int, int] = ALPHA_BACKGROUND) -> Image.Image:
    """Any PIL image as 8-bit RGB, converting each mode the way its pixels are meant to be read.

    - `RGB` is returned unchanged (no copy).
    - Anything with transparency (`RGBA`, `LA`, `PA`, premultiplied `RGBa`/`La`, and `P`/`L`/`RGB`
      with a `transparency` entry, as GIFs and PNGs carry it) is composited onto `background` (white).
    - `1`, `L`, `P`, `CMYK`, `YCbCr`, `HSV`: Pillow's own conversion, which is correct for these.
    - 16-bit `I;16*`: divided by 257, so 65535 -> 255 and mid-grey 32768 -> 128. (Pillow's `convert("L")`
      clips 16-bit values at 255, which turns almost every 16-bit photo white.)
    - 32-bit `I`: values in 0..255 are taken as 8-bit, values in 0..65535 as 16-bit; anything else (negative,
      larger) is stretched linearly from its min..max. The mode does not record the intended range, so this is
      a guess, but it is the guess that keeps real files visible.
    - float `F`: values in 0..1 are scaled by 255, values in 0..255 kept, anything else stretched; NaN -> 0.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img

    if mode.startswith("I;16"):  # I;16, I;16L, I;16B, I;16N: unsigned 16-bit grey
        a = np.asarray(img).astype(np.float64)
        return _gray_array_to_rgb(np.round(a / 257.0))
    if mode == "I":
        a = np.asarray(img)
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 255:
            return _gray_array_to_rgb(a)
        if lo >= 0 and hi <= 65535:
            return _gray_array_to_rgb(np.round(a / 257.0))
        return _gray_array_to_rgb(_stretch(a))
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            return _gray_array_to_rgb(np.round(a * 255.0))
        if lo >= 0.0 and hi <= 255.0:
            return _gray_array_to_rgb(np.round(a))
        return _gray_array_to_rgb(_stretch(a))

    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")  # also resolves palette transparency and premultiplied alpha
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")

    try:
        return img.convert("RGB")
    except ValueError:  # a mode Pillow cannot convert directly (e.g. LAB): go through its channels as grey
        return _gray_array_to_rgb(_stretch(np.asarray(img.getchannel(0))))


# --------------------------------------------------------------------------------------------------------
# Decoding, never crashing
# --------------------------------------------------------------------------------------------------------

# Images load_image could not decode: in this process and its forked workers (spawned workers re-import the
# module and count on their own). Datasets keep their own count, which every kind of worker shares.
decode_failures = SharedInt()
_warned_pids: set[int] = set()


def load_image(
    source: str | os.PathLike | bytes | BinaryIO, draft_size: int | None = None
) -> Image.Image | None:
    """Decode an image file (a path, the file's bytes, or an open binary file) into RGB, or `None`.

    `None` means the file is truncated, corrupt or not an image; it is counted in `decode_failures` and
    warned about once per process. Any exception from the decoder counts: Pillow raises OSError, ValueError,
    SyntaxError, struct errors or DecompressionBombError depending on where in the file the damage is.

    `draft_size`: for JPEGs, let the decoder itself downscale by 1/2, 1/4 or 1/8 while keeping both sides at
    least `draft_size` pixels. Decoding fewer DCT coefficients is much cheaper than decoding everything and
    resizing afterwards, and the result is as sharp as the later resize needs. Non-JPEGs ignore it.
    """
    try:
        file = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        img = Image.open(file)
        if draft_size and img.format == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        img.load()  # Pillow opens lazily: force the decode here, inside the try
        return to_rgb(img)
    except Exception as exc:  # noqa: BLE001 -- any decoder failure means "skip this file"
        decode_failures.add()
        if os.getpid() not in _warned_pids:
            _warned_pids.add(os.getpid())
            what = f"{source!s}" if isinstance(source, (str, os.PathLike)) else type(source).__name__
            warnings.warn(
                f"skipping an image that could not be decoded ({what}: {type(exc).__name__}: {exc}); "
                f"further failures are only counted (miniclip.data.transforms.decode_failures)",
                stacklevel=2,
            )
        return None


# --------------------------------------------------------------------------------------------------------
# CLIP's preprocessing
# --------------------------------------------------------------------------------------------------------


class ImageTransform(T.Compose):
    """A torchvision `Compose` that also says which size it wants images decoded at.

    `image_size`: the side of the square tensor it produces. `draft_size`: the smallest shorter side the
    decoder may reduce a JPEG to (see `load_image`); datasets read it to decode no more than needed.
    """

    def __init__(self, transforms, image_size: int, draft_size: int | None):
        super().__init__(transforms)
        self.image_size, self.draft_size = image_size, draft_size


class TwoViews(ImageTransform):
    """The same random augmentation applied twice to one image: `[2, 3, H, W]`, two views of it, as a SimCLR
    loss needs (the image SSL loss of `optim.ssl_weight`). Decoded once, at the wrapped transform's draft size."""

    def __init__(self, transform: ImageTransform):
        super().__init__(transform.transforms, transform.image_size, transform.draft_size)

    def __call__(self, img) -> torch.Tensor:
        return torch.stack([super().__call__(img), super().__call__(img)])


class ToNormalizedTensor:
    """RGB PIL image -> float tensor [3, H, W], scaled to 0..1 and normalised with CLIP's mean and std.

    The same arithmetic, in the same order and precision, as OpenAI's `ToTensor()` then
    `Normalize(mean, std)` (divide by 255, subtract the mean, divide by the std, in float32), so the output is
    bit-identical to the reference preprocessing. Doing it in numpy on the whole image costs a third of the two
    torchvision steps, whose per-call checks and small tensor allocations dominate at 64 px.
    """

    def __init__(self, mean=OPENAI_MEAN, std=OPENAI_STD):
        self.mean_std = (tuple(mean), tuple(std))
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        a = np.asarray(img, dtype=np.float32) / np.float32(255)  # [H, W, 3], a fresh writable array
        a -= self.mean
        a /= self.std
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return "ToNormalizedTensor(mean={}, std={})".format(*self.mean_std)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1], [..., 3, H, W], normalised with CLIP's mean and std (on their device)."""
    mean = torch.tensor(OPENAI_MEAN, device=images.device)[:, None, None]
    std = torch.tensor(OPENAI_STD, device=images.device)[:, None, None]
    return (images - mean) / std


class RandomResizedCrop:
    """Crop a random region (area fraction in `scale`, aspect ratio in `ratio`) and resize it to a square.

    The Inception-style crop of torchvision's `RandomResizedCrop`: up to ten tries to draw an area and a
    log-uniform aspect ratio that fit in the image, else the largest centred crop of an allowed ratio. Two
    changes make it about twice as fast at 64 px, where the per-call overhead outweighs the pixels: all random
    numbers come from one `torch.rand` call (so `torch.manual_seed` and the DataLoader's per-worker seeding
    still govern them), and Pillow crops and resizes in one step (`resize(box=...)`, no intermediate copy).
    """

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation=Image.BICUBIC):
        self.size, self.scale, self.ratio, self.interpolation = size, tuple(scale), tuple(ratio), interpolation
        self._log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The crop as (left, top, right, bottom)."""
        u = torch.rand(22).tolist()  # 10 tries x (area, ratio), then the two offsets
        area = width * height
        for k in range(10):
            target = area * (self.scale[0] + u[2 * k] * (self.scale[1] - self.scale[0]))
            aspect = math.exp(self._log_ratio[0] + u[2 * k + 1] * (self._log_ratio[1] - self._log_ratio[0]))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                left = int(u[20] * (width - w + 1))
                top = int(u[21] * (height - h + 1))
                return left, top, left + w, top + h
        # Fallback: the whole image, trimmed to the nearest allowed aspect ratio, centred.
        w, h = width, height
        if width / height < self.ratio[0]:
            h = round(width / self.ratio[0])
        elif width / height > self.ratio[1]:
            w = round(height * self.ratio[1])
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.resize((self.size, self.size), self.interpolation, box=self.box(*img.size))

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, bicubic)"


def eval_transform(image_size: int) -> ImageTransform:
    """CLIP's evaluation preprocessing: bicubic resize of the shorter side, centre crop, normalise.

    The one difference from OpenAI's `_transform`: we convert to RGB first rather than after the resize, so
    that transparency is composited before any resampling blends it into neighbouring pixels. For RGB inputs
    (nearly all photos) the output is identical.
    """
    steps = [
        to_rgb,
        T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        ToNormalizedTensor(),
    ]
    return ImageTransform(steps, image_size, draft_size=image_size)


# Crops keep between half and all of the image. ImageNet training crops down to 8% because one object fills
# the frame; a caption describes the whole scene ("two dogs play on a beach near a boat"), and a small crop
# would cut away what the caption names, teaching the model to match text to things that are not there.
# At the low resolutions of CPU training (64 px from 160-500 px photos) a half-area crop still holds the
# main subjects, while the model sees a different framing each epoch, which a 6,000-image dataset needs.
DEFAULT_TRAIN_SCALE = DataConfig.crop_scale  # (0.5, 1.0); a config's data.crop_scale overrides it


def train_transform(image_size: int, scale: tuple[float, float] = DEFAULT_TRAIN_SCALE,
                    color_jitter: float = 0.0) -> ImageTransform:
    """Training augmentation: random resized crop (area fraction in `scale`), horizontal flip, optionally a
    colour jitter of strength `color_jitter` (brightness, contrast and saturation each scaled by a random factor
    in [1 - s, 1 + s]; never the hue), normalise.

    Decoding is drafted to `image_size` (the decoder only halves a JPEG when it stays at least that big), so
    the smallest crops are upsampled by up to 1/sqrt(scale[0]) (1.4x for 0.5): a slight softening of a few
    crops, traded for a noticeably faster pipeline on CPU.
    """
    steps = [
        to_rgb,
        RandomResizedCrop(image_size, scale=scale),
        # A flip turns "a man to the left of a car" into a picture where he is on the right, so the caption
        # becomes false. CLIP's only augmentation was a random crop (paper, Sec. 2.5). We flip anyway: with
        # 6,000 training images the extra variety is worth more than the few captions it contradicts (171 of
        # Flickr8k's 40,960 caption lines, 0.4%, say "left" or "right").
        T.RandomHorizontalFlip(),
    ]
    if color_jitter:
        # SimCLR's colour distortion without its hue shift: captions name colours ("a girl in a pink dress"), and
        # a hue shift would make them false, while lighting and saturation vary between photos of the same scene.
        steps.append(T.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    steps.append(ToNormalizedTensor())
    return ImageTransform(steps, image_size, draft_size=image_size)


def drop_words(caption: str, p: float) -> str:
    """Text augmentation: each word of `caption` left out with probability `p` (from torch's RNG, so a seeded
    caller gets the same draw every time), at least one word kept. "A dog runs on the beach" may come back as
    "dog runs the beach": still true of the picture, in words the model has not memorised in that order."""
    words = caption.split()
    if not p or not words:
        return caption
    keep = torch.rand(len(words)) >= p
    if not keep.any():
        keep[torch.randint(len(words), ())] = True
    return " ".join(w for w, k in zip(words, keep.tolist()) if k)


# --------------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------------


class PairCollator:
    """Collate `(image, caption)` or `(image, label)` samples into a batch, dropping `None` samples.

    Datasets return `None` for an image that could not be decoded; this drops them and counts how many in
    `.dropped` (shared with DataLoader workers). Returns `(images [B,3,H,W], captions list[str])`, or
    `(images, labels LongTensor[B])` when the second items are integers. If every sample of a batch failed the
    batch comes back empty (`len(images) == 0`): skip it.
    """

    def __init__(self):
        self.dropped = SharedInt()

    def __call__(self, batch):
        kept = [sample for sample in batch if sample is not None]
        if len(kept) < len(batch):
            self.dropped.add(len(batch) - len(kept))
        if not kept:
            return torch.empty(0), []
        images = torch.stack([image for image, _ in kept])
        seconds = [second for _, second in kept]
        if all(isinstance(s, int) for s in seconds):
            return images, torch.tensor(seconds, dtype=torch.long)
        return images, seconds


# The collate function to give a DataLoader; `collate_pairs.dropped` counts the samples it dropped.
collate_pairs = PairCollator()


__all__ = [
    "ALPHA_BACKGROUND",
    "DEFAULT_TRAIN_SCALE",
    "ImageTransform",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "PairCollator",
    "RandomResizedCrop",
    "SharedInt",
    "ToNormalizedTensor",
    "collate_pairs",
    "decode_failures",
    "drop_words",
    "eval_transform",
    "load_image",
    "normalize",
    "to_rgb",
    "train_transform",
]
