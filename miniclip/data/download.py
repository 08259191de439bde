"""Fetch the real-small tier's public datasets: checked, resumable, atomic.

``python -m miniclip data download flickr8k`` (or ``cifar10``) puts the files where the loaders look,
under :func:`~miniclip.data.paths.data_root`:

- **flickr8k** -> ``<root>/flickr8k/Flicker8k_Dataset/*.jpg`` and ``<root>/flickr8k/Flickr8k_text/*.txt``,
  the original distribution's layout (including its "Flicker" spelling), from the two zips that Jason
  Brownlee's public ``Datasets`` GitHub release mirrors.
- **cifar10** -> ``<root>/cifar-10-python.tar.gz`` unpacked to ``<root>/cifar-10-batches-py/``: exactly
  what ``torchvision.datasets.CIFAR10(root=data_root(), train=False)`` reads. We do not convert the
  batches to image files ourselves: they are Python pickles, and reading them is torchvision's job (it
  checks each batch's MD5 first). The published MD5 of the tarball is checked here before unpacking.

Every file is streamed into ``<name>.part``; an interrupted download continues from where it stopped with
an HTTP ``Range`` request; the checksum is verified before the file is renamed into place, so a file
without ``.part`` is always complete and correct. A mismatch deletes the bad file and says what was
expected and what arrived.

Checksums: only values that are *published* are stored. Where none is published (the Flickr8k mirror),
the entry is ``None`` and the downloader prints the SHA-256 it computed so the user can record it.
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

from .paths import data_root

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
    "cifar10": [
        # URL and MD5 as published on https://www.cs.toronto.edu/~kriz/cifar.html and used by torchvision.
        Resource("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                 md5="c58f30108f718f92721af3b95e74349a"),
    ],
}


class ChecksumError(RuntimeError):
    pass


class DownloadError(RuntimeError):
    pass


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, sha256: str | None, md5: str | None) -> str:
    """Check ``path`` against whichever checksum is known; return its SHA-256 either way."""
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
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial file, verifying, then renaming.

    If ``dest`` already exists and matches the checksum, nothing is fetched.
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
            from tqdm.auto import tqdm

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
    """Unpack ``archive`` so that its files end up in ``dest/folder/``.

    The zips in circulation differ: some hold ``folder/`` at the top, some hold the files flat. We look at
    the members and do the right thing for both. Member paths are checked so none escapes ``dest``.
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
    """Download and unpack ``dataset`` under ``dest`` (default: ``data_root()``). Returns what was made."""
    root = Path(dest) if dest is not None else data_root()
    root.mkdir(parents=True, exist_ok=True)
    archives = root / "downloads"
    fetched = []
    for resource in _resources(dataset, base_url):
        # CIFAR's tarball sits in the root itself, where torchvision expects it.
        target = (root if dataset == "cifar10" else archives) / resource.filename
        download_file(resource.url, target, sha256=resource.sha256, md5=resource.md5, progress=progress)
        fetched.append(target)

    if dataset == "flickr8k":
        home = root / "flickr8k"
        images = extract_zip_into(fetched[0], home, "Flicker8k_Dataset")
        texts = extract_zip_into(fetched[1], home, "Flickr8k_text")
        result = {"dataset": dataset, "path": str(home),
                  "images": sum(1 for _ in images.glob("*.jpg")),
                  "text_files": sorted(p.name for p in texts.glob("*.txt"))}
    else:  # cifar10
        with tarfile.open(fetched[0]) as tf:
            tf.extractall(root, filter="data")  # "data" refuses absolute paths, links out, devices
        result = {"dataset": dataset, "path": str(root / "cifar-10-batches-py"),
                  "files": sorted(p.name for p in (root / "cifar-10-batches-py").iterdir())}
    if not keep_archives:
        for path in fetched:
            path.unlink(missing_ok=True)
    result["archives"] = [str(p) for p in fetched] if keep_archives else []
    return result
