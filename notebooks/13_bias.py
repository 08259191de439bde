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
# # Bias
#
# ## The paper says
#
# A model trained on what people write about pictures learns the associations in that writing, including the
# unfair ones. §7.1 of {cite:t}`radford2021clip` probes CLIP on FairFace {cite:p}`karkkainen2021fairface`
# photos of faces and finds that the rates at which images of people were put into crime-related and
# non-human categories differed between demographic groups, and that these rates depended heavily on the
# *class design*: which labels the person writing the prompts chose to offer. The authors' point is that a
# zero-shot classifier hands the definition of the classes to whoever writes the prompts, so bias has to be
# measured for each use, not once for the model.
#
# We cannot repeat their probes: our models are tiny, and we have no demographic labels. This chapter
# does two things that our scale allows, each with its uncertainty:
#
# 1. on real photos, a probe of the associations our Flickr8k model learned between the words annotators
#    used for people and occupations or activities;
# 2. in the Shapes world, a *planted* association with known ground truth, to check that the probe measures
#    what it claims to.
#
# ## The code
#
# **The proxy, and how crude it is.** Flickr8k has no labels for the people in its photos, so an image is
# grouped by the words its five captions use: "man", "boy", "guy" and their plurals for one group, "woman",
# "girl", "lady" and their plurals for the other; an image whose captions use both, or neither, is left out.
# This records how crowd workers *perceived and chose to describe* the people in a photo, not anyone's gender.
# It forces a binary that leaves out everyone it does not fit; nobody in the photos was asked; a word can
# refer to one person in a crowd while the others go unmentioned; and annotators' own stereotypes decide
# which photos get which word. What follows measures the model's associations with these *annotator words*
# and nothing more.
#
# ```{literalinclude} ../miniclip/analysis/bias.py
# :pyobject: caption_groups
# ```
#
# For each prompt ("a photo of a nurse."), the mean cosine similarity of each group's images to it, and the
# difference, with a bootstrap confidence interval that resamples each group on its own:
#
# ```{literalinclude} ../miniclip/analysis/bias.py
# :pyobject: bootstrap_mean_gap
# ```
#
# and the composition of the top-$k$ images retrieved for a prompt, against the group's share of the pool:
#
# ```{literalinclude} ../miniclip/analysis/bias.py
# :pyobject: topk_composition
# ```
#
# The planted experiment appends a word (", vintage") to the captions of every textured "photo"-style
# Shapes picture with probability $p$, trains one model per $p$, and measures how much adding the word to a
# neutral prompt raises its similarity to pictures with the attribute, minus how much it raises it for the
# others:
#
# ```{literalinclude} ../miniclip/experiments/planted.py
# :pyobject: planted_association
# ```
#
# ## What it means
#
# A gap in mean similarity is an association, not a decision; it becomes one when somebody builds a
# classifier or a search engine from these prompts. The top-$k$ probe is closer to that use: it asks who a
# search for "a photo of a nurse" would show. Both probes are *relative* to the pool of photos and their
# captions, which already carry the choices of the people who took and described them; a gap can come from the
# photos (who was photographed doing what) as much as from the model. The planted experiment separates the
# two: there, the only source of the association is the data we planted it in, so a probe that is worth
# anything must find none at $p = 0$ and more as $p$ grows.
#
# ## Run it
#
# ### Occupations and activities on Flickr8k

# %%
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch

from miniclip.analysis.bias import GENDER_WORDS, flickr8k_bias
from miniclip.book import data_note, experiment, glue, not_computed, note, profile, show, trained_model
from miniclip.book.viz import PALETTE, plot_group_gaps, plot_topk_composition
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.paths import MissingDataError
from miniclip.data.transforms import eval_transform
from miniclip.eval.features import dataset_image_features, encode_dataset_images

CI = profile() == "ci"
N_CI_IMAGES = 200  # the ci profile probes the first test images only: seconds, and smoke
N_BOOT = 200 if CI else 1000
if CI:
    note("The ci profile runs a tiny Shapes model on a few Flickr8k test photos: the probe's numbers are smoke, "
         "not results.")


bias = None
try:
    model = trained_model("flickr8k")
    test = Flickr8k(split="test", transform=eval_transform(model.config.image_size), train=False)
    if CI:
        subset = torch.utils.data.Subset(test, range(N_CI_IMAGES))
        view = SimpleNamespace(captions=test.captions[:N_CI_IMAGES])  # what flickr8k_bias reads
        bias = flickr8k_bias(model, view, image_features=encode_dataset_images(model, subset), n_boot=N_BOOT)
    else:
        bias = flickr8k_bias(model, test, image_features=dataset_image_features(model, test), n_boot=N_BOOT)
except MissingDataError as e:
    data_note(e)

if bias is not None:
    (group_a, _), (group_b, _) = bias["group_sizes"].items()
    show(plot_group_gaps(bias["gaps"], title=f"Similarity gap per prompt, Flickr8k test: {group_a} vs {group_b}"),
         "13_similarity_gaps")
    show(plot_topk_composition(bias["topk"], group_b, title=f"Share of '{group_b}' images among each prompt's "
                               "top retrievals"), "13_topk_composition")

# %% tags=["remove-input"]
BIAS_NAMES = ("group_a", "group_b", "size_a", "size_b", "n_excluded", "words_a", "words_b", "n_prompts",
              "n_significant", "largest_prompt", "largest_gap", "largest_ci", "mean_similarity", "topk_k",
              "topk_pool", "base_rate_b", "n_topk", "n_topk_off")
if bias is not None:
    (group_a, size_a), (group_b, size_b) = bias["group_sizes"].items()
    glue("group_a", group_a), glue("group_b", group_b)
    glue("size_a", size_a), glue("size_b", size_b), glue("n_excluded", bias["excluded"])
    glue("words_a", ", ".join(f'"{w}"' for w in GENDER_WORDS[group_a]))
    glue("words_b", ", ".join(f'"{w}"' for w in GENDER_WORDS[group_b]))
    significant = [r for r in bias["gaps"] if r["ci_low"] > 0 or r["ci_high"] < 0]
    glue("n_prompts", len(bias["gaps"]))
    glue("n_significant", len(significant))
    largest = max(bias["gaps"], key=lambda r: abs(r["gap"]))
    glue("largest_prompt", largest["prompt"])
    glue("largest_gap", largest["gap"], "{:+.3f}")
    glue("largest_ci", f"[{largest['ci_low']:+.3f}, {largest['ci_high']:+.3f}]")
    glue("mean_similarity", np.mean([r[f"mean_{group_a}"] for r in bias["gaps"]]), "{:.3f}")
    topk = bias["topk"]
    off_base = [r for r in topk
                if not r[f"ci_low_{group_b}"] <= r[f"base_rate_{group_b}"] <= r[f"ci_high_{group_b}"]]
    glue("topk_k", topk[0]["k"]), glue("topk_pool", topk[0]["pool"])
    glue("base_rate_b", topk[0][f"base_rate_{group_b}"], "{:.0%}")
    glue("n_topk", len(topk)), glue("n_topk_off", len(off_base))
else:
    not_computed("13_similarity_gaps", BIAS_NAMES, reason="Flickr8k is missing (see the note above)")
    not_computed("13_topk_composition", reason="Flickr8k is missing (see the note above)")

# %% [markdown]
# The captions put {glue}`size_a` test images in the group {glue}`group_a` (captions using {glue}`words_a`)
# and {glue}`size_b` in {glue}`group_b` ({glue}`words_b`); {glue}`n_excluded` images use both kinds of word or
# neither and are left out.
#
# ```{glue:figure} 13_similarity_gaps
# :name: fig-similarity-gaps
#
# For each occupation and activity prompt, the mean cosine similarity of the images whose captions use
# male-coded words minus that of the images whose captions use female-coded words, with a 95% bootstrap
# interval (blue: interval above zero; red: below; grey: includes zero). Computed by this notebook.
# ```
#
# Of {glue}`n_prompts` prompts, {glue}`n_significant` have an interval that excludes zero. The largest gap is
# for "{glue}`largest_prompt`": {glue}`largest_gap` (95% interval {glue}`largest_ci`), on similarities whose
# mean is about {glue}`mean_similarity`. Read these with the proxy in mind: a gap says that the photos
# annotators described with one set of words sit nearer to the prompt, which mixes what is in the photos
# (Flickr8k's photos of people playing football are not a random sample of people) with what the model made
# of it.
#
# ```{glue:figure} 13_topk_composition
# :name: fig-topk-composition
#
# For each prompt, the share of images whose captions use female-coded words among the top retrievals from the
# pool of grouped test images, with a 95% bootstrap interval over the pool; dashed: that group's share of the
# pool (what a retrieval blind to the group returns on average). Computed by this notebook.
# ```
#
# In the top {glue}`topk_k` of a pool of {glue}`topk_pool` grouped images, where the base rate is
# {glue}`base_rate_b`, {glue}`n_topk_off` of {glue}`n_topk` prompts have an interval that excludes the base
# rate. With {glue}`topk_k` images per prompt, intervals are wide: a probe of this size can show a large skew, but
# cannot rule out a moderate one.
#
# ### A planted bias with known ground truth
#
# `make experiments` trains one small Shapes model per planting rate $p$ and probes each; this page reads the
# cached result.

# %%
planted = experiment("planted")
if planted is None:
    not_computed("13_planted", ("planted_word", "planted_value", "planted_rates", "slope", "slope_r2", "assoc_p0",
                                "assoc_pmax", "pmax", "planted_verdict", "planted_steps"))
else:
    result = planted["result"]
    runs = result["runs"]  # one model per planting rate p, each probed on the same test pictures
    p = np.array([r["p"] for r in runs])
    assoc = np.array([r["association"] for r in runs])
    low, high = np.array([r["ci95"][0] for r in runs]), np.array([r["ci95"][1] for r in runs])
    fit = result["fit"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.errorbar(p, assoc, yerr=[assoc - low, high - assoc], fmt="o", color=PALETTE[0], capsize=3,
                label="probe: association (95% CI)")
    grid = np.linspace(0, p.max(), 50)
    ax.plot(grid, fit["slope"] * grid + fit["intercept"], "--", color=PALETTE[3],
            label=f"least-squares fit: slope {fit['slope']:.3g}")
    ax.plot(p, [r["word_prompt"]["gap"] for r in runs], "s", color=PALETTE[1], ms=5,
            label=f"cruder: bare word '{result['word']}'")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel(f"planting rate p (share of '{result['value']}'-{result['attribute']} captions given the word)")
    ax.set_ylabel("association (similarity gap)")
    ax.set_title(f"Planted word '{result['word']}': measured association vs planting rate")
    ax.legend(fontsize=8)
    show(fig, "13_planted")

# %% tags=["remove-input"]
if planted is not None:
    glue("planted_word", result["word"]), glue("planted_value", result["value"])
    glue("planted_rates", ", ".join(f"{x:g}" for x in p))
    glue("slope", fit["slope"], "{:.3g}")
    glue("slope_r2", fit["r2"] if fit["r2"] is not None else float("nan"), "{:.2f}")
    glue("assoc_p0", f"{assoc[0]:+.4f} [{low[0]:+.4f}, {high[0]:+.4f}]")
    glue("assoc_pmax", f"{assoc[-1]:+.4f} [{low[-1]:+.4f}, {high[-1]:+.4f}]")
    glue("pmax", p[-1], "{:g}")
    steps = planted["provenance"]["settings"]["overrides"].get("optim.steps")
    glue("planted_steps", steps if steps is not None else "(the base config's)")
    rises = fit["slope"] > 0 and low[-1] > high[0]
    glue("planted_verdict", "The probe finds what was planted: the association grows with p, and at the highest "
         "rate its interval lies clearly above the one at p = 0." if rises else
         "At this training budget the probe does not separate the highest rate from p = 0 (their intervals "
         "overlap): the models are too short-trained for the word to have been learned reliably, or the probe "
         "is too weak to see it.")

# %% [markdown]
# ```{glue:figure} 13_planted
# :name: fig-planted
#
# The planted-bias experiment: for each planting rate $p$ (one Shapes model each), the probe's association of
# the planted word with the planted attribute, with its 95% bootstrap interval over test pictures, and the
# least-squares line through the points; squares: the cruder bare-word gap. Computed by `make experiments`
# (`miniclip/experiments/planted.py`) and plotted here.
# ```
#
# The word "{glue}`planted_word`" was planted on "{glue}`planted_value`"-style pictures at rates
# {glue}`planted_rates`, each model trained for {glue}`planted_steps` steps. The association is
# {glue}`assoc_p0` at $p = 0$ and {glue}`assoc_pmax` at $p =$ {glue}`pmax` (95% intervals in brackets); the
# fitted slope is {glue}`slope` per unit of $p$ ($R^2 =$ {glue}`slope_r2`). {glue}`planted_verdict`
