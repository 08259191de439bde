"""Fetch the real-small tier's public datasets: checked, resumable, atomic.

`python -m miniclip data download flickr8k` (or `cifar10`, `cifar100`) puts the files where the
loaders look, under `data_root`; `intel-scenes` is named here too but not fetched (see below):

- **flickr8k** -> `<root>/flickr8k/Flicker8k_Dataset/*.jpg` and `<root>/flickr8k/Flickr8k_text/*.txt`,
  the original distribution's layout (including its "Flicker" spelling), from the two zips that Jason
  Brownlee's public `Datasets` GitHub release mirrors.
- **cifar10** / **cifar100** -> `<root>/cifar10/test/<class>/<nnnn>.png` (`cifar100` likewise): the test
  split as lossless PNGs in the ImageFolder layout that `open_test_set` already
  reads, numbered per class like the shared `cifar10-test.zip`.

- **intel-scenes** is *not* downloaded. The Intel Image Classification scene set (made by Intel for an
  Analytics Vidhya challenge in 2018) is published on Kaggle by Puneet Bansal, at
  https://www.kaggle.com/datasets/puneet6060/intel-image-classification, and Kaggle serves files only to a
  logged-in account. The command therefore fails with one `error:` line that names the dataset, its publisher
  and address, and the layout to put it in: the archive's test split (`seg_test/seg_test/<class>/*.jpg`) as
  `<root>/intel-scenes/test/<class>/*.jpg`, or zipped as `<root>/intel-scenes-test.zip` with that layout
  inside. `open_test_set("intel-scenes")` reads either; `intel-scenes:PATH` reads any other ImageFolder copy.
  No checksum is stored: none is published. Published descriptions give about 3,000 test images; the copy
  this project was developed with holds 2,158, so say which copy a result was measured on.

Why CIFAR's *binary* version: the dataset page offers a Python, a Matlab and a binary tarball. The Python
one (what torchvision downloads) stores its batches as pickles, and unpickling a file can run any code in
it; this project unpickles nothing. The binary version holds the same images as fixed-size records
(label byte(s), then 1024 red, 1024 green and 1024 blue bytes, each a row-major 32x32 plane) and plain-text
class names, which a few lines of NumPy read. We read the two members we need straight out of the tarball
instead of unpacking it, so no path inside the archive is ever written to disk. Only the test split is
converted: it is all that zero-shot evaluation uses.

Every file is streamed into `<name>.part`; an interrupted download continues from where it stopped with
an HTTP `Range` request; the checksum is verified before the file is renamed into place, so a file
without `.part` is always complete and correct. A mismatch deletes the bad file and says what was
expected and what arrived. Converted folders are written next to their final place under a temporary name
and renamed at the end, so `<root>/cifar10/test` is either absent or complete.

Checksums: only values that are *published* are stored. Where none is published (the Flickr8k mirror),
the entry is `None` and the downloader prints the SHA-256 it computed so the user can record it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from miniclip.data.paths import data_root
from miniclip.errors import UserError

CHUNK = 1 << 20
# Lets a test (or a user behind a mirror) point every download at another server: <base>/<filename>.
BASE_URL_ENV = "MINICLIP_DOWNLOAD_BASE_URL"


@dataclass(frozen=True)
class Resource:
    filename: str
    url: str
    sha256: str | None = None
    md5: str | None = None  # some datasets publish only MD5; it still catches corrupt transfers


DATASETS: dict[str, list[Resource]] = {
    "flickr8k": [
        # Public mirror of the original (now withdrawn) UIUC distribution. No checksum is published: unverified.
        Resource("Flickr8k_Dataset.zip", "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip"),
        Resource("Flickr8k_text.zip", "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip"),
    ],
    # The binary versions (not the pickled Python ones); URLs and MD5s as published in the download tables
    # of https://www.cs.toronto.edu/~kriz/cifar.html.
    "cifar10": [
        Resource("cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                 md5="c32a1d4ab5d03f1284b67883e8d87530"),
    ],
    "cifar100": [
        Resource("cifar-100-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                 md5="03b5dce01913d631647c71ecec9e9cb8"),
    ],
}


@dataclass(frozen=True)
class ManualSource:
    """A dataset this command names but cannot fetch (its host wants a login): what it is, where it is published,
    and where under the data root to put it, as a folder or a zip holding that folder."""

    description: str
    source: str
    origin_hint: str  # where the split we read sits inside what the source hands out
    layout: str  # relative to the data root, the folder `open_test_set` reads
    zip_name: str  # a zip under the data root with `layout` inside


# The address was checked against independent public descriptions of the dataset; no checksum is published.
MANUAL_SOURCES: dict[str, ManualSource] = {
    "intel-scenes": ManualSource(
        description="the Intel Image Classification scene set (Intel, for an Analytics Vidhya challenge, 2018)",
        source="published on Kaggle by Puneet Bansal at "
               "https://www.kaggle.com/datasets/puneet6060/intel-image-classification, which needs a Kaggle login",
        origin_hint="the archive's seg_test/seg_test/<class>/*.jpg",
        layout="intel-scenes/test/<class>/*.jpg",
        zip_name="intel-scenes-test.zip",
    ),
}

# What `python -m miniclip data download` accepts: the datasets it fetches, and the ones it only explains.
DOWNLOAD_CHOICES = tuple(sorted({*DATASETS, *MANUAL_SOURCES}))


@dataclass(frozen=True)
class CifarBinary:
    """Where a CIFAR binary tarball keeps its test split and class names, and how its records look."""

    test_member: str  # the test records, a path inside the tarball
    names_member: str  # class names, one per line; line i names label i
    label_bytes: int  # label bytes before each image's 3072 pixel bytes
    label_index: int  # which of those bytes is the label we classify by
    num_classes: int


CIFAR_BINARY = {
    "cifar10": CifarBinary("cifar-10-batches-bin/test_batch.bin", "cifar-10-batches-bin/batches.meta.txt",
                           label_bytes=1, label_index=0, num_classes=10),
    # CIFAR-100 records carry the coarse (superclass) label, then the fine one: the 100 classes are the fine.
    "cifar100": CifarBinary("cifar-100-binary/test.bin", "cifar-100-binary/fine_label_names.txt",
                            label_bytes=2, label_index=1, num_classes=100),
}
CIFAR_SIDE = 32
CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE  # 3072: the R, G and B planes, 1024 bytes each


class ChecksumError(UserError, RuntimeError):
    """A downloaded file whose digest is not the published one (a bad mirror, or a corrupted transfer)."""


class DownloadError(UserError, RuntimeError):
    """A download that failed (unreachable host, HTTP error, an archive without the expected files)."""


class ManualDownloadError(DownloadError):
    """A dataset that must be fetched by hand (see `MANUAL_SOURCES`): the message says where from and where to
    put it."""


def manual_download_message(dataset: str, root: Path) -> str:
    """One line: why `dataset` is not downloaded, where to get it, and the layout under `root` to put it in."""
    m = MANUAL_SOURCES[dataset]
    return (f"{dataset} is not downloaded by this command: it is {m.description}, {m.source} "
            f"(download it there, then put the test split, {m.origin_hint}, at {root / m.layout}, "
            f"or zip it as {root / m.zip_name} holding {m.layout})")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, sha256: str | None, md5: str | None) -> str:
    """Check `path` against whichever checksum is known; return its SHA-256 either way."""
    got_sha = file_digest(path, "sha256")
    if sha256 is not None and got_sha != sha256.lower():
        raise ChecksumError(f"sha256 mismatch for {path.name}: expected {sha256}, got {got_sha}")
    if md5 is not None:
        got_md5 = file_digest(path, "md5")
        if got_md5 != md5.lower():
            raise ChecksumError(f"md5 mismatch for {path.name}: expected {md5}, got {got_md5}")
    return got_sha


def download_file(url: str, dest: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
                  timeout: float = 30.0, progress: bool = True) -> Path:
    """Download `url` to `dest` via `dest.part`, resuming a partial file, verifying, then renaming.

    If `dest` already exists and matches the checksum, nothing is fetched.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        try:
            _verify(dest, sha256, md5)
            return dest
        except ChecksumError:
            dest.unlink()  # a stale or damaged copy: fetch again

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "miniclip-downloader"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the .part is already complete: nothing left to send
            response = None
        else:
            raise DownloadError(f"GET {url} failed: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"GET {url} failed: {err}") from err

    if response is not None:
        with response:
            if have and response.status != 206:
                have = 0  # the server ignored Range and is sending everything: start the file over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None

            with open(part, "ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress, file=sys.stderr,
            ) as bar:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))

    try:
        got_sha = _verify(part, sha256, md5)
    except ChecksumError as err:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{err} (from {url}); the bad file was deleted, run the command again") from None
    if sha256 is None and md5 is None:
        print(f"[download] {dest.name}: no published checksum to verify against (unverified); "
              f"sha256 of what arrived: {got_sha}", file=sys.stderr)
    os.replace(part, dest)  # atomic on one file system: `dest` is never half-written
    return dest


# --------------------------------------------------------------------------------------------------
# Unpacking into the layouts the loaders read
# --------------------------------------------------------------------------------------------------


def _junk(name: str) -> bool:
    """macOS resource forks and folder metadata that zips made on a Mac carry along."""
    parts = Path(name).parts
    return not parts or parts[0] == "__MACOSX" or Path(name).name.startswith("._") or Path(name).name == ".DS_Store"


def extract_zip_into(archive: Path, dest: Path, folder: str) -> Path:
    """Unpack `archive` so that its files end up in `dest/folder/`.

    The zips in circulation differ: some hold `folder/` at the top, some hold the files flat. We look at
    the members and do the right thing for both. Member paths are checked so none escapes `dest`.
    """
    target = (dest / folder).resolve()
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not _junk(m.filename)]
        tops = {Path(m.filename).parts[0] for m in members}
        strip = 1 if len(tops) == 1 and next(iter(tops)) == folder else 0
        for member in members:
            parts = Path(member.filename).parts[strip:]
            if not parts or member.is_dir():
                continue
            out = (target / Path(*parts)).resolve()
            if target not in out.parents:
                raise DownloadError(f"refusing to unpack {member.filename!r} from {archive}: it leaves {target}")
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
    return target


def _tar_member_bytes(tf: tarfile.TarFile, name: str) -> bytes:
    """The bytes of one regular-file member, read in memory: nothing from the archive touches the disk."""
    try:
        member = tf.getmember(name)
    except KeyError:
        raise DownloadError(f"{tf.name}: no member {name!r}; is this the CIFAR binary version?") from None
    if not member.isfile():  # a link or device where a data file should be: refuse rather than follow it
        raise DownloadError(f"{tf.name}: {name!r} is not a regular file")
    with tf.extractfile(member) as f:
        return f.read()


def _class_names(text: bytes, expected: int, source: str) -> list[str]:
    """Class names from a CIFAR names file: one per line, blank lines (the files end with some) skipped.

    The names become folder names, so anything that could leave the output folder is refused.
    """
    names = [line.strip() for line in text.decode("ascii").splitlines() if line.strip()]
    if len(names) != expected or len(set(names)) != expected:
        raise DownloadError(f"{source}: expected {expected} distinct class names, found {len(names)}")
    for name in names:
        if "/" in name or "\\" in name or name in (".", ".."):
            raise DownloadError(f"{source}: {name!r} is not usable as a folder name")
    return names


def cifar_records(raw: bytes, spec: CifarBinary, source: str = "CIFAR records"):
    """Decode binary CIFAR records into `(labels, images)`: shapes `(n,)` and `(n, 32, 32, 3)`, uint8.

    A record is `spec.label_bytes` label bytes, then the red, green and blue planes, each 32 rows of 32
    bytes. Reshaped to `(n, 3, 32, 32)` the planes are channels; moving the channel axis last gives the
    height x width x RGB layout that PIL (and every image file) uses.
    """
    record = spec.label_bytes + CIFAR_PIXELS
    if not raw or len(raw) % record:
        raise DownloadError(f"{source}: {len(raw)} bytes is not a whole number of {record}-byte records")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, spec.label_index]
    images = rows[:, spec.label_bytes:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
    return labels, images


def convert_cifar_test(archive: Path, dataset: str, root: Path) -> dict:
    """Write the test split of a CIFAR binary tarball as `<root>/<dataset>/test/<class>/<nnnn>.png`.

    Images are numbered per class in the order the test file lists them (the file's first cat is
    `cat/0000.png`), as in the shared `cifar10-test.zip`. PNG, not JPEG: the files must hold exactly the
    published pixels.

    Everything is written into a temporary folder beside `test` and renamed into place at the end, so an
    interrupted run never leaves a half-filled `test` folder for the loaders to find.
    """
    spec = CIFAR_BINARY[dataset]
    with tarfile.open(archive, "r:gz") as tf:
        names = _class_names(_tar_member_bytes(tf, spec.names_member), spec.num_classes, spec.names_member)
        labels, images = cifar_records(_tar_member_bytes(tf, spec.test_member), spec, spec.test_member)
    if labels.max() >= len(names):
        raise DownloadError(f"{spec.test_member}: label {labels.max()} but only {len(names)} class names")
    # The loader numbers classes by the folders that hold images, so a class with no test image would shift
    # every later label. The real test sets hold every class (1,000 or 100 images each); anything else is
    # not the published file.
    if len(set(labels.tolist())) != len(names):
        raise DownloadError(f"{spec.test_member}: not every one of the {len(names)} classes has a test image")

    home = root / dataset
    home.mkdir(parents=True, exist_ok=True)
    final = home / "test"
    # Beside `final`, so on the same file system, where a rename is atomic. Made with mkdir rather than
    # tempfile.mkdtemp, whose private 0700 mode would stay on the renamed folder and hide it from other users.
    staging = home / f".test-partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for name in names:
            (staging / name).mkdir()
        counts = [0] * len(names)
        for label, pixels in zip(labels.tolist(), images):
            # A uint8 height x width x 3 array becomes an RGB image; PNG stores it losslessly.
            Image.fromarray(pixels).save(staging / names[label] / f"{counts[label]:04d}.png")
            counts[label] += 1
        if final.exists():
            # A previous conversion: move it aside first (a folder cannot be renamed onto a non-empty one).
            old = home / f".test-old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old)
        else:
            os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return {"path": str(final), "images": len(labels), "classes": names}


def _resources(dataset: str, base_url: str | None) -> list[Resource]:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
    base_url = base_url or os.environ.get(BASE_URL_ENV)
    if not base_url:
        return DATASETS[dataset]
    # An override keeps the published checksums: a mirror must serve the same bytes.
    return [Resource(r.filename, f"{base_url.rstrip('/')}/{r.filename}", r.sha256, r.md5) for r in DATASETS[dataset]]


def download_dataset(dataset: str, dest: str | os.PathLike | None = None, base_url: str | None = None,
                     progress: bool = True, keep_archives: bool = True) -> dict:
    """Download and unpack `dataset` under `dest` (default: `data_root()`). Returns what was made.

    A dataset of `MANUAL_SOURCES` raises `ManualDownloadError` saying where to get it, before anything is
    created on disk."""
    root = Path(dest) if dest is not None else data_root()
    if dataset in MANUAL_SOURCES:
        raise ManualDownloadError(manual_download_message(dataset, root))
    root.mkdir(parents=True, exist_ok=True)
    archives = root / "downloads"
    fetched = []
    for resource in _resources(dataset, base_url):
        target = archives / resource.filename
        download_file(resource.url, target, sha256=resource.sha256, md5=resource.md5, progress=progress)
        fetched.append(target)

    if dataset == "flickr8k":
        home = root / "flickr8k"
        images = extract_zip_into(fetched[0], home, "Flicker8k_Dataset")
        texts = extract_zip_into(fetched[1], home, "Flickr8k_text")
        result = {"dataset": dataset, "path": str(home),
                  "images": sum(1 for _ in images.glob("*.jpg")),
                  "text_files": sorted(p.name for p in texts.glob("*.txt"))}
    else:  # cifar10, cifar100: the checksum has passed, so the records are the published ones
        result = {"dataset": dataset, **convert_cifar_test(fetched[0], dataset, root)}
    if not keep_archives:
        for path in fetched:
            path.unlink(missing_ok=True)
    result["archives"] = [str(p) for p in fetched] if keep_archives else []
    return result
