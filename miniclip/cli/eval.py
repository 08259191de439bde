"""`python -m miniclip eval …`: zero-shot classification, retrieval, probes and robustness of a checkpoint.

    python -m miniclip eval zeroshot --checkpoint CKPT
                                     --data imagefolder:PATH|cifar10|cifar100|intel-scenes|shapes[:N]
                                     [--templates NAME] [--lang en|fr|de|en+fr+de] [--names plain|caption-words]
                                     [--json]
    python -m miniclip eval retrieval --checkpoint CKPT --data flickr8k[:PATH] [--split test] [--json]
    python -m miniclip eval probe|fewshot|robustness --checkpoint CKPT
                                     --data cifar10|cifar100|intel-scenes|imagefolder:PATH|shapes[:N]
    python -m miniclip eval attributes --checkpoint CKPT [--n N] [--lang en|fr|de] [--json]   (a Shapes model)

`cifar10`, `cifar100` and `intel-scenes` take `:PATH` for a copy elsewhere. A test set's class names and
templates come from `miniclip.eval.classnames.prompts_for_classes`: the Intel scenes' names carry their article
("the sea") and default to the `scenes` templates, every other set to `simple` ("a photo of a {}.").

Each command prints a readable summary. Image features for the probes are cached under
`runs/<profile>/features/` (`--cache-dir` to change), so a second command on the same checkpoint and data
skips the encoding.

CKPT is a run's `final.safetensors` (or `last.safetensors`), or `TAG:MODEL` for open_clip's pretrained
weights, e.g. `openai:ViT-B-32` for OpenAI's released ViT-B/32 (see `miniclip.eval.pretrained`).
With `--json` the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json

from miniclip.checkpoint import load_model, read_metadata
from miniclip.cli.args import device, non_negative_int, positive_int, require_device
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.folders import open_test_set
from miniclip.data.loaders import shapes_world_of_run
from miniclip.data.transforms import ToNormalizedTensor, eval_transform
from miniclip.errors import UsageError
from miniclip.eval import pretrained
from miniclip.eval.attributes import attribute_report, format_report
from miniclip.eval.classnames import caption_word_names, default_template_set, prompts_for_classes
from miniclip.eval.features import FeatureCache, test_set_features
from miniclip.eval.probes import evaluate_retrieval, few_shot, linear_probe, stratified_split, zero_shot_accuracy
from miniclip.eval.robustness import corruption_robustness, shapes_style_shift
from miniclip.eval.zeroshot import (
    LANGUAGES,
    classifier_weights,
    multilingual_zeroshot,
    shapes_class_names,
    templates_for,
)

# The confusion matrix goes into the JSON line only up to this many classes (CIFAR-10 and smaller); beyond,
# it would swamp the line (CIFAR-100: 10,000 numbers). Python callers always get it from evaluate_zeroshot.
JSON_CONFUSION_MAX_CLASSES = 16


def load_for_eval(spec: str, device: str = "cpu"):
    """(model, run config, image transform) for a checkpoint path or a pretrained `TAG:MODEL` spec."""
    device = require_device(device)  # resolves `auto` when a handler is called without the CLI's entry point
    name_and_tag = pretrained.parse_spec(spec)
    if name_and_tag:
        model, info = pretrained.load(*name_and_tag, device=device)
        transform = eval_transform(info.image_size)
        transform.transforms[-1] = ToNormalizedTensor(info.mean, info.std)  # the tag's own normalisation
        return model, {}, transform

    model = load_model(spec, device)
    return model, read_metadata(spec).get("config") or {}, eval_transform(model.config.image_size)


def _count(text: str, default: int, what: str) -> int:
    """The N of a `shapes:N` spec: a positive number of images, `default` when absent."""
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{what}: {text!r} is not a positive number of images (e.g. shapes:500)")
    return int(text)


def _languages(spec: str) -> list[str]:
    langs = spec.split("+")
    if not langs or any(lang not in LANGUAGES for lang in langs) or len(set(langs)) != len(langs):
        raise UsageError(f"--lang takes languages from {LANGUAGES} joined by '+', got {spec!r}")
    return langs


def _prompts(spec: str, classes: list[str], template_set: str | None, lang: str) -> tuple[list[str], tuple]:
    """`prompts_for_classes`, its complaints (no names in `lang`, a template set that is unknown or does not fit
    the names) as usage errors that name the test set."""
    try:
        return prompts_for_classes(classes, template_set, lang)
    except ValueError as e:
        raise UsageError(f"{spec}: {e}") from None


def run_zeroshot(args: argparse.Namespace) -> int:
    model, run_config, transform = load_for_eval(args.checkpoint, args.device)
    langs = _languages(args.lang)
    kind, _, rest = args.data.partition(":")
    if kind == "shapes":
        # Single objects of the held-out (colour, shape) pairs, classified among all 64 pairs, in the world the
        # checkpoint was trained on, named in that world's own caption grammar ("a photo of a red circle").
        template_set = args.templates or "shapes"
        if args.names != "plain":
            raise UsageError("--names caption-words is for CIFAR-10 and the Intel scenes; Shapes classes use the "
                             "captions' own grammar already")
        if not template_set.startswith("shapes"):
            raise UsageError(f"Shapes class names carry their article; use a shapes* template set, "
                             f"not {template_set!r}")
        world = shapes_world_of_run(run_config, model.config.image_size)
        images, labels, _ = world.heldout_zeroshot(_count(rest, 1000, args.data))
        data, keys = (images, labels), world.class_names("colour_shape")
        names = {lang: shapes_class_names("colour_shape", lang, world.config.max_objects) for lang in langs}
        try:
            templates = {lang: templates_for(template_set, lang) for lang in langs}
        except ValueError as e:
            raise UsageError(f"{e}") from None
    else:
        data = open_test_set(args.data, transform)
        keys = data.class_names
        template_set = args.templates or default_template_set(data.classes)
        names, templates = {}, {}
        for lang in langs:
            names[lang], templates[lang] = _prompts(args.data, data.classes, template_set, lang)
        if args.names == "caption-words":
            if langs != ["en"]:
                raise UsageError("--names caption-words is English only (drop --lang)")
            try:
                names["en"] = caption_word_names(data.classes)
            except ValueError as e:
                raise UsageError(f"{args.data}: {e}") from None
    # One language, or their fusion (the average of the languages' normalised class vectors).
    result = multilingual_zeroshot(model, data, names, templates, fusions=[tuple(langs)] if len(langs) > 1 else [],
                                   keys=keys)["+".join(langs)]
    confusion = result.pop("confusion")
    if result["classes"] <= JSON_CONFUSION_MAX_CLASSES:
        result["confusion"] = confusion
    result.update(checkpoint=str(args.checkpoint), data=args.data, template_set=template_set, lang=args.lang,
                  names=args.names)
    print(f"zero-shot on {args.data} ({args.lang}, templates {template_set!r} x{result['templates']}, "
          f"{args.names} names): "
          f"top-1 {result['top1']:.2%}, top-5 {result['top5']:.2%} "
          f"(n={result['n']}, {result['classes']} classes, chance {result['chance']:.2%})")
    if args.json:
        print(json.dumps(result))
    return 0


def run_retrieval(args: argparse.Namespace) -> int:
    model, _, transform = load_for_eval(args.checkpoint, args.device)
    kind, _, rest = args.data.partition(":")
    if kind != "flickr8k":
        raise UsageError(f"retrieval needs --data flickr8k[:PATH], got {args.data!r}")
    dataset = Flickr8k(rest or None, split=args.split, transform=transform, train=False)
    result = evaluate_retrieval(model, dataset)
    result.update(checkpoint=str(args.checkpoint), data=args.data)
    print(f"retrieval on Flickr8k {args.split} ({result['images']} images, {result['captions']} captions): " +
          ", ".join(f"{k} {v:.2%}" for k, v in result.items() if "@" in k))
    if args.json:
        print(json.dumps(result))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a run's final.safetensors (or last.safetensors), or TAG:MODEL for open_clip's "
                             "pretrained weights, e.g. openai:ViT-B-32")
    parser.add_argument("--device", default="auto", type=device,
                        help="auto (the GPU when there is one; the default), cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on the last line")


def add_eval_commands(commands) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint: zero-shot classification or retrieval")
    subcommands = evaluate.add_subparsers(dest="what", required=True)

    zeroshot = subcommands.add_parser("zeroshot", help="zero-shot classification from class-name prompts (§3.1)")
    _common(zeroshot)
    zeroshot.add_argument("--data", required=True,
                          help="imagefolder:PATH | cifar10[:PATH] | cifar100[:PATH] | intel-scenes[:PATH] | "
                               "shapes[:N] (the checkpoint's Shapes world, N held-out single objects)")
    zeroshot.add_argument("--templates", default=None,
                          help="template set (miniclip.eval.zeroshot.TEMPLATE_SETS): simple, ensemble, cifar (the "
                               "paper's 18), imagenet (the paper's 80), scenes (outdoor scenes), shapes, "
                               "shapes-<style>. Default: shapes for Shapes, scenes for the Intel scenes, simple "
                               "otherwise")
    zeroshot.add_argument("--lang", default="en",
                          help="en, fr, de, or languages joined by '+' (en+fr+de) to fuse their classifiers")
    zeroshot.add_argument("--names", default="plain", choices=("plain", "caption-words"),
                          help="class names: plain, or caption-words (CIFAR-10 and the Intel scenes, English: "
                               "each class also named by the words Flickr8k's captions use for it, all averaged)")
    zeroshot.set_defaults(func=run_zeroshot)

    retrieval = subcommands.add_parser("retrieval", help="image-text retrieval recall on Flickr8k")
    _common(retrieval)
    retrieval.add_argument("--data", required=True, help="flickr8k[:PATH]")
    retrieval.add_argument("--split", default="test", help="Flickr8k split")
    retrieval.set_defaults(func=run_retrieval)

    attributes = subcommands.add_parser("attributes", help="a Shapes model's zero-shot accuracy per attribute "
                                                           "(colour, shape, size, pairs, count, relations) and probes")
    _common(attributes)
    attributes.add_argument("--n", type=positive_int, default=512, help="test pictures per task")
    attributes.add_argument("--probe-n", type=positive_int, default=1000, help="pictures to fit each linear probe")
    attributes.add_argument("--no-probes", action="store_true", help="zero-shot only (no logistic regressions)")
    attributes.add_argument("--lang", default="en", choices=LANGUAGES, help="the prompts' language")
    attributes.set_defaults(func=run_attributes)

    add_probe_commands(subcommands)


def run_attributes(args: argparse.Namespace) -> int:
    model = load_model(args.checkpoint, args.device)
    config = read_metadata(args.checkpoint).get("config") or {}
    if config.get("data", {}).get("dataset") != "shapes":
        raise UsageError(f"{args.checkpoint} was not trained on the Shapes world (eval attributes measures a Shapes "
                         "model; for other models use eval zeroshot or eval probe)")
    world = shapes_world_of_run(config, model.config.image_size)
    report = attribute_report(model, world, n=args.n, probe_n=args.probe_n, lang=args.lang, probes=not args.no_probes)
    print(format_report(report))
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "lang": args.lang, **report}))
    return 0


# ----------------------------------------------------------------------------- probes and robustness


def _zero_shot_weights(model, spec: str, classes: list[str], template_set: str | None):
    """The English zero-shot classifier of a test set with these classes (`template_set` None: its default)."""
    return classifier_weights(model, *_prompts(spec, classes, template_set, "en"))


def _setup(args):
    model = load_model(args.checkpoint, args.device)
    return model, read_metadata(args.checkpoint).get("config") or {}, FeatureCache(args.cache_dir)


def run_probe(args: argparse.Namespace) -> dict:
    model, _, cache = _setup(args)
    features, labels, names = test_set_features(model, args.data, cache, args.batch_size)
    weights = _zero_shot_weights(model, args.data, names, args.templates)  # a bad template set fails before the fit
    split = stratified_split(labels.numpy(), seed=args.split_seed)
    result = linear_probe(features, labels, split, normalize=not args.no_normalize)
    result.pop("classifier")
    test = split[2]
    result["zero_shot_accuracy"] = zero_shot_accuracy(features[test], labels[test], weights)
    result.update(classes=len(names), cache_hits=cache.hits, cache_misses=cache.misses)
    print(f"linear probe on {args.data}: test accuracy {result['test_accuracy']:.2%} (C={result['C']:.3g}, "
          f"val {result['val_accuracy']:.2%}; {result['n_train']}+{result['n_val']} train+val, {result['n_test']} "
          f"test); zero-shot on the same test images {result['zero_shot_accuracy']:.2%}")
    return result


def run_fewshot(args: argparse.Namespace) -> dict:
    model, _, cache = _setup(args)
    features, labels, names = test_set_features(model, args.data, cache, args.batch_size)
    weights = _zero_shot_weights(model, args.data, names, args.templates)  # a bad template set fails before the fits
    train, _, test = stratified_split(labels.numpy(), seed=args.split_seed)
    result = few_shot(features, labels, train, test, shots=tuple(args.shots), seeds=tuple(range(args.seeds)),
                      normalize=not args.no_normalize)
    result["zero_shot_accuracy"] = zero_shot_accuracy(features[test], labels[test], weights)
    result.update(classes=len(names), cache_hits=cache.hits, cache_misses=cache.misses)
    curve = ", ".join(f"{k}-shot {v['mean']:.1%} [{v['lo']:.1%}, {v['hi']:.1%}]" for k, v in result["shots"].items())
    print(f"few-shot probes on {args.data} ({args.seeds} seeds, 95% t-interval): {curve}; "
          f"zero-shot {result['zero_shot_accuracy']:.1%} (n={result['n_test']})")
    return result


def run_robustness(args: argparse.Namespace) -> dict:
    model, run_config, cache = _setup(args)
    kind, _, rest = args.data.partition(":")
    normalize = not args.no_normalize
    if kind == "shapes":
        # The world the checkpoint was trained in (its held-out pairs, languages, seed), at its resolution.
        world = shapes_world_of_run(run_config, model.config.image_size)
        n_test = _count(rest, 500, args.data)
        result = shapes_style_shift(model, world, kinds=tuple(args.kinds), n_test=n_test, normalize=normalize,
                                    cache=cache, batch_size=args.batch_size)
        for k, r in result["kinds"].items():
            print(f"Shapes {k} ({r['classes']} classes), probe trained on {'+'.join(result['source'])}:")
            for shift, s in r["summary"].items():
                print(f"  {shift:>7}: zero-shot {s['zero_shot_shifted']:.1%} (source {s['zero_shot_clean']:.1%}), "
                      f"probe {s['probe_shifted']:.1%} (source {s['probe_clean']:.1%})")
    else:
        try:
            result = corruption_robustness(model, args.data, args.templates, cache, n_shifted=args.n_shifted,
                                       normalize=normalize, batch_size=args.batch_size)
        except ValueError as e:  # the template set: unknown, or not made for these class names
            raise UsageError(f"{args.data}: {e}") from None
        print(f"{args.data} under corruptions ({result['n_shifted']} test images; probe trained on clean images):")
        for shift, s in result["summary"].items():
            er = s["zero_shot_effective_robustness"]
            print(f"  {shift:>16}: zero-shot {s['zero_shot_shifted']:.1%} (clean {s['zero_shot_clean']:.1%}), "
                  f"probe {s['probe_shifted']:.1%} (clean {s['probe_clean']:.1%}), zero-shot effective robustness "
                  + ("n/a" if er is None else f"{er:+.1%}"))
    result.update(cache_hits=cache.hits, cache_misses=cache.misses)
    return result


def _run(handler):
    def run(args: argparse.Namespace) -> int:
        result = handler(args)
        result.update(checkpoint=str(args.checkpoint), data=args.data)
        if args.json:
            print(json.dumps(result))
        return 0
    return run


def _probe_options(parser: argparse.ArgumentParser, data_default: str, data_help: str) -> None:
    parser.add_argument("--checkpoint", required=True, help="a run's final.safetensors (or last.safetensors)")
    parser.add_argument("--data", default=data_default, help=data_help)
    parser.add_argument("--device", default="auto", type=device,
                        help="auto (the GPU when there is one; the default), cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on the last line")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="images per encoder batch")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default runs/<profile>/features)")
    parser.add_argument("--no-normalize", action="store_true",
                        help="probe raw encode_image features (OpenAI's README) instead of L2-normalised ones")
    parser.add_argument("--templates", default=None,
                        help="zero-shot template set from miniclip.eval.zeroshot.TEMPLATE_SETS (default: simple, "
                             "one template; scenes for the Intel scenes)")


def add_probe_commands(subparsers) -> None:
    """Add `probe`, `fewshot` and `robustness` to an argparse sub-parsers object (the `eval` command's)."""
    test_sets = "a labelled test set: cifar10 | cifar100 | intel-scenes | imagefolder:PATH (split 50/20/30%% " \
                "into probe train/val/test, stratified, seeded)"
    probe = subparsers.add_parser("probe", help="linear probe (logistic regression, C swept on a validation split)")
    _probe_options(probe, "cifar10", test_sets)
    probe.add_argument("--split-seed", type=non_negative_int, default=0)
    probe.set_defaults(func=_run(run_probe))

    fewshot = subparsers.add_parser("fewshot", help="k-shot linear probes beside zero-shot, several seeds")
    _probe_options(fewshot, "cifar10", test_sets)
    fewshot.add_argument("--shots", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16])
    fewshot.add_argument("--seeds", type=positive_int, default=5, help="how many seeds (0..N-1) per k")
    fewshot.add_argument("--split-seed", type=non_negative_int, default=0)
    fewshot.set_defaults(func=_run(run_fewshot))

    robustness = subparsers.add_parser("robustness", help="accuracy under corruptions or Shapes style shift, "
                                                          "zero-shot against clean-trained probes")
    _probe_options(robustness, "cifar10", "cifar10 (or another test set): corruptions; shapes[:N_TEST]: style shift in "
                                   "the checkpoint's Shapes world")
    robustness.add_argument("--n-shifted", type=positive_int, default=1000,
                            help="test images evaluated under each corruption")
    robustness.add_argument("--kinds", nargs="+", default=["colour", "shape"], help="Shapes class kinds to probe")
    robustness.set_defaults(func=_run(run_robustness))
