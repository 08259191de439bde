"""`python -m miniclip eval …`: zero-shot classification and retrieval on a checkpoint.

    python -m miniclip eval zeroshot --checkpoint CKPT --data imagefolder:PATH|cifar10|cifar100|shapes[:N]
                                     [--templates NAME] [--lang en|fr|de|en+fr+de] [--json]
    python -m miniclip eval retrieval --checkpoint CKPT --data flickr8k[:PATH] [--split test] [--json]

CKPT is a run's ``final.safetensors`` (or ``last.safetensors``), or ``TAG:MODEL`` for open_clip's pretrained
weights, e.g. ``openai:ViT-B-32`` for OpenAI's released ViT-B/32 (see :mod:`miniclip.pretrained`).
With ``--json`` the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json

# The confusion matrix goes into the JSON line only up to this many classes (CIFAR-10 and smaller); beyond,
# it would swamp the line (CIFAR-100: 10,000 numbers). Python callers always get it from evaluate_zeroshot.
JSON_CONFUSION_MAX_CLASSES = 16


def load_for_eval(spec: str, device: str = "cpu"):
    """(model, run config, image transform) for a checkpoint path or a pretrained ``TAG:MODEL`` spec."""
    from miniclip.data.transforms import ToNormalizedTensor, eval_transform
    from miniclip.pretrained import parse_spec

    pretrained = parse_spec(spec)
    if pretrained:
        from miniclip.pretrained import load

        model, info = load(*pretrained, device=device)
        transform = eval_transform(info.image_size)
        transform.transforms[-1] = ToNormalizedTensor(info.mean, info.std)  # the tag's own normalisation
        return model, {}, transform
    from miniclip.checkpoint import load_model, read_metadata

    model = load_model(spec, device)
    return model, read_metadata(spec).get("config") or {}, eval_transform(model.config.image_size)


def _languages(spec: str) -> list[str]:
    from miniclip.zeroshot import LANGUAGES

    langs = spec.split("+")
    if not langs or any(lang not in LANGUAGES for lang in langs) or len(set(langs)) != len(langs):
        raise SystemExit(f"error: --lang takes languages from {LANGUAGES} joined by '+', got {spec!r}")
    return langs


def run_zeroshot(args: argparse.Namespace) -> int:
    from miniclip.classnames import names_for_folders
    from miniclip.data.loaders import trained_shapes_world
    from miniclip.zeroshot import multilingual_zeroshot, shapes_class_names, templates_for

    model, run_config, transform = load_for_eval(args.checkpoint, args.device)
    langs = _languages(args.lang)
    kind, _, rest = args.data.partition(":")
    if kind == "shapes":
        # Single objects of the held-out (colour, shape) pairs, classified among all 64 pairs, in the world the
        # checkpoint was trained on, named in that world's own caption grammar ("a photo of a red circle").
        template_set = args.templates or "shapes"
        if not template_set.startswith("shapes"):
            raise SystemExit(f"error: Shapes class names carry their article; use a shapes* template set, "
                             f"not {template_set!r}")
        world = trained_shapes_world(run_config, model.config.image_size)
        images, labels, _ = world.heldout_zeroshot(int(rest or 1000))
        data, keys = (images, labels), world.class_names("colour_shape")
        names = {lang: shapes_class_names("colour_shape", lang, world.config.max_objects) for lang in langs}
    else:
        from miniclip.data.folders import open_test_set

        template_set = args.templates or "simple"
        data = open_test_set(args.data, transform)
        keys = data.class_names
        names = {}
        for lang in langs:
            names[lang] = data.class_names if lang == "en" else names_for_folders(data.classes, lang)
            if names[lang] is None:
                raise SystemExit(f"error: no {lang} class names for {args.data} (translations exist for CIFAR-10 "
                                 f"and CIFAR-100 only); use --lang en")
    try:
        templates = {lang: templates_for(template_set, lang) for lang in langs}
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    # One language, or their fusion (the average of the languages' normalised class vectors).
    result = multilingual_zeroshot(model, data, names, templates, fusions=[tuple(langs)] if len(langs) > 1 else [],
                                   keys=keys)["+".join(langs)]
    confusion = result.pop("confusion")
    if result["classes"] <= JSON_CONFUSION_MAX_CLASSES:
        result["confusion"] = confusion
    result.update(checkpoint=str(args.checkpoint), data=args.data, template_set=template_set, lang=args.lang)
    print(f"zero-shot on {args.data} ({args.lang}, templates {template_set!r} x{result['templates']}): "
          f"top-1 {result['top1']:.2%}, top-5 {result['top5']:.2%} "
          f"(n={result['n']}, {result['classes']} classes, chance {result['chance']:.2%})")
    if args.json:
        print(json.dumps(result))
    return 0


def run_retrieval(args: argparse.Namespace) -> int:
    from miniclip.data.flickr8k import Flickr8k
    from miniclip.probes import evaluate_retrieval

    model, _, transform = load_for_eval(args.checkpoint, args.device)
    kind, _, rest = args.data.partition(":")
    if kind != "flickr8k":
        raise SystemExit(f"error: retrieval needs --data flickr8k[:PATH], got {args.data!r}")
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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on the last line")


def add_eval_commands(commands) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint: zero-shot classification or retrieval")
    subcommands = evaluate.add_subparsers(dest="what", required=True)

    zeroshot = subcommands.add_parser("zeroshot", help="zero-shot classification from class-name prompts (§3.1)")
    _common(zeroshot)
    zeroshot.add_argument("--data", required=True,
                          help="imagefolder:PATH | cifar10[:PATH] | cifar100[:PATH] | shapes[:N] (the checkpoint's "
                               "Shapes world, N held-out single objects)")
    zeroshot.add_argument("--templates", default=None,
                          help="template set (miniclip.zeroshot.TEMPLATE_SETS): simple, ensemble, cifar (the "
                               "paper's 18), imagenet (the paper's 80), shapes, shapes-<style>. Default: shapes "
                               "for Shapes, simple otherwise")
    zeroshot.add_argument("--lang", default="en",
                          help="en, fr, de, or languages joined by '+' (en+fr+de) to fuse their classifiers")
    zeroshot.set_defaults(func=run_zeroshot)

    retrieval = subcommands.add_parser("retrieval", help="image-text retrieval recall on Flickr8k")
    _common(retrieval)
    retrieval.add_argument("--data", required=True, help="flickr8k[:PATH]")
    retrieval.add_argument("--split", default="test", help="Flickr8k split")
    retrieval.set_defaults(func=run_retrieval)

    # Linear probe, few-shot and robustness live beside the probes they run.
    from miniclip.probe_commands import add_probe_commands

    add_probe_commands(subcommands)
