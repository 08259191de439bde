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
# # Retrieval
#
# ## The paper says
#
# Retrieval is the task CLIP is trained on, asked of a held-out set: given a caption, find its image among
# all the images (text→image), or given an image, find one of its captions among all the captions
# (image→text). The paper reports zero-shot retrieval on Flickr30k and MSCOCO, the larger siblings of the
# Flickr8k set used here, and finds zero-shot CLIP competitive with models fine-tuned for these benchmarks,
# better at image→text than at text→image ({cite:t}`radford2021clip`, Appendix E.1; we do not quote its
# numbers, which are for other datasets and a model a thousand times larger). The metric is recall at $k$:
# the share of queries whose right answer is among the $k$ best-scoring candidates.
#
# ## The code
#
# Both directions from one similarity matrix. A query's rank is the number of wrong candidates that score at
# least as high as the right one, so ties count against the model:
#
# ```{literalinclude} ../miniclip/eval/probes.py
# :pyobject: retrieval_recall
# ```
#
# `python -m miniclip eval retrieval --checkpoint CKPT --data flickr8k --split test` runs the same
# computation from the command line (`evaluate_retrieval`).
#
# ## What it means
#
# Flickr8k's test split has five captions per image, so the two directions ask different questions.
# Text→image has one right answer among the $N$ images; image→text has five right answers among the $5N$
# captions and counts a hit if *any* of them is in the top $k$. A random ranking scores almost the same in
# both (about $k/N$), but a model gets five differently worded chances per image in the second, one per query
# in the first.
#
# Retrieval needs no prompt engineering, no class names, no labels: it reads the contrastive objective off
# directly, which makes it the cleanest test of what training achieved, and the harshest, because every one of
# a thousand images is a distractor.
#
# ## Run it
#
# ### Recall at 1, 5 and 10
#
# In the `cpu` profile: the Flickr8k model on every image and caption of Flickr8k's official test split
# {cite:p}`hodosh2013flickr8k`. In the `ci` profile, or without Flickr8k: a Shapes model on validation scenes
# with their one caption each.

# %%
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from miniclip.book import (
    glue,
    markdown_table,
    profile,
    real_or_shapes,
    show,
    trained_model,
    trained_run,
    trained_shapes_world,
)
from miniclip.book.viz import display_image
from miniclip.checkpoint import read_metadata
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.transforms import eval_transform, normalize
from miniclip.eval.features import encode_dataset_images
from miniclip.eval.probes import retrieval_recall
from miniclip.eval.zeroshot import encode_images, encode_texts

N_SHAPES = 200 if profile() == "ci" else 1000  # Shapes validation scenes, when Shapes stands in


def flickr8k_set():
    """The Flickr8k model on the whole Flickr8k test split: normalised image features, every caption, the
    image of each caption, and a way to fetch an image for display."""
    model = trained_model("flickr8k")
    test = Flickr8k(split="test", transform=eval_transform(model.config.image_size))
    image_features = encode_dataset_images(model, test)
    return (model, image_features, test.caption_texts(), torch.tensor(test.caption_image_index()),
            lambda i: test[i][0], "Flickr8k test", "Flickr8k")


def shapes_set():
    """A Shapes model on validation scenes, one caption each."""
    model, world, _ = trained_shapes_world()
    batch = world.render(range(N_SHAPES), split="val")
    images = normalize(batch.images)
    return (model, encode_images(model, images), batch.captions, torch.arange(N_SHAPES), lambda i: images[i],
            "Shapes validation", "Shapes")


model, image_features, captions, owner, image_at, set_name, train_name = real_or_shapes(flickr8k_set, shapes_set)

text_features = encode_texts(model, captions)
recall = retrieval_recall(image_features, text_features, owner)
n_images, n_captions = len(image_features), len(captions)
# Chance: text->image puts the one right image in the top k with probability k / N. Image->text is a hit if any
# of the image's c captions is in the top k of all M captions: 1 - C(M - c, k) / C(M, k), computed exactly.
captions_per_image = n_captions / n_images


def i2t_chance(k, c=round(captions_per_image), m=n_captions):
    return 1 - np.prod([(m - c - j) / (m - j) for j in range(k)])


# %% tags=["remove-input"]
display(markdown_table(
    [(f"text → image ({n_captions:,} caption queries)", *(recall[f"text_to_image_R@{k}"] for k in (1, 5, 10))),
     (f"image → text ({n_images:,} image queries)", *(recall[f"image_to_text_R@{k}"] for k in (1, 5, 10))),
     ("chance, text → image", *(k / n_images for k in (1, 5, 10))),
     ("chance, image → text", *(i2t_chance(k) for k in (1, 5, 10)))],
    ["direction", "R@1", "R@5", "R@10"], formats={"R@1": "{:.1%}", "R@5": "{:.1%}", "R@10": "{:.1%}"}))
glue("rt_set", set_name)
glue("rt_train", train_name)
glue("rt_images", n_images, "{:,}")
glue("rt_captions", n_captions, "{:,}")
for direction in ("text_to_image", "image_to_text"):
    for k in (1, 5, 10):
        glue(f"rt_{direction}_{k}", recall[f"{direction}_R@{k}"], "{:.1%}")
glue("rt_chance_t2i_10", 10 / n_images, "{:.1%}")
glue("rt_chance_i2t_10", i2t_chance(10), "{:.1%}")
glue("rt_lift", recall["text_to_image_R@10"] / (10 / n_images), "{:.0f}")
steps, batch = (read_metadata(trained_run(train_name.lower()) / "final")["config"]["optim"][key]
                for key in ("steps", "batch_size"))
glue("rt_seen", steps * batch, "{:,}")

# %% [markdown]
# On the {glue}`rt_images` images and {glue}`rt_captions` captions of the {glue}`rt_set` set, the
# {glue}`rt_train` model finds a caption's image at rank 1 for {glue}`rt_text_to_image_1` of the captions and in
# its top 10 for {glue}`rt_text_to_image_10` (chance {glue}`rt_chance_t2i_10`: {glue}`rt_lift` times better).
# From the image side, one of its captions is ranked first for {glue}`rt_image_to_text_1` of the images and is
# in the top 10 for {glue}`rt_image_to_text_10` (chance {glue}`rt_chance_i2t_10`).
#
# These are small numbers next to what the paper reports on Flickr30k, and they should be: the model was
# trained on {glue}`rt_seen` image–caption pairs in all (steps × batch), where CLIP saw 12.8 billion
# (32 epochs of 400 million). The table says how far from random the ranking is; a look at what the model
# retrieves says what it learned.
#
# ### What a caption retrieves
#
# Three captions of the set, each with the five images that score highest for it. The caption's own image is
# framed in green when it is among them.

# %%
queries = [int(t) for t in np.linspace(0, n_captions - 1, 3).round()]
similarity = image_features @ text_features.t()  # [images, captions]
fig, axes = plt.subplots(len(queries), 6, figsize=(10, 2.2 * len(queries)),
                         gridspec_kw={"width_ratios": [1.6, 1, 1, 1, 1, 1]})
found = 0
for row, t in enumerate(queries):
    axes[row, 0].text(0, 0.5, textwrap.fill(f"“{captions[t]}”", 26), va="center", fontsize=8)
    axes[row, 0].set_title("text query", fontsize=8)
    axes[row, 0].axis("off")
    top = similarity[:, t].topk(5).indices.tolist()
    for col, i in enumerate(top, start=1):
        ax = axes[row, col]
        ax.imshow(display_image(image_at(i)))
        ax.set_title(f"#{col}  cos {similarity[i, t]:.2f}", fontsize=7)
        ax.set_xticks([]), ax.set_yticks([])
        if i == owner[t]:
            found += 1
            for spine in ax.spines.values():
                spine.set_edgecolor("#009E73"), spine.set_linewidth(4)
fig.suptitle(f"Text → image: the top 5 of {n_images:,} {set_name} images for three captions", fontsize=10)
fig.tight_layout()
show(fig, "09_text_to_image")

# %% tags=["remove-input"]
glue("rt_found", found)
glue("rt_queries", len(queries))

# %% [markdown]
# ```{glue:figure} 09_text_to_image
# :name: fig-text-to-image
#
# Text→image retrieval: each row is a caption and the five images of the set most similar to it, best first,
# with their cosine similarity. A green frame marks the caption's own image.
# ```
#
# The caption's own image is among the top five for {glue}`rt_found` of these {glue}`rt_queries` queries. Even
# where it is missing, the retrieved images tend to share the caption's coarse content (colours, a person or
# an animal, water or snow), which is what a small model on few pictures can learn first; the reader can judge
# from the figure how far that holds.
#
# ### What an image retrieves
#
# The other direction: three images with the three captions that score highest for them; a tick marks a
# caption written for that image.

# %%
picks = [int(i) for i in np.linspace(0, n_images - 1, 3).round()]
fig, axes = plt.subplots(len(picks), 2, figsize=(9, 2.3 * len(picks)), gridspec_kw={"width_ratios": [1, 3.2]})
hits = 0
for row, i in enumerate(picks):
    axes[row, 0].imshow(display_image(image_at(i)))
    axes[row, 0].set_title("image query", fontsize=8)
    axes[row, 0].axis("off")
    top = similarity[i].topk(3).indices.tolist()
    lines = []
    for rank, t in enumerate(top, start=1):
        mine = bool(owner[t] == i)
        hits += mine
        mark = "✓" if mine else "✗"
        lines.append(f"{rank}. {mark} {textwrap.shorten(captions[t], 70)}  (cos {similarity[i, t]:.2f})")
    own = captions[int((owner == i).nonzero()[0, 0])]
    lines.append(f"\nwritten for it: {textwrap.shorten(own, 70)}")
    axes[row, 1].text(0, 0.5, "\n".join(lines), va="center", fontsize=8)
    axes[row, 1].set_title("top-3 captions (✓ = written for this image)", fontsize=8)
    axes[row, 1].axis("off")
fig.suptitle(f"Image → text: the top 3 of {n_captions:,} {set_name} captions for three images", fontsize=10)
fig.tight_layout()
show(fig, "09_image_to_text")

# %% tags=["remove-input"]
glue("rt_i2t_hits", hits)
glue("rt_i2t_shown", 3 * len(picks))

# %% [markdown]
# ```{glue:figure} 09_image_to_text
# :name: fig-image-to-text
#
# Image→text retrieval: three images of the set, each with the three most similar captions of all captions
# of the set, and one caption that was written for it.
# ```
#
# Of the {glue}`rt_i2t_shown` captions retrieved here, {glue}`rt_i2t_hits` were written for the image they
# were retrieved for. A "wrong" caption is not always a bad one: five captions per image cannot list
# everything a photo shows, and another picture's caption may describe this one well, which recall@k still
# counts as a miss. Reading the figure shows which kind of miss this model makes.
