"""One plotting style for the book: every function builds and returns a matplotlib Figure, never saves it
(`miniclip.book.show` saves and displays). Colours come from the Okabe-Ito palette, which stays distinct
for the common forms of colour blindness; heatmaps use viridis (sequential) or a blue-red diverging map
centred on zero. Every data axis is labelled and every figure has a title."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullLocator

from miniclip.data.transforms import OPENAI_MEAN, OPENAI_STD

# Okabe & Ito (2008), "Color Universal Design": distinguishable with deuteranopia, protanopia and tritanopia.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MODALITY_COLOURS = {"image": PALETTE[0], "text": PALETTE[1]}
MODALITY_MARKERS = {"image": "o", "text": "^"}
SEQUENTIAL, DIVERGING = "viridis", "RdBu_r"
WIDTH = 7.0  # inches: the book's text column


def _subplots(nrows: int = 1, ncols: int = 1, *, width: float = WIDTH, height: float | None = None, **kwargs):
    height = height if height is not None else width * 0.62
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, constrained_layout=True, **kwargs)


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def display_image(image: torch.Tensor, normalised: bool = True) -> np.ndarray:
    """A [3, H, W] image tensor -> an [H, W, 3] array in [0, 1] for imshow, undoing CLIP's normalisation."""
    x = image.detach().float().cpu()
    if normalised:
        x = x * torch.tensor(OPENAI_STD)[:, None, None] + torch.tensor(OPENAI_MEAN)[:, None, None]
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def _image_axis(ax, title: str = "", wrap: int = 26):
    """A picture needs no axes, only its title (wrapped, so that long captions stay above their picture)."""
    ax.set_title(textwrap.fill(title, wrap), fontsize=7)
    ax.axis("off")


# ---------------------------------------------------------------------------------------------- embeddings


def plot_embedding_map(emap, color_by: str = "modality", title: str | None = None):
    """Scatter of an `EmbeddingMap`: colour by "modality" or by "label" (then the marker shows the modality)."""
    fig, axes = _subplots(width=WIDTH, height=WIDTH * 0.75)
    ax = axes[0, 0]
    if color_by == "modality":
        for modality in ("image", "text"):
            sel = emap.where(modality)
            ax.scatter(*emap.coords[sel].T, s=12, alpha=0.7, c=MODALITY_COLOURS[modality],
                       marker=MODALITY_MARKERS[modality], label=f"{modality} ({sel.sum()})", edgecolors="none")
    elif color_by == "label":
        names = [n for n in dict.fromkeys(emap.labels.tolist()) if n != ""]
        for j, name in enumerate(names):
            for modality in ("image", "text"):
                sel = emap.where(modality) & (emap.labels == name)
                if sel.any():
                    ax.scatter(*emap.coords[sel].T, s=12, alpha=0.7, c=PALETTE[j % len(PALETTE)],
                               marker=MODALITY_MARKERS[modality], edgecolors="none",
                               label=f"{name} ({modality}s)")
    else:
        raise ValueError(f"color_by must be 'modality' or 'label', not {color_by!r}")
    name = {"tsne": "t-SNE", "umap": "UMAP"}.get(emap.method, emap.method)
    ax.set_xlabel(f"{name} 1"), ax.set_ylabel(f"{name} 2")
    ax.set_title(title or f"{name} of image and text embeddings")
    ax.legend(fontsize=7, markerscale=1.5, loc="best", ncols=2 if color_by == "label" else 1)
    return fig


# ----------------------------------------------------------------------------------------------- attention


def _overlay(ax, image: np.ndarray, attention: np.ndarray, alpha: float = 0.55):
    """An image with an attention map (any grid, stretched to the image) on top."""
    h, w = image.shape[:2]
    ax.imshow(image)
    ax.imshow(attention, cmap="inferno", alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
              interpolation="bilinear")


def plot_attention_heads(image: torch.Tensor, cls_maps: torch.Tensor, *, normalised: bool = True,
                         title: str = "Class-token attention per layer and head"):
    """One image and its class-token attention [layers, heads, g, g]: a grid, a row per layer, a column per head
    (each map on its own colour scale: this shows where each head looks, not how strongly)."""
    layers, heads = cls_maps.shape[:2]
    fig, axes = _subplots(layers, heads + 1, width=min(1.4 * (heads + 1), 12), height=1.4 * layers + 0.5)
    picture = display_image(image, normalised)
    for layer in range(layers):
        _image_axis(axes[layer, 0], f"layer {layer + 1}")
        axes[layer, 0].imshow(picture)
        for head in range(heads):
            _overlay(axes[layer, head + 1], picture, _numpy(cls_maps[layer, head]))
            _image_axis(axes[layer, head + 1], f"head {head + 1}" if layer == 0 else "")
    fig.suptitle(title)
    return fig


def plot_attention_overlays(images: torch.Tensor, maps: torch.Tensor, *, titles: list[str] | None = None,
                            normalised: bool = True, title: str = "Attention rollout", columns: int = 6):
    """Each image [3, H, W] above its map [g, g] overlaid (e.g. rollout or attention-pool maps)."""
    n = len(images)
    columns = min(columns, n)
    rows = -(-n // columns)
    fig, axes = _subplots(2 * rows, columns, width=min(1.6 * columns, 12), height=3.2 * rows + 0.4)
    for i in range(rows * columns):
        r, c = divmod(i, columns)
        top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
        if i < n:
            picture = display_image(images[i], normalised)
            top.imshow(picture)
            _overlay(bottom, picture, _numpy(maps[i]))
        _image_axis(top, titles[i] if titles and i < n else "")
        _image_axis(bottom, "attention" if i < n else "")
    fig.suptitle(title)
    return fig


def plot_localisation(results: dict[str, dict], title: str = "Attention localisation on Shapes"):
    """Bars of `localisation_scores` for several models (e.g. `{"trained": …, "init": …}`): mass inside the
    masks and pointing-game accuracy, each with its chance level as a dashed line (the masks' share of the
    picture; the share of grid cells they touch)."""
    names = list(results)
    metrics = [("mass_inside", "mask_fraction", "attention mass inside mask", "mask share of image"),
               ("pointing", "pointing_chance", "pointing-game accuracy", "random cell")]
    fig, axes = _subplots(1, 2, width=WIDTH, height=3.4)
    for ax, (key, chance_key, label, chance_label) in zip(axes[0], metrics):
        ax.bar(range(len(names)), [results[n][key] for n in names],
               color=[PALETTE[i % len(PALETTE)] for i in range(len(names))])
        chance = [results[n][chance_key] for n in names if chance_key in results[n]]
        if chance:
            ax.axhline(np.mean(chance), color="k", ls="--", lw=1, label=f"{chance_label} ({np.mean(chance):.2f})")
            ax.legend(fontsize=7)
        _bar_names(ax, names)
        ax.set_ylim(0, 1), ax.set_ylabel(label), ax.set_xlabel("model"), ax.set_title(label)
    fig.suptitle(title)
    return fig


def _bar_names(ax, names, width: int = 28):
    """Name the bars without overlap: tilted and shortened once there are more than three or any is long."""
    crowded = len(names) > 3 or max(len(str(n)) for n in names) > 12
    ax.set_xticks(range(len(names)), [textwrap.shorten(str(n), width) for n in names],
                  rotation=30 if crowded else 0, ha="right" if crowded else "center",
                  rotation_mode="anchor", fontsize=7)


# ---------------------------------------------------------------------------------------------- similarity


def plot_heatmap(values, row_labels: list[str], col_labels: list[str], *, title: str, xlabel: str, ylabel: str,
                 value_label: str, fmt: str = "{:.2f}", annotate: bool | None = None,
                 outline: Iterable[tuple[int, int]] = (), vmin: float | None = None, vmax: float | None = None,
                 wrap: int = 40):
    """A labelled [rows, columns] heatmap: each value written in its cell when there are at most 100 cells (or
    as `annotate` says), and the cells `outline` lists, as (row, column), framed."""
    v = _numpy(values).astype(float)
    rows, cols = v.shape
    annotate = annotate if annotate is not None else rows * cols <= 100
    cell = 0.55 if annotate else 0.3  # inches per cell: room for the written value, or just a colour
    fig, axes = _subplots(width=min(max(4.0, cell * cols + 3), 12), height=min(max(3.0, 0.8 * cell * rows + 2), 12))
    ax = axes[0, 0]
    im = ax.imshow(v, cmap=SEQUENTIAL, aspect="auto", vmin=vmin, vmax=vmax)
    fig.colorbar(im, ax=ax, label=value_label, shrink=0.8)
    crowded = max(len(str(t)) for t in col_labels) > 3
    ax.set_xticks(range(cols), [textwrap.shorten(str(t), wrap) for t in col_labels], fontsize=7,
                  rotation=60 if crowded else 0, ha="right" if crowded else "center")
    ax.set_yticks(range(rows), [textwrap.shorten(str(t), wrap) for t in row_labels], fontsize=7)
    if annotate:
        middle = (np.nanmin(v) + np.nanmax(v)) / 2
        for i in range(rows):
            for j in range(cols):
                ax.text(j, i, fmt.format(v[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if v[i, j] < middle else "black")
    for i, j in outline:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=PALETTE[3], lw=1.5))
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    return fig


def plot_similarity_matrix(similarity, row_labels: list[str], col_labels: list[str], *,
                           title: str = "Cosine similarity", xlabel: str = "text", ylabel: str = "image",
                           value_label: str = "cosine similarity", annotate: bool | None = None,
                           outline: list[tuple[int, int]] | None = None, wrap: int = 40):
    """A heatmap of an [images, texts] similarity matrix. Framed: the cells in `outline`, by default the
    diagonal (the true pairs) when the matrix is square."""
    s = _numpy(similarity)
    if outline is None:
        outline = [(i, i) for i in range(len(s))] if s.shape[0] == s.shape[1] else []
    return plot_heatmap(s, row_labels, col_labels, title=title, xlabel=xlabel, ylabel=ylabel,
                        value_label=value_label, annotate=annotate, outline=outline, wrap=wrap)


# ----------------------------------------------------------------------------------------------------- bias


def plot_group_gaps(rows: list[dict], title: str | None = None):
    """Forest plot of `group_gaps` / `association` rows: each prompt's gap with its 95% CI, zero marked."""
    a, b = rows[0]["groups"]
    y = np.arange(len(rows))[::-1]
    gap = np.array([r["gap"] for r in rows])
    err = np.array([[r["gap"] - r["ci_low"] for r in rows], [r["ci_high"] - r["gap"] for r in rows]])
    fig, axes = _subplots(width=WIDTH, height=0.3 * len(rows) + 1.5)
    ax = axes[0, 0]
    colours = [PALETTE[0] if lo > 0 else PALETTE[3] if hi < 0 else "0.5"
               for lo, hi in ((r["ci_low"], r["ci_high"]) for r in rows)]
    ax.errorbar(gap, y, xerr=err, fmt="none", ecolor="0.4", capsize=2)
    ax.scatter(gap, y, c=colours, zorder=3, s=20)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [textwrap.shorten(r["prompt"], 45) for r in rows], fontsize=7)
    ax.set_xlabel(f"gap in mean cosine similarity\n({a} minus {b}; 95% bootstrap CI)")
    ax.set_ylabel("prompt")
    ax.set_title(title or f"Prompt similarity by image group: {a} vs {b}")
    return fig


def plot_topk_composition(rows: list[dict], group: str, title: str | None = None):
    """`topk_composition` rows: the share of `group` in each prompt's top-k, with its CI, against the base rate."""
    share = np.array([r[f"share_{group}"] for r in rows])
    err = np.array([[r[f"share_{group}"] - r[f"ci_low_{group}"] for r in rows],
                    [r[f"ci_high_{group}"] - r[f"share_{group}"] for r in rows]])
    base = rows[0][f"base_rate_{group}"]
    fig, axes = _subplots(width=WIDTH, height=0.35 * len(rows) + 1.5)
    ax = axes[0, 0]
    y = np.arange(len(rows))[::-1]
    ax.barh(y, share, xerr=err, color=PALETTE[2], ecolor="0.3", capsize=2)
    ax.axvline(base, color="k", ls="--", lw=1, label=f"base rate in the pool ({base:.2f})")
    ax.set_yticks(y, [textwrap.shorten(r["prompt"], 45) for r in rows], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of '{group}' images among the top {rows[0]['k']} retrieved\n(95% bootstrap CI)")
    ax.set_ylabel("prompt")
    ax.set_title(title or f"Who is retrieved: share of '{group}' images")
    ax.legend(fontsize=7)
    return fig


# ---------------------------------------------------------------------------------------------- limitations


def plot_accuracies(values: dict[str, float], *, chance: float | None = None, errors: dict[str, tuple] | None = None,
                    title: str = "Accuracy", xlabel: str = "", ylabel: str = "accuracy", ymax: float = 1.0):
    """Bars of named accuracies (e.g. per count, per relation, per template), optional (low, high) CIs, and a
    dashed chance line; the axis runs from 0 to `ymax` (lower it to spread accuracies that are all small)."""
    names = list(values)
    fig, axes = _subplots(width=min(max(4.0, 0.6 * len(names) + 2.5), 12), height=3.5)
    ax = axes[0, 0]
    heights = [values[n] for n in names]
    yerr = None
    if errors:
        yerr = np.array([[values[n] - errors[n][0] for n in names], [errors[n][1] - values[n] for n in names]])
    ax.bar(range(len(names)), heights, yerr=yerr, capsize=3,
           color=[PALETTE[i % len(PALETTE)] for i in range(len(names))])
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=1, label=f"chance ({chance:.2f})")
        ax.legend(fontsize=7)
    _bar_names(ax, names)
    ax.set_ylim(0, ymax), ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    return fig


def plot_word_counts(points: dict[str, list[tuple[str, int, float]]], *, title: str,
                     xlabel: str = "training captions that use the class word (log scale)",
                     ylabel: str = "zero-shot recall of the class"):
    """One labelled point per class, `points[group] = [(word, count, recall), ...]`: how often the training
    captions used a class's word against how well the zero-shot classifier recognises the class, one colour per
    group (benchmark). Counts are drawn at count + 1 so that a word no caption used still has a place."""
    fig, axes = _subplots(width=6.5, height=3.8)
    ax = axes[0, 0]
    for i, (group, rows) in enumerate(points.items()):
        x = np.array([n + 1 for _, n, _ in rows], dtype=float)
        y = np.array([r for _, _, r in rows], dtype=float)
        ax.scatter(x, y, s=22, color=PALETTE[i % len(PALETTE)], label=group)
        for (word, _, _), xi, yi in zip(rows, x, y):
            ax.annotate(word, (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xscale("log"), ax.set_ylim(0, 1.05)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def plot_confusion(confusion, labels: list[str], *, title: str = "Confusion matrix",
                   xlabel: str = "predicted", ylabel: str = "true"):
    """A row-normalised confusion matrix (each true class's row sums to 1). Up to 12 classes, the counts are
    written in the cells and the classes named on the axes; beyond that the cells are too small for either,
    so the axes count classes by their index in `labels`."""
    c = _numpy(confusion).astype(float)
    share = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    few = len(labels) <= 12
    fig, axes = _subplots(width=4.5 if few else 6.5, height=4.0 if few else 5.5)
    ax = axes[0, 0]
    im = ax.imshow(share, cmap=SEQUENTIAL, vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="share of the true class", shrink=0.8)
    if few:
        for i in range(c.shape[0]):
            for j in range(c.shape[1]):
                ax.text(j, i, f"{int(c[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] < 0.5 else "black")
        names = [n if len(n) <= 12 else n[:11] + "…" for n in map(str, labels)]
        crowded = max(len(n) for n in names) > 3
        ax.set_xticks(range(len(names)), names, rotation=60 if crowded else 0, ha="right" if crowded else "center")
        ax.set_yticks(range(len(names)), names)
    else:
        xlabel, ylabel = f"{xlabel} (class index)", f"{ylabel} (class index)"
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------- experiments

OBJECTIVE_NAMES = {"contrastive": "contrastive (CLIP)", "bag_of_words": "bag-of-words prediction",
                   "captioning_lm": "transformer captioning LM"}
ZEROSHOT_TASKS = {"seen_colour": "colour", "seen_shape": "shape", "seen_colour_shape": "colour + shape",
                  "heldout_colour_shape": "held-out colour + shape pairs"}


def plot_objective_curves(curves: dict[str, list[dict]], chance: dict[str, float],
                          metrics=("seen_colour", "seen_shape", "seen_colour_shape", "heldout_colour_shape"),
                          title: str = "Zero-shot accuracy against samples seen, per training objective"):
    """The paper's Fig. 2 at small scale: one panel per zero-shot task, one line per objective, chance dashed.
    `curves` maps an objective to its evaluations (`samples` and one accuracy per task)."""
    fig, axes = _subplots(1, len(metrics), width=WIDTH + 2, height=3.4, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        for i, (name, curve) in enumerate(curves.items()):
            ax.plot([p["samples"] for p in curve], [p[metric] for p in curve], "o-", ms=3,
                    color=PALETTE[i % len(PALETTE)], label=OBJECTIVE_NAMES.get(name, name))
        task = metric.split("_", 1)[1]
        ax.axhline(chance[task], color="k", ls="--", lw=1, label=f"chance ({chance[task]:.3g})")
        ax.set_xlabel("training samples seen"), ax.set_title(ZEROSHOT_TASKS.get(metric, metric), fontsize=9)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("zero-shot accuracy")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def plot_lr_batch(grid: list[dict], metric: str = "seen_colour",
                  title: str = "Learning rate x batch size at equal samples seen"):
    """The LR x batch-size sweep: validation loss (left) and one zero-shot accuracy (right) against the
    learning rate, one line per batch size. Validation loss is only comparable within one batch size, since
    the contrastive task is harder with more candidates per row."""
    fig, axes = _subplots(1, 2, width=WIDTH, height=3.2)
    for i, batch_size in enumerate(sorted({g["batch_size"] for g in grid})):
        runs = sorted((g for g in grid if g["batch_size"] == batch_size), key=lambda g: g["lr"])
        lrs = [g["lr"] for g in runs]
        style = dict(color=PALETTE[i % len(PALETTE)], marker="o", label=f"batch {batch_size}")
        axes[0, 0].plot(lrs, [g["val"]["val_loss"] for g in runs], **style)
        axes[0, 1].plot(lrs, [g["zeroshot"][metric] for g in runs], **style)
    labels = ("validation loss (contrastive)", f"zero-shot accuracy: {ZEROSHOT_TASKS.get(metric, metric)}")
    swept = sorted({g["lr"] for g in grid})
    for ax, label in zip(axes[0], labels):
        ax.set_xscale("log"), ax.set_xlabel("peak learning rate"), ax.set_ylabel(label), ax.legend(fontsize=7)
        # Ticks at the swept rates only: a log axis's own minor labels collide over a span this short.
        ax.set_xticks(swept, [f"{lr:g}" for lr in swept])
        ax.xaxis.set_minor_locator(NullLocator())
    axes[0, 1].set_ylim(0, 1)
    fig.suptitle(title)
    return fig


def plot_throughput(points: list[dict], title: str = "Training throughput against batch size"):
    """Samples/s against batch size, one line per precision (a precision timed at one batch size is a point)."""
    fig, axes = _subplots(width=5.5, height=3.4)
    ax = axes[0, 0]
    for i, precision in enumerate(sorted({p["precision"] for p in points}, key=lambda s: s != "fp32")):
        ps = sorted((p for p in points if p["precision"] == precision), key=lambda p: p["batch_size"])
        ax.plot([p["batch_size"] for p in ps], [p["samples_per_s"] for p in ps], "o-", color=PALETTE[i],
                label=precision)
    ax.set_xscale("log", base=2), ax.set_xlabel("batch size"), ax.set_ylabel("training samples / s")
    ax.legend(fontsize=8), ax.set_title(title, fontsize=10)
    return fig


def plot_grouped_bars(values: dict[str, dict[str, float]], *, title: str, ylabel: str, xlabel: str = "",
                      chance: dict[str, float] | None = None,
                      ranges: dict[str, dict[str, tuple[float, float]]] | None = None, ymax: float = 1.0):
    """Side-by-side bars: one group per metric, one bar per model (`values[model][metric]`), with each metric's
    chance level as a short dashed line over its group when given, and `ranges[model][metric]` = (low, high)
    drawn as an error bar on each bar (e.g. the lowest and highest of several seeds)."""
    models = list(values)
    metrics = list(next(iter(values.values())))
    width = 0.8 / len(models)
    fig, axes = _subplots(width=min(max(5.0, 0.9 * len(metrics) + 2.5), 12), height=3.4)
    ax = axes[0, 0]
    for i, model in enumerate(models):
        x = np.arange(len(metrics)) + (i - (len(models) - 1) / 2) * width
        heights = [values[model][m] for m in metrics]
        errors = None
        if ranges and model in ranges:
            errors = np.array([[h - ranges[model][m][0], ranges[model][m][1] - h] for h, m in zip(heights, metrics)]).T
        ax.bar(x, heights, width, label=model, color=PALETTE[i % len(PALETTE)], yerr=errors, capsize=2,
               error_kw={"lw": 0.8})
    for j, metric in enumerate(metrics):
        if chance and metric in chance:
            ax.hlines(chance[metric], j - 0.4, j + 0.4, colors="k", linestyles="--", lw=1,
                      label="chance" if j == 0 else None)
    _bar_names(ax, metrics)
    ax.set_ylim(0, ymax), ax.set_ylabel(ylabel), ax.set_xlabel(xlabel), ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return fig
