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
# # Preliminaries: notation and set-up
#
# This chapter fixes the notation the rest of the book uses, reports the machine the numbers in it come from,
# and says which data this build found.
#
# ## The paper says
#
# CLIP learns two encoders at once: an image encoder $f_I$ and a text encoder $f_T$. Each maps its input to a
# vector, a linear projection takes both to a shared space of dimension $d$, and the results are L2-normalised
# ({cite:p}`radford2021clip`, §2.3 and the pseudocode of its Fig. 3). For an image $I_i$ and a caption $T_j$,
# write
#
# $$
# z_i^{I} = \frac{W_I f_I(I_i)}{\lVert W_I f_I(I_i)\rVert}, \qquad
# z_j^{T} = \frac{W_T f_T(T_j)}{\lVert W_T f_T(T_j)\rVert}, \qquad
# S_{ij} = e^{t}\, z_i^{I} \cdot z_j^{T}.
# $$ (eq-similarity)
#
# $S_{ij}$ is a cosine similarity scaled by $e^{t}$, where $t$ is a learned log inverse temperature. The paper
# initialises the temperature at $0.07$, so $t_0 = \ln(1/0.07)$, and clips $e^{t}$ at 100 (§2.5). Everything
# CLIP does, training and zero-shot prediction alike, reads this one matrix: training makes its diagonal win
# over each row and column of a batch; zero-shot classification picks the caption with the largest $S_{ij}$.
#
# ## The code
#
# `CLIP.forward` computes {eq}`eq-similarity` for a batch of images against a batch of captions. The two
# encoders (`encode_image`, `encode_text`) return unnormalised features, as OpenAI's reference does; the
# normalisation and the scale live here:
#
# ```{literalinclude} ../miniclip/model.py
# :pyobject: CLIP.forward
# :dedent:
# ```
#
# The log-temperature is a single learned scalar, `logit_scale`, created in `CLIP.__init__` with the paper's
# starting value:
#
# ```{literalinclude} ../miniclip/loss.py
# :start-at: "#: CLIP: t = log(1/0.07)"
# :end-at: CLIP_MAX_LOGIT_SCALE = 100.0
# ```
#
# ## What it means
#
# Three things are worth holding on to. First, the two towers never see each other's input: they meet only in
# a dot product, so image and text embeddings can be computed, stored and indexed separately, which is what
# makes CLIP a retrieval engine as well as a classifier. Second, normalisation puts every embedding on the unit
# sphere, so $z^I\cdot z^T$ is bounded in $[-1, 1]$ and the *only* way to make the softmax over a batch
# confident is the temperature; that is why $t$ is learned rather than fixed. Third, nothing in
# {eq}`eq-similarity` is specific to classification. Class labels enter CLIP only later, as sentences.
#
# ## Run it
#
# The machine and software this build ran on, as the notebook sees them:

# %%
import platform

import torch
from IPython.display import display

from miniclip import CLIP, CLIPConfig, tokenize
from miniclip.book import glue, markdown_table, profile
from miniclip.data.flickr8k import find_flickr8k
from miniclip.data.folders import open_test_set
from miniclip.data.paths import MissingDataError, data_root

print(f"profile {profile()}, python {platform.python_version()}, torch {torch.__version__}, "
      f"{torch.get_num_threads()} threads, {'CUDA' if torch.cuda.is_available() else 'no GPU'}")

# %% tags=["remove-input"]
glue("profile", profile())
glue("torch_version", torch.__version__)
glue("python_version", platform.python_version())
glue("threads", torch.get_num_threads())
glue("device", "CUDA: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only")

# %% [markdown]
# This page was executed in the {glue}`profile` profile with Python {glue}`python_version` and PyTorch
# {glue}`torch_version` on {glue}`threads` CPU threads ({glue}`device`). Where a later chapter reports a
# time, it names the machine that measured it: absolute timings belong to that machine, their ratios travel
# better.
#
# Which of the three data tiers are present decides what the later chapters can show. Real data is looked for
# under `$MINICLIP_DATA`; what is missing is reported, with the command that fetches it, and the chapters go on
# with the Shapes world, which needs no download.

# %%
def tier_status(name, find):
    try:
        return name, "found", str(find())
    except MissingDataError as e:
        return name, "missing", f"`{e.fetch_command}`"


tiers = [("Shapes (procedural)", "always", "rendered on the fly by `miniclip/data/shapes.py`"),
         tier_status("Flickr8k", find_flickr8k),
         tier_status("CIFAR-10 test", lambda: f"{len(open_test_set('cifar10')):,} images"),
         ("1M-pair web subset", "not used by this book build", "`python -m miniclip data web-subset` (chapter 5)")]
print(f"data root: {data_root()}")
display(markdown_table(tiers, ["tier", "status", "where / how to get it"], align="lll"))

# %% [markdown]
# Finally, {eq}`eq-similarity` on a small model straight after initialisation: three random images against
# three captions. Before training the cosines are close to zero, so every $S_{ij}$ sits near $0$ on a scale
# whose factor $e^{t}$ is already {glue}`init_scale`; training is what makes the diagonal stand out
# (chapter 3 shows it does).

# %%
torch.manual_seed(0)
model = CLIP(CLIPConfig(embed_dim=64, image_size=32, vision_layers=2, vision_width=64, patch_size=8,
                        text_width=64, text_layers=2)).eval()
captions = ["a red circle", "two blue squares", "a dog on a beach"]
with torch.no_grad():
    logits_per_image, logits_per_text = model(torch.rand(3, 3, 32, 32), tokenize(captions))
assert torch.equal(logits_per_image.T, logits_per_text)  # one matrix, read by rows or by columns
print(f"{sum(p.numel() for p in model.parameters()):,} parameters; e^t = {model.logit_scale.exp().item():.2f}")
print(logits_per_image)

# %% tags=["remove-input"]
glue("init_scale", model.logit_scale.exp().item(), "{:.2f}")
glue("init_max_abs_logit", logits_per_image.abs().max().item(), "{:.2f}")

# %% [markdown]
# The largest entry in magnitude is {glue}`init_max_abs_logit`, against a possible $\pm e^{t}$: the random
# encoders have no opinion yet about which caption fits which picture.
