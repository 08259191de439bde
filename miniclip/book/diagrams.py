"""The book's conceptual diagrams, drawn by code: the objective (chapter 3), the model (chapter 4) and
data-parallel training (chapter 6).

They are drawn from the objects they explain where they can be: the architecture diagram reads every size from
a `CLIPConfig`, so the picture of a model cannot disagree with the model. Plain matplotlib, no layout engine:
each diagram places boxes on a grid in data coordinates and joins them with arrows.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from miniclip.model import CLIPConfig

__all__ = ["draw_architecture", "draw_data_parallel", "draw_objective"]

IMAGE_COLOUR, TEXT_COLOUR, PAIR_COLOUR, OTHER_COLOUR = "#2a9d8f", "#f4a261", "#264653", "#e9ecef"
RANK_COLOURS = ["#2a9d8f", "#e76f51", "#8ab17d", "#e9c46a", "#6d597a", "#457b9d"]


def _box(ax, x: float, y: float, w: float, h: float, text: str, colour: str, fontsize: int = 8,
         text_colour: str = "black"):
    """A rounded box with centred text, its lower-left corner at (x, y)."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=colour,
                                edgecolor="#333333", linewidth=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, color=text_colour)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str = "", colour: str = "#333333"):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.0))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, text, fontsize=7, va="center",
                color=colour)


def _canvas(width: float, height: float, title: str, size: tuple[float, float]):
    fig, ax = plt.subplots(figsize=size)
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    return fig, ax


def draw_objective(n: int = 5):
    """Eq. (1) as a picture: N image and N text embeddings, the N×N matrix of their scores, the diagonal as
    the targets of a softmax over each row and over each column."""
    fig, ax = _canvas(n + 3.6, n + 2.8, "CLIP's contrastive objective (Eq. 1) on a batch of N pairs", (7.5, 5.2))
    ax.invert_yaxis()
    left = 3.1  # the matrix starts here; the labels of the image column sit to its left
    for j in range(n):  # text embeddings across the top
        ax.add_patch(plt.Rectangle((left + j + 0.1, 0.3), 0.8, 0.8, color=TEXT_COLOUR))
        ax.text(left + j + 0.5, 0.7, f"$T_{j + 1}$", ha="center", va="center")
    for i in range(n):  # image embeddings down the side
        ax.add_patch(plt.Rectangle((left - 1.1, i + 1.6), 0.8, 0.8, color=IMAGE_COLOUR))
        ax.text(left - 0.7, i + 2.0, f"$I_{i + 1}$", ha="center", va="center", color="white")
        for j in range(n):
            pair = i == j
            ax.add_patch(plt.Rectangle((left + j + 0.05, i + 1.55), 0.9, 0.9,
                                       color=PAIR_COLOUR if pair else OTHER_COLOUR))
            ax.text(left + j + 0.5, i + 2.0, f"$S_{{{i + 1}{j + 1}}}$", ha="center", va="center", fontsize=8,
                    color="white" if pair else "black")
    ax.text(0.1, 0.7, "text encoder →", va="center", fontsize=9)
    ax.text(0.1, n / 2 + 1.6, "image\nencoder\n↓", va="center", fontsize=9)
    ax.text(left + n / 2, n + 2.2, "rows: softmax over captions;  columns: softmax over images;\n"
            "dark diagonal = the true pairs, the targets of both cross-entropies",
            ha="center", va="center", fontsize=8)
    return fig


def draw_architecture(config: CLIPConfig, name: str = ""):
    """The two towers of a CLIP model and where they meet, every size read from `config`."""
    c = config
    if c.is_vit:
        grid = c.image_size // c.patch_size
        vision = (f"Vision Transformer\n{grid}×{grid} patches of {c.patch_size} px + class token\n"
                  f"{c.vision_layers} layers × width {c.vision_width}, {c.vision_width // c.head_width} heads")
        pooled = "class token → ln_post"
        project = f"linear projection {c.vision_width} → {c.embed_dim}, then ÷ ‖·‖"
    else:  # the attention pool's output projection is the image projection: no separate matrix
        side = c.image_size // 32
        vision = (f"ModifiedResNet\n3-conv stem, stages of {'/'.join(map(str, c.vision_layers))} bottlenecks\n"
                  f"widths {c.vision_width * 4}…{c.vision_width * 32} channels")
        pooled = f"attention pool over the {side}×{side} map\n(query = its mean; output {c.embed_dim}-d)"
        project = "÷ ‖·‖ (the pool's output is the projection)"
    text = (f"Text Transformer (causal mask)\n{c.text_layers} layers × width {c.text_width}, "
            f"{c.text_width // c.head_width} heads")
    fig, ax = _canvas(11.0, 9.0, f"CLIP, the two towers{': ' + name if name else ''}", (8.5, 7.0))
    # Image tower (left column), text tower (right column), both read bottom to top.
    _box(ax, 0.3, 0.3, 4.4, 0.8, f"image, {c.image_size}×{c.image_size}×3 pixels", OTHER_COLOUR)
    _box(ax, 0.3, 1.7, 4.4, 1.5, vision, IMAGE_COLOUR, text_colour="white")
    _box(ax, 0.3, 3.8, 4.4, 0.9, pooled, IMAGE_COLOUR, text_colour="white")
    _box(ax, 0.3, 5.3, 4.4, 0.8, project, OTHER_COLOUR)
    _box(ax, 6.3, 0.3, 4.4, 0.8, f"caption → BPE tokens ({c.vocab_size:,} ids), ≤ {c.context_length}", OTHER_COLOUR)
    _box(ax, 6.3, 1.7, 4.4, 1.5, text, TEXT_COLOUR)
    _box(ax, 6.3, 3.8, 4.4, 0.9, "feature at the end-of-text token\n→ ln_final", TEXT_COLOUR)
    _box(ax, 6.3, 5.3, 4.4, 0.8, f"linear projection {c.text_width} → {c.embed_dim}, then ÷ ‖·‖", OTHER_COLOUR)
    for x in (2.5, 8.5):
        for y0, y1 in ((1.1, 1.7), (3.2, 3.8), (4.7, 5.3)):
            _arrow(ax, (x, y0), (x, y1))
    _box(ax, 1.3, 7.2, 8.4, 1.1, f"similarity  $e^t\\,\\langle I, T\\rangle$  in a shared {c.embed_dim}-d space\n"
         "→ the contrastive loss (chapter 3) or a zero-shot classifier (chapter 7)", PAIR_COLOUR, fontsize=8,
         text_colour="white")
    _arrow(ax, (2.5, 6.1), (4.0, 7.2), "$I$")
    _arrow(ax, (8.5, 6.1), (7.0, 7.2), "$T$")
    return fig


def draw_data_parallel(world: int = 3, local: int = 2):
    """Data-parallel CLIP (chapter 6, `miniclip.distributed`): each of `world` processes encodes `local` pairs,
    all-gathers every process's features, and scores the whole global batch, so its negatives are the global
    batch's. Gradients reach a process's encoders only through its own pairs' rows and columns, summed over
    processes (the gather's backward)."""
    n = world * local
    owner_colour = [RANK_COLOURS[(i // local) % len(RANK_COLOURS)] for i in range(n)]  # by the process of pair i
    fig, ax = _canvas(n + 7.5, n + 4.2, f"Data-parallel training: {world} processes × {local} pairs", (8.5, 6.2))
    # Left: each process with its local pairs and encoders.
    for r in range(world):
        y = n + 2.6 - (r + 1) * (n + 1.2) / world
        _box(ax, 0.2, y, 3.4, (n + 1.2) / world - 0.4,
             f"process {r}\n{local} images + {local} captions\n→ encoders → $I_{{{r}}}, T_{{{r}}}$ [{local}×d]",
             owner_colour[r * local], fontsize=7, text_colour="white")
        _arrow(ax, (3.6, y + 0.4), (5.0, n / 2 + 1.0), colour=owner_colour[r * local])
    ax.text(4.3, n + 2.9, "all_gather\n(with gradients)", ha="center", fontsize=8)
    # Right: the global similarity matrix every process computes; rows and columns coloured by their owner.
    left, top = 5.6, 1.0
    for i in range(n):
        for j in range(n):
            colour = PAIR_COLOUR if i == j else OTHER_COLOUR
            ax.add_patch(plt.Rectangle((left + j + 0.05, top + (n - 1 - i) + 0.05), 0.9, 0.9, color=colour))
        ax.add_patch(plt.Rectangle((left - 0.6, top + (n - 1 - i) + 0.1), 0.45, 0.8, color=owner_colour[i]))
        ax.add_patch(plt.Rectangle((left + i + 0.1, top + n + 0.15), 0.8, 0.45, color=owner_colour[i]))
    ax.text(left + n / 2, top + n + 1.0, f"global batch: {n} × {n} scores on every process", ha="center",
            fontsize=8)
    ax.text(left + n / 2, 0.45, "every process computes the same loss over all rows and columns; its encoders get\n"
            "gradient through its own pairs' rows and columns, summed over processes", ha="center", va="center",
            fontsize=7)
    return fig
