"""Class names of CIFAR-10, CIFAR-100 and the Intel scenes in English, French and German, for zero-shot prompts.

**English** names are the datasets' own labels made readable (`aquarium_fish` -> `aquarium fish`), in the
datasets' label order: for CIFAR-10 the order of `batches.meta.txt`, for CIFAR-100 the alphabetical order
of `fine_label_names.txt`. These are also the folder names `python -m miniclip data download cifar100`
writes, and `ImageFolderDataset` sorts folders alphabetically, so label `i` of
a test set and `CIFAR100["en"][i]` name the same class. They go into the paper's English templates as they
are ("a photo of a {}."), as OpenAI's evaluation does.

**French and German** names are written with their indefinite article, in the form every French or German
template of `miniclip.eval.zeroshot` needs. Why store the article rather than per-gender templates: the
article is a property of the noun (its gender), and German also declines the noun itself in places that a
template cannot know about (the weak masculine nouns: *der Bär*, but *von einem Bären*; likewise *Löwe*,
*Elefant*, *Schimpanse*, *Leopard*, *Junge*, *Waschbär*). Writing each phrase out once, by hand, is shorter
and easier to check than a morphology table, and any template of the agreed shape comes out grammatical:

* French names carry *un*/*une* and every French template ends its noun slot after *de* ("une photo de
  {}."); `miniclip.eval.zeroshot.fill_template` then elides *de un* -> *d'un* ("une photo d'un chat").
* German names carry the **dative** article (*einem* for masculine and neuter, *einer* for feminine) and the
  dative form of the noun, because every German template puts the noun after *von*, which governs the
  dative ("ein Foto von einem Hund", "ein Foto von einer Katze", "ein Foto von einem Bären").

The **Intel scenes** differ in one way: no one English article fits all six classes ("a forest", "the sea",
plain "buildings"), so their English names carry their article too, and go into templates whose slot is a whole
noun phrase: the `scenes` set ("a photo of {}." -> "a photo of the sea."). Their French and German names follow
the rules above, with two more contractions that `fill_template` applies: French *de des* -> *de* ("une photo de
bâtiments"), German *von dem* -> *vom* ("ein Foto vom Meer"). `prompts_for_classes` pairs a test set's names
with templates that fit them, and refuses a pairing that would double or drop the article.

Choices worth knowing when reading results: CIFAR-100's *cattle* is rendered by the count noun for one
animal (*une vache*, *einem Rind*); *willow tree* in German is *Weidenbaum*, because *Weide* alone also means
a pasture; *sweet pepper* is *poivron* / *Paprika*; *tank* is the armoured vehicle (*char d'assaut*,
*Panzer*), as the CIFAR images show. The translations were written for this project and checked by
reading, not taken from a published list.
"""

from __future__ import annotations

from miniclip.data.folders import readable_class_name
from miniclip.eval.zeroshot import LANGUAGES, takes_article, templates_for

# ---------------------------------------------------------------------------------------------------------
# CIFAR-10 (label order of batches.meta.txt)
# ---------------------------------------------------------------------------------------------------------

CIFAR10 = {
    "en": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "fr": ("un avion", "une voiture", "un oiseau", "un chat", "un cerf", "un chien", "une grenouille",
           "un cheval", "un bateau", "un camion"),
    "de": ("einem Flugzeug", "einem Auto", "einem Vogel", "einer Katze", "einem Hirsch", "einem Hund",
           "einem Frosch", "einem Pferd", "einem Schiff", "einem Lastwagen"),
}

# ---------------------------------------------------------------------------------------------------------
# CIFAR-100 (alphabetical fine_label_names order). One row per class keeps the three languages aligned.
# ---------------------------------------------------------------------------------------------------------

_CIFAR100_ROWS = (
    ("apple", "une pomme", "einem Apfel"),
    ("aquarium fish", "un poisson d'aquarium", "einem Aquarienfisch"),
    ("baby", "un bébé", "einem Baby"),
    ("bear", "un ours", "einem Bären"),
    ("beaver", "un castor", "einem Biber"),
    ("bed", "un lit", "einem Bett"),
    ("bee", "une abeille", "einer Biene"),
    ("beetle", "un scarabée", "einem Käfer"),
    ("bicycle", "un vélo", "einem Fahrrad"),
    ("bottle", "une bouteille", "einer Flasche"),
    ("bowl", "un bol", "einer Schüssel"),
    ("boy", "un garçon", "einem Jungen"),
    ("bridge", "un pont", "einer Brücke"),
    ("bus", "un bus", "einem Bus"),
    ("butterfly", "un papillon", "einem Schmetterling"),
    ("camel", "un chameau", "einem Kamel"),
    ("can", "une canette", "einer Dose"),
    ("castle", "un château", "einem Schloss"),
    ("caterpillar", "une chenille", "einer Raupe"),
    ("cattle", "une vache", "einem Rind"),
    ("chair", "une chaise", "einem Stuhl"),
    ("chimpanzee", "un chimpanzé", "einem Schimpansen"),
    ("clock", "une horloge", "einer Uhr"),
    ("cloud", "un nuage", "einer Wolke"),
    ("cockroach", "un cafard", "einer Kakerlake"),
    ("couch", "un canapé", "einem Sofa"),
    ("crab", "un crabe", "einer Krabbe"),
    ("crocodile", "un crocodile", "einem Krokodil"),
    ("cup", "une tasse", "einer Tasse"),
    ("dinosaur", "un dinosaure", "einem Dinosaurier"),
    ("dolphin", "un dauphin", "einem Delfin"),
    ("elephant", "un éléphant", "einem Elefanten"),
    ("flatfish", "un poisson plat", "einem Plattfisch"),
    ("forest", "une forêt", "einem Wald"),
    ("fox", "un renard", "einem Fuchs"),
    ("girl", "une fille", "einem Mädchen"),
    ("hamster", "un hamster", "einem Hamster"),
    ("house", "une maison", "einem Haus"),
    ("kangaroo", "un kangourou", "einem Känguru"),
    ("keyboard", "un clavier", "einer Tastatur"),
    ("lamp", "une lampe", "einer Lampe"),
    ("lawn mower", "une tondeuse à gazon", "einem Rasenmäher"),
    ("leopard", "un léopard", "einem Leoparden"),
    ("lion", "un lion", "einem Löwen"),
    ("lizard", "un lézard", "einer Eidechse"),
    ("lobster", "un homard", "einem Hummer"),
    ("man", "un homme", "einem Mann"),
    ("maple tree", "un érable", "einem Ahornbaum"),
    ("motorcycle", "une moto", "einem Motorrad"),
    ("mountain", "une montagne", "einem Berg"),
    ("mouse", "une souris", "einer Maus"),
    ("mushroom", "un champignon", "einem Pilz"),
    ("oak tree", "un chêne", "einer Eiche"),
    ("orange", "une orange", "einer Orange"),
    ("orchid", "une orchidée", "einer Orchidee"),
    ("otter", "une loutre", "einem Otter"),
    ("palm tree", "un palmier", "einer Palme"),
    ("pear", "une poire", "einer Birne"),
    ("pickup truck", "un pick-up", "einem Pick-up"),
    ("pine tree", "un pin", "einer Kiefer"),
    ("plain", "une plaine", "einer Ebene"),
    ("plate", "une assiette", "einem Teller"),
    ("poppy", "un coquelicot", "einer Mohnblume"),
    ("porcupine", "un porc-épic", "einem Stachelschwein"),
    ("possum", "un opossum", "einem Opossum"),
    ("rabbit", "un lapin", "einem Kaninchen"),
    ("raccoon", "un raton laveur", "einem Waschbären"),
    ("ray", "une raie", "einem Rochen"),
    ("road", "une route", "einer Straße"),
    ("rocket", "une fusée", "einer Rakete"),
    ("rose", "une rose", "einer Rose"),
    ("sea", "une mer", "einem Meer"),
    ("seal", "un phoque", "einer Robbe"),
    ("shark", "un requin", "einem Hai"),
    ("shrew", "une musaraigne", "einer Spitzmaus"),
    ("skunk", "une mouffette", "einem Stinktier"),
    ("skyscraper", "un gratte-ciel", "einem Wolkenkratzer"),
    ("snail", "un escargot", "einer Schnecke"),
    ("snake", "un serpent", "einer Schlange"),
    ("spider", "une araignée", "einer Spinne"),
    ("squirrel", "un écureuil", "einem Eichhörnchen"),
    ("streetcar", "un tramway", "einer Straßenbahn"),
    ("sunflower", "un tournesol", "einer Sonnenblume"),
    ("sweet pepper", "un poivron", "einer Paprika"),
    ("table", "une table", "einem Tisch"),
    ("tank", "un char d'assaut", "einem Panzer"),
    ("telephone", "un téléphone", "einem Telefon"),
    ("television", "une télévision", "einem Fernseher"),
    ("tiger", "un tigre", "einem Tiger"),
    ("tractor", "un tracteur", "einem Traktor"),
    ("train", "un train", "einem Zug"),
    ("trout", "une truite", "einer Forelle"),
    ("tulip", "une tulipe", "einer Tulpe"),
    ("turtle", "une tortue", "einer Schildkröte"),
    ("wardrobe", "une armoire", "einem Kleiderschrank"),
    ("whale", "une baleine", "einem Wal"),
    ("willow tree", "un saule", "einem Weidenbaum"),
    ("wolf", "un loup", "einem Wolf"),
    ("woman", "une femme", "einer Frau"),
    ("worm", "un ver", "einem Wurm"),
)

CIFAR100 = {lang: tuple(row[i] for row in _CIFAR100_ROWS) for i, lang in enumerate(("en", "fr", "de"))}

# TensorFlow Datasets' copy of CIFAR-100 names one class "computer_keyboard"; the binary release says "keyboard".
_CIFAR100_ALIASES = {"computer keyboard": "keyboard"}

# ---------------------------------------------------------------------------------------------------------
# The Intel scenes (label order: the sorted folder names). Every language's name carries its article.
# ---------------------------------------------------------------------------------------------------------

_INTEL_SCENES_ROWS = (  # folder, English, French, German (dative, after "von")
    ("buildings", "buildings", "des bâtiments", "Gebäuden"),
    ("forest", "a forest", "une forêt", "einem Wald"),
    ("glacier", "a glacier", "un glacier", "einem Gletscher"),
    ("mountain", "a mountain", "une montagne", "einem Berg"),
    ("sea", "the sea", "la mer", "dem Meer"),
    ("street", "a street", "une rue", "einer Straße"),
)
INTEL_SCENES_CLASSES = tuple(row[0] for row in _INTEL_SCENES_ROWS)
INTEL_SCENES = {lang: tuple(row[i + 1] for row in _INTEL_SCENES_ROWS) for i, lang in enumerate(("en", "fr", "de"))}

# The same six scenes in the words Flickr8k's captions use for them (English only): the class word, then up to
# two other words for the scene that the training captions use most (`caption_word_counts`: sea 23 captions,
# ocean 315, beach 739; glacier 5, snow 1,197, ice 154; building 415, city 229; forest 132, woods 155, tree 526;
# mountain 523, hill 359; street 720, road 308, sidewalk 284). Chosen once from those counts, not from accuracy.
INTEL_SCENES_CAPTION_WORDS = (
    ("buildings", "a building", "a city"),
    ("a forest", "the woods", "trees"),
    ("a glacier", "snow", "ice"),
    ("a mountain", "a hill"),
    ("the sea", "the ocean", "a beach"),
    ("a street", "a road", "a sidewalk"),
)

# CIFAR-10 in the captions' words, by the same rule where a class has such words: the class word, then up to two
# words the training captions use for the same thing (a synonym or a common kind of it), most used first, if at
# least 10 captions use it (`caption_word_counts`: airplane 15, jet 18, plane 17; automobile 3, car 365, jeep 35;
# bird 181, duck 46, pigeon 27; cat 51, kitty 5, kitten 4; deer 11; dog 7,140, puppy 70; frog 5; horse 261,
# pony 7; ship 14, boat 230, sailboat 7; truck 66). Chosen once from those counts, not from accuracy.
CIFAR10_CAPTION_WORDS = (
    ("airplane", "jet", "plane"),
    ("automobile", "car", "jeep"),
    ("bird", "duck", "pigeon"),
    ("cat",),
    ("deer",),
    ("dog", "puppy"),
    ("frog",),
    ("horse",),
    ("ship", "boat"),
    ("truck",),
)

CLASS_NAMES = {"cifar10": CIFAR10, "cifar100": CIFAR100, "intel-scenes": INTEL_SCENES}
CAPTION_WORDS = {"cifar10": CIFAR10_CAPTION_WORDS, "intel-scenes": INTEL_SCENES_CAPTION_WORDS}
# The readable folder names of each set, where they differ from its English prompt names.
_FOLDER_NAMES = {"intel-scenes": INTEL_SCENES_CLASSES}
# Sets whose English names carry their article, and the template set they are read with by default.
_ENGLISH_WITH_ARTICLE = {"intel-scenes": "scenes"}


def class_names(dataset: str, lang: str = "en") -> list[str]:
    """Class names of `dataset` ("cifar10", "cifar100" or "intel-scenes") in `lang`, in label order."""
    if dataset not in CLASS_NAMES:
        raise ValueError(f"no translated class names for {dataset!r}; known: {sorted(CLASS_NAMES)}")
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; choose from {LANGUAGES}")
    return list(CLASS_NAMES[dataset][lang])


def _readable(folders: list[str]) -> list[str]:
    return [_CIFAR100_ALIASES.get(name, name) for name in map(readable_class_name, folders)]


def known_test_set(folders: list[str]) -> str | None:
    """The set of `CLASS_NAMES` whose classes are exactly these folders (in any order), or None."""
    readable = sorted(_readable(folders))
    for dataset, names in CLASS_NAMES.items():
        if readable == sorted(_FOLDER_NAMES.get(dataset, names["en"])):
            return dataset
    return None


def names_for_folders(folders: list[str], lang: str = "en") -> list[str] | None:
    """Names in `lang` for a test set's class folders, in the folders' order, when the folders are exactly
    CIFAR-10's, CIFAR-100's or the Intel scenes' labels; None for any other set.

    Folder names use underscores (`aquarium_fish`) and re-packaged CIFAR-10 copies other spellings ("car");
    `miniclip.data.folders.readable_class_name` maps both to our English names before we look them up.
    Matching by name, not by position, keeps the labels right whatever order the folders come in.
    """
    dataset = known_test_set(folders)
    if dataset is None:
        return None
    keys = _FOLDER_NAMES.get(dataset, CLASS_NAMES[dataset]["en"])
    index = {name: i for i, name in enumerate(keys)}
    return [class_names(dataset, lang)[index[name]] for name in _readable(folders)]


def caption_word_names(folders: list[str]) -> list[tuple[str, ...]]:
    """Each class's names in the Flickr8k captions' own words (`CAPTION_WORDS`), in the folders' order; ValueError
    unless the folders are CIFAR-10's or the Intel scenes' (the sets with such names, English only)."""
    dataset = known_test_set(folders)
    if dataset not in CAPTION_WORDS:
        raise ValueError("caption-word names exist for CIFAR-10 and the Intel scenes only")
    by_folder = dict(zip(_FOLDER_NAMES.get(dataset, CLASS_NAMES[dataset]["en"]), CAPTION_WORDS[dataset]))
    return [by_folder[name] for name in _readable(folders)]


def default_template_set(folders: list[str]) -> str:
    """The template set a test set with these class folders is read with when none is asked for: `scenes` for
    the Intel scenes, whose names carry their article; `simple` ("a photo of a {}.") otherwise."""
    return _ENGLISH_WITH_ARTICLE.get(known_test_set(folders), "simple")


def prompts_for_classes(folders: list[str], template_set: str | None = None,
                        lang: str = "en") -> tuple[list[str], tuple[str, ...]]:
    """Class names (in the folders' order) and templates for a zero-shot classifier of a test set in `lang`.

    Names: the stored translations when the folders are a known set's, else the readable folder names (English
    only). Templates: `template_set` (default: `default_template_set`). Raises ValueError for a language without
    names, an unknown template set, or a pairing that would double or drop the article ("a photo of a the sea.",
    "a photo of cat.")."""
    dataset = known_test_set(folders)
    names = names_for_folders(folders, lang)
    if names is None:
        if lang != "en":
            raise ValueError(f"no {lang} class names for these classes (translations exist for CIFAR-10, CIFAR-100 "
                             f"and the Intel scenes; use en)")
        names = _readable(folders)
    template_set = template_set or default_template_set(folders)
    templates = templates_for(template_set, lang)
    with_article = lang != "en" or dataset in _ENGLISH_WITH_ARTICLE
    if with_article != takes_article(template_set, lang):
        examples = ", ".join(repr(name) for name in names[:3])
        hint = (f"the names carry their article ({examples}): use {_ENGLISH_WITH_ARTICLE[dataset]}" if with_article
                else f"the names are bare nouns ({examples}): use simple, ensemble, cifar or imagenet")
        raise ValueError(f"the {template_set!r} templates do not fit the class names ({hint})")
    return names, templates
