"""`python -m miniclip bench recipe`: time to a given quality, miniclip's trainer against open_clip's own.

What a reader waits for is a trained model, not a step, so the contenders here are whole training runs of one
architecture (the book's Flickr8k model, `configs/cpu-flickr8k.yaml`) on Flickr8k train, each given the same
wall-clock budget on the same machine:

- `open_clip`: open_clip's real trainer (`open_clip_train.main`, run by `miniclip.bench.open_clip_run`), fed as
  its users feed it: a CSV of image paths and captions, its own data loader and transforms, AdamW with warmup
  and cosine decay, `--device cpu`, fp32. Learning rate, weight decay, Adam's betas and epsilon, warmup, batch
  size and seed are the book config's, so what differs is the trainer and its defaults (augmentation, no label
  smoothing, tokens padded to 77).
- `miniclip`: our trainer with the book's recipe.
- `miniclip, open_clip recipe`: our trainer with open_clip's defaults where ours differ (crops of 90-100% of the
  area, no label smoothing, whole captions, one resolution from the first step; our flips stay, having no
  switch), so the gain splits into "a faster step" (this
  against `open_clip`) and "a better recipe" (this against `miniclip`).

The CSV holds exactly the (image, caption) pairs our trainer draws for its first steps (`trained_pairs`), so
both see the same pictures and captions, each in its own order. A contender's number of steps fills the budget
at its step time, measured first in short calibration runs (alternated between the trainers; a recipe that starts
at a lower resolution is timed at both sizes and weighted by its share of steps at each); its weights are
copied at fixed fractions of the run, and every copy is scored by the same evaluator (Flickr8k test R@1/5/10
both ways, Intel scenes zero-shot when the test photos are present). The clock counts training only: it leaves
out the copies and the evaluations.

The ratio reported for two contenders A and B is the time A needs to reach its final quality (the mean of the
two R@10) divided by the time B needs to reach that same quality, read off B's curve by linear interpolation
(from zero quality at time zero up to its first copy); None when B never reaches it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from miniclip.bench.data_path import timed_run_overrides
from miniclip.bench.reference import open_clip_config, require_open_clip
from miniclip.bench.results import RESULTS_DIR, finished_stamp, write_results
from miniclip.config import Config
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.loaders import StepBatchSampler, flickr8k_steps_per_epoch, flickr8k_training_set
from miniclip.data.paths import MissingDataError
from miniclip.env import machine
from miniclip.errors import MissingDependency
from miniclip.experiments.store import derived_config
from miniclip.experiments.sweeps import retrieval_scores, scenes_scores
from miniclip.model import build_model
from miniclip.train.trainer import Trainer

MODEL_NAME = "miniclip-bench"
# Where our trainer's defaults differ from open_clip_train's: its training crop keeps 90-100% of the area
# (open_clip.transform's RandomResizedCrop scale), its loss has no label smoothing, and it reads captions whole.
# (open_clip_train also trains at one resolution from the first step: no low-resolution start.)
OPEN_CLIP_RECIPE = {"data.crop_scale": [0.9, 1.0], "optim.label_smoothing": 0.0, "data.word_dropout": 0.0,
                    "data.low_res_size": 0, "data.low_res_steps": 0}
OURS, OURS_OC, OPEN_CLIP = "miniclip", "miniclip, open_clip recipe", "open_clip"
# The ratios reported, (label, slower contender, faster contender): the whole gain, then its two parts.
RATIOS = (("open_clip -> miniclip", OPEN_CLIP, OURS),
          ("faster step: open_clip -> miniclip, open_clip recipe", OPEN_CLIP, OURS_OC),
          ("better recipe: miniclip, open_clip recipe -> miniclip", OURS_OC, OURS))


@dataclass
class RecipeBenchConfig:
    """What `bench recipe` runs. `steps` (contender -> steps) skips the calibration; the tests use it."""

    config: str = "configs/cpu-flickr8k.yaml"
    budget_s: float = 900.0          # training time per contender
    snapshots: int = 6               # weights copied and scored at 1/6, 2/6, ... of each run
    calibration_steps: int = 16      # per trainer, the first four not counted (6 missed open_clip's by 17%)
    open_clip_workers: int = 2       # its DataLoader workers (its default is 4; this machine has 2 cores)
    retrieval_images: int | None = None   # Flickr8k test images scored (None: all 1,000)
    scenes_images: int | None = None      # Intel scenes test images scored (None: all 2,158)
    contenders: tuple = (OPEN_CLIP, OURS, OURS_OC)
    steps: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # `section.key: value` for every contender (tests: a tiny model)
    record_seen: bool = False        # open_clip logs every CSV row it reads (tests)
    out: Path = RESULTS_DIR / "recipe"


# ----------------------------------------------------------------------------- the same data for both


def training_set(config: Config) -> Flickr8k:
    """Flickr8k train as our trainer opens it (its seed chooses each epoch's captions, `data.train_images` its
    images), without the note about absent images that training already gives."""
    return flickr8k_training_set(config.data, config.train.seed, warn=False)


def trained_pairs(base: Flickr8k, config: Config, steps: int) -> list[tuple[str, str]]:
    """The (image id, caption) pairs our trainer draws from `base` in its first `steps` steps, in order."""
    sampler = iter(StepBatchSampler(len(base), config.optim.batch_size, config.train.seed, 0, 0, 1))
    return [(base.image_ids[i], base.caption_for(i, epoch)) for _ in range(steps) for epoch, i in next(sampler)]


def write_training_csv(base: Flickr8k, pairs: list[tuple[str, str]], path: Path, image_dir: Path) -> Path:
    """open_clip's training CSV (tab-separated `filepath`, `title`), the images copied byte for byte from `base`
    into `image_dir` (they may sit in a zip, which open_clip cannot read)."""
    files = dict(zip(base.image_ids, base.files))
    image_dir.mkdir(parents=True, exist_ok=True)
    for image_id in {i for i, _ in pairs}:
        target = image_dir / image_id
        if not target.exists():
            target.write_bytes(base.tree.read_bytes(files[image_id]))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["filepath", "title"])
        writer.writerows((str((image_dir / i).resolve()), caption) for i, caption in pairs)
    return path


# ----------------------------------------------------------------------------- the contenders


def snapshot_steps(total: int, count: int) -> list[int]:
    """The steps after which weights are copied: `count` fractions of the run, the last being its end."""
    return sorted({max(1, round(total * k / count)) for k in range(1, count + 1)})


def run_open_clip(config: Config, steps: int, out: Path, marks: list[int], workers: int,
                  record_seen: bool = False, save_weights: bool = True) -> list[dict]:
    """open_clip_train on the CSV of our first `steps` steps, one epoch; returns its snapshot records."""
    out.mkdir(parents=True, exist_ok=True)
    base = training_set(config)
    csv_path = write_training_csv(base, trained_pairs(base, config, steps), out / "train.csv", out.parent / "images")
    o = config.optim
    argv = ["--train-data", str(csv_path), "--dataset-type", "csv", "--csv-img-key", "filepath",
            "--csv-caption-key", "title", "--model", MODEL_NAME, "--device", "cpu", "--precision", "fp32",
            "--batch-size", str(o.batch_size), "--epochs", "1", "--lr", str(o.lr), "--wd", str(o.weight_decay),
            "--beta1", str(o.betas[0]), "--beta2", str(o.betas[1]), "--eps", str(o.eps),
            "--warmup", str(warmup_steps(config, steps)), "--seed", str(config.train.seed),
            "--workers", str(workers), "--save-frequency", "0", "--zeroshot-frequency", "0",
            "--logs", str(out / "logs"), "--name", "run", "--log-every-n-steps", "10"]
    spec = {"model_name": MODEL_NAME, "model_config": open_clip_config(config.model), "argv": argv,
            "out": str(out), "snapshot_steps": marks, "record_seen": record_seen, "save_weights": save_weights}
    (out / "spec.json").write_text(json.dumps(spec, indent=1))
    clear_snapshots(out)
    (out / "seen.txt").unlink(missing_ok=True)
    shutil.rmtree(out / "logs", ignore_errors=True)  # open_clip refuses to start over an earlier run's log
    log = out / "open_clip.log"
    with open(log, "w") as f:
        code = subprocess.run([sys.executable, "-m", "miniclip.bench.open_clip_run", str(out / "spec.json")],
                              stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise RuntimeError(f"open_clip_train exited with {code}; last lines of {log}:\n" + "\n".join(tail))
    return json.loads((out / "snapshots.json").read_text())


def with_overrides(path: str, overrides: dict) -> Config:
    """The config at `path` (relative to the working directory, as the command line gives it) with `section.key:
    value` overrides, checked like `train --set`."""
    return derived_config(str(Path(path).resolve()), overrides)


def warmup_steps(config: Config, steps: int) -> int:
    """The config's warmup scaled to a run of `steps` steps: the same share of the run for every contender.
    Until 2026-12-06 every contender got the config's own warmup (250 steps, a tenth of the book model's 2,500),
    which was 17% of open_clip's 1,452-step run at the 28-minute budget and 29% of its 852 at 15 minutes: a
    handicap for the shorter runs, and so for the slower trainer."""
    return min(steps, round(config.optim.warmup_steps * steps / config.optim.steps))


def low_res_fraction(config: Config) -> float:
    """The share of a run's steps taken at `data.low_res_size` (0 without a low-resolution start)."""
    return config.data.low_res_steps / config.optim.steps


def ours_config(bench: RecipeBenchConfig, config: Config, steps: int, open_clip_recipe: bool,
                image_size: int | None = None) -> Config:
    """The bench's config run for `steps` steps, validated and saved only at the end (open_clip, run on a CSV
    without validation data, does neither either). A low-resolution start keeps its share of the steps; with
    `image_size` (calibration) every step is at that size instead."""
    overrides = {**bench.overrides, **timed_run_overrides(steps, config.data.val_size),
                 "optim.warmup_steps": warmup_steps(config, steps)}
    low = min(round(low_res_fraction(config) * steps), steps - 1)
    overrides.update({"data.low_res_steps": low, "data.low_res_size": config.data.low_res_size if low else 0})
    if image_size is not None:
        overrides.update({"model.image_size": image_size, "data.low_res_steps": 0, "data.low_res_size": 0})
    if open_clip_recipe:
        overrides.update(OPEN_CLIP_RECIPE)
    return with_overrides(bench.config, overrides)


def clear_snapshots(out: Path) -> None:
    """Remove an earlier run's copies from `out`: a run of another length copies at other steps, and its
    files would otherwise stay beside the new run's (about 50 MB each for the book's model)."""
    (out / "snapshots.json").unlink(missing_ok=True)
    for stale in out.glob("step*.safetensors"):
        stale.unlink()


class Snapshots:
    """Copies of a model's weights at chosen steps (safetensors, CLIP's parameter names), each stamped with the
    training seconds spent to reach it, listed in `snapshots.json`. The clock runs from `start()` and leaves
    out the time the copies themselves take. Both trainers use it: ours through `Trainer.run(after_step=...)`,
    open_clip's through `miniclip.bench.open_clip_run`."""

    def __init__(self, out: Path, steps: list[int], save_weights: bool = True):
        self.out, self.steps, self.save_weights, self.records = Path(out), set(steps), save_weights, []
        self.started, self.paused = None, 0.0

    def start(self) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def take(self, model: torch.nn.Module, step: int) -> None:
        if any(r["step"] == step for r in self.records):
            return
        began = time.perf_counter()
        record = {"step": step, "train_s": began - self.started - self.paused}
        if self.save_weights:
            weights = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(weights, str(self.out / f"step{step}.safetensors"))
            record["file"] = f"step{step}.safetensors"
        self.records.append(record)
        (self.out / "snapshots.json").write_text(json.dumps(self.records, indent=1))
        self.paused += time.perf_counter() - began


def run_ours(config: Config, out: Path, marks: list[int], save_weights: bool = True) -> list[dict]:
    """Our trainer from scratch in `out`; the weights after each step in `marks`, stamped like open_clip's."""
    out.mkdir(parents=True, exist_ok=True)
    clear_snapshots(out)
    snapshots = Snapshots(out, marks, save_weights)

    def after_step(trainer: Trainer) -> None:
        if trainer.step in snapshots.steps:
            snapshots.take(trainer.published_model, trainer.step)

    trainer = Trainer(config, out / "run", progress=False)
    snapshots.start()
    trainer.run(after_step=after_step)
    return snapshots.records


def seconds_per_step(records: list[dict], skip: int = 4) -> float:
    """The median step time of a calibration run, leaving out its first `skip` steps (start-up, or a first epoch)."""
    times = [r["train_s"] for r in sorted(records, key=lambda r: r["step"])]
    return statistics.median(b - a for a, b in zip(times[skip:], times[skip + 1:]))


# ----------------------------------------------------------------------------- scoring


def score(weights: Path, config: Config, retrieval_images: int | None, scenes_images: int | None) -> dict:
    """One copy of the weights (either trainer's: both use CLIP's parameter names) on the shared evaluator."""
    model = build_model(load_file(str(weights)), quick_gelu=config.model.quick_gelu)
    size = config.model.image_size
    recalls = {k: v for k, v in retrieval_scores(model, size, retrieval_images).items() if "_R@" in k}
    scores = {**recalls, "R@10_mean": (recalls["text_to_image_R@10"] + recalls["image_to_text_R@10"]) / 2}
    try:
        scores.update(scenes_scores(model, size, scenes_images))
    except MissingDataError:
        pass  # the Intel scenes are optional; the JSON's `scenes` says whether they were scored
    return scores


def time_to_reach(curve: list[dict], target: float, key: str = "R@10_mean") -> float | None:
    """The training seconds at which `curve` first reaches `target`, interpolated linearly between copies
    (from (0 s, 0) to the first); None if it never does."""
    previous_t, previous_q = 0.0, 0.0
    for point in curve:
        t, q = point["train_s"], point[key]
        if q >= target:
            if q == previous_q:
                return t
            return previous_t + (t - previous_t) * (target - previous_q) / (q - previous_q)
        previous_t, previous_q = t, q
    return None


def quality_at(curve: list[dict], seconds: float, key: str = "R@10_mean") -> float:
    """`curve`'s quality after `seconds` of training, interpolated linearly between copies (from (0 s, 0));
    held at the last copy's beyond it."""
    previous_t, previous_q = 0.0, 0.0
    for point in curve:
        t, q = point["train_s"], point[key]
        if seconds <= t:
            return previous_q + (q - previous_q) * (seconds - previous_t) / (t - previous_t) if t > previous_t else q
        previous_t, previous_q = t, q
    return previous_q


def ratio_text(ratio: dict) -> str:
    """A `speed_ratio` result in a few characters: "x1.42" or "not reached"."""
    return "not reached" if ratio["ratio"] is None else f"x{ratio['ratio']:.2f}"


def speed_ratio(slow: list[dict], fast: list[dict], key: str = "R@10_mean") -> dict:
    """How much sooner `fast` reaches the final quality of `slow`: time(slow) / time(fast)."""
    target = slow[-1][key]
    t_slow, t_fast = time_to_reach(slow, target, key), time_to_reach(fast, target, key)
    return {"target": target, "slow_s": t_slow, "fast_s": t_fast,
            "ratio": None if t_fast is None or not t_fast else t_slow / t_fast}


# ----------------------------------------------------------------------------- the whole bench


def _say(message: str) -> None:
    print(f"bench recipe: {message}", file=sys.stderr, flush=True)


def require_open_clip_train() -> None:
    """A one-line error, before anything runs, when open_clip's trainer or what it imports is missing."""
    missing = [m for m in ("open_clip_train", "pandas", "webdataset") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependency(f"bench recipe runs open_clip's own trainer, which needs {', '.join(missing)} "
                                "(install them with pip install -e '.[bench]')")


def calibrate(bench: RecipeBenchConfig, config: Config, work: Path) -> dict[str, float]:
    """Seconds per step of each trainer in short runs, open_clip's and ours alternated."""
    n = bench.calibration_steps
    every = list(range(1, n + 1))
    timing = {}
    for name in bench.contenders:
        if name == OPEN_CLIP:
            records = run_open_clip(config, n, work / "calibrate-open_clip", every, bench.open_clip_workers,
                                    save_weights=False)
            timing[name] = seconds_per_step(records)
            continue
        # Ours: a step at the model's size, and, with a low-resolution start (open_clip's recipe has none), one at
        # the smaller size too, in the proportion the run takes them. With `data.cache_images` the first epoch
        # decodes every photo and the later ones only crop them: the steps timed are the later ones.
        low = low_res_fraction(ours_config(bench, config, config.optim.steps, name == OURS_OC))
        sizes = {config.model.image_size: 1 - low, **({config.data.low_res_size: low} if low else {})}
        first = (flickr8k_steps_per_epoch(config.data, config.train.seed, config.optim.batch_size)
                 if config.data.cache_images else 0)
        timing[name] = sum(share * seconds_per_step(run_ours(
            ours_config(bench, config, first + n, name == OURS_OC, image_size=size),
            work / f"calibrate-{name}-{size}px", list(range(1, first + n + 1)), save_weights=False), skip=first + 4)
            for size, share in sizes.items())
    return timing


def run_recipe_bench(bench: RecipeBenchConfig | None = None) -> dict:
    """Calibrate, train each contender for the budget with copies of its weights, score every copy, and
    write `recipe.json` (curves, ratios, the machine and its load) to `bench.out`."""
    bench = bench or RecipeBenchConfig()
    require_open_clip_train()
    config = with_overrides(bench.config, bench.overrides)
    open_clip_config(config.model)  # refuses a text tower open_clip does not have, before anything runs
    out = Path(bench.out)
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="calibrate-", dir=out) as work:
        if not bench.steps:
            _say(f"calibrating: {bench.calibration_steps} steps of each trainer")
        step_s = {} if bench.steps else calibrate(bench, config, Path(work))
    steps = dict(bench.steps) or {name: max(bench.snapshots, int(bench.budget_s / s)) for name, s in step_s.items()}
    contenders = {}
    for name in bench.contenders:
        folder = out / name.replace(", ", "-").replace(" ", "_")
        marks = snapshot_steps(steps[name], bench.snapshots)
        timing = f" at {step_s[name]:.2f} s a step" if name in step_s else ""
        _say(f"{name}: training {steps[name]} steps{timing} into {folder}")
        load_before = os.getloadavg()[0]
        if name == OPEN_CLIP:
            records = run_open_clip(config, steps[name], folder, marks, bench.open_clip_workers, bench.record_seen)
        else:
            records = run_ours(ours_config(bench, config, steps[name], name == OURS_OC), folder, marks)
        load_after = os.getloadavg()[0]
        _say(f"{name}: trained in {records[-1]['train_s']:.0f} s; scoring {len(records)} copies")
        curve = [{"step": r["step"], "fraction": r["step"] / steps[name], "train_s": r["train_s"],
                  **score(folder / r["file"], config, bench.retrieval_images, bench.scenes_images)}
                 for r in records]
        contenders[name] = {"steps": steps[name], "warmup_steps": warmup_steps(config, steps[name]),
                            "calibrated_step_s": step_s.get(name), "load_before": load_before,
                            "load_after": load_after, "curve": curve}
    ratios = {label: speed_ratio(contenders[slow]["curve"], contenders[fast]["curve"])
              for label, slow, fast in RATIOS if slow in contenders and fast in contenders}
    # Calibration only approximates each trainer's step time, so the runs' lengths differ somewhat; every
    # contender's quality at the shortest run's end is the like-for-like reading.
    common = min(c["curve"][-1]["train_s"] for c in contenders.values())
    equal_time = {"train_s": common, **{name: quality_at(c["curve"], common) for name, c in contenders.items()}}
    scenes = any("scenes_photo_top1" in p for c in contenders.values() for p in c["curve"])
    result = {"bench": {**asdict(bench), "out": str(bench.out)}, "config": config.to_dict(), "machine": machine(),
              "torch": torch.__version__, "open_clip": _open_clip_version(), "scenes": scenes,
              "contenders": contenders, "ratios": ratios, "equal_time": equal_time, "wall_s": time.time() - t0,
              **finished_stamp()}
    result["path"] = str(write_results(result, out, "recipe.json"))
    return result


def _open_clip_version() -> str:
    return getattr(require_open_clip(), "__version__", "unknown")
