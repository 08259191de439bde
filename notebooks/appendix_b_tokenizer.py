# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Appendix B: tokenizer internals
#
# ## The paper says
#
# The text encoder's input is the caption lower-cased and cut into byte-pair-encoding tokens
# {cite:p}`sennrich2016bpe` from a vocabulary of 49,152, at most 76 of them, with a start and an end marker
# around them ({cite:t}`radford2021clip`, §2.4). The scheme is GPT-2's byte-level BPE: text is split into words by a
# regular expression, each word's UTF-8 bytes are spelled with 256 base symbols, and learned merge rules join
# frequent adjacent pairs into longer tokens.
#
# ## The code
#
# Our tokenizer (`miniclip/tokenizer.py`) is written from that description and OpenAI's vocabulary file, and
# produces their ids. It runs in five steps: clean the text (fix broken Unicode, unescape HTML, collapse
# whitespace, lower-case), split it into pre-tokens, spell each pre-token's bytes as printable characters,
# apply the merges, and look the pieces up. The byte table:
#
# ```{literalinclude} ../miniclip/tokenizer.py
# :pyobject: bytes_to_unicode
# ```
#
# The merge loop, the heart of BPE:
#
# ```{literalinclude} ../miniclip/tokenizer.py
# :pyobject: Tokenizer.bpe
# :dedent:
# ```
#
# ## What it means
#
# Byte-level BPE has no unknown words: anything that can be written in UTF-8 becomes *some* sequence of
# tokens, if a long one. Common English words are single tokens; rare words, names and other scripts are
# spelled in pieces. The 76-token limit is a real constraint on long captions, and the lower-casing means CLIP
# cannot tell "Apple" from "apple" by spelling alone.
#
# ## Run it
#
# ### Watching the merges
#
# `Tokenizer.bpe` applies merges in the order of their rank (the line of the vocabulary file where they
# appear: earlier means more frequent). Here is the sequence of states for a few words, rebuilt step by step
# from the merge ranks, and then checked against the package's own `bpe`:

# %%
from IPython.display import Markdown, display

from miniclip.book import glue
from miniclip.tokenizer import DEFAULT_CONTEXT_LENGTH, END_OF_WORD, decode, default_tokenizer, tokenize

tok = default_tokenizer()


def merge_steps(word: str) -> list[list[str]]:
    """Every intermediate state of BPE on `word`: merge the lowest-ranked adjacent pair until none is known."""
    symbols = "".join(tok.byte_encoder[b] for b in word.encode("utf-8"))
    parts = list(symbols[:-1]) + [symbols[-1] + END_OF_WORD]
    states = [parts]
    while True:
        pairs = [(tok.merge_ranks[p], p) for p in zip(parts, parts[1:]) if p in tok.merge_ranks]
        if not pairs:
            return states
        _, (left, right) = min(pairs)
        merged, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and (parts[i], parts[i + 1]) == (left, right):
                merged.append(left + right)
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
        states.append(parts)


words = ["photograph", "dalmatians", "tokenizer", "zürich"]
merges = {word: merge_steps(word) for word in words}
for word, states in merges.items():
    symbols = "".join(tok.byte_encoder[b] for b in word.encode("utf-8"))
    assert states[-1] == tok.bpe(symbols), word  # the package agrees with the step-by-step rebuild

# %% tags=["remove-input"]
display(Markdown("\n\n".join(f"**{word}**: " + " → ".join("`" + " ".join(state) + "`" for state in states)
                              for word, states in merges.items())))

# %% [markdown]
# (Non-ASCII bytes appear as their printable stand-ins: "ü" is two UTF-8 bytes, so it starts as two
# symbols, which a merge may or may not join.)
#
# ### Ids, special tokens and padding

# %%
caption = "Two dogs play on the beach near a boat."
ids = tokenize([caption])[0]
n = int((ids != 0).sum())
print("ids:   ", " ".join(str(i) for i in ids[:n].tolist()))
print("pieces:", " ".join(tok.decoder[i] for i in ids[:n].tolist()))

# %% tags=["remove-input"]
glue("caption_tokens", n)
glue("sot_id", tok.sot_token_id)
glue("eot_id", tok.eot_token_id)
glue("vocab_size", tok.vocab_size, "{:,}")
glue("roundtrip", decode(ids[1:n - 1]).strip())

# %% [markdown]
# The caption becomes {glue}`caption_tokens` ids: the start marker {glue}`sot_id`, one id per word or
# punctuation mark, and the end marker {glue}`eot_id`, which is the largest id of the {glue}`vocab_size`-token
# vocabulary (that is why `encode_text` can find it with `argmax`); zeros pad the rest of the
# {glue}`context_length` positions. Decoding gives back the cleaned text: "{glue}`roundtrip`".
#
# ### Same ids as the reference
#
# When open_clip is installed, its tokenizer is the oracle (the test suite checks every Flickr8k caption):

# %%
hard = ["a photo of a 🐕", "Ｆｕｌｌｗｉｄｔｈ text", "naïve café", "don't stop", "  many   spaces  ",
        "&amp; html &lt;escapes&gt;", "数字 123", "x" * 300]
try:
    import open_clip

    same = [bool((open_clip.tokenize([t]) == tokenize([t])).all()) for t in hard]
    verdict = f"{sum(same)} of {len(hard)} hard cases give identical ids to open_clip.tokenize"
    assert all(same), [t for t, s in zip(hard, same) if not s]
except ImportError:
    verdict = "open_clip is not installed, so the comparison was not run"
print(verdict)

# %% tags=["remove-input"]
glue("oracle_verdict", verdict)

# %% [markdown]
# Result: {glue}`oracle_verdict`. The last case is 300 characters long: both tokenizers truncate it to
# {glue}`context_length` positions and keep the end marker in the last one.

# %%
glue("context_length", DEFAULT_CONTEXT_LENGTH)
assert tokenize(["x" * 300])[0, -1] == tok.eot_token_id
