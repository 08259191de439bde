"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint `<dir>/<tag>` is up to four files:

- `<tag>.safetensors`: the model's weights (OpenAI/open_clip names, loadable by `build_model`);
- `<tag>.json`: the model config, the run config, the step, the last metrics, and the size and SHA-256 of
  every other file of the checkpoint;
- `<tag>.state.safetensors` and `<tag>.state.json`: optimizer, gradient scaler, RNG and data position, for
  exact resume. The nested state is split in two: its tensors (Adam's moments, the RNG's bytes) go to the
  safetensors file, and its structure and plain values to the JSON, with each tensor's place marked by its
  key. Loading is parsing JSON and reading raw tensors, so a checkpoint can never run code.

A save must never leave a checkpoint that is half old and half new, whenever the process is killed or the
disk fills. Renaming one file is atomic but renaming four is not, so a save is a small two-phase commit:

1. every file is written as `<tag>.next.*`, and last the journal `<tag>.next.json` (the metadata, with the
   files' sizes and hashes), renamed into place in one step. Until that rename the old checkpoint is untouched;
   a failure removes the `.next` files.
2. each `<tag>.next.*` is renamed to `<tag>.*`, the journal last (it becomes `<tag>.json`).

A run killed during step 2 leaves the journal behind; `finish_interrupted_save` (which the trainer calls
before it resumes) completes the renames. Every load checks the files against the sizes and hashes recorded
in `<tag>.json`, so a truncated, edited or mismatched file is refused with one line, never loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from miniclip.env import default_device
from miniclip.errors import UserError, WriteError
from miniclip.model import CLIP, CLIPConfig

FORMAT = "miniclip-checkpoint-v2"
# v1 checkpoints (written before the size/hash record existed) still load; only their step is checked.
READABLE_FORMATS = ("miniclip-checkpoint-v1", FORMAT)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, truncated, inconsistent or not a miniclip checkpoint."""


def file_record(path: Path) -> dict:
    """What `<tag>.json` records of each file it vouches for: its size and SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _verify(path: Path, meta: dict, meta_path: Path) -> None:
    """Refuse `path` unless it is the file `meta_path` recorded: the size first (cheap, and the usual damage),
    then the hash."""
    if meta.get("format") == "miniclip-checkpoint-v1":
        return  # nothing recorded
    record = meta.get("files", {}).get(path.name)
    if record is None:
        raise CheckpointError(f"{meta_path} does not list {path.name} (a final checkpoint has no training state; "
                              "resume from the run's last.safetensors)")
    if not path.exists():
        raise CheckpointError(f"{path} is missing ({meta_path.name} lists it; copy the whole checkpoint)")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise CheckpointError(f"{path} is damaged: {size} bytes, but {meta_path.name} recorded {record['bytes']} "
                              "(truncated or replaced; restore it from a copy, or retrain)")
    if file_record(path)["sha256"] != record["sha256"]:
        raise CheckpointError(f"{path} is damaged: its SHA-256 differs from the one {meta_path.name} recorded "
                              "(edited or corrupted; restore it from a copy, or retrain)")


def _write_synced(path: Path, write) -> dict:
    """Call `write(path)`, flush the file to disk, and return its record."""
    write(path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return file_record(path)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform can open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _split_tensors(obj, tensors: dict[str, torch.Tensor]):
    """`obj` with every tensor moved into `tensors` and replaced by {"__tensor__": key}; dicts whose keys are
    not all strings (the optimizer's per-parameter state is keyed by int) become {"__items__": [[k, v], ...]},
    tuples become lists. What remains is JSON."""
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split_tensors(v, tensors) for k, v in obj.items()}
        return {"__items__": [[k, _split_tensors(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} without pickle; use tensors and plain values")


def _join_tensors(obj, tensors: dict[str, torch.Tensor]):
    """The inverse of `_split_tensors`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: _join_tensors(v, tensors) for k, v in obj["__items__"]}
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def save_checkpoint(directory: str | Path, tag: str, model: CLIP, *, step: int, run_config: dict | None = None,
                    metrics: dict | None = None, training_state: dict | None = None) -> Path:
    """Write `<tag>.safetensors`, `<tag>.state.{safetensors,json}` (if `training_state` is given) and
    `<tag>.json`, by the two-phase commit in the module's docstring. A failure to write (a full disk, a
    read-only folder) raises `WriteError` and leaves the previous checkpoint under `tag` as it was."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    writers = {f"{tag}.safetensors": lambda p: save_file(weights, str(p), metadata={"step": str(step)})}
    if training_state is not None:
        tensors: dict[str, torch.Tensor] = {}
        skeleton = _split_tensors({"step": step, **training_state}, tensors)
        writers[f"{tag}.state.safetensors"] = lambda p: save_file(tensors, str(p), metadata={"step": str(step)})
        writers[f"{tag}.state.json"] = lambda p: p.write_text(json.dumps(skeleton))
    journal = directory / f"{tag}.next.json"
    staged = [directory / _staged_name(name, tag) for name in writers]
    try:  # phase 1: stage every file, then commit by writing the journal
        journal.unlink(missing_ok=True)  # a journal from an abandoned save would vouch for files we now replace
        files = {name: _write_synced(path, write) for (name, write), path in zip(writers.items(), staged)}
        meta = {"format": FORMAT, "step": step, "model": dataclasses.asdict(model.config),
                "config": run_config, "metrics": metrics or {}, "files": files}
        tmp = journal.with_name(f".{journal.name}.tmp-{os.getpid()}")
        _write_synced(tmp, lambda p: p.write_text(json.dumps(meta, indent=2)))
        os.replace(tmp, journal)
    except OSError as e:
        for path in (*staged, journal.with_name(f".{journal.name}.tmp-{os.getpid()}")):
            path.unlink(missing_ok=True)
        raise WriteError(f"could not save checkpoint {directory / tag}: {e.strerror or e} (free some space or "
                         f"choose another --out; any earlier {tag} checkpoint there is intact)") from e
    finish_interrupted_save(directory, tag)  # phase 2
    return directory / f"{tag}.safetensors"


def _staged_name(name: str, tag: str) -> str:
    """`last.state.json` -> `last.next.state.json`: the name a file has between the two phases."""
    return f"{tag}.next{name.removeprefix(tag)}"


def finish_interrupted_save(directory: str | Path, tag: str) -> bool:
    """Complete phase 2 of a save of `<directory>/<tag>` whose journal is still there (the process was
    killed between its renames); True if there was one. Renames are idempotent, so this is safe to repeat."""
    directory = Path(directory)
    journal = directory / f"{tag}.next.json"
    try:
        meta = json.loads(journal.read_text())
    except FileNotFoundError:
        return False
    except (json.JSONDecodeError, UnicodeDecodeError) as e:  # the journal is renamed into place whole, so
        raise CheckpointError(f"{journal} is damaged ({e}; delete it to keep the previous checkpoint)") from e
    for name in meta["files"]:
        staged, final = directory / _staged_name(name, tag), directory / name
        if staged.exists():
            os.replace(staged, final)
        _verify(final, meta, journal)
    os.replace(journal, directory / f"{tag}.json")
    _fsync_dir(directory)
    return True


def _paths(path: str | Path) -> tuple[Path, Path, Path]:
    """Accept `dir/tag`, `dir/tag.safetensors` or `dir/tag.json`: (weights, metadata, training-state stem)."""
    path = Path(path)
    stem = path.name.removesuffix(".safetensors").removesuffix(".json")
    return path.with_name(f"{stem}.safetensors"), path.with_name(f"{stem}.json"), path.with_name(f"{stem}.state")


def read_metadata(path: str | Path) -> dict:
    """The JSON beside a checkpoint's weights. Errors name `path` as the caller gave it, and say what to do."""
    weights_path, meta_path, _ = _paths(path)
    if Path(path).is_dir():
        example = Path(path) / "final.safetensors"
        raise CheckpointError(f"{path} is a directory (give a checkpoint in it, e.g. {example})")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as e:
        if weights_path.exists():
            raise CheckpointError(f"{path} has no {meta_path.name} beside it (a checkpoint is <tag>.safetensors with "
                                  "its <tag>.json; copy both)") from e
        raise CheckpointError(f"no checkpoint at {path} (give a run's final.safetensors; "
                              "`python -m miniclip train` writes one)") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable miniclip checkpoint ({meta_path.name} is not valid JSON: "
                              f"{e}; retrain or restore it)") from e
    except OSError as e:
        raise CheckpointError(f"cannot read {meta_path} ({e.strerror or e})") from e
    if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS or "model" not in meta:
        raise CheckpointError(f"{path} is not a miniclip checkpoint ({meta_path.name} lacks its format and model "
                              "fields; give a run's final.safetensors)")
    return meta


def verify_checkpoint(path: str | Path) -> dict:
    """The checkpoint's metadata, after checking every file it lists against its recorded size and hash."""
    _, meta_path, _ = _paths(path)
    meta = read_metadata(path)
    for name in meta.get("files", {}):
        _verify(meta_path.with_name(name), meta, meta_path)
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> CLIP:
    """Rebuild the model from `<tag>.json`'s config and load `<tag>.safetensors` strictly, onto `device`
    (`auto`: the GPU when there is one)."""
    if device == "auto":
        device = default_device()
    weights_path, meta_path, _ = _paths(path)
    meta = read_metadata(path)
    _verify(weights_path, meta, meta_path)
    fields = {f.name for f in dataclasses.fields(CLIPConfig)}
    model_cfg = dict(meta["model"])
    if isinstance(model_cfg.get("vision_layers"), list):
        model_cfg["vision_layers"] = tuple(model_cfg["vision_layers"])
    model = CLIP(CLIPConfig(**{k: v for k, v in model_cfg.items() if k in fields}))
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            saved_step = (f.metadata() or {}).get("step")
        state = load_file(str(weights_path), device=str(device))
    except FileNotFoundError as e:
        raise CheckpointError(f"no weights at {weights_path}") from e
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise CheckpointError(f"cannot read {weights_path}: {e}") from e
    if saved_step is not None and int(saved_step) != meta["step"]:
        raise CheckpointError(f"{weights_path} is at step {saved_step} but its metadata says {meta['step']}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights_path} does not match its config: {e}") from e
    return model.to(device).eval()


def load_training_state(path: str | Path) -> dict:
    """The optimizer/RNG/data state saved beside the weights (JSON plus raw tensors; nothing is unpickled)."""
    _, meta_path, state = _paths(path)
    meta = read_metadata(path)
    tensors_path, skeleton_path = state.with_name(state.name + ".safetensors"), state.with_name(state.name + ".json")
    for part in (tensors_path, skeleton_path):
        _verify(part, meta, meta_path)
    try:
        skeleton = json.loads(skeleton_path.read_text())
        tensors = load_file(str(tensors_path))
    except FileNotFoundError as e:
        raise CheckpointError(f"no training state at {skeleton_path} and {tensors_path.name}") from e
    except Exception as e:  # bad JSON, or a truncated/foreign safetensors file
        raise CheckpointError(f"cannot read the training state {skeleton_path} / {tensors_path.name}: {e}") from e
    state = _join_tensors(skeleton, tensors)
    if state.get("step") != meta["step"]:
        raise CheckpointError(f"{skeleton_path} is at step {state.get('step')} but its metadata says {meta['step']}")
    return state
