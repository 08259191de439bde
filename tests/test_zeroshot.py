"""Zero-shot classification: metrics against numpy brute force, the classifier against a hand computation,
multilingual fusion, the template and class-name tables, and the CLI's JSON contract."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from miniclip.checkpoint import save_checkpoint
from miniclip.cli import main, run
from miniclip.config import load_config
from miniclip.data import shapes_text
from miniclip.data.folders import CIFAR10_CLASSES
from miniclip.errors import UsageError
from miniclip.eval.classnames import (
    CIFAR10,
    CIFAR100,
    CLASS_NAMES,
    INTEL_SCENES,
    class_names,
    default_template_set,
    names_for_folders,
    prompts_for_classes,
)
from miniclip.eval.validator import Validator
from miniclip.eval.zeroshot import (
    IMAGENET_TEMPLATES,
    SHAPES_TEMPLATES,
    TEMPLATE_SETS,
    classifier_weights,
    encode_texts,
    evaluate_zeroshot,
    fill_template,
    fuse_classifiers,
    multilingual_zeroshot,
    shapes_class_names,
    templates_for,
    zeroshot_metrics,
)
from miniclip.model import CLIP

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return CLIP(load_config(ROOT / "configs" / "ci.yaml").model).eval()


def numpy_zeroshot(features, classifier, labels, k=5):
    """Everything by explicit loops over images and classes."""
    logits = features @ classifier.T
    n, c = logits.shape
    top1 = np.mean([np.argmax(logits[i]) == labels[i] for i in range(n)])
    topk = np.mean([labels[i] in np.argsort(-logits[i])[:k] for i in range(n)])
    confusion = np.zeros((c, c), dtype=int)
    for i in range(n):
        confusion[labels[i], np.argmax(logits[i])] += 1
    per_class = {j: np.mean([np.argmax(logits[i]) == j for i in range(n) if labels[i] == j])
                 for j in range(c) if (labels == j).any()}
    return top1, topk, confusion, per_class


def test_zeroshot_metrics_match_numpy_loops():
    rng = np.random.default_rng(0)
    n, c, d = 200, 9, 16
    classifier = rng.normal(size=(c, d))
    classifier /= np.linalg.norm(classifier, axis=1, keepdims=True)
    labels = rng.integers(0, c - 1, size=n)  # the last class has no images: absent from per_class
    features = classifier[labels] + 1.2 * rng.normal(size=(n, d))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    names = [f"class {j}" for j in range(c)]
    got = zeroshot_metrics(torch.tensor(features, dtype=torch.float32), torch.tensor(labels),
                           torch.tensor(classifier, dtype=torch.float32), names)
    top1, top5, confusion, per_class = numpy_zeroshot(features, classifier, labels)
    assert 0.2 < top1 < 0.95  # a non-trivial case: neither all right nor all wrong
    assert np.isclose(got["top1"], top1) and np.isclose(got["top5"], top5)
    assert np.array_equal(np.array(got["confusion"]), confusion)
    assert got["per_class"].keys() == {names[j] for j in per_class}
    for j, acc in per_class.items():
        assert np.isclose(got["per_class"][names[j]], acc)
    assert got["n"] == n and got["classes"] == c and got["chance"] == 1 / c


def test_classifier_weights_match_a_hand_computation(tiny_model):
    names, templates = ["un chat", "une étoile"], ("une photo de {}.", "un dessin de {}")
    got = classifier_weights(tiny_model, names, templates, lang="fr")
    # by hand: each prompt alone (elided French), normalised, averaged per class, normalised again
    prompts = [["une photo d'un chat.", "un dessin d'un chat"], ["une photo d'une étoile.", "un dessin d'une étoile"]]
    expected = []
    for class_prompts in prompts:
        emb = np.stack([encode_texts(tiny_model, [p])[0].numpy() for p in class_prompts])
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        mean = emb.mean(axis=0)
        expected.append(mean / np.linalg.norm(mean))
    np.testing.assert_allclose(got.numpy(), np.stack(expected), atol=1e-5)


def test_a_class_given_by_synonyms_averages_every_name_in_every_template(tiny_model):
    from miniclip.eval.classnames import INTEL_SCENES_CAPTION_WORDS

    names, templates = [("the sea", "the ocean", "a beach"), "a street"], ("a photo of {}.", "a picture of {}.")
    got = classifier_weights(tiny_model, names, templates)
    sea = F.normalize(encode_texts(tiny_model, [t.format(n) for n in names[0] for t in templates]), dim=-1)
    expected_sea = F.normalize(sea.mean(dim=0), dim=-1)
    torch.testing.assert_close(got[0], expected_sea, atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], classifier_weights(tiny_model, ["a street"], templates)[0], atol=1e-6, rtol=0)
    assert len(INTEL_SCENES_CAPTION_WORDS) == 6 and all(isinstance(n, tuple) for n in INTEL_SCENES_CAPTION_WORDS)


def test_caption_word_names_follow_the_folders_order_and_start_with_the_class_word():
    from miniclip.eval.classnames import CAPTION_WORDS, CLASS_NAMES, INTEL_SCENES_CLASSES, caption_word_names

    folders = ["truck", "car", "airplane", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]  # "car": an alias
    names = caption_word_names(folders)
    assert names[0] == ("truck",) and names[1] == ("automobile", "car", "jeep") and names[-1] == ("ship", "boat")
    for dataset, rows in CAPTION_WORDS.items():
        keys = INTEL_SCENES_CLASSES if dataset == "intel-scenes" else CLASS_NAMES[dataset]["en"]
        assert len(rows) == len(keys) and all(1 <= len(row) <= 3 for row in rows)
        assert all(row[0].split()[-1].rstrip("s") == key.rstrip("s") for row, key in zip(rows, keys))
    with pytest.raises(ValueError, match="CIFAR-10 and the Intel scenes only"):
        caption_word_names(["apple", "pear"])


def test_fusion_averages_normalised_class_vectors():
    rng = np.random.default_rng(1)
    raw = [rng.normal(size=(5, 8)) * scale for scale in (1.0, 3.0, 0.2)]  # lengths must not matter
    expected = np.mean([w / np.linalg.norm(w, axis=1, keepdims=True) for w in raw], axis=0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    got = fuse_classifiers([torch.tensor(w, dtype=torch.float32) for w in raw])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_multilingual_results_equal_per_language_and_fused_classifiers(tiny_model):
    g = torch.Generator().manual_seed(0)
    features, labels = F.normalize(torch.randn(60, 64, generator=g), dim=-1), torch.randint(0, 10, (60,), generator=g)
    names = {lang: list(CIFAR10[lang]) for lang in ("en", "fr", "de")}
    templates = {lang: templates_for("ensemble", lang) for lang in names}
    got = multilingual_zeroshot(tiny_model, (features, labels), names, templates)
    assert set(got) == {"en", "fr", "de", "en+fr", "en+de", "fr+de", "en+fr+de"}
    weights = {lang: classifier_weights(tiny_model, names[lang], templates[lang], lang) for lang in names}
    for lang in names:  # one language = evaluate_zeroshot on the same features
        alone = evaluate_zeroshot(tiny_model, (features, labels), names[lang], templates[lang], lang, keys=names["en"])
        assert got[lang]["top1"] == alone["top1"] and got[lang]["confusion"] == alone["confusion"]
    fused = np.mean([weights[lang].numpy() for lang in names], axis=0)
    fused /= np.linalg.norm(fused, axis=1, keepdims=True)
    top1, top5, confusion, _ = numpy_zeroshot(features.numpy(), fused, labels.numpy())
    assert np.isclose(got["en+fr+de"]["top1"], top1) and np.isclose(got["en+fr+de"]["top5"], top5)
    assert np.array_equal(np.array(got["en+fr+de"]["confusion"]), confusion)
    assert set(got["fr"]["per_class"]) <= set(CIFAR10["en"])  # per-class results keyed in English


def test_imagenet_templates_are_openai_s_80():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    assert list(IMAGENET_TEMPLATES) == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    assert len(IMAGENET_TEMPLATES) == 80 and TEMPLATE_SETS["cifar"][0] == "a photo of a {}."
    assert len(TEMPLATE_SETS["cifar"]) == 18 and len(set(TEMPLATE_SETS["cifar"])) == 18


def test_french_and_german_templates_fit_the_stored_class_names():
    """French names carry un/une and follow "de"; German names carry the dative einem/einer and follow "von"."""
    for key, templates in TEMPLATE_SETS.items():
        for t in templates:
            assert t.count("{}") == 1, (key, t)
            if key.endswith("-fr"):
                assert "de {}" in t, t
            if key.endswith("-de"):
                assert "von {}" in t, t
    for dataset, names in CLASS_NAMES.items():
        if dataset == "intel-scenes":  # also "la", "des", "dem" and a bare plural: see the next test
            continue
        assert all(n.split()[0] in ("un", "une") for n in names["fr"])
        assert all(n.split()[0] in ("einem", "einer") and n.split()[1][0].isupper() for n in names["de"])
    assert fill_template("une photo de {}.", "un éléphant", "fr") == "une photo d'un éléphant."
    assert fill_template("ein Foto von {}.", CIFAR100["de"][CIFAR100["en"].index("bear")], "de") == \
        "ein Foto von einem Bären."


SCENE_FOLDERS = ["buildings", "forest", "glacier", "mountain", "sea", "street"]


def test_intel_scene_names_fill_the_scene_templates_naturally():
    """Each language's names carry their article, so every scenes template reads as written by hand."""
    expected = {
        "en": ["a photo of buildings.", "a photo of a forest.", "a photo of a glacier.", "a photo of a mountain.",
               "a photo of the sea.", "a photo of a street."],
        "fr": ["une photo de bâtiments.", "une photo d'une forêt.", "une photo d'un glacier.",
               "une photo d'une montagne.", "une photo de la mer.", "une photo d'une rue."],
        "de": ["ein Foto von Gebäuden.", "ein Foto von einem Wald.", "ein Foto von einem Gletscher.",
               "ein Foto von einem Berg.", "ein Foto vom Meer.", "ein Foto von einer Straße."],
    }
    assert default_template_set(SCENE_FOLDERS) == "scenes" and default_template_set(list(CIFAR10["en"])) == "simple"
    for lang, prompts in expected.items():
        names, templates = prompts_for_classes(SCENE_FOLDERS, lang=lang)
        assert names == class_names("intel-scenes", lang) == list(INTEL_SCENES[lang])
        assert templates == templates_for("scenes", lang) and 6 <= len(templates) <= 10
        assert len(set(templates)) == len(templates)
        assert [fill_template(templates[0], n, lang) for n in names] == prompts
        for t in templates:  # no article doubled or left uncontracted, whatever the template
            for n in names:
                text = fill_template(t, n, lang)
                assert not any(bad in text for bad in (" a a ", " a the ", " de un", " de des ", "von dem ")), text
    # matched by name: the folders in another order get their own names
    assert names_for_folders(SCENE_FOLDERS[::-1], "de") == list(INTEL_SCENES["de"])[::-1]


def test_templates_that_would_double_or_drop_the_article_are_refused():
    with pytest.raises(ValueError, match="'cifar' templates do not fit.*use scenes"):
        prompts_for_classes(SCENE_FOLDERS, "cifar")  # "a photo of a the sea."
    with pytest.raises(ValueError, match="'scenes' templates do not fit.*bare nouns"):
        prompts_for_classes(list(CIFAR10["en"]), "scenes")  # "a photo of airplane."
    # French and German names always carry their article: any set of those languages fits them
    assert prompts_for_classes(SCENE_FOLDERS, "ensemble", "fr")[1] == templates_for("ensemble", "fr")
    assert prompts_for_classes(list(CIFAR10["en"]), "scenes", "de")[0] == list(CIFAR10["de"])
    with pytest.raises(ValueError, match="no fr class names"):
        prompts_for_classes(["a", "b"], lang="fr")


def test_class_name_tables_are_aligned_and_in_dataset_order():
    assert CIFAR10["en"] == CIFAR10_CLASSES
    for names in CLASS_NAMES.values():
        assert len({len(v) for v in names.values()}) == 1 and all(len(set(v)) == len(v) for v in names.values())
    folders = [n.replace(" ", "_") for n in CIFAR100["en"]]
    # fine_label_names.txt is alphabetical, and the download writes one folder per name
    assert len(folders) == 100 and folders == sorted(folders)
    assert {"aquarium_fish", "lawn_mower", "maple_tree", "sweet_pepper", "willow_tree", "cattle"} <= set(folders)
    shuffled = random.Random(0).sample(folders, 100)
    assert names_for_folders(shuffled, "de") == [CIFAR100["de"][folders.index(f)] for f in shuffled]
    assert names_for_folders(["car" if c == "automobile" else c for c in CIFAR10["en"]], "fr") == list(CIFAR10["fr"])
    tfds_spelling = ["computer_keyboard" if f == "keyboard" else f for f in folders]
    assert names_for_folders(tfds_spelling, "en") == list(CIFAR100["en"])
    assert names_for_folders(["cat", "dog"], "fr") is None


@pytest.mark.parametrize("lang", ["en", "fr", "de"])
def test_shapes_templates_reproduce_the_caption_grammar(lang):
    names = shapes_class_names("colour_shape", lang)
    things = shapes_text.class_things("colour_shape")
    assert [fill_template(SHAPES_TEMPLATES[lang]["shapes"][0], n, lang) for n in names] == \
        shapes_text.class_prompts("colour_shape", lang)
    for style in shapes_text.STYLES:
        for variant, template in enumerate(SHAPES_TEMPLATES[lang][f"shapes-{style}"]):
            expected = [shapes_text.realise(shapes_text.Caption((thing,), "style", style, variant), lang)
                        for _, thing, _ in things]
            assert [fill_template(template, n, lang) for n in names] == expected


def test_unknown_template_set_names_the_available_ones():
    with pytest.raises(ValueError, match="ensemble"):
        templates_for("cifar", "fr")


@pytest.fixture(scope="module")
def ci_checkpoint(tmp_path_factory, tiny_model):
    config = load_config(ROOT / "configs" / "ci.yaml")
    out = tmp_path_factory.mktemp("ci")
    return save_checkpoint(out, "final", tiny_model, step=0, run_config=config.to_dict())


@pytest.fixture(scope="module")
def cifar_like_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10") / "test"
    rng = np.random.default_rng(0)
    for folder in CIFAR10_CLASSES:
        (root / folder).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
    return root


def run_cli(capsys, *argv):
    assert main(["eval", *argv, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_cli_shapes_json_last_line(capsys, ci_checkpoint):
    lines, result = run_cli(capsys, "zeroshot", "--checkpoint", str(ci_checkpoint), "--data", "shapes:40",
                            "--lang", "en+fr+de")
    assert "zero-shot on shapes:40" in lines[0]
    assert result["n"] == 40 and result["classes"] == 64 and result["languages"] == ["en", "fr", "de"]
    assert 0 <= result["top1"] <= result["top5"] <= 1 and "confusion" not in result  # 64 classes: too big
    assert set(result["per_class"]) <= set(shapes_text.class_names("colour_shape"))


def test_cli_imagefolder_json_in_french_with_confusion(capsys, ci_checkpoint, cifar_like_folder):
    _, result = run_cli(capsys, "zeroshot", "--checkpoint", str(ci_checkpoint), "--data",
                        f"imagefolder:{cifar_like_folder}", "--lang", "fr", "--templates", "ensemble")
    assert result["n"] == 20 and result["templates"] == 7 and result["lang"] == "fr"
    assert np.array(result["confusion"]).sum() == 20 and set(result["per_class"]) == set(CIFAR10_CLASSES)
    assert {"top1", "top5", "n", "per_class"} <= result.keys()


def test_cli_intel_scenes_json_from_a_path_and_from_the_data_root(capsys, ci_checkpoint, intel_scenes_roots,
                                                                 monkeypatch):
    archive = intel_scenes_roots["zip"] / "intel-scenes-test.zip"
    lines, result = run_cli(capsys, "zeroshot", "--checkpoint", str(ci_checkpoint), "--data", f"intel-scenes:{archive}")
    assert f"zero-shot on intel-scenes:{archive}" in lines[0]
    assert result["template_set"] == "scenes" and result["templates"] == len(TEMPLATE_SETS["scenes"])
    assert result["n"] == intel_scenes_roots["count"] and result["classes"] == 6 and result["chance"] == 1 / 6
    assert set(result["per_class"]) == set(SCENE_FOLDERS) and np.array(result["confusion"]).sum() == result["n"]
    assert 0 <= result["top1"] <= result["top5"] <= 1
    monkeypatch.setenv("MINICLIP_DATA", str(intel_scenes_roots["folder"]))
    _, fused = run_cli(capsys, "zeroshot", "--checkpoint", str(ci_checkpoint), "--data", "intel-scenes",
                       "--lang", "en+fr+de")
    assert fused["languages"] == ["en", "fr", "de"] and fused["n"] == result["n"]
    assert fused["templates"] == 3 * result["templates"]


def test_validator_checks_intel_scenes_while_training(intel_scenes_roots, monkeypatch, tiny_model):
    monkeypatch.setenv("MINICLIP_DATA", str(intel_scenes_roots["zip"]))
    config = load_config(ROOT / "configs" / "ci.yaml", ["data.zeroshot=intel-scenes", "data.zeroshot_size=12",
                                                        "data.val_size=8"])
    validator = Validator(config, torch.device("cpu"))
    images, labels, prompts, kind = validator._zeroshot_set()
    assert prompts[4] == "a photo of the sea." and len(prompts) == 6 and kind == "intel_scenes"
    assert len(images) == 12 and sorted(labels.tolist()) == [c for c in range(6) for _ in range(2)]
    metrics = validator(tiny_model)
    assert metrics["zeroshot_intel_scenes_chance"] == 1 / 6 and 0 <= metrics["zeroshot_intel_scenes_top1"] <= 1
    assert not validator.notes


def test_cli_rejects_a_language_without_names(ci_checkpoint, tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / c / "0.png")
    with pytest.raises(UsageError, match="no de class names"):
        run(["eval", "zeroshot", "--checkpoint", str(ci_checkpoint), "--data", f"imagefolder:{tmp_path}",
              "--lang", "de"])


def test_zeroshot_hits_mark_each_images_top1_and_agree_with_the_metrics():
    from miniclip.eval.zeroshot import zeroshot_hits, zeroshot_metrics

    classifier = torch.eye(3)
    features = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.2, 1.0], [0.3, 0.9, 0.0], [0.9, 0.0, 0.2]])
    labels = torch.tensor([0, 1, 1, 2])
    hits = zeroshot_hits(features, labels, classifier)
    assert hits.tolist() == [True, False, True, False]
    assert zeroshot_metrics(features, labels, classifier, ["a", "b", "c"])["top1"] == hits.float().mean().item()


def test_cli_zeroshot_with_caption_word_names(ci_checkpoint, intel_scenes_roots, cifar_like_folder, capsys,
                                              monkeypatch, tmp_path):
    monkeypatch.setenv("MINICLIP_DATA", str(intel_scenes_roots["folder"]))
    args = ["eval", "zeroshot", "--checkpoint", str(ci_checkpoint), "--data", "intel-scenes", "--json"]
    assert main(args + ["--names", "caption-words"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["names"] == "caption-words" and result["n"] == intel_scenes_roots["count"]
    assert result["classes"] == 6 and set(result["per_class"]) <= {"buildings", "forest", "glacier", "mountain",
                                                                   "sea", "street"}
    base = ["eval", "zeroshot", "--checkpoint", str(ci_checkpoint), "--names", "caption-words"]
    assert main(base + ["--data", f"imagefolder:{cifar_like_folder}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["classes"] == 10 and result["n"] == 20 and set(result["per_class"]) <= set(CIFAR10_CLASSES)
    other = tmp_path / "other"
    for folder in ("apple", "pear"):
        (other / folder).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(other / folder / "0.png")
    for extra, message in ((["--data", "intel-scenes", "--lang", "fr"], "English only"),
                           (["--data", f"imagefolder:{other}"], "CIFAR-10 and the Intel scenes only"),
                           (["--data", "shapes:8"], "for CIFAR-10 and the Intel scenes")):
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
