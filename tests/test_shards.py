"""Webdataset shards: writing, reading back exactly, skipping bad samples, resampling, splitting."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from miniclip.bench.data_path import benchmark_shards
from miniclip.data.shards import ShardDataset, encode_image, sample_key, write_shards


def _jpeg(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size + seed % 5, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _raw_pairs(tar_path) -> dict[str, dict[str, bytes]]:
    """Members of a tar grouped by key, read with the standard library (independent of webdataset)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as tf:
        for member in tf:
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tf.extractfile(member).read()
    return samples


def test_keys_match_img2dataset():
    assert sample_key(0, 0, 10_000) == "000000000"  # img2dataset's default: 5 shard + 4 position digits
    assert sample_key(2, 7, 10_000) == "000020007"
    assert sample_key(3, 7, 1000) == "00003007"


def test_round_trip_bytes_and_captions(tmp_path):
    jpegs = [_jpeg(i) for i in range(7)]
    captions = [f"caption {i} — ünïcode" for i in range(7)]
    result = write_shards(((j, c, {"i": i}) for i, (j, c) in enumerate(zip(jpegs, captions))), tmp_path, shard_size=3)
    assert result["samples"] == 7 and result["shards"] == 3

    # On disk: img2dataset's layout, the JPEG bytes untouched.
    raw = {}
    for path in result["paths"]:
        raw.update(_raw_pairs(path))
    assert sorted(raw) == [sample_key(i // 3, i % 3, 3) for i in range(7)]
    for i, key in enumerate(sorted(raw)):
        assert set(raw[key]) == {"jpg", "txt", "json"}
        assert raw[key]["jpg"] == jpegs[i]
        assert raw[key]["txt"].decode() == captions[i]
        meta = json.loads(raw[key]["json"])
        assert meta["key"] == key and meta["i"] == i and meta["width"] == 24 + i % 5

    # Through the reader: same captions, same order (no shuffling), pixels as PIL decodes them.
    pairs = list(ShardDataset(tmp_path))
    assert [c for _, c in pairs] == captions
    expected = np.array(Image.open(io.BytesIO(jpegs[4])).convert("RGB"))
    assert torch.equal(pairs[4][0], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)


def test_image_inputs_are_normalised():
    """PIL (any mode), uint8 and float tensors all become RGB JPEG; a float->uint8 trip is exact."""
    u8 = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    as_float = u8.float() / 255
    for image in (u8, as_float, Image.new("RGBA", (8, 8)), Image.new("CMYK", (8, 8)), torch.zeros(1, 8, 8)):
        data, ext = encode_image(image)
        assert ext == "jpg" and Image.open(io.BytesIO(data)).mode == "RGB"
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")
    assert encode_image(png.getvalue()) == (png.getvalue(), "png")


def test_corrupt_and_incomplete_samples_are_skipped_and_counted(tmp_path):
    write_shards(((_jpeg(i), f"good {i}") for i in range(4)), tmp_path, shard_size=10)
    # Append bad samples to the same shard, as a damaged download would leave them.
    with tarfile.open(tmp_path / "00000.tar", "a") as tf:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        add("bad1.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")
        add("bad1.txt", b"undecodable")
        add("bad2.jpg", _jpeg(99))  # no caption
        add("bad3.txt", b"no image")
        add("bad4.jpg", _jpeg(98))
        add("bad4.txt", b"   ")  # empty caption
    dataset = ShardDataset(tmp_path)
    with pytest.warns(RuntimeWarning):
        captions = [c for _, c in dataset]
    assert captions == [f"good {i}" for i in range(4)]
    assert dataset.skipped == {"undecodable image": 1, "missing caption": 1, "missing image": 1, "empty caption": 1}


def test_truncated_shard_is_skipped(tmp_path):
    write_shards(((_jpeg(i), f"c{i}") for i in range(6)), tmp_path, shard_size=3)
    data = (tmp_path / "00001.tar").read_bytes()
    (tmp_path / "00001.tar").write_bytes(data[: len(data) // 2 + 100])  # cut mid-member
    dataset = ShardDataset(tmp_path)
    with pytest.warns(RuntimeWarning):
        captions = [c for _, c in dataset]
    assert captions[:3] == ["c0", "c1", "c2"] and len(captions) < 6
    assert sum(dataset.skipped.values()) >= 1


def test_resampled_reader_runs_past_one_epoch(tmp_path):
    write_shards(((_jpeg(i), f"c{i}") for i in range(6)), tmp_path, shard_size=2)
    dataset = ShardDataset(tmp_path, resampled=True, seed=0, samples_per_epoch=20)
    first = [c for _, c in dataset]
    assert len(first) == 20  # more than the 6 samples on disk: shards drawn with replacement
    assert [c for _, c in dataset] == first  # seeded: the same stream again...
    dataset.set_epoch(1)
    assert [c for _, c in dataset] != first  # ...until the epoch changes


def test_shuffle_is_a_seeded_permutation(tmp_path):
    write_shards(((_jpeg(i), f"c{i}") for i in range(12)), tmp_path, shard_size=3)
    a = [c for _, c in ShardDataset(tmp_path, shuffle_buffer=8, seed=1)]
    b = [c for _, c in ShardDataset(tmp_path, shuffle_buffer=8, seed=1)]
    assert a == b and sorted(a) == sorted(f"c{i}" for i in range(12)) and a != [f"c{i}" for i in range(12)]


def test_workers_and_ranks_partition_the_shards(tmp_path, monkeypatch):
    write_shards(((_jpeg(i), f"c{i}") for i in range(8)), tmp_path, shard_size=2)  # 4 shards
    everything = {f"c{i}" for i in range(8)}

    # DataLoader workers: each shard read by exactly one worker.
    dataset = ShardDataset(tmp_path, shuffle_buffer=4, seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    seen = [c for _, c in loader]
    assert len(seen) == 8 and set(seen) == everything

    # DDP ranks (webdataset reads RANK / WORLD_SIZE): disjoint halves that cover everything.
    monkeypatch.setenv("WORLD_SIZE", "2")
    halves = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        halves.append({c for _, c in ShardDataset(tmp_path, shuffle_buffer=4, seed=3)})
    assert halves[0].isdisjoint(halves[1]) and halves[0] | halves[1] == everything


def test_benchmark_reports_throughput():
    result = benchmark_shards(num_samples=64, image_size=32, shard_size=32, batch_size=16)
    assert result["samples"] == 64 and result["read_samples_per_s"] > 0
