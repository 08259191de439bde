"""Measuring the representation: linear probes, few-shot probes (§3.2) and retrieval.

**Linear probe.** A frozen model is judged by how well a *linear* classifier on its image features does.
Following the paper (Appendix A.3, as we read it; the paper is not on this machine to re-check): scikit-learn's
`LogisticRegression` with the L-BFGS solver and at most 1,000 iterations; the inverse regularisation strength
`C` chosen on a validation split by a "parametric binary search" over 10^-6 … 10^6 (start with every second
decade, then repeatedly halve the step around the best value until it is 1/8 of a decade); then the probe is
refitted on train + validation and scored on the test split. `sweep_regularisation` does exactly that
search on our grid of `log10 C = -6, -6 + 1/8, …, 6` (97 points, of which it fits about 15).

**Features.** The paper probes penultimate-layer features (for its ViTs, the representation before the
projection into the joint space); OpenAI's README example fits `model.encode_image` outputs, unnormalised,
with `C=0.316`. We probe `encode_image` outputs (the joint embedding, the same vectors zero-shot uses) and
**L2-normalise them by default** (`normalize=True`): a global scale of the features is absorbed by the C
sweep anyway, normalising puts the probe on the same cosine geometry as zero-shot, and it gives a fixed `C` a
meaning where there is nothing to validate on (one-shot). `normalize=False` reproduces the README's choice.
The representation before the projection (`encode_image(x, project=False)`, cached by `test_set_features(...,
project=False)`) is probed beside it in chapter 8.

**Splits.** Only CIFAR-10's *test* set (10,000 images) is available locally, so `stratified_split` cuts
it, per class and with a fixed seed, into probe-train / validation / test parts (by default 50 / 20 / 30%:
5,000 / 2,000 / 3,000 images). All probe, few-shot and zero-shot numbers of a table are on the same test part.
These numbers therefore do not follow the paper's CIFAR-10 protocol (50,000 training images) and must be
labelled so.

**Few-shot** (Fig. 6): k examples per class drawn from the probe-train part, several seeds, mean and a 95%
t-interval over seeds. With k ≥ 2, `C` is chosen by stratified cross-validation (held-out log-likelihood)
*within the k-shot sample* (using the validation part would leak 200 labels per class into a "1-shot" result);
with k = 1 there is nothing to validate on and `C = 1` is used, strong regularisation under which the probe
behaves close to a nearest-class-mean classifier on normalised features.

**Retrieval** on Flickr8k's test split uses all five captions of every image: text→image asks, for each
caption, whether its image is among the k images most similar to it; image→text asks, for each image,
whether any of its captions is among the k most similar captions.
"""

from __future__ import annotations

import importlib
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import ThreadpoolController
from tqdm.auto import tqdm

from miniclip.eval.features import FeatureCache, tensors_fingerprint
from miniclip.eval.zeroshot import encode_images, encode_texts

# --------------------------------------------------------------------------------------------------------
# Splits and samples
# --------------------------------------------------------------------------------------------------------

DEFAULT_FRACTIONS = (0.5, 0.2, 0.3)  # probe-train / validation / test


def stratified_split(labels, fractions=DEFAULT_FRACTIONS, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Index arrays (sorted) that cut a labelled set into parts with the given fractions, class by class.

    Each class's indices are shuffled with `seed` and cut at `round(cumulative fraction * class size)`, so
    every part has the same class proportions as the whole (to within one image per class) and the split is a
    pure function of (labels, fractions, seed)."""
    labels = np.asarray(labels)
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-9) or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    bounds = np.cumsum((0.0,) + tuple(fractions))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(bounds * len(members)).astype(int)
        for p in range(len(fractions)):
            parts[p].append(members[cuts[p]:cuts[p + 1]])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def sample_few_shot(labels, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """`k` indices per class, drawn without replacement from `pool` (indices into `labels`) with `seed`.
    Raises if a class has fewer than `k` members in the pool."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels[pool]):
        members = pool[labels[pool] == c]
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} examples in the pool, fewer than k={k}")
        chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen))


# --------------------------------------------------------------------------------------------------------
# Logistic regression and its regularisation sweep
# --------------------------------------------------------------------------------------------------------

MAX_ITER = 1000
LOG10_C_RANGE = (-6.0, 6.0)
STEPS_PER_DECADE = 8


def prepare_features(features, normalize: bool = True) -> np.ndarray:
    """float64 numpy features for scikit-learn, L2-normalised per row when `normalize`."""
    x = torch.as_tensor(features).float()
    if normalize:
        x = F.normalize(x, dim=-1)
    return x.double().numpy()


_thread_pools = None


def single_threaded():
    """A context in which BLAS and OpenMP use one thread (see `fit_logistic` for why). The controller
    is made once, after scikit-learn is imported, because finding the thread pools costs ~15 ms a time."""
    global _thread_pools
    if _thread_pools is None:
        importlib.import_module("sklearn.linear_model")  # load its OpenMP runtime before the pools are listed

        _thread_pools = ThreadpoolController()
    return _thread_pools.limit(limits=1)


def fit_logistic(x: np.ndarray, y: np.ndarray, C: float, max_iter: int = MAX_ITER):
    """A multinomial L-BFGS logistic regression (the paper's probe). Hitting `max_iter` is not an error, as
    in the paper (which caps at 1,000); the warning is silenced because the sweep triggers it at huge C.

    BLAS runs single-threaded here: these problems are small (thousands x hundreds), and with several
    threads on a busy machine the threads' synchronisation costs more than the arithmetic (a 5,000 x 256
    fit took 5 s with two threads and 0.2 s with one on the 2-core machine this was written on)."""
    classifier = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=0)
    with warnings.catch_warnings(), single_threaded():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(x, y)
    return classifier


def probe_accuracy(classifier, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a fitted probe (scikit-learn's `score`), single-threaded like the fit."""
    with single_threaded():
        return float(classifier.score(x, y))


def parametric_binary_search(score, lo: int, hi: int, start_step: int, map_scores=map) -> tuple[int, dict[int, float]]:
    """Maximise `score(i)` over integers `lo..hi`: evaluate every `start_step`-th point, then repeatedly
    halve the step and evaluate the two neighbours of the best point so far, until the step is 1.

    The points of one round do not depend on each other, so each round is handed to `map_scores(score,
    points)` at once: the built-in `map` evaluates them one after another, a thread pool's `map` side by side
    (same points, same scores). Returns the best index and every score evaluated. Ties go to the smaller index
    (for C: the stronger regularisation)."""
    scores: dict[int, float] = {}

    def best() -> int:
        return max(sorted(scores), key=lambda i: scores[i])  # max keeps the first (smallest) of equal scores

    def evaluate(points: list[int]) -> None:
        scores.update(zip(points, map_scores(score, points)))

    evaluate(sorted(set(range(lo, hi + 1, start_step)) | {hi}))
    step = start_step
    while step > 1:
        step //= 2
        b = best()
        evaluate([i for i in (b - step, b + step) if lo <= i <= hi and i not in scores])
    return best(), scores


def probe_workers() -> int:
    """How many probe fits run side by side: one per core this process may use (each fit is single-threaded,
    see `fit_logistic`), at most 8, since a round of the C search has at most 7 independent points."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8))


def sweep_regularisation(train_x, train_y, val_x, val_y, log10_range=LOG10_C_RANGE,
                         steps_per_decade: int = STEPS_PER_DECADE, max_iter: int = MAX_ITER) -> tuple[float, dict]:
    """The C with the best validation accuracy, found by `parametric_binary_search` on the grid
    `log10 C = log10_range[0] + i / steps_per_decade`, starting two decades apart, the fits of each round in
    threads (`probe_workers`; L-BFGS spends its time in BLAS and scikit-learn's loss, which release the GIL).
    Returns `(C, {C: val acc})`."""
    lo_exp, hi_exp = log10_range
    n = int(round((hi_exp - lo_exp) * steps_per_decade))

    def c_of(i: int) -> float:
        return float(10 ** (lo_exp + i / steps_per_decade))

    def score(i: int) -> float:
        return probe_accuracy(fit_logistic(train_x, train_y, c_of(i), max_iter), val_x, val_y)

    # Single-threaded BLAS for the whole sweep, so that the threads' own limits (entered and left at different
    # times) always restore one thread, never the process's default.
    with single_threaded(), ThreadPoolExecutor(probe_workers()) as pool:
        best, scores = parametric_binary_search(score, 0, n, max(1, 2 * steps_per_decade), pool.map)
    return c_of(best), {c_of(i): s for i, s in sorted(scores.items())}


def train_probe(train_x, train_y, val_x, val_y, log10_range=LOG10_C_RANGE, steps_per_decade: int = STEPS_PER_DECADE,
                max_iter: int = MAX_ITER) -> tuple:
    """Sweep C on (train, val), then refit on train + val: `(classifier, C, {C: val accuracy})`. Features are
    used as given (see `prepare_features`)."""
    C, sweep = sweep_regularisation(train_x, train_y, val_x, val_y, log10_range, steps_per_decade, max_iter)
    classifier = fit_logistic(np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y]), C, max_iter)
    return classifier, C, sweep


def linear_probe(features, labels, split: tuple[np.ndarray, np.ndarray, np.ndarray], normalize: bool = True,
                 log10_range=LOG10_C_RANGE, steps_per_decade: int = STEPS_PER_DECADE,
                 max_iter: int = MAX_ITER) -> dict:
    """The paper's linear probe on frozen features: sweep C on (train, val), refit on train + val, score on test.

    `split` is `(train, val, test)` index arrays (e.g. from `stratified_split`). Returns `C`,
    `val_accuracy` (at that C), `test_accuracy`, the `sweep` ({C: val accuracy}), the part sizes, and the
    fitted `classifier` (scikit-learn; drop it before writing JSON)."""
    x, y = prepare_features(features, normalize), np.asarray(labels)
    train, val, test = split
    classifier, C, sweep = train_probe(x[train], y[train], x[val], y[val], log10_range, steps_per_decade, max_iter)
    return dict(C=C, val_accuracy=sweep[C], test_accuracy=probe_accuracy(classifier, x[test], y[test]), sweep=sweep,
                n_train=len(train), n_val=len(val), n_test=len(test), normalize=normalize, classifier=classifier)


def cached_linear_probe(features, labels, split: tuple[np.ndarray, np.ndarray, np.ndarray], normalize: bool = True,
                        cache: FeatureCache | None = None) -> dict:
    """`linear_probe`'s numbers (all but the fitted classifier), kept in the feature cache: chapters that probe
    the same features on the same split share one C search, the slow part of a probe (tens of seconds for
    a 1,024-wide representation on 2 cores). The key is a SHA-256 of the features, labels and split, with the
    protocol's constants and scikit-learn's version, so any change to what the search would see recomputes it."""
    train, val, test = (torch.as_tensor(np.asarray(part, dtype=np.int64)) for part in split)
    data = {"features": torch.as_tensor(features).float(), "labels": torch.as_tensor(np.asarray(labels)),
            "train": train, "val": val, "test": test}
    key = {"name": "linear-probe", "data": tensors_fingerprint(data), "normalize": normalize,
           "protocol": [list(LOG10_C_RANGE), STEPS_PER_DECADE, MAX_ITER], "scikit-learn": sklearn.__version__}

    def compute():
        r = linear_probe(features, labels, split, normalize)
        numbers = {k: torch.tensor(float(r[k]), dtype=torch.float64) for k in ("C", "val_accuracy", "test_accuracy")}
        return {**numbers, "sweep_C": torch.tensor(list(r["sweep"]), dtype=torch.float64),
                "sweep_accuracy": torch.tensor(list(r["sweep"].values()), dtype=torch.float64)}

    out = (cache or FeatureCache()).get_or_compute(key, compute)
    return dict(C=out["C"].item(), val_accuracy=out["val_accuracy"].item(), test_accuracy=out["test_accuracy"].item(),
                sweep=dict(zip(out["sweep_C"].tolist(), out["sweep_accuracy"].tolist())), n_train=len(train),
                n_val=len(val), n_test=len(test), normalize=normalize)


# --------------------------------------------------------------------------------------------------------
# Few-shot
# --------------------------------------------------------------------------------------------------------

ONE_SHOT_C = 1.0
FEW_SHOT_LOG10_C = (-2.0, 4.0)  # the cross-validated range for k >= 2 (normalised features), 4 steps a decade


def few_shot_regularisation(x: np.ndarray, y: np.ndarray, k: int, max_iter: int = MAX_ITER) -> float:
    """C for a k-shot probe: `ONE_SHOT_C` for k = 1, else the best stratified `min(k, 4)`-fold
    cross-validation within the sample, by the same binary search on a coarser grid. The criterion is the
    held-out log-likelihood rather than accuracy: with 2-16 images per class, accuracy over a fold takes few
    values and ties across many C (measured on CIFAR-10: the chosen C then scattered from 0.01 to 1,800 across
    seeds)."""
    if k < 2:
        return ONE_SHOT_C

    folds = list(StratifiedKFold(n_splits=min(k, 4), shuffle=True, random_state=0).split(x, y))
    lo_exp, hi_exp = FEW_SHOT_LOG10_C
    per_decade = 4

    def c_of(i: int) -> float:
        return float(10 ** (lo_exp + i / per_decade))

    classes = np.unique(y)

    def score(i: int) -> float:  # held-out log-likelihood: smooth in C, where accuracy on a few images ties
        losses = []
        for tr, te in folds:
            classifier = fit_logistic(x[tr], y[tr], c_of(i), max_iter)
            with single_threaded():
                losses.append(log_loss(y[te], classifier.predict_proba(x[te]), labels=classes))
        return -float(np.mean(losses))

    best, _ = parametric_binary_search(score, 0, int((hi_exp - lo_exp) * per_decade), 2 * per_decade)
    return c_of(best)


def mean_interval(values, confidence: float = 0.95) -> dict:
    """Mean of `values` and a two-sided Student-t confidence interval for it (`lo == hi == mean` for one
    value: no spread can be estimated)."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return dict(mean=mean, lo=mean, hi=mean, n=len(v))

    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return dict(mean=mean, lo=mean - half, hi=mean + half, n=len(v))


def zero_shot_accuracy(features, labels, class_weights: torch.Tensor) -> float:
    """Top-1 accuracy of the zero-shot classifier `class_weights` [C, D] (from
    `miniclip.eval.zeroshot.classifier_weights`) on image features (normalised here)."""
    x = F.normalize(torch.as_tensor(features).float(), dim=-1)
    predicted = (x @ class_weights.float().t().to(x.device)).argmax(1)
    return (predicted == torch.as_tensor(labels).to(x.device)).float().mean().item()


def equivalent_shots(ks, means, target: float) -> float | None:
    """The k at which a few-shot curve (mean accuracy `means` at shots `ks`, increasing k) reaches `target`,
    interpolated linearly in log2 k between the measured points, as the paper's Fig. 7 reads its "equivalent
    shots" off the curve; None when the curve never reaches it, 0 when even the first probe is above it."""
    if means[0] >= target:
        return 0.0
    for (k0, m0), (k1, m1) in zip(zip(ks, means), zip(ks[1:], means[1:])):
        if m0 < target <= m1:
            return float(2 ** (np.log2(k0) + (target - m0) / (m1 - m0) * (np.log2(k1) - np.log2(k0))))
    return None


def few_shot_probe(x: np.ndarray, y: np.ndarray, pool: np.ndarray, k: int, seed: int, max_iter: int = MAX_ITER):
    """One k-shot probe: `k` examples per class from `pool` drawn with `seed`, C from
    `few_shot_regularisation`, fitted on the sample. Returns `(classifier, C)`."""
    chosen = sample_few_shot(y, pool, k, seed)
    C = few_shot_regularisation(x[chosen], y[chosen], k, max_iter)
    return fit_logistic(x[chosen], y[chosen], C, max_iter), C


def few_shot(features, labels, train_pool: np.ndarray, test: np.ndarray, shots=(1, 2, 4, 8, 16),
             seeds=(0, 1, 2, 3, 4), normalize: bool = True, max_iter: int = MAX_ITER, progress: bool = True) -> dict:
    """k-shot linear probes for each k in `shots`, one per seed, scored on `test`.

    Returns `{"shots": {k: {"accuracy": [per seed], "C": [per seed], "mean", "lo", "hi"}}, ...}`; the
    interval is a 95% t-interval over seeds. Add zero-shot with `zero_shot_accuracy` on the same `test`.
    """
    x, y = prepare_features(features, normalize), np.asarray(labels)
    out = {}
    jobs = [(k, s) for k in shots for s in seeds]
    for k, seed in tqdm(jobs, desc="few-shot probes", leave=False, disable=not progress):
        classifier, C = few_shot_probe(x, y, train_pool, k, seed, max_iter)
        accuracy = probe_accuracy(classifier, x[test], y[test])
        entry = out.setdefault(k, {"accuracy": [], "C": [], "seeds": []})
        entry["accuracy"].append(accuracy)
        entry["C"].append(C)
        entry["seeds"].append(seed)
    for entry in out.values():
        entry.update({key: val for key, val in mean_interval(entry["accuracy"]).items() if key != "n"})
    return dict(shots=out, n_test=len(test), normalize=normalize)


# --------------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------------


def retrieval_recall(image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor,
                     ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways from normalised features; `text_to_image[t]` is the index of caption t's image.

    Ties count against the model: a wrong item that scores exactly as high as the right one is ranked
    before it, so a constant model gets recall 0 at k < N, not 100%."""
    sim = image_features @ text_features.t()  # [images, texts]
    text_to_image = text_to_image.to(sim.device)
    n_images, n_texts = sim.shape
    # text -> image: how many images score at least as high as the caption's own image (the rest of its rank)
    own = sim[text_to_image, torch.arange(n_texts, device=sim.device)]
    t2i_rank = (sim >= own[None, :]).sum(0) - 1
    # image -> text: the best-scoring caption of the image, against every caption of other images
    is_own = text_to_image[None, :] == torch.arange(n_images, device=sim.device)[:, None]
    best_own = sim.masked_fill(~is_own, float("-inf")).amax(1)
    i2t_rank = ((sim >= best_own[:, None]) & ~is_own).sum(1)
    out = {}
    for k in ks:
        out[f"text_to_image_R@{k}"] = (t2i_rank < k).float().mean().item()
        out[f"image_to_text_R@{k}"] = (i2t_rank < k).float().mean().item()
    return out


@torch.no_grad()
def evaluate_retrieval(model, dataset, ks=(1, 5, 10), batch_size: int = 256) -> dict:
    """Flickr8k-style retrieval: `dataset` yields (image, caption) and has `caption_texts()` and
    `caption_image_index()` listing every caption of every image."""
    images = []
    for i in range(0, len(dataset), batch_size):
        items = [dataset[j] for j in range(i, min(i + batch_size, len(dataset)))]
        if any(item is None for item in items):
            raise RuntimeError("an image of the retrieval set could not be decoded; retrieval needs every image")
        images.append(encode_images(model, torch.stack([im for im, _ in items])))
    image_features = torch.cat(images)
    text_features = encode_texts(model, dataset.caption_texts())
    result = retrieval_recall(image_features, text_features, torch.tensor(dataset.caption_image_index()), ks)
    result.update(images=len(image_features), captions=len(text_features))
    return result
