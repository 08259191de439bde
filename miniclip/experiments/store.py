"""Experiment results kept on disk: settings per profile, configs derived from the base models, cached JSON.

An experiment is a function `run(settings, profile) -> dict` (the table is in `registry.py`). Its settings come
from `configs/experiments/<profile>.yaml` (one section per experiment); the models it trains derive from the
profile's base training configs (`configs/cpu-shapes.yaml`, `configs/cpu-flickr8k.yaml`) through `--set`-style
overrides, so a change to a base model flows into every experiment built on it.

A result is `runs/<profile>/experiments/<name>.json`: the result plus its provenance (settings, git commit,
machine, torch version, wall time, seed). A JSON whose settings (and base configs) equal the current ones is
reused as it is, like `train --if-changed`. Experiments made of several trainings also cache each one as it
finishes (`cached_part`), so an interrupted `make experiments` picks up where it stopped.

Every such JSON is written whole (to a temporary name, then renamed) and sealed with the SHA-256 of its
content (`write_sealed`). A file that is truncated, edited by hand or otherwise damaged fails the check in
`read_sealed`, is reported on one line and recomputed; it is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import yaml

from miniclip.config import Config, load_config, without_speed_only
from miniclip.env import ROOT, git_commit, machine, runs_dir
from miniclip.errors import UsageError, warn_damaged

SETTINGS_DIR = ROOT / "configs" / "experiments"


# The gpu-1m book is the gpu book with the 1M-pair web model as its real-photo model: it runs the gpu profile's
# experiments, and shares their results.
SHARED_EXPERIMENTS = {"gpu-1m": "gpu"}


def experiments_profile(profile: str) -> str:
    """The profile whose experiment settings and results `profile` uses (itself, except gpu-1m: gpu)."""
    return SHARED_EXPERIMENTS.get(profile, profile)


def experiment_settings(profile: str) -> dict:
    """The per-experiment settings of a profile, from configs/experiments/<profile>.yaml."""
    path = SETTINGS_DIR / f"{experiments_profile(profile)}.yaml"
    if not path.exists():
        have = ", ".join(sorted(p.stem for p in SETTINGS_DIR.glob("*.yaml")))
        raise UsageError(f"no experiment settings for profile {profile!r}: {path} does not exist "
                         f"(profiles with settings: {have})")
    return yaml.safe_load(path.read_text()) or {}


def derived_config(base: str, overrides: dict | list | None = None, *, name: str | None = None,
                   profile: str | None = None) -> Config:
    """A training config: the base YAML (relative to the repository root) with `section.key: value` overrides.

    Overrides are a mapping (as the experiment YAML writes them) or a list of `key=value` strings; they go
    through the same parser and checks as `python -m miniclip train --set`."""
    if isinstance(overrides, dict):
        overrides = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]  # JSON is valid YAML
    overrides = list(overrides or [])
    if name is not None:
        overrides.append(f"name={name}")
    if profile is not None:
        overrides.append(f"profile={profile}")
    return load_config(ROOT / base, overrides)


def results_path(name: str, profile: str) -> Path:
    return runs_dir(experiments_profile(profile)) / "experiments" / f"{name}.json"


def work_dir(name: str, profile: str) -> Path:
    """Where an experiment keeps the checkpoints it trains (e.g. the ViTs other chapters load)."""
    return runs_dir(experiments_profile(profile)) / "experiments" / name


def cached_part(experiment: str, part: str, profile: str, key: dict, compute) -> dict:
    """One independent piece of an experiment (one model of a sweep), cached on its own in
    runs/<profile>/experiments/<experiment>/parts/<part>.json, so that an experiment stopped halfway resumes
    from the pieces it finished. `key` (the piece's training config and any other input) must match for the
    saved piece to be reused. Delete the folder to recompute every piece."""
    path = work_dir(experiment, profile) / "parts" / f"{part}.json"
    key = plain(key)
    saved = read_sealed(path) or {}
    if saved.get("key") == key:
        return saved["result"]
    t0 = time.time()
    result = plain(compute())
    write_sealed(path, {"key": key, "result": result, "wall_s": time.time() - t0})
    return result


def plain(x):
    """Settings as JSON stores them (tuples become lists), so a cached copy compares equal."""
    return json.loads(json.dumps(x))


def _seal(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def write_sealed(path: Path, record: dict) -> None:
    """Write `record` as JSON with the SHA-256 of its content, whole (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({**record, "sha256": _seal(record)}, indent=2))
    tmp.replace(path)  # atomic: a killed run never leaves a half-written result that looks finished


def read_sealed(path: Path) -> dict | None:
    """The record `write_sealed` wrote at `path`, or None if there is none, or it is damaged (said on one
    line), or it was written before records were sealed (recomputed quietly)."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        warn_damaged(str(path), f"not valid JSON: {e}")
        return None
    if not isinstance(record, dict) or "sha256" not in record:
        return None
    seal = record.pop("sha256")
    if seal != _seal(record):
        warn_damaged(str(path), "its content does not match its recorded SHA-256, so it was edited or corrupted")
        return None
    return record


def provenance(settings: dict, wall_s: float, load_before: list[float] | None = None) -> dict:
    """The same facts `Trainer` writes into provenance.json: what ran, from which commit, where, how long;
    and the machine's load average before and after, since on a shared machine wall times (and every
    throughput figure) depend on what else was running."""
    return {**cache_key(settings), "git_commit": git_commit(), "machine": machine(),
            "torch": torch.__version__, "python": platform.python_version(), "seed": settings.get("seed", 0),
            "wall_s": wall_s, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
            "load_average_before": load_before, "load_average_after": list(os.getloadavg())}


def base_configs(settings) -> dict:
    """Every base training config the settings name (any `base:` key, at any depth), as its YAML content.
    They are part of what a cached result depends on: editing configs/cpu-shapes.yaml makes every
    experiment built on it stale, though its own settings did not change (its `SPEED_ONLY` options aside)."""
    found = {}
    if isinstance(settings, dict):
        for key, value in settings.items():
            if key == "base" and isinstance(value, str):
                path = ROOT / value
                content = yaml.safe_load(path.read_text()) if path.exists() else None
                found[value] = without_speed_only(content) if isinstance(content, dict) else content
            else:
                found.update(base_configs(value))
    return found


def cache_key(settings: dict) -> dict:
    return plain({"settings": settings, "base_configs": base_configs(settings)})


def load_cached(name: str, profile: str, settings: dict | None = None) -> dict | None:
    """The cached result of `name`, or None when there is none (or, given `settings`, when they or the base
    configs they name differ from the ones it was computed with)."""
    cached = read_sealed(results_path(name, profile))
    if cached is None:
        return None
    prov = cached.get("provenance", {})
    if settings is not None and {k: prov.get(k) for k in ("settings", "base_configs")} != cache_key(settings):
        return None
    return cached
