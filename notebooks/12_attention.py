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
# # Where the image encoder looks
#
# ## The paper says
#
# CLIP's image encoders are of two kinds ({cite:t}`radford2021clip`, §2.4): Vision Transformers
# {cite:p}`dosovitskiy2021vit`, which cut the picture into patches and let a class token attend to them layer
# after layer, and ResNets {cite:p}`he2016resnet` whose global average pooling is replaced by *attention
# pooling*: one layer of multi-head attention whose single query is the average of the final feature map. In
# both, attention weights say which parts of the picture feed the embedding. The CLIP paper does not publish
# attention maps of its models; the ViT paper drew its own with *attention rollout*
# {cite:p}`abnar2020rollout`, and that is the method we use for our ViTs. What we add, because the Shapes world
# knows where every object is, is a *score* for a map instead of a judgement by eye.
#
# ## The code
#
# The weights of every layer are caught during an ordinary forward pass (the attention module keeps its
# softmax when asked to), and the class token's row is read off each layer and head:
#
# ```{literalinclude} ../miniclip/analysis/attention.py
# :pyobject: vit_attention
# ```
#
# ```{literalinclude} ../miniclip/analysis/attention.py
# :pyobject: cls_attention
# ```
#
# One layer alone explains little, since information also flows around attention through the residual
# stream. Rollout averages the heads, adds the identity for that residual path, renormalises, and multiplies
# the layers together:
#
# ```{literalinclude} ../miniclip/analysis/attention.py
# :pyobject: attention_rollout
# ```
#
# For a ResNet the one attention is the pool's, recomputed from its own projections:
#
# ```{literalinclude} ../miniclip/analysis/attention.py
# :pyobject: attnpool_attention
# ```
#
# and a map is scored against the objects' masks by the share of its mass that falls inside them and by the
# pointing game {cite:p}`zhang2016excitationbackprop` (does its peak cell hold part of the object?), each beside
# what a map that ignores the picture would score:
#
# ```{literalinclude} ../miniclip/analysis/attention.py
# :pyobject: localisation_scores
# ```
#
# ## What it means
#
# Attention maps are a popular explanation and a weak one. A head's weights say what it *mixes*, not what the
# output depends on; rollout is a heuristic that treats heads as interchangeable. That is why the score below
# always comes with two baselines: the share of the picture the objects cover (what a map that ignores the
# picture would score) and the same architecture at initialisation (what the map looks like before any
# learning). A trained model that localises objects should beat both; one that does not tells us its
# embedding is not built from the object, whatever its maps look like. At our resolution the grids are coarse:
# 8×8 patches for a 64-pixel ViT with 8-pixel patches, and 2×2 cells for the ResNet's final feature map.
#
# ## Run it

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import display

from miniclip.analysis.attention import (
    attnpool_attention,
    image_attention_maps,
    localisation_scores,
    trained_vs_init,
    vit_attention,
)
from miniclip.book import (
    ROOT,
    config_path,
    data_note,
    experiment,
    glue,
    markdown_table,
    note,
    profile,
    show,
    trained_model,
)
from miniclip.book.viz import plot_attention_heads, plot_attention_overlays, plot_localisation
from miniclip.checkpoint import load_model
from miniclip.config import load_config
from miniclip.data.paths import MissingDataError
from miniclip.data.shapes import ShapesConfig, ShapesWorld
from miniclip.data.transforms import normalize
from miniclip.eval.attributes import attribute_report
from miniclip.experiments.sweeps import vit_checkpoint
from miniclip.train.runs import train_if_changed

CI = profile() == "ci"
N_SCORE = 32 if CI else 256  # Shapes test scenes per localisation score
N_SHOWN = 6  # pictures per overlay figure


def ci_vit():
    """The ci profile's tiny ViT (configs/ci.yaml), trained in seconds if it is not there yet."""
    run = train_if_changed(load_config(ROOT / "configs" / "ci.yaml"), progress=False)
    return load_model(Path(run["out"]) / "final", "auto")


def experiment_vit(dataset: str):
    """The ViT `make experiments` trains on `dataset` for this chapter, or the tiny ci ViT (said so)."""
    if CI:
        return trained_model("shapes"), "the ci profile's tiny ViT"
    path = vit_checkpoint(dataset)
    if path.exists():
        return load_model(path, "auto"), f"the {dataset} ViT trained by the encoders experiment"
    note(f"`{path.relative_to(ROOT)}` is missing: run `make experiments` (the `encoders` experiment trains it). "
         "This section falls back to the tiny ci ViT, trained now in seconds; its maps are smoke, not results.")
    return ci_vit(), "the tiny ci ViT (fallback)"


if CI:
    note("The ci profile has only a tiny ViT trained for seconds on Shapes: the maps and scores below are "
         "smoke, not results.")
flickr_vit, flickr_vit_name = experiment_vit("flickr8k")
shapes_vit, shapes_vit_name = experiment_vit("shapes")


# %% tags=["remove-input"]
def describe(model) -> str:
    c, grid = model.config, model.config.image_size // model.config.patch_size
    return (f"{c.vision_layers} layers × {model.visual.transformer.resblocks[0].attn.heads} heads, "
            f"{c.image_size}-pixel images in {c.patch_size}-pixel patches ({grid}×{grid} grid)")


glue("flickr_vit_name", flickr_vit_name)
glue("shapes_vit_name", shapes_vit_name)
glue("flickr_vit_arch", describe(flickr_vit))
glue("shapes_vit_arch", describe(shapes_vit))


def knows(model, world) -> str:
    """What a Shapes model recognises zero-shot on single test objects: shape and colour, with intervals."""
    report = attribute_report(model, world, n=N_SCORE, probes=False)
    return ", ".join(f"{task} {report[task]['accuracy']:.0%} [{report[task]['lo']:.0%}, {report[task]['hi']:.0%}]"
                     for task in ("shape", "colour")) + " zero-shot (chance 12.5% each)"


def scores_table(scores: dict[str, dict]):
    """The localisation scores of several maps, with the chance level of each measure beside it."""
    return markdown_table(([name, s["mass_inside"], s["mask_fraction"], s["pointing"], s["pointing_chance"]]
                           for name, s in scores.items()),
                          ["map", "mass inside the object", "object's share of the picture", "pointing game",
                           "share of cells the object touches"],
                          formats={"mass inside the object": "{:.2f}", "object's share of the picture": "{:.2f}",
                                   "pointing game": "{:.0%}", "share of cells the object touches": "{:.0%}"})

# %% [markdown]
# ### Real photos
#
# The photos are Flickr8k test images, seen by {glue}`flickr_vit_name` ({glue}`flickr_vit_arch`). First,
# one photo and the class token's attention in every layer and head:

# %%
try:
    from miniclip.data.flickr8k import Flickr8k
    from miniclip.data.transforms import eval_transform

    test = Flickr8k(split="test", transform=eval_transform(flickr_vit.config.image_size), train=False)
    # Evenly spaced test photos, so the figure is not six pictures of one photographer's afternoon.
    picks = range(0, len(test), len(test) // N_SHOWN)[:N_SHOWN]
    photos = torch.stack([test[i][0] for i in picks])
    photo_titles = [test.captions[i][0] for i in picks]
    photo_source = "Flickr8k test photos"
except MissingDataError as e:
    data_note(e)
    batch = ShapesWorld(ShapesConfig(image_size=flickr_vit.config.image_size)).render(range(N_SHOWN), "test")
    photos, photo_titles, photo_source = normalize(batch.images), batch.captions, "Shapes scenes (stand-in)"
photo_attention = vit_attention(flickr_vit, photos)
show(plot_attention_heads(photos[0], photo_attention.cls()[:, 0],
                          title=f"Class-token attention per layer and head: {photo_titles[0][:50]}"),
     "12_heads_photo")

# %% tags=["remove-input"]
glue("photo_source", photo_source)

# %% [markdown]
# ```{glue:figure} 12_heads_photo
# :name: fig-heads-photo
#
# The class token's attention to the patches, for one test photo: one row per layer (first layer at the
# top), one column per head, each map on its own colour scale (bright: more weight). Computed by this
# notebook.
# ```
#
# Rollout combines the layers into one map per photo:

# %%
show(plot_attention_overlays(photos, photo_attention.rollout(), titles=photo_titles,
                             title=f"Attention rollout on {photo_source}"), "12_rollout_photos")

# %% [markdown]
# ```{glue:figure} 12_rollout_photos
# :name: fig-rollout-photos
#
# Attention rollout of the class token over the patches (bottom row, bright: more weight) for
# {glue}`photo_source` (top row, with their first caption). Computed by this notebook.
# ```
#
# ### Scoring the maps on Shapes
#
# On Shapes we know the answer. The scenes below are Shapes test scenes with one object, seen by
# {glue}`shapes_vit_name` ({glue}`shapes_vit_arch`):

# %%
world = ShapesWorld(ShapesConfig(image_size=shapes_vit.config.image_size))
scenes = world.render(range(N_SHOWN), "test", n_objects=1)
show(plot_attention_overlays(normalize(scenes.images), image_attention_maps(shapes_vit, normalize(scenes.images)),
                             titles=scenes.captions, title="Attention rollout on Shapes test scenes"),
     "12_rollout_shapes")


def oracle_scores(image_size: int, grid: int, n: int) -> dict:
    """The best a map on this grid can score: each scene's own object mask, averaged down to the grid, on the
    same scenes `shapes_localisation` renders. Small objects that sit across cell borders keep even this map
    well below 1, so the trained model's scores are read against this ceiling as well as the floor."""
    masks = ShapesWorld(ShapesConfig(image_size=image_size)).render(range(n), "test", n_objects=1).masks.any(dim=1)
    maps = F.avg_pool2d(masks.float()[:, None], image_size // grid)[:, 0]
    return localisation_scores(maps, masks)


scores = {"oracle (mask)": oracle_scores(shapes_vit.config.image_size,
                                         shapes_vit.config.image_size // shapes_vit.config.patch_size, N_SCORE)}
for method in ("rollout", "last"):
    result = trained_vs_init(shapes_vit, N_SCORE, method=method)
    scores[f"trained ({method})"], scores[f"init ({method})"] = result["trained"], result["init"]


show(plot_localisation(scores, title="ViT attention localisation on Shapes: trained vs initialisation"),
     "12_localisation_vit")

# %% tags=["remove-input"]
display(scores_table(scores))
for name, s in scores.items():
    key = name.replace(" (", "_").rstrip(")").replace(" ", "_")
    glue(f"vit_{key}_mass", s["mass_inside"], "{:.2f}")
    glue(f"vit_{key}_pointing", s["pointing"], "{:.0%}")
glue("vit_mask_fraction", scores["trained (rollout)"]["mask_fraction"], "{:.2f}")
glue("vit_pointing_chance", scores["trained (rollout)"]["pointing_chance"], "{:.0%}")
glue("n_score", N_SCORE)
rollout_trained, rollout_init = scores["trained (rollout)"], scores["init (rollout)"]
beats_both = rollout_trained["mass_inside"] > max(rollout_init["mass_inside"], rollout_trained["mask_fraction"]) + 0.02
verdict = ("The trained model's rollout puts more of its mass on the object than both baselines: it has learned, "
           "from captions alone, to look at what the captions talk about." if beats_both else
           "The trained model's rollout does not beat both baselines by a clear margin: whatever this model's "
           "embedding uses, its attention does not single out the object.")
if rollout_init["pointing"] > 3 * rollout_init["pointing_chance"]:
    # Seen on Shapes: an untrained ViT already peaks on the object, because on a plain background the object's
    # patches are the only tokens that differ from all the others.
    verdict += (f" Note that the untrained model already wins the pointing game {rollout_init['pointing']:.0%} of "
                f"the time against {rollout_init['pointing_chance']:.0%} for a random patch: on a plain background the "
                "object's patches are the only tokens unlike the rest, so even random weights make them stand out. "
                "Where a map peaks says little here; how much of it lands on the object is what training changed.")
glue("vit_verdict", verdict)
glue("vit_knows", knows(shapes_vit, world))
# What a ViT trained as long as the book's Shapes model would cost, at the pace the encoders experiment measured.
encoders = None if CI else experiment("encoders")
if encoders is not None and "shapes_vit" in encoders["result"]:
    vit_run, main_steps = encoders["result"]["shapes_vit"], load_config(config_path("shapes")).optim.steps
    pace = vit_run["train_wall_s"] / vit_run["steps"]
    glue("vit_full_cost", f"Trained for as many steps as that model ({main_steps:,}), this ViT would take about "
                          f"{pace * main_steps / 60:.0f} minutes at its measured {pace:.1f} s a step, more than the "
                          "book gives any one model; the ResNet's attention pool, on a model that does know shape, "
                          "is scored next.")
else:
    glue("vit_full_cost", "")

# %% [markdown]
# ```{glue:figure} 12_rollout_shapes
# :name: fig-rollout-shapes
#
# Attention rollout (bottom row) on single-object Shapes test scenes (top row, with their captions). Computed
# by this notebook.
# ```
#
# ```{glue:figure} 12_localisation_vit
# :name: fig-localisation-vit
#
# Localisation scores of the ViT's attention on Shapes test scenes, trained vs the same architecture at
# initialisation, for rollout and for the last layer's class-token attention (mean over heads), beside the
# ceiling (the object's own mask averaged down to the patch grid). Left: the share of the map's mass inside
# the object's mask, dashed: the mask's share of the picture (a uniform map's score); right: how often the
# map's peak cell holds part of the object, dashed: the share of cells the object touches (a random cell's
# score). Computed by this notebook.
# ```
#
# On {glue}`n_score` one-object test scenes, where the object covers {glue}`vit_mask_fraction` of the picture
# on average and touches {glue}`vit_pointing_chance` of the patches, the ceiling (the mask itself, averaged
# to the patch grid) puts {glue}`vit_oracle_mask_mass` of its mass inside and wins the pointing game
# {glue}`vit_oracle_mask_pointing` of the time. The mass falls short of 1 because a coarse map cannot draw
# the object's edge: an object covering a corner of a patch shares that patch with background. The pointing
# game is played on the patch grid itself (a hit when the peak patch holds part of the object), so the ceiling
# always wins it. The trained model's rollout puts {glue}`vit_trained_rollout_mass` of its mass inside the object
# and peaks on it for {glue}`vit_trained_rollout_pointing` of the scenes; at initialisation the same
# numbers are {glue}`vit_init_rollout_mass` and {glue}`vit_init_rollout_pointing`. For the last layer alone
# they are {glue}`vit_trained_last_mass` and {glue}`vit_trained_last_pointing` (initialisation:
# {glue}`vit_init_last_mass`, {glue}`vit_init_last_pointing`). {glue}`vit_verdict` What this ViT recognises
# in these scenes: {glue}`vit_knows`. Its run is the encoders experiment's short one (appendix C), far shorter
# than the run whose curriculum teaches the main ResNet shape (chapter 6). {glue}`vit_full_cost`
#
# ### The ResNet's attention pool
#
# The book's main Shapes model is a ModifiedResNet. Its single attention, the pool, looks at the final 2×2
# feature grid of a 64-pixel picture: a map with four cells.

# %%
resnet = trained_model("shapes")
if not resnet.config.is_vit:  # the ci profile's model is a ViT: it has no attention pool
    world = ShapesWorld(ShapesConfig(image_size=resnet.config.image_size))
    scenes = world.render(range(N_SHOWN), "test", n_objects=1)
    pool = attnpool_attention(resnet, normalize(scenes.images))  # [scenes, heads, grid, grid]
    show(plot_attention_overlays(normalize(scenes.images), pool.mean(dim=1), titles=scenes.captions,
                                 title="ResNet attention pool (mean over heads) on Shapes test scenes"),
         "12_attnpool_shapes")
    result = {"oracle (mask)": oracle_scores(resnet.config.image_size, pool.shape[-1], N_SCORE)}
    result |= trained_vs_init(resnet, N_SCORE)
    show(plot_localisation(result, title="ResNet attention-pool localisation on Shapes"), "12_localisation_resnet")

# %% tags=["remove-input"]
if resnet.config.is_vit:
    note("This profile has no ResNet Shapes model (the ci model is a ViT), so the attention-pool maps are "
         "skipped here; the book's cpu build shows them.")
    for name in ("12_attnpool_shapes", "12_localisation_resnet"):
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.set_title("skipped in this profile: no ResNet model (see the note above)")
        ax.set_axis_off()
        show(fig, name)
    glue("resnet_sentence", "This profile has no ResNet model, so there is nothing to score.")
else:
    display(scores_table(result))
    trained, init, ceiling = result["trained"], result["init"], result["oracle (mask)"]
    glue("resnet_sentence",
         f"On the same {N_SCORE} scenes the trained pool puts {trained['mass_inside']:.2f} of its mass inside the "
         f"object (initialisation: {init['mass_inside']:.2f}; the object covers {trained['mask_fraction']:.2f} of "
         f"the picture) and peaks on a cell holding it for {trained['pointing']:.0%} of the scenes "
         f"(initialisation: {init['pointing']:.0%}; a random cell: {trained['pointing_chance']:.0%}); the ceiling "
         f"on this grid is {ceiling['mass_inside']:.2f} of the mass and {ceiling['pointing']:.0%} of the peaks. "
         f"With four cells, each covering a quarter of the picture, a map can only say "
         "which quadrant matters, and a small object often sits across two or more of them. What this model "
         f"recognises in such scenes: {knows(resnet, world)} (chapter 6 has the full report).")

# %% [markdown]
# ```{glue:figure} 12_attnpool_shapes
# :name: fig-attnpool-shapes
#
# The ResNet's attention-pool weights from its mean query to each cell of the final feature grid (bottom row,
# mean over heads) on Shapes test scenes (top row). Computed by this notebook.
# ```
#
# ```{glue:figure} 12_localisation_resnet
# :name: fig-localisation-resnet
#
# Localisation scores of the ResNet's attention pool, trained vs initialisation, on Shapes test scenes,
# beside the ceiling (the object's mask averaged down to the pool's grid). Dashed: the chance levels (the
# mask's share of the picture; the share of cells the object touches). Computed by this notebook.
# ```
#
# {glue}`resnet_sentence`
