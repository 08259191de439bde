"""How often a test set's class words occur in the training captions: what zero-shot prompts can lean on.

A zero-shot classifier is built from the class names' text embeddings, so it can only be as good as the text
encoder's grasp of those words, and a word the captions (almost) never used has an embedding training barely
moved. Counting the captions that use each class word is a cheap first explanation of why one benchmark is
within a small model's reach (Flickr8k talks about the sea, streets and mountains) and another is not (it
hardly ever mentions a deer or a frog).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def word_pattern(word: str) -> re.Pattern:
    """The whole word or its regular plural ("-s", "-es"), case-insensitive; spaces in a phrase match any run of
    spaces."""
    body = r"\s+".join(re.escape(part) for part in word.lower().split())
    return re.compile(rf"\b{body}(?:s|es)?\b", re.IGNORECASE)


def caption_word_counts(captions: Iterable[str], words: Iterable[str]) -> dict[str, int]:
    """For each word, the number of captions that use it at least once (`word_pattern`), in `words`' order."""
    captions = list(captions)
    patterns = {word: word_pattern(word) for word in words}
    return {word: sum(1 for c in captions if pattern.search(c)) for word, pattern in patterns.items()}
