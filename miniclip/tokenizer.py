"""CLIP's text tokenizer: byte-level byte-pair encoding (BPE), written from scratch.

CLIP's text encoder never sees characters. It sees integer ids from a fixed vocabulary of
49,408 entries, and the tokenizer is the function that turns a caption into those ids. To load
OpenAI's pretrained weights, or to compare with open_clip, we must reproduce that function
exactly: a single different id changes the text embedding. The tests check our ids against
`open_clip.tokenize`, id for id, on every Flickr8k caption and on a corpus of awkward strings.

The pipeline, top to bottom, is:

1. clean the text (repair broken Unicode, undo HTML escapes, collapse whitespace, lowercase);
2. split it into "words" with a regular expression (letter runs, single digits, punctuation runs);
3. map each word's UTF-8 bytes to printable characters, so that every possible input has a
   spelling in the vocabulary and nothing is ever out of vocabulary;
4. run BPE on each word: start from single characters and repeatedly glue together the
   adjacent pair that was most frequent in CLIP's training corpus (the "merges" list);
5. look up each resulting piece in the vocabulary, and wrap the sequence as
   `<start_of_text> ... <end_of_text>`, padded with zeros to a fixed context length.

The merges file `bpe_simple_vocab_16e6.txt.gz` ships inside this package (it comes from OpenAI's
CLIP, MIT licence, see `LICENSE-openai-clip.txt`), so miniclip needs no open_clip at runtime.
"""

from __future__ import annotations

import gzip
import html
import itertools
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import ftfy
import regex  # not `re`: the standard library has no \p{L} (any letter) or \p{N} (any number)
import torch

MERGES_PATH = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")

DEFAULT_CONTEXT_LENGTH = 77  # every OpenAI CLIP model reads exactly 77 tokens

SOT_TEXT = "<start_of_text>"
EOT_TEXT = "<end_of_text>"

# CLIP's vocabulary has 49,408 entries:
#   256 single bytes + 256 single bytes that end a word (`</w>`) + 48,894 merges + 2 special tokens.
# The merges file holds about 262k merges, ranked from most to least frequent; CLIP keeps
# only the first 48,894 so that the total lands on 49,408.
NUM_MERGES = 49408 - 2 * 256 - 2

# The end-of-word marker. BPE pieces that finish a word carry it, so "the" at the end of a
# word ("the</w>") and "the" inside "theory" are different tokens. It is also how `decode`
# knows where to put spaces back.
END_OF_WORD = "</w>"


# --------------------------------------------------------------------------------------------
# Step 1: cleaning
# --------------------------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Normalise a caption the way CLIP (open_clip's default `clean="lower"`) does.

    The order matters and follows open_clip 3.x exactly:
    ftfy -> html.unescape twice -> strip -> collapse whitespace -> strip -> lowercase.
    """
    # ftfy repairs mojibake ("cafÃ©" -> "café"), normalises to NFC, and removes control
    # characters. Web captions are full of these. Note that ftfy already unescapes HTML
    # entities itself, but only when the text does not look like HTML (contains no "<").
    text = ftfy.fix_text(text)
    # Captions scraped from the web are often escaped twice ("&amp;amp;"), so unescape twice.
    text = html.unescape(html.unescape(text))
    # str.split() with no argument splits on any run of Unicode whitespace (tabs, newlines,
    # no-break spaces...), so joining with " " collapses every run into one plain space.
    text = " ".join(text.split())
    # Lowercase last. CLIP's vocabulary was built from lowercased text, so uppercase letters
    # would otherwise fall back to byte-level pieces the model rarely saw.
    return text.lower()


# --------------------------------------------------------------------------------------------
# Step 2: pre-tokenising regex
# --------------------------------------------------------------------------------------------

# BPE never merges across the boundaries this pattern draws. Alternatives are tried left to
# right at each position:
#   - the two special tokens, so that a literal "<end_of_text>" in a caption becomes the
#     special id (this is what CLIP does; we reproduce it rather than judge it);
#   - English contractions, split off as their own words ("dog's" -> "dog", "'s");
#   - a run of letters in any script;
#   - a single digit (numbers are spelled digit by digit: "2024" -> "2", "0", "2", "4");
#   - a run of anything else that is not whitespace: punctuation, symbols, emoji, and also
#     combining marks (a lone accent that did not compose with its letter lands here).
# Whitespace matches nothing, so it simply disappears; spaces live on only as `</w>`.
# IGNORECASE looks redundant after lowercasing, but it is not quite: it also lets `'s` match
# "'ſ" (long s: already lowercase, so .lower() keeps it, yet it case-folds to "s"). We keep the
# flag to match CLIP id for id.
PRETOKENIZE_PATTERN = regex.compile(
    regex.escape(SOT_TEXT)
    + "|"
    + regex.escape(EOT_TEXT)
    + r"""|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


# --------------------------------------------------------------------------------------------
# Step 3: bytes as printable characters
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """A one-to-one map from each of the 256 byte values to a printable Unicode character.

    BPE runs on strings, and we want every possible UTF-8 byte to be a symbol, so that any text
    (Chinese, emoji, binary garbage) can be spelled and nothing is out of vocabulary. Bytes that
    are already visible Latin-1 characters map to themselves; the rest (control characters,
    space, a few odd ones) are moved to code points 256, 257, ... so that no symbol is whitespace
    or invisible, which would make the merges file ambiguous to write down.
    """
    visible = [
        *range(ord("!"), ord("~") + 1),  # printable ASCII
        *range(ord("¡"), ord("¬") + 1),  # printable Latin-1, part one
        *range(ord("®"), ord("ÿ") + 1),  # printable Latin-1, part two (skips the soft hyphen)
    ]
    table = {b: chr(b) for b in visible}
    next_free = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(next_free)
            next_free += 1
    return table


# --------------------------------------------------------------------------------------------
# Steps 4 and 5: the tokenizer
# --------------------------------------------------------------------------------------------


def load_merges(path: Path = MERGES_PATH, num_merges: int = NUM_MERGES) -> list[tuple[str, str]]:
    """Read the first `num_merges` merge rules ("a b" per line) from the gzipped merges file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        next(f)  # the first line is a version header, not a merge
        lines = itertools.islice(f, num_merges)  # stop reading early: we need ~19% of the file
        merges = [tuple(line.split()) for line in lines]
    assert len(merges) == num_merges and all(len(m) == 2 for m in merges), "corrupt merges file"
    return merges


class Tokenizer:
    """Byte-level BPE tokenizer producing exactly the ids of OpenAI's CLIP."""

    def __init__(self, merges_path: Path | str = MERGES_PATH):
        merges = load_merges(Path(merges_path))

        # The vocabulary, in id order. The order is fixed by the pretrained weights: id 320 is
        # "a</w>" because that is row 320 of CLIP's token-embedding matrix.
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {ch: b for b, ch in self.byte_encoder.items()}
        single_bytes = list(self.byte_encoder.values())
        vocab = (
            single_bytes  # ids 0..255
            + [ch + END_OF_WORD for ch in single_bytes]  # ids 256..511
            + [left + right for left, right in merges]  # one new token per merge rule
            + [SOT_TEXT, EOT_TEXT]  # ids 49406 and 49407
        )
        self.encoder: dict[str, int] = {token: i for i, token in enumerate(vocab)}
        self.decoder: dict[int, str] = dict(enumerate(vocab))
        assert len(self.encoder) == len(vocab), "vocabulary entries must be unique"

        # A merge's rank is its line number: lower rank = more frequent pair = merged first.
        self.merge_ranks: dict[tuple[str, str], int] = {pair: i for i, pair in enumerate(merges)}

        self.sot_token_id = self.encoder[SOT_TEXT]
        self.eot_token_id = self.encoder[EOT_TEXT]
        self.vocab_size = len(vocab)

        # Word -> ids. Natural language is Zipfian: a few thousand words make up most of any
        # caption set, so after a short warm-up almost every word is a dictionary hit and BPE
        # hardly runs at all. (Unbounded, like CLIP's; fine for captions, a memory cost for
        # tokenizing an open-ended stream of unique strings.)
        self._cache: dict[str, tuple[int, ...]] = {
            SOT_TEXT: (self.sot_token_id,),
            EOT_TEXT: (self.eot_token_id,),
        }

    # ---- BPE on one word ---------------------------------------------------------------

    def bpe(self, word: str) -> list[str]:
        """Split one byte-encoded word into vocabulary pieces by applying merges in rank order.

        Start from single characters, the last one carrying the end-of-word marker. Then,
        repeatedly, find the adjacent pair with the lowest merge rank and merge every occurrence
        of it (left to right, non-overlapping). Stop when no adjacent pair is a known merge.
        """
        parts = list(word[:-1]) + [word[-1] + END_OF_WORD]
        while len(parts) > 1:
            ranked = [
                (self.merge_ranks[pair], i)
                for i, pair in enumerate(zip(parts, parts[1:]))
                if pair in self.merge_ranks
            ]
            if not ranked:
                break  # no known merge applies: the word is as short as it gets
            _, first = min(ranked)
            left, right = parts[first], parts[first + 1]
            # Merge every occurrence of (left, right). Occurrences before `first` are
            # impossible (they would have the same rank at a smaller index), so start there.
            merged = parts[:first]
            i = first
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == left and parts[i + 1] == right:
                    merged.append(left + right)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def _word_ids(self, word: str) -> tuple[int, ...]:
        """Ids for one pre-token (a word from the regex), through the cache."""
        ids = self._cache.get(word)
        if ids is None:
            # UTF-8 bytes -> printable characters, so BPE sees one symbol per byte.
            symbols = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids = tuple(self.encoder[piece] for piece in self.bpe(symbols))
            self._cache[word] = ids
        return ids

    # ---- public API --------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Clean `text` and return its token ids, without `<start_of_text>`/`<end_of_text>`."""
        ids: list[int] = []
        for word in PRETOKENIZE_PATTERN.findall(clean_text(text)):
            ids.extend(self._word_ids(word))
        return ids

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Turn ids back into text: every `</w>` becomes a space.

        For cleaned text this gives back the words with a single space after each pre-token,
        e.g. "a dog's ball." -> "a dog 's ball . ". Pass the ids without the zero padding
        (id 0 is "!"). A byte sequence cut in the middle of a UTF-8 character (possible after
        truncation) decodes to U+FFFD rather than raising.
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        symbols = "".join(self.decoder[int(i)] for i in ids)
        raw = bytes(self.byte_decoder[ch] for ch in symbols)
        return raw.decode("utf-8", errors="replace").replace(END_OF_WORD, " ")

    def tokenize(
        self, texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH
    ) -> torch.LongTensor:
        """Tokenize one string or a list of strings into a `[N, context_length]` LongTensor.

        Each row is `<start_of_text>, ids..., <end_of_text>, 0, 0, ...`. The text encoder
        reads its sentence embedding at the position of `<end_of_text>` (the largest id in the
        row), so a row that is too long is cut to `context_length` and its last slot is
        overwritten with `<end_of_text>`: the tail of the text is lost, the EOT never is.
        """
        if isinstance(texts, str):
            texts = [texts]
        if context_length < 2:
            raise ValueError(f"context_length must leave room for SOT and EOT, got {context_length}")

        rows = []
        for text in texts:
            tokens = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(tokens) > context_length:
                tokens = tokens[:context_length]
                tokens[-1] = self.eot_token_id
            rows.append(tokens + [0] * (context_length - len(tokens)))  # zero padding
        # One tensor from all rows at once: filling a preallocated tensor row by row costs
        # more than the BPE itself once the word cache is warm.
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), context_length)

    __call__ = tokenize


# A module-level tokenizer, built on first use: loading the merges takes a fraction of a second,
# which `import miniclip` should not pay when it never tokenizes anything.
@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH) -> torch.LongTensor:
    """Drop-in equivalent of `clip.tokenize` / `open_clip.tokenize`."""
    return default_tokenizer().tokenize(texts, context_length)


def decode(ids: Iterable[int] | torch.Tensor) -> str:
    """Decode ids with the default tokenizer (see `Tokenizer.decode`)."""
    return default_tokenizer().decode(ids)
