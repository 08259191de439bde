"""Image–caption pairs as webdataset tar shards: the storage format of the full (1M-pair) tier.

A *shard* is a plain `.tar` file. Each sample is a few members that share a *key*::

    000000000.jpg   the image, JPEG bytes
    000000000.txt   the caption, UTF-8
    000000000.json  anything else we know (size, source, ...)

This is exactly the layout `img2dataset` writes when it downloads a URL list, so the same reader serves
web data and our own datasets written out with `write_shards`. Tar shards are read sequentially,
which is what makes them fast on spinning disks, network file systems and object stores: a training job
streams a few large files instead of opening a million small ones.

The reader, `ShardDataset`, is a `torch.utils.data.IterableDataset` built from webdataset's
pipeline stages. Reading the stages top to bottom tells the whole story of where a training sample comes
from: pick shards -> split them across DDP ranks and DataLoader workers -> open -> group tar members into
samples -> shuffle in a buffer -> decode -> transform.
"""

from __future__ import annotations

import glob as _glob
import io
import json
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from miniclip.data.transforms import SharedInt, load_image, to_rgb

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def sample_key(shard_index: int, index_in_shard: int, shard_size: int, shard_digits: int = 5) -> str:
    """The key img2dataset gives a sample: shard id and position, zero-padded to a fixed width.

    img2dataset reserves `ceil(log10(shard_size))` digits for the position and 5 for the shard, so with
    its default 10,000 samples per shard the first key is `000000000`. Matching it means shards we write
    and shards it downloads sort, and can be mixed, the same way.
    """
    position_digits = math.ceil(math.log10(shard_size)) if shard_size > 1 else 0
    return f"{shard_index * 10**position_digits + index_in_shard:0{shard_digits + position_digits}d}"


def encode_image(image: Any, quality: int = 95) -> tuple[bytes, str]:
    """Turn an image into (bytes, extension) for a shard.

    Accepted: a PIL image; a uint8 tensor/array (CHW tensor or HWC array, or HW grayscale); a float tensor
    in [0, 1]; or already-encoded bytes. Encoded bytes are written *unchanged*: re-encoding a JPEG loses
    quality every time, and a byte-identical round trip lets tests (and users) check that nothing was
    touched.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return data, "png" if data.startswith(PNG_MAGIC) else "jpg"
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.is_floating_point():
            # Round rather than truncate, so a uint8 -> float -> uint8 trip is exact.
            tensor = (tensor.clamp(0, 1) * 255).round().to(torch.uint8)
        if tensor.dtype != torch.uint8:
            raise TypeError(f"image tensors must be uint8 or float in [0, 1], got {tensor.dtype}")
        if tensor.ndim == 3:  # torch convention: channels first
            tensor = tensor.permute(1, 2, 0)
            if tensor.shape[2] == 1:
                tensor = tensor[:, :, 0]
        image = Image.fromarray(tensor.contiguous().numpy())
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image)  # numpy convention: HWC
    if not isinstance(image, Image.Image):
        raise TypeError(f"cannot write an image of type {type(image).__name__}")
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue(), "jpg"


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from the header only (PIL does not decode pixels for `.size`)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # noqa: BLE001 - a sample we cannot even measure is still written as given
        return None, None


def write_shards(
    samples: Iterable[Sequence[Any]],
    out_dir: str | os.PathLike,
    shard_size: int = 1000,
    prefix: str = "",
    quality: int = 95,
) -> dict:
    """Write `(image, caption)` or `(image, caption, extra_metadata)` items as tar shards.

    Shards are named `{prefix}00000.tar, {prefix}00001.tar, ...` with `shard_size` samples each (the
    last may be shorter). Returns a summary: sample and shard counts and the shard paths.
    """
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pattern = str(out_dir / f"{prefix}%05d.tar")
    count = 0
    # ShardWriter starts a new tar every `maxcount` samples; maxsize is set out of reach so that shard
    # boundaries depend only on the count, which is what our keys encode. A fixed integer mtime makes the
    # shards reproducible byte for byte, and spares every member a PAX header (a float time needs one),
    # which roughly halves the reader's tar-parsing cost.
    with wds.ShardWriter(pattern, maxcount=shard_size, maxsize=float("inf"), verbose=0, mtime=0) as sink:
        for item in samples:
            image, caption = item[0], item[1]
            extra = dict(item[2]) if len(item) > 2 and item[2] else {}
            data, ext = encode_image(image, quality=quality)
            key = sample_key(count // shard_size, count % shard_size, shard_size)
            width, height = _image_size(data)
            meta = {"key": key, "caption": caption, "width": width, "height": height, **extra}
            sink.write({"__key__": key, ext: data, "txt": caption, "json": json.dumps(meta, default=str).encode()})
            count += 1
    shards = sorted(str(p) for p in out_dir.glob(f"{prefix}[0-9]*.tar"))
    return {"samples": count, "shards": len(shards), "shard_size": shard_size, "paths": shards}


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


SKIP_REASONS = ("undecodable image", "missing image", "missing caption", "empty caption", "unreadable shard")


class BadSample(Exception):
    """A sample we skip. `reason` is the short label it is counted under."""

    def __init__(self, reason: str, key: str = "?"):
        super().__init__(f"{reason} (key {key})")
        self.reason, self.key = reason, key


def expand_urls(urls_or_glob: str | os.PathLike | Sequence[str]) -> list[str]:
    """A directory, a glob, webdataset brace notation (`data/{00000..00009}.tar`), or a list."""
    if isinstance(urls_or_glob, (str, os.PathLike)):
        spec = str(urls_or_glob)
        if os.path.isdir(spec):
            return sorted(_glob.glob(os.path.join(spec, "*.tar")))
        if any(ch in spec for ch in "*?["):
            return sorted(_glob.glob(spec))
        return list(wds.shardlists.expand_urls(spec))  # handles {a..b} braces and plain paths
    return [str(u) for u in urls_or_glob]


def _mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (stable across processes, unlike `hash`)."""
    return random.Random(repr(parts)).getrandbits(63)


def default_transform(image: Image.Image) -> torch.Tensor:
    """float tensor in [0, 1], CHW. Real pipelines pass the model's train/eval transform instead."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


class ShardDataset(torch.utils.data.IterableDataset):
    """Stream `(image_tensor, caption)` pairs from webdataset tar shards.

    Args:
        urls_or_glob: shard paths or URLs: a directory of `.tar` files, a glob, brace notation or a list.
        transform: PIL RGB image -> tensor (e.g. the train or eval transform). Default: `[0, 1]` CHW.
        shuffle_buffer: size of the in-memory sample shuffle buffer; 0 reads in shard order (evaluation).
            When > 0 the shard order is shuffled too.
        resampled: draw shards with replacement, forever. This is how multi-epoch training on shards
            works across many ranks: no rank runs out of shards early, and every rank sees an
            (independent) stream of the same distribution. Combine with `samples_per_epoch` (or an
            `itertools.islice`) to give each "epoch" a length.
        seed: makes shard order, shuffling and resampling reproducible; `None` draws fresh randomness.
            Call `set_epoch` each epoch (as with `DistributedSampler`) to vary the order.
        samples_per_epoch: with `resampled`, the total samples per epoch across all ranks and workers.

    Splitting: without resampling, shards are dealt out first across DDP ranks (`torch.distributed` or
    `RANK`/`WORLD_SIZE`) and then across DataLoader workers, so each shard is read by exactly one
    process. There must be at least ranks x workers shards or some workers get none.

    Faults: a sample whose image does not decode, or that lacks an image or a caption, or a truncated tar,
    is skipped, counted by reason in `skipped` (shared memory, so counts made in DataLoader workers
    show up in the main process) and reported once per reason as a warning. A training run never dies on one
    bad JPEG out of a million.
    """

    def __init__(
        self,
        urls_or_glob: str | os.PathLike | Sequence[str],
        transform: Callable[[Image.Image], Any] | None = None,
        shuffle_buffer: int = 0,
        resampled: bool = False,
        seed: int | None = None,
        samples_per_epoch: int | None = None,
    ):
        super().__init__()
        self.urls = expand_urls(urls_or_glob)
        if not self.urls:
            raise FileNotFoundError(f"no shards found for {urls_or_glob!r}")
        self.transform = transform or default_transform
        self.shuffle_buffer = int(shuffle_buffer)
        self.resampled = resampled
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        self.epoch = 0
        # Shared-memory counters, so skips inside DataLoader worker processes are seen by the main process.
        self._skipped = {reason: SharedInt() for reason in SKIP_REASONS}
        self._warned: set[str] = set()

    @property
    def skipped(self) -> dict[str, int]:
        """How many samples were skipped so far, by reason (only reasons that occurred)."""
        return {reason: n.value for reason, n in self._skipped.items() if n.value}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- fault handling -----------------------------------------------------------------------------

    def _skip(self, exn: BaseException) -> bool:
        """webdataset handler: count the fault, warn once per kind, and tell the pipeline to go on."""
        reason = exn.reason if isinstance(exn, BadSample) else "unreadable shard"
        self._skipped[reason].add()
        if reason not in self._warned:  # once per reason and process; the counts carry the rest
            self._warned.add(reason)
            warnings.warn(f"ShardDataset: skipping a bad sample ({type(exn).__name__}: {exn}); "
                          f"further '{reason}' are only counted in .skipped", RuntimeWarning, stacklevel=2)
        return True  # True = continue with the next sample

    # -- pipeline -------------------------------------------------------------------------------------

    def _decode(self, sample: dict) -> tuple[Any, str]:
        key = sample.get("__key__", "?")
        image_ext = next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)
        if image_ext is None:
            raise BadSample("missing image", key)
        if "txt" not in sample:
            raise BadSample("missing caption", key)
        caption = sample["txt"].decode("utf-8", errors="replace").strip()
        if not caption:
            raise BadSample("empty caption", key)
        # load_image decodes any colour mode to RGB (CMYK, grey, alpha on white) and returns None for a
        # file that will not decode. draft_size lets the JPEG decoder downscale while decoding, when the
        # transform says how small it will make the image anyway.
        image = load_image(sample[image_ext], draft_size=getattr(self.transform, "draft_size", None))
        if image is None:
            raise BadSample("undecodable image", key)
        return self.transform(image), caption

    def _pipeline(self) -> wds.DataPipeline:
        rank, world_size, worker, num_workers = wds.utils.pytorch_worker_info()
        base = self.seed
        stages: list = []
        if self.resampled:
            # Every rank and worker draws its own stream of shards; seeding by (seed, epoch, rank, worker)
            # keeps those streams different from each other yet reproducible.
            seed = None if base is None else _mix_seed(base, self.epoch, rank, worker)
            stages.append(wds.ResampledShards(self.urls, seed=seed or 0, deterministic=seed is not None))
        else:
            stages.append(wds.SimpleShardList(self.urls))
            if self.shuffle_buffer > 0:
                # The shard order must be the SAME in every process before it is dealt out, or the
                # split would not be a partition: so this seed depends on the epoch only.
                shard_seed = _mix_seed(base, self.epoch) if base is not None else _mix_seed(time.time_ns())
                if base is None and world_size > 1:
                    raise ValueError("pass a seed when shuffling shards across DDP ranks")
                stages.append(wds.shuffle(len(self.urls), initial=len(self.urls), seed=shard_seed))
            stages += [wds.split_by_node, wds.split_by_worker]
        stages.append(wds.tarfile_to_samples(handler=self._skip))
        if self.shuffle_buffer > 0:
            sample_seed = None if base is None else _mix_seed(base, self.epoch, rank, worker, 1)
            stages.append(wds.shuffle(self.shuffle_buffer, initial=min(self.shuffle_buffer, 100), seed=sample_seed))
        stages.append(wds.map(self._decode, handler=self._skip))
        return wds.DataPipeline(*stages)

    def __iter__(self) -> Iterator[tuple[Any, str]]:
        stream: Iterator = iter(self._pipeline())
        if self.resampled and self.samples_per_epoch is not None:
            rank, world_size, worker, num_workers = wds.utils.pytorch_worker_info()
            per_process = math.ceil(self.samples_per_epoch / (world_size * num_workers))
            stream = (sample for _, sample in zip(range(per_process), stream))
        yield from stream
