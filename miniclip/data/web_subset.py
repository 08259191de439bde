"""Build the full tier: a ~1M-pair subset of CC3M or CC12M, downloaded with img2dataset into tar shards.

The web datasets are distributed as *lists of URLs and captions*, not images: the images stay on the
sites that host them (and some have disappeared since). Building a subset is therefore three steps:

1. **Normalise the list.** CC3M ships a header-less TSV `caption<TAB>url`; CC12M a TSV
   `url<TAB>caption`; others ship parquet or CSV with named columns. We find the URL and caption
   columns by name or, failing that, by content (the column whose values are http(s) URLs), keep the first
   N valid rows (or a seeded random sample), and write `DIR/_input/urls.parquet` with exactly two
   columns, `url` and `caption`. That file is what makes a resumed run line up with the first one.
2. **Download with img2dataset**, which fetches with many threads per process, resizes, re-encodes, and
   writes webdataset shards (`00000.tar` ...) plus a `00000_stats.json` per shard. Resume works
   because img2dataset skips every shard whose stats file exists (`incremental_mode="incremental"`).
3. **Summarise** the stats files: how many pairs arrived, and why the others did not.

Resize policy: `resize_mode="keep_ratio"` scales the *shorter* side to `image_size` and keeps the whole
picture. CLIP's only training augmentation is a random square crop of the resized image (paper §2.5);
storing the uncropped image keeps that crop possible at training time, at about a third more disk than
a centre crop would take.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pandas as pd

from miniclip.errors import UsageError, UserError

# albumentations (pulled in by img2dataset) otherwise phones home for a version check on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

URL_NAMES = ("url", "image_url", "imageurl", "img_url", "link", "URL")
CAPTION_NAMES = ("caption", "text", "alt", "alt_text", "title", "description", "TEXT")
INPUT_DIR = "_input"
INPUT_FILE = "urls.parquet"


# --------------------------------------------------------------------------------------------------
# Step 1: read and normalise a URL list
# --------------------------------------------------------------------------------------------------


def _is_url(value) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


def _url_fraction(column: pd.Series) -> float:
    values = column.dropna().head(100)
    return float(values.map(_is_url).mean()) if len(values) else 0.0


class UrlListError(UserError, ValueError):
    """A URL list that cannot give a web subset: missing, unreadable, or without usable (URL, caption) rows."""


def _pick_columns(frame: pd.DataFrame, path: Path) -> tuple[str, str]:
    """(url column, caption column): by a known name first, then by content."""
    lowered = {str(c).lower(): c for c in frame.columns}
    url_col = next((lowered[n.lower()] for n in URL_NAMES if n.lower() in lowered), None)
    cap_col = next((lowered[n.lower()] for n in CAPTION_NAMES if n.lower() in lowered), None)
    if url_col is None:
        scores = {c: _url_fraction(frame[c]) for c in frame.columns}
        url_col = max(scores, key=scores.get)
        if scores[url_col] < 0.5:
            raise UrlListError(f"{path}: no column of http(s) URLs found among {list(frame.columns)} "
                               "(a URL list needs one column of http:// or https:// URLs and one of captions)")
    if cap_col is None:
        others = [c for c in frame.columns if c != url_col and frame[c].dtype == object]
        if not others:
            raise UrlListError(f"{path}: no caption column found among {list(frame.columns)} "
                               "(a URL list needs one column of captions beside its URLs)")
        # The caption is the text column that does not look like URLs (CC3M: first; CC12M: second).
        cap_col = min(others, key=lambda c: _url_fraction(frame[c]))
    return url_col, cap_col


def _delimited_has_header(path: Path, sep: str) -> bool:
    """A header row is one with no URL in it while the next rows have one."""
    head = pd.read_csv(path, sep=sep, header=None, nrows=5, dtype=str, quoting=3, on_bad_lines="skip",
                       keep_default_na=False)
    if len(head) < 2:
        return not any(_is_url(v) for v in head.iloc[0]) if len(head) else False
    first_has_url = any(_is_url(v) for v in head.iloc[0])
    rest_have_url = any(_is_url(v) for v in head.iloc[1:].to_numpy().ravel())
    return rest_have_url and not first_has_url


def _chunks(path: Path, chunk_rows: int = 200_000):
    """Yield DataFrames of the list, streaming, so a 2.5 GB CC12M TSV never sits in memory at once."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq  # optional (the data extra): only parquet URL lists need it

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
        return
    sep = "," if ".csv" in name else "\t"  # .tsv, .tsv.gz, .txt: tab separated
    header = 0 if _delimited_has_header(path, sep) else None
    # quoting=3 (QUOTE_NONE): captions contain stray quotes; TSVs from Google are not quoted.
    yield from pd.read_csv(path, sep=sep, header=header, dtype=str, chunksize=chunk_rows, keep_default_na=False,
                           quoting=3 if sep == "\t" else 0, on_bad_lines="skip")


DROP_REASONS = ("not an http(s) URL", "empty caption", "duplicate URL")


def _clean(frame: pd.DataFrame, url_col, cap_col, seen: set[str], dropped: dict[str, int]) -> pd.DataFrame:
    """The usable rows of a chunk; each row left out is counted in `dropped` under its first reason. `seen` holds
    the URLs kept so far, across chunks, so a URL listed twice is downloaded once."""
    out = pd.DataFrame({"url": frame[url_col].astype(str).str.strip(),
                        # newlines and tabs inside a caption would break every line-based format downstream
                        "caption": frame[cap_col].astype(str).str.replace(r"\s+", " ", regex=True).str.strip()})
    is_url = out["url"].map(_is_url)
    has_caption = (out["caption"].str.len() > 0) & (out["caption"] != "nan") & frame[cap_col].notna().to_numpy()
    dropped["not an http(s) URL"] += int((~is_url).sum())
    dropped["empty caption"] += int((is_url & ~has_caption).sum())
    out = out[is_url & has_caption]
    first = ~out["url"].duplicated() & ~out["url"].isin(seen)
    dropped["duplicate URL"] += int((~first).sum())
    out = out[first]
    seen.update(out["url"])
    return out


def dropped_text(dropped: dict[str, int]) -> str:
    """"3 not an http(s) URL, 1 duplicate URL": the rows a URL list lost, by reason ("" when none)."""
    return ", ".join(f"{n:,} {reason}" for reason, n in dropped.items() if n)


def read_url_list(path: str | os.PathLike, num_samples: int | None = None, sample_seed: int | None = None
                  ) -> tuple[pd.DataFrame, dict]:
    """Read a url+caption list (parquet / csv / tsv[.gz]) into a frame with columns `url`, `caption`.

    `num_samples` keeps the first N valid rows; with `sample_seed` it is instead a seeded uniform
    sample of all valid rows (which reads the whole list). Returns the frame and a small report.
    """
    path = Path(path)
    if not path.is_file():
        raise UrlListError(f"URL list not found: {path} (give --urls a .parquet, .csv or .tsv[.gz] file)")
    kept, rows_read, columns = [], 0, None
    have, seen, dropped = 0, set(), dict.fromkeys(DROP_REASONS, 0)
    try:
        for chunk in _chunks(path):
            if columns is None:
                columns = _pick_columns(chunk, path)
            rows_read += len(chunk)
            clean = _clean(chunk, *columns, seen, dropped)
            kept.append(clean)
            have += len(clean)
            if num_samples is not None and sample_seed is None and have >= num_samples:
                break
    except UrlListError:
        raise
    except Exception as e:  # noqa: BLE001 -- pandas and pyarrow raise many types for a file they cannot parse
        raise UrlListError(f"cannot read the URL list {path} ({type(e).__name__}: {e})") from e
    frame = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=["url", "caption"])
    valid = len(frame)
    if num_samples is not None:
        if sample_seed is not None and valid > num_samples:
            index = sorted(random.Random(sample_seed).sample(range(valid), num_samples))
            frame = frame.iloc[index].reset_index(drop=True)
        else:
            frame = frame.head(num_samples).reset_index(drop=True)
    report = {"rows_read": rows_read, "valid_rows_seen": valid, "selected": len(frame), "dropped": dropped,
              "url_column": str(columns[0]) if columns else None,
              "caption_column": str(columns[1]) if columns else None}
    return frame, report


# --------------------------------------------------------------------------------------------------
# Step 2 and 3: download, then summarise
# --------------------------------------------------------------------------------------------------


def summarize(out_dir: str | os.PathLike) -> dict:
    """Add up img2dataset's per-shard `*_stats.json` files."""
    out_dir = Path(out_dir)
    total = {"shards": 0, "count": 0, "successes": 0, "failed_to_download": 0, "failed_to_resize": 0}
    reasons: dict[str, int] = {}
    for stats_file in sorted(out_dir.glob("*_stats.json")):
        stats = json.loads(stats_file.read_text())
        total["shards"] += 1
        for k in ("count", "successes", "failed_to_download", "failed_to_resize"):
            total[k] += int(stats.get(k, 0))
        for reason, n in stats.get("status_dict", {}).items():
            if reason != "success":
                reasons[reason] = reasons.get(reason, 0) + int(n)
    total["failure_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    total["tar_files"] = len(list(out_dir.glob("*.tar")))
    return total


def format_summary(summary: dict, top: int = 10) -> str:
    lines = [f"{summary['successes']:,} of {summary['count']:,} pairs downloaded into {summary['tar_files']} shards "
             f"({summary['failed_to_download']:,} failed to download, "
             f"{summary['failed_to_resize']:,} failed to decode/resize)"]
    for reason, n in list(summary["failure_reasons"].items())[:top]:
        lines.append(f"  {n:>8,}  {reason[:120]}")
    return "\n".join(lines)


def build_web_subset(
    urls: str | os.PathLike,
    out_dir: str | os.PathLike,
    num_samples: int,
    image_size: int = 224,
    processes: int = 4,
    threads: int = 64,
    resume: bool = False,
    sample_seed: int | None = None,
    shard_size: int = 10_000,
    timeout: int = 10,
    retries: int = 1,
    resize_mode: str = "keep_ratio",
    respect_robots_headers: bool = True,
    verbose: bool = True,
) -> dict:
    """Select `num_samples` pairs from `urls` and download them into webdataset shards in `out_dir`.

    `resume=True` continues an interrupted build: the saved `_input/urls.parquet` is reused and every
    shard that already has its stats file is skipped without a single request. Without `resume` an
    `out_dir` that already holds shards is an error, never silently overwritten.
    """
    from img2dataset import download  # imported here: it is heavy and optional ([data] extra)

    out_dir = Path(out_dir)
    input_file = out_dir / INPUT_DIR / INPUT_FILE
    has_output = out_dir.exists() and any(out_dir.glob("*.tar"))
    if has_output and not resume:
        raise UsageError(f"{out_dir} already holds shards (pass --resume to continue that build, "
                         "or choose a new --out)")
    if resume and input_file.exists():
        selection = pd.read_parquet(input_file)
        if len(selection) != num_samples and num_samples is not None:
            raise UsageError(f"--resume: {input_file} holds {len(selection)} rows but --num-samples is "
                             f"{num_samples} (resume with the same selection, or start a new --out)")
        report = {"selected": len(selection), "reused_input": str(input_file)}
    else:
        selection, report = read_url_list(urls, num_samples=num_samples, sample_seed=sample_seed)
        if len(selection) == 0:
            raise UrlListError(f"no usable (http(s) URL, caption) row in {urls} "
                               f"({dropped_text(report['dropped']) or 'it has no rows'})")
        input_file.parent.mkdir(parents=True, exist_ok=True)
        selection.to_parquet(input_file, index=False)
    if verbose and "dropped" in report:
        dropped = dropped_text(report["dropped"])
        print(f"[web-subset] selected {report['selected']:,} pairs from {report['rows_read']:,} rows of {urls}"
              + (f"; left out {dropped}" if dropped else ""), flush=True)
    elif verbose:
        print(f"[web-subset] resuming with the {report['selected']:,} pairs selected before ({input_file})", flush=True)

    download(
        url_list=str(input_file),
        input_format="parquet",
        url_col="url",
        caption_col="caption",
        output_format="webdataset",
        output_folder=str(out_dir),
        image_size=image_size,
        resize_mode=resize_mode,
        resize_only_if_bigger=False,
        encode_format="jpg",
        encode_quality=95,
        processes_count=processes,
        thread_count=threads,
        number_sample_per_shard=shard_size,
        timeout=timeout,
        retries=retries,
        extract_exif=False,
        incremental_mode="incremental",
        enable_wandb=False,
        # None keeps img2dataset's default: honour X-Robots-Tag noai/noimageai/noindex opt-outs.
        disallowed_header_directives=None if respect_robots_headers else [],
        user_agent_token="miniclip",
    )
    # img2dataset leaves nothing else behind except on a crash; tidy its scratch folder if it did.
    shutil.rmtree(out_dir / "_tmp", ignore_errors=True)
    summary = summarize(out_dir)
    summary["selection"] = report
    summary["out_dir"] = str(out_dir)
    if verbose:
        print(format_summary(summary), flush=True)
    return summary
