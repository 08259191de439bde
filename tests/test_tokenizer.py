"""Our BPE tokenizer must give exactly the ids of `open_clip.tokenize`, id for id.

open_clip is the reference (a test dependency only). We compare whole tensors on every real
Flickr8k caption and on a corpus of strings chosen to hit every branch of the pipeline:
ftfy repairs, HTML unescaping, the pre-tokenising regex, byte fallback, truncation.
"""

import ast
import functools
import os
import zipfile
from pathlib import Path

import ftfy
import open_clip
import pytest
import torch

from miniclip import tokenizer as tk

CONTEXT_LENGTHS = (77, 32)


@pytest.fixture(scope="module")
def ours():
    return tk.default_tokenizer()


def first_difference(texts, ours_ids, ref_ids):
    """A readable message naming the first text whose row differs."""
    for text, a, b in zip(texts, ours_ids, ref_ids):
        if not torch.equal(a, b):
            return f"first differing text: {text!r}\n  ours:      {a.tolist()}\n  open_clip: {b.tolist()}"
    return f"shapes differ: {tuple(ours_ids.shape)} vs {tuple(ref_ids.shape)}"


def assert_same_as_open_clip(texts, context_length):
    ours_ids = tk.tokenize(texts, context_length)
    ref_ids = open_clip.tokenize(texts, context_length)
    assert ours_ids.dtype == ref_ids.dtype == torch.long
    assert torch.equal(ours_ids, ref_ids), first_difference(texts, ours_ids, ref_ids)


# ------------------------------------------------------------------------------------------
# Every real Flickr8k caption
# ------------------------------------------------------------------------------------------


def flickr8k_captions():
    data_dir = os.environ.get("MINICLIP_DATA")
    zip_path = Path(data_dir) / "flickr8k.zip" if data_dir else None
    if zip_path is None or not zip_path.is_file():
        pytest.skip(
            f"Flickr8k zip not found: set MINICLIP_DATA to the folder holding flickr8k.zip (got {data_dir!r})"
        )
    with zipfile.ZipFile(zip_path) as zf:
        raw = zf.read("Flickr8k_text/Flickr8k.token.txt").decode("utf-8")
    # Lines look like "1000268201_693b08cb0e.jpg#0\tA child in a pink dress is climbing ...".
    return [line.split("\t", 1)[1] for line in raw.splitlines() if "\t" in line]


@pytest.mark.data
@pytest.mark.slow
def test_every_flickr8k_caption_matches_open_clip(record_property, monkeypatch):
    captions = flickr8k_captions()
    assert len(captions) >= 40_000, f"expected ~40,000 captions, read {len(captions)}"
    record_property("flickr8k_captions_compared", len(captions))
    # ftfy.fix_text is a pure function and the most expensive step of both tokenizers. Both
    # call it as `ftfy.fix_text(...)`, so memoising it here lets the four passes below (two
    # tokenizers x two context lengths) pay for it once. It changes no output, only the time.
    monkeypatch.setattr(ftfy, "fix_text", functools.lru_cache(maxsize=None)(ftfy.fix_text))
    for context_length in CONTEXT_LENGTHS:
        assert_same_as_open_clip(captions, context_length)


# ------------------------------------------------------------------------------------------
# Hard cases
# ------------------------------------------------------------------------------------------

LONG_SENTENCE = "a brown dog runs across the green grass chasing a red ball " * 12

HARD_CASES = {
    # accents and letter-case oddities
    "accents": "Café crème brûlée à Paris, naïve façade",
    "nordic_german": "Ångström Øresund Straße GROSS",
    "dotted_capital_i": "İstanbul İ",  # lowercases to "i" + U+0307 combining dot
    "greek_final_sigma": "ΟΔΟΣ Σίσυφος",
    "cyrillic": "Привет, мир! Ёлка",
    # scripts without spaces or with combining vowel signs
    "chinese": "一只狗在草地上奔跑",
    "japanese": "日本語のテキスト、カタカナ",
    "korean": "한국어 문장입니다",
    "devanagari": "नमस्ते दुनिया",
    "thai": "สวัสดีชาวโลก",
    # right-to-left
    "hebrew": "שלום עולם",
    "arabic": "مرحبا بالعالم",
    "mixed_rtl": "hello שלום world مرحبا 123",
    # emoji
    "emoji": "a dog 🐶 and a cat 🐱!",
    "emoji_zwj_family": "👨‍👩‍👧‍👦 family photo",
    "emoji_skin_tone": "👍🏽 👋🏿 thumbs",
    "emoji_flags": "🏳️‍🌈 🇫🇷 flags",
    "emoji_variation": "❤️ ☺ ✈️",
    # HTML entities (ftfy unescapes only when there is no "<"; then html.unescape runs twice)
    "html_amp": "rock &amp; roll",
    "html_tags": "&lt;b&gt;bold&lt;/b&gt; text",
    "html_double": "fish &amp;amp; chips",
    "html_triple": "&amp;amp;amp; x",
    "html_with_real_tag": "<b>&amp;amp;amp;</b>",
    "html_named_numeric": "&quot;quoted&quot; &#39;single&#39; &#x263A; &nbsp;space &eacute;t&eacute;",
    # mojibake that ftfy repairs
    "mojibake_cafe": "cafÃ© Ã¼ber",
    "mojibake_quote": "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
    "curly_quotes": "it\u2019s \u201cquoted\u201d",
    "ligatures": "ﬁsh ﬂour",
    "fullwidth": "ＡＢＣ１２３",
    # whitespace and invisible characters
    "whitespace_runs": "  a   dog\t\tin\nthe \r\n park  ",
    "unicode_spaces": "\u00a0non\u00a0breaking\u2003em\u3000ideographic",
    "control_chars": "a\x00b\x1bc\x7fd",
    "bom_zero_width": "\ufeffbom a\u200bb soft\xadhyphen",
    "empty": "",
    "only_spaces": "   ",
    "only_whitespace": "\t\n \r\n",
    # contractions, in both cases
    "contractions": "it's the dog's ball, don't, we're, I've, I'm, you'll, he'd",
    "contractions_upper": "IT'S DON'T WE'RE I'VE I'M YOU'LL HE'D",
    "contraction_starts": "'s 't 're 've 'm 'll 'd",
    "apostrophe_runs": "rock'n'roll ''s '''",
    "long_s": "it'ſ",  # IGNORECASE lets `'s` match "'ſ"
    # digits
    "digits": "2024 3.14159 1,000,000 people",
    "other_numbers": "٣٤٥ ½ ² Ⅻ ①",
    "digits_in_words": "abc123def 4x4 mp3",
    # punctuation
    "punct_runs": "!!!???... ---> (((nested))) a/b\\c",
    "symbols": "@#$%^&*_+=~`|[]{}<>",
    "typographic": "… «guillemets» — – • ©®™",
    # combining marks
    "combining_composable": "e\u0301 a\u0308",  # NFC composes these
    "combining_uncomposable": "q\u0301 x\u0323\u0301",  # no precomposed form: a lone mark
    "zalgo": "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",
    # the special tokens written inside text become the special ids
    "literal_sot": "<start_of_text>",
    "literal_eot_inside": "a <end_of_text> b",
    "literal_specials_upper": "<START_OF_TEXT><End_Of_Text>",
    "literal_special_glued": "x<end_of_text>y<start_of_text>",
    "literal_end_of_word": "</w> a</w>",
    # longer than the context
    "long_sentence": LONG_SENTENCE,
    "long_word": "supercalifragilisticexpialidocious" * 6,
    "long_repeat": "x" * 500,
    "long_emoji": "🐶" * 60,
}


@pytest.mark.parametrize("context_length", CONTEXT_LENGTHS)
@pytest.mark.parametrize("name", list(HARD_CASES))
def test_hard_case_matches_open_clip(name, context_length):
    assert_same_as_open_clip([HARD_CASES[name]], context_length)


@pytest.mark.parametrize("context_length", CONTEXT_LENGTHS)
def test_hard_cases_as_one_batch(context_length):
    assert_same_as_open_clip(list(HARD_CASES.values()), context_length)


def test_encode_and_decode_match_open_clip(ours):
    reference = open_clip.tokenizer._tokenizer
    for text in HARD_CASES.values():
        ids = ours.encode(text)
        assert ids == reference.encode(text), text
        assert ours.decode(ids) == reference.decode(ids), text


# ------------------------------------------------------------------------------------------
# Shapes, padding, truncation, vocabulary
# ------------------------------------------------------------------------------------------


def test_known_ids(ours):
    # Hard-coded, so this holds without open_clip: the ids of CLIP's favourite prompt.
    assert tk.tokenize("a photo of a dog")[0, :8].tolist() == [49406, 320, 1125, 539, 320, 1929, 49407, 0]
    assert ours.sot_token_id == 49406 and ours.eot_token_id == 49407 and ours.vocab_size == 49408


def test_single_string_and_list_shapes():
    assert tk.tokenize("a dog").shape == (1, 77)
    assert tk.tokenize(["a dog", "a cat", ""], context_length=32).shape == (3, 32)
    assert tk.tokenize([]).shape == (0, 77)
    assert torch.equal(tk.tokenize("a dog"), tk.tokenize(["a dog"]))
    assert tk.tokenize("a dog").dtype == torch.long


def test_padding_is_zeros():
    row = tk.tokenize("a dog on the beach", context_length=32)[0]
    eot_at = int(row.argmax())  # EOT has the largest id; CLIP pools the text there
    assert row[eot_at] == 49407
    assert torch.all(row[eot_at + 1 :] == 0)
    assert torch.all(row[1:eot_at] > 0) and row[0] == 49406


@pytest.mark.parametrize("context_length", CONTEXT_LENGTHS)
def test_truncation_keeps_eot_last(ours, context_length):
    full = [ours.sot_token_id, *ours.encode(LONG_SENTENCE), ours.eot_token_id]
    assert len(full) > context_length
    row = tk.tokenize(LONG_SENTENCE, context_length)[0].tolist()
    # Keep SOT and the first context_length - 2 text tokens, then overwrite the last slot with EOT.
    assert row == full[: context_length - 1] + [ours.eot_token_id]
    assert row.count(ours.eot_token_id) == 1 and 0 not in row


def test_exact_fit_is_not_truncated(ours):
    ids = ours.encode(LONG_SENTENCE)[:30]  # 30 + SOT + EOT = 32 exactly
    text = ours.decode(ids)
    assert ours.encode(text) == ids
    assert tk.tokenize(text, 32)[0].tolist() == [49406, *ids, 49407]


def test_context_length_must_fit_sot_and_eot():
    with pytest.raises(ValueError):
        tk.tokenize("a dog", context_length=1)


# ------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------


def test_decode_round_trips_plain_captions(ours):
    # For text made of plain words, decoding gives the cleaned text back with a trailing space.
    for text in ["A dog runs on the BEACH", "  two   children\tplay  ", "a photo of a dog"]:
        assert ours.decode(ours.encode(text)) == tk.clean_text(text) + " "


@pytest.mark.parametrize("name", [n for n, t in HARD_CASES.items() if "</w>" not in t])
def test_decode_round_trips_cleaned_text_up_to_spaces(ours, name):
    # In general decoding puts a space after every pre-token ("dog's." -> "dog 's . "), so compare
    # with all whitespace removed. (Text containing a literal "</w>" is the one exception: decode
    # reads it as an end-of-word marker.)
    text = HARD_CASES[name]
    squash = lambda s: "".join(s.split())  # noqa: E731
    assert squash(ours.decode(ours.encode(text))) == squash(tk.clean_text(text))


def test_decode_accepts_tensors(ours):
    row = tk.tokenize("a red ball")[0]
    assert ours.decode(row[1:4]) == "a red ball "


# ------------------------------------------------------------------------------------------
# Packaging: the merges file ships with miniclip, open_clip is not needed at runtime
# ------------------------------------------------------------------------------------------


def test_merges_ship_with_miniclip_and_open_clip_is_not_imported():
    # The merges file sits next to tokenizer.py (package data), not inside open_clip.
    assert tk.MERGES_PATH.parent == Path(tk.__file__).parent
    assert tk.MERGES_PATH.is_file() and (tk.MERGES_PATH.parent / "LICENSE-openai-clip.txt").is_file()
    # Statically check the imports (cheaper than a subprocess that blocks open_clip and re-imports torch).
    tree = ast.parse(Path(tk.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not any(name.split(".")[0] in {"open_clip", "clip"} for name in imported), imported
