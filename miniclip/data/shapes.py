"""The Shapes world: a procedural image–caption dataset with known ground truth, generated on the fly.

CLIP learns from (image, caption) pairs. Real pairs are noisy and we cannot say what is *in* them; the
Shapes world is the opposite: every picture is drawn from a scene we sampled ourselves, so we know every
object's shape, colour, size, place and mask, and every caption is true by construction. That makes it
an instrument: we can hold combinations out and test true zero-shot transfer, plant a spurious word and
measure whether the model picks it up, and score attention maps against exact masks.

How a sample is made, top to bottom:

1. **Randomness.** Sample `i` of split `s` owns the random numbers `hash(seed, s, i, slot)` for a fixed
   list of slots (count, style, each object's colour …). Nothing depends on which other samples are in
   the batch, on the process or on the order of calls, so a sample is a pure function of
   `(seed, split, index)`. The hash is integer arithmetic on tensors, so a whole batch is vectorised.
2. **Scene.** `ShapesWorld.scenes` turns those numbers into scene parameters (tensors, no pixels):
   1–4 objects placed in distinct cells of a 3x3 grid, so positions ("top left") and relations ("left of")
   are never borderline and objects never overlap. Training scenes never use a held-out (colour, shape)
   pair.
3. **Pixels.** `ShapesWorld.rasterise` evaluates each object's signed distance function on the pixels
   of a small window around its cell, all objects of a shape at once, on any device, and turns distance
   into antialiased coverage: a pixel whose centre is `d` pixels inside the edge gets coverage
   `clamp(0.5 + d, 0, 1)`. Four styles paint the scene: flat, outline sketch, textured "photo" (lit
   objects, drop shadows, textured background) and noisy.
4. **Caption.** `miniclip.data.shapes_text` plans a caption from the scene and puts it into English,
   French or German.

Bitwise reproducibility: the pixel path uses only `+ - * /`, `sqrt`, `abs`, `min`/`max` and
comparisons, which IEEE arithmetic rounds the same way in vectorised and scalar code. Functions like
`sin` or `exp` can differ in the last bit between the two, and which path an element takes depends on
where it sits in the batch; we avoid them (tilts come from a table of cosines computed once in Python) so
that a sample's bytes never depend on its batch. The same holds on one GPU, but CPU and GPU pictures may
differ in the last bit.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace

import torch
from torch.utils.data import IterableDataset, get_worker_info

from miniclip.data import shapes_text as text
from miniclip.data.shapes_text import COLOURS, LANGUAGES, POSITIONS, SHAPES, SIZES, STYLES
from miniclip.data.transforms import normalize

__all__ = [
    "SHAPES", "COLOURS", "SIZES", "STYLES", "POSITIONS", "LANGUAGES", "SPLITS", "COLOUR_RGB", "DEFAULT_HOLDOUT",
    "PlantedCorrelation", "ShapesConfig", "Scenes", "ShapesBatch", "ShapesWorld", "ShapesDataset",
    "class_names", "class_prompts", "benchmark_render",
]

# ---------------------------------------------------------------------------------------------------------
# The world's constants
# ---------------------------------------------------------------------------------------------------------

# Colours far apart in RGB (the closest pair, red/orange, is 0.4 apart), and all of them far from the
# light backgrounds.
COLOUR_RGB = {
    "red": (0.90, 0.10, 0.10), "orange": (0.98, 0.52, 0.05), "yellow": (0.97, 0.87, 0.10),
    "green": (0.12, 0.62, 0.20), "blue": (0.13, 0.33, 0.90), "purple": (0.55, 0.18, 0.75),
    "pink": (1.00, 0.55, 0.78), "black": (0.08, 0.08, 0.08),
}
# Object radius as a fraction of the image side (each shape is drawn to about this radius). At 64 px a
# small object is about 10 px across and a large one 16 px: both are easy to see, and a 3x3 grid cell
# (21 px) still holds a large one with room to spare.
SIZE_RADIUS = {"small": 0.08, "large": 0.125}
SIZE_JITTER = 0.05  # radii vary by ±5% so that size is a category, not an exact number
ROTATIONS_DEG = tuple(-15.0 + 2.5 * i for i in range(13))  # small tilts; a square never becomes a diamond
_TILT_COS_SIN = torch.tensor([(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in ROTATIONS_DEG])

BANK_SIZE = 64  # how many fixed noise images and background textures the "noisy" and "photo" styles draw from

SPLITS = ("train", "val", "test", "heldout")
# A few (colour, shape) pairs that training never shows, with every colour and shape still seen in other
# pairs. "heldout" renders only these, so a model that names them has composed colour and shape.
DEFAULT_HOLDOUT = (("purple", "star"), ("green", "heart"), ("orange", "hexagon"), ("blue", "triangle"))

# ---------------------------------------------------------------------------------------------------------
# Counter-based randomness: a 32-bit integer hash, vectorised over tensors
# ---------------------------------------------------------------------------------------------------------

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, m: int) -> torch.Tensor:
    """`(x * m) mod 2**32` for 32-bit `x` held in int64, without ever overflowing int64 (signed overflow
    is not something to rely on): multiply the two 16-bit halves of `x` separately."""
    lo = (x & 0xFFFF) * m  # < 2**48
    hi = (((x >> 16) * m) & 0xFFFF) << 16  # only the low 16 bits of this product survive the shift
    return (lo + hi) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply, constants from Chris Wellons' "lowbias32"): every
    input bit flips each output bit with probability close to 1/2, so consecutive inputs look independent."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _fold_hash(*parts) -> torch.Tensor:
    """Hash several 32-bit values (ints or broadcastable int64 tensors) into one: mix(…mix(mix(p0) ^ p1)…)."""
    h = None
    for p in parts:
        p = torch.as_tensor(p, dtype=torch.int64) & _M32
        h = _mix32(p if h is None else h ^ p)
    return h


def _salts(n: int, offset: int, device=None) -> torch.Tensor:
    """`n` well-mixed constants, one per slot (or per pixel)."""
    return _mix32(torch.arange(n, dtype=torch.int64, device=device) + offset)


def _random_bits(seed: int, stream: int, index: torch.Tensor, n_slots: int) -> torch.Tensor:
    """`[N, n_slots]` random 32-bit integers that depend only on (seed, stream, index, slot).

    Two independent 32-bit keys per sample (64 bits together) keep distinct samples apart; with a single
    key, two samples would share all their random numbers after about 2**16 samples (the birthday bound).
    """
    parts = (seed & _M32, (seed >> 32) & _M32, stream, index & _M32, index >> 32)
    key_a = _fold_hash(0x1B873593, *parts)[:, None]
    key_b = _fold_hash(0x68E31DA4, *parts)[:, None]
    return _mix32(key_a ^ _salts(n_slots, 0x3C6EF372)[None]) ^ key_b


# Slots of each sample's random numbers. Each attribute owns its slots, so changing one setting (say the
# list of styles, or forcing one object) leaves every other attribute of the sample unchanged.
_COUNT, _STYLE, _GROUP, _LANG, _PLANT, _CAPTION_A, _CAPTION_B, _NOISE = range(8)
_BACKGROUND = 8  # 8 slots: background tone, tint, gradient, noise amplitude
_CELLS = 16  # 9 slots: a random permutation of the grid cells
_OBJECTS = 25  # 6 slots per object: (colour, shape) pair, size, x jitter, y jitter, rotation, radius jitter
_PER_OBJECT = 6

# ---------------------------------------------------------------------------------------------------------
# Signed distance functions, in object units (the object's radius is 1; y points up)
# ---------------------------------------------------------------------------------------------------------


def _box(x, y, half_w: float, half_h: float):
    """Exact signed distance to an axis-aligned box centred at the origin."""
    qx, qy = x.abs() - half_w, y.abs() - half_h
    ox, oy = qx.clamp(min=0), qy.clamp(min=0)
    return (ox * ox + oy * oy).sqrt() + torch.maximum(qx, qy).clamp(max=0)


def _segment(x, y, a: tuple[float, float], b: tuple[float, float]):
    """Signed distance to the segment a->b: negative on the side the origin is on (the shape's inside).

    Used after folding a symmetric shape into one wedge, where this segment is all of its boundary.
    """
    bax, bay = b[0] - a[0], b[1] - a[1]
    pax, pay = x - a[0], y - a[1]
    h = ((pax * bax + pay * bay) / (bax * bax + bay * bay)).clamp(0, 1)  # nearest point's place on a->b
    dx, dy = pax - bax * h, pay - bay * h
    dist = (dx * dx + dy * dy).sqrt()
    inside = pax * bay - pay * bax > 0  # the cross product's sign says which side of the line we are on
    return torch.where(inside, -dist, dist)


def _fold(x, y, n: int):
    """Fold the plane into the wedge between "up" and the angle pi/n, using the n mirror lines of a shape
    with n-fold symmetry and a vertex pointing up. A point beyond mirror j (at angle j*pi/n) is reflected
    across it, from j = n-1 down to 1; only multiplications and additions, no atan2."""
    x = x.abs()
    for j in range(n - 1, 0, -1):
        kx, ky = math.cos(j * math.pi / n), -math.sin(j * math.pi / n)  # unit normal of mirror j
        d = (x * kx + y * ky).clamp(min=0)  # > 0 only beyond the mirror
        x, y = x - (2 * kx) * d, y - (2 * ky) * d
    return x, y


def _radial(x, y, n: int, r_tip: float, r_notch: float):
    """A star with n tips at radius r_tip and notches at r_notch; a regular polygon when the notch sits on
    the edge's midpoint (r_notch = r_tip * cos(pi/n))."""
    x, y = _fold(x, y, n)
    notch = (r_notch * math.sin(math.pi / n), r_notch * math.cos(math.pi / n))
    return _segment(x, y, (0.0, r_tip), notch)


def _sdf_circle(x, y):
    return (x * x + y * y).sqrt() - 0.9


def _sdf_square(x, y):
    return _box(x, y, 0.75, 0.75)


def _sdf_triangle(x, y):
    return _radial(x, y, 3, 1.05, 1.05 * math.cos(math.pi / 3))


def _sdf_star(x, y):
    return _radial(x, y, 5, 1.05, 0.47)


def _sdf_heart(x, y):
    # A square standing on its corner, with a disc on each of its two upper sides.
    x, y = x.abs(), y + 0.08  # symmetric about the y axis; the square's centre is 0.08 below the origin
    s = math.sqrt(0.5)
    body = _box((x + y) * s, (y - x) * s, 0.55, 0.55)
    lx, ly = x - 0.55 * s, y - 0.55 * s  # centre of the upper side
    lobe = (lx * lx + ly * ly).sqrt() - 0.55
    return torch.minimum(body, lobe)


def _sdf_cross(x, y):
    return torch.minimum(_box(x, y, 0.9, 0.3), _box(x, y, 0.3, 0.9))


def _sdf_diamond(x, y):
    return _segment(x.abs(), y.abs(), (0.0, 1.0), (0.72, 0.0))  # taller than wide: never a tilted square


def _sdf_hexagon(x, y):
    return _radial(x, y, 6, 0.95, 0.95 * math.cos(math.pi / 6))


SDF = {"circle": _sdf_circle, "square": _sdf_square, "triangle": _sdf_triangle, "star": _sdf_star,
       "heart": _sdf_heart, "cross": _sdf_cross, "diamond": _sdf_diamond, "hexagon": _sdf_hexagon}
# How far each shape reaches from its centre, at any rotation; placement keeps objects inside their cell.
SHAPE_EXTENT = {"circle": 0.9, "square": 0.75 * math.sqrt(2), "triangle": 1.05, "star": 1.05, "heart": 1.05,
                "cross": math.hypot(0.9, 0.3), "diamond": 1.0, "hexagon": 0.95}


def _stroke_half_width(image_size: int) -> float:
    """Half the width of a sketch's outline, in pixels: 1.5 px lines at 64 px, thicker for larger images."""
    return 0.75 * max(1.0, image_size / 64)


def _margin(image_size: int) -> float:
    """How far (in pixels) every object's outline stays from the edges of its cell: room for the sketch
    outline and the antialiased fringe, so that nothing of an object is drawn outside its cell."""
    return _stroke_half_width(image_size) + 0.75


def _shadow_shift(image_size: int) -> int:
    """How far (in pixels, down and to the right) a "photo" object's shadow falls."""
    return max(1, round(image_size / 64))

# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlantedCorrelation:
    """A spurious word with a known link to the picture, for bias probes.

    `word` is appended to the caption (", vintage") with probability `p` when the scene's
    `attribute` equals `value`, and with probability `p_otherwise` when it does not. `attribute` is
    "style", "count" (value an int), or "shape", "colour" or "size" (true when any object has it). The
    ground truth of each sample is in its metadata (`meta["planted"]`).
    """

    word: str = "vintage"
    attribute: str = "style"
    value: str | int = "photo"
    p: float = 0.9
    p_otherwise: float = 0.0

    def __post_init__(self):
        vocab = {"style": STYLES, "shape": SHAPES, "colour": COLOURS, "size": SIZES}
        if self.attribute == "count":
            int(self.value)
        elif self.value not in vocab.get(self.attribute, ()):
            raise ValueError(f"planted correlation: {self.attribute}={self.value!r} is not in the vocabulary")
        if not (0 <= self.p <= 1 and 0 <= self.p_otherwise <= 1):
            raise ValueError("planted correlation: p and p_otherwise must lie in [0, 1]")


@dataclass
class ShapesConfig:
    """Everything that defines a Shapes world. Two worlds with equal configs produce identical samples."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    styles: tuple[str, ...] = STYLES  # each sample's style is drawn uniformly from these
    group_prob: float = 0.3  # for 2+ objects: P(all objects identical), the scenes that teach counting
    lang_rates: dict[str, float] = field(default_factory=dict)  # e.g. {"fr": 0.1, "de": 0.1}; the rest is English
    planted: PlantedCorrelation | None = None
    holdout: tuple[tuple[str, str], ...] = DEFAULT_HOLDOUT  # (colour, shape) pairs training never shows
    # Hard negatives. With 0 every object's colour is drawn from all colours. With c > 0, the training scenes
    # of each block of `block_size` consecutive indices (one training batch when block_size is the batch
    # size) draw their colours from the same c colours, chosen per block. Colour then no longer tells a
    # batch's captions apart, so the contrastive loss can only fall by telling shapes (and sizes, counts,
    # places) apart: CLIP learns what its in-batch negatives require, nothing more.
    colours_per_block: int = 0
    block_size: int = 128
    # How captions are planned (see shapes_text.Grammar); a dict in a YAML config, e.g. {p_size: 1.0}.
    grammar: text.Grammar = field(default_factory=text.Grammar)
    # NegCLIP-style hard negatives: every relation caption of a training batch brings its twin with the two
    # objects swapped, as an extra caption that matches no image (see ShapesDataset and loss.ClipLoss).
    swapped_negatives: bool = False
    # Minimal pairs: training sample 2k+1 is sample 2k with the shape of its first object (and of every
    # object that looks the same) changed. Only a shape tells the two pictures, and the two captions, apart,
    # so the contrastive loss cannot fall on this pair by colour, size, place or style.
    shape_twins: bool = False
    # A curriculum: phases the training stream goes through, in order, before the world as configured. Each
    # phase changes some of the other settings and lasts `samples` training samples or a `fraction` of the
    # run's, e.g. {fraction: 0.45, max_objects: 1, grammar: {p_colour: 0.25, …}} (single objects whose captions
    # seldom name colour: how configs/cpu-shapes.yaml teaches shape). One phase may be given as a dict, several
    # as a list; empty for none. Fractions keep the phases in proportion when a run (an experiment, a
    # rehearsal) is shortened. Only ShapesDataset's "train" stream follows it; validation and tests use the
    # world as configured.
    curriculum: list | dict = field(default_factory=list)
    seed: int = 0

    def __post_init__(self):
        # Accept what a YAML or JSON config gives (lists, a dict for planted) and check it early.
        self.styles = tuple(self.styles)
        self.holdout = tuple((str(c), str(s)) for c, s in self.holdout)
        if isinstance(self.planted, dict):
            self.planted = PlantedCorrelation(**self.planted)
        if isinstance(self.grammar, dict):
            self.grammar = text.Grammar(**self.grammar)
        phases = self.curriculum or []
        self.curriculum = [dict(p) for p in ([phases] if isinstance(phases, dict) else phases)]
        self.curriculum_worlds()  # checks the phases' settings now, not at the first batch
        if not 1 <= self.min_objects <= self.max_objects <= 9:
            raise ValueError("need 1 <= min_objects <= max_objects <= 9 (objects sit in a 3x3 grid)")
        if self.image_size < 16:
            raise ValueError("image_size must be at least 16 pixels")
        if not self.styles or set(self.styles) - set(STYLES):
            raise ValueError(f"styles must be a non-empty subset of {STYLES}")
        if not 0 <= self.colours_per_block <= len(COLOURS) or self.block_size < 1:
            raise ValueError(f"colours_per_block must lie in [0, {len(COLOURS)}] and block_size be positive")
        for colour, shape in self.holdout:
            if colour not in COLOURS or shape not in SHAPES:
                raise ValueError(f"held-out pair ({colour!r}, {shape!r}) is not in the vocabulary")
        if set(self.lang_rates) - set(LANGUAGES[1:]) or sum(self.lang_rates.values()) > 1:
            raise ValueError('lang_rates maps "fr"/"de" to rates that sum to at most 1')

    def to_dict(self) -> dict:
        return asdict(self)

    def curriculum_worlds(self) -> list[ShapesConfig]:
        """The config of each curriculum phase's world, in order (empty without a curriculum)."""
        worlds = []
        for i, phase in enumerate(self.curriculum, 1):
            changes = dict(phase)
            samples, fraction = changes.pop("samples", None), changes.pop("fraction", None)
            where = f"curriculum phase {i}" if len(self.curriculum) > 1 else "curriculum"
            if (samples is None) == (fraction is None):
                raise ValueError(f"{where} needs samples (how many training samples it lasts) or fraction (what "
                                 "part of the run's training samples), not both")
            if samples is not None and (not isinstance(samples, int) or samples < 1):
                raise ValueError(f"{where}: samples must be a positive whole number")
            if fraction is not None and not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
                raise ValueError(f"{where}: fraction must lie in (0, 1]")
            unknown = set(changes) - {f.name for f in fields(self)} | set(changes) & {"curriculum", "seed", "holdout"}
            if unknown:
                raise ValueError(f"{where} cannot change {sorted(unknown)}; it changes settings such as "
                                 "max_objects, colours_per_block, styles or grammar")
            worlds.append(replace(self, **changes, curriculum=[]))
        if sum(p.get("fraction", 0) for p in self.curriculum) > 1:
            raise ValueError("the curriculum's fractions add up to more than the whole run")
        return worlds

    def curriculum_ends(self, total_samples: int | None = None) -> list[int]:
        """The training sample at which each curriculum phase ends (the next one, or the world as configured,
        begins). A `fraction` is of `total_samples`, the run's training samples, which it then needs."""
        ends, end = [], 0
        for phase in self.curriculum:
            if "fraction" in phase and total_samples is None:
                raise ValueError("a curriculum given as a fraction needs the run's number of training samples")
            end += phase["samples"] if "samples" in phase else round(phase["fraction"] * total_samples)
            ends.append(end)
        return ends


# ---------------------------------------------------------------------------------------------------------
# Scenes (parameters only) and batches (pixels, masks, captions, metadata)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Scenes:
    """The parameters of N scenes, as CPU tensors; slot k of a scene is an object when `valid[:, k]`.

    Vocabulary attributes are integer ids into SHAPES, COLOURS, SIZES, POSITIONS (`cell`), STYLES and
    LANGUAGES. Geometry is in fractions of the image side, with y pointing down.
    """

    index: torch.Tensor  # [N] sample index
    split: str
    count: torch.Tensor  # [N] number of objects
    style: torch.Tensor  # [N]
    group: torch.Tensor  # [N] bool: all objects identical
    lang: torch.Tensor  # [N] caption language
    planted: torch.Tensor  # [N] bool: the planted word is in the caption
    valid: torch.Tensor  # [N, K] bool
    shape: torch.Tensor  # [N, K]
    colour: torch.Tensor  # [N, K]
    size: torch.Tensor  # [N, K]
    cell: torch.Tensor  # [N, K] grid cell 0..8
    centre: torch.Tensor  # [N, K, 2] float64 (x, y)
    radius: torch.Tensor  # [N, K] float64
    rotation: torch.Tensor  # [N, K] float64, degrees
    background: torch.Tensor  # [N, 8] float64 uniforms that set the background and noise
    caption_key: torch.Tensor  # [N] int64 seed of the caption's random choices
    noise_key: torch.Tensor  # [N] int64 seed of pixel noise and texture

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class ShapesBatch:
    images: torch.Tensor  # [N, 3, H, W] float in [0, 1]
    masks: torch.Tensor  # [N, max_objects, H, W] bool: the pixels inside each object's outline
    captions: list[str]
    meta: list[dict]  # per sample: see ShapesWorld.render
    scenes: Scenes
    # With `swapped_negatives`: the swapped twin of every relation caption, in batch order (else empty).
    negatives: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)


def _as_index(indices) -> torch.Tensor:
    if isinstance(indices, int):
        indices = [indices]
    if isinstance(indices, range):
        indices = torch.arange(indices.start, indices.stop, indices.step)
    index = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).cpu()
    if len(index) and index.min() < 0:
        raise ValueError("sample indices must be non-negative")
    return index


class ShapesWorld:
    """Samples, rasterises and captions Shapes scenes. See the module docstring for the pipeline."""

    def __init__(self, config: ShapesConfig | None = None, device: str | torch.device = "cpu"):
        self.config = config or ShapesConfig()
        self.device = torch.device(device)
        held = set(self.config.holdout)
        pairs = [(COLOURS.index(c), SHAPES.index(s)) for c in COLOURS for s in SHAPES]
        self.train_pairs = torch.tensor([p for p in pairs if (COLOURS[p[0]], SHAPES[p[1]]) not in held])
        self.heldout_pairs = torch.tensor([(COLOURS.index(c), SHAPES.index(s)) for c, s in self.config.holdout],
                                          dtype=torch.int64).reshape(-1, 2)
        s = self.config.image_size
        self._grid = (torch.arange(s, dtype=torch.float32, device=self.device) + 0.5) / s  # pixel centres
        # Two banks of fixed random images, made once: pixel noise for the "noisy" style and smooth textures
        # for "photo" backgrounds. Each picture uses the one its own hash picks, which is much cheaper than
        # making fresh noise for every picture, and as good for a model that sees it.
        bits = _mix32(_salts(BANK_SIZE * 3 * s * s, 0x27D4EB2F))
        noise = ((bits & 0xFFFF) + (bits >> 16)).float() / 65536.0 - 1.0  # sum of two uniforms: (-1, 1)
        self._noise_images = noise.reshape(BANK_SIZE, 3, s, s).to(self.device)
        keys = _salts(BANK_SIZE, 0x4CF5AD43)
        texture = 0.06 * _value_noise(keys, 4, s) + 0.03 * _value_noise(keys ^ 0x9E37, 12, s)  # two octaves
        self._textures = texture.to(self.device)  # [BANK_SIZE, 1, s, s]
        self._colours = torch.tensor([COLOUR_RGB[c] for c in COLOURS], dtype=torch.float32, device=self.device)

    # --- 1. scene parameters ------------------------------------------------------------------------------

    def scenes(self, indices, split: str = "train", *, n_objects: int | None = None,
               style: str | None = None) -> Scenes:
        """Scene parameters for `indices` of `split`, without drawing anything (100k scenes in ~1 s).

        `split`: "train", "val" and "test" are independent streams from the same distribution, with no
        held-out pair; "heldout" uses only held-out pairs. `n_objects` and `style` override the
        sampled count or style and leave everything else about each sample as it was, e.g. to show the
        same scenes in every style.
        """
        cfg, index = self.config, _as_index(indices)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
        n, k_max = len(index), cfg.max_objects
        twins = split == "train" and cfg.shape_twins
        source = index - index % 2 if twins else index  # a twin draws everything from its even partner
        bits = _random_bits(cfg.seed, SPLITS.index(split), source, _OBJECTS + _PER_OBJECT * k_max)
        u = bits.double() / 2.0**32  # uniform in [0, 1)

        def pick(slot_u: torch.Tensor, m: int) -> torch.Tensor:  # uniform integer in [0, m)
            return (slot_u * m).long().clamp(max=m - 1)

        if n_objects is None:
            count = cfg.min_objects + pick(u[:, _COUNT], cfg.max_objects - cfg.min_objects + 1)
        elif 1 <= n_objects <= k_max:
            count = torch.full((n,), n_objects, dtype=torch.int64)
        else:
            raise ValueError(f"n_objects must lie in [1, {k_max}]")
        style_ids = torch.tensor([STYLES.index(s) for s in cfg.styles])
        styles = style_ids[pick(u[:, _STYLE], len(style_ids))] if style is None else \
            torch.full((n,), STYLES.index(style), dtype=torch.int64)
        group = (count >= 2) & (u[:, _GROUP] < cfg.group_prob)
        valid = torch.arange(k_max)[None] < count[:, None]

        # Objects. Their look is a (colour, shape) pair drawn uniformly from the pairs this split allows:
        # a training sample cannot contain a held-out pair because it is never in the list to draw from.
        obj = u[:, _OBJECTS:].reshape(n, k_max, _PER_OBJECT)
        pairs = self.heldout_pairs if split == "heldout" else self.train_pairs
        if len(pairs) == 0:
            raise ValueError(f"split {split!r} has no (colour, shape) pairs to draw from")
        if split == "train" and cfg.colours_per_block:
            colour, shape = self._block_pairs(source, obj[..., 0])
        else:
            colour, shape = pairs[pick(obj[..., 0], len(pairs))].unbind(-1)
        size = pick(obj[..., 1], len(SIZES))
        # In a group scene every object copies the first one's look.
        colour, shape, size = (torch.where(group[:, None], t[:, :1], t) for t in (colour, shape, size))
        if twins:
            shape = self._twin_shapes(index, colour, shape, valid)

        # Places: distinct cells of the 3x3 grid (the first count of a random permutation), then a jitter
        # that keeps the whole object, at any tilt, inside its cell with room to spare for antialiasing and
        # sketch outlines: nothing of an object is drawn outside its cell (from 64 px up; at smaller sizes a
        # large object may overhang its cell by a fraction of a pixel).
        cell = torch.argsort(u[:, _CELLS:_CELLS + 9], dim=1, stable=True)[:, :k_max]
        radius = torch.tensor([SIZE_RADIUS[s] for s in SIZES], dtype=torch.float64)[size]
        radius = radius * (1 + SIZE_JITTER * (2 * obj[..., 5] - 1))
        extent = torch.tensor([SHAPE_EXTENT[s] for s in SHAPES], dtype=torch.float64)[shape]
        slack = (1 / 6 - radius * extent - _margin(cfg.image_size) / cfg.image_size).clamp(min=0)
        cx = ((cell % 3) + 0.5) / 3 + (2 * obj[..., 2] - 1) * slack
        cy = ((cell // 3) + 0.5) / 3 + (2 * obj[..., 3] - 1) * slack
        rotation = torch.tensor(ROTATIONS_DEG, dtype=torch.float64)[pick(obj[..., 4], len(ROTATIONS_DEG))]

        # Caption language: English unless the sample falls in one of the configured rate bands.
        lang = torch.zeros(n, dtype=torch.int64)
        lo = 0.0
        for lang_id, name in enumerate(LANGUAGES[1:], start=1):
            rate = cfg.lang_rates.get(name, 0.0)
            lang[(u[:, _LANG] >= lo) & (u[:, _LANG] < lo + rate)] = lang_id
            lo += rate

        planted = torch.zeros(n, dtype=torch.bool)
        if cfg.planted is not None:
            pc = cfg.planted
            if pc.attribute == "style":
                holds = styles == STYLES.index(pc.value)
            elif pc.attribute == "count":
                holds = count == int(pc.value)
            else:
                attr = {"shape": (shape, SHAPES), "colour": (colour, COLOURS), "size": (size, SIZES)}
                ids, vocab = attr[pc.attribute]
                holds = ((ids == vocab.index(pc.value)) & valid).any(1)
            planted = u[:, _PLANT] < torch.where(holds, pc.p, pc.p_otherwise)

        # Empty slots get harmless values (a unit object in the middle) and are never drawn.
        zero = torch.zeros_like
        return Scenes(
            index=index, split=split, count=count, style=styles, group=group, lang=lang, planted=planted,
            valid=valid, shape=torch.where(valid, shape, zero(shape)), colour=torch.where(valid, colour, zero(colour)),
            size=torch.where(valid, size, zero(size)), cell=torch.where(valid, cell, zero(cell)),
            centre=torch.stack([torch.where(valid, cx, 0.5), torch.where(valid, cy, 0.5)], -1),
            radius=torch.where(valid, radius, 0.1), rotation=torch.where(valid, rotation, 0.0),
            background=u[:, _BACKGROUND:_BACKGROUND + 8],
            caption_key=(bits[:, _CAPTION_A] << 32) | bits[:, _CAPTION_B], noise_key=bits[:, _NOISE],
        )

    def _block_pairs(self, index: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(colour, shape) ids for objects whose uniforms are `u` [N, K], with each sample's colours drawn from
        its block's `colours_per_block` colours (see ShapesConfig) and its shape from the shapes that colour
        may take in training (held-out pairs excluded). One uniform serves both draws: its integer part
        (times c) picks the colour and its fractional part the shape, so no new random slot is needed."""
        cfg, c = self.config, self.config.colours_per_block
        block = index // cfg.block_size
        keys = _fold_hash(cfg.seed, 0x5EED0B10, block[:, None], torch.arange(len(COLOURS))[None])  # [N, 8]
        subset = torch.argsort(keys, dim=1, stable=True)[:, :c]  # the block's colours: a random c of 8
        scaled = u * c
        slot = scaled.long().clamp(max=c - 1)
        colour = subset.gather(1, slot)
        # Shapes each colour may take, packed to the left.
        allowed = self._allowed_shapes()
        n_allowed = allowed.sum(1)
        packed = torch.argsort((~allowed).to(torch.int8), dim=1, stable=True)  # allowed ids first, in order
        frac = scaled - scaled.floor()
        which = (frac * n_allowed[colour]).long().clamp(max=(n_allowed[colour] - 1).clamp(min=0))
        shape = packed[colour, which]
        return colour, shape

    def _allowed_shapes(self) -> torch.Tensor:
        """[colours, shapes] bool: the (colour, shape) pairs training may show (all but the held-out ones)."""
        allowed = torch.ones(len(COLOURS), len(SHAPES), dtype=torch.bool)
        for colour_id, shape_id in self.heldout_pairs.tolist():
            allowed[colour_id, shape_id] = False
        return allowed

    def _twin_shapes(self, index: torch.Tensor, colour: torch.Tensor, shape: torch.Tensor,
                     valid: torch.Tensor) -> torch.Tensor:
        """Shapes for `ShapesConfig.shape_twins`: odd samples give their first object's look another shape,
        drawn uniformly from the shapes that colour may take in training (never a held-out pair)."""
        c0, s0 = colour[:, 0], shape[:, 0]
        allowed = self._allowed_shapes()
        candidates = allowed[c0] & (torch.arange(len(SHAPES))[None] != s0[:, None])  # [N, shapes]
        score = _fold_hash(self.config.seed, 0x7A1257A9, index[:, None], torch.arange(len(SHAPES))[None])
        new = torch.where(candidates, score, -1).argmax(1)  # a uniform pick among the candidates
        same_look = valid & (shape == s0[:, None]) & (colour == c0[:, None])
        odd = (index % 2 == 1)[:, None]
        return torch.where(odd & same_look, new[:, None], shape)

    # --- 2. pixels ----------------------------------------------------------------------------------------

    def _windows(self) -> tuple[int, torch.Tensor]:
        """Each object is drawn only in a small square window around its grid cell, not on the whole
        picture: ~7x less work at the same result, because nothing of an object reaches outside its cell.
        The window overhangs the cell by `pad` pixels, enough for rounding and for a "photo" shadow.
        Returns the window side T and the first pixel row/column of the window of grid row/column 0, 1, 2."""
        s = self.config.image_size
        pad = 1 + max(0, math.ceil(_shadow_shift(s) + 0.5 - _margin(s)))
        t = min(s // 3 + 2 * pad + 1, s)
        return t, torch.tensor([min(max(math.floor(c * s / 3) - pad, 0), s - t) for c in range(3)])

    def rasterise(self, sc: Scenes) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw scenes: images `[N, 3, H, W]` in [0, 1] and object masks `[N, K, H, W]` (bool)."""
        images, masks, _ = self._draw(sc)
        return images, masks

    def _draw(self, sc: Scenes):
        """Images, masks and the masks' bounding boxes `[N, K, 4]` (x0, y0, x1, y1 inclusive; -1 if empty)."""
        n, k_max = sc.valid.shape
        size, dev = self.config.image_size, self.device
        t, window_start = self._windows()

        # The objects, flattened and sorted by shape: object m is slot k[m] of scene b[m].
        b, k = sc.valid.nonzero(as_tuple=True)
        order = torch.argsort(sc.shape[b, k], stable=True)
        b, k = b[order], k[order]
        cell, shape, colour = sc.cell[b, k], sc.shape[b, k], sc.colour[b, k]
        style = sc.style[b]
        tilt = _TILT_COS_SIN[((sc.rotation[b, k] - ROTATIONS_DEG[0]) / 2.5).round().long()]  # table, not cos()
        cx, cy, r, cos, sin = (v.to(dev, torch.float32)[:, None, None] for v in
                               (sc.centre[b, k, 0], sc.centre[b, k, 1], sc.radius[b, k], tilt[:, 0], tilt[:, 1]))
        x0, y0 = window_start[cell % 3].to(dev), window_start[cell // 3].to(dev)
        b, k, cell, shape, style = (v.to(dev) for v in (b, k, cell, shape, style))

        # Pixel centres of each window, in each object's own frame: origin at its centre, unit = its
        # radius, y up, tilt undone. (x0 + j + 0.5) / size is the very same number for a pixel whatever
        # window it falls in, so results do not depend on where a window starts.
        ramp = torch.arange(t, device=dev, dtype=torch.float32)
        gx = ((x0[:, None] + ramp) + 0.5) / size  # [M, T]
        gy = ((y0[:, None] + ramp) + 0.5) / size
        dx = (gx[:, None, :] - cx) / r  # [M, 1, T]
        dy = (cy - gy[:, :, None]) / r  # [M, T, 1]
        x, y = dx * cos + dy * sin, dy * cos - dx * sin  # [M, T, T]

        # Signed distance to the outline, in pixels (negative inside). Each shape's function runs once, on
        # the block of all objects of that shape.
        sdf = torch.empty_like(x)
        start = 0
        for name, m in zip(SHAPES, torch.bincount(shape, minlength=len(SHAPES)).tolist()):
            if m:
                sdf[start:start + m] = SDF[name](x[start:start + m], y[start:start + m])
            start += m
        sdf = sdf * (r * size)
        inside = sdf < 0

        # Coverage (antialiasing): a pixel centre d pixels inside the outline is covered clamp(0.5 + d, 0, 1);
        # a sketch covers a band of about 1.5 px around the outline instead.
        fill = (0.5 - sdf).clamp(0, 1)
        stroke = (_stroke_half_width(size) + 0.5 - sdf.abs()).clamp(0, 1)
        alpha = torch.where((style == STYLES.index("sketch"))[:, None, None], stroke, fill)[:, None]

        # Paint: the object's colour; in "photo" style shaded like a raised tile (darker at the rim,
        # brighter inside) with a highlight up and to the left that blends towards white, and a shadow: its
        # coverage, moved a pixel (at 64 px) down and to the right, darkens what lies beneath.
        paint = self._colours[colour][:, :, None, None].expand(-1, -1, t, t)  # [M, 3, T, T]
        photo = (style == STYLES.index("photo")).nonzero(as_tuple=True)[0]
        shadow = torch.zeros_like(alpha)
        if len(photo):
            depth = (-sdf[photo] / (r[photo] * size)).clamp(0, 0.45) / 0.45
            hx, hy = x[photo] + 0.3, y[photo] - 0.35
            glint = (1 - (hx * hx + hy * hy) / 0.12).clamp(0, 1)
            lit = paint[photo] * (0.72 + 0.3 * depth)[:, None]
            paint = paint.clone()
            paint[photo] = lit + (0.5 * glint * glint)[:, None] * (1 - lit)
            shift = _shadow_shift(size)
            shadow[photo, :, shift:, shift:] = 0.35 * fill[photo, None, :-shift, :-shift]

        # Composite each object over the background, inside its window. Windows of neighbouring cells
        # overlap by a pixel or two, but there the other object's coverage is exactly 0 (objects stay inside
        # their cells), and painting with coverage 0 changes nothing, so the order does not matter.
        images = self._background(sc)
        masks = torch.zeros(n, k_max, size, size, dtype=torch.bool, device=dev)
        starts = window_start.tolist()
        for c in range(9):
            sel = (cell == c).nonzero(as_tuple=True)[0]
            if len(sel) == 0:
                continue
            ys, xs = slice(starts[c // 3], starts[c // 3] + t), slice(starts[c % 3], starts[c % 3] + t)
            region = images[b[sel], :, ys, xs] * (1 - shadow[sel])
            images[b[sel], :, ys, xs] = region + alpha[sel] * (paint[sel] - region)
            masks[b[sel], k[sel], ys, xs] = inside[sel]

        noisy = (sc.style == STYLES.index("noisy")).nonzero(as_tuple=True)[0].to(dev)
        if len(noisy):
            images.index_add_(0, noisy, self._pixel_noise(sc, noisy))
        images.clamp_(0, 1)

        # Tight boxes around the masks, from the windows.
        ar = torch.arange(t, device=dev)
        rows, cols = inside.any(2), inside.any(1)  # [M, T]
        box = torch.stack([torch.where(cols, ar, t).amin(1) + x0, torch.where(rows, ar, t).amin(1) + y0,
                           torch.where(cols, ar, -1).amax(1) + x0, torch.where(rows, ar, -1).amax(1) + y0], 1)
        boxes = torch.full((n, k_max, 4), -1, dtype=torch.int64, device=dev)
        boxes[b, k] = box
        return images, masks, boxes

    def _background(self, sc: Scenes) -> torch.Tensor:
        """`[N, 3, H, W]` backgrounds: light grey (flat, noisy), off-white paper (sketch), or for "photo" a
        tinted surface, lit from above, with a smooth random texture."""
        n, size, dev = len(sc), self.config.image_size, self.device
        u = sc.background.to(dev, torch.float32)  # [N, 8] uniforms owned by the background
        style = sc.style.to(dev)
        grey = (0.8 + 0.15 * u[:, 0])[:, None].expand(n, 3)
        paper = torch.tensor([0.97, 0.95, 0.90], device=dev) * (0.96 + 0.04 * u[:, :1])
        colour = torch.where((style == STYLES.index("sketch"))[:, None], paper, grey)
        background = colour[:, :, None, None].expand(n, 3, size, size).contiguous()

        photo = (style == STYLES.index("photo")).nonzero(as_tuple=True)[0]
        if len(photo):
            v = u[photo]
            tone = (0.55 + 0.3 * v[:, 0])[:, None, None, None]
            gradient = 0.15 * v[:, 4, None, None, None] * (0.5 - self._grid)[:, None]  # lighter at the top
            texture = self._textures[sc.noise_key.to(dev)[photo] % BANK_SIZE]
            tint = 0.06 * (2 * v[:, 1:4, None, None] - 1)
            background[photo] = (tone + gradient + texture + tint).clamp(0, 1)
        return background

    def _pixel_noise(self, sc: Scenes, rows: torch.Tensor) -> torch.Tensor:
        """Per-pixel, per-channel noise for scenes `rows`: one of the world's fixed noise images, scaled
        by an amplitude of 0.15-0.35 per scene."""
        key = sc.noise_key.to(self.device)[rows]
        amplitude = 0.15 + 0.2 * sc.background.to(self.device, torch.float32)[rows, 5]
        return amplitude[:, None, None, None] * self._noise_images[key % BANK_SIZE]

    # --- 3. captions and metadata --------------------------------------------------------------------------

    def _scene_objects(self, sc: Scenes, i: int, lists) -> list[text.SceneObject]:
        shape, colour, size, cell, count = lists
        return [text.SceneObject(SHAPES[shape[i][k]], COLOURS[colour[i][k]], SIZES[size[i][k]], cell[i][k])
                for k in range(count[i])]

    def _caption_plans(self, sc: Scenes) -> list[tuple[text.Caption, str]]:
        lists = (sc.shape.tolist(), sc.colour.tolist(), sc.size.tolist(), sc.cell.tolist(), sc.count.tolist())
        style, keys = sc.style.tolist(), sc.caption_key.tolist()
        name_first = sc.split == "train" and self.config.shape_twins  # so a caption names the changed object
        return [text.plan_caption(self._scene_objects(sc, i, lists), STYLES[style[i]], random.Random(keys[i]),
                                  self.config.grammar, name_first)
                for i in range(len(sc))]

    def captions(self, sc: Scenes, lang: str | None = None) -> list[str]:
        """One caption per scene, in its sampled language or in `lang` for all. The same scene gets the same
        caption plan in every language, so `captions(sc, "fr")` translates `captions(sc, "en")`."""
        return self._captions(sc, self._caption_plans(sc), lang)

    def _captions(self, sc, plans, lang, rows=None):
        """The captions of `plans`, which belong to scenes `rows` of `sc` (all, in order, by default)."""
        langs = sc.lang.tolist()
        planted = sc.planted.tolist()
        out = []
        for i, (plan, _) in zip(rows if rows is not None else range(len(plans)), plans):
            caption = text.realise(plan, lang or LANGUAGES[langs[i]])
            if planted[i]:
                caption = f"{caption}, {self.config.planted.word}"
            out.append(caption)
        return out

    def render(self, indices, split: str = "train", *, n_objects: int | None = None, style: str | None = None,
               lang: str | None = None) -> ShapesBatch:
        """Render samples `indices` of `split` (see `scenes` for the arguments).

        `meta[i]` holds: index, split, count, style, lang, group, planted, caption_kind, heldout (any
        object is a held-out pair) and `objects`, one dict per object with shape, colour, size,
        position (one of POSITIONS), centre (x, y) and radius in pixels, rotation in degrees, and box
        (x0, y0, x1, y1), the inclusive pixel bounds of its mask.
        """
        sc = self.scenes(indices, split, n_objects=n_objects, style=style)
        images, masks, boxes = self._draw(sc)
        plans = self._caption_plans(sc)
        negatives = []
        if self.config.swapped_negatives and split == "train":  # hard negatives are for training only
            twins = [(i, twin) for i, (plan, _) in enumerate(plans) if (twin := text.swapped(plan)) is not None]
            negatives = self._captions(sc, [(twin, "relation") for _, twin in twins], lang, [i for i, _ in twins])
        return ShapesBatch(images, masks, self._captions(sc, plans, lang), self._meta(sc, boxes, plans, lang), sc,
                           negatives)

    def _meta(self, sc: Scenes, boxes: torch.Tensor, plans, lang) -> list[dict]:
        size = self.config.image_size
        boxes = boxes.tolist()
        held = {(COLOURS.index(c), SHAPES.index(s)) for c, s in self.config.holdout}
        cols_ = [t.tolist() for t in (sc.index, sc.count, sc.style, sc.lang, sc.group, sc.planted)]
        shape, colour, sz, cell = (t.tolist() for t in (sc.shape, sc.colour, sc.size, sc.cell))
        centre, radius, rotation = (sc.centre * size).tolist(), (sc.radius * size).tolist(), sc.rotation.tolist()
        out = []
        for i, (index, count, style, lang_id, group, planted) in enumerate(zip(*cols_)):
            objects = [dict(shape=SHAPES[shape[i][k]], colour=COLOURS[colour[i][k]], size=SIZES[sz[i][k]],
                            position=POSITIONS[cell[i][k]], centre=tuple(centre[i][k]), radius=radius[i][k],
                            rotation=rotation[i][k], box=tuple(boxes[i][k]),
                            heldout=(colour[i][k], shape[i][k]) in held)
                       for k in range(count)]
            out.append(dict(index=index, split=sc.split, count=count, style=STYLES[style],
                            lang=lang or LANGUAGES[lang_id], group=group, planted=planted,
                            caption_kind=plans[i][1], heldout=any(o["heldout"] for o in objects),
                            objects=objects))
        return out

    # --- zero-shot helpers ---------------------------------------------------------------------------------

    def class_names(self, kind: str) -> list[str]:
        """English names of the classes of `kind` (see `shapes_text.CLASS_KINDS`), in label order."""
        return class_names(kind, self.config.max_objects)

    def class_prompts(self, kind: str, lang: str = "en", frame: str = "photo", variant: int = 0) -> list[str]:
        """One prompt per class, e.g. `class_prompts("colour_shape", "fr")[0] == "une photo d'un cercle rouge"`."""
        return class_prompts(kind, lang, frame, variant, self.config.max_objects)

    def labels(self, scenes: Scenes | ShapesBatch, kind: str) -> torch.Tensor:
        """Class labels of `kind` for each scene, matching `class_names`. Object attributes are those
        of the first object, so render with `n_objects=1` to classify them."""
        sc = scenes.scenes if isinstance(scenes, ShapesBatch) else scenes
        per_kind = {"shape": sc.shape[:, 0], "colour": sc.colour[:, 0], "size": sc.size[:, 0],
                    "colour_shape": sc.colour[:, 0] * len(SHAPES) + sc.shape[:, 0], "count": sc.count - 1,
                    "style": sc.style, "position": sc.cell[:, 0]}
        if kind not in per_kind:
            raise ValueError(f"unknown class kind {kind!r}; choose from {tuple(per_kind)}")
        return per_kind[kind].clone()

    def heldout_zeroshot(self, n: int, lang: str = "en") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """True zero-shot: `n` single objects of held-out (colour, shape) pairs, normalised for the model,
        their labels among all colour_shape classes, and one prompt per class in this world's own grammar."""
        batch = self.render(range(n), split="heldout", n_objects=1)
        return normalize(batch.images), self.labels(batch, "colour_shape"), self.class_prompts("colour_shape", lang)

    def heldout_classes(self) -> list[int]:
        """Indices of the held-out pairs among `class_names("colour_shape")`."""
        return [COLOURS.index(c) * len(SHAPES) + SHAPES.index(s) for c, s in self.config.holdout]


def _value_noise(keys: torch.Tensor, cells: int, size: int) -> torch.Tensor:
    """Smooth random texture, `[n, 1, size, size]` in [-1, 1]: random values on a (cells+1)^2 lattice
    (from the hash of `keys`), interpolated bilinearly."""
    lattice = _mix32(keys[:, None] ^ _salts((cells + 1) ** 2, 0x165667B1, keys.device)[None])
    values = (lattice.float() / 2.0**32 * 2 - 1).reshape(-1, 1, cells + 1, cells + 1)
    return torch.nn.functional.interpolate(values, size=(size, size), mode="bilinear", align_corners=True)


def class_names(kind: str, max_objects: int = 4) -> list[str]:
    """English class names in label order; see `shapes_text.class_names`."""
    return text.class_names(kind, max_objects)


def class_prompts(kind: str, lang: str = "en", frame: str = "photo", variant: int = 0,
                  max_objects: int = 4) -> list[str]:
    """Zero-shot prompts per class and language; see `shapes_text.class_prompts`."""
    return text.class_prompts(kind, lang, frame, variant, max_objects)


# ---------------------------------------------------------------------------------------------------------
# Streaming for training
# ---------------------------------------------------------------------------------------------------------


class ShapesDataset(IterableDataset):
    """Streams `(images, captions)` batches of a Shapes world, rendered a whole batch at a time.

    Batch `b` holds samples `start + b*batch_size … start + (b+1)*batch_size - 1`. Batches are dealt
    round-robin to the `world_size * num_workers` shards (DDP ranks times DataLoader workers), so every
    sample is produced exactly once. Use it with `DataLoader(dataset, batch_size=None, num_workers=…)`.
    The stream is endless unless `num_samples` is given. Under DDP with a finite stream, ranks may get
    one batch more or fewer than each other; choose `num_samples` a multiple of
    `batch_size * world_size` to avoid that.
    """

    def __init__(self, config: ShapesConfig | None = None, *, split: str = "train", batch_size: int = 256,
                 num_samples: int | None = None, start: int = 0, normalize: bool = True,
                 device: str | torch.device = "cpu", rank: int | None = None, world_size: int | None = None,
                 total_samples: int | None = None):
        super().__init__()
        self.config, self.split, self.batch_size = config or ShapesConfig(), split, batch_size
        self.num_samples, self.start, self.normalize, self.device = num_samples, start, normalize, device
        self.rank, self.world_size = rank, world_size
        # The run's training samples, for a curriculum given as a fraction (default: start + num_samples).
        self.total_samples = total_samples if total_samples is not None else (
            None if num_samples is None else start + num_samples)

    def _shard(self) -> tuple[int, int]:
        rank, world_size = self.rank, self.world_size
        if rank is None or world_size is None:
            dist = torch.distributed
            on = dist.is_available() and dist.is_initialized()
            rank = dist.get_rank() if on else 0 if rank is None else rank
            world_size = dist.get_world_size() if on else 1 if world_size is None else world_size
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return rank * workers + worker, world_size * workers

    def __iter__(self):
        world = ShapesWorld(self.config, self.device)  # built here, inside each worker process
        # The curriculum's phases, then the world as configured: (world, first sample, sample it ends before).
        phases = list(zip(self.config.curriculum_worlds(), self.config.curriculum_ends(self.total_samples))
                      ) if self.split == "train" else []
        spans, begin = [], 0
        for config, phase_end in phases:
            spans.append((ShapesWorld(config, self.device), begin, phase_end))
            begin = phase_end
        spans.append((world, begin, None))
        shard, num_shards = self._shard()
        end = None if self.num_samples is None else self.start + self.num_samples
        b = shard
        while True:
            lo = self.start + b * self.batch_size
            hi = lo + self.batch_size if end is None else min(lo + self.batch_size, end)
            if hi <= lo:
                return
            # A batch that straddles a phase's end takes each part from its own phase's world.
            parts = [(w, range(max(lo, a), hi if z is None else min(hi, z))) for w, a, z in spans]
            parts = [(w, r) for w, r in parts if len(r)]
            batches = [w.render(r, self.split) for w, r in parts]
            images = torch.cat([x.images for x in batches]) if len(batches) > 1 else batches[0].images
            # Hard negatives ride behind the batch's own captions: rows past len(images) match no image.
            captions = [c for x in batches for c in x.captions] + [c for x in batches for c in x.negatives]
            yield (normalize(images) if self.normalize else images), captions
            b += num_shards


# ---------------------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------------------


def benchmark_render(batch_size: int = 256, image_size: int = 64, seconds: float = 3.0,
                     device: str = "cpu", threads: int | None = None) -> dict:
    """Render throughput of the full pipeline (scenes, pixels, captions, metadata), in samples per second,
    with the time per batch split by stage. `threads` sets torch's CPU threads for the measurement (and
    restores them after); by default the current `torch.get_num_threads()` is used."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _benchmark(batch_size, image_size, seconds, device)
    finally:
        torch.set_num_threads(previous)


def _benchmark(batch_size: int, image_size: int, seconds: float, device: str) -> dict:
    world = ShapesWorld(ShapesConfig(image_size=image_size), device)
    world.render(range(batch_size))  # warm-up
    stages = {"scenes": 0.0, "rasterise": 0.0, "captions": 0.0, "meta": 0.0}

    def sync():
        if world.device.type == "cuda":
            torch.cuda.synchronize(world.device)

    batches, start, t_begin = 0, batch_size, time.perf_counter()
    while time.perf_counter() - t_begin < seconds or batches == 0:
        t0 = time.perf_counter()
        sc = world.scenes(range(start, start + batch_size))
        t1 = time.perf_counter()
        images, masks, boxes = world._draw(sc)
        sync()
        t2 = time.perf_counter()
        plans = world._caption_plans(sc)
        world._captions(sc, plans, None)
        t3 = time.perf_counter()
        world._meta(sc, boxes, plans, None)
        t4 = time.perf_counter()
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[name] += dt
        batches, start = batches + 1, start + batch_size
    total = sum(stages.values())
    return {
        "samples_per_s": batches * batch_size / total,
        "pixels_only_samples_per_s": batches * batch_size / stages["rasterise"],
        "ms_per_batch": 1000 * total / batches,
        "stage_ms_per_batch": {k: 1000 * v / batches for k, v in stages.items()},
        "batch_size": batch_size, "image_size": image_size, "device": str(world.device),
        "threads": torch.get_num_threads(), "batches": batches,
    }
