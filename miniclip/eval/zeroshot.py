"""Zero-shot classification (§3.1): a classifier whose weights are the text embeddings of the class names.

For each class, every template ("a photo of a {}.") is filled in with the class name and encoded; each
embedding is L2-normalised, the class's embeddings are averaged over templates, and the mean is normalised
again (§3.1.4, "prompt ensembling"). An image is then assigned the class whose weight vector has the
largest cosine similarity with its embedding.

The same recipe works in any language the text encoder has seen: French or German class names
(`miniclip.eval.classnames`) in French or German templates give one classifier per language, and
classifiers of several languages are fused the way templates are, by averaging their normalised class
vectors and renormalising (`fuse_classifiers`, `multilingual_zeroshot`).

Template sets (`TEMPLATE_SETS`) come in two kinds: English sets that bring the article themselves ("a photo of
a {}." + "cat": simple, ensemble, cifar, imagenet), and sets whose slot takes a noun phrase with its article
("a photo of {}." + "the sea": the English Shapes and `scenes` sets, and every French and German set);
`takes_article` tells them apart.
"""

from __future__ import annotations

import itertools
import re

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from miniclip.data import shapes_text
from miniclip.data.transforms import PairCollator
from miniclip.tokenizer import tokenize

LANGUAGES = ("en", "fr", "de")

# ---------------------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------------------

SIMPLE_TEMPLATES = ("a photo of a {}.",)

# The 18 templates OpenAI's CLIP repository lists for CIFAR-10 and CIFAR-100.
CIFAR_TEMPLATES = (
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
    "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.", "a photo of the {}.",
    "a blurry photo of the {}.", "a black and white photo of the {}.", "a low contrast photo of the {}.",
    "a high contrast photo of the {}.", "a bad photo of the {}.", "a good photo of the {}.",
    "a photo of the small {}.", "a photo of the big {}.",
)

# The 80 templates of OpenAI's ImageNet ensemble, from the CLIP repository's notebook
# "Prompt_Engineering_for_ImageNet.ipynb" (Radford et al., 2021; MIT licence, see LICENSE-openai-clip.txt).
# These strings are the paper's data and are copied as published, grammar included ("a origami {}."); the
# same list ships with open_clip (zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES), and a test checks the two agree.
IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

# The CIFAR templates that translate word for word into French and German without knowing the noun's
# gender or needing a definite article ("a photo of a small {}" would need "petit"/"petite" placed before
# the noun): the English originals, then their translations. French templates end the noun slot after "de",
# German ones after "von" (dative); the class names in miniclip.eval.classnames are written for exactly that.
ENSEMBLE_TEMPLATES = CIFAR_TEMPLATES[:7]
FRENCH_ENSEMBLE_TEMPLATES = (
    "une photo de {}.", "une photo floue de {}.", "une photo en noir et blanc de {}.",
    "une photo peu contrastée de {}.", "une photo très contrastée de {}.", "une mauvaise photo de {}.",
    "une bonne photo de {}.",
)
GERMAN_ENSEMBLE_TEMPLATES = (
    "ein Foto von {}.", "ein unscharfes Foto von {}.", "ein Schwarzweißfoto von {}.",
    "ein kontrastarmes Foto von {}.", "ein kontrastreiches Foto von {}.", "ein schlechtes Foto von {}.",
    "ein gutes Foto von {}.",
)


# Outdoor scene photos (the Intel scenes), written for this project. Their slot takes a whole noun phrase, article
# included ("a photo of {}." + "the sea"), because no one article fits every scene ("a forest", "the sea",
# "buildings"); the class names in miniclip.eval.classnames carry theirs. The modifiers describe what these
# photos vary in (framing, light, resolution), not objects; French and German say the same after "de" / "von".
SCENE_TEMPLATES = (
    "a photo of {}.", "a picture of {}.", "a landscape photo of {}.", "an outdoor photo of {}.",
    "a blurry photo of {}.", "a low resolution photo of {}.", "a bright photo of {}.", "a dark photo of {}.",
)
FRENCH_SCENE_TEMPLATES = (
    "une photo de {}.", "une image de {}.", "une photo de paysage de {}.", "une photo en extérieur de {}.",
    "une photo floue de {}.", "une photo en basse résolution de {}.", "une photo lumineuse de {}.",
    "une photo sombre de {}.",
)
GERMAN_SCENE_TEMPLATES = (
    "ein Foto von {}.", "ein Bild von {}.", "ein Landschaftsfoto von {}.", "eine Außenaufnahme von {}.",
    "ein unscharfes Foto von {}.", "ein Foto in niedriger Auflösung von {}.", "ein helles Foto von {}.",
    "ein dunkles Foto von {}.",
)


def _shapes_frames(lang: str, frames: tuple) -> tuple[str, ...]:
    """The Shapes caption frames of one language as templates. German frames come with the case they put
    their noun phrase in; the ones used here are all dative (after "von"), as shapes_class_names' are."""
    if lang != "de":
        return tuple(frames)
    assert all(case == "dat" for _, case in frames), frames
    return tuple(text for text, _ in frames)


# Shapes templates are the Shapes world's own caption frames (miniclip/data/shapes_text.py), so a prompt
# reads exactly like a training caption: "shapes" is the neutral "a photo of {}", and "shapes-<style>" are
# the frames captions use to name a style ("a sketch of {}", "an outline sketch of {}"), one set per style
# (§3.1.4: telling the model what kind of image to expect helps). Shapes class names carry their article
# ("an orange star"), as in the captions.
_SHAPES_FRAMES = {"en": (shapes_text.EN_FRAMES, shapes_text.EN_STYLE_FRAMES),
                  "fr": (shapes_text.FR_FRAMES, shapes_text.FR_STYLE_FRAMES),
                  "de": (shapes_text.DE_FRAMES, shapes_text.DE_STYLE_FRAMES)}
SHAPES_TEMPLATES = {
    lang: {"shapes": _shapes_frames(lang, neutral["photo"]),
           **{f"shapes-{style}": _shapes_frames(lang, styled[style]) for style in shapes_text.STYLES}}
    for lang, (neutral, styled) in _SHAPES_FRAMES.items()
}

# Every template set by name. English sets are plain names; French and German ones end in "-fr" / "-de"
# (see templates_for).
TEMPLATE_SETS = {
    "simple": SIMPLE_TEMPLATES, "cifar": CIFAR_TEMPLATES, "imagenet": IMAGENET_TEMPLATES,
    "ensemble": ENSEMBLE_TEMPLATES,
    "simple-fr": FRENCH_ENSEMBLE_TEMPLATES[:1], "ensemble-fr": FRENCH_ENSEMBLE_TEMPLATES,
    "simple-de": GERMAN_ENSEMBLE_TEMPLATES[:1], "ensemble-de": GERMAN_ENSEMBLE_TEMPLATES,
    "scenes": SCENE_TEMPLATES, "scenes-fr": FRENCH_SCENE_TEMPLATES, "scenes-de": GERMAN_SCENE_TEMPLATES,
    **{name if lang == "en" else f"{name}-{lang}": t for lang, sets in SHAPES_TEMPLATES.items()
       for name, t in sets.items()},
}


def _language_of(set_name: str) -> str:
    return set_name[-2:] if set_name[-3:] in ("-fr", "-de") else "en"


def templates_for(name: str, lang: str = "en") -> tuple[str, ...]:
    """The template set `name` ("simple", "ensemble", "shapes-sketch", …) in `lang`."""
    key = name if lang == "en" else f"{name}-{lang}"
    if key not in TEMPLATE_SETS:
        offered = sorted(k.removesuffix(f"-{lang}") for k in TEMPLATE_SETS if _language_of(k) == lang)
        raise ValueError(f"no template set {name!r} in {lang!r}; available in {lang!r}: {offered}")
    return TEMPLATE_SETS[key]


def takes_article(name: str, lang: str = "en") -> bool:
    """Whether the template set `name` in `lang` wants class names that carry their article ("a photo of {}." +
    "the sea") rather than bare nouns ("a photo of a {}." + "cat"): every French and German set, and the English
    Shapes and scene sets."""
    key = name if lang == "en" else f"{name}-{lang}"
    return _language_of(key) != "en" or key.startswith(("shapes", "scenes"))


def fill_template(template: str, name: str, lang: str = "en") -> str:
    """One prompt, with the contractions the language requires where a template's "de" / "von" meets the name's
    article. French elides "de un(e)" to "d'un(e)", as the Shapes captions do ("une photo d'un chat"), and drops
    "des" after "de" ("une photo de bâtiments"); German contracts "von dem" to "vom" ("ein Foto vom Meer")."""
    text = template.format(name)
    if lang == "fr":
        text = re.sub(r"\bde (une?)\b", r"d'\1", text)
        text = re.sub(r"\bde des\b", "de", text)
    elif lang == "de":
        text = re.sub(r"\bvon dem\b", "vom", text)
    return text


def shapes_class_names(kind: str = "colour_shape", lang: str = "en", max_objects: int = 4) -> list[str]:
    """Shapes classes as noun phrases with their article, in the words of the Shapes captions, in label order:
    "a red circle" / "un cercle rouge" / "einem roten Kreis" (German in the dative, as the Shapes templates
    need). Filling a Shapes template with them gives exactly the caption grammar's own prompt."""
    if kind == "style":
        raise ValueError("style classes are told apart by the template, not the name: use the shapes-<style> "
                         "template sets, or shapes_text.class_prompts('style')")
    phrases = []
    for _, thing, style in shapes_text.class_things(kind, max_objects):
        if lang == "de":  # realise inside the dative photo frame, then take the frame away again
            frame = _shapes_frames("de", shapes_text.DE_FRAMES["photo"])[0]
            head = frame.split("{}")[0]
            text = shapes_text.realise(shapes_text.Caption((thing,), "photo", style), "de")
            assert text.startswith(head), text
            phrases.append(text[len(head):])
        else:
            phrases.append(shapes_text.realise(shapes_text.Caption((thing,), "bare", style), lang))
    return phrases


# ---------------------------------------------------------------------------------------------------------
# Encoders and the classifier
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def encode_texts(model, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings [len(texts), D], in batches, computed on the model's device and returned
    on the CPU (as every feature function here), where the labels and the analysis that follows are."""
    device = next(model.parameters()).device
    context = model.config.context_length
    out = [F.normalize(model.encode_text(tokenize(texts[i:i + batch_size], context).to(device)).float(), dim=-1)
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out).cpu()


@torch.no_grad()
def classifier_weights(model, class_names: list, templates=SIMPLE_TEMPLATES, lang: str = "en") -> torch.Tensor:
    """[C, D]: per class, the renormalised mean of its normalised prompt embeddings: every template filled with
    the class's name, or with each of its names when a class is given as a tuple of synonyms."""
    names = [(n,) if isinstance(n, str) else tuple(n) for n in class_names]
    prompts = [fill_template(t, name, lang) for synonyms in names for name in synonyms for t in templates]
    per_class = encode_texts(model, prompts).split([len(synonyms) * len(templates) for synonyms in names])
    return F.normalize(torch.stack([emb.mean(dim=0) for emb in per_class]), dim=-1)


def fuse_classifiers(classifiers: list[torch.Tensor]) -> torch.Tensor:
    """[C, D]: classifiers (e.g. one per language) fused like templates: normalise each class vector, average
    over classifiers, renormalise. Each language then counts equally, whatever its vectors' lengths."""
    return F.normalize(torch.stack([F.normalize(w, dim=-1) for w in classifiers]).mean(dim=0), dim=-1)


@torch.no_grad()
def encode_images(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings [N, D], in batches, computed on the model's device, returned on the CPU."""
    device = next(model.parameters()).device
    out = [F.normalize(model.encode_image(images[i:i + batch_size].to(device)).float(), dim=-1)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).cpu()


@torch.no_grad()
def encode_dataset(model, dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised image features of every (image, label) item of `dataset`, and the labels. Items that
    fail to decode (None) are dropped by the collate function and counted there."""
    collate = PairCollator()
    feats, labels = [], []
    # disable=None: a bar in a terminal, none in a redirected log (where every update would be a line)
    for images, y in tqdm(DataLoader(dataset, batch_size=batch_size, collate_fn=collate), desc="encoding images",
                          leave=False, disable=None):
        if len(images):
            feats.append(encode_images(model, images, batch_size))
            labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(labels)


def image_features(model, data, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised image features and labels from any of: a labelled dataset of (image, label) items, a pair
    (images [N, 3, H, W], labels), or a pair (features [N, D], labels) computed before (encode once, then
    evaluate many classifiers on them)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        x, labels = data
        feats = F.normalize(x.float(), dim=-1) if x.dim() == 2 else encode_images(model, x, batch_size)
        return feats, torch.as_tensor(labels)
    return encode_dataset(model, data, batch_size)


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the k highest scores, for each k (capped at the class count)."""
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels.to(ranked.device)[:, None]
    return {f"top{k}": hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C, C] counts: row = true class, column = predicted class (one bincount, no Python loop)."""
    flat = labels.long().cpu() * num_classes + predictions.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def zeroshot_hits(features: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """[N] bool: whether each image's top-1 class is its label. Two classifiers' hits on the same images pair
    up, so their difference can be given a paired interval (`miniclip.eval.attributes.paired_difference`)."""
    logits = features @ classifier.to(features.device).t()
    return (logits.argmax(dim=1) == labels.to(logits.device)).cpu()


def zeroshot_metrics(features: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor,
                     class_names: list[str]) -> dict:
    """Top-1/top-5, per-class top-1 (classes with at least one image, keyed by name), the confusion matrix (a
    list of rows), n, the number of classes and chance (1 / classes) for normalised features and classifier."""
    logits = features @ classifier.to(features.device).t()
    labels = labels.to(logits.device)
    result = topk_accuracy(logits, labels)
    confusion = confusion_matrix(labels, logits.argmax(dim=1), len(class_names))
    support = confusion.sum(dim=1)
    per_class = confusion.diagonal() / support.clamp(min=1)
    result["per_class"] = {name: per_class[c].item() for c, name in enumerate(class_names) if support[c] > 0}
    result.update(n=len(labels), classes=len(class_names), chance=1 / len(class_names),
                  confusion=confusion.tolist())
    return result


def evaluate_zeroshot(model, data, class_names: list[str], templates=SIMPLE_TEMPLATES, lang: str = "en",
                      keys: list[str] | None = None) -> dict:
    """Zero-shot classification of `data` (see `image_features`) among `class_names` in `lang`:
    the metrics of `zeroshot_metrics` plus the number of templates. `keys` names the classes in the
    per-class results (default: `class_names`), e.g. English names for a French classifier."""
    feats, labels = image_features(model, data)
    result = zeroshot_metrics(feats, labels, classifier_weights(model, class_names, templates, lang),
                              keys or class_names)
    result.update(templates=len(templates), lang=lang)
    return result


def multilingual_zeroshot(model, data, names_by_lang: dict[str, list[str]], templates_by_lang: dict[str, tuple],
                          fusions: list[tuple[str, ...]] | None = None, keys: list[str] | None = None) -> dict:
    """Zero-shot accuracy with one classifier per language and with fused classifiers.

    `names_by_lang` and `templates_by_lang` map a language ("en", "fr", "de") to its class names (in the
    same class order) and templates. `fusions` lists the language combinations to fuse (default: every
    combination of two or more); a fused classifier averages the languages' normalised class vectors and
    renormalises (`fuse_classifiers`). Images are encoded once. Returns
    `{"en": metrics, "fr": …, "de": …, "en+fr": …, …, "en+fr+de": …}` (see `zeroshot_metrics`), with
    per-class results keyed by `keys` (default: the first language's names).
    """
    langs = list(names_by_lang)
    if set(templates_by_lang) != set(langs):
        raise ValueError(f"names for {sorted(langs)} but templates for {sorted(templates_by_lang)}")
    if len({len(names) for names in names_by_lang.values()}) != 1:
        raise ValueError("every language needs the same number of class names, in the same class order")
    keys = keys or names_by_lang[langs[0]]
    feats, labels = image_features(model, data)
    weights = {lang: classifier_weights(model, names_by_lang[lang], templates_by_lang[lang], lang) for lang in langs}
    if fusions is None:
        fusions = [c for r in range(2, len(langs) + 1) for c in itertools.combinations(langs, r)]
    results = {}
    for combo in [(lang,) for lang in langs] + [tuple(f) for f in fusions]:
        classifier = weights[combo[0]] if len(combo) == 1 else fuse_classifiers([weights[lang] for lang in combo])
        results["+".join(combo)] = {**zeroshot_metrics(feats, labels, classifier, keys), "languages": list(combo),
                                    "templates": sum(len(templates_by_lang[lang]) for lang in combo)}
    return results
