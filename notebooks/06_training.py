# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Training
#
# ## The paper says
#
# Every CLIP model was trained from scratch for 32 epochs with Adam and decoupled weight decay
# {cite:p}`loshchilov2019adamw`, decay applied to every weight except gains and biases, and a cosine
# learning-rate schedule {cite:p}`loshchilov2017sgdr` ({cite:t}`radford2021clip`, §2.5). The minibatch was
# 32,768 pairs. The temperature was learned from an initial 0.07 and clipped so the logits are never scaled by
# more than 100. To fit this in memory and time they used mixed precision, gradient checkpointing,
# half-precision Adam statistics and stochastically rounded text-encoder weights, and sharded the similarity
# computation over GPUs, each computing only the rows it needs for its own embeddings. The hyperparameter
# tables in the paper's appendix add a linear warm-up, and for the ViTs Adam's $\beta_2 = 0.98$,
# $\epsilon = 10^{-6}$ and a weight decay of 0.2, the values our configs use.
#
# ## The code
#
# Weight decay goes only to weight matrices and convolution kernels:
#
# ```{literalinclude} ../miniclip/train/trainer.py
# :pyobject: param_groups
# ```
#
# The schedule is a linear warm-up followed by a cosine decay:
#
# ```{literalinclude} ../miniclip/train/trainer.py
# :pyobject: learning_rate
# ```
#
# One step computes the loss in float32 even under autocast, applies the scheduled learning rate, skips
# (and counts) non-finite losses, and clips the temperature after the update:
#
# ```{literalinclude} ../miniclip/train/trainer.py
# :pyobject: Trainer.train_step
# :dedent:
# ```
#
# ```{literalinclude} ../miniclip/train/trainer.py
# :pyobject: Trainer.optimizer_step
# :dedent:
# ```
#
# The same trainer offers what the paper's scale needed (bf16/fp16 autocast, gradient checkpointing,
# GradCache accumulation so a large batch's negatives fit in small memory, data-parallel training with the
# features gathered across processes) and what a reader's machine needs (exact resume, atomic checkpoints,
# signal handling). Its configs are small YAML files; the Flickr8k model's, without the design notes at its
# top:
#
# ```{literalinclude} ../configs/cpu-flickr8k.yaml
# :language: yaml
# :start-at: "name: flickr8k"
# ```
#
# ## What it means
#
# Nothing here is exotic; the paper's recipe is a standard transformer recipe applied to a contrastive loss.
# Two details matter more than they look. Decaying the logit scale would pull the temperature up towards 1
# against the loss, so it is exempt. And the batch size is part of the *objective*, not only of the
# optimisation: at $N = 128$, as here, each caption competes with 127 others; at CLIP's 32,768 the task is
# much harder and much more informative. What this chapter cannot show at CPU scale is the paper's scaling;
# what it can show, at the end of this page, is how the learning rate and the batch size trade off in a short
# run, and how throughput grows with the batch on a two-core CPU.
#
# ## Run it
#
# The models of this profile were trained by `make train` (or, in the `ci` profile, on the spot in seconds).
# This notebook only reads what their runs recorded: `metrics.jsonl` and `provenance.json`.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from miniclip.book import (
    glue,
    machine_text,
    markdown_table,
    profile,
    read_metrics,
    show,
    trained_run,
    trained_shapes_world,
)
from miniclip.checkpoint import read_metadata
from miniclip.config import OptimConfig
from miniclip.data.loaders import shapes_config
from miniclip.eval.attributes import attribute_report
from miniclip.train.trainer import learning_rate

names = ["shapes"] if profile() == "ci" else ["shapes", "flickr8k"]
runs = {name: trained_run(name) for name in names}
metrics = {name: read_metrics(run) for name, run in runs.items()}
provenance = {name: json.loads((run / "provenance.json").read_text()) for name, run in runs.items()}
configs = {name: read_metadata(run / "final")["config"] for name, run in runs.items()}


def zeroshot_key(record):
    return next(k for k in record if k.startswith("zeroshot_") and k.endswith("_top1"))


def curriculum_switches(config: dict) -> list[float]:
    """The steps where a Shapes run's curriculum moves to its next phase (none without a curriculum)."""
    if config["data"]["dataset"] != "shapes":
        return []
    world = shapes_config(config["data"].get("shapes", {}), config["model"]["image_size"], config["train"]["seed"])
    optim = config["optim"]
    return [end / optim["batch_size"] for end in world.curriculum_ends(optim["steps"] * optim["batch_size"])]


# %% tags=["remove-input"]
rows = []
for name in names:
    train, val = metrics[name]
    prov, optim = provenance[name], configs[name]["optim"]
    key = zeroshot_key(val[-1])
    rows.append([name, configs[name]["data"]["dataset"], f"{prov['final_step']:,} × {optim['batch_size']}",
                 f"{prov['wall_s'] / 60:.1f} min", f"{np.median([r['samples_per_s'] for r in train]):.0f}",
                 f"{val[-1]['val_loss']:.3f}",
                 f"{key[9:-5]}: {val[-1][key]:.1%} (chance {val[-1][key.replace('top1', 'chance')]:.1%})"])
    glue(f"{name}_wall_min", prov["wall_s"] / 60, "{:.1f}")
    glue(f"{name}_val_loss", val[-1]["val_loss"], "{:.3f}")
    glue(f"{name}_zeroshot", val[-1][key], "{:.1%}")
    glue(f"{name}_final_scale", train[-1]["logit_scale"], "{:.1f}")
    glue(f"{name}_lnN", np.log(optim["batch_size"]), "{:.2f}")
display(markdown_table(rows, ["run", "data", "steps × batch", "wall time", "samples/s (median)", "final val. loss",
                              "zero-shot top-1 at the end"], align="llrrrrl"))
machine = provenance[names[0]]["machine"]
glue("train_machine", f"{machine_text(machine)}, torch {machine['torch']}")

# %% [markdown]
# The runs were recorded on {glue}`train_machine`. The Shapes run took {glue}`shapes_wall_min` minutes and
# ended at a validation loss of {glue}`shapes_val_loss` (a model that knows nothing scores
# $\ln N =$ {glue}`shapes_lnN` on a batch of the same size), with a held-out zero-shot top-1 of
# {glue}`shapes_zeroshot`.
#
# ### The schedule
#
# The learning rate the trainer applied, read back from the log, against the schedule function evaluated at
# every step of the same config:

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
for name in names:
    optim = OptimConfig(**{**configs[name]["optim"], "betas": tuple(configs[name]["optim"]["betas"])})
    steps = np.arange(optim.steps)
    ax.plot(steps + 1, [learning_rate(s, optim) for s in steps], label=f"{name}: learning_rate()")
    train, _ = metrics[name]
    ax.plot([r["step"] for r in train], [r["lr"] for r in train], "o", ms=3, label=f"{name}: logged")
ax.set_xlabel("optimizer step")
ax.set_ylabel("learning rate")
ax.set_title("Linear warm-up, then cosine decay to zero")
ax.legend(fontsize=8)
show(fig, "06_lr_schedule")

# %% [markdown]
# ```{glue:figure} 06_lr_schedule
# :name: fig-lr-schedule
#
# The learning-rate schedule of each run: the line is `learning_rate()` evaluated at every step of the run's
# config, the dots are what the trainer logged.
# ```
#
# ### The curves
#
# Training loss (per logged step), validation loss on held-out pairs, the learned temperature $e^{t}$, and
# the zero-shot accuracy the trainer checked at each validation:

# %%
fig, axes = plt.subplots(2, 2, figsize=(10, 6.6))
colours = {"shapes": "#2a9d8f", "flickr8k": "#e76f51"}
for name in names:
    train, val = metrics[name]
    key, c = zeroshot_key(val[-1]), colours[name]
    axes[0, 0].plot([r["step"] for r in train], [r["loss"] for r in train], color=c, lw=1, alpha=0.7,
                    label=f"{name} (training batches)")
    axes[0, 0].plot([r["step"] for r in val], [r["val_loss"] for r in val], "o--", color=c,
                    label=f"{name} (validation)")
    axes[0, 1].plot([r["step"] for r in train], [r["logit_scale"] for r in train], color=c, label=name)
    axes[1, 0].plot([r["step"] for r in val], [r[key] for r in val], "o-", color=c, label=f"{name}: {key[9:-5]}")
    axes[1, 0].axhline(val[-1][key.replace("top1", "chance")], ls=":", color=c)
    if "zeroshot_shape_top1" in val[-1]:  # Shapes: shape alone too, the attribute colour can hide
        axes[1, 0].plot([r["step"] for r in val], [r["zeroshot_shape_top1"] for r in val], "s--", color=c, ms=4,
                        label=f"{name}: shape alone")
    for switch in curriculum_switches(configs[name]):
        for ax in axes.flat[:3]:
            ax.axvline(switch, color=c, lw=0.8, ls="-.")
    axes[1, 1].plot([r["step"] for r in train], [r["samples_per_s"] for r in train], color=c, label=name)
axes[0, 0].set(xlabel="step", ylabel="contrastive loss", title="Loss")
axes[0, 1].set(xlabel="step", ylabel="$e^t$ (logit scale)", title="Learned temperature (inverse)")
axes[1, 0].set(xlabel="step", ylabel="zero-shot top-1", title="Zero-shot check (dotted: chance)")
axes[1, 1].set(xlabel="step", ylabel="samples / s", title="Throughput while training")
for ax in axes.flat:
    ax.legend(fontsize=7)
fig.tight_layout()
show(fig, "06_training_curves")

# %% [markdown]
# ```{glue:figure} 06_training_curves
# :name: fig-training-curves
#
# What the book's training runs recorded. Top left: loss on training batches and on held-out validation pairs.
# Top right: the learned logit scale. Bottom left: zero-shot top-1 at each validation (for Shapes, dashed: shape
# alone). Bottom right: samples per second between log points. Dash-dotted lines mark where each phase of a
# Shapes curriculum ends.
# ```
#
# The temperature is worth a look. It starts at $1/0.07 \approx 14.3$ and the Shapes run ends at
# $e^{t} =$ {glue}`shapes_final_scale`. OpenAI's released models end at the clip, 100. Our runs are a few
# hundred steps long and move this one scalar only a little; whether it would climb towards the clip with
# longer training is not something this build measures.
#
# ### A curriculum, so that shape is learned at all
#
# A contrastive model learns what its negatives require, and no more. In a batch of Shapes captions, colour
# alone tells most captions apart: trained on the full world from the first step, the cpu model learned colour
# within a few dozen steps and then never learned shape, staying at chance on shape zero-shot and close to it
# on a linear probe of its image features, although a supervised shape head on the same image tower learns
# shape quickly (the trials are recorded, with their commands, in `configs/cpu-shapes.yaml`). This is the
# behaviour {cite:t}`hermann2020shapes` describe: when an easy feature and a harder one both predict the
# target, a network uses the easy one and it can suppress the harder one. More steps, batches with one colour,
# plainer captions and minimal pairs differing only in shape did not break the habit. What did is a
# curriculum in three phases: first, pictures of one object whose captions usually name only its shape, so
# that shape is the only way to tell captions apart; then pictures of one to four objects, half of them groups
# of identical objects, whose captions say how many ("a photo of three triangles", "a photo of four shapes: a
# star, a cross and two circles", or only "a photo of three shapes"), so that the count joins the shape as
# something the captions differ by; then the full world, with more of its scenes groups and more of its
# captions stating a count than by default, since without them the model forgets much of its counting:
#
# ```{literalinclude} ../configs/cpu-shapes.yaml
# :language: yaml
# :start-after: "  dataset: shapes"
# :end-before: "  val_size:"
# ```
#
# The validation loss rises during the early phases, since validation uses the full world, whose captions the
# model has not yet seen; it falls steeply when the full world begins. What the model knows at the end, attribute by
# attribute, on test pictures of single objects (colour, shape, size, shape among the 8 pairs of the object's
# own colour, and (colour, shape) pairs training showed or held out), counts of 1–4 objects, two-object
# relations, and linear probes on the image features, each with its chance level and a 95% interval
# (`python -m miniclip eval attributes --checkpoint runs/cpu/shapes/final` prints the same):
#
# ```{literalinclude} ../miniclip/eval/attributes.py
# :pyobject: shape_given_colour_hits
# ```

# %%
shapes_model, shapes_world, _ = trained_shapes_world()
N_ATTR, N_PROBE = (32, 64) if profile() == "ci" else (256, 600)
attributes = attribute_report(shapes_model, shapes_world, n=N_ATTR, probe_n=N_PROBE)
display(markdown_table([[task.replace("_", " "), f"{r['accuracy']:.1%}", f"[{r['lo']:.1%}, {r['hi']:.1%}]",
                         f"{r['chance']:.1%}", r["n"]] for task, r in attributes.items()],
                       ["measure", "accuracy", "95% interval", "chance", "pictures"], align="lrrrr"))

# %% tags=["remove-input"]
for task in ("colour", "shape", "shape_given_colour", "heldout_pairs", "count", "size", "relation",
             "probe_shape", "probe_count"):
    glue(f"attr_{task}", attributes[task]["accuracy"], "{:.1%}")

# %% [markdown]
# Colour {glue}`attr_colour`, shape {glue}`attr_shape`, shape given the colour {glue}`attr_shape_given_colour`,
# held-out (colour, shape) pairs {glue}`attr_heldout_pairs` among all 64 (the composition chapter 7 builds on),
# and a linear probe reads shape from the image features at {glue}`attr_probe_shape`. Counting:
# {glue}`attr_count` (chance 25%; the prompts are "a photo of three shapes" and the like, on scenes of any
# objects), and a probe reads the count from the image features at {glue}`attr_probe_count`. The image side
# learned to count before the prompts could say it: while the captions used "three shapes" only at the head of
# a list ("three shapes: a circle, …"), never alone as the prompt does, the probe already read the count almost
# perfectly and the prompts lagged far behind. Captions that say only how many objects there are closed the
# gap (the trials, with their numbers and commands, are in `configs/cpu-shapes.yaml`). Size
# ({glue}`attr_size`, chance 50%) no phase makes necessary: captions can leave it out, and in the trials naming
# it early cost shape, since size too is easier to see. Relations ({glue}`attr_relation`, chance 50%) are
# chapter 14's subject.
#
# ### Mixed precision on a CPU
#
# The paper trained in mixed precision. The book's cpu models are trained in float32 (`train.precision: fp32`)
# because they must run on any reader's CPU, and on CPUs without bfloat16 matrix units (most laptops' AVX2
# processors) bfloat16 products run far slower than float32. Where the processor has such units, bf16 autocast
# can be faster: the figure below measures both on the processor that built this page, and
# `python -m miniclip bench model` does the same for a training step. On a GPU, `train.precision: bf16` turns
# autocast on and keeps the loss in float32.

# %%
from miniclip.book import experiment, not_computed
from miniclip.book.viz import ZEROSHOT_TASKS, plot_lr_batch, plot_throughput

throughput = experiment("throughput")
if throughput is None:
    not_computed("06_throughput", ("best_batch", "best_samples", "small_batch", "small_samples", "bf16_note"))
else:
    t = throughput["result"]
    show(plot_throughput(t["points"], title=f"Shapes model training throughput ({t['device']}, "
                                            f"{t['threads']} threads)"), "06_throughput")

# %% tags=["remove-input"]
if throughput is not None:
    display(markdown_table(([p["batch_size"], p["precision"], p["steps_timed"], p["median_step_s"], p["samples_per_s"]]
                            for p in t["points"]), ["batch", "precision", "steps timed", "median step", "samples / s"],
                           align="rlrrr", formats={"median step": "{:.2f} s", "samples / s": "{:.1f}"}))
    fp32 = sorted((p for p in t["points"] if p["precision"] == "fp32"), key=lambda p: p["batch_size"])
    best = max(fp32, key=lambda p: p["samples_per_s"])
    glue("best_batch", best["batch_size"]), glue("best_samples", best["samples_per_s"], "{:.0f}")
    glue("small_batch", fp32[0]["batch_size"]), glue("small_samples", fp32[0]["samples_per_s"], "{:.0f}")
    processor = machine_text(throughput["provenance"]["machine"])
    glue("bf16_note", t.get("bf16_skipped") or f"On the processor that ran the experiment ({processor}) a float32 "
         f"matrix product runs at {t['matmul_gflops']['fp32']:.1f} GFLOP/s and a bfloat16 one at "
         f"{t['matmul_gflops']['bf16']:.1f}; bf16 was timed at every batch size.")

# %% [markdown]
# ```{glue:figure} 06_throughput
# :name: fig-throughput
#
# Training samples per second of the Shapes model against batch size, float32 and bfloat16 autocast, on the
# machine that ran `make experiments` (the `throughput` experiment). Each point is the median of a few timed
# steps.
# ```
#
# In float32, throughput rises from {glue}`small_samples` samples/s at batch {glue}`small_batch` to a peak of
# {glue}`best_samples` at batch {glue}`best_batch`: small batches leave the two cores waiting on Python and
# memory, large ones are bound by arithmetic. {glue}`bf16_note`
#
# ### Data parallelism as a picture
#
# Because the batch is part of the objective, splitting it across processes must not shrink it. Each process
# encodes its share, gathers every other process's features, and computes the loss over the whole global
# batch; the gather's backward sums what every process sends back for a process's own rows:
#
# ```{literalinclude} ../miniclip/distributed.py
# :pyobject: _GatherWithGrad.backward
# :dedent:
# ```

# %%
from miniclip.book.diagrams import draw_data_parallel

show(draw_data_parallel(world=3, local=2), "06_data_parallel")

# %% [markdown]
# ```{glue:figure} 06_data_parallel
# :name: fig-data-parallel
#
# Data-parallel CLIP, drawn by `miniclip.book.diagrams.draw_data_parallel`: three processes of two pairs each
# score one 6 × 6 global batch. `tests/test_loss.py` checks, with two real processes (gloo), that the loss
# and gradients equal a single process's on the whole batch.
# ```
#
# ### Learning rate × batch size
#
# The paper tuned its hyper-parameters on small models trained for one epoch and then scaled up (§2.5). Our
# sweep is that step in miniature: three peak learning rates and two batch sizes, every run seeing the same
# number of Shapes pictures, so a larger batch takes fewer (and larger) steps.

# %%
lr_batch = experiment("lr_batch")
if lr_batch is None:
    not_computed("06_lr_batch", ("sweep_samples", "sweep_best", "sweep_worst", "sweep_lrs", "sweep_batches"))
else:
    grid = lr_batch["result"]["grid"]
    show(plot_lr_batch(grid, title="Learning rate × batch size on Shapes, equal samples seen"), "06_lr_batch")

# %% tags=["remove-input"]
def describe(g):
    return (f"lr {g['lr']:g}, batch {g['batch_size']} ({g['steps']} steps): colour zero-shot "
            f"{g['zeroshot']['seen_colour']:.0%}, validation loss {g['val']['val_loss']:.2f}")


if lr_batch is not None:
    display(markdown_table(([f"{g['lr']:g}", g["batch_size"], g["steps"], g["val"]["val_loss"],
                             *(g["zeroshot"][task] for task in ZEROSHOT_TASKS)] for g in grid),
                           ["peak lr", "batch", "steps", "val. loss", *ZEROSHOT_TASKS.values()],
                           formats={"val. loss": "{:.3f}", **{name: "{:.0%}" for name in ZEROSHOT_TASKS.values()}}))
    ranked = sorted(grid, key=lambda g: g["zeroshot"]["seen_colour"])
    glue("sweep_samples", grid[0]["samples"], "{:,}")
    glue("sweep_best", describe(ranked[-1])), glue("sweep_worst", describe(ranked[0]))
    glue("sweep_lrs", ", ".join(f"{lr:g}" for lr in sorted({g["lr"] for g in grid})))
    glue("sweep_batches", " and ".join(str(b) for b in sorted({g["batch_size"] for g in grid})))

# %% [markdown]
# ```{glue:figure} 06_lr_batch
# :name: fig-lr-batch
#
# Validation loss (left) and zero-shot colour accuracy (right) against the peak learning rate, for batch sizes
# {glue}`sweep_batches`, every run seeing the same number of pictures. Computed by `make experiments` (the
# `lr_batch` experiment); one seed per point.
# ```
#
# Each run saw {glue}`sweep_samples` pictures, with peak learning rates {glue}`sweep_lrs`. Best: {glue}`sweep_best`.
# Worst: {glue}`sweep_worst`. Two cautions in reading it. The validation losses of the two batch sizes are not
# comparable with each other (a row of 128 candidates is a harder task than a row of 64); compare along a line.
# And at equal samples the smaller batch takes twice the steps, which in a run this short matters as much as
# the batch itself: the sweep says which setting learns fastest *per picture* early on, not which would end
# best after a full schedule.
