"""Labelled test sets: `<root>/<class>/<image>` folders, plain or zipped (CIFAR-10/100 and the Intel scenes included).

Zero-shot classification needs three things from a test set: images, integer labels, and class *names* a
prompt can be built from ("a photo of a {name}."). Folder names are close to that but not quite
("aquarium_fish"), so every set here carries both `.classes` (the folder names, which define the label
order) and `.class_names` (readable, for prompts).

CIFAR is read as image files too, never through torchvision's `CIFAR10`/`CIFAR100`: those read the
"python version" batches, which are pickles, and unpickling a file can run code hidden in it. This project
unpickles nothing; `python -m miniclip data download cifar10` instead converts the binary version's test
split into `<root>/cifar10/test/<class>/<nnnn>.png`, which `open_test_set` finds like any other copy.

The Intel scenes (the test split of the Intel Image Classification set: six outdoor scene classes, `buildings
forest glacier mountain sea street`, photos of about 150x150 but not all the same size) are read the same way,
from `<root>/intel-scenes-test.zip` or `<root>/intel-scenes/test`. They sit behind a Kaggle login, so
`python -m miniclip data download intel-scenes` only says where to get them and where to put them.

This module also holds `FileTree`, the read-only view of "a folder or a zip" that the Flickr8k loader
shares: users keep downloads zipped, and reading them in place saves unpacking 10,000 small files.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Callable

from torch.utils.data import Dataset

from miniclip.data.paths import DatasetError, MissingDataError, data_root
from miniclip.data.transforms import SharedInt, load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


# --------------------------------------------------------------------------------------------------------
# A folder or a zip, read the same way
# --------------------------------------------------------------------------------------------------------


def _is_junk(name: str) -> bool:
    """Files that archivers and file browsers add next to real data (macOS resource forks, thumbnails)."""
    parts = name.split("/")
    return "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] in (".DS_Store", "Thumbs.db")


class FileTree:
    """The files under a folder, or inside a zip, addressed by relative `/`-separated names.

    `path` may also point *into* a zip (`cifar10-test.zip/cifar10/test`): the part after the `.zip` is a
    folder inside the archive, and names are relative to it.

    A `zipfile.ZipFile` is not safe to share across processes: a forked DataLoader worker would share the
    parent's file offset, and reads from several workers would interleave into garbage. So the handle remembers
    the process that opened it, a process that finds someone else's handle opens its own, and the handle is
    never pickled.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.zip_path, inner = self._split_zip(self.path)
        if self.zip_path is not None:
            prefix = f"{inner}/" if inner else ""
            # Keep the handle we listed with: reading the central directory of 8,000 entries twice is slow.
            archive = zipfile.ZipFile(self.zip_path)
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
            self.files = sorted(n[len(prefix):] for n in names if n.startswith(prefix) and not _is_junk(n))
            self._prefix = prefix
            self._archive, self._archive_pid = archive, os.getpid()
        elif self.path.is_dir():
            found = []
            for folder, _, files in os.walk(self.path):
                rel = Path(folder).relative_to(self.path).as_posix()
                found += [f if rel == "." else f"{rel}/{f}" for f in files]
            self.files = sorted(n for n in found if not _is_junk(n))
            self._prefix = ""
            self._archive, self._archive_pid = None, None
        else:
            raise DatasetError(f"no such folder or zip file: {self.path} (give an ImageFolder: <root>/<class>/<image>)")

    @staticmethod
    def _split_zip(path: Path) -> tuple[Path | None, str]:
        """`a/b.zip/c/d` -> (`a/b.zip`, `c/d`); a plain zip -> (zip, `""`); a folder -> (None, `""`)."""
        for i in range(len(path.parts), 0, -1):
            head = Path(*path.parts[:i])
            if head.suffix.lower() == ".zip" and head.is_file():
                return head, "/".join(path.parts[i:])
        return None, ""

    def _zip(self) -> zipfile.ZipFile:
        if self._archive_pid != os.getpid():
            self._archive, self._archive_pid = zipfile.ZipFile(self.zip_path), os.getpid()
        return self._archive

    def read_bytes(self, name: str) -> bytes:
        if self.zip_path is not None:
            return self._zip().read(self._prefix + name)
        return (self.path / name).read_bytes()

    def read_bytes_or_empty(self, name: str) -> bytes:
        """`read_bytes`, but `b""` for a file that cannot be read: a zip member that fails its CRC check or
        inflates to garbage, a file deleted since we listed it. The decoder then counts it as undecodable,
        instead of the error ending a training run."""
        try:
            return self.read_bytes(name)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error):
            return b""

    def read_text(self, name: str) -> str:
        # utf-8 with replacement: caption files are utf-8, and one bad byte should not hide 40,000 captions.
        return self.read_bytes(name).decode("utf-8", errors="replace")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_archive"], state["_archive_pid"] = None, None
        return state

    def __repr__(self) -> str:
        return f"FileTree({str(self.path)!r}, {len(self.files)} files)"


# --------------------------------------------------------------------------------------------------------
# Readable class names
# --------------------------------------------------------------------------------------------------------

# The names OpenAI used for CIFAR-10 prompts (the CLIP repository's notebooks). They equal the dataset's own
# names, which are already plain words, so folders named after them are read as they are.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Other spellings of CIFAR-10's classes seen in re-packaged copies, mapped back to the names above.
_CIFAR10_ALIASES = {"aeroplane": "airplane", "plane": "airplane", "car": "automobile"}


def readable_class_name(folder: str) -> str:
    """A folder or label name as words for a prompt: `aquarium_fish` -> `aquarium fish`."""
    name = folder.replace("_", " ").strip()
    return _CIFAR10_ALIASES.get(name.lower(), name)


# --------------------------------------------------------------------------------------------------------
# ImageFolder from a folder or a zip
# --------------------------------------------------------------------------------------------------------


def _find_class_root(files: list[str], where: Path, prefer: str | None = None) -> str:
    """The folder whose subfolders are the classes: the one common grandparent of every image.

    Downloads nest the class folders at different depths (`test/cat/1.jpg`, `cifar10/test/cat/1.jpg`),
    so we look at where the images are rather than assume a depth. When they sit under several roots
    (`train/` and `test/` in one archive) we take the one named `prefer` if there is exactly one such,
    and otherwise refuse to guess and name the candidates.
    """
    images = [PurePosixPath(f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not images:
        raise DatasetError(f"no images found under {where} (expected <root>/<class>/<image>)")
    roots = Counter(str(p.parent.parent) for p in images if len(p.parts) >= 2)
    if not roots:
        raise DatasetError(f"{where}: images lie directly in the folder (expected <root>/<class>/<image>)")
    if len(roots) > 1:
        preferred = [r for r in roots if prefer and PurePosixPath(r).name == prefer]
        if len(preferred) == 1:
            return preferred[0]
        listed = ", ".join(f"{r} ({n} images)" for r, n in sorted(roots.items()))
        raise DatasetError(
            f"{where}: images sit under several roots: {listed}. Point at one of them, "
            f"e.g. {where / sorted(roots)[0]}"
        )
    root = next(iter(roots))
    return "" if root == "." else root


class ImageFolderDataset(Dataset):
    """`<root>/<class>/<image>` as `(image_tensor, label)` pairs, read from a folder or a zip.

    `path`: a folder, a zip, or a folder inside a zip (`cifar10-test.zip/cifar10/test`). The level that holds
    the class folders is found automatically (`prefer="test"` picks the `test` root when an archive holds
    several splits). Labels follow the sorted folder names, as torchvision's `ImageFolder` does, so a model
    evaluated on either sees the same label order.

    `__getitem__` returns `None` for an image that cannot be decoded (counted in `.failed`); use
    `collate_pairs` to drop those from batches.
    """

    def __init__(self, path: str | os.PathLike, transform: Callable | None = None, prefer: str | None = None):
        self.tree = FileTree(path)
        root = _find_class_root(self.tree.files, self.tree.path, prefer)
        prefix = f"{root}/" if root else ""
        self.files: list[str] = []
        folder_of: list[str] = []
        for name in self.tree.files:
            rest = name[len(prefix):]
            if name.startswith(prefix) and rest.count("/") == 1 and name.lower().endswith(IMAGE_EXTENSIONS):
                self.files.append(name)
                folder_of.append(rest.split("/")[0])
        self.classes: list[str] = sorted(set(folder_of))
        self.class_names: list[str] = [readable_class_name(c) for c in self.classes]
        index = {c: i for i, c in enumerate(self.classes)}
        self.targets: list[int] = [index[c] for c in folder_of]
        self.transform = transform
        self.draft_size = getattr(transform, "draft_size", None)
        self._failed = SharedInt()

    @property
    def failed(self) -> int:
        """How many images could not be decoded so far (across DataLoader workers)."""
        return self._failed.value

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        image = load_image(self.tree.read_bytes_or_empty(self.files[i]), draft_size=self.draft_size)
        if image is None:
            self._failed.add()
            return None
        return (self.transform(image) if self.transform else image), self.targets[i]

    def __repr__(self) -> str:
        return f"ImageFolderDataset({str(self.tree.path)!r}, {len(self)} images, {len(self.classes)} classes)"


# --------------------------------------------------------------------------------------------------------
# One entry point for evaluation code: a spec string -> a labelled test set
# --------------------------------------------------------------------------------------------------------


# The test sets a spec can name, with the names their error messages use. Each is an ImageFolder copy under the
# data root (see `_local_test_copy`), and `python -m miniclip data download <spec>` says how to get one.
NAMED_TEST_SETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "intel-scenes": "Intel scenes"}


def _local_test_copy(name: str) -> Path | None:
    """A test set the user keeps under the data root in ImageFolder layout: `<name>-test.zip`, or a folder
    `<name>/test` or `<name>-test`, whichever exists first."""
    root = data_root()
    for candidate in (root / f"{name}-test.zip", root / name / "test", root / f"{name}-test"):
        if candidate.exists():
            return candidate
    return None


def open_test_set(spec: str, transform: Callable | None = None):
    """A labelled test set from a spec string, as the CLI's `--data` takes it.

    - `imagefolder:PATH`: a folder or zip (or folder inside a zip) in ImageFolder layout;
    - `cifar10` / `cifar100` / `intel-scenes`: the test split, from an ImageFolder copy under `data_root()`
      (`cifar10-test.zip`, `cifar10/test` or `cifar10-test`, the first that exists; the download command
      writes `cifar10/test`; likewise `intel-scenes-test.zip`, `intel-scenes/test`, `intel-scenes-test`);
      none -> `MissingDataError` naming the download command.
    - `cifar10:PATH` / `cifar100:PATH` / `intel-scenes:PATH`: that ImageFolder copy (a folder, a zip, or a
      folder inside a zip).

    Every set returned has `.classes`, `.class_names`, `.targets` and yields `(image, label)`.
    """
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "imagefolder":
        if not path:
            raise DatasetError("imagefolder needs a path (imagefolder:PATH)")
        return ImageFolderDataset(path, transform)
    if kind in NAMED_TEST_SETS:
        local = Path(path) if path else _local_test_copy(kind)
        if local is None:
            raise MissingDataError(NAMED_TEST_SETS[kind], data_root(), f"python -m miniclip data download {kind}")
        return ImageFolderDataset(local, transform, prefer="test")
    raise DatasetError(f"unknown test set {spec!r} (use imagefolder:PATH, cifar10, cifar100 or intel-scenes)")


__all__ = [
    "CIFAR10_CLASSES",
    "FileTree",
    "ImageFolderDataset",
    "NAMED_TEST_SETS",
    "open_test_set",
    "readable_class_name",
]
