"""Flickr8k: 8,000 real photos with five human captions each, the real-small data tier.

Hodosh, Young & Hockenmaier (JAIR 2013). Two layouts are in circulation and both are read, from a zip (with or
without a top-level folder inside) or from the extracted folder:

- the original distribution: `Flicker8k_Dataset/<id>.jpg` (sic) and `Flickr8k_text/` holding
  `Flickr8k.token.txt` (`<id>#<n><TAB><caption>` lines) and the official split lists
  `Flickr_8k.{train,dev,test}Images.txt`;
- the Kaggle re-upload: `Images/<id>.jpg` and `captions.txt` (csv with an `image,caption` header). It has
  no split lists, so we derive one (see `derived_split`).

Real downloads are messy: the token file names images that are not in the image folder, and the split lists
name some of those too. Listed-but-absent images are skipped, counted in `.missing` and reported in one
warning; nothing is invented to fill the gap.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import warnings
from pathlib import Path, PurePosixPath
from typing import Callable

from torch.utils.data import Dataset

from miniclip.data.folders import IMAGE_EXTENSIONS, FileTree
from miniclip.data.paths import DatasetError, MissingDataError, data_root
from miniclip.data.transforms import SharedInt, load_image

FETCH_COMMAND = "python -m miniclip data download flickr8k"
TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {s: f"Flickr_8k.{s}Images.txt" for s in ("train", "dev", "test")}
KAGGLE_CAPTIONS = "captions.txt"
STANDARD_SPLIT_SIZES = {"train": 6000, "dev": 1000, "test": 1000}
SPLIT_ALIASES = {"val": "dev", "valid": "dev", "validation": "dev"}


# --------------------------------------------------------------------------------------------------------
# Finding and parsing the files
# --------------------------------------------------------------------------------------------------------


def find_flickr8k(path: str | os.PathLike | None = None) -> Path:
    """The Flickr8k zip or folder: `path` if given, else the first of `flickr8k`/`Flickr8k` (folder, then
    `.zip`) or any other `flickr8k*` entry under `data_root`."""
    if path is not None:
        if not Path(path).exists():
            raise MissingDataError("Flickr8k", path, FETCH_COMMAND)
        return Path(path)
    root = data_root()
    for name in ("flickr8k", "Flickr8k", "flickr8k.zip", "Flickr8k.zip"):
        if (root / name).exists():
            return root / name
    if root.is_dir():  # other spellings users end up with: Flickr8k_Dataset.zip, flickr8k-kaggle/, ...
        for entry in sorted(root.iterdir()):
            if entry.name.lower().startswith("flickr8k") and (entry.is_dir() or entry.suffix.lower() == ".zip"):
                return entry
    raise MissingDataError("Flickr8k", root, FETCH_COMMAND)


def parse_token_file(text: str) -> dict[str, list[str]]:
    """`<image>#<n><TAB><caption>` lines -> {image: [captions in file order]}. Blank captions are dropped."""
    captions: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, tab, caption = line.partition("\t")
        if not tab:
            continue  # not a caption line
        image = key.rpartition("#")[0] or key
        caption = caption.strip()
        if caption:
            captions.setdefault(image.strip(), []).append(caption)
    return captions


def parse_kaggle_captions(text: str) -> dict[str, list[str]]:
    """Kaggle's `captions.txt` (csv, header `image,caption`; captions may hold quoted commas)."""
    captions: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        image, caption = (row.get("image") or "").strip(), (row.get("caption") or "").strip()
        if image and caption:
            captions.setdefault(image, []).append(caption)
    return captions


def derived_split(image_ids: list[str], seed: int = 0) -> dict[str, list[str]]:
    """A deterministic train/dev/test split for layouts that ship without split lists (Kaggle's).

    The ids are sorted, then shuffled by sorting on `sha256(f"{seed}:{id}")`: a seeded shuffle that depends
    on nothing but the ids and the seed (not on file order, Python's version or a random-number library), so
    everyone with the same captions gets the same split. The first 6,000 are train, the next 1,000 dev and the
    next 1,000 test, the standard sizes; the rest (91 of Kaggle's 8,091) are left out, as in the original.
    With fewer than 8,000 images (test fixtures), the same 6:1:1 proportions are used.

    This is *not* the official split: numbers on it are comparable with each other, not with papers.
    """
    order = sorted(sorted(image_ids), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    total = sum(STANDARD_SPLIT_SIZES.values())
    if len(order) >= total:
        sizes = STANDARD_SPLIT_SIZES
    else:
        sizes = {s: len(order) * n // total for s, n in STANDARD_SPLIT_SIZES.items()}
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = order[start : start + size]
        start += size
    return splits


def _mix64(*values: int) -> int:
    """A well-mixed 64-bit hash of a few integers (splitmix64's finaliser, applied in turn)."""
    h = 0
    for v in values:
        h = ((h ^ (v & 0xFFFFFFFFFFFFFFFF)) + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h


# --------------------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------------------


class Flickr8k(Dataset):
    """Flickr8k image-caption pairs for one split.

    Args:
        root: the zip or folder; `None` looks under `data_root()` (see `find_flickr8k`).
        split: `"train"`, `"dev"` (or `"val"`), `"test"`, or `"all"` (every image the caption file names).
        transform: PIL image -> tensor, e.g. `train_transform`. `None` returns
            the RGB PIL image.
        train: training mode (default: `split == "train"`). Each item is an image with *one* of its captions,
            a different one each epoch: the choice is a hash of `(seed, epoch, index)`, so it is reproducible,
            independent of worker count, and changes when you call `set_epoch`. In evaluation mode each
            item carries the image's first caption, and all of them are in `.captions` (and flattened in
            `caption_texts` / `caption_image_index`, the form retrieval needs).
        seed: the seed of the per-epoch caption choice.
        decode_size: the size JPEGs may be drafted down to while decoding (see `load_image`); default: the
            transform's `draft_size`; `0` decodes at full size.
        split_seed: the seed of the derived split, for layouts without split lists.

    Attributes: `image_ids`, `captions` (list of lists), `missing` (listed ids with no image file),
    `uncaptioned` (images the split lists but the caption file does not), `listed` (how many ids the split
    named), `failed` (images that could not be decoded so far), `layout` (`"original"` or `"kaggle"`),
    `official_split` (False when the split was derived).

    `__getitem__` returns `(image, caption)`, or `None` when the image cannot be decoded: pass
    `collate_pairs` to the DataLoader to drop those.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        transform: Callable | None = None,
        *,
        train: bool | None = None,
        seed: int = 0,
        decode_size: int | None = None,
        split_seed: int = 0,
    ):
        split = SPLIT_ALIASES.get(split.lower(), split.lower())
        if split not in (*STANDARD_SPLIT_SIZES, "all"):
            raise DatasetError(f"unknown Flickr8k split {split!r} (use train, dev (val), test or all)")
        self.source = find_flickr8k(root)
        self.tree = FileTree(self.source)
        self.split, self.seed = split, seed
        self.train = (split == "train") if train is None else train
        self.transform = transform
        self.decode_size = getattr(transform, "draft_size", None) if decode_size is None else (decode_size or None)

        captions, split_lists = self._read_text_files(split_seed)
        listed = list(captions) if split == "all" else split_lists[split]

        # Image ids are file names, unique across the dataset, so index the image files by name wherever
        # they sit (Flicker8k_Dataset/, Flickr8k_Dataset/, Images/, under a top-level folder or not).
        files_by_id = {
            PurePosixPath(f).name: f for f in self.tree.files if f.lower().endswith(IMAGE_EXTENSIONS)
        }
        self.listed = len(listed)
        self.missing = [i for i in listed if i not in files_by_id]
        self.uncaptioned = [i for i in listed if i in files_by_id and i not in captions]
        self.image_ids = [i for i in listed if i in files_by_id and i in captions]
        self.files = [files_by_id[i] for i in self.image_ids]
        self.captions = [captions[i] for i in self.image_ids]

        self._epoch = SharedInt(0)  # shared, so persistent DataLoader workers see set_epoch too
        self._failed = SharedInt(0)
        self._warn_about_gaps()

    def _read_text_files(self, split_seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Captions and split lists, from whichever layout this is."""
        by_name = {PurePosixPath(f).name: f for f in self.tree.files}
        by_path = set(self.tree.files)
        if TOKEN_FILE in by_name:
            self.layout = "original"
            captions = parse_token_file(self.tree.read_text(by_name[TOKEN_FILE]))
            text_dir = PurePosixPath(by_name[TOKEN_FILE]).parent
            split_paths = {s: (text_dir / f).as_posix() for s, f in SPLIT_FILES.items()}
            if all(p in by_path for p in split_paths.values()):
                self.official_split = True
                return captions, {
                    s: [line.strip() for line in self.tree.read_text(p).splitlines() if line.strip()]
                    for s, p in split_paths.items()
                }
        elif KAGGLE_CAPTIONS in by_name:
            self.layout = "kaggle"
            captions = parse_kaggle_captions(self.tree.read_text(by_name[KAGGLE_CAPTIONS]))
        else:
            raise MissingDataError(
                f"Flickr8k captions ({TOKEN_FILE} or {KAGGLE_CAPTIONS})", self.source, FETCH_COMMAND
            )
        self.official_split = False
        return captions, derived_split(list(captions), split_seed)

    def _warn_about_gaps(self) -> None:
        if not (self.missing or self.uncaptioned):
            return
        parts = []
        if self.missing:
            parts.append(
                f"{len(self.missing):,} of {self.listed:,} listed images are absent "
                f"(e.g. {', '.join(self.missing[:3])}) and were skipped (see .missing)"
            )
        if self.uncaptioned:
            parts.append(f"{len(self.uncaptioned):,} images have no caption and were skipped (see .uncaptioned)")
        warnings.warn(
            f"Flickr8k {self.split} from {self.source}: " + "; ".join(parts)
            + f". Using {len(self.image_ids):,} images.",
            stacklevel=3,
        )

    # --- captions -----------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Choose this epoch's captions in training mode. Call it before iterating the DataLoader."""
        self._epoch.value = int(epoch)

    @property
    def epoch(self) -> int:
        return self._epoch.value

    def caption_for(self, index: int, epoch: int | None = None) -> str:
        """The caption item `index` carries in training mode, in `epoch` (default: the current one)."""
        return self.captions_for(index, 1, epoch)[0]

    def captions_for(self, index: int, k: int, epoch: int | None = None) -> list[str]:
        """`k` of image `index`'s captions in `epoch`: from the one `caption_for` picks on, in file order and
        round the end, so they are distinct while the image has at least `k` (an image with fewer repeats some)."""
        options = self.captions[index]
        epoch = self._epoch.value if epoch is None else epoch
        first = _mix64(self.seed, epoch, index) % len(options)
        return [options[(first + j) % len(options)] for j in range(k)]

    def caption_texts(self) -> list[str]:
        """Every caption of every image, flattened in image order (five per image in the official data)."""
        return [c for captions in self.captions for c in captions]

    def caption_image_index(self) -> list[int]:
        """For each entry of `caption_texts`, the index of its image: the ground truth of retrieval."""
        return [i for i, captions in enumerate(self.captions) for _ in captions]

    # --- images -------------------------------------------------------------------------------------------

    @property
    def failed(self) -> int:
        """How many images could not be decoded so far (counted across DataLoader workers)."""
        return self._failed.value

    def pil_image(self, index: int, draft_size: int | None = None):
        """The RGB PIL image of item `index` before any transform (`None` if it cannot be decoded)."""
        return load_image(self.tree.read_bytes_or_empty(self.files[index]), draft_size=draft_size)

    def iter_raw(self):
        """Every `(image id, caption, encoded image bytes)` of this split, one per caption, reading each image
        file once: what webdataset shards store. The bytes are the file's own, undecoded (`b""` if unreadable)."""
        for image_id, file, captions in zip(self.image_ids, self.files, self.captions):
            data = self.tree.read_bytes_or_empty(file)
            for caption in captions:
                yield image_id, caption, data

    def keep_first(self, n: int) -> "Flickr8k":
        """Keep only the first `n` images of the split (and their captions), in the split list's order, so that
        smaller sets are nested: a shorter evaluation, or a data-scaling trial (`data.train_images`)."""
        self.image_ids, self.files, self.captions = self.image_ids[:n], self.files[:n], self.captions[:n]
        return self

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int):
        image = load_image(self.tree.read_bytes_or_empty(self.files[index]), draft_size=self.decode_size)
        if image is None:
            self._failed.add()
            return None
        caption = self.caption_for(index) if self.train else self.captions[index][0]
        return (self.transform(image) if self.transform else image), caption

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return (
            f"Flickr8k(split={self.split!r}, {len(self):,} images, {sum(map(len, self.captions)):,} captions, "
            f"{len(self.missing):,} missing, mode={mode}, layout={self.layout}, source={str(self.source)!r})"
        )


__all__ = [
    "FETCH_COMMAND",
    "Flickr8k",
    "derived_split",
    "find_flickr8k",
    "parse_kaggle_captions",
    "parse_token_file",
]
