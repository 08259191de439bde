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
# # Introduction: language as supervision
#
# ## The paper says
#
# Vision models are usually trained to predict a fixed set of labels, and using them for anything else needs
# new labelled data. The paper's premise (§1 and §2.1 of {cite:t}`radford2021clip`) is that the text people
# write next to images is a far larger and richer source of supervision than any label set: it names objects,
# but also scenes, actions, styles and relations, and it exists on the web by the hundreds of millions. If a
# model learns which caption goes with which picture, then a *new* classification task needs no training at
# all: write each class name as a sentence ("a photo of a dog."), embed the sentences, and pick the one
# closest to the image. The paper calls this zero-shot transfer and shows it across more than 30 datasets
# (§3.1).
#
# ## The code
#
# The whole of zero-shot classification is two functions. The classifier's weights are the embeddings of the
# class prompts (averaged over templates when there are several, §3.1.4):
#
# ```{literalinclude} ../miniclip/eval/zeroshot.py
# :pyobject: classifier_weights
# ```
#
# and prediction is a matrix product of normalised image features with those weights, followed by an argmax:
#
# ```{literalinclude} ../miniclip/eval/zeroshot.py
# :pyobject: evaluate_zeroshot
# ```
#
# ## What it means
#
# There is no classification head anywhere in CLIP. The "classifier" is built from text at test time, so the
# label set can be anything that can be written down, and the same trained model serves every task. The price
# is that accuracy now depends on how the classes are *phrased* (chapter 7 measures it) and on whether the
# training captions ever used those words for those things.
#
# The models in this book are tiny and have seen thousands of pictures, not 400 million, so what follows
# demonstrates the mechanism, not the paper's accuracy. The test is still honest: the model below never saw a
# single label of the test set during training.
#
# ## Run it
#
# In the `cpu` profile the model is the book's Flickr8k model (a small ResNet trained on 6,000 captioned
# photos, chapter 6), and the test set is the Intel scenes test split: 2,158 outdoor photos of six kinds of scene
# (buildings, forest, glacier, mountain, sea, street), whose class names the model has never been trained to
# predict, though Flickr8k's captions talk about such scenes. (CIFAR-10, whose objects those captions hardly
# name, is chapter 7's hard case.) In the `ci` profile, or when the Intel scenes are absent, the model is a
# Shapes model and the test is the Shapes world's held-out (colour, shape) pairs, which no training caption
# ever names together.

# %%
import torch
import torch.nn.functional as F

from miniclip.book import glue, real_or_shapes, show, trained_model, trained_shapes_world
from miniclip.book.viz import plot_heatmap
from miniclip.eval.classnames import class_names as scene_names
from miniclip.eval.features import FeatureCache, test_set_features
from miniclip.eval.zeroshot import SCENE_TEMPLATES, classifier_weights, encode_images, topk_accuracy

N_TEST = 200  # Shapes held-out objects in the ci profile; the Intel scenes are used whole


def scenes_task():
    """The Flickr8k model on the whole Intel scenes test split (features cached), or MissingDataError. The class
    names carry their article ("a forest", "the sea"), as the scene templates ("a photo of {}.") expect."""
    model = trained_model("flickr8k")
    features, labels, _ = test_set_features(model, "intel-scenes", FeatureCache())
    return (model, F.normalize(features, dim=-1), labels, scene_names("intel-scenes"), SCENE_TEMPLATES,
            "Intel scenes test", "Flickr8k")


def shapes_task():
    """A Shapes model on single objects of the held-out (colour, shape) pairs, among all 64 pairs."""
    model, world, _ = trained_shapes_world()
    images, labels, prompts = world.heldout_zeroshot(N_TEST)
    return model, encode_images(model, images), labels, prompts, ("{}",), "Shapes held-out pairs", "Shapes"


model, features, labels, class_names, templates, test_name, train_name = real_or_shapes(scenes_task, shapes_task)

weights = classifier_weights(model, class_names, templates)
logits = features @ weights.T
accuracy = topk_accuracy(logits, labels)
print(f"{test_name}: top-1 {accuracy['top1']:.1%}, top-5 {accuracy['top5']:.1%}, chance {1 / len(class_names):.1%}")

# %% tags=["remove-input"]
glue("test_name", test_name)
glue("train_name", train_name)
glue("n_test", len(labels), "{:,}")
glue("n_classes", len(class_names))
glue("n_templates", len(templates))
glue("top1", accuracy["top1"], "{:.1%}")
glue("top5", accuracy["top5"], "{:.1%}")
glue("chance", 1 / len(class_names), "{:.1%}")
above_chance = accuracy["top1"] > 1 / len(class_names)
glue("verdict", "Far from the paper's numbers, as it must be at this scale, but above chance: the mapping from "
     "words to pictures was learned from captions alone." if above_chance else
     "That is no better than chance: this model has not learned enough to transfer.")

# %% [markdown]
# On {glue}`n_test` images of the {glue}`test_name`, the {glue}`train_name` model, given only the
# {glue}`n_classes` class names in {glue}`n_templates` prompt template(s), picks the right class first
# {glue}`top1` of the time and among its top five {glue}`top5` of the time, against a chance level of
# {glue}`chance`. {glue}`verdict`
#
# The figure below opens the classifier up: for one test image of each of the first classes it shows the
# cosine similarity between the image and every class prompt. A zero-shot prediction is the brightest cell of
# each row; a correct one lies on the diagonal.

# %%
shown = labels.unique()[:10]  # up to ten classes that occur in the test set
rows = torch.stack([(labels == c).nonzero()[0, 0] for c in shown])  # the first test image of each
cosines = features[rows] @ weights[shown].T
names = [class_names[c] for c in shown]
show(plot_heatmap(cosines, names, names, title=f"Cosine similarity, {test_name}",
                  xlabel="class prompt (text embedding)", ylabel="test image (its true class)",
                  value_label="cosine similarity $z^I \\cdot z^T$",
                  outline=[(i, int(j)) for i, j in enumerate(cosines.argmax(1))]),  # each row's prediction
     "02_zeroshot_similarity")

# %% tags=["remove-input"]
glue("n_right_in_grid", int((cosines.argmax(1) == torch.arange(len(shown))).sum()))
glue("n_grid", len(rows))
top2 = cosines.topk(2, dim=1).values
glue("cos_range", f"{cosines.min():.2f} to {cosines.max():.2f}")
glue("cos_margin", (top2[:, 0] - top2[:, 1]).mean().item(), "{:.2f}")

# %% [markdown]
# ```{glue:figure} 02_zeroshot_similarity
# :name: fig-zeroshot-similarity
#
# Zero-shot classification as a similarity table: rows are test images (one per class), columns are the
# embedded prompts of the same classes; a frame marks the best-scoring prompt of each row, the classifier's
# prediction.
# ```
#
# In this table {glue}`n_right_in_grid` of the {glue}`n_grid` rows score their own class highest among the
# prompts shown. The cosines run from {glue}`cos_range`, and in each row the best prompt leads the runner-up by
# {glue}`cos_margin` on average: the decision rides on margins of that size, which the learned temperature
# (chapter 3) multiplies into a confident softmax.
