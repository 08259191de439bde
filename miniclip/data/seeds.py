"""Seeds derived from integers, for randomness that must not depend on batching, workers or processes."""

from __future__ import annotations

import hashlib


def stable_seed(*parts: int) -> int:
    """A 63-bit seed from integers, the same in every process and Python version (unlike `hash`).

    The data streams seed each item by (seed, epoch, index), and the robustness corruptions each batch by
    (seed, first index), so a result never depends on how the work was split."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
