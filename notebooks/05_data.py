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
# # Data: three tiers, one code path
#
# ## The paper says
#
# Existing captioned datasets were too small (MS-COCO, Visual Genome: about 100,000 images) or too noisy once
# filtered (YFCC100M: 15 million usable of 100 million), so the authors built WIT, a set of 400 million
# (image, text) pairs collected from the public internet ({cite:t}`radford2021clip`, §2.2). To cover a broad
# range of visual concepts they searched for pairs whose text contains one of 500,000 queries (words
# frequent on Wikipedia, bigrams, titles of Wikipedia articles, WordNet synsets) and kept up to 20,000 pairs per
# query. The resulting word count is similar to that of the WebText corpus used to train GPT-2. WIT itself
# was never released.
#
# ## The code
#
# This book cannot download 400 million pictures, so it works on three tiers that all feed the same trainer
# (the dispatch is one function):
#
# ```{literalinclude} ../miniclip/data/loaders.py
# :pyobject: train_batches
# ```
#
# - **Shapes** is a procedural world of coloured shapes with captions, rendered on the fly by signed distance
#   functions in PyTorch, deterministic in (seed, index), with ground truth for everything a caption says:
#
#   ```{literalinclude} ../miniclip/data/shapes.py
#   :pyobject: ShapesWorld.render
#   ```
#
# - **Flickr8k** {cite:p}`hodosh2013flickr8k` is 8,000 real photos with five human captions each; the loader
#   reads the original distribution or Kaggle's layout, zipped or not, and skips (and counts) the images that
#   real downloads are missing:
#
#   ```{literalinclude} ../miniclip/data/flickr8k.py
#   :pyobject: Flickr8k.__getitem__
#   ```
#
# - **A web subset** of 1M pairs from Conceptual Captions (CC3M or CC12M) is downloaded with img2dataset into
#   webdataset shards; see "Building the 1M subset" below.
#
# ## What it means
#
# The paper's central bet is that scale and diversity of captions, not their quality, is what matters: the
# captions in WIT are whatever people wrote. Our tiers trade in the opposite direction. Shapes has perfect
# captions and a tiny vocabulary, which makes it a laboratory: when a chapter asks "did the model learn
# colour, or shape, or counting?" the world knows the answer. Flickr8k has careful human captions about people
# and dogs and beaches, and 6,000 training pictures: enough to see the mechanism work on real photos, far too
# few to see the paper's breadth. Chapter 2's zero-shot numbers should be read with that in mind.
#
# ## Run it
#
# ### Shapes
#
# Twelve samples of the Shapes world at the book's resolution, with their captions. Styles (flat, outline
# sketch, textured photo, noisy), counts, positions and relations all vary, and so does the grammar of the
# captions.

# %%
import textwrap
import time

import matplotlib.pyplot as plt
import torch

from miniclip.book import data_note, glue, machine_text, read_metrics, show, trained_run
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.paths import MissingDataError
from miniclip.data.shapes import ShapesConfig, ShapesWorld
from miniclip.env import machine

world = ShapesWorld(ShapesConfig(image_size=64))
batch = world.render(range(12))


def caption_grid(images, captions, title, cols=4):
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 3.4 * rows))
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image)
        ax.set_title("\n".join(textwrap.wrap(caption, 34)), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(images):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


show(caption_grid(batch.images.permute(0, 2, 3, 1).clamp(0, 1), batch.captions,
                  "Shapes: samples 0-11 of the training split"), "05_shapes_samples")

# %% [markdown]
# ```{glue:figure} 05_shapes_samples
# :name: fig-shapes-samples
#
# The first twelve training samples of the Shapes world (64 px), each titled with its caption. Every sample is
# a deterministic function of the world's seed and the sample's index.
# ```
#
# How fast the world renders, here and now, compared with what training consumes (the training speed is read
# from the metrics of the book's Shapes run, chapter 6):

# %%
indices = torch.arange(1024)
world.render(indices[:64])  # warm up
start = time.perf_counter()
world.render(indices)
rate = len(indices) / (time.perf_counter() - start)
train_records, _ = read_metrics(trained_run("shapes"))
train_rate = sorted(r["samples_per_s"] for r in train_records)[len(train_records) // 2]
print(f"rendering: {rate:,.0f} samples/s at 64 px; training consumed a median {train_rate:,.0f} samples/s")

# %% tags=["remove-input"]
glue("shapes_rate", rate, "{:,.0f}")
glue("train_rate", train_rate, "{:,.0f}")
glue("render_ratio", rate / train_rate, "{:.1f}")
glue("render_machine", machine_text(machine()))
glue("heldout_pairs", ", ".join(f"{c} {s}" for c, s in world.config.holdout))

# %% [markdown]
# Rendering runs at {glue}`shapes_rate` samples per second on the machine that built this page
# ({glue}`render_machine`), while training the Shapes model consumed a median of {glue}`train_rate` per second:
# rendering is {glue}`render_ratio` times as fast as the appetite it feeds (ratios above 1 mean the data does
# not hold training up; the two rates were measured at different times, on machines that may have been busy
# with other work). Four (colour, shape) pairs never occur in training ({glue}`heldout_pairs`): the model meets
# them only at test time, which makes them a true zero-shot test (chapter 2).
#
# ### Flickr8k

# %%
try:
    flickr, test = Flickr8k(split="train"), Flickr8k(split="test")
except MissingDataError as e:
    flickr, missing = None, e
    data_note(e)
if flickr is not None:
    picks = range(0, 800, 100)
    show(caption_grid([flickr[i][0] for i in picks], [flickr.captions[i][0] for i in picks],
                      "Flickr8k: training photos with their first caption"), "05_flickr8k_samples")

# %% tags=["remove-input"]
FLICKR_NAMES = ("flickr_train", "flickr_test", "flickr_missing", "flickr_listed", "flickr_captions", "flickr_size")
if flickr is not None:
    glue("flickr_train", len(flickr), "{:,}")
    glue("flickr_test", len(test), "{:,}")
    glue("flickr_missing", len(flickr.missing), "{:,}")
    glue("flickr_listed", flickr.listed, "{:,}")
    glue("flickr_captions", sum(map(len, flickr.captions)), "{:,}")
    glue("flickr_size", "×".join(map(str, flickr.pil_image(0).size)))
else:  # the figure and numbers below still need something to show: say plainly that the data is absent
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.text(0.5, 0.5, f"Flickr8k is not available here.\nFetch it with: {missing.fetch_command}", ha="center",
            va="center")
    ax.set_title("Flickr8k samples: data missing")
    ax.axis("off")
    show(fig, "05_flickr8k_samples")
    for name in FLICKR_NAMES:
        glue(name, "(not available)")

# %% [markdown]
# ```{glue:figure} 05_flickr8k_samples
# :name: fig-flickr8k-samples
#
# Eight Flickr8k training photos (every hundredth) with the first of their five human captions, as this copy
# stores them.
# ```
#
# The training split holds {glue}`flickr_train` photos with {glue}`flickr_captions` captions; the test split,
# {glue}`flickr_test`. Of the {glue}`flickr_listed` training images the split list names,
# {glue}`flickr_missing` are absent from this download: the loader skips them, counts them and says so once.
# This copy stores the photos at {glue}`flickr_size` pixels; the book's models see them at 64.
#
# ### Building the 1M subset
#
# For the `gpu-1m` profile, a list of image URLs with captions (CC3M's or CC12M's TSV) becomes webdataset
# shards with one command; it resizes with img2dataset, respects sites that opt out of AI use, and can resume:
#
# ```bash
# python -m miniclip data web-subset --urls cc12m.tsv --num-samples 1000000 \
#     --out $MINICLIP_DATA/web1m --image-size 224 --processes 8 --threads 64
# python -m miniclip train --config configs/gpu-1m.yaml
# ```
#
# The function behind it:
#
# ```{literalinclude} ../miniclip/data/web_subset.py
# :pyobject: build_web_subset
# ```
#
# The book is built without internet access, so how many of the list's URLs still resolve is not measured
# here; the test suite runs the same pipeline end to end against a local HTTP server.
