# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Preliminaries: notation and set-up
#
# **The paper says.** CLIP trains an image encoder $f_I$ and a text encoder $f_T$ so that, after each
# is projected and L2-normalised, a matching image and caption point the same way
# ({cite:p}`radford2021clip`, §2.3). With $z_I = f_I(I)/\lVert f_I(I)\rVert$ and
# $z_T = f_T(T)/\lVert f_T(T)\rVert$, the score of image $i$ against caption $j$ is a scaled cosine
#
# $$ S_{ij} = e^{t}\, z_I^{(i)} \cdot z_T^{(j)}, $$
#
# where $t$ is a learned log-temperature that starts at $\ln(1/0.07)$.
#
# **The code.** `CLIP.forward` computes exactly this matrix:
#
# ```{literalinclude} ../miniclip/model.py
# :pyobject: CLIP.forward
# ```

# %%
import platform

import torch

from miniclip import CLIP, CLIPConfig
from miniclip.book import profile
from miniclip.tokenizer import tokenize

print(f"profile: {profile()}  python {platform.python_version()}  torch {torch.__version__}  "
      f"threads {torch.get_num_threads()}  cuda {torch.cuda.is_available()}")

# %% [markdown]
# **Run it.** A small, untrained model already produces the matrix: three images against three captions.
# Before training the scores are near $e^{t}\cdot 0$; training is what makes the diagonal stand out.

# %%
torch.manual_seed(0)
model = CLIP(CLIPConfig(embed_dim=64, image_size=32, vision_layers=2, vision_width=64, patch_size=8,
                        text_width=64, text_layers=2)).eval()
captions = ["a red circle", "two blue squares", "a dog on a beach"]
with torch.no_grad():
    logits_per_image, _ = model(torch.rand(3, 3, 32, 32), tokenize(captions))
n_params = sum(p.numel() for p in model.parameters())
print(f"{n_params:,} parameters; logit scale e^t = {model.logit_scale.exp().item():.2f}")
print(logits_per_image)
