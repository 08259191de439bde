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
# # The embedding space
#
# ## The paper says
#
# CLIP maps an image and a text into the same $d$-dimensional space and compares them by cosine similarity
# ({cite:t}`radford2021clip`, §2.3 and Fig. 3): nothing else about the space is constrained. The paper
# itself measures this space only through what it *does* (zero-shot transfer, linear probes, retrieval); it
# does not draw it. Drawing it is still the most direct way to see what the contrastive loss builds, and
# two things are worth looking for. First, whether images and texts of the same concept land near each other,
# which is what zero-shot classification relies on. Second, how far apart the two modalities sit as a whole:
# later work found that in CLIP-like models images and texts occupy two separate regions of the sphere, the
# *modality gap* {cite:p}`liang2022modalitygap`, because the loss only compares angles *within* the batch's
# similarity matrix and is indifferent to a shift that moves every image (or every text) together.
#
# ## The code
#
# We flatten the space to two dimensions with t-SNE {cite:p}`vandermaaten2008tsne`, which keeps local
# neighbourhoods, or UMAP {cite:p}`mcinnes2018umap`, which keeps a little more of the global layout. Both run
# on the normalised embeddings with cosine distance, the geometry CLIP itself uses:
#
# ```{literalinclude} ../miniclip/analysis/embeddings.py
# :pyobject: project_2d
# ```
#
# Images and texts are projected in *one* fit, so that their positions on the map can be compared:
#
# ```{literalinclude} ../miniclip/analysis/embeddings.py
# :pyobject: joint_embedding_map
# ```
#
# For real photos we pick a family of concepts whose pictures overlap (beach, ocean, water, sea, sand) and
# label each image by the word its captions use most:
#
# ```{literalinclude} ../miniclip/analysis/embeddings.py
# :pyobject: ambiguous_pairs
# ```
#
# ## What it means
#
# A 2-D map of a 64- or 512-dimensional space is a caricature: t-SNE in particular preserves who is near
# whom, but distances between clusters and the size of clusters on its map mean little. What such maps can
# show honestly is (i) whether points with the same label form neighbourhoods, and (ii) whether the two
# modalities mix. For (ii) we also measure the gap directly in the full space, with no projection: the
# distance between the mean image embedding and the mean text embedding, next to the typical cosine of a
# matching image–text pair.
#
# The beach/ocean/water family is a small picture of a problem web-scale captions have everywhere: the same
# photo of a child running into the waves is "a beach" to one annotator and "the ocean" or "the water" to
# another. A model trained on such captions cannot separate these words by the pictures, and the map shows
# them overlapping. That is not a failure of the model but a property of the supervision.
#
# ## Run it

# %%
import numpy as np
import torch
from IPython.display import display

from miniclip.analysis.embeddings import flickr8k_ambiguous_map, joint_embedding_map
from miniclip.book import data_note, glue, markdown_table, note, profile, show, trained_model, trained_shapes_world
from miniclip.book.viz import plot_embedding_map
from miniclip.data.paths import MissingDataError
from miniclip.data.transforms import normalize
from miniclip.eval.zeroshot import encode_images, encode_texts

CI = profile() == "ci"
N_SHAPES = 96 if CI else 400  # single-object Shapes test scenes on the map, with their captions
MAX_AMBIGUOUS = 40 if CI else 300  # Flickr8k test images in the ambiguous-pairs map
# UMAP's first call compiles numba code for one to three minutes, which the seconds-long ci profile cannot
# afford: there the Shapes map is drawn with t-SNE only.
METHODS = ("tsne",) if CI else ("tsne", "umap")
# t-SNE's optimisation is the slow part here; the ci profile stops it soon after the early-exaggeration phase.
TSNE_OPTIONS = {"max_iter": 300} if CI else {}
if CI:
    note("The ci profile has only a tiny Shapes model trained for seconds, and draws t-SNE maps only (no "
         "UMAP), with t-SNE stopped after 300 iterations: its maps are smoke, not results.")

shapes_model, world, _ = trained_shapes_world()
batch = world.render(range(N_SHAPES), "test", n_objects=1)
colour_names = world.class_names("colour")
colours = [colour_names[c] for c in world.labels(batch, "colour")]
image_features = encode_images(shapes_model, normalize(batch.images))
text_features = encode_texts(shapes_model, batch.captions)

# %% tags=["remove-input"]
glue("n_shapes", N_SHAPES)
glue("shapes_example_caption", batch.captions[0])

# %% [markdown]
# The first map holds {glue}`n_shapes` single-object Shapes test scenes and their own captions (for example
# "{glue}`shapes_example_caption`"), embedded by the book's Shapes model. Each image and each caption is one
# point; the map is coloured first by modality, then by the object's colour.

# %%
maps = {method: joint_embedding_map(image_features, text_features, image_labels=colours, text_labels=colours,
                                    method=method, **(TSNE_OPTIONS if method == "tsne" else {}))
        for method in METHODS}
show(plot_embedding_map(maps["tsne"], "modality", "t-SNE of Shapes images and their captions, by modality"),
     "11_shapes_tsne_modality")
show(plot_embedding_map(maps["tsne"], "label", "t-SNE of Shapes images and their captions, by object colour"),
     "11_shapes_tsne_colour")

# %% [markdown]
# ```{glue:figure} 11_shapes_tsne_modality
# :name: fig-shapes-tsne-modality
#
# t-SNE of Shapes test images (circles) and their captions (triangles), projected together with cosine
# distance. Computed by this notebook.
# ```
#
# ```{glue:figure} 11_shapes_tsne_colour
# :name: fig-shapes-tsne-colour
#
# The same map coloured by the object's colour (circles: images, triangles: captions). Computed by this
# notebook.
# ```

# %%
if "umap" in maps:
    fig = plot_embedding_map(maps["umap"], "label", "UMAP of Shapes images and their captions, by object colour")
else:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 1.2))
    ax.set_title("UMAP skipped in the ci profile (see the note above)")
    ax.set_axis_off()
show(fig, "11_shapes_umap_colour")

# %% [markdown]
# ```{glue:figure} 11_shapes_umap_colour
# :name: fig-shapes-umap-colour
#
# UMAP of the same Shapes images (circles) and captions (triangles), coloured by object colour, in one fit
# with cosine distance. Computed by this notebook (in the ci profile this panel only says it was skipped).
# ```
#
# Compare the two maps: the placement and size of clusters differ between the methods, a reminder that on
# either map only who is next to whom carries information.

# %% [markdown]
# How far apart are the two modalities, measured in the full space rather than on a map? Below: the cosine
# of each image with its own caption, against the cosine with a random other caption, and the distance
# between the two modalities' centroids.


# %%
def modality_gap(image_features: torch.Tensor, text_features: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """The paired and unpaired cosines of row-aligned normalised features, and the centroid distance."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(text_features), generator=generator)
    return {"paired": (image_features * text_features).sum(-1).mean().item(),
            "unpaired": (image_features * text_features[shuffled]).sum(-1).mean().item(),
            "centroid_distance": (image_features.mean(0) - text_features.mean(0)).norm().item(),
            "within_image": (image_features @ image_features.t()).mean().item(),
            "within_text": (text_features @ text_features.t()).mean().item()}


gap = modality_gap(image_features, text_features)

# %% tags=["remove-input"]
GAP_NAMES = {"paired": "mean cosine, an image and its own caption",
             "unpaired": "mean cosine, an image and a random other caption",
             "within_image": "mean cosine, two images", "within_text": "mean cosine, two captions",
             "centroid_distance": "distance between the image centroid and the text centroid"}
display(markdown_table(((what, gap[key]) for key, what in GAP_NAMES.items()),
                       ["Shapes test scenes, in the full embedding space", "value"], formats={"value": "{:.3f}"}))
for key, value in gap.items():
    glue(f"shapes_{key}", value, "{:.3f}")
glue("paired_verdict", "clearly higher: the ordering zero-shot classification relies on"
     if gap["paired"] > gap["unpaired"] + 0.02 else "hardly different: this model has barely learned to pair them")
cone = min(gap["within_image"], gap["within_text"]) > gap["paired"]
glue("cone_verdict", "both above the paired cosine: each modality sits in its own narrow cone, and" if cone
     else "not both above the paired cosine, so the modalities are less separated than usual here; still,")

# %% [markdown]
# An image and its own caption have a mean cosine of {glue}`shapes_paired`, against {glue}`shapes_unpaired`
# for an image and a random caption: {glue}`paired_verdict`. Two *images* have a mean cosine of
# {glue}`shapes_within_image` and two *captions* {glue}`shapes_within_text`, {glue}`cone_verdict` the
# distance between the two centroids is {glue}`shapes_centroid_distance` (on unit vectors, where 2 is the
# most there can be and 0 would mean no gap). This is the modality gap: where it is large, the maps above show
# images and captions as separate clouds, each sorted inside by the attributes the model learned,
# rather than one cloud in which every caption sits next to its picture.
#
# ### Ambiguous pairs in real photos
#
# Now the Flickr8k model on Flickr8k test photos whose captions mention the beach, the ocean, water, the sea
# or sand. Each image is coloured by the word its captions use most, each caption by its own word.

# %%
try:
    from miniclip.data.flickr8k import Flickr8k
    from miniclip.data.transforms import eval_transform

    flickr_model = trained_model("flickr8k")
    test = Flickr8k(split="test", transform=eval_transform(flickr_model.config.image_size), train=False)
    ambiguous = flickr8k_ambiguous_map(flickr_model, test, max_images=MAX_AMBIGUOUS, **TSNE_OPTIONS)
    source = "Flickr8k test"
except MissingDataError as e:
    data_note(e)
    # Shapes stand-in: colours whose words are close in meaning play the part of beach/ocean/water.
    ambiguous = maps["tsne"]
    source = "Shapes (stand-in)"
show(plot_embedding_map(ambiguous, "label", f"t-SNE of ambiguous pairs ({source}), by caption word"),
     "11_ambiguous_pairs")

# %% tags=["remove-input"]
images = ambiguous.where("image")
words = list(dict.fromkeys(ambiguous.labels[images].tolist()))
glue("n_ambiguous_images", int(images.sum()))
glue("n_ambiguous_captions", int(ambiguous.where("text").sum()))
glue("ambiguous_counts", ", ".join(f"{w} {int((ambiguous.labels[images] == w).sum())}" for w in words))

# %% [markdown]
# ```{glue:figure} 11_ambiguous_pairs
# :name: fig-ambiguous-pairs
#
# t-SNE of the ambiguous pairs: images (circles) and captions (triangles) whose captions mention beach, ocean,
# water, sea or sand, coloured by that word. Computed by this notebook.
# ```
#
# The map holds {glue}`n_ambiguous_images` images and {glue}`n_ambiguous_captions` of their captions; the
# images' majority words are: {glue}`ambiguous_counts`. To put a number on the overlap the map suggests, we
# ask, in the full embedding space, how often an image's nearest *caption* carries the image's own word,
# against how often a caption drawn at random would.

# %%
image_words = ambiguous.labels[ambiguous.where("image")]
caption_words = ambiguous.labels[ambiguous.where("text")]
if source.startswith("Flickr8k"):
    from miniclip.analysis.embeddings import ambiguous_pairs
    from miniclip.eval.features import encode_dataset_images

    indices, _, captions, _ = ambiguous_pairs(test.captions, max_images=MAX_AMBIGUOUS)
    full_images = encode_dataset_images(flickr_model, torch.utils.data.Subset(test, indices))
    full_texts = encode_texts(flickr_model, captions)
else:
    full_images, full_texts = image_features, text_features
nearest = (full_images @ full_texts.t()).argmax(dim=1).numpy()
agreement = float(np.mean(caption_words[nearest] == image_words))
# A caption drawn at random carries word w with probability (share of w among captions).
chance = float(sum(np.mean(image_words == w) * np.mean(caption_words == w)
                   for w in set(image_words.tolist())))
print(f"nearest caption has the image's word: {agreement:.1%} (random caption: {chance:.1%})")

# %% tags=["remove-input"]
glue("nearest_agreement", agreement, "{:.1%}")
glue("nearest_chance", chance, "{:.1%}")
glue("overlap_verdict", "no better than" if agreement <= chance + 0.02 else
     "only somewhat better than" if agreement < chance + 0.15 else "clearly better than")

# %% [markdown]
# An image's nearest caption carries the image's own majority word {glue}`nearest_agreement` of the time,
# against {glue}`nearest_chance` for a random caption of the set: {glue}`overlap_verdict` chance. Part of
# what is left is not the model's to fix: "beach" and "ocean" are not two classes, but two descriptions of
# largely the same photos, and no embedding can put a photo nearer to one of them than its captions do.
