"""From a config's `data` section to training batches that are a pure function of the step.

Batch `s` of a run is the same on every run with the same config, and the same whether the run was
interrupted and resumed or not. That is what makes resume exact: the trainer asks for the batches from
step `s` onwards, and gets exactly what the uninterrupted run saw.

- **Shapes**: global step `s` holds samples `s*B … (s+1)*B - 1` of the world's training stream.
- **Flickr8k**: each epoch is a seeded permutation of the training images; step `s` is slice
  `s mod steps_per_epoch` of epoch `s // steps_per_epoch`'s permutation. The caption an image carries and
  its random crop and flip are seeded by (seed, epoch, index), not by whichever worker decodes it.
- **Shards** (web data): a resampled webdataset stream seeded by (seed, start step). Restarting it at a
  step gives a valid stream but not the same samples; the docs say so.

With `W` data-parallel ranks each rank takes its contiguous `B/W` slice of the global batch, in rank order,
so the gathered batch is the single-process batch.
"""

from __future__ import annotations

import os
import warnings
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from miniclip.config import ConfigError
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.paths import data_root
from miniclip.data.seeds import stable_seed
from miniclip.data.shapes import ShapesConfig, ShapesDataset, ShapesWorld
from miniclip.data.shards import ShardDataset
from miniclip.data.transforms import TwoViews, drop_words, eval_transform, train_transform

Batch = tuple[torch.Tensor, list[str]]


# ----------------------------------------------------------------------------- Shapes


def shapes_config(shapes_options: dict, image_size: int, seed: int):
    """The ShapesConfig of a run: its `data.shapes` options, at the model's resolution and the run's seed."""
    options = dict(shapes_options)
    options.setdefault("image_size", image_size)
    options.setdefault("seed", seed)
    try:
        return ShapesConfig(**options)
    except (TypeError, ValueError) as e:  # a config's mistake: one line, not a traceback
        raise ConfigError(f"data.shapes: {e}") from e


def shapes_world_of_run(run_config: dict, image_size: int | None = None):
    """The Shapes world a run trained in (its held-out pairs, languages, caption grammar and seed), from the
    run's config as saved beside its checkpoint: evaluation must use the pairs *that* run held out."""
    image_size = image_size or run_config["model"]["image_size"]
    return ShapesWorld(shapes_config(run_config.get("data", {}).get("shapes", {}), image_size,
                                     run_config.get("train", {}).get("seed", 0)))


def shapes_batches(data_cfg, image_size: int, seed: int, batch_size: int, start_step: int, rank: int,
                   world_size: int, pin_memory: bool = False, steps: int | None = None) -> Iterator[Batch]:
    local = batch_size // world_size
    dataset = ShapesDataset(shapes_config(data_cfg.shapes, image_size, seed), split="train", batch_size=local,
                            start=start_step * batch_size, rank=rank, world_size=world_size,
                            total_samples=None if steps is None else steps * batch_size)
    loader = DataLoader(dataset, batch_size=None, num_workers=data_cfg.num_workers,
                        persistent_workers=data_cfg.num_workers > 0, pin_memory=pin_memory,
                        generator=_loader_generator(seed, start_step, rank))
    yield from loader


def _loader_generator(seed: int, start_step: int, rank: int) -> torch.Generator:
    """The generator a DataLoader draws its workers' base seed from. Without one it draws from the global
    RNG, so a resumed run (which builds a new loader) would leave the global RNG one draw away from an
    uninterrupted run's, and its state would no longer be bit-identical. The rank is part of the seed so that
    DDP ranks' workers draw different random crops, not the same ones."""
    return torch.Generator().manual_seed(stable_seed(seed, start_step, rank))


# ----------------------------------------------------------------------------- Flickr8k


class StepBatchSampler(Sampler):
    """Yields, from `start_step` on, this rank's list of (epoch, index) keys for every step, forever."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, rank: int, world_size: int):
        if n < batch_size:
            raise ValueError(f"a batch of {batch_size} needs at least that many training items, got {n}")
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start_step
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = n // batch_size  # the last partial batch of an epoch is dropped

    def __iter__(self):
        local = self.batch_size // self.world_size
        step = self.start
        while True:
            epoch, k = divmod(step, self.steps_per_epoch)
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(stable_seed(self.seed, epoch)))
            lo = k * self.batch_size + self.rank * local
            yield [(epoch, i) for i in order[lo:lo + local].tolist()]
            step += 1


class SeededPairs(Dataset):
    """Wraps Flickr8k so item (epoch, index) has its caption and augmentation fixed by (seed, epoch, index).
    With `captions_per_image` k > 1 an item carries a list of k of the image's captions instead of one; with
    `word_dropout` p > 0 each caption loses each word with probability p (`drop_words`), seeded the same way.

    An image that cannot be decoded is replaced by the next decodable one and counted in `.replaced`, so a
    batch keeps its size (a data-parallel gather needs equal batches on every rank).

    With `cache_images` each image is decoded once, in its first epoch, and kept in memory (in the process that
    reads it: a loader worker's lives as long as the worker), so later epochs only crop and flip. The pixels are
    the same either way: the transforms never change the image they are given."""

    def __init__(self, base, seed: int, captions_per_image: int = 1, word_dropout: float = 0.0,
                 cache_images: bool = False):
        self.base, self.seed, self.replaced = base, seed, 0
        self.k, self.word_dropout = captions_per_image, word_dropout
        self.decoded: dict | None = {} if cache_images else None

    def _decode(self, i: int):
        """Image `i` as a PIL image, from the cache when it holds it; `None` if it cannot be decoded."""
        if self.decoded is not None and i in self.decoded:
            return self.decoded[i]
        image = self.base.pil_image(i, draft_size=self.base.decode_size)
        if self.decoded is not None and image is not None:
            self.decoded[i] = image
        return image

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        for attempt in range(len(self.base)):
            i = (index + attempt) % len(self.base)
            image = self._decode(i)
            if image is not None:
                break
            self.replaced += 1
        else:
            raise RuntimeError("no image of the training set could be decoded")
        with torch.random.fork_rng(devices=[]):
            # The CPU generator alone: `torch.manual_seed` would also queue a seed for every GPU backend, taking
            # a stack trace each time (half of this method's time on a CPU), and move a GPU's RNG in this process.
            torch.default_generator.manual_seed(stable_seed(self.seed, epoch, i))
            image = self.base.transform(image)
            captions = [drop_words(c, self.word_dropout) for c in self.base.captions_for(i, self.k, epoch)]
        return image, (captions[0] if self.k == 1 else captions)


def _collate(batch) -> Batch:
    """Images stacked; captions flattened image-major (an item's list of captions stays together, in order)."""
    captions = [c for _, caption in batch for c in ([caption] if isinstance(caption, str) else caption)]
    return torch.stack([image for image, _ in batch]), captions


def training_transform(data_cfg, image_size: int, views: int = 1):
    """What a real photo goes through in training: `data.crop_scale` crops, flips and `data.color_jitter` with
    `data.augment`, else the evaluation transform; with `views=2`, two independent draws of it stacked
    (`TwoViews`, for the image SSL loss), of which the first is the one the contrastive loss sees."""
    transform = (train_transform(image_size, data_cfg.crop_scale, data_cfg.color_jitter) if data_cfg.augment
                 else eval_transform(image_size))
    return TwoViews(transform) if views == 2 else transform


def flickr8k_training_set(data_cfg, seed: int, transform=None, warn: bool = True) -> Flickr8k:
    """Flickr8k train as training draws from it: every image, or the first `data.train_images`. With `warn`, the
    note about absent images is given (once per run: rank 0 only), saying how many images training then uses."""
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        base = Flickr8k(split="train", transform=transform, seed=seed)
    if data_cfg.train_images > len(base):
        raise ConfigError(f"data.train_images = {data_cfg.train_images} but Flickr8k train has {len(base):,} "
                          "images (give at most that many, or 0 for all of them)")
    if data_cfg.train_images:
        base = base.keep_first(data_cfg.train_images)
    for n in notes if warn else ():  # given after the cut, so that the count is the one training uses
        kept = f" Training on the first {len(base):,} (data.train_images)." if data_cfg.train_images else ""
        warnings.warn(f"{n.message}{kept}", n.category, stacklevel=2)
    return base


def flickr8k_steps_per_epoch(data_cfg, seed: int, batch_size: int) -> int:
    """Steps a Flickr8k run takes to see every training image once (`StepBatchSampler` drops the last partial batch)."""
    return len(flickr8k_training_set(data_cfg, seed, warn=False)) // batch_size


def flickr8k_batches(data_cfg, image_size: int, seed: int, batch_size: int, start_step: int, rank: int,
                     world_size: int, pin_memory: bool = False, views: int = 1) -> Iterator[Batch]:
    base = flickr8k_training_set(data_cfg, seed, training_transform(data_cfg, image_size, views), warn=rank == 0)
    sampler = StepBatchSampler(len(base), batch_size, seed, start_step, rank, world_size)
    pairs = SeededPairs(base, seed, data_cfg.captions_per_image, data_cfg.word_dropout, data_cfg.cache_images)
    loader = DataLoader(pairs, batch_sampler=sampler, collate_fn=_collate, num_workers=data_cfg.num_workers,
                        persistent_workers=data_cfg.num_workers > 0, pin_memory=pin_memory,
                        generator=_loader_generator(seed, start_step, rank))
    yield from loader


# ----------------------------------------------------------------------------- webdataset shards


def shard_location(spec: str) -> str:
    """`shards:PATTERN`: a directory, glob or brace pattern; `~` and $VARS expand, and a relative path is
    taken under the data root ($MINICLIP_DATA), where `data web-subset --out` puts it by default."""
    pattern = os.path.expandvars(os.path.expanduser(spec.removeprefix("shards:")))
    if "://" in pattern or os.path.isabs(pattern):
        return pattern
    return str(data_root() / pattern)


def shard_batches(data_cfg, image_size: int, seed: int, batch_size: int, start_step: int, rank: int,
                  world_size: int, pin_memory: bool = False, views: int = 1) -> Iterator[Batch]:
    transform = training_transform(data_cfg, image_size, views)
    dataset = ShardDataset(shard_location(data_cfg.dataset), transform=transform,
                           shuffle_buffer=data_cfg.shuffle_buffer, resampled=True, seed=stable_seed(seed, start_step))
    loader = DataLoader(dataset, batch_size=batch_size // world_size, collate_fn=_collate,
                        num_workers=data_cfg.num_workers, drop_last=True, pin_memory=pin_memory,
                        generator=_loader_generator(seed, start_step, rank))
    yield from loader


def train_batches(config, start_step: int = 0, rank: int = 0, world_size: int = 1,
                  pin_memory: bool = False) -> Iterator[Batch]:
    """This rank's (images, captions) batches for steps start_step, start_step + 1, … of `config`. With
    `pin_memory` (for a CUDA model) the images arrive in page-locked memory, so that copying them to the GPU
    with `non_blocking=True` overlaps the step before. With the image SSL loss (`optim.views` == 2) each real
    photo comes as two views, `[B, 2, 3, H, W]`. With `data.low_res_steps` the images of the steps before it are
    `data.low_res_size` pixels square, the later ones `model.image_size`."""
    data, optim = config.data, config.optim

    def batches_from(step: int, image_size: int) -> Iterator[Batch]:
        args = (data, image_size, config.train.seed, optim.batch_size, step, rank, world_size, pin_memory)
        if data.dataset == "shapes":  # its curriculum may be a fraction of the run
            return shapes_batches(*args, steps=optim.steps)
        return {"flickr8k": flickr8k_batches}.get(data.dataset, shard_batches)(*args, views=optim.views)

    if start_step >= data.low_res_steps:
        return batches_from(start_step, config.model.image_size)
    return _low_res_first(batches_from(start_step, data.low_res_size), data.low_res_steps - start_step,
                          lambda: batches_from(data.low_res_steps, config.model.image_size))


def _low_res_first(low_res: Iterator[Batch], n: int, full_res) -> Iterator[Batch]:
    """`n` batches of the low-resolution stream, then the full-resolution one from where it stops. The switch is a
    resume at step `low_res_steps`: the batches are those a run resumed there would get, and the first stream's
    loader (and its worker processes) is closed first."""
    try:
        for _ in range(n):
            yield next(low_res)
    finally:
        low_res.close()
    yield from full_res()
