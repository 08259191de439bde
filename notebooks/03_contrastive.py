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
# # The contrastive objective
#
# ## The paper says
#
# Given a batch of $N$ (image, text) pairs, CLIP scores all $N \times N$ combinations with the similarity
# matrix $S$ of chapter 1 and trains both encoders so that each image's own caption wins over the $N-1$ others
# in its row, and each caption's own image wins over the others in its column ({cite:t}`radford2021clip`,
# §2.3 and the pseudocode in its Fig. 3). The loss is the average of two cross-entropies:
#
# $$
# \mathcal{L} = \frac{1}{2}\left[
# -\frac{1}{N}\sum_{i=1}^{N} \log \frac{e^{S_{ii}}}{\sum_{j} e^{S_{ij}}}
# -\frac{1}{N}\sum_{i=1}^{N} \log \frac{e^{S_{ii}}}{\sum_{j} e^{S_{ji}}}
# \right].
# $$ (eq-clip-loss)
#
# This is the multi-class N-pair / InfoNCE loss {cite:p}`sohn2016npair,oord2018cpc`, applied symmetrically,
# as ConVIRT {cite:p}`zhang2020convirt` did for medical images. The paper chose it over predicting the
# caption's exact words because, in its experiments, the contrastive version reached the same zero-shot
# ImageNet accuracy with several times less compute than a bag-of-words predictor, which was itself faster
# than a transformer language model (§2.3, Fig. 2). The temperature $e^{t}$ is learned, not tuned (§2.5).
#
# ## The code
#
# The similarity matrix and the loss, as `miniclip` implements them:
#
# ```{literalinclude} ../miniclip/loss.py
# :pyobject: clip_logits
# ```
#
# ```{literalinclude} ../miniclip/loss.py
# :pyobject: ClipLoss.forward
# :dedent:
# ```
#
# The column-wise term reuses the transposed matrix: a softmax over column $i$ is a softmax over row $i$ of
# $S^\top$. In a data-parallel run the features of every process are gathered first, so the negatives are the
# whole global batch (the docstring explains why the gradients still come out right).
#
# ## What it means
#
# Eq. {eq}`eq-clip-loss` asks a *ranking* question, not a generation question: the model never has to produce
# a caption, only to tell the right one from the others in the batch. That is an easier target, which is the
# paper's explanation for its efficiency. It also means the batch *is* the task: with $N$ pairs the chance
# level of each row is $1/N$ and the loss of a model that knows nothing is $\ln N$. Larger batches make the
# task harder and the signal richer, which is why CLIP trained with $N = 32{,}768$.
#
# The temperature decides how much a small margin in cosine similarity is worth. Cosines between a
# picture and a sentence live in a narrow range; multiplied by $e^{t}$ (up to 100), a difference of $0.05$
# becomes a factor of $e^{5} \approx 148$ in the softmax.
#
# The comparison of contrastive, predictive and bag-of-words objectives (the paper's Fig. 2) needs three
# trainings; `make experiments` runs them and the last section of this page reads the result.
#
# ## Run it
#
# ### The loss from the equation
#
# First, Eq. {eq}`eq-clip-loss` written out in NumPy in float64, a direct transcription of the formula with
# no shortcuts, on random unit vectors:

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import display

from miniclip import ClipLoss
from miniclip.book import glue, markdown_table, real_or_shapes, show, trained_model, trained_shapes_world
from miniclip.book.viz import plot_similarity_matrix
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.transforms import eval_transform, normalize
from miniclip.eval.zeroshot import encode_images, encode_texts


def clip_loss_from_the_equation(z_img: np.ndarray, z_txt: np.ndarray, scale: float) -> float:
    """Eq. (1), term by term: mean over rows of -log softmax(S)_ii, the same over columns, averaged."""
    S = scale * z_img @ z_txt.T
    n = len(S)
    row_terms = [-(S[i, i] - np.log(np.sum(np.exp(S[i, :])))) for i in range(n)]
    col_terms = [-(S[i, i] - np.log(np.sum(np.exp(S[:, i])))) for i in range(n)]
    return 0.5 * (np.mean(row_terms) + np.mean(col_terms))


rng = np.random.default_rng(0)
z_img = rng.normal(size=(16, 32))
z_img /= np.linalg.norm(z_img, axis=1, keepdims=True)
z_txt = rng.normal(size=(16, 32))
z_txt /= np.linalg.norm(z_txt, axis=1, keepdims=True)
ours = clip_loss_from_the_equation(z_img, z_txt, 1 / 0.07)
print(f"loss from the equation: {ours:.6f}")

# %% [markdown]
# The next cell checks the package's `ClipLoss` against it:

# %%
package = ClipLoss()(torch.from_numpy(z_img), torch.from_numpy(z_txt), 1 / 0.07).item()
assert abs(package - ours) < 1e-9, (package, ours)
print(f"ClipLoss: {package:.6f}; difference {abs(package - ours):.1e}")

# %% tags=["remove-input"]
glue("loss_equation", ours, "{:.6f}")
glue("loss_package", package, "{:.6f}")
glue("ln16", np.log(16), "{:.3f}")

# %% [markdown]
# Both give {glue}`loss_equation` on this random batch of 16 (the package: {glue}`loss_package`). Random
# embeddings know nothing, and yet the loss is not $\ln 16 =$ {glue}`ln16`: at a temperature of 0.07 random
# cosines of about $\pm 0.2$ already make confident, and wrong, softmaxes.
#
# ### The objective as a picture
#
# A diagram of what Eq. {eq}`eq-clip-loss` does, drawn by code: $N$ images and $N$ captions go through their
# encoders, every pair is scored, and the loss pulls up the diagonal while pushing down the rest of its row
# and column.

# %%
from miniclip.book.diagrams import draw_objective

show(draw_objective(), "03_objective_diagram")

# %% [markdown]
# ```{glue:figure} 03_objective_diagram
# :name: fig-objective-diagram
#
# The contrastive objective, drawn by `miniclip.book.diagrams.draw_objective`: $N$ images and $N$ captions
# are encoded, every pair is scored, and the loss pulls each true pair (the diagonal) above the rest of its
# row and column (the paper's Fig. 3 shows the same idea as pseudocode).
# ```
#
# ### The similarity matrix of a real batch
#
# Now a trained model and a batch it has not trained on. In the `cpu` profile this is the Flickr8k model on
# 16 test photos with their first captions ({cite:t}`hodosh2013flickr8k`); in the `ci` profile, or without
# Flickr8k, the Shapes model on 16 validation scenes.

# %%
N = 16


def flickr8k_batch():
    model = trained_model("flickr8k")
    test = Flickr8k(split="test", transform=eval_transform(model.config.image_size))
    items = [test[i] for i in range(0, N * 50, 50)]  # spread over the split: one picture per 50
    images = torch.stack([image for image, _ in items])
    return model, images, [caption for _, caption in items], "Flickr8k test"


def shapes_batch():
    model, world, _ = trained_shapes_world()
    batch = world.render(range(N), split="val")
    return model, normalize(batch.images), batch.captions, "Shapes validation"


model, images, captions, batch_name = real_or_shapes(flickr8k_batch, shapes_batch)

z_img, z_txt = encode_images(model, images), encode_texts(model, captions)
scale = model.logit_scale.exp().item()
S = (scale * z_img @ z_txt.T).numpy()
loss = ClipLoss()(z_img, z_txt, scale).item()
row_hits = (S.argmax(1) == np.arange(N)).mean()
show(plot_similarity_matrix(S, [str(i) for i in range(N)], [str(j) for j in range(N)], value_label="logit $S_{ij}$",
                            title=f"$S_{{ij}} = e^t z_i^I \\cdot z_j^T$, {batch_name}, N={N}",
                            xlabel="caption $j$", ylabel="image $i$"), "03_similarity_matrix")
print(f"{batch_name}: loss {loss:.3f} (ln N = {np.log(N):.3f}), rows right {row_hits:.0%}, e^t = {scale:.1f}")

# %% tags=["remove-input"]
glue("batch_name", batch_name)
glue("trained_scale", scale, "{:.1f}")
glue("batch_loss", loss, "{:.3f}")
glue("lnN", np.log(N), "{:.3f}")
glue("row_hits", row_hits, "{:.0%}")

# %% [markdown]
# ```{glue:figure} 03_similarity_matrix
# :name: fig-similarity-matrix
#
# The similarity matrix of one batch of 16 held-out pairs under the trained model: row $i$ is image $i$
# scored against all captions, and the framed diagonal holds the true pairs. Eq. {eq}`eq-clip-loss` wants the
# diagonal brightest in every row and column.
# ```
#
# On this {glue}`batch_name` batch the trained temperature is $e^{t} =$ {glue}`trained_scale`, the loss is
# {glue}`batch_loss` against $\ln 16 =$ {glue}`lnN` for a model that knows nothing, and the true caption
# scores highest in {glue}`row_hits` of the rows.
#
# ### What the temperature does
#
# Keep the trained embeddings of this batch fixed and vary only $e^{t}$. At small scales every softmax is
# nearly uniform and the loss approaches $\ln N$ whatever the embeddings; at large scales the loss is set by
# the worst-ranked pairs. The orange line marks the value training arrived at.

# %%
scales = np.geomspace(1, 200, 60)
losses = [ClipLoss()(z_img, z_txt, s).item() for s in scales]
probs_diag = [F.softmax(torch.from_numpy(s * (z_img @ z_txt.T).numpy()), dim=1).diagonal().mean().item()
              for s in scales]
fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
ax[0].plot(scales, losses, color="#264653")
ax[0].axhline(np.log(N), ls="--", color="grey", label="$\\ln N$ (knows nothing)")
ax[0].axvline(scale, color="#e76f51", label=f"learned $e^t$ = {scale:.1f}")
ax[0].set_xscale("log")
ax[0].set_xlabel("logit scale $e^t$ (inverse temperature)")
ax[0].set_ylabel("contrastive loss, Eq. (1)")
ax[0].legend(fontsize=8)
ax[1].plot(scales, probs_diag, color="#2a9d8f")
ax[1].axvline(scale, color="#e76f51")
ax[1].axhline(1 / N, ls="--", color="grey", label="$1/N$")
ax[1].set_xscale("log")
ax[1].set_xlabel("logit scale $e^t$ (inverse temperature)")
ax[1].set_ylabel("mean softmax probability of the true caption")
ax[1].legend(fontsize=8)
fig.suptitle(f"Temperature sweep on fixed trained embeddings ({batch_name}, N={N})")
show(fig, "03_temperature")

# %% tags=["remove-input"]
glue("best_scale", scales[int(np.argmin(losses))], "{:.0f}")

# %% [markdown]
# ```{glue:figure} 03_temperature
# :name: fig-temperature
#
# Left: the loss of the same batch as the logit scale varies, with the embeddings held fixed. Right: the
# average probability the softmax gives the true caption. The orange line is the value training learned.
# ```
#
# For this batch the loss is lowest at $e^{t} \approx$ {glue}`best_scale`. The learned value is found jointly
# with the embeddings over the whole training distribution, not for one batch, so the two need not coincide;
# what the sweep shows is how steeply the objective depends on the temperature, and why fixing it by hand
# (the alternative the paper avoided) would need a search of its own.

# %% [markdown]
# ### Contrastive vs predictive objectives (Fig. 2, at small scale)
#
# The paper's case for the contrastive loss is an efficiency curve: at the same number of image-text pairs
# seen, a transformer that learns to *write* the caption reaches a given zero-shot accuracy slowest, a model
# that predicts the caption's *bag of words* is faster, and the contrastive model is fastest (§2.3, Fig. 2,
# where it is about 4× faster than bag-of-words at matched ImageNet accuracy). We repeat the race on Shapes:
# the same image encoder (the book's Shapes ModifiedResNet) trained three ways, on the same batches, and
# evaluated every few thousand pictures on zero-shot colour, colour + shape, and colour + shape pairs held
# out of training. The two predictive models classify zero-shot by scoring each class caption: its
# likelihood under the captioning LM, or the mean log-probability of its words under bag-of-words.
#
# ```{literalinclude} ../miniclip/experiments/objectives.py
# :pyobject: efficiency_ratio
# ```

# %%
from miniclip.book import experiment, machine_text, not_computed
from miniclip.book.viz import OBJECTIVE_NAMES, ZEROSHOT_TASKS, plot_objective_curves
from miniclip.experiments.objectives import efficiency_ratio

objectives = experiment("objectives")
if objectives is None:
    not_computed("03_objectives", ("ratio_colour_bow", "ratio_colour_lm", "ratio_shape_bow", "ratio_shape_lm",
                                   "objectives_samples", "objectives_wall", "objectives_machine",
                                   "objectives_curriculum"))
else:
    result = objectives["result"]
    show(plot_objective_curves(result["curves"], result["chance"]), "03_objectives")
    # Colour, the easiest task, and shape, the one the Shapes model needs its curriculum for. Recomputed from
    # the curves, so results cached before a change to efficiency_ratio read the same way.
    ratios = {task: {other: efficiency_ratio(result["curves"]["contrastive"], result["curves"][other], task)
                     for other in ("bag_of_words", "captioning_lm")} for task in ("seen_colour", "seen_shape")}

# %% tags=["remove-input"]
def curriculum_text(shapes_options: dict) -> str:
    """What the pictures of a Shapes run were, phase by phase, in words (from its `data.shapes` options)."""
    phases = shapes_options.get("curriculum") or []
    phases = [phases] if isinstance(phases, dict) else phases
    if not phases or any("fraction" not in p for p in phases):
        return "all of them from the full world"
    def what(phase: dict) -> str:
        if phase.get("max_objects") == 1:
            return "single objects whose captions mostly name only the shape"
        weights = (phase.get("grammar") or {}).get("kinds", {}).values()
        kinds = {k for per_scene in weights for k, w in per_scene.items() if w}
        if kinds and kinds <= {"describe", "count", "total"}:  # no positions or relations: a counting phase
            objects = "identical objects" if phase.get("group_prob") == 1 else "objects, many of them identical"
            return f"one to four {objects}, whose captions say how many"
        return "the full world, with counts stated more often"

    words = [f"{'the first' if i == 0 else 'the next'} {p['fraction']:.0%} of them {what(p)}"
             for i, p in enumerate(phases)]
    rest = 1 - sum(p["fraction"] for p in phases)
    return ", ".join(words) + (", the rest from the full world" if rest > 1e-9 else "")


def ratio_text(task: str, other: str) -> str:
    """One sentence: how many times fewer pictures the contrastive model needs, or why no ratio exists."""
    r, name = ratios[task][other], OBJECTIVE_NAMES[other]
    if r["ratio"] is not None:
        return (f"Against {name}, the contrastive model is {r['ratio']:.1f}× more sample-efficient: {name} needs "
                f"{r['other_samples']:,.0f} pictures to reach its best, {r['target']:.0%}, the contrastive model "
                f"{r['reference_samples']:,.0f}.")
    if r.get("reference_samples") == 0:
        return (f"Against {name} no ratio is defined: its best, {r['target']:.0%}, is what the contrastive model "
                "scored before any training, so it is within the noise of an untrained model.")
    return f"Against {name} (best {r['target']:.0%}) no ratio is defined: {r['note']}."


if objectives is not None:
    finals = ([OBJECTIVE_NAMES[name], *(curve[-1][m] for m in ZEROSHOT_TASKS)]
              for name, curve in result["curves"].items())
    display(markdown_table(finals, ["objective, after training", *ZEROSHOT_TASKS.values()],
                           formats={t: "{:.0%}" for t in ZEROSHOT_TASKS.values()}))
    for task, tag in (("seen_colour", "colour"), ("seen_shape", "shape")):
        glue(f"ratio_{tag}_bow", ratio_text(task, "bag_of_words"))
        glue(f"ratio_{tag}_lm", ratio_text(task, "captioning_lm"))
    glue("objectives_samples", result["samples_seen"], "{:,}")
    glue("objectives_curriculum", curriculum_text(result["config"]["data"].get("shapes", {})))
    glue("objectives_wall", ", ".join(f"{OBJECTIVE_NAMES[n]} {w / 60:.1f} min"
                                      for n, w in result["train_wall_s"].items()))
    glue("objectives_machine", machine_text(objectives["provenance"]["machine"]))

# %% [markdown]
# ```{glue:figure} 03_objectives
# :name: fig-objectives
#
# Zero-shot accuracy on Shapes against the number of training pictures seen, for the same image encoder
# trained with three objectives (the paper's Fig. 2 at toy scale). Dashed: chance. Computed by `make
# experiments` (the `objectives` experiment); this page reads its cached result.
# ```
#
# Each objective saw {glue}`objectives_samples` pictures, {glue}`objectives_curriculum` (the curriculum that
# teaches the book's Shapes model shape, chapter 6); the table gives each one's zero-shot accuracy at the end.
# On colour, the easiest task: {glue}`ratio_colour_bow` {glue}`ratio_colour_lm` On shape:
# {glue}`ratio_shape_bow` {glue}`ratio_shape_lm` Training took {glue}`objectives_wall` ({glue}`objectives_machine`).
#
# What this does and does not show: the ratio is read off one seed at a few evaluation points, on a toy world
# where a caption has a handful of words, so it is a sanity check of the paper's ordering, not a measurement
# of its 4× (on ImageNet, after hundreds of millions of pictures). Where no ratio is defined, the sentence says
# why: a model that does not rise above its own starting noise within the budget is an outcome too, and the
# curves show it.

