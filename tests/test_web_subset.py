"""End to end for the full tier: URL list -> img2dataset -> shards -> ShardDataset -> a few training steps.

Everything is served from 127.0.0.1 by tests/http_fixtures.py; no request leaves the machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from http_fixtures import CASE_OK, LoopbackServer, image_cases

if importlib.util.find_spec("img2dataset") is None:  # the [data] extra; importing it here would cost seconds
    pytest.skip("img2dataset is not installed", allow_module_level=True)

from miniclip.cli import run as data_main  # noqa: E402
from miniclip.data.shards import ShardDataset  # noqa: E402
from miniclip.data.web_subset import read_url_list, summarize  # noqa: E402
from miniclip.errors import UsageError

# 40 rows: most kinds succeed, 404s and corrupt bytes must fail. Interleaved so every shard gets a mix.
KINDS = (["jpeg", "gray", "missing", "png", "cmyk", "corrupt", "rgba", "jpeg"] * 5)[:39] + ["large"]
SHARD_SIZE = 16  # -> 3 shards (16, 16, 8)


def _write_cc3m_tsv(path: Path, server: LoopbackServer, rows) -> None:
    """CC3M's format: no header, caption<TAB>url."""
    path.write_text("".join(f"{caption}\t{server.url(p)}\n" for p, caption, _ in rows))


HAVE_CLI = importlib.util.find_spec("miniclip.cli") is not None


def _run(urls: Path, out: Path, *extra: str, subprocess_cli: bool = False) -> dict:
    """One ``data web-subset`` run: in-process through the command function, or as a user types it.

    The subprocess form (``python -m miniclip data web-subset ... --json``) also checks the ``--json``
    convention: the last stdout line is the summary. img2dataset start-up dominates the cost of a run
    (it spawns processes that import torch), so the test uses each form once rather than both twice.
    """
    argv = ["data", "web-subset", "--urls", str(urls), "--num-samples", str(len(KINDS)), "--out", str(out),
            "--image-size", "32", "--processes", "1", "--threads", "4", "--shard-size", str(SHARD_SIZE),
            "--timeout", "5", "--retries", "0", *extra]
    if subprocess_cli:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        done = subprocess.run([sys.executable, "-m", "miniclip", *argv, "--json"], capture_output=True, text=True,
                              timeout=180, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        printed = json.loads(done.stdout.strip().splitlines()[-1])
        assert printed["successes"] == summarize(out)["successes"]
    else:
        assert data_main(argv) == 0
    return summarize(out)


@pytest.mark.slow
def test_web_subset_end_to_end(tmp_path, capsys):
    files, rows = image_cases(KINDS)
    with LoopbackServer(files, max_requests=400) as server:
        urls = tmp_path / "cc3m.tsv"
        _write_cc3m_tsv(urls, server, rows)
        out = tmp_path / "subset"
        summary = _run(urls, out, subprocess_cli=HAVE_CLI)

        expected_ok = sum(CASE_OK[k] for k in KINDS)
        assert summary["count"] == len(KINDS)
        assert summary["successes"] == expected_ok
        assert summary["failed_to_download"] == KINDS.count("missing")  # the 404s
        assert summary["failed_to_resize"] == KINDS.count("corrupt")  # bytes that are not an image
        assert summary["shards"] == summary["tar_files"] == 3
        assert (out / "_input" / "urls.parquet").exists()
        first_run_requests = server.request_count
        assert first_run_requests == len(KINDS)  # one request per row, no retries

        # Resume after losing one shard (as if the run was killed mid-way): the finished shards are skipped
        # without a single request, and only the lost shard's rows are fetched again.
        (out / "00001_stats.json").unlink()
        (out / "00001.tar").unlink()
        summary = _run(urls, out, "--resume")
        assert server.request_count == first_run_requests + SHARD_SIZE
        assert summary["successes"] == expected_ok and summary["tar_files"] == 3

    # Without --resume an existing build is never overwritten.
    with pytest.raises(UsageError):
        _run(urls, out)

    # The shards read back: every success, with its caption, as an RGB image of the requested size.
    dataset = ShardDataset(out)
    pairs = list(dataset)
    assert len(pairs) == expected_ok and not dataset.skipped
    ok_captions = {caption for _, caption, kind in rows if CASE_OK[kind]}
    assert {caption for _, caption in pairs} == ok_captions
    assert all(img.shape[0] == 3 and min(img.shape[1:]) == 32 for img, _ in pairs)  # keep_ratio: shorter side

    _train_a_few_steps(out)


def _train_a_few_steps(shards: Path) -> None:
    """Three optimiser steps of a tiny CLIP on the downloaded shards; the loss must stay finite."""
    if importlib.util.find_spec("miniclip.model") is None:
        pytest.skip("miniclip.model not written yet")
    from miniclip.data.transforms import train_transform
    from miniclip.loss import ClipLoss
    from miniclip.model import CLIP, CLIPConfig
    from miniclip.tokenizer import tokenize

    torch.manual_seed(0)
    config = CLIPConfig(embed_dim=32, image_size=32, vision_layers=2, vision_width=64, patch_size=8,
                        context_length=77, vocab_size=49408, text_width=64, text_layers=2)
    model = CLIP(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = ClipLoss()
    dataset = ShardDataset(shards, transform=train_transform(32), shuffle_buffer=16, resampled=True, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    losses = []
    for step, (images, captions) in zip(range(3), loader):
        image_features = model.encode_image(images)
        text_features = model.encode_text(tokenize(list(captions)))
        loss = loss_fn(F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1),
                       model.logit_scale.exp())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_read_url_list_formats(tmp_path):
    """CC3M TSV (caption, url; no header), CC12M TSV (url, caption), named parquet and CSV columns."""
    rows = [(f"https://example.invalid/{i}.jpg", f"caption {i}\twith a tab") for i in range(6)]
    rows.insert(2, ("not a url", "dropped"))
    rows.insert(4, ("https://example.invalid/empty.jpg", "   "))

    (tmp_path / "cc3m.tsv").write_text("".join(f"{c.replace(chr(9), ' ')}\t{u}\n" for u, c in rows))
    (tmp_path / "cc12m.tsv").write_text("".join(f"{u}\t{c.replace(chr(9), ' ')}\n" for u, c in rows))
    pd.DataFrame({"TEXT": [c for _, c in rows], "URL": [u for u, _ in rows]}).to_parquet(tmp_path / "laion.parquet")
    frame = pd.DataFrame({"image_url": [u for u, _ in rows], "alt": [c for _, c in rows]})
    frame.to_csv(tmp_path / "x.csv", index=False)

    for name in ("cc3m.tsv", "cc12m.tsv", "laion.parquet", "x.csv"):
        frame, report = read_url_list(tmp_path / name, num_samples=4)
        assert list(frame.columns) == ["url", "caption"], name
        assert frame["url"].tolist() == [f"https://example.invalid/{i}.jpg" for i in range(4)], name
        assert frame["caption"].tolist() == [f"caption {i} with a tab" for i in range(4)], name

    # A seeded sample is reproducible and drawn from the valid rows only.
    a, _ = read_url_list(tmp_path / "cc12m.tsv", num_samples=3, sample_seed=7)
    b, _ = read_url_list(tmp_path / "cc12m.tsv", num_samples=3, sample_seed=7)
    assert a.equals(b) and a["url"].str.startswith("https://").all()


def test_read_url_list_counts_what_it_drops(tmp_path):
    """Rows left out are counted by reason: not http(s), an empty caption, a URL listed before (even in an
    earlier chunk of a long list)."""
    rows = [("https://example.invalid/a.jpg", "a dog"), ("file:///etc/passwd", "a file"),
            ("ftp://example.invalid/b.jpg", "an ftp url"), ("https://example.invalid/c.jpg", ""),
            ("https://example.invalid/a.jpg", "the same dog again"), ("https://example.invalid/d.jpg", "a cat")]
    pd.DataFrame({"url": [u for u, _ in rows], "caption": [c for _, c in rows]}).to_parquet(tmp_path / "l.parquet")
    frame, report = read_url_list(tmp_path / "l.parquet")
    assert frame["url"].tolist() == ["https://example.invalid/a.jpg", "https://example.invalid/d.jpg"]
    assert report["dropped"] == {"not an http(s) URL": 2, "empty caption": 1, "duplicate URL": 1}


def test_a_url_list_without_usable_rows_is_one_error_line(tmp_path, capsys):
    from miniclip.cli import main

    (tmp_path / "bad.tsv").write_text("a dog\tfile:///etc/passwd\na cat\tfile:///tmp/cat.jpg\n")
    code = main(["data", "web-subset", "--urls", str(tmp_path / "bad.tsv"), "--num-samples", "2",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "2 not an http(s) URL" in err[0] or "no column of http(s) URLs" in err[0]
