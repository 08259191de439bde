"""Checked, resumable downloads, against a loopback server only."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import numpy as np
import pytest
from http_fixtures import LoopbackServer
from PIL import Image

from miniclip.cli import main
from miniclip.cli import run as data_main
from miniclip.data.download import (
    DATASETS,
    ChecksumError,
    DownloadError,
    ManualDownloadError,
    Resource,
    download_dataset,
    download_file,
)
from miniclip.data.folders import CIFAR10_CLASSES, open_test_set

PAYLOAD = bytes(range(256)) * 400  # 100 KiB, several read chunks' worth of distinct bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_known_sources_are_pinned_honestly():
    # The binary versions (no pickles inside), with the MD5s the dataset page publishes for them.
    cifar10, cifar100 = DATASETS["cifar10"][0], DATASETS["cifar100"][0]
    assert cifar10.url == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert cifar10.md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert cifar100.url == "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
    assert cifar100.md5 == "03b5dce01913d631647c71ecec9e9cb8"
    assert all(r.sha256 is None for r in DATASETS["flickr8k"])  # none published: not invented
    assert "intel-scenes" not in DATASETS  # behind a login: no URL or checksum to pin


def test_intel_scenes_download_says_where_to_get_it_in_one_line(tmp_path, capsys, monkeypatch):
    """No request is made and nothing is created: one `error:` line names the source and the layout."""
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path / "env-root"))
    for argv, root in ((["--dest", str(tmp_path / "dest")], tmp_path / "dest"), ([], tmp_path / "env-root")):
        assert main(["data", "download", "intel-scenes", *argv]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("error: ")
        for part in ("Intel Image Classification", "Puneet Bansal", "Kaggle login",
                     "https://www.kaggle.com/datasets/puneet6060/intel-image-classification",
                     f"{root}/intel-scenes/test/<class>/*.jpg", f"{root}/intel-scenes-test.zip"):
            assert part in captured.err, part
        assert not root.exists()
    with pytest.raises(ManualDownloadError):
        download_dataset("intel-scenes", dest=tmp_path / "dest", progress=False)


def test_download_with_correct_checksum(tmp_path):
    with LoopbackServer({"/data.bin": (PAYLOAD, "application/octet-stream")}, max_requests=5) as server:
        path = download_file(server.url("/data.bin"), tmp_path / "data.bin", sha256=SHA, progress=False)
        assert path.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.part").exists()
        # Already there and verified: no second request.
        download_file(server.url("/data.bin"), tmp_path / "data.bin", sha256=SHA, progress=False)
        assert server.request_count == 1


def test_wrong_checksum_is_a_clear_error_and_leaves_nothing(tmp_path):
    wrong = "0" * 64
    with LoopbackServer({"/data.bin": (PAYLOAD, "application/octet-stream")}, max_requests=5) as server:
        with pytest.raises(ChecksumError) as err:
            download_file(server.url("/data.bin"), tmp_path / "data.bin", sha256=wrong, progress=False)
    message = str(err.value)
    assert wrong in message and SHA in message and "deleted" in message
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_resumes_with_range(tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:30_000])  # what a killed run leaves behind
    with LoopbackServer({"/data.bin": (PAYLOAD, "application/octet-stream")}, max_requests=5) as server:
        path = download_file(server.url("/data.bin"), tmp_path / "data.bin", sha256=SHA, progress=False)
        assert server.requests[0].range == "bytes=30000-" and server.requests[0].status == 206
    assert path.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_refetching(tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    with LoopbackServer({"/data.bin": (PAYLOAD, "application/octet-stream")}, max_requests=5) as server:
        download_file(server.url("/data.bin"), tmp_path / "data.bin", sha256=SHA, progress=False)
        assert [r.status for r in server.requests] == [416]
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_flickr8k_command_unpacks_the_loader_layout(tmp_path, capsys):
    images = _zip({"Flicker8k_Dataset/1.jpg": b"jpeg-1", "Flicker8k_Dataset/2.jpg": b"jpeg-2",
                   "__MACOSX/Flicker8k_Dataset/._1.jpg": b"junk"})
    texts = _zip({"Flickr8k.token.txt": b"1.jpg#0\ta dog\n", "Flickr_8k.testImages.txt": b"1.jpg\n"})  # flat
    files = {"/m/Flickr8k_Dataset.zip": (images, "application/zip"), "/m/Flickr8k_text.zip": (texts, "application/zip")}
    with LoopbackServer(files, max_requests=5) as server:
        argv = ["data", "download", "flickr8k", "--dest", str(tmp_path), "--url", server.url("/m"), "--json"]
        assert data_main(argv) == 0
    home = tmp_path / "flickr8k"
    assert sorted(p.name for p in (home / "Flicker8k_Dataset").iterdir()) == ["1.jpg", "2.jpg"]
    assert (home / "Flickr8k_text" / "Flickr8k.token.txt").read_bytes() == b"1.jpg#0\ta dog\n"
    assert not (home / "__MACOSX").exists()
    assert '"dataset": "flickr8k"' in capsys.readouterr().out.strip().splitlines()[-1]


def test_cifar10_mirror_with_other_bytes_is_rejected(tmp_path, monkeypatch):
    """An override URL keeps the published MD5, so a mirror serving different bytes is refused."""
    with LoopbackServer({"/m/cifar-10-binary.tar.gz": (PAYLOAD, "application/gzip")}, max_requests=5) as server:
        monkeypatch.setenv("MINICLIP_DOWNLOAD_BASE_URL", server.url("/m"))
        with pytest.raises(ChecksumError, match="c32a1d4ab5d03f1284b67883e8d87530"):
            data_main(["data", "download", "cifar10", "--dest", str(tmp_path)])
    assert not any(tmp_path.rglob("cifar-10-binary.tar.gz*")) and not (tmp_path / "cifar10").exists()


# --- CIFAR's binary version, converted to PNG folders ------------------------------------------------


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _fake_cifar(count: int, label_bytes: int, num_classes: int, seed: int = 0):
    """``count`` random records in the binary layout; returns (test file bytes, fine labels, HxWx3 images).

    Every class appears (``count >= num_classes``), in shuffled order, as in the real test files.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % num_classes).astype(np.uint8)
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(count, -1)  # R plane, G plane, B plane, rows in order
    heads = np.stack([(labels // 5)] * (label_bytes - 1) + [labels], axis=1).astype(np.uint8)  # coarse first
    return np.concatenate([heads, planes], axis=1).tobytes(), labels, images


def _serve_fake(monkeypatch, dataset: str, archive: bytes) -> None:
    """Pin the fake tarball's own MD5 in place of the published one, as a mirror of it would need."""
    published = DATASETS[dataset][0]
    fake = Resource(published.filename, published.url, md5=hashlib.md5(archive).hexdigest())
    monkeypatch.setitem(DATASETS, dataset, [fake])


def _check_images(test_dir, names, labels, images) -> None:
    seen = {name: 0 for name in names}
    for label, expected in zip(labels.tolist(), images):
        name = names[label]
        with Image.open(test_dir / name / f"{seen[name]:04d}.png") as png:  # numbered per class, in file order
            assert png.format == "PNG" and png.mode == "RGB"
            assert np.array_equal(np.asarray(png), expected)  # lossless: every pixel as published
        seen[name] += 1
    assert sum(1 for _ in test_dir.rglob("*.png")) == len(labels)


def test_cifar10_binary_becomes_png_imagefolder(tmp_path, monkeypatch, capsys):
    records, labels, images = _fake_cifar(20, label_bytes=1, num_classes=10)
    meta = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()  # the real file ends with a blank line
    archive = _tar({"cifar-10-batches-bin/batches.meta.txt": meta,
                    "cifar-10-batches-bin/test_batch.bin": records,
                    "cifar-10-batches-bin/data_batch_1.bin": b"training records, never read"})
    _serve_fake(monkeypatch, "cifar10", archive)
    data = tmp_path / "data"
    with LoopbackServer({"/m/cifar-10-binary.tar.gz": (archive, "application/gzip")}, max_requests=5) as server:
        monkeypatch.setenv("MINICLIP_DOWNLOAD_BASE_URL", server.url("/m"))
        assert data_main(["data", "download", "cifar10", "--dest", str(data), "--json"]) == 0
    assert '"images": 20' in capsys.readouterr().out.strip().splitlines()[-1]

    test_dir = data / "cifar10" / "test"
    assert sorted(p.name for p in test_dir.iterdir()) == sorted(CIFAR10_CLASSES)  # no leftover temp folder
    assert sorted(p.name for p in (data / "cifar10").iterdir()) == ["test"]
    _check_images(test_dir, CIFAR10_CLASSES, labels, images)
    assert (data / "downloads" / "cifar-10-binary.tar.gz").exists()  # kept without --delete-archives
    assert not (data / "cifar-10-batches-bin").exists()  # read from the tarball, never unpacked

    monkeypatch.setenv("MINICLIP_DATA", str(data))
    ds = open_test_set("cifar10")
    assert ds.classes == list(CIFAR10_CLASSES) and len(ds) == 20
    assert ds.targets == [CIFAR10_CLASSES.index(ds.files[i].split("/")[-2]) for i in range(20)]


def test_cifar_download_again_replaces_the_folder_and_can_delete_the_archive(tmp_path, monkeypatch):
    records, labels, images = _fake_cifar(12, label_bytes=1, num_classes=10, seed=1)
    archive = _tar({"cifar-10-batches-bin/batches.meta.txt": "\n".join(CIFAR10_CLASSES).encode(),
                    "cifar-10-batches-bin/test_batch.bin": records})
    _serve_fake(monkeypatch, "cifar10", archive)
    stale = tmp_path / "cifar10" / "test" / "cat" / "9999.png"  # from an earlier, different conversion
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    with LoopbackServer({"/m/cifar-10-binary.tar.gz": (archive, "application/gzip")}, max_requests=5) as server:
        result = download_dataset("cifar10", dest=tmp_path, base_url=server.url("/m"), progress=False,
                                  keep_archives=False)
    assert result["images"] == 12 and result["archives"] == [] and not stale.exists()
    _check_images(tmp_path / "cifar10" / "test", CIFAR10_CLASSES, labels, images)
    assert not any((tmp_path / "downloads").iterdir())


def test_cifar100_binary_uses_fine_labels(tmp_path, monkeypatch):
    fine = ["apple", "aquarium_fish"] + [f"class_{k:02d}" for k in range(2, 100)]  # sorted, like the real file
    records, labels, images = _fake_cifar(100, label_bytes=2, num_classes=100)
    archive = _tar({"cifar-100-binary/fine_label_names.txt": "\n".join(fine).encode(),
                    "cifar-100-binary/coarse_label_names.txt": b"aquatic_mammals\n",
                    "cifar-100-binary/test.bin": records})
    _serve_fake(monkeypatch, "cifar100", archive)
    with LoopbackServer({"/m/cifar-100-binary.tar.gz": (archive, "application/gzip")}, max_requests=5) as server:
        download_dataset("cifar100", dest=tmp_path, base_url=server.url("/m"), progress=False)
    _check_images(tmp_path / "cifar100" / "test", fine, labels, images)
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path))
    ds = open_test_set("cifar100")
    assert ds.classes == fine and len(ds) == 100 and ds.class_names[1] == "aquarium fish"


def test_cifar_test_file_missing_a_class_is_refused(tmp_path, monkeypatch):
    records, _, _ = _fake_cifar(9, label_bytes=1, num_classes=9)  # labels 0-8: no truck
    archive = _tar({"cifar-10-batches-bin/batches.meta.txt": "\n".join(CIFAR10_CLASSES).encode(),
                    "cifar-10-batches-bin/test_batch.bin": records})
    _serve_fake(monkeypatch, "cifar10", archive)
    with LoopbackServer({"/m/cifar-10-binary.tar.gz": (archive, "application/gzip")}, max_requests=5) as server:
        with pytest.raises(DownloadError, match="not every one of the 10 classes"):
            download_dataset("cifar10", dest=tmp_path, base_url=server.url("/m"), progress=False)
    assert not (tmp_path / "cifar10").exists()


def test_cifar_archive_without_the_binary_members_is_refused(tmp_path, monkeypatch):
    # E.g. the pickled python version served under the binary name: we neither unpickle nor write anything.
    archive = _tar({"cifar-10-batches-py/test_batch": b"\x80\x04pickled"})
    _serve_fake(monkeypatch, "cifar10", archive)
    with LoopbackServer({"/m/cifar-10-binary.tar.gz": (archive, "application/gzip")}, max_requests=5) as server:
        with pytest.raises(DownloadError, match="binary version"):
            download_dataset("cifar10", dest=tmp_path, base_url=server.url("/m"), progress=False)
    assert not (tmp_path / "cifar10").exists()
