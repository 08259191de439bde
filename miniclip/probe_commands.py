"""`python -m miniclip eval probe | fewshot | robustness`: representation quality and robustness of a checkpoint.

Each command prints a readable summary, and with ``--json`` one JSON object on the last line of stdout. Image
features are cached under ``runs/<profile>/features/`` (``--cache-dir`` to change), so a second command on the
same checkpoint and data skips the encoding. :func:`add_probe_commands` adds the three to the ``eval``
command's sub-parsers.
"""

from __future__ import annotations

import argparse
import json


def _templates(name: str | None):
    """A named template set from miniclip.zeroshot (None: classifier_weights' own default)."""
    if name is None:
        return None
    from miniclip import zeroshot

    sets = getattr(zeroshot, "TEMPLATE_SETS", {})
    if name not in sets:
        raise SystemExit(f"error: unknown template set {name!r}; available: {', '.join(sets) or 'none'}")
    return sets[name]


def _zero_shot_weights(model, class_names, templates):
    from miniclip.zeroshot import classifier_weights

    return classifier_weights(model, class_names) if templates is None else \
        classifier_weights(model, class_names, templates)


def _setup(args):
    from miniclip.checkpoint import load_model, read_metadata
    from miniclip.features import FeatureCache

    model = load_model(args.checkpoint, args.device)
    return model, read_metadata(args.checkpoint).get("config") or {}, FeatureCache(args.cache_dir)


def run_probe(args: argparse.Namespace) -> dict:
    from miniclip.features import test_set_features
    from miniclip.probes import linear_probe, stratified_split, zero_shot_accuracy

    model, _, cache = _setup(args)
    features, labels, names = test_set_features(model, args.data, cache, args.batch_size)
    split = stratified_split(labels.numpy(), seed=args.split_seed)
    result = linear_probe(features, labels, split, normalize=not args.no_normalize)
    result.pop("classifier")
    test = split[2]
    result["zero_shot_accuracy"] = zero_shot_accuracy(features[test], labels[test],
                                                      _zero_shot_weights(model, names, _templates(args.templates)))
    result.update(classes=len(names), cache_hits=cache.hits, cache_misses=cache.misses)
    print(f"linear probe on {args.data}: test accuracy {result['test_accuracy']:.2%} (C={result['C']:.3g}, "
          f"val {result['val_accuracy']:.2%}; {result['n_train']}+{result['n_val']} train+val, {result['n_test']} "
          f"test); zero-shot on the same test images {result['zero_shot_accuracy']:.2%}")
    return result


def run_fewshot(args: argparse.Namespace) -> dict:
    from miniclip.features import test_set_features
    from miniclip.probes import few_shot, stratified_split, zero_shot_accuracy

    model, _, cache = _setup(args)
    features, labels, names = test_set_features(model, args.data, cache, args.batch_size)
    train, _, test = stratified_split(labels.numpy(), seed=args.split_seed)
    result = few_shot(features, labels, train, test, shots=tuple(args.shots), seeds=tuple(range(args.seeds)),
                      normalize=not args.no_normalize)
    result["zero_shot_accuracy"] = zero_shot_accuracy(features[test], labels[test],
                                                      _zero_shot_weights(model, names, _templates(args.templates)))
    result.update(classes=len(names), cache_hits=cache.hits, cache_misses=cache.misses)
    curve = ", ".join(f"{k}-shot {v['mean']:.1%} [{v['lo']:.1%}, {v['hi']:.1%}]" for k, v in result["shots"].items())
    print(f"few-shot probes on {args.data} ({args.seeds} seeds, 95% t-interval): {curve}; "
          f"zero-shot {result['zero_shot_accuracy']:.1%} (n={result['n_test']})")
    return result


def run_robustness(args: argparse.Namespace) -> dict:
    from miniclip.robustness import cifar_corruptions, shapes_style_shift

    model, run_config, cache = _setup(args)
    kind, _, rest = args.data.partition(":")
    normalize = not args.no_normalize
    if kind == "shapes":
        from miniclip.data.loaders import shapes_config
        from miniclip.data.shapes import ShapesWorld

        # The world the checkpoint was trained in (its held-out pairs, languages, seed), at its resolution.
        world = ShapesWorld(shapes_config(run_config.get("data", {}).get("shapes", {}), model.config.image_size,
                                          run_config.get("train", {}).get("seed", 0)))
        n_test = int(rest or 500)
        result = shapes_style_shift(model, world, kinds=tuple(args.kinds), n_test=n_test, normalize=normalize,
                                    cache=cache, batch_size=args.batch_size)
        for k, r in result["kinds"].items():
            print(f"Shapes {k} ({r['classes']} classes), probe trained on {'+'.join(result['source'])}:")
            for shift, s in r["summary"].items():
                print(f"  {shift:>7}: zero-shot {s['zero_shot_shifted']:.1%} (source {s['zero_shot_clean']:.1%}), "
                      f"probe {s['probe_shifted']:.1%} (source {s['probe_clean']:.1%})")
    else:
        result = cifar_corruptions(model, args.data, _templates(args.templates), cache, n_shifted=args.n_shifted,
                                   normalize=normalize, batch_size=args.batch_size)
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


def _common(parser: argparse.ArgumentParser, data_default: str, data_help: str) -> None:
    parser.add_argument("--checkpoint", required=True, help="a run's final.safetensors (or last.safetensors)")
    parser.add_argument("--data", default=data_default, help=data_help)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on the last line")
    parser.add_argument("--batch-size", type=int, default=256, help="images per encoder batch")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default runs/<profile>/features)")
    parser.add_argument("--no-normalize", action="store_true",
                        help="probe raw encode_image features (OpenAI's README) instead of L2-normalised ones")
    parser.add_argument("--templates", default=None,
                        help="zero-shot template set from miniclip.zeroshot.TEMPLATE_SETS (default: one template)")


def add_probe_commands(subparsers) -> None:
    """Add `probe`, `fewshot` and `robustness` to an argparse sub-parsers object (the `eval` command's)."""
    test_sets = "a labelled test set: cifar10 | cifar100 | imagefolder:PATH (split 50/20/30%% into probe " \
                "train/val/test, stratified, seeded)"
    probe = subparsers.add_parser("probe", help="linear probe (logistic regression, C swept on a validation split)")
    _common(probe, "cifar10", test_sets)
    probe.add_argument("--split-seed", type=int, default=0)
    probe.set_defaults(func=_run(run_probe))

    fewshot = subparsers.add_parser("fewshot", help="k-shot linear probes beside zero-shot, several seeds")
    _common(fewshot, "cifar10", test_sets)
    fewshot.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    fewshot.add_argument("--seeds", type=int, default=5, help="how many seeds (0..N-1) per k")
    fewshot.add_argument("--split-seed", type=int, default=0)
    fewshot.set_defaults(func=_run(run_fewshot))

    robustness = subparsers.add_parser("robustness", help="accuracy under corruptions or Shapes style shift, "
                                                          "zero-shot against clean-trained probes")
    _common(robustness, "cifar10", "cifar10 (or another test set): corruptions; shapes[:N_TEST]: style shift in "
                                   "the checkpoint's Shapes world")
    robustness.add_argument("--n-shifted", type=int, default=1000, help="test images evaluated under each corruption")
    robustness.add_argument("--kinds", nargs="+", default=["colour", "shape"], help="Shapes class kinds to probe")
    robustness.set_defaults(func=_run(run_robustness))
