# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Efficiency
#
# ## The paper says
#
# CLIP's first design choice was made for efficiency: predicting the exact words of a caption learned
# zero-shot ImageNet three times more slowly than a bag-of-words objective, which in turn was four times
# slower than the contrastive objective ({cite:t}`radford2021clip`, §2.3, Fig. 2). Training the largest models
# then leaned on every engineering saving available: mixed precision, gradient checkpointing, half-precision
# Adam statistics and a similarity matrix sharded across GPUs (§2.5).
#
# This appendix is the book's counterpart of the seed report's efficiency table (its Table 8) and throughput
# figure (its Fig. 26). Every number here comes from `python -m miniclip bench all` (see `bench/README.md`),
# which times our training step against open_clip's on the same architecture, weights, captions and machine,
# in one run, as ratios, and relates both to this machine's own measured matrix-multiply peak.
#
# ## The code
#
# Model FLOPs are counted analytically from the config (a test checks the count against PyTorch's
# `FlopCounterMode` exactly); the backward pass costs twice the forward:
#
# ```{literalinclude} ../miniclip/bench/flops.py
# :pyobject: step_flops
# ```
#
# Model FLOP utilisation (MFU) is achieved FLOP/s over the measured peak:
#
# ```{literalinclude} ../miniclip/bench/flops.py
# :pyobject: mfu
# ```
#
# The biggest single saving is in the model itself: with a causal mask, the text tokens after the last
# end-of-text token in a batch cannot change any end-of-text feature, so the text tower runs only that far:
#
# ```{literalinclude} ../miniclip/model.py
# :pyobject: CLIP.text_positions
# :dedent:
# ```
#
# ## What it means
#
# On a CPU the whole step is matrix multiplies, so the honest yardstick is the machine's own `torch.mm` rate;
# a step near that rate cannot be made much faster except by doing fewer FLOPs. That is where our gains come
# from: Flickr8k captions are about 15 tokens long, and a context of 77 spends most of the text tower's work on
# padding. An MFU figure credits each model with the FLOPs it actually runs, so open_clip, doing more
# useless work, can show a higher MFU while being slower. Read the ratio first.
#
# On a CPU without bfloat16 matrix units (the bf16 `torch.mm` peak is measured below) bf16 runs far slower than
# fp32; the benchmark detects that and records why it skips bf16 instead of reporting a meaningless slowdown.
# Where the CPU has them, bf16 is timed like fp32 (the table's `ceiling` rows say which case it shows). On a
# GPU, the same suite (`python -m miniclip bench all --device cuda`: ViT-B/32 at 224 px, bf16, batch 256) is the
# one to read; it was not run for this build.
#
# ## Run it
#
# In the `cpu` profile this page reads `runs/bench/all-cpu.json`, written by `make bench`, and when you have not
# run that, `bench/all-cpu.json`, a quiet run committed with the repository; in the gpu profiles,
# `runs/bench/all-cuda.json`, written by `python -m miniclip bench all --device cuda`. When there is no such file
# (and in the `ci` profile) it runs a tiny version of the same suite here, in seconds, and says so: those numbers
# only show the machinery working.

# %%
import contextlib
import io
import json

import matplotlib.pyplot as plt

from miniclip.bench.recipe import OPEN_CLIP, OURS, OURS_OC, RATIOS, quality_at, speed_ratio
from miniclip.bench.suite import SuiteConfig, run_all
from miniclip.book import ROOT, glue, markdown_table, not_computed, note, profile, show
from miniclip.model import CLIPConfig

GPU_BOOK = profile().startswith("gpu")
saved = ROOT / "runs" / "bench" / ("all-cuda.json" if GPU_BOOK else "all-cpu.json")
command = "python -m miniclip bench all --device cuda" if GPU_BOOK else "make bench"
# This machine's own run when there is one, else (on a CPU) the quiet run committed with the repository.
if not saved.exists() and not GPU_BOOK:
    saved = ROOT / "bench" / "all-cpu.json"


def finished_text(result: dict) -> str:
    """The words ', finished <date> <time> UTC' from a bench result's `finished` stamp; '' when it has none."""
    stamp = result.get("finished")
    return f", finished {stamp[:16].replace('T', ' ')} UTC" if stamp else ""


if profile() != "ci" and saved.exists():
    results = json.loads(saved.read_text())
    glue("bench_source", f"`{saved.relative_to(ROOT)}`, written by `{command}` in {results['wall_s'] / 60:.1f} "
                         f"minutes{finished_text(results)}", markdown=True)
else:
    if profile() != "ci":
        note(f"`runs/bench/{saved.name}` is missing: run `{command}`{'' if GPU_BOOK else ' (about 15 minutes)'}. "
             "This page shows a tiny suite run now instead; its numbers are smoke, not results.")
    tiny = CLIPConfig(embed_dim=64, image_size=32, patch_size=8, vision_width=64, vision_layers=2, text_width=64,
                      text_layers=2, head_width=32)
    suite = SuiteConfig(archs=(tiny,), compile_archs=(), precisions=("fp32",), batch_sizes=(8, 16),
                        rounds=2, warmup=1, data_seconds=0.2, data_configs=(), shard_samples=16,
                        cache_images=4, eval_checkpoint=tiny, zeroshot_images=16, retrieval_images=8,
                        peak_size=512, peak_seconds=0.2)
    with contextlib.redirect_stdout(io.StringIO()):  # the suite's progress log; its table is shown below
        results = run_all(suite, out_dir=None)
    glue("bench_source", "a tiny suite run while this page was built (smoke, not results)")
markdown_table([[r["section"], r["item"], r["value"], r["note"]] for r in results["summary"]],
               ["section", "measurement", "value", "note"], align="llrl")

# %% [markdown]
# The table above comes from {glue}`bench_source`. Its sections: the **ceiling** (this machine's
# matrix-multiply peak per precision), each **step** timed against open_clip with the per-round spread of the
# ratio, the **MFU** of both, the **ablations** (each optimisation turned off in the same run: a ratio above 1
# means turning it off is slower, so it is kept), the **data** paths against what training consumes, the
# **evaluation** throughput, and the **memory** high-water mark.
#
# ### Throughput against batch size
#
# Samples per second of one training step, ours and open_clip's, at each batch size timed (the counterpart of
# the seed report's Fig. 26; on this CPU only fp32 is meaningful):

# %%
steps = [r for name, sec in results["sections"].items() if name.startswith("model") for r in sec.get("runs", [])
         if not r["config"]["compile"]]
# One panel per precision timed (bf16 only where the processor has bf16 matrix units); colour: architecture.
precisions = sorted({r["config"]["precision"] for r in steps}, key=lambda p: p != "fp32")
archs = sorted({r["config"]["arch"] for r in steps})
fig, axes = plt.subplots(1, len(precisions), figsize=(4.2 * len(precisions), 3.6), squeeze=False)
for ax, precision in zip(axes[0], precisions):
    for colour, arch in zip(("C0", "C2", "C4"), archs):
        for who, style in (("miniclip", "o-"), ("open_clip", "s--")):
            points = sorted((r["config"]["batch_size"], r["contenders"][who]["samples_per_s"]) for r in steps
                            if (r["config"]["arch"], r["config"]["precision"]) == (arch, precision)
                            and "samples_per_s" in r["contenders"].get(who, {}))
            if points:
                ax.plot(*zip(*points), style, color=colour, label=f"{arch}: {who}")
    ax.set_xlabel("batch size (pairs)")
    ax.set_ylabel("training samples / s")
    ax.set_xscale("log", base=2)
    ax.set_title(f"One training step, {precision}, eager")
    ax.legend(fontsize=7)
show(fig, "appendix_e_throughput")
speedups = [r["speedup"]["median"] for r in steps if "speedup" in r]
glue("bench_best_speedup", max(speedups) if speedups else float("nan"), "×{:.2f}")
glue("bench_worst_speedup", min(speedups) if speedups else float("nan"), "×{:.2f}")

# %% [markdown]
# ```{glue:figure} appendix_e_throughput
# :name: fig-throughput-batch
#
# Training-step throughput against batch size, miniclip and open_clip on identical architectures and weights,
# fp32 and (only on a processor with bf16 matrix units) bf16, measured in interleaved rounds in one run.
# ```
#
# Across the eager steps timed, miniclip's step is between {glue}`bench_worst_speedup` and
# {glue}`bench_best_speedup` as fast as open_clip's, median over rounds.

# %% [markdown]
# ### Time to a given quality: open_clip's trainer against ours
#
# A faster step is only worth what it saves a reader waiting for a trained model. `python -m miniclip bench recipe`
# (about an hour on 2 cores; it needs `open_clip_train`, in the `bench` extra) trains the book's Flickr8k
# architecture three times for the same wall-clock budget: with open_clip's own training script fed a CSV of image
# paths and captions, as its users run it; with our trainer and the book's recipe; and with our trainer and
# open_clip's defaults (its crops, no label smoothing, captions read whole). Both trainers see the same (image,
# caption) pairs, those our sampler draws, each in its own order; copies of the weights taken along each run are
# scored by one evaluator.
#
# ```{literalinclude} ../miniclip/bench/recipe.py
# :pyobject: speed_ratio
# ```

# %%
# This machine's own run when there is one, else the quiet run committed with the repository.
recipe_saved = ROOT / "runs" / "bench" / "recipe" / "recipe.json"
if not recipe_saved.exists():
    recipe_saved = ROOT / "bench" / "recipe-cpu.json"
# The same bench at the default budget, about half the book model's training time, committed beside it.
recipe_half_saved = ROOT / "bench" / "recipe-cpu-15min.json"
# The 28-minute run before the bench scaled each contender's warmup with its run, kept for what it showed.
recipe_unscaled_saved = ROOT / "bench" / "recipe-cpu-before-warmup-fix.json"
# open_clip's trainer alone, run again with that run's config and step count: its own spread.
recipe_repeat_saved = ROOT / "bench" / "recipe-cpu-open_clip-repeat.json"
RATIO_NAMES = ("recipe_total", "recipe_step", "recipe_recipe", "recipe_equal_time", "recipe_step_times",
               "recipe_other_budget", "recipe_repeat", "recipe_warmup", "recipe_other_warmup", "recipe_step_in_runs")
RATIO_LABELS = tuple(label for label, _, _ in RATIOS)  # whole, faster step, better recipe
if profile() == "ci" or not recipe_saved.exists():
    reason = ("the ci profile does not run it (the tests run its plumbing)" if profile() == "ci"
              else "run `python -m miniclip bench recipe`")
    not_computed("appendix_e_recipe", (*RATIO_NAMES, "recipe_source"), reason=reason)
else:
    recipe_result = json.loads(recipe_saved.read_text())
    runs = recipe_result["contenders"]
    repeat_result = json.loads(recipe_repeat_saved.read_text()) if recipe_repeat_saved.exists() else None

    def repeats(result: dict) -> bool:
        """Whether the repeat reran `result`'s open_clip trainer: the same processor and the same steps."""
        return (OPEN_CLIP in result["contenders"] and OURS in result["contenders"]
                and repeat_result["machine"] == result["machine"]
                and repeat_result["contenders"][OPEN_CLIP]["steps"] == result["contenders"][OPEN_CLIP]["steps"])

    # The run the repeat reran: the one shown, or else the committed run from before the warmup fix.
    repeated = None
    if repeat_result is not None:
        earlier = [json.loads(recipe_unscaled_saved.read_text())] if recipe_unscaled_saved.exists() else []
        repeated = next((r for r in [recipe_result, *earlier] if repeats(r)), None)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    # (contender, line style, label, colour and opacity): each run, then the repeat in grey when there is one
    lines = [(c, style, f"{name} ({c['steps']} steps)", {})
             for (name, c), style in zip(runs.items(), ("s--", "o-", "^:"))]
    if repeated is recipe_result:
        again = repeat_result["contenders"][OPEN_CLIP]
        lines.append((again, "s--", f"open_clip again ({again['steps']} steps, another sitting)",
                      {"color": "grey", "alpha": 0.6}))
    for c, style, label, look in lines:
        ax.plot([0] + [p["train_s"] / 60 for p in c["curve"]], [0] + [p["R@10_mean"] for p in c["curve"]], style,
                label=label, **look)
    if OPEN_CLIP in runs:
        target = runs[OPEN_CLIP]["curve"][-1]["R@10_mean"]
        ax.axhline(target, color="grey", lw=0.8, ls=":", label="open_clip's final quality")
    ax.set_xlabel("training time (minutes, this machine)")
    ax.set_ylabel("Flickr8k test R@10 (mean of both directions)")
    ax.set_title("Quality over training time, one budget, each trainer its own step count")
    ax.legend(fontsize=8)
    show(fig, "appendix_e_recipe")

    def ratio_words(r: dict | None) -> str:
        """A `speed_ratio` result in words: the ratio and the two times it divides."""
        if r is None:
            return "(not run)"
        if r["ratio"] is None:
            return f"not reached by the end of its run (target {r['target']:.1%})"
        return f"×{r['ratio']:.2f} ({r['slow_s'] / 60:.1f} against {r['fast_s'] / 60:.1f} minutes to {r['target']:.1%})"

    def ratio_text(result: dict, label: str) -> str:
        return ratio_words(result["ratios"].get(label))

    for glue_name, label in zip(RATIO_NAMES, RATIO_LABELS):
        glue(glue_name, ratio_text(recipe_result, label))
    if recipe_half_saved.exists():
        half = json.loads(recipe_half_saved.read_text())
        finals = ", ".join(f"{name} {c['curve'][-1]['R@10_mean']:.1%}" for name, c in half["contenders"].items())
        glue("recipe_other_budget",
             f"`{recipe_half_saved.relative_to(ROOT)}`{finished_text(half)}, a budget of "
             f"{half['bench']['budget_s'] / 60:.0f} minutes per contender ({half['machine']['processor']}), "
             f"ended at mean R@10 {finals}; its ratios: whole {ratio_text(half, RATIO_LABELS[0])}, faster step "
             f"{ratio_text(half, RATIO_LABELS[1])}, better recipe {ratio_text(half, RATIO_LABELS[2])}", markdown=True)
    else:
        glue("recipe_other_budget", "(no second budget committed)")
    glue("recipe_source", f"`{recipe_saved.relative_to(ROOT)}`{finished_text(recipe_result)}: "
                          f"{recipe_result['wall_s'] / 60:.0f} minutes "
                          f"in all, with a training budget of {recipe_result['bench']['budget_s'] / 60:.0f} minutes "
                          "per contender", markdown=True)
    if repeated is not None:
        first = repeated["contenders"][OPEN_CLIP]["curve"]
        again = repeat_result["contenders"][OPEN_CLIP]["curve"]
        gaps = [b["R@10_mean"] - a["R@10_mean"] for a, b in zip(first, again)]
        steps = repeated["contenders"][OPEN_CLIP]["steps"]
        which = "the run shown" if repeated is recipe_result else f"`{recipe_unscaled_saved.relative_to(ROOT)}`"
        glue("recipe_repeat",
             f"`{recipe_repeat_saved.relative_to(ROOT)}`{finished_text(repeat_result)}, against {which}: the same "
             f"{steps:,} steps in {again[-1]['train_s'] / 60:.1f} minutes ({again[-1]['train_s'] / steps:.2f} s a step "
             f"against the first run's {first[-1]['train_s'] / steps:.2f} s), ending at mean R@10 "
             f"{again[-1]['R@10_mean']:.1%} against {first[-1]['R@10_mean']:.1%}, its copies "
             f"{min(gaps) * 100:+.1f} to {max(gaps) * 100:+.1f} points from the first run's at the same steps; "
             f"that run's book recipe against this repeat: "
             f"{ratio_words(speed_ratio(again, repeated['contenders'][OURS]['curve']))}",
             markdown=True)
    else:
        glue("recipe_repeat", "(no repeat committed)")

    def warmup_words(result: dict) -> str:
        """Each contender's warmup as a share of its run. A run from before 2026-12-06 recorded none: it gave
        every contender the config's warmup, capped at its steps."""
        config_warmup = result["config"]["optim"]["warmup_steps"]
        warm = {name: (c.get("warmup_steps", min(config_warmup, c["steps"])), c["steps"])
                for name, c in result["contenders"].items()}
        shares = [w / s for w, s in warm.values()]
        listed = ", ".join(f"{name} {w} of its {s:,} steps ({w / s:.0%})" for name, (w, s) in warm.items())
        if max(shares) - min(shares) < 0.01:
            return f"every contender warmed up for the same share of its run: {listed}"
        return (f"**the contenders warmed up for different shares of their runs**: {listed}, a handicap for the "
                "shorter run, and so for the slower trainer")

    glue("recipe_warmup", warmup_words(recipe_result), markdown=True)
    glue("recipe_other_warmup", warmup_words(half) if recipe_half_saved.exists() else "(no second budget committed)",
         markdown=True)
    common = min(c["curve"][-1]["train_s"] for c in runs.values())
    glue("recipe_equal_time", f"after {common / 60:.1f} minutes of training (the shortest run), "
         + ", ".join(f"{name} {quality_at(c['curve'], common):.1%}" for name, c in runs.items()))
    per_step = {name: c["curve"][-1]["train_s"] / c["steps"] for name, c in runs.items()}
    glue("recipe_step_in_runs", per_step[OPEN_CLIP] / per_step[OURS_OC]
         if {OPEN_CLIP, OURS_OC} <= set(per_step) else float("nan"), "×{:.2f}")
    glue("recipe_step_times", ", ".join(f"{name} {per_step[name]:.2f} s ({c['steps']} steps, "
                                        f"{c['curve'][-1]['train_s'] / 60:.1f} min)" for name, c in runs.items()))

# %% [markdown]
# ```{glue:figure} appendix_e_recipe
# :name: fig-time-to-quality
#
# Flickr8k test R@10 (mean of text→image and image→text) of copies of the weights taken along each run,
# against the training time spent to reach them (copies and scoring not counted). Dotted: the quality
# open_clip's trainer ends at. Grey, where one is committed: open_clip's trainer run again with the same steps.
# ```
#
# From {glue}`recipe_source`. The time open_clip's trainer needs to reach its final quality, divided by the
# time ours needs to reach the same: {glue}`recipe_total` with the book's recipe. The same split in two:
# open_clip's recipe run by our trainer against open_clip's trainer, which isolates the faster step,
# {glue}`recipe_step`; and the book's recipe against open_clip's, both run by our trainer,
# {glue}`recipe_recipe`. One run each: the ratios carry the noise of one training run and of this machine's
# load, which the JSON records before and after each run.
#
# The step each run took on average: {glue}`recipe_step_times`. A run's length is its budget divided by a step
# time estimated in a short calibration run, so the runs end at somewhat different times, and a ratio whose
# faster run stopped first can read "not reached" only because it stopped. The like-for-like reading is every
# curve at the end of the shortest run: {glue}`recipe_equal_time` (mean R@10, interpolated between copies).
# Our trainer on open_clip's recipe took its steps {glue}`recipe_step_in_runs` as fast as open_clip's trainer;
# compare the step benchmark's {glue}`bench_worst_speedup` to {glue}`bench_best_speedup` above: a whole run also
# decodes and augments its images in loader workers on the same cores, which the step benchmark leaves out. On two
# cores the loader's work comes out of the step's time, however fast the loader is on a core of its own;
# `python -m miniclip bench data` times whole runs of the book's model fed with and without reading their photos.
# Such runs found the loader taking a large share of a 64 px step, much of it in seeding each photo's crop; since
# then each photo is seeded on the CPU generator alone and decoded once (`data.cache_images`), the same pixels.
#
# The same bench at another budget: {glue}`recipe_other_budget`. Both committed runs time the book's current
# recipe, its low-resolution start scaled with the budget (Appendix C), with the faster data path above
# (`bench/README.md` gives both runs' numbers and those of the runs from before it). In 15 minutes, about half
# the run the recipe was chosen for, every curve is still rising and the faster step alone comes close to the
# whole gain. In 28 minutes open_clip's trainer levels off over the second half of its run, having learnt the
# 6,000 training images by heart (Appendix C), while the book's recipe, whose regularisers (word dropout, label
# smoothing, crops of half the area or more) were chosen against that, keeps rising: the whole ratio grows well
# past the step's. A ratio measured against a curve that has stopped rising depends on where it stopped, so read
# it beside the curves at the end of the shortest run.
#
# **Warmup.** A trainer that spends a larger share of its run warming up learns less in the same time, so the
# bench gives each contender the config's warmup scaled to its own steps, the same share of every run:
#
# ```{literalinclude} ../miniclip/bench/recipe.py
# :pyobject: warmup_steps
# ```
#
# In the run shown, {glue}`recipe_warmup`. In the run at the other budget, {glue}`recipe_other_warmup`. Where
# the shares differ, a ratio favours the trainer with more steps, ours; `bench/README.md` gives how much that
# inflated the runs from before the fix.
#
# What one run's ratio can carry: open_clip's trainer, run again with the same config and the same steps, gave
# the same quality at every copy, and only its time moved with the machine: {glue}`recipe_repeat`. The quality
# side of a ratio is deterministic for a given schedule; its time side changes between sittings, which is why the
# bench runs its contenders one after the other in one sitting, and why a ratio against a curve from another
# sitting is only a rough reading.
