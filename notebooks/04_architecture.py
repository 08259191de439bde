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
# # Architecture: two encoders and a projection
#
# ## The paper says
#
# CLIP's image encoder is either a ResNet or a Vision Transformer, and its text encoder is a Transformer
# ({cite:t}`radford2021clip`, §2.4). The ResNets are ResNet-50 {cite:p}`he2016resnet` with three changes: a
# stem of three convolutions with an average pool, anti-aliased ("blurred") strided convolutions, and an
# *attention pool* in place of the global average pool: one multi-head attention layer whose query is the
# mean of the feature map. The ViTs follow {cite:t}`dosovitskiy2021vit` with an extra layer norm before the
# transformer. The text encoder is a 63M-parameter, 12-layer, 512-wide transformer with 8 heads over at most
# 76 byte-pair-encoded tokens {cite:p}`sennrich2016bpe` of a 49,152-word vocabulary, bracketed by start and
# end tokens, with masked (causal) self-attention; the activation at the end-of-text token, after a final
# layer norm, is the text's feature. Both features are projected linearly into the shared embedding space.
#
# ## The code
#
# The Vision Transformer: patches by a strided convolution, a class token, positions, `ln_pre`, the
# transformer, and the class token's output projected.
#
# ```{literalinclude} ../miniclip/model.py
# :pyobject: VisionTransformer
# ```
#
# The attention pool that ends the ModifiedResNet. Only the mean token's output is used, so only it is given
# a query:
#
# ```{literalinclude} ../miniclip/model.py
# :pyobject: AttentionPool2d.forward
# :dedent:
# ```
#
# The text encoder reads the feature at the end-of-text token, which has the largest id in the vocabulary, so
# `argmax` finds it. Under the causal mask the padding after the longest caption in a batch cannot change any
# end-of-text feature, so the tower runs only over the positions the batch needs:
#
# ```{literalinclude} ../miniclip/model.py
# :pyobject: CLIP.encode_text
# :dedent:
# ```
#
# `build_model` reads every size from the names and shapes of a state dict, as OpenAI's loader does, so the
# weights of a released CLIP load without a config file:
#
# ```{literalinclude} ../miniclip/model.py
# :pyobject: config_from_state_dict
# ```
#
# The tokenizer (byte-level BPE) has an appendix of its own, {doc}`appendix_b_tokenizer`.
#
# ## What it means
#
# The two towers are deliberately ordinary. The paper's contribution is the objective and the data, not a new
# network: any encoder that produces a vector can be plugged in. The ViT's compute scales with the number of
# patches, $(\text{image size}/\text{patch})^2$, which is why ViT-B/32 is cheap and ViT-L/14 is not; the
# ResNet's with the number of pixels. The causal mask in the text tower is there, the paper says, to keep the
# option of initialising from or adding a language-modelling objective; CLIP itself never uses it for
# generation.
#
# ## Run it
#
# ### Parameters and compute
#
# Sizes of the paper's standard models and of this book's models, counted from the modules themselves. The
# models are built on PyTorch's `meta` device, which allocates no memory, and forward passes are counted with
# `torch.utils.flop_counter` (which counts a multiply-add as two FLOPs).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from torch.utils.flop_counter import FlopCounterMode

from miniclip import CLIP, CLIPConfig, build_model, tokenize
from miniclip.book import config_path, glue, markdown_table, profile, show
from miniclip.config import load_config

# Sizes as in OpenAI's released models (the same numbers open_clip's model configs carry).
STANDARD = {
    "RN50": CLIPConfig(embed_dim=1024, image_size=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                       text_width=512, text_layers=12),
    "ViT-B/32": CLIPConfig(embed_dim=512, image_size=224, vision_layers=12, vision_width=768, patch_size=32,
                           text_width=512, text_layers=12),
    "ViT-B/16": CLIPConfig(embed_dim=512, image_size=224, vision_layers=12, vision_width=768, patch_size=16,
                           text_width=512, text_layers=12),
    "ViT-L/14": CLIPConfig(embed_dim=768, image_size=224, vision_layers=24, vision_width=1024, patch_size=14,
                           text_width=768, text_layers=12),
}


def book_model_configs():
    names = ["shapes"] if profile() == "ci" else ["shapes", "flickr8k"]
    return {f"book: {n} ({profile()})": load_config(config_path(n)).model for n in names}


def sizes(config: CLIPConfig) -> dict:
    with torch.device("meta"):
        model = CLIP(config)
        model.trim_text = False  # count the full 77 positions, as the paper's numbers do
        with FlopCounterMode(display=False) as image_flops:
            model.encode_image(torch.empty(1, 3, config.image_size, config.image_size))
        with FlopCounterMode(display=False) as text_flops:
            model.encode_text(torch.zeros(1, config.context_length, dtype=torch.long))
    vision = sum(p.numel() for p in model.visual.parameters())
    total = sum(p.numel() for p in model.parameters())
    return dict(vision=vision, text=total - vision, total=total, image_gflops=image_flops.get_total_flops() / 1e9,
                text_gflops=text_flops.get_total_flops() / 1e9)


table = {name: sizes(cfg) for name, cfg in {**STANDARD, **book_model_configs()}.items()}

# %% tags=["remove-input"]
display(markdown_table(
    ([n, s["vision"] / 1e6, s["text"] / 1e6, s["total"] / 1e6, s["image_gflops"], s["text_gflops"]]
     for n, s in table.items()),
    ["model", "image encoder params", "text encoder params", "total", "GFLOPs / image", "GFLOPs / text"],
    formats={"image encoder params": "{:.1f}M", "text encoder params": "{:.1f}M", "total": "{:.1f}M",
             "GFLOPs / image": "{:.3g}", "GFLOPs / text": "{:.3g}"}))
glue("vitb32_params", table["ViT-B/32"]["total"] / 1e6, "{:.1f}M")
glue("vitb32_text_params", table["ViT-B/32"]["text"] / 1e6, "{:.1f}M")
glue("vitb32_gflops", table["ViT-B/32"]["image_gflops"], "{:.1f}")
glue("rn50_gflops", table["RN50"]["image_gflops"], "{:.1f}")
glue("vitl14_gflops", table["ViT-L/14"]["image_gflops"], "{:.0f}")
book_name = list(table)[-1]
glue("book_model", book_name)
glue("book_params", table[book_name]["total"] / 1e6, "{:.2f}M")
glue("book_gflops", table[book_name]["image_gflops"], "{:.2g}")

# %% [markdown]
# ViT-B/32 has {glue}`vitb32_params` parameters, {glue}`vitb32_text_params` of them in the text tower (the
# paper's "63M-parameter" text transformer, counted with its token embedding and projection), and costs
# {glue}`vitb32_gflops` GFLOPs per 224-pixel image, against {glue}`rn50_gflops` for RN50 and
# {glue}`vitl14_gflops` for ViT-L/14. The book's own model ({glue}`book_model`) has {glue}`book_params`
# parameters and costs {glue}`book_gflops` GFLOPs per image: small enough to train on two CPU cores.

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.8))
names = list(table)
rows = torch.arange(len(names)).float()
# Side by side, not stacked: on a log axis a stacked segment's length says nothing about its size.
ax.barh(rows - 0.2, [table[n]["vision"] / 1e6 for n in names], height=0.4, color="#2a9d8f", label="image encoder")
ax.barh(rows + 0.2, [table[n]["text"] / 1e6 for n in names], height=0.4, color="#f4a261",
        label="text encoder (with embeddings)")
ax.set_yticks(rows, names)
ax.set_xscale("log")
ax.set_xlim(left=1)  # bars start at 1M parameters; every encoder here is larger
ax.set_xlabel("parameters (millions, log scale)")
ax.set_ylabel("model")
ax.invert_yaxis()
ax.legend(fontsize=8)
ax.set_title("Where the parameters are")
show(fig, "04_parameters")

# %% [markdown]
# ```{glue:figure} 04_parameters
# :name: fig-parameters
#
# Parameters of the image and text encoders of the paper's standard models and of this book's models,
# counted from `miniclip` modules built with the paper's sizes.
# ```
#
# ### The book's model as a picture
#
# The same sizes as a diagram, drawn by `miniclip.book.diagrams.draw_architecture` from the config of the model it
# shows ({glue}`book_model`), so the picture cannot disagree with the model.

# %%
from miniclip.book.diagrams import draw_architecture

show(draw_architecture(book_model_configs()[book_name], book_name), "04_architecture")

# %% [markdown]
# ```{glue:figure} 04_architecture
# :name: fig-architecture
#
# The two towers of the book's model and where they meet, every size read from its config. For a ResNet the
# attention pool's output projection is the image projection; for a ViT (try
# `draw_architecture(STANDARD["ViT-B/32"])`) a separate matrix projects the class token.
# ```
#
# ### Same numbers as the reference
#
# Our model is written from the paper and OpenAI's released code, not copied from open_clip, so the test
# suite checks that it computes the same function. Here is that check, run live: an open_clip model with
# random weights is converted by `build_model` and both are fed the same images and captions. In the `cpu`
# profile the model is ViT-B/32 and RN50 at full size; in `ci`, a small ViT.

# %%
from miniclip.bench.reference import open_clip_model, small_vit_open_clip

if profile() == "ci":
    references = {"small ViT": small_vit_open_clip(image_size=32, width=64, vision_layers=2, text_layers=2)}
else:
    references = {"ViT-B/32": open_clip_model("ViT-B-32-quickgelu"), "RN50": open_clip_model("RN50-quickgelu")}

rows = []
torch.manual_seed(0)
texts = tokenize(["a dog runs on the beach", "two red circles above a blue square", "a photo of a cat."])
for name, reference in references.items():
    ours = build_model(reference.state_dict()).eval()
    size = ours.config.image_size
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        d_img = (ours.encode_image(images) - reference.encode_image(images)).abs().max().item()
        d_txt = (ours.encode_text(texts) - reference.encode_text(texts)).abs().max().item()
        scale = reference.encode_image(images).abs().max().item()
    assert d_img < 1e-4 * max(1.0, scale) and d_txt < 1e-4, (name, d_img, d_txt)
    rows.append((name, d_img, d_txt))

# %% tags=["remove-input"]
display(markdown_table(rows, ["model", "max abs. difference, image features", "max abs. difference, text features"],
                       formats={"max abs. difference, image features": "{:.1e}",
                                "max abs. difference, text features": "{:.1e}"}))
glue("max_diff", max(max(a, b) for _, a, b in rows), "{:.1e}")

# %% [markdown]
# The largest difference between our features and open_clip's is {glue}`max_diff`, the size of float32
# rounding in a different order of operations. The unit tests (`tests/test_model.py`) hold the same
# comparison to `rtol=atol=1e-5` and also compare gradients.

# %% [markdown]
# ### ViT or ResNet, GPT- or BERT-style text? (encoder variants at equal steps)
#
# The paper trained five ResNets and three Vision Transformers and found the ViTs about three times more
# compute-efficient at its scale (§3.2, Fig. 10). Its text tower is GPT-style: causal attention, read at the
# end-of-text token, a choice the paper made to keep the door open to language modelling (§2.4), not because it
# scored better. `make experiments` (the `encoders` experiment) asks the small version of both questions: the
# book's Flickr8k model with its ModifiedResNet or a small ViT as image tower, and CLIP's text tower or a
# BERT-style one (attention both ways, padding masked out, the caption read as the mean of its tokens), four
# combinations trained the same number of steps (the table gives what each took on a CPU), each with two seeds,
# then scored on Flickr8k test retrieval and CIFAR-10 zero-shot.
#
# ```{literalinclude} ../miniclip/model.py
# :pyobject: CLIP.encode_text
# ```

# %%
from miniclip.book import experiment, not_computed
from miniclip.book.viz import plot_grouped_bars

LABELS = {"resnet": "ResNet + CLIP text", "vit": "ViT + CLIP text", "resnet-bert": "ResNet + BERT-style text",
          "vit-bert": "ViT + BERT-style text"}
METRICS = {"text→image R@10": "text_to_image_R@10", "image→text R@10": "image_to_text_R@10",
           "CIFAR-10 zero-shot": "cifar10_top1"}


def seed_mean(entry: dict, key: str) -> float:
    return entry["cifar10_zeroshot"]["top1"] if key == "cifar10_top1" else entry["retrieval"][key]


encoders = experiment("encoders")
if encoders is None:
    not_computed("04_encoders", ("encoders_table_note", "encoders_steps", "encoders_verdict"))
else:
    variants = encoders["result"]["flickr8k"]  # each trained and scored the same way, once per seed
    bars = {LABELS.get(v, v): {m: seed_mean(e, k) for m, k in METRICS.items()} for v, e in variants.items()}
    ranges = {LABELS.get(v, v): {m: tuple(e["range"][k]) for m, k in METRICS.items()} for v, e in variants.items()}
    highest = max(high for r in ranges.values() for _, high in r.values())
    show(plot_grouped_bars(bars, title="Flickr8k models: image tower x text tower (mean of seeds, bars: range)",
                           ylabel="recall / accuracy", xlabel="metric", chance={"CIFAR-10 zero-shot": 0.1},
                           ranges=ranges, ymax=min(1.0, 1.3 * highest)),
         "04_encoders")

# %% tags=["remove-input"]
def encoder_shape(m: dict) -> str:
    if isinstance(m["vision_layers"], int):
        return f"ViT {m['image_size']}px/{m['patch_size']}, width {m['vision_width']} × {m['vision_layers']}"
    return f"ModifiedResNet {m['image_size']}px, width {m['vision_width']}, blocks {tuple(m['vision_layers'])}"


def text_kind(m: dict) -> str:
    if m.get("text_causal", True):
        return "causal, end-of-text (CLIP)"
    return f"both ways, {m.get('text_pool')} (BERT-style)"


def with_range(entry: dict, key: str) -> str:
    low, high = entry["range"][key]
    return f"{seed_mean(entry, key):.1%} ({low:.1%}–{high:.1%})"


def comparison(a: str, b: str, key: str = "text_to_image_R@10") -> str:
    """One sentence: the difference of two variants' seed means, and whether their seed ranges overlap."""
    ea, eb = variants[a], variants[b]
    diff = round(100 * (seed_mean(eb, key) - seed_mean(ea, key)), 1) + 0.0  # + 0.0: no "-0.0"
    (la, ha), (lb, hb) = ea["range"][key], eb["range"][key]
    apart = ha < lb or hb < la
    return (f"{LABELS[b]} against {LABELS[a]}: {diff:+.1f} points of text→image R@10, "
            + ("and the two seeds of each do not overlap." if apart else "within the spread between seeds."))


if encoders is not None:
    display(markdown_table(
        ([LABELS.get(v, v), encoder_shape(e["model"]), text_kind(e["model"]), f"{e['image_params'] / 1e6:.2f}M",
          f"{np.mean([s['train_wall_s'] for s in e['per_seed']]) / 60:.1f} min",
          with_range(e, "text_to_image_R@10"), with_range(e, "image_to_text_R@10"),
          with_range(e, "cifar10_top1")] for v, e in variants.items()),
        ["variant", "image encoder", "text encoder", "image params", "training time", "text→image R@10",
         "image→text R@10", f"CIFAR-10 zero-shot (n={next(iter(variants.values()))['cifar10_zeroshot']['n']:,})"]))
    overrides = encoders["provenance"]["settings"]["flickr8k"]["overrides"]
    seeds = encoders["provenance"]["settings"].get("seeds", [0])
    glue("encoders_steps", overrides.get("optim.steps", "(the base config's)"))
    glue("encoders_table_note", f"Each variant trained for {overrides.get('optim.steps')} steps of the base "
                                f"Flickr8k configuration with each of {len(seeds)} seeds; every cell is the mean "
                                "over seeds with the lowest and highest seed in brackets. Retrieval is on every "
                                "Flickr8k test image with all its captions.")
    glue("encoders_verdict", " ".join(comparison(a, b) for a, b in (("resnet", "vit"), ("resnet", "resnet-bert"),
                                                                     ("vit", "vit-bert")) if b in variants))

# %% [markdown]
# ```{glue:figure} 04_encoders
# :name: fig-encoders
#
# Flickr8k test retrieval recall and CIFAR-10 zero-shot accuracy for the same CLIP with a ModifiedResNet or a
# ViT image tower and CLIP's causal or a BERT-style text tower, trained identically. Bars: the mean over seeds;
# whiskers: the lowest and highest seed. Dashed: CIFAR-10 chance. Computed by `make experiments` (the
# `encoders` experiment).
# ```
#
# {glue}`encoders_table_note` {glue}`encoders_verdict` Two seeds give only a coarse spread, so a difference
# whose seeds overlap is read as no difference, and one whose seeds are apart as a hint, not a finding. At
# {glue}`encoders_steps` steps every variant is early in training; the paper's ViT advantage appeared at a
# compute scale roughly a billion times ours. The experiment's other product is a trained ViT for the attention
# chapter, which needs a ViT to show per-head attention and rollout.
