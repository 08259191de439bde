"""The `python -m miniclip data ...` commands: `shards`, `web-subset` and `download`.

`add_data_commands` registers them on the CLI's argparse subparsers; each sets `func`, which the
CLI calls with the parsed arguments. With `--json` the last line of stdout is one JSON object.

The dataset adapters below (`_shapes_samples`, `_flickr8k_samples`, `_imagefolder_samples`) are the
only places that know the other loaders' APIs: each yields `(image, caption, metadata)` for
`write_shards`.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Iterator

from PIL import Image

from miniclip.cli.args import directory, non_negative_int, positive_int
from miniclip.data import flickr8k
from miniclip.data.download import DOWNLOAD_CHOICES, download_dataset
from miniclip.data.folders import ImageFolderDataset
from miniclip.data.shapes import ShapesConfig, ShapesWorld
from miniclip.data.shards import write_shards
from miniclip.data.transforms import load_image
from miniclip.data.web_subset import build_web_subset
from miniclip.errors import UsageError

# --------------------------------------------------------------------------------------------------
# Adapters: our datasets as (image, caption, metadata) streams
# --------------------------------------------------------------------------------------------------


def _shard_image(data: bytes, image_size: int | None):
    """What to store for an image file: its own bytes when possible, else a decoded (and resized) image.

    JPEG and PNG bytes are stored unchanged when no size is asked for: re-encoding would only lose
    quality. Other formats (BMP, GIF, ...) are decoded and stored as JPEG. With `image_size` the shorter
    side is scaled down to it, keeping the aspect ratio: the same policy as the web tier, so that all
    shards look alike. Returns `None` for a file that does not decode (load_image counts it).
    """
    if not image_size and data.startswith((b"\xff\xd8\xff", b"\x89PNG")):
        return data
    image = load_image(data, draft_size=image_size)
    if image is None or not image_size:
        return image
    scale = image_size / min(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    return image


def _shapes_samples(count: int, image_size: int, seed: int = 0, batch_size: int = 256) -> Iterator[tuple]:
    """Shapes samples `0..count-1` of the training split, rendered a batch at a time."""
    world = ShapesWorld(ShapesConfig(image_size=image_size, seed=seed))
    for lo in range(0, count, batch_size):
        batch = world.render(range(lo, min(lo + batch_size, count)), "train")
        for i, (image, caption) in enumerate(zip(batch.images, batch.captions)):
            meta = batch.meta[i] if batch.meta else {}
            yield image, caption, {"source": "shapes", "index": lo + i, "seed": seed, "shapes": meta}


def _flickr8k_samples(split: str, image_size: int | None) -> Iterator[tuple]:
    """One pair per (image, caption) line of a Flickr8k split. Adapter over `miniclip.data.flickr8k`."""
    dataset = flickr8k.Flickr8k(split=split)
    for image_name, caption, data in dataset.iter_raw():
        image = _shard_image(data, image_size)
        if image is not None:
            yield image, caption, {"source": "flickr8k", "split": split, "image": image_name}


def _imagefolder_samples(path: str, image_size: int | None) -> Iterator[tuple]:
    """`<root>/<class>/<image>` as pairs captioned "a photo of a {class}." (the paper's default prompt)."""
    dataset = ImageFolderDataset(path)
    for name, label in zip(dataset.files, dataset.targets):
        image = _shard_image(dataset.tree.read_bytes(name), image_size)
        if image is None:
            continue
        class_name = dataset.class_names[label]
        yield image, f"a photo of a {class_name}.", {"source": "imagefolder", "file": name, "label": int(label),
                                                       "class": dataset.classes[label]}


def dataset_samples(spec: str, image_size: int | None) -> Iterator[tuple]:
    """`shapes[:N]` | `flickr8k[:split]` | `imagefolder:PATH` -> `(image, caption, metadata)`."""
    kind, _, arg = spec.partition(":")
    if kind == "shapes":
        return _shapes_samples(int(arg) if arg else 10_000, image_size or 64)
    if kind == "flickr8k":
        return _flickr8k_samples(arg or "train", image_size)
    if kind == "imagefolder":
        if not arg:
            raise UsageError("imagefolder needs a path (imagefolder:PATH)")
        return _imagefolder_samples(arg, image_size)
    raise UsageError(f"unknown dataset {spec!r} (use shapes[:N], flickr8k[:split] or imagefolder:PATH)")


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def _emit(result: dict, as_json: bool, text: str | None = None) -> int:
    if text:
        print(text)
    if as_json:
        print(json.dumps(result, default=str))
    return 0


def cmd_shards(args: argparse.Namespace) -> int:
    samples = iter(dataset_samples(args.dataset, args.image_size))
    first = next(samples, None)  # opens the dataset, so a bad spec fails before any shard file exists
    if first is None:
        raise UsageError(f"{args.dataset} holds no samples (nothing to write)")
    result = write_shards(itertools.chain([first], samples), args.out, shard_size=args.shard_size, prefix=args.prefix)
    result["dataset"] = args.dataset
    paths = result.pop("paths")
    result["out"] = str(args.out)
    return _emit(result, args.json, f"wrote {result['samples']:,} samples into {len(paths)} shards in {args.out}")


def cmd_web_subset(args: argparse.Namespace) -> int:
    summary = build_web_subset(
        urls=args.urls, out_dir=args.out, num_samples=args.num_samples, image_size=args.image_size,
        processes=args.processes, threads=args.threads, resume=args.resume, sample_seed=args.sample_seed,
        shard_size=args.shard_size, timeout=args.timeout, retries=args.retries, resize_mode=args.resize_mode,
    )
    return _emit(summary, args.json)


def cmd_download(args: argparse.Namespace) -> int:
    result = download_dataset(args.dataset, dest=args.dest, base_url=args.url, progress=not args.json,
                              keep_archives=not args.delete_archives)
    return _emit(result, args.json, f"{args.dataset} is ready in {result['path']}")


def add_data_commands(subparsers) -> argparse.ArgumentParser:
    """Register `data shards|web-subset|download` on the CLI's top-level `subparsers`."""
    data = subparsers.add_parser("data", help="download datasets, write shards, build the web subset")
    commands = data.add_subparsers(dest="data_command", required=True)

    p = commands.add_parser("shards", help="write one of our datasets as webdataset tar shards")
    p.add_argument("--dataset", required=True, help="shapes[:N] | flickr8k[:split] | imagefolder:PATH")
    p.add_argument("--out", required=True, type=directory)
    p.add_argument("--shard-size", type=positive_int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="shapes: render size (default 64); others: shorter side to resize to "
                        "(default: keep the original JPEG bytes)")
    p.add_argument("--prefix", default="", help="shard file name prefix")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=cmd_shards)

    p = commands.add_parser("web-subset", help="download an N-pair subset of a URL list (CC3M/CC12M) with img2dataset")
    p.add_argument("--urls", required=True, type=Path, help="url+caption list: .parquet, .csv, .tsv[.gz]")
    p.add_argument("--num-samples", required=True, type=positive_int, help="how many pairs to select (before failures)")
    p.add_argument("--out", required=True, type=directory)
    p.add_argument("--image-size", type=positive_int, default=224, help="shorter side after resizing (default 224)")
    p.add_argument("--resize-mode", default="keep_ratio", choices=["keep_ratio", "center_crop"],
                   help="keep_ratio (default) keeps the whole image for random-crop augmentation")
    p.add_argument("--processes", type=positive_int, default=4, help="img2dataset processes (default 4)")
    p.add_argument("--threads", type=positive_int, default=64, help="download threads per process (default 64)")
    p.add_argument("--shard-size", type=positive_int, default=10_000, help="samples per shard (default 10000)")
    p.add_argument("--sample-seed", type=non_negative_int, default=None,
                   help="select a seeded random sample instead of the first N valid rows")
    p.add_argument("--timeout", type=positive_int, default=10, help="seconds per image request (default 10)")
    p.add_argument("--retries", type=non_negative_int, default=1, help="retries per failed image (default 1)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build in --out")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=cmd_web_subset)

    p = commands.add_parser("download", help="download Flickr8k, CIFAR-10 or CIFAR-100 (test) into the data root; "
                                             "for intel-scenes (behind a Kaggle login), say where to get it")
    p.add_argument("dataset", choices=DOWNLOAD_CHOICES)
    p.add_argument("--dest", type=directory, default=None, help="data root to fill (default: $MINICLIP_DATA)")
    p.add_argument("--url", default=None,
                   help="base URL of a mirror holding the same files (also $MINICLIP_DOWNLOAD_BASE_URL)")
    p.add_argument("--delete-archives", action="store_true", help="remove the archives after unpacking")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=cmd_download)
    return data
