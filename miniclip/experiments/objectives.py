"""Contrastive vs predictive objectives (the paper's Fig. 2), at small scale on Shapes.

CLIP's §2.3 tells how its authors first tried to *predict* the caption of an image (a transformer language
model, as VirTex does), then to predict only its *bag of words*, and found that matching images to captions
contrastively reached the same zero-shot ImageNet accuracy with far fewer images (Fig. 2: bag-of-words
prediction was 3x more efficient than the captioning LM, and the contrastive loss 4x more again). Here the
three objectives train the same image encoder on the same Shapes stream, at the same batch size,
learning-rate schedule and samples seen:

- `CaptioningLM`: the image's embedding is the first token of a causal transformer that predicts the
  caption token by token. Zero-shot: the class whose prompt has the highest log-likelihood given the image.
- `BagOfWords`: the image's embedding predicts, independently for every vocabulary word, whether it occurs
  in the caption (sigmoid, binary cross-entropy). Zero-shot: the class whose prompt's words are, on
  average, the most probable.
- contrastive: a CLIP, trained by our `Trainer` (see `training.py`).

Both predictive models read text through a compact vocabulary: the byte-pair tokens the Shapes world
actually uses (a few hundred), not CLIP's 49,408. Predicting over the full vocabulary would spend most of
their compute on an output layer for tokens that never occur; the contrastive text tower is unaffected (its
embedding table is a lookup).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from miniclip.data.loaders import train_batches
from miniclip.data.shapes_text import CLASS_KINDS
from miniclip.experiments.shapes_eval import CHANCE, ShapesZeroShot, clip_scorer, shapes_world
from miniclip.experiments.store import cached_part, derived_config
from miniclip.experiments.training import eval_points, train_contrastive
from miniclip.model import CLIPConfig, LayerNorm, QuickGELU, Transformer, build_image_encoder
from miniclip.tokenizer import default_tokenizer
from miniclip.train.trainer import learning_rate, param_groups

PAD, UNK, EOT = 0, 1, 2  # the compact vocabulary's special ids; words start at 3


class CompactVocabulary:
    """The BPE tokens of a closed corpus, renumbered 3, 4, …; anything else reads as UNK."""

    def __init__(self, bpe_ids: list[int]):
        self.bpe_ids = sorted(set(bpe_ids))
        self.index = {b: i + 3 for i, b in enumerate(self.bpe_ids)}

    @classmethod
    def from_texts(cls, texts: list[str]) -> "CompactVocabulary":
        tok = default_tokenizer()
        return cls([b for t in texts for b in tok.encode(t)])

    def __len__(self) -> int:
        return len(self.bpe_ids) + 3

    def encode(self, texts: list[str]) -> list[list[int]]:
        tok = default_tokenizer()
        return [[self.index.get(b, UNK) for b in tok.encode(t)] for t in texts]


def shapes_vocabulary(world, n_captions: int = 4096) -> CompactVocabulary:
    """The vocabulary of a Shapes world: its first training captions (any language it speaks) and its prompts.
    Captions are cheap without pixels: `scenes` + `captions` draw nothing."""
    texts = world.captions(world.scenes(range(n_captions), "train"))
    texts += [p for kind in CLASS_KINDS for p in world.class_prompts(kind)]
    return CompactVocabulary.from_texts(texts)


def pad(sequences: list[list[int]], eot: bool = True, max_length: int = 77) -> torch.Tensor:
    """[N, L] LongTensor of the sequences (each followed by EOT if asked), right-padded with PAD. Like CLIP's
    tokenizer, a sequence longer than `max_length` (EOT included) is cut, keeping its EOT."""
    rows = [list(s[:max_length - 1]) + [EOT] if eot else list(s[:max_length]) for s in sequences]
    out = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def image_encoder(c: CLIPConfig, output_dim: int) -> nn.Module:
    """The image tower a CLIP of config `c` would have (ViT or ModifiedResNet, same init), with its own output size."""
    encoder = build_image_encoder(c, output_dim)
    encoder.init_weights()
    return encoder


class CaptioningLM(nn.Module):
    """Image encoder + causal transformer decoder: p(caption | image) = prod_t p(token_t | image, tokens<t).

    The decoder's input is [image embedding, t_1, …, t_n] and its targets [t_1, …, t_n, EOT]: the image
    embedding is a prefix token, so every position attends to it (the simplest conditioning, as in
    prefix-LM captioners). The decoder has the size of CLIP's text tower."""

    def __init__(self, config: CLIPConfig, vocab_size: int):
        super().__init__()
        self.max_length = max_length = config.context_length  # targets are at most this long (`pad` cuts)
        width = config.text_width
        act = QuickGELU if config.quick_gelu else nn.GELU
        self.visual = image_encoder(config, width)
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(max_length, width) * 0.01)
        self.transformer = Transformer(width, config.text_layers, width // config.head_width, act, causal=True)
        self.transformer.init_weights()
        self.ln_final = LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def token_logits(self, images: torch.Tensor, targets: torch.Tensor, image_features=None) -> torch.Tensor:
        """[N, L, V] logits for predicting `targets` [N, L] (ending in EOT, padded) one position at a time."""
        prefix = self.visual(images) if image_features is None else image_features  # [N, width]
        inputs = targets[:, :-1]  # t_1 … t_{L-1}; the last target has nothing after it to predict
        x = torch.cat([prefix[:, None], self.token_embedding(inputs)], dim=1)
        x = x + self.positional_embedding[:x.shape[1]]
        return self.head(self.ln_final(self.transformer(x)))

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the real (non-PAD) target tokens."""
        logits = self.token_logits(images, targets)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)

    @torch.no_grad()
    def log_likelihood(self, images: torch.Tensor, prompts: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """[N_images, N_prompts]: log p(prompt | image), summed over each prompt's tokens and its EOT.

        The image is encoded once; each (image, prompt) pair is then one decoder pass."""
        features = self.visual(images)
        n, c = len(features), len(prompts)
        pair_feat = features.repeat_interleave(c, 0)  # pair (i, j) at row i*c + j
        pair_tok = prompts.repeat(n, 1)
        out = []
        for s in range(0, n * c, chunk):
            t = pair_tok[s:s + chunk]
            logp = self.token_logits(None, t, pair_feat[s:s + chunk]).log_softmax(-1)
            token_logp = logp.gather(-1, t[..., None])[..., 0]
            out.append((token_logp * (t != PAD)).sum(1))
        return torch.cat(out).view(n, c)


class BagOfWords(nn.Module):
    """Image encoder -> independent probability that each vocabulary word occurs in the caption."""

    def __init__(self, config: CLIPConfig, vocab_size: int):
        super().__init__()
        self.visual = image_encoder(config, config.text_width)
        self.ln = LayerNorm(config.text_width)
        self.head = nn.Linear(config.text_width, vocab_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln(self.visual(images)))  # [N, V] logits

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy against the caption's multi-hot word set (PAD and EOT are not words)."""
        return F.binary_cross_entropy_with_logits(self(images), word_sets(targets, self.head.out_features))

    @torch.no_grad()
    def prompt_scores(self, images: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """[N_images, N_prompts]: mean over each prompt's distinct words of log p(word occurs | image)."""
        return bag_of_words_scores(self(images), word_sets(prompts, self.head.out_features))


def word_sets(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[N, V] multi-hot: which words each (padded) token sequence contains; PAD and EOT excluded."""
    hot = torch.zeros(len(tokens), vocab_size, device=tokens.device)
    hot.scatter_(1, tokens, 1.0)
    hot[:, [PAD, EOT]] = 0
    return hot


def bag_of_words_scores(logits: torch.Tensor, prompt_words: torch.Tensor) -> torch.Tensor:
    """Mean log-sigmoid of the prompt's words: [N, V] logits x [C, V] multi-hot -> [N, C].

    The mean (not the sum) keeps a prompt with an extra word ("an orange …") from losing just for being longer."""
    return F.logsigmoid(logits) @ prompt_words.t() / prompt_words.sum(1).clamp(min=1)


# ----------------------------------------------------------------------------- training the predictive models


def predictive_scorer(model: nn.Module, vocab: CompactVocabulary):
    """The ShapesZeroShot scorer of a predictive model."""
    def scores(images, prompts):
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        tokens = pad(vocab.encode(prompts), max_length=getattr(model, "max_length", 77)).to(device)
        try:
            if isinstance(model, CaptioningLM):
                return model.log_likelihood(images.to(device), tokens)
            return model.prompt_scores(images.to(device), tokens)
        finally:
            model.train(was_training)

    return scores


def train_predictive(model: nn.Module, config, vocab: CompactVocabulary, *, evaluate=None, eval_steps=(),
                     progress: bool = True, desc: str = "") -> dict:
    """Train a predictive model on the config's Shapes stream with the trainer's optimizer recipe
    (AdamW, decay on weight matrices only, warmup + cosine), evaluating at `eval_steps`."""
    o = config.optim
    torch.manual_seed(config.train.seed)
    optimizer = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=o.betas, eps=o.eps)
    batches = train_batches(config)
    curve, losses, t0 = [], [], time.time()

    def record(step):
        point = {"step": step, "samples": step * o.batch_size,
                 "train_loss": sum(losses) / len(losses) if losses else None}
        if evaluate is not None:
            point.update(evaluate(predictive_scorer(model, vocab)))
        curve.append(point)
        losses.clear()

    model.train()
    if 0 in eval_steps:
        record(0)
    for step in tqdm(range(o.steps), desc=desc, disable=not progress, dynamic_ncols=True):
        images, captions = next(batches)
        loss = model.loss(images, pad(vocab.encode(captions), max_length=config.model.context_length))
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"{desc}: non-finite loss at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, o)
        optimizer.step()
        losses.append(loss.item())
        if step + 1 in eval_steps:
            record(step + 1)
    return {"model": model.eval(), "curve": curve, "wall_s": time.time() - t0}


# ----------------------------------------------------------------------------- the experiment


def samples_to_reach(samples: list[float], accuracy: list[float], target: float) -> float | None:
    """The first number of samples at which a curve reaches `target`, interpolating linearly between
    evaluations; None if it never does."""
    for i, (s, a) in enumerate(zip(samples, accuracy)):
        if a >= target:
            if i == 0:
                return float(s)
            s0, a0 = samples[i - 1], accuracy[i - 1]
            return float(s0 + (target - a0) / (a - a0) * (s - s0))
    return None


def efficiency_ratio(reference: dict, other: dict, metric: str) -> dict:
    """How many times fewer samples `reference` needs to reach the best accuracy `other` reaches.

    Both are curves (lists of points with `samples` and `metric`). The target is `other`'s best accuracy; the
    ratio is (samples `other` needs for it) / (samples `reference` needs). Above 1: the reference is more
    sample-efficient. None when the reference never reaches the target (then the inverse question is the
    right one), or when `other` never rises above its starting point (nothing learned to compare)."""
    s_o, a_o = [p["samples"] for p in other], [p[metric] for p in other]
    s_r, a_r = [p["samples"] for p in reference], [p[metric] for p in reference]
    target = max(a_o)
    out = {"metric": metric, "target": target, "ratio": None}
    if target <= a_o[0]:
        out["note"] = "the other objective never improved on its initial accuracy"
        return out
    need_o, need_r = samples_to_reach(s_o, a_o, target), samples_to_reach(s_r, a_r, target)
    out.update(other_samples=need_o, reference_samples=need_r)
    if need_r is None:
        out["note"] = "the reference never reached the target within the budget"
    elif need_r == 0:  # e.g. an untrained reference already scores the other's best: a gain within the noise
        out["note"] = "the reference scored the target before training: the other's best is within initial noise"
    else:
        out["ratio"] = need_o / need_r
    return out


RATIO_METRICS = ("seen_colour", "seen_shape", "seen_colour_shape", "heldout_colour_shape")


def run(settings: dict, profile: str) -> dict:
    """Zero-shot accuracy against samples seen for the three objectives, and the contrastive efficiency ratios.

    Settings: `base` (a training config), `overrides` (applied to it: steps, batch size, …), `eval_points`
    (how many evaluations after step 0), `eval_images` (pictures per zero-shot set)."""
    config = derived_config(settings["base"], settings.get("overrides"), name="objectives", profile=profile)
    if config.data.dataset != "shapes":
        raise ValueError("the objectives experiment runs on Shapes: its base config must have data.dataset=shapes")
    world = shapes_world(config)
    zeroshot = ShapesZeroShot(world, settings["eval_images"])
    steps = eval_points(config.optim.steps, settings["eval_points"])
    vocab = shapes_vocabulary(world)

    def contrastive():
        trained = train_contrastive(config, evaluate=lambda m: zeroshot(clip_scorer(m)), eval_steps=steps,
                                    desc="contrastive")
        return {"curve": trained["curve"], "wall_s": trained["wall_s"]}

    def predictive(name, model_class):
        def train():
            torch.manual_seed(config.train.seed)
            trained = train_predictive(model_class(config.model, len(vocab)), config, vocab, evaluate=zeroshot,
                                       eval_steps=steps, desc=name)
            return {"curve": trained["curve"], "wall_s": trained["wall_s"]}
        return train

    # Each objective's curve is cached as it finishes, so a stopped run resumes at the next objective.
    key = {"config": config.to_dict(), "eval_steps": steps, "eval_images": settings["eval_images"],
           "vocabulary": vocab.bpe_ids}
    curves, wall = {}, {}
    for name, compute in (("contrastive", contrastive), ("bag_of_words", predictive("bag_of_words", BagOfWords)),
                          ("captioning_lm", predictive("captioning_lm", CaptioningLM))):
        part = cached_part("objectives", name, profile, key, compute)
        curves[name], wall[name] = part["curve"], part["wall_s"]

    ratios = {other: {m: efficiency_ratio(curves["contrastive"], curves[other], m) for m in RATIO_METRICS}
              for other in ("bag_of_words", "captioning_lm")}
    return {"curves": curves, "efficiency_ratio": ratios, "train_wall_s": wall, "vocabulary_size": len(vocab),
            "chance": CHANCE, "samples_seen": config.optim.steps * config.optim.batch_size,
            "batch_size": config.optim.batch_size, "config": config.to_dict(),
            "eval_images_per_set": settings["eval_images"]}
