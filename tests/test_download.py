"""Checked, resumable downloads, against a loopback server only."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from http_fixtures import LoopbackServer
from miniclip.data.commands import main as data_main
from miniclip.data.download import DATASETS, ChecksumError, download_file

PAYLOAD = bytes(range(256)) * 400  # 100 KiB, several read chunks' worth of distinct bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_known_sources_are_pinned_honestly():
    cifar = DATASETS["cifar10"][0]
    assert cifar.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert cifar.md5 == "c58f30108f718f92721af3b95e74349a"  # the published value torchvision also uses
    assert all(r.sha256 is None for r in DATASETS["flickr8k"])  # none published: not invented


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
        assert data_main(["data", "download", "flickr8k", "--dest", str(tmp_path), "--url", server.url("/m"), "--json"]) == 0
    home = tmp_path / "flickr8k"
    assert sorted(p.name for p in (home / "Flicker8k_Dataset").iterdir()) == ["1.jpg", "2.jpg"]
    assert (home / "Flickr8k_text" / "Flickr8k.token.txt").read_bytes() == b"1.jpg#0\ta dog\n"
    assert not (home / "__MACOSX").exists()
    assert '"dataset": "flickr8k"' in capsys.readouterr().out.strip().splitlines()[-1]


def test_cifar10_mirror_with_other_bytes_is_rejected(tmp_path, monkeypatch):
    """An override URL keeps the published MD5, so a mirror serving different bytes is refused."""
    with LoopbackServer({"/m/cifar-10-python.tar.gz": (PAYLOAD, "application/gzip")}, max_requests=5) as server:
        monkeypatch.setenv("MINICLIP_DOWNLOAD_BASE_URL", server.url("/m"))
        with pytest.raises(ChecksumError, match="c58f30108f718f92721af3b95e74349a"):
            data_main(["data", "download", "cifar10", "--dest", str(tmp_path)])
    assert not any(tmp_path.glob("cifar-10-python.tar.gz*"))
