"""The caption grammar of the Shapes world, in English, French and German.

A caption is made in two steps, so that every language says the same thing:

1. `plan_caption` looks at a scene and decides *what* to say: which objects, which attributes, which
   relation, which frame ("a photo of …", "a sketch of …"). It returns a `Caption`, a small
   language-free tree of `Thing` noun phrases. All random choices happen here.
2. `realise` puts a `Caption` into words in one language. It makes no random choices, so the
   French caption of a sample is a translation of its English caption, not a different description.

The same two steps build zero-shot class prompts (`class_prompts`): "a photo of a red circle",
"une photo d'un cercle rouge", "ein Foto von einem roten Kreis".

Grammar notes, because the translations are where such generators usually go wrong:

* French puts the size adjective before the noun and the colour after it, and both agree in gender and
  number ("deux petites étoiles roses"). *orange* is invariable ("des croix orange"); *rose* takes a plural
  *s*. "de" elides before "un"/"une" ("une photo d'une étoile").
* German nouns are capitalised and have three genders. After the indefinite article the adjectives take
  the mixed declension (nominative *ein roter Kreis*, *eine rote Raute*, *ein rotes Quadrat*; dative
  *einem/einer roten …*); after a bare number word they take the strong plural (*drei rote Sterne*,
  dative *drei roten Sternen*). *rosa* is invariable. "ein Foto von", "links von", "über" and "unter"
  (position) govern the dative; "auf dem Bild ist/sind …" keeps the nominative. *Herz* has the dative
  singular *Herzen*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

# ---------------------------------------------------------------------------------------------------------
# The vocabulary. Order matters: it fixes the integer ids used in tensors and the order of zero-shot classes.
# ---------------------------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross", "diamond", "hexagon")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "black")
SIZES = ("small", "large")
STYLES = ("flat", "sketch", "photo", "noisy")
# The 3x3 grid of absolute positions, read row by row: cell = 3 * row + column.
POSITIONS = ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right")
RELATIONS = ("left of", "right of", "above", "below")
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
LANGUAGES = ("en", "fr", "de")
# Neutral frames say nothing about the picture's style; the "style" frame names it ("a sketch of …").
NEUTRAL_FRAMES = ("bare", "photo", "image", "there")
FRAMES = NEUTRAL_FRAMES + ("style",)


@dataclass(frozen=True)
class Thing:
    """One noun phrase before it is put into words, e.g. "two small red circles" or "a shape on the left".

    `shape=None` means the generic noun ("shape"); `colour` and `size` are left out when `None`.
    `numeral` spells a count of one as a number ("one shape") instead of an article ("a shape").
    """

    count: int = 1
    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    numeral: bool = False
    position: str | None = None  # one of POSITIONS: "a red circle in the top left corner"
    relation: tuple[str, Thing] | None = None  # ("left of", other): "a red circle left of a blue square"


@dataclass(frozen=True)
class Caption:
    """What a caption says, in no language: noun phrases joined by "and", inside a frame.

    `total` prefixes a count of all objects ("three shapes: a red circle, …"). `variant` picks a
    paraphrase where a language has several for the same frame or relation; it is taken modulo the number
    of paraphrases, so languages with fewer simply repeat one.
    """

    things: tuple[Thing, ...]
    frame: str = "bare"
    style: str = "flat"
    variant: int = 0
    total: int | None = None


# ---------------------------------------------------------------------------------------------------------
# Step 1: planning (all the randomness)
# ---------------------------------------------------------------------------------------------------------

# How often each kind of caption is chosen. "describe" lists the objects (merging identical ones into a
# count: "two red circles and a blue square"); "position" gives each object's place in the picture;
# "relation" relates two objects; "count" leads with the number of objects ("three shapes: …"). Scenes of
# n identical objects ("group" scenes) are the ones that teach counting: they are always described with
# their count ("three small red stars"). Every kind names the shape of at least one object, and its colour
# unless the grammar leaves colours out, except "total", which says only how many objects there are ("a photo
# of three shapes", the way a zero-shot count prompt reads) and which the world's own weights never choose: a
# grammar asks for it.
KIND_WEIGHTS = {
    "single": {"describe": 0.45, "position": 0.4, "count": 0.15},
    "group": {"describe": 1.0},
    "mixed": {"describe": 0.35, "relation": 0.35, "position": 0.15, "count": 0.15},
}
P_SIZE = 0.75  # captions name sizes this often; the rest leave them out, as people often do
P_STYLE_FRAME = 0.3  # this often the frame names the style; otherwise one of NEUTRAL_FRAMES
KINDS = ("describe", "position", "relation", "count", "total")


@dataclass(frozen=True)
class Grammar:
    """How captions are planned: the weight of each caption kind per scene type ("single", "group",
    "mixed"), how often sizes are named, how often the frame names the style, and the neutral frames to
    choose from. The defaults are the world's; a config can change them (to measure how caption variety
    slows learning, say). With `p_colour` 1 (the default) the random draws are the world's own, so the default
    grammar gives every scene the caption it always had; `p_colour` below 1 adds one draw per caption."""

    kinds: dict = field(default_factory=dict)  # per scene type; a type left out keeps its weights in KIND_WEIGHTS
    p_size: float = P_SIZE
    p_colour: float = 1.0  # how often colours are named; without them only shapes (and sizes) tell captions apart
    p_style_frame: float = P_STYLE_FRAME
    frames: tuple[str, ...] = NEUTRAL_FRAMES  # the neutral frames to choose from

    def __post_init__(self):
        kinds = {k: dict(v) for k, v in KIND_WEIGHTS.items()}
        for scene_type, weights in dict(self.kinds).items():
            if scene_type not in kinds:
                raise ValueError(f"grammar.kinds: unknown scene type {scene_type!r}; choose from {tuple(kinds)}")
            weights = {str(k): float(w) for k, w in dict(weights).items()}
            if set(weights) - set(KINDS) or not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
                raise ValueError(f"grammar.kinds.{scene_type}: give non-negative weights of {KINDS}, not all zero")
            if scene_type == "single" and weights.get("relation"):
                raise ValueError("grammar.kinds.single: a single object has no relation to name")
            kinds[scene_type] = weights
        object.__setattr__(self, "kinds", kinds)
        if not all(0 <= p <= 1 for p in (self.p_size, self.p_colour, self.p_style_frame)):
            raise ValueError("grammar: p_size, p_colour and p_style_frame must lie in [0, 1]")
        object.__setattr__(self, "frames", tuple(self.frames))
        if not self.frames or set(self.frames) - set(NEUTRAL_FRAMES):
            raise ValueError(f"grammar.frames must be a non-empty subset of {NEUTRAL_FRAMES}")


DEFAULT_GRAMMAR = Grammar()


@dataclass(frozen=True)
class SceneObject:
    """What the grammar needs to know about one object."""

    shape: str
    colour: str
    size: str
    cell: int  # index into POSITIONS

    @property
    def column(self) -> int:
        return self.cell % 3

    @property
    def row(self) -> int:
        return self.cell // 3


def _weighted(rng, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def true_relations(a: SceneObject, b: SceneObject) -> list[str]:
    """Every relation "a <rel> b" that holds. Objects sit in distinct cells of the 3x3 grid, so at least one
    holds, and columns (or rows) that differ are always at least a few pixels apart: no borderline cases."""
    rels = []
    if a.column != b.column:
        rels.append("left of" if a.column < b.column else "right of")
    if a.row != b.row:
        rels.append("above" if a.row < b.row else "below")
    return rels


def plan_caption(objects: list[SceneObject], style: str, rng, grammar: Grammar = DEFAULT_GRAMMAR,
                 name_first: bool = False) -> tuple[Caption, str]:
    """Choose what to say about a scene. `rng` is a `random.Random` seeded per sample.

    `name_first`: a relation caption always names `objects[0]` (and one other, in either order), so a
    caption always mentions the first object. Objects are exchangeable, so the captions' distribution is
    the same; used by the Shapes world's shape twins, which change the first object.

    Returns the `Caption` and its kind ("describe", "position", "relation", "count" or "total").
    """
    n = len(objects)
    same_look = len({(o.shape, o.colour, o.size) for o in objects}) == 1
    scene_type = "single" if n == 1 else ("group" if same_look else "mixed")
    kind = _weighted(rng, grammar.kinds[scene_type])
    with_size = rng.random() < grammar.p_size
    # Drawn only when colours may be left out, so the default grammar's random stream is unchanged.
    with_colour = grammar.p_colour >= 1 or rng.random() < grammar.p_colour

    def thing(o: SceneObject, **extra) -> Thing:
        return Thing(1, o.shape, o.colour if with_colour else None, o.size if with_size else None, **extra)

    order = list(objects)
    rng.shuffle(order)  # the order objects are listed in is itself a paraphrase
    total = None
    if kind == "position":
        things = tuple(thing(o, position=POSITIONS[o.cell]) for o in order)
    elif kind == "total":
        things = (Thing(n, numeral=True),)
    elif kind == "relation":
        if name_first:
            a, b = objects[0], rng.choice(objects[1:])
            if rng.random() < 0.5:
                a, b = b, a
        else:
            a, b = rng.sample(objects, 2)
        rel = rng.choice(true_relations(a, b))
        if rng.random() < 0.5:  # say it the other way round: "b right of a" instead of "a left of b"
            a, b, rel = b, a, INVERSE[rel]
        things = (thing(a, relation=(rel, thing(b))),)
    else:
        # "describe" and "count" (which adds the total in front): merge objects that read the same once
        # sizes are dropped or kept, so the counts in the caption are true.
        groups: dict[tuple, int] = {}
        for o in order:
            key = (o.shape, o.colour if with_colour else None, o.size if with_size else None)
            groups[key] = groups.get(key, 0) + 1
        things = tuple(Thing(c, s, col, sz) for (s, col, sz), c in groups.items())
        total = n if kind == "count" else None

    frame = "style" if rng.random() < grammar.p_style_frame else rng.choice(grammar.frames)
    return Caption(things, frame, style, rng.randrange(2), total), kind


def swapped(caption: Caption) -> Caption | None:
    """A relation caption with its two objects swapped ("a red circle left of a blue square" becomes "a blue
    square left of a red circle"): the same words, now false, since objects sit in distinct cells. None for
    other captions. NegCLIP's hard negatives: a text tower that reads captions as bags of words cannot tell
    the two apart."""
    if len(caption.things) != 1 or caption.things[0].relation is None:
        return None
    a = caption.things[0]
    rel, b = a.relation
    return replace(caption, things=(replace(b, relation=(rel, replace(a, relation=None))),))


def relation_test_pair(a: SceneObject, b: SceneObject, frame: str = "photo", lang: str = "en") -> tuple[str, str, str]:
    """The test of word order for objects `a` and `b`: the caption relating them by the first relation that
    holds ("left of" before "above"), its `swapped` twin, and the relation. Sizes are left out, so the two
    captions hold exactly the same words (in English; French and German decline them)."""
    rel = true_relations(a, b)[0]
    plan = Caption((Thing(1, a.shape, a.colour, relation=(rel, Thing(1, b.shape, b.colour))),), frame)
    return realise(plan, lang), realise(swapped(plan), lang), rel


# ---------------------------------------------------------------------------------------------------------
# Step 2: realisation, one small table-driven function per language
# ---------------------------------------------------------------------------------------------------------


def _pick(options: tuple[str, ...], variant: int) -> str:
    return options[variant % len(options)]


def _join(parts: list[str], and_word: str) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" {and_word} " + parts[-1]


def _plural_subject(c: Caption) -> bool:
    return len(c.things) > 1 or c.things[0].count > 1 or (c.total or 0) > 1


# --- English ---------------------------------------------------------------------------------------------

EN_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
EN_PLURAL = {"cross": "crosses", None: "shapes"}
EN_POSITION = {
    "top left": "in the top left corner", "top": "at the top", "top right": "in the top right corner",
    "left": "on the left", "centre": "in the centre", "right": "on the right",
    "bottom left": "in the bottom left corner", "bottom": "at the bottom",
    "bottom right": "in the bottom right corner",
}
EN_RELATION = {"left of": ("to the left of", "left of"), "right of": ("to the right of", "right of"),
               "above": ("above",), "below": ("below", "under")}
EN_FRAMES = {"bare": ("{}",), "photo": ("a photo of {}",), "image": ("an image of {}", "a picture of {}"),
             "there": ("there is {}",)}
EN_STYLE_FRAMES = {
    "flat": ("a flat drawing of {}", "a flat illustration of {}"),
    "sketch": ("a sketch of {}", "an outline sketch of {}"),
    "photo": ("a realistic photo of {}", "a textured photo of {}"),
    "noisy": ("a noisy image of {}", "a noisy photo of {}"),
}


def _en_thing(t: Thing, variant: int) -> str:
    words = [w for w in (t.size, t.colour) if w]
    noun = t.shape or "shape"
    if t.count == 1:
        words.append(noun)
        first = words[0]
        det = "one" if t.numeral else ("an" if first[0] in "aeiou" else "a")
    else:
        words.append(EN_PLURAL.get(t.shape, f"{noun}s"))
        det = EN_NUMBERS[t.count]
    text = " ".join([det, *words])
    if t.position:
        text += " " + EN_POSITION[t.position]
    if t.relation:
        rel, other = t.relation
        text += f" {_pick(EN_RELATION[rel], variant)} {_en_thing(other, variant)}"
    return text


def realise_en(c: Caption) -> str:
    body = _join([_en_thing(t, c.variant) for t in c.things], "and")
    if c.total:
        body = f"{_en_thing(Thing(c.total, numeral=True), c.variant)}: {body}"
    if c.frame == "style":
        frame = _pick(EN_STYLE_FRAMES[c.style], c.variant)
    elif c.frame == "there":
        # English agrees with the first noun phrase: "there is a circle and two stars".
        frame = "there are {}" if (c.total or c.things[0].count) > 1 else "there is {}"
    else:
        frame = _pick(EN_FRAMES[c.frame], c.variant)
    return frame.format(body)


# --- French ----------------------------------------------------------------------------------------------

FR_NUMBERS = ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf")
# noun: (singular, plural, gender)
FR_NOUNS = {
    "circle": ("cercle", "cercles", "m"), "square": ("carré", "carrés", "m"),
    "triangle": ("triangle", "triangles", "m"), "star": ("étoile", "étoiles", "f"),
    "heart": ("cœur", "cœurs", "m"), "cross": ("croix", "croix", "f"),
    "diamond": ("losange", "losanges", "m"), "hexagon": ("hexagone", "hexagones", "m"),
    None: ("forme", "formes", "f"),
}
# adjective: (masculine singular, feminine singular, masculine plural, feminine plural)
FR_ADJECTIVES = {
    "red": ("rouge", "rouge", "rouges", "rouges"),
    "orange": ("orange", "orange", "orange", "orange"),  # a colour named after a fruit: invariable
    "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
    "green": ("vert", "verte", "verts", "vertes"),
    "blue": ("bleu", "bleue", "bleus", "bleues"),
    "purple": ("violet", "violette", "violets", "violettes"),
    "pink": ("rose", "rose", "roses", "roses"),  # the exception among fruit/flower colours: it agrees
    "black": ("noir", "noire", "noirs", "noires"),
    "small": ("petit", "petite", "petits", "petites"),
    "large": ("grand", "grande", "grands", "grandes"),
}
FR_POSITION = {
    "top left": "en haut à gauche", "top": "en haut", "top right": "en haut à droite",
    "left": "à gauche", "centre": "au centre", "right": "à droite",
    "bottom left": "en bas à gauche", "bottom": "en bas", "bottom right": "en bas à droite",
}
FR_RELATION = {"left of": ("à gauche de",), "right of": ("à droite de",), "above": ("au-dessus de",),
               "below": ("au-dessous de", "en dessous de")}
FR_FRAMES = {"bare": ("{}",), "photo": ("une photo de {}",), "image": ("une image de {}",),
             "there": ("il y a {}",)}
FR_STYLE_FRAMES = {
    "flat": ("un dessin plat de {}", "une illustration plate de {}"),
    "sketch": ("un croquis de {}", "un dessin au trait de {}"),
    "photo": ("une photo réaliste de {}", "une photo texturée de {}"),
    "noisy": ("une image bruitée de {}", "une photo bruitée de {}"),
}


def _fr_agree(word: str, gender: str, plural: bool) -> str:
    return FR_ADJECTIVES[word][(gender == "f") + 2 * plural]


def _fr_thing(t: Thing, variant: int) -> str:
    singular, plural_noun, gender = FR_NOUNS[t.shape]
    plural = t.count > 1
    det = ("une" if gender == "f" else "un") if t.count == 1 else FR_NUMBERS[t.count]
    words = [det]
    if t.size:  # petit and grand go before the noun ...
        words.append(_fr_agree(t.size, gender, plural))
    words.append(plural_noun if plural else singular)
    if t.colour:  # ... colours after it
        words.append(_fr_agree(t.colour, gender, plural))
    text = " ".join(words)
    if t.position:
        text += " " + FR_POSITION[t.position]
    if t.relation:
        rel, other = t.relation
        text += f" {_pick(FR_RELATION[rel], variant)} {_fr_thing(other, variant)}"
    return text


def realise_fr(c: Caption) -> str:
    body = _join([_fr_thing(t, c.variant) for t in c.things], "et")
    if c.total:
        body = f"{_fr_thing(Thing(c.total, numeral=True), c.variant)} : {body}"
    frames = FR_STYLE_FRAMES[c.style] if c.frame == "style" else FR_FRAMES[c.frame]
    text = _pick(frames, c.variant).format(body)
    # Elision: "de un" -> "d'un", "de une" -> "d'une" (numbers from deux up, and "huit", do not elide).
    return re.sub(r"\bde (une?)\b", r"d'\1", text)


# --- German ----------------------------------------------------------------------------------------------

DE_NUMBERS = ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")
# noun: (nominative singular, dative singular, nominative plural, dative plural, gender)
DE_NOUNS = {
    "circle": ("Kreis", "Kreis", "Kreise", "Kreisen", "m"),
    "square": ("Quadrat", "Quadrat", "Quadrate", "Quadraten", "n"),
    "triangle": ("Dreieck", "Dreieck", "Dreiecke", "Dreiecken", "n"),
    "star": ("Stern", "Stern", "Sterne", "Sternen", "m"),
    "heart": ("Herz", "Herzen", "Herzen", "Herzen", "n"),
    "cross": ("Kreuz", "Kreuz", "Kreuze", "Kreuzen", "n"),
    "diamond": ("Raute", "Raute", "Rauten", "Rauten", "f"),
    "hexagon": ("Sechseck", "Sechseck", "Sechsecke", "Sechsecken", "n"),
    None: ("Form", "Form", "Formen", "Formen", "f"),
}
# Adjective stems; the ending is added by _de_adjective. "orange" is undeclinable in standard German, so we
# use the declinable "orangefarben"; "rosa" is undeclinable and stays as it is.
DE_ADJECTIVES = {"red": "rot", "orange": "orangefarben", "yellow": "gelb", "green": "grün", "blue": "blau",
                 "purple": "violett", "pink": "rosa", "black": "schwarz", "small": "klein", "large": "groß"}
DE_UNDECLINABLE = {"rosa"}
DE_ARTICLE = {("nom", "m"): "ein", ("nom", "f"): "eine", ("nom", "n"): "ein",
              ("dat", "m"): "einem", ("dat", "f"): "einer", ("dat", "n"): "einem"}
DE_POSITION = {
    "top left": "oben links", "top": "oben", "top right": "oben rechts",
    "left": "links", "centre": "in der Mitte", "right": "rechts",
    "bottom left": "unten links", "bottom": "unten", "bottom right": "unten rechts",
}
DE_RELATION = {"left of": ("links von",), "right of": ("rechts von",), "above": ("über",), "below": ("unter",)}
# frame: (text, case of the noun phrases inside it)
DE_FRAMES = {"bare": (("{}", "nom"),), "photo": (("ein Foto von {}", "dat"),),
             "image": (("ein Bild von {}", "dat"),), "there": (("auf dem Bild ist {}", "nom"),)}
DE_STYLE_FRAMES = {
    "flat": (("eine flache Zeichnung von {}", "dat"), ("eine flache Illustration von {}", "dat")),
    "sketch": (("eine Skizze von {}", "dat"), ("eine Umrisszeichnung von {}", "dat")),
    "photo": (("ein realistisches Foto von {}", "dat"), ("ein texturiertes Foto von {}", "dat")),
    "noisy": (("ein verrauschtes Bild von {}", "dat"), ("ein verrauschtes Foto von {}", "dat")),
}


def _de_adjective(word: str, case: str, gender: str, plural: bool) -> str:
    stem = DE_ADJECTIVES[word]
    if stem in DE_UNDECLINABLE:
        return stem
    if plural:  # strong declension after a bare number word
        return stem + ("e" if case == "nom" else "en")
    if case == "dat":  # mixed declension after einem/einer
        return stem + "en"
    return stem + {"m": "er", "f": "e", "n": "es"}[gender]


def _de_thing(t: Thing, case: str, variant: int) -> str:
    nom_sg, dat_sg, nom_pl, dat_pl, gender = DE_NOUNS[t.shape]
    plural = t.count > 1
    words = [DE_NUMBERS[t.count] if plural else DE_ARTICLE[case, gender]]
    words += [_de_adjective(w, case, gender, plural) for w in (t.size, t.colour) if w]
    words.append({("nom", False): nom_sg, ("dat", False): dat_sg, ("nom", True): nom_pl,
                  ("dat", True): dat_pl}[case, plural])
    text = " ".join(words)
    if t.position:
        text += " " + DE_POSITION[t.position]
    if t.relation:  # all four relation words take the dative here
        rel, other = t.relation
        text += f" {_pick(DE_RELATION[rel], variant)} {_de_thing(other, 'dat', variant)}"
    return text


def realise_de(c: Caption) -> str:
    frames = DE_STYLE_FRAMES[c.style] if c.frame == "style" else DE_FRAMES[c.frame]
    frame, case = _pick(frames, c.variant)
    if c.frame == "there" and _plural_subject(c):
        frame = "auf dem Bild sind {}"  # a plural or coordinated subject takes the plural verb
    if c.total:
        # "ein Foto von drei Formen: ein roter Kreis, …": the list after the colon stands on its own,
        # in the nominative.
        head = _de_thing(Thing(c.total, numeral=True), case, c.variant)
        body = f"{head}: " + _join([_de_thing(t, "nom", c.variant) for t in c.things], "und")
    else:
        body = _join([_de_thing(t, case, c.variant) for t in c.things], "und")
    return frame.format(body)


REALISERS = {"en": realise_en, "fr": realise_fr, "de": realise_de}


def realise(caption: Caption, lang: str = "en") -> str:
    """Put a planned caption into words in `lang` ("en", "fr" or "de")."""
    if lang not in REALISERS:
        raise ValueError(f"unknown caption language {lang!r}; choose from {LANGUAGES}")
    return REALISERS[lang](caption)


# ---------------------------------------------------------------------------------------------------------
# Zero-shot class names and prompts
# ---------------------------------------------------------------------------------------------------------

CLASS_KINDS = ("shape", "colour", "colour_shape", "size", "count", "style", "position")


def class_things(kind: str, max_objects: int = 4) -> list[tuple[str, Thing, str]]:
    """The classes of one kind, in label order, as (English name, noun phrase, style) triples."""
    if kind == "shape":
        return [(s, Thing(shape=s), "flat") for s in SHAPES]
    if kind == "colour":
        return [(c, Thing(colour=c), "flat") for c in COLOURS]
    if kind == "colour_shape":
        return [(f"{c} {s}", Thing(shape=s, colour=c), "flat") for c in COLOURS for s in SHAPES]
    if kind == "size":
        return [(z, Thing(size=z), "flat") for z in SIZES]
    if kind == "count":
        return [(EN_NUMBERS[n], Thing(n, numeral=True), "flat") for n in range(1, max_objects + 1)]
    if kind == "style":
        return [(s, Thing(), s) for s in STYLES]
    if kind == "position":
        return [(p, Thing(position=p), "flat") for p in POSITIONS]
    raise ValueError(f"unknown class kind {kind!r}; choose from {CLASS_KINDS}")


def class_names(kind: str, max_objects: int = 4) -> list[str]:
    """English class names in label order, e.g. `class_names("colour_shape")[0] == "red circle"`."""
    return [name for name, _, _ in class_things(kind, max_objects)]


def class_prompts(kind: str, lang: str = "en", frame: str = "photo", variant: int = 0,
                  max_objects: int = 4) -> list[str]:
    """One prompt per class of `kind` in `lang`, e.g. "a photo of a red circle" /
    "une photo d'un cercle rouge" / "ein Foto von einem roten Kreis".

    `frame` is one of FRAMES; for `kind="style"` the frame is always the style's own ("a sketch of a
    shape"). `variant` picks among paraphrases where a language has them (useful for ensembling).
    """
    if frame not in FRAMES:
        raise ValueError(f"unknown frame {frame!r}; choose from {FRAMES}")
    return [realise(Caption((thing,), "style" if kind == "style" else frame, style, variant), lang)
            for _, thing, style in class_things(kind, max_objects)]
