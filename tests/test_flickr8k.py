"""Flickr8k: the shared real copy (exact counts, captions per epoch, decoding) and tiny fixtures for the
original and Kaggle layouts, from folders and zips."""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from miniclip.bench.data_path import benchmark_flickr8k
from miniclip.data.flickr8k import FETCH_COMMAND, Flickr8k, derived_split
from miniclip.data.paths import MissingDataError, data_root
from miniclip.data.transforms import OPENAI_MEAN, OPENAI_STD, PairCollator, eval_transform, train_transform

# --- the shared real copy ------------------------------------------------------------------------------

REAL = data_root() / "flickr8k.zip"
CI_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ci.yaml"
needs_real = pytest.mark.skipif(
    not REAL.exists(), reason=f"real Flickr8k zip not at {REAL} (set MINICLIP_DATA to the shared data folder)"
)

# What the shared copy holds (measured, and as its README says): split -> (present images, listed, absent).
EXPECTED = {"train": (6000, 6074, 74), "dev": (1000, 1013, 13), "test": (1000, 1013, 13), "all": (8091, 8195, 104)}


@pytest.fixture(scope="module")
def real():
    """Each split built once, with the warnings its construction raised."""
    built = {}
    for split in EXPECTED:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = Flickr8k(REAL, split, train_transform(64) if split == "train" else eval_transform(64))
        built[split] = (ds, [str(w.message) for w in caught])
    return built


@pytest.mark.data
@needs_real
@pytest.mark.parametrize("split", list(EXPECTED))
def test_real_counts(real, split):
    ds, caught = real[split]
    present, listed, absent = EXPECTED[split]
    assert (len(ds), ds.listed, len(ds.missing)) == (present, listed, absent)
    assert ds.layout == "original" and ds.official_split and not ds.uncaptioned
    assert all(len(c) == 5 for c in ds.captions)  # every present image has its five captions
    assert len(ds.caption_texts()) == 5 * present
    index = ds.caption_image_index()
    assert len(index) == 5 * present and index[:6] == [0, 0, 0, 0, 0, 1]
    # One warning per construction, with the numbers in it.
    assert len(caught) == 1 and f"{absent:,} of {listed:,} listed images are absent" in caught[0]


@pytest.mark.data
@needs_real
def test_real_splits_are_disjoint(real):
    ids = {s: set(real[s][0].image_ids) for s in ("train", "dev", "test")}
    assert not (ids["train"] & ids["dev"] or ids["train"] & ids["test"] or ids["dev"] & ids["test"])
    assert set().union(*ids.values()) <= set(real["all"][0].image_ids)


@pytest.mark.data
@needs_real
def test_real_caption_choice_per_epoch(real):
    ds = real["train"][0]
    n = 600
    epoch0 = [ds.caption_for(i, epoch=0) for i in range(n)]
    assert epoch0 == [ds.caption_for(i, epoch=0) for i in range(n)]  # deterministic
    assert all(c in ds.captions[i] for i, c in enumerate(epoch0))
    epoch1 = [ds.caption_for(i, epoch=1) for i in range(n)]
    changed = sum(a != b for a, b in zip(epoch0, epoch1)) / n
    assert 0.7 < changed < 0.9  # a fresh 1-in-5 draw changes the caption 80% of the time
    # Over 20 epochs one image sees most of its captions.
    assert len({ds.caption_for(7, epoch=e) for e in range(20)}) >= 4
    # set_epoch drives __getitem__; a second instance with the same seed agrees.
    ds.set_epoch(3)
    try:
        assert ds[7][1] == ds.caption_for(7, epoch=3)
        twin = _quiet(REAL, "dev", train=True)
        twin.set_epoch(3)
        dev = real["dev"][0]
        assert [twin.caption_for(i) for i in range(50)] == [dev.caption_for(i, epoch=3) for i in range(50)]
    finally:
        ds.set_epoch(0)


@pytest.mark.data
@needs_real
def test_real_items_decode(real):
    x, caption = real["train"][0][11]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and caption in real["train"][0].captions[11]
    ds = real["test"][0]
    x, caption = ds[0]
    assert x.shape == (3, 64, 64) and caption == ds.captions[0][0]  # evaluation: the first caption
    assert ds.pil_image(0).size == (160, 160)  # this copy's resolution
    assert ds.failed == 0


# --- tiny fixtures ---------------------------------------------------------------------------------------

IDS = [f"{1000 + k}_abc.jpg" for k in range(16)]


def _jpeg(k: int, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (15 * k, 100, 200 - 10 * k)).save(buf, "JPEG")
    return buf.getvalue()


def _captions(image_id: str) -> list[str]:
    return [f"picture {image_id} caption {n}, with a comma" for n in range(5)]


def _write_original(top: Path) -> Path:
    """Original layout: 16 listed images, 15 present (the last is absent), one of them corrupt."""
    (top / "Flicker8k_Dataset").mkdir(parents=True)
    (top / "Flickr8k_text").mkdir()
    for k, image_id in enumerate(IDS[:-1]):
        (top / "Flicker8k_Dataset" / image_id).write_bytes(_jpeg(k) if k != 3 else b"\xff\xd8 not a jpeg")
    lines = [f"{i}#{n}\t{c}" for i in IDS for n, c in enumerate(_captions(i))]
    (top / "Flickr8k_text" / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for name, ids in (("train", IDS[:10] + IDS[-1:]), ("dev", IDS[10:13]), ("test", IDS[13:15])):
        (top / "Flickr8k_text" / f"Flickr_8k.{name}Images.txt").write_text("\n".join(ids) + "\n")
    return top


def _write_kaggle(top: Path) -> Path:
    (top / "Images").mkdir(parents=True)
    for k, image_id in enumerate(IDS):
        (top / "Images" / image_id).write_bytes(_jpeg(k))
    with open(top / "captions.txt", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows([i, c] for i in IDS for c in _captions(i))
    return top


def _zip(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder.parent).as_posix())  # a top-level folder inside the zip
    return zip_path


def _quiet(*args, **kwargs) -> Flickr8k:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Flickr8k(*args, **kwargs)


def test_original_layout_folder_and_zip_agree(tmp_path):
    folder = _write_original(tmp_path / "Flickr8k")
    zipped = _zip(folder, tmp_path / "flickr8k.zip")
    with pytest.warns(UserWarning, match="1 of 11 listed images are absent"):
        from_folder = Flickr8k(folder, "train")
    from_zip = _quiet(zipped, "train")
    for ds in (from_folder, from_zip):
        assert ds.layout == "original" and ds.official_split
        assert ds.image_ids == IDS[:10] and ds.missing == [IDS[-1]] and ds.listed == 11
        assert ds.captions[0] == _captions(IDS[0])
    assert len(_quiet(zipped, "val")) == 3 and len(_quiet(zipped, "test")) == 2
    raw = list(from_zip.iter_raw())  # what shards store: one row per caption, the file's own bytes
    first_file = (folder / "Flicker8k_Dataset" / IDS[0]).read_bytes()
    assert len(raw) == 50 and raw[0] == (IDS[0], _captions(IDS[0])[0], first_file)
    everything = _quiet(zipped, "all")
    assert (everything.listed, len(everything), everything.missing) == (16, 15, [IDS[-1]])


def test_found_under_data_root(tmp_path, monkeypatch):
    _zip(_write_original(tmp_path / "src" / "Flickr8k"), tmp_path / "flickr8k.zip")
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path))
    assert _quiet(split="test").source == tmp_path / "flickr8k.zip"


def test_undecodable_image_is_none_counted_and_dropped(tmp_path):
    ds = _quiet(_write_original(tmp_path / "f8k"), "train", eval_transform(16))
    collate = PairCollator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ds[3] is None
        images, captions = collate([ds[i] for i in range(5)])
    assert images.shape == (4, 3, 16, 16) and len(captions) == 4
    assert ds.failed == 2 and collate.dropped.value == 1


def test_kaggle_layout_and_derived_split(tmp_path):
    folder = _write_kaggle(tmp_path / "archive")
    zipped = _zip(folder, tmp_path / "kaggle.zip")
    splits = {s: _quiet(zipped, s) for s in ("train", "dev", "test")}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [12, 2, 2]  # 6:1:1 of 16
    assert not splits["train"].official_split and splits["train"].layout == "kaggle"
    assert set().union(*(d.image_ids for d in splits.values())) == set(IDS)
    assert splits["dev"].captions[0] == _captions(splits["dev"].image_ids[0])  # the csv's quoted commas
    assert _quiet(folder, "train").image_ids == splits["train"].image_ids  # folder and zip agree
    assert _quiet(folder, "train", split_seed=1).image_ids != splits["train"].image_ids
    x, caption = _quiet(folder, "train", train_transform(16))[0]
    assert x.shape == (3, 16, 16) and caption in _captions(splits["train"].image_ids[0])


def test_derived_split_standard_sizes_and_stability():
    ids = [f"{k:05d}.jpg" for k in range(8091)]
    splits = derived_split(ids)
    assert {s: len(v) for s, v in splits.items()} == {"train": 6000, "dev": 1000, "test": 1000}
    assert derived_split(list(reversed(ids))) == splits  # depends on the ids, not their order
    assert len(set(splits["train"]) | set(splits["dev"]) | set(splits["test"])) == 8000


def test_missing_data_errors_name_the_fetch_command(tmp_path, monkeypatch):
    with pytest.raises(MissingDataError, match=FETCH_COMMAND):
        Flickr8k(tmp_path / "nowhere")
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match=FETCH_COMMAND):
        Flickr8k()
    (tmp_path / "flickr8k").mkdir()  # a folder with no caption file in it
    with pytest.raises(MissingDataError, match="Flickr8k.token.txt or captions.txt"):
        Flickr8k()
    with pytest.raises(ValueError, match="unknown Flickr8k split"):
        Flickr8k(tmp_path / "flickr8k", "holdout")


def test_benchmark_returns_a_rate(tmp_path):
    result = benchmark_flickr8k(image_size=16, batch_size=4, seconds=0.05, root=_write_kaggle(tmp_path / "k"))
    assert result["samples"] >= 4 and result["samples_per_s"] > 0 and result["image_size"] == 16


def test_training_crops_use_the_configs_crop_scale_and_colour_jitter(tmp_path, monkeypatch):
    from miniclip.config import load_config
    from miniclip.data import loaders

    _zip(_write_original(tmp_path / "src" / "Flickr8k"), tmp_path / "flickr8k.zip")
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path))
    scales = []

    def spy(image_size, scale=None, color_jitter=0.0):
        scales.append((scale, color_jitter))
        return train_transform(image_size, scale, color_jitter)

    monkeypatch.setattr(loaders, "train_transform", spy)
    config = load_config(None, ["data.dataset=flickr8k", "data.crop_scale=[0.3,0.9]", "data.color_jitter=0.4",
                                "model.image_size=32", "model.patch_size=16", "optim.batch_size=4",
                                "optim.warmup_steps=0"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, captions = next(loaders.train_batches(config))
    assert scales == [((0.3, 0.9), 0.4)] and images.shape == (4, 3, 32, 32) and len(captions) == 4


def test_colour_jitter_changes_lighting_and_saturation_but_keeps_shape_and_grey():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    grey = Image.fromarray(np.full((40, 50, 3), 128, dtype=np.uint8))
    plain, jittered = train_transform(32, (1.0, 1.0)), train_transform(32, (1.0, 1.0), color_jitter=0.4)
    torch.manual_seed(0)
    a = plain(photo)
    torch.manual_seed(0)
    b = jittered(photo)
    assert a.shape == b.shape == (3, 32, 32) and not torch.allclose(a, b)
    # The jitter draws its factors from torch's generator, so a seeded item is augmented the same way every time.
    torch.manual_seed(0)
    assert torch.equal(jittered(photo), b)
    # No hue shift: a grey picture stays grey (equal channels before normalisation) whatever the factors.
    for seed in range(5):
        torch.manual_seed(seed)
        x = jittered(grey) * torch.tensor(OPENAI_STD).view(3, 1, 1) + torch.tensor(OPENAI_MEAN).view(3, 1, 1)
        assert torch.allclose(x[0], x[1], atol=1e-5) and torch.allclose(x[1], x[2], atol=1e-5)


@pytest.fixture
def kaggle_root(tmp_path, monkeypatch):
    """The tiny Kaggle-layout Flickr8k zipped under a data root that MINICLIP_DATA points at."""
    _zip(_write_kaggle(tmp_path / "src" / "Flickr8k"), tmp_path / "flickr8k.zip")
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path))
    return tmp_path


def test_train_images_trains_on_the_first_n_training_images_only(kaggle_root):
    from miniclip.config import ConfigError, load_config
    from miniclip.data import loaders

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        everything = Flickr8k(split="train")
        first = Flickr8k(split="train").keep_first(4)
        config = load_config(None, ["data.dataset=flickr8k", "data.train_images=4", "model.image_size=32",
                                    "model.patch_size=16", "optim.batch_size=4", "optim.warmup_steps=0"])
        batches = loaders.train_batches(config)
        seen = {c for _ in range(6) for c in next(batches)[1]}  # six epochs of one batch each
    assert len(everything) > 4 and first.image_ids == everything.image_ids[:4] and len(first) == 4
    assert seen <= {c for captions in first.captions for c in captions}
    assert len(seen) > 4  # a different caption of the same image in different epochs
    config.data.train_images = len(everything) + 1
    with pytest.raises(ConfigError, match=f"Flickr8k train has {len(everything)} images"):
        next(loaders.train_batches(config))


def test_the_absent_images_note_gives_the_count_training_uses(tmp_path, monkeypatch):
    from miniclip.config import load_config
    from miniclip.data.loaders import flickr8k_training_set

    _zip(_write_original(tmp_path / "src" / "Flickr8k"), tmp_path / "flickr8k.zip")  # 11 listed, 1 absent
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path))
    config = load_config(None, ["data.dataset=flickr8k", "data.train_images=4", "optim.batch_size=4"])
    with pytest.warns(UserWarning, match=r"1 of 11 listed images are absent.*Using 10 images\. Training on the "
                                         r"first 4 \(data\.train_images\)\.") as caught:
        assert len(flickr8k_training_set(config.data, seed=0)) == 4
    assert len(caught) == 1
    config.data.train_images = 0
    with pytest.warns(UserWarning, match=r"Using 10 images\.$"):
        assert len(flickr8k_training_set(config.data, seed=0)) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warn=False: no note at all (the other ranks of a DDP run)
        assert len(flickr8k_training_set(config.data, seed=0, warn=False)) == 10


@pytest.mark.parametrize("overrides, why", [
    (["data.train_images=64"], "data.train_images .* with data.dataset flickr8k"),  # Shapes has no fixed set
    (["data.dataset=flickr8k", "data.train_images=8", "optim.batch_size=16"], "at least optim.batch_size"),
    (["data.dataset=flickr8k", "data.train_images=-1"], "must be 0"),
])
def test_a_bad_train_images_is_a_one_line_config_error(overrides, why):
    from miniclip.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=why):
        load_config(None, overrides)


def _first_batch(batch_size: int, *overrides):
    """The first training batch of a tiny Flickr8k config (the absent-images note silenced)."""
    from miniclip.config import load_config
    from miniclip.data import loaders

    config = load_config(None, ["data.dataset=flickr8k", "model.image_size=32", "model.patch_size=16",
                                f"optim.batch_size={batch_size}", "optim.warmup_steps=0", *overrides])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return next(loaders.train_batches(config))


def test_captions_per_image_brings_distinct_captions_of_each_image_image_major(kaggle_root):
    from miniclip.config import ConfigError, load_config

    train = _quiet(split="train")
    one = _first_batch(4)
    images, captions = _first_batch(4, "data.captions_per_image=3")
    assert images.shape[0] == 4 and len(captions) == 12
    assert torch.equal(images, one[0])  # the same images and crops as with one caption each
    owners = [train.captions.index(next(c for c in train.captions if caption in c)) for caption in captions]
    for i in range(4):
        mine = captions[3 * i:3 * i + 3]
        assert len(set(mine)) == 3 and len(set(owners[3 * i:3 * i + 3])) == 1  # three of one image's captions
        assert mine[0] == one[1][i]  # starting from the caption the one-caption run carries
    seven = train.captions_for(0, 7, epoch=0)
    assert len(set(seven[:5])) == 5 and seven[5:] == seven[:2]  # past its five, round again in the same order
    flickr8k = ["data.dataset=flickr8k"]
    for overrides in (["data.captions_per_image=2"], [*flickr8k, "data.captions_per_image=6"],
                      [*flickr8k, "data.captions_per_image=0"]):
        with pytest.raises(ConfigError, match="data.captions_per_image"):
            load_config(None, overrides)


def test_cached_images_give_the_same_batches_and_each_photo_is_decoded_once(kaggle_root, monkeypatch):
    # 12 training images, batches of 4: three steps an epoch, four epochs. With the cache each photo is decoded in
    # the first epoch only, and every batch is bit for bit the one decoded afresh.
    from miniclip.config import load_config
    from miniclip.data import loaders

    decoded = []
    pil_image = Flickr8k.pil_image
    monkeypatch.setattr(Flickr8k, "pil_image", lambda self, i, **kw: decoded.append(i) or pil_image(self, i, **kw))

    def batches(*overrides):
        decoded.clear()
        config = load_config(None, ["data.dataset=flickr8k", "model.image_size=32", "model.patch_size=16",
                                    "optim.batch_size=4", "optim.warmup_steps=0", "data.word_dropout=0.2", *overrides])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stream = loaders.train_batches(config)
            return [next(stream) for _ in range(12)], list(decoded)

    (fresh, fresh_decodes), (cached, cached_decodes) = batches(), batches("data.cache_images=true")
    assert len(fresh_decodes) == 48 and sorted(cached_decodes) == list(range(12))
    for (a, captions_a), (b, captions_b) in zip(fresh, cached):
        assert torch.equal(a, b) and captions_a == captions_b


def test_a_speed_only_option_keeps_a_run_up_to_date_and_is_for_flickr8k_only(kaggle_root):
    from miniclip.config import SPEED_ONLY, ConfigError, load_config
    from miniclip.train.runs import train_if_changed
    from miniclip.train.trainer import Trainer

    assert "data.cache_images" in SPEED_ONLY

    def config(*overrides):
        return load_config(CI_CONFIG, ["data.dataset=flickr8k", "optim.batch_size=4", "optim.steps=2",
                                       "optim.warmup_steps=1", "train.device=cpu", "data.zeroshot=none",
                                       "data.val_size=2", "data.num_workers=0", *overrides])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = kaggle_root / "run"
        train_if_changed(config(), run, progress=False)
        assert train_if_changed(config("data.cache_images=true"), run, progress=False)["status"] == "up to date"
        assert Trainer(config("data.cache_images=true"), run, resume=True, progress=False).step == 2  # resumable
        other = config("data.cache_images=true", "optim.lr=3e-3")
        assert train_if_changed(other, run, progress=False)["status"] != "up to date"
    with pytest.raises(ConfigError, match="data.cache_images"):
        load_config(CI_CONFIG, ["data.cache_images=true"])  # Shapes are drawn afresh each step


def test_a_training_item_seeds_the_cpu_generator_only_and_leaves_it_as_it_was(kaggle_root, monkeypatch):
    # `torch.manual_seed` would also seed (or queue a seed for) every GPU backend, taking a stack trace each time on
    # a machine without one; the item's crop and caption need the CPU generator alone, restored afterwards.
    from miniclip.data import loaders

    gpu_seeds = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: gpu_seeds.append(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = loaders.SeededPairs(Flickr8k(split="train", transform=train_transform(32)), seed=0, word_dropout=0.2)
    torch.manual_seed(1)
    gpu_seeds.clear()
    state = torch.get_rng_state()
    first, again = pairs[(0, 3)], pairs[(0, 3)]
    assert torch.equal(torch.get_rng_state(), state) and not gpu_seeds
    assert torch.equal(first[0], again[0]) and first[1] == again[1]
    assert len({pairs[(epoch, 3)][1] for epoch in range(4)}) > 1  # other epochs, other captions and dropped words


def test_the_training_feed_bench_times_each_size_three_ways(kaggle_root, monkeypatch):
    # `bench data`'s whole-run measurement on the tiny set (12 training images, batches of 4: three steps an epoch):
    # each size of a low-resolution run, fed with ready batches, read photos and cached photos. The ready trainer
    # makes four batches and no more; the cached one decodes each photo once.
    from miniclip.bench.data_path import training_feed

    decoded = []
    pil_image = Flickr8k.pil_image
    monkeypatch.setattr(Flickr8k, "pil_image", lambda self, i, **kw: decoded.append(i) or pil_image(self, i, **kw))
    overrides = ("data.dataset=flickr8k", "optim.batch_size=4", "train.device=cpu", "data.num_workers=0",
                 "data.val_size=2", "data.low_res_size=16", "data.low_res_steps=2")
    feed = training_feed(CI_CONFIG, steps=2, overrides=overrides)
    assert feed["batch_size"] == 4 and feed["steps_timed"] == 2 and list(feed["sizes"]) == ["16", "32"]
    for r in feed["sizes"].values():
        rates = r["samples_per_s"]
        assert set(rates) == {"ready", "read", "read, cached"} and min(rates.values()) > 0
        assert r["read_of_ready"] == pytest.approx(rates["read"] / rates["ready"])
        assert r["cache_gain"] == pytest.approx(rates["read, cached"] / rates["read"])
    # Per size: ready 4 batches, read 7 steps, cached 12 distinct photos (plus validation's own reads elsewhere).
    assert len(decoded) == 2 * (4 * 4 + 7 * 4 + 12)


def test_several_captions_per_image_train_and_chunk_like_the_full_batch(kaggle_root):
    # A tiny Flickr8k stand-in: 8 training images with five captions each. Two captions per image reach the
    # loss image-major, the step trains, and GradCache's chunks give the full batch's gradients.
    from miniclip.config import load_config
    from miniclip.data.loaders import train_batches
    from miniclip.tokenizer import tokenize
    from miniclip.train.trainer import Trainer

    overrides = ["data.dataset=flickr8k", "data.captions_per_image=2", "optim.batch_size=4", "train.device=cpu",
                 "data.zeroshot=none", "data.val_size=2", "data.num_workers=0"]
    full = Trainer(load_config(CI_CONFIG, overrides), kaggle_root / "a", progress=False)
    chunked = Trainer(load_config(CI_CONFIG, [*overrides, "optim.grad_cache_chunks=2"]), kaggle_root / "b",
                      progress=False)
    images, captions = next(train_batches(full.config))
    assert len(images) == 4 and len(captions) == 8
    tokens = tokenize(captions)
    loss_full, loss_chunked = full.train_step(images, tokens), chunked.train_step(images, tokens)
    assert torch.isfinite(loss_full) and torch.allclose(loss_full, loss_chunked, atol=1e-6)
    for (name, a), b in zip(full.model.named_parameters(), chunked.model.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-5, msg=name)


def test_word_dropout_keeps_words_in_order_at_least_one_and_is_seeded():
    from miniclip.data.transforms import drop_words

    caption = "a black dog runs along the sandy beach near the sea"
    words = caption.split()
    torch.manual_seed(0)
    dropped = [drop_words(caption, 0.3) for _ in range(400)]
    for d in dropped:  # an ordered sub-sequence of the caption's words, never empty
        it = iter(words)
        assert d and all(w in it for w in d.split())
    kept = sum(len(d.split()) for d in dropped) / (400 * len(words))
    assert 0.64 < kept < 0.76  # about 1 - p of the words stay
    assert drop_words(caption, 0.0) == caption and drop_words("", 0.5) == ""
    assert all(len(drop_words("one two", 0.99).split()) == 1 for _ in range(50))  # at least one word
    torch.manual_seed(5)
    first = drop_words(caption, 0.5)
    torch.manual_seed(5)
    assert drop_words(caption, 0.5) == first


def test_word_dropout_reaches_the_training_captions_and_a_bad_value_is_a_config_error(kaggle_root):
    from miniclip.config import ConfigError, load_config

    plain = _first_batch(8)
    dropped, again = _first_batch(8, "data.word_dropout=0.5"), _first_batch(8, "data.word_dropout=0.5")
    assert torch.equal(plain[0], dropped[0]) and dropped[1] == again[1]  # same images and crops; seeded words
    assert sum(len(c.split()) for c in dropped[1]) < sum(len(c.split()) for c in plain[1])
    for overrides in (["data.word_dropout=0.3"], ["data.dataset=flickr8k", "data.word_dropout=1.0"]):
        with pytest.raises(ConfigError, match="data.word_dropout"):
            load_config(None, overrides)


def test_low_res_steps_bring_smaller_images_first_and_switch_as_a_resume_would(kaggle_root):
    # RECLIP's schedule: the first `low_res_steps` batches at `low_res_size`, then the model's size. The pairs are
    # those of the run without it, and every step's batch is what a run resumed at that step gets.
    from itertools import islice

    from miniclip.config import ConfigError, load_config
    from miniclip.data import loaders

    base = ["data.dataset=flickr8k", "model.image_size=32", "model.patch_size=16", "optim.batch_size=4",
            "optim.warmup_steps=0", "optim.steps=10"]
    low_res = [*base, "data.low_res_size=16", "data.low_res_steps=2"]
    config, plain = load_config(None, low_res), load_config(None, base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run, plain_run = list(islice(loaders.train_batches(config), 4)), list(islice(loaders.train_batches(plain), 4))
        resumed = [next(loaders.train_batches(config, step)) for step in range(4)]
    assert [images.shape[-1] for images, _ in run] == [16, 16, 32, 32]
    assert [captions for _, captions in run] == [captions for _, captions in plain_run]
    for step in range(4):
        assert torch.equal(resumed[step][0], run[step][0]) and resumed[step][1] == run[step][1]
    assert all(torch.equal(run[s][0], plain_run[s][0]) for s in (2, 3))  # past the switch: the plain run's crops
    for overrides, key in ((["data.low_res_size=32", "data.low_res_steps=2"], "low_res_size"),
                           (["data.low_res_size=8", "data.low_res_steps=2"], "low_res_size"),
                           (["data.low_res_size=16"], "low_res_steps"),
                           (["data.low_res_size=16", "data.low_res_steps=10"], "low_res_steps")):
        with pytest.raises(ConfigError, match=f"data.{key}"):
            load_config(None, [*base, *overrides])
    with pytest.raises(ConfigError, match="data.low_res_steps"):
        load_config(CI_CONFIG, ["data.low_res_size=16", "data.low_res_steps=2"])  # Shapes draws at one size


def test_a_low_res_run_trains_at_both_sizes_and_validates_at_the_model_size(kaggle_root):
    from miniclip.config import load_config
    from miniclip.train.trainer import Trainer

    config = load_config(CI_CONFIG, ["data.dataset=flickr8k", "optim.batch_size=4", "optim.steps=4",
                                     "optim.warmup_steps=1", "train.device=cpu", "data.zeroshot=none",
                                     "data.val_size=2", "data.num_workers=1", "data.low_res_size=16",
                                     "data.low_res_steps=2", "train.val_every=1", "train.log_every=1"])
    trainer = Trainer(config, kaggle_root / "run", progress=False)
    sizes, train_step = [], trainer.train_step
    trainer.train_step = lambda images, tokens: sizes.append(images.shape[-1]) or train_step(images, tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = trainer.run()
    assert result["status"] == "completed" and sizes == [16, 16, 32, 32]
    records = [json.loads(line) for line in (kaggle_root / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("kind") == "val"] == [1, 2, 3, 4]
    assert all(math.isfinite(r["val_loss"]) for r in records if r.get("kind") == "val")
