"""The data path: how fast each source makes training samples (Shapes rendered on the device, Flickr8k read,
decoded, augmented and collated, webdataset shards read), and whether a decoded uint8 cache of Flickr8k
would pay, beside how many samples per second a cpu-profile training step consumes (`run_data_bench`)."""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from miniclip.bench.results import RESULTS_DIR, write_results
from miniclip.bench.step import flickr8k_captions
from miniclip.config import load_config
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.loaders import flickr8k_steps_per_epoch
from miniclip.data.paths import MissingDataError
from miniclip.data.shapes import benchmark_render
from miniclip.data.shards import ShardDataset, write_shards
from miniclip.data.transforms import PairCollator, train_transform
from miniclip.env import machine
from miniclip.tokenizer import tokenize
from miniclip.train.trainer import Trainer


def training_consumption(config_path: str | Path, steps: int = 3) -> dict:
    """Samples per second one training step of a config consumes (synthetic batch; model and optimizer
    real), i.e. how fast the data path has to be to keep that training fed."""
    config = load_config(config_path, ["data.zeroshot=none"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, tmp, progress=False)
        b, s = config.optim.batch_size, config.model.image_size
        images = torch.randn(b, 3, s, s)
        tokens = tokenize(flickr8k_captions(b)[0], config.model.context_length)
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            trainer.optimizer_step(trainer.train_step(images, tokens))
            if i:  # the first step warms up allocators and caches
                times.append(time.perf_counter() - t0)
    return {"config": str(config_path), "batch_size": b, "image_size": s,
            "samples_per_s": b / statistics.median(times)}


class _ReadyBatches(Trainer):
    """A trainer fed the same few batches over and over, all made before its first step: its steps without the data
    path, for `training_feed` to compare with a run that reads its photos."""

    def _batches(self):
        made = super()._batches()
        ready = [next(made) for _ in range(4)]
        return itertools.cycle(ready)


def timed_run_overrides(steps: int, val_size: int) -> dict:
    """What a timed run of `steps` steps changes in its config: no zero-shot set, a small validation set (at most
    64 pairs), and one validation and one checkpoint, at the end, so that the clock times training. Shared by
    `training_feed` and the recipe bench's runs of our trainer."""
    return {"optim.steps": steps, "train.val_every": steps, "train.save_every": steps, "data.zeroshot": "none",
            "data.val_size": min(64, val_size)}


def training_feed(config_path: str | Path, steps: int = 60, overrides: tuple[str, ...] = ()) -> dict:
    """Samples per second of whole training runs of a Flickr8k config at each size it trains at (a low-resolution
    start's and the model's), fed three ways: batches made before the run ("ready", the data path's cost left out),
    read as the run reads them ("read"), and read with `data.cache_images` ("read, cached", timed after the first
    epoch, the one that decodes). Unlike `benchmark_flickr8k`, the loader here shares the cores with the step,
    as it does in training: on two cores that, not the loader's own rate, is what it costs."""
    base = load_config(config_path, list(overrides))
    first_epoch = flickr8k_steps_per_epoch(base.data, base.train.seed, base.optim.batch_size)
    ways = (("ready", _ReadyBatches, "false", 4), ("read", Trainer, "false", 4),
            ("read, cached", Trainer, "true", first_epoch))
    result = {"config": str(config_path), "batch_size": base.optim.batch_size, "steps_timed": steps, "sizes": {}}
    for size in [s for s in (base.data.low_res_size, base.model.image_size) if s]:
        rates = {}
        for way, trainer_class, cache, warm in ways:
            total = warm + steps + 1
            timed = {**timed_run_overrides(total, base.data.val_size), "optim.warmup_steps": 1}
            config = load_config(config_path, [*overrides, f"model.image_size={size}", "data.low_res_size=0",
                                               "data.low_res_steps=0", f"data.cache_images={cache}",
                                               *(f"{key}={value}" for key, value in timed.items())])
            times: list[float] = []
            with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the note about absent images, given by every run
                trainer_class(config, tmp, progress=False).run(after_step=lambda t: times.append(time.perf_counter()))
            rates[way] = config.optim.batch_size * steps / (times[warm + steps] - times[warm])
        result["sizes"][str(size)] = {"samples_per_s": rates,
                                      "read_of_ready": rates["read"] / rates["ready"],
                                      "cached_of_ready": rates["read, cached"] / rates["ready"],
                                      "cache_gain": rates["read, cached"] / rates["read"]}
    return result


def benchmark_flickr8k(
    image_size: int = 64, batch_size: int = 128, seconds: float = 5.0, root: str | os.PathLike | None = None
) -> dict:
    """Decode + augment + collate throughput of the Flickr8k training pipeline, in one process.

    Reads the training split in a fixed shuffled order, as a DataLoader would, for about `seconds` after one
    warm-up batch. Torch runs single-threaded here, as it does in a DataLoader worker (and because the only
    multi-threaded step, stacking the batch, slows down when it competes with other work for the cores).
    A DataLoader with `num_workers=k` gets close to k times this rate on k free cores.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the missing-images warning is not news to a benchmark
        dataset = Flickr8k(root, "train", train_transform(image_size))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _time_batches(dataset, order, batch_size, seconds) | {
            "dataset": "flickr8k",
            "split": "train",
            "image_size": image_size,
            "batch_size": batch_size,
            "decode_size": dataset.decode_size,
            "failed": dataset.failed,
            "source": str(dataset.source),
        }
    finally:
        torch.set_num_threads(threads)


def _time_batches(dataset: Flickr8k, order: list[int], batch_size: int, seconds: float) -> dict:
    """Samples per second of building batches (read, decode, augment, collate) in this process."""
    collate = PairCollator()

    def batches():
        while True:  # epoch after epoch, so a long benchmark never runs dry
            for start in range(0, len(order) - batch_size + 1, batch_size):
                yield collate([dataset[i] for i in order[start : start + batch_size]])

    stream = batches()
    next(stream)  # warm-up: first zip read, allocator, lazy imports
    samples, begin, cpu_begin = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - begin < seconds:
        images, _ = next(stream)
        samples += len(images)
    elapsed, cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    # Wall-clock rate is what training sees; the rate per CPU-second is what the code costs, and stays
    # comparable when other processes compete for the cores.
    return {
        "samples": samples,
        "seconds": round(elapsed, 3),
        "samples_per_s": round(samples / elapsed, 1),
        "ms_per_sample": round(1000 * elapsed / max(samples, 1), 3),
        "cpu_seconds": round(cpu, 3),
        "samples_per_cpu_s": round(samples / max(cpu, 1e-9), 1),
    }


def benchmark_shards(
    num_samples: int = 2000,
    image_size: int = 64,
    shard_size: int = 500,
    batch_size: int = 64,
    num_workers: int = 0,
    transform: Callable | None = None,
    shuffle_buffer: int = 256,
) -> dict:
    """Read throughput of the shard pipeline, in samples per second, on a temporary set of JPEG shards.

    The images are smooth random gradients at `image_size` (JPEG-compressible like photos, unlike noise).
    The timing covers tar reading, JPEG decoding, RGB conversion, the transform and batching: everything
    between the disk and the model.
    """
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, image_size, dtype=np.float32)

    def samples():
        for i in range(num_samples):
            a, b, c = rng.uniform(0, 255, size=(3, 3))
            img = np.stack([a[k] * ramp[None, :] + b[k] * ramp[:, None] * 0.5 + c[k] * 0.2 for k in range(3)], -1)
            yield np.clip(img, 0, 255).astype(np.uint8), f"a synthetic gradient number {i}"

    with tempfile.TemporaryDirectory(prefix="miniclip-bench-shards-") as tmp:
        t0 = time.perf_counter()
        written = write_shards(samples(), tmp, shard_size=shard_size)
        write_s = time.perf_counter() - t0
        dataset = ShardDataset(tmp, transform=transform, shuffle_buffer=shuffle_buffer, seed=0)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        t0 = time.perf_counter()
        seen = sum(len(captions) for _, captions in loader)
        read_s = time.perf_counter() - t0
    return {
        "samples": seen,
        "image_size": image_size,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "shards": written["shards"],
        "write_samples_per_s": written["samples"] / write_s,
        "read_samples_per_s": seen / read_s,
        "read_s": read_s,
    }


def benchmark_decoded_cache(image_size: int = 64, num_images: int = 512, root=None) -> dict:
    """Would a uint8 cache of decoded Flickr8k images pay? The same training augmentation (random resized
    crop, flip, normalise) timed from the JPEG bytes (what the dataset does every epoch) and from the decoded
    images held in memory as uint8 arrays (what a cache, filled once, would do), on the same images, in one
    thread. The cache's memory is reported too. `data.cache_images` keeps such a cache (of PIL images)."""
    transform = train_transform(image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = Flickr8k(root, "train", transform)
    indices = list(range(min(num_images, len(dataset))))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        cache = [np.asarray(dataset.pil_image(i, draft_size=dataset.decode_size)) for i in indices]  # fill once
        fill_s = time.perf_counter() - t0
        timings = {}
        for name, sample in (("jpeg", lambda i: dataset[i][0]),
                             ("uint8_cache", lambda i: transform(Image.fromarray(cache[i])))):
            sample(0)
            t0 = time.perf_counter()
            for i in indices:
                sample(i)
            timings[name] = len(indices) / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    per_image = sum(a.nbytes for a in cache) / len(cache)
    return {"images": len(indices), "image_size": image_size, "decode_size": dataset.decode_size,
            "jpeg_samples_per_s": timings["jpeg"], "cache_samples_per_s": timings["uint8_cache"],
            "gain": timings["uint8_cache"] / timings["jpeg"], "cache_fill_s": fill_s,
            "cache_mb_per_1000_images": per_image * 1000 / 2**20,
            "cache_mb_train_split": per_image * len(dataset) / 2**20}


def run_data_bench(configs=("configs/cpu-shapes.yaml", "configs/cpu-flickr8k.yaml"), out_dir: Path | None = RESULTS_DIR,
                   seconds: float = 4.0, device: str = "cpu", shard_samples: int = 2000,
                   cache_images: int = 512, render_size: int = 64, feed_steps: int = 60) -> dict:
    """Data-path throughput (Shapes rendering on `device` at `render_size`, Flickr8k decode+augment with and
    without a decoded cache, shard reading) beside what the cpu-profile training steps consume, at 64 px; and, for
    each Flickr8k config, whole training runs fed with and without reading their photos (`training_feed`, over
    `feed_steps` steps; 0 leaves it out)."""
    results = {"environment": machine(), "producers": {}, "consumers": {}, "ablations": {}, "feed": {}}
    results["producers"]["shapes_render"] = benchmark_render(batch_size=256, image_size=render_size, seconds=seconds,
                                                             device=device)
    try:
        results["producers"]["flickr8k_decode_augment"] = benchmark_flickr8k(image_size=64, seconds=seconds)
        results["ablations"]["flickr8k_uint8_cache"] = benchmark_decoded_cache(64, cache_images)
    except MissingDataError as e:
        results["producers"]["flickr8k_decode_augment"] = {"skipped": str(e)}
        results["ablations"]["flickr8k_uint8_cache"] = {"skipped": str(e)}
    results["producers"]["shard_read"] = benchmark_shards(num_samples=shard_samples, image_size=64)
    for path in configs:
        if Path(path).exists():
            results["consumers"][Path(path).stem] = training_consumption(path)
            if feed_steps and load_config(path).data.dataset == "flickr8k":
                try:
                    results["feed"][Path(path).stem] = training_feed(path, feed_steps)
                except MissingDataError as e:
                    results["feed"][Path(path).stem] = {"skipped": str(e)}
    rate = {"shapes_render": "samples_per_s", "flickr8k_decode_augment": "samples_per_s",
            "shard_read": "read_samples_per_s"}
    feeds = {"shapes_render": "cpu-shapes", "flickr8k_decode_augment": "cpu-flickr8k", "shard_read": "cpu-flickr8k"}
    print(f"{'data path':<26}{'samples/s':>12}   {'training consumes':>18}   ratio")
    for name, producer in results["producers"].items():
        produced = producer.get(rate[name])
        consumer = results["consumers"].get(feeds[name], {}).get("samples_per_s")
        producer["feeds"] = feeds[name]
        if produced is None:
            print(f"{name:<26}{'skipped':>12}   ({producer.get('skipped', '')[:60]})")
            continue
        ratio = produced / consumer if consumer else None
        producer["ratio_to_training"] = ratio
        print(f"{name:<26}{produced:12.0f}   {consumer or float('nan'):18.1f}   "
              f"{'x%.1f' % ratio if ratio else '-'}  ({feeds[name]})")
    cache = results["ablations"]["flickr8k_uint8_cache"]
    if "gain" in cache:
        print(f"Flickr8k augment from a uint8 cache: {cache['cache_samples_per_s']:.0f} samples/s against "
              f"{cache['jpeg_samples_per_s']:.0f} from JPEG (x{cache['gain']:.2f}; the train split would take "
              f"{cache['cache_mb_train_split']:.0f} MiB)")
    for name, feed in results["feed"].items():
        for size, r in feed.get("sizes", {}).items():
            rates = r["samples_per_s"]
            print(f"{name} training at {size} px: {rates['ready']:.0f} samples/s with its batches ready, "
                  f"{rates['read']:.0f} reading its photos ({r['read_of_ready']:.0%}), {rates['read, cached']:.0f} "
                  f"with data.cache_images ({r['cached_of_ready']:.0%})")
    if out_dir is not None:
        results["path"] = str(write_results(results, out_dir, f"data-{device}.json"))
    return results
