"""Architecture and optimisation experiments: ViT vs ModifiedResNet, an LR x batch-size grid, throughput.

- `encoders`: image tower (ViT or ModifiedResNet, of similar training cost) x text tower (CLIP's causal one or a
  BERT-style one), each with several seeds, trained the same number of steps on
  Flickr8k, compared by Flickr8k test retrieval (R@1/5/10 both ways) and CIFAR-10 zero-shot; and a ViT on
  Shapes. Both ViT checkpoints are kept (`vit_checkpoint`): the attention chapter reads their attention maps.
- `lr_batch`: a small grid of learning rates and batch sizes, each run at the same number of samples seen,
  reporting the final validation loss and Shapes zero-shot accuracy.
- `throughput`: training steps per second and samples per second against batch size, fp32 and bf16.
- `recipe` (opt-in, hours on a CPU): the real-photo recipe's levers, each one change to the book's Flickr8k
  config, several seeds each, compared by Flickr8k test retrieval and Intel scenes zero-shot.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import warnings

import torch
from torch.utils.data import Subset

from miniclip.checkpoint import load_model
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.folders import open_test_set
from miniclip.data.transforms import eval_transform
from miniclip.env import matmul_peak, synchronize
from miniclip.env import profile as active_profile
from miniclip.eval.classnames import INTEL_SCENES_CAPTION_WORDS
from miniclip.eval.classnames import class_names as translated_class_names
from miniclip.eval.probes import evaluate_retrieval
from miniclip.eval.zeroshot import (
    TEMPLATE_SETS,
    classifier_weights,
    evaluate_zeroshot,
    image_features,
    zeroshot_metrics,
)
from miniclip.experiments.shapes_eval import ShapesZeroShot, clip_scorer, shapes_world
from miniclip.experiments.store import cached_part, derived_config, work_dir
from miniclip.experiments.training import train_contrastive
from miniclip.tokenizer import tokenize
from miniclip.train.runs import train_if_changed
from miniclip.train.trainer import Trainer

# ----------------------------------------------------------------------------- encoder variants


def vit_checkpoint(dataset: str, profile: str | None = None):
    """Where the `encoders` experiment keeps its ViT for `dataset` ("flickr8k" or "shapes"):
    runs/<profile>/experiments/encoders/<dataset>-vit/final.safetensors."""
    return work_dir("encoders", profile or active_profile()) / f"{dataset}-vit" / "final.safetensors"


def train_kept(config, out_dir) -> dict:
    """Train `config` into `out_dir` unless a finished run with exactly this config is there
    (`train_if_changed`); returns what the experiment's JSON records of it (wall time, samples seen)."""
    result = train_if_changed(config, out_dir, progress=False)
    prov = json.loads((out_dir / "provenance.json").read_text())
    return {"checkpoint": str(out_dir / "final.safetensors"), "reused": result["status"] == "up to date",
            "train_wall_s": prov.get("wall_s"), "steps": config.optim.steps,
            "samples_seen": config.optim.steps * config.optim.batch_size}


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def retrieval_scores(model, image_size: int, n_images: int | None) -> dict:
    """Flickr8k test retrieval; `n_images` keeps only the first images (and their captions) to save time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note about absent images, already given at training time
        test = Flickr8k(split="test", transform=eval_transform(image_size), train=False)
    if n_images is not None:
        test.keep_first(n_images)
    return evaluate_retrieval(model, test)


def _cifar10(model, image_size: int, n_images: int | None, templates: str) -> dict:
    """CIFAR-10 test zero-shot; `n_images` takes every k-th image (the copy is sorted by class, so the
    subset stays balanced)."""
    test = open_test_set("cifar10", eval_transform(image_size))
    names = test.class_names
    if n_images is not None and n_images < len(test):
        test = Subset(test, list(range(0, len(test), len(test) // n_images))[:n_images])
    result = evaluate_zeroshot(model, test, names, TEMPLATE_SETS[templates])
    result.pop("per_class", None)
    return result


def run_encoders(settings: dict, profile: str) -> dict:
    """Settings: `flickr8k` {base, overrides}, `variants` {name: extra model overrides} (image tower and text
    tower), `seeds` (default [0]), `shapes_vit` {base, overrides}, `retrieval_images`, `cifar_images` (null:
    all), `templates`.

    Every variant trains once per seed (the first seed's run keeps the plain name `flickr8k-<variant>`, the
    others get `-seed<k>`); its entry holds each seed's scores (`per_seed`), their mean (`retrieval`,
    `cifar10_zeroshot`) and their lowest and highest value (`range`), so that a difference between variants can
    be read against the spread between seeds."""
    out = {"flickr8k": {}, "shapes_vit": None}
    seeds = settings.get("seeds", [0])
    for name, model_overrides in settings["variants"].items():
        per_seed = []
        for seed in seeds:
            overrides = {**settings["flickr8k"].get("overrides", {}), **model_overrides, "train.seed": seed}
            run_name = f"flickr8k-{name}" + ("" if seed == seeds[0] else f"-seed{seed}")
            config = derived_config(settings["flickr8k"]["base"], overrides, name=run_name, profile=profile)
            run_dir = work_dir("encoders", profile) / run_name
            entry = {"seed": seed, **train_kept(config, run_dir)}
            model = load_model(run_dir / "final")
            entry["retrieval"] = retrieval_scores(model, config.model.image_size, settings.get("retrieval_images"))
            entry["cifar10_zeroshot"] = _cifar10(model, config.model.image_size, settings.get("cifar_images"),
                                                 settings.get("templates", "simple"))
            per_seed.append(entry)
        out["flickr8k"][name] = {
            "model": {k: v for k, v in config.to_dict()["model"].items()
                      if k in ("image_size", "vision_layers", "vision_width", "patch_size", "text_causal",
                               "text_pool")},
            "image_params": parameter_count(model.visual), "text_params": parameter_count(model.transformer),
            "per_seed": per_seed, **_seed_summary(per_seed)}

    s = settings["shapes_vit"]
    config = derived_config(s["base"], s.get("overrides"), name="shapes-vit", profile=profile)
    run_dir = work_dir("encoders", profile) / "shapes-vit"
    entry = train_kept(config, run_dir)
    model = load_model(run_dir / "final")
    entry["image_params"] = parameter_count(model.visual)
    zeroshot = ShapesZeroShot(shapes_world(config), settings.get("shapes_eval_images", 500))
    entry["zeroshot"] = zeroshot(clip_scorer(model))
    out["shapes_vit"] = entry
    out["vit_checkpoints"] = {"flickr8k": str(vit_checkpoint("flickr8k", profile)),
                              "shapes": str(vit_checkpoint("shapes", profile))}
    return out


# ----------------------------------------------------------------------------- the real-photo recipe


def run_recipe(settings: dict, profile: str) -> dict:
    """Settings: `base`, `overrides` (shared by every run), `variants` {name: overrides, the first one the
    reference}, `seeds`, `retrieval_images` (null: all), `scenes_images` (null: all).

    Each variant is the base config with its overrides, trained once per seed and scored by Flickr8k test
    retrieval and by Intel scenes zero-shot with "a photo of {}.", with the eight scene templates, and with the
    scene templates and the captions' words for each class (`INTEL_SCENES_CAPTION_WORDS`). Each variant's entry
    holds every seed's scores and training time, their mean and their (lowest, highest)."""
    out = {}
    seeds = settings.get("seeds", [0])
    for name, variant in settings["variants"].items():
        per_seed = []
        for seed in seeds:
            overrides = {**settings.get("overrides", {}), **(variant or {}), "train.seed": seed}
            run_name = f"{name}-seed{seed}"
            config = derived_config(settings["base"], overrides, name=run_name, profile=profile)
            run_dir = work_dir("recipe", profile) / run_name
            entry = {"seed": seed, **train_kept(config, run_dir)}
            model = load_model(run_dir / "final")
            recalls = retrieval_scores(model, config.model.image_size, settings.get("retrieval_images"))
            entry["scores"] = {**{k: v for k, v in recalls.items() if "_R@" in k},
                               **scenes_scores(model, config.model.image_size, settings.get("scenes_images"))}
            per_seed.append(entry)
        keys = per_seed[0]["scores"]
        out[name] = {"overrides": variant or {}, "per_seed": per_seed,
                     "train_minutes": statistics.fmean(e["train_wall_s"] or 0 for e in per_seed) / 60,
                     "mean": {k: statistics.fmean(e["scores"][k] for e in per_seed) for k in keys},
                     "range": {k: (min(e["scores"][k] for e in per_seed), max(e["scores"][k] for e in per_seed))
                               for k in keys}}
    return {"variants": out, "seeds": seeds}


def scenes_scores(model, image_size: int, n_images: int | None) -> dict:
    """Intel scenes test zero-shot top-1 with one template, the scene ensemble, and the ensemble over each class's
    caption words; `n_images` takes every k-th image (the copy is sorted by class)."""
    test = open_test_set("intel-scenes", eval_transform(image_size))
    if n_images is not None and n_images < len(test):
        test = Subset(test, list(range(0, len(test), len(test) // n_images))[:n_images])
    names = translated_class_names("intel-scenes")
    prompt_sets = {"scenes_photo_top1": (names, ("a photo of {}.",)),
                   "scenes_ensemble_top1": (names, TEMPLATE_SETS["scenes"]),
                   "scenes_caption_words_top1": (INTEL_SCENES_CAPTION_WORDS, TEMPLATE_SETS["scenes"])}
    features, labels = image_features(model, test)  # once, for the three classifiers
    return {key: zeroshot_metrics(features, labels, classifier_weights(model, class_names, templates), names)["top1"]
            for key, (class_names, templates) in prompt_sets.items()}


def _seed_summary(per_seed: list[dict]) -> dict:
    """The mean over seeds of every retrieval recall and of CIFAR-10 top-1, and each one's (lowest, highest)."""
    def values(entry: dict) -> dict[str, float]:
        recalls = {k: v for k, v in entry["retrieval"].items() if "_R@" in k}
        return {**recalls, "cifar10_top1": entry["cifar10_zeroshot"]["top1"]}

    table = [values(e) for e in per_seed]
    mean = {k: statistics.fmean(t[k] for t in table) for k in table[0]}
    spread = {k: (min(t[k] for t in table), max(t[k] for t in table)) for k in table[0]}
    retrieval = {**{k: v for k, v in mean.items() if "_R@" in k},
                 "images": per_seed[0]["retrieval"]["images"], "captions": per_seed[0]["retrieval"]["captions"]}
    cifar = {**per_seed[0]["cifar10_zeroshot"], "top1": mean["cifar10_top1"]}
    return {"retrieval": retrieval, "cifar10_zeroshot": cifar, "range": spread, "seeds": len(per_seed)}


# ----------------------------------------------------------------------------- LR x batch size


def run_lr_batch(settings: dict, profile: str) -> dict:
    """Settings: `base`, `overrides`, `lrs`, `batch_sizes`, `samples` (per run), `warmup_fraction`,
    `eval_images`. Every run sees the same number of samples, so a larger batch takes fewer steps."""
    grid = []
    zeroshot = None
    for batch_size in settings["batch_sizes"]:
        steps = max(1, settings["samples"] // batch_size)
        for lr in settings["lrs"]:
            overrides = {**settings.get("overrides", {}), "optim.batch_size": batch_size, "optim.lr": lr,
                         "optim.steps": steps, "optim.warmup_steps": round(settings["warmup_fraction"] * steps)}
            config = derived_config(settings["base"], overrides, name=f"lr{lr:g}-b{batch_size}", profile=profile)
            zeroshot = zeroshot or ShapesZeroShot(shapes_world(config), settings["eval_images"])

            def one_model(config=config, lr=lr, batch_size=batch_size, steps=steps):
                run = train_contrastive(config, desc=config.name)
                return {"lr": lr, "batch_size": batch_size, "steps": steps, "samples": steps * batch_size,
                        "val": run["val"], "zeroshot": zeroshot(clip_scorer(run["model"])),
                        "wall_s": run["wall_s"], "bad_steps": run["bad_steps"]}

            key = {"config": config.to_dict(), "eval_images": settings["eval_images"]}
            grid.append(cached_part("lr_batch", config.name, profile, key, one_model))
    return {"grid": grid, "note": "val_loss is the contrastive loss over validation batches of the run's own batch "
            "size, so it is comparable along an LR row but not across batch sizes (chance is ln(batch)); the "
            "zero-shot accuracies are comparable everywhere."}


# ----------------------------------------------------------------------------- throughput


def time_steps(config, batch_size: int, precision: str, steps: int, warmup: int = 1) -> dict:
    """Median wall time of full training steps (forward, loss, backward, AdamW) on one fixed batch of
    random pixels and real Shapes captions, for `config`'s model at `batch_size` and `precision`."""
    config.optim.batch_size, config.train.precision = batch_size, precision
    config.data.zeroshot = "none"
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, tmp, progress=False)
    world = shapes_world(config)
    captions = world.captions(world.scenes(range(batch_size)))
    size = config.model.image_size
    images = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    tokens = tokenize(captions, config.model.context_length)
    times = []
    for i in range(warmup + steps):
        synchronize(trainer.device)  # a GPU runs ahead of the host clock: time only this step's work
        t0 = time.perf_counter()
        trainer.optimizer_step(trainer.train_step(images, tokens))
        synchronize(trainer.device)
        if i >= warmup:  # the first steps warm allocators and caches up
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"batch_size": batch_size, "precision": precision, "steps_timed": steps, "median_step_s": median,
            "steps_per_s": 1 / median, "samples_per_s": batch_size / median, "times_s": times}


def run_throughput(settings: dict, profile: str) -> dict:
    """Settings: `base`, `overrides`, `batch_sizes`, `steps` (timed per point), `bf16_batch_size`,
    `matmul_size` (of the matrices that measure the fp32 and bf16 matmul rates; default 2048).

    fp32 at every batch size. bf16 autocast is timed once, at `bf16_batch_size`, with one step; it runs at
    every batch size only where bf16 matrix multiplication is at least as fast as fp32 (a GPU, or a CPU with
    AVX-512 BF16 / AMX). Where it is not, the reason is recorded with the matmul rates that show it."""
    def config():
        return derived_config(settings["base"], settings.get("overrides"), name="throughput", profile=profile)

    device = "cuda" if torch.cuda.is_available() and config().train.device in ("auto", "cuda") else "cpu"
    n = settings.get("matmul_size", 2048)
    gflops = {"fp32": matmul_peak(torch.float32, n=n, device=device, seconds=1.0),
              "bf16": matmul_peak(torch.bfloat16, n=n, device=device, seconds=1.0)}
    points = [time_steps(config(), b, "fp32", settings["steps"]) for b in settings["batch_sizes"]]
    bf16_fast = gflops["bf16"] >= gflops["fp32"]
    bf16_sizes = settings["batch_sizes"] if bf16_fast else [settings["bf16_batch_size"]]
    for b in bf16_sizes:
        points.append(time_steps(config(), b, "bf16", settings["steps"] if bf16_fast else 1, warmup=0 if not
                                 bf16_fast else 1))
    out = {"points": points, "matmul_gflops": gflops, "device": device,
           "threads": torch.get_num_threads()}
    if not bf16_fast:
        out["bf16_skipped"] = (
            f"bf16 matmul runs at {gflops['bf16']:.2f} GFLOP/s here against {gflops['fp32']:.1f} for fp32: this "
            f"processor has no bf16 matrix units, so autocast to bf16 makes every step slower. It was timed once "
            f"(batch {settings['bf16_batch_size']}, one step, no warm-up) to show the size of the effect; the "
            f"other batch sizes are skipped.")
    return out
