"""Preparing the next batches while the model trains on this one: a background thread that draws from an iterator
and applies a function (tokenising captions, pinning memory), a few batches ahead.

On a GPU the model's step is queued and runs on its own, so the host thread would sit idle while a batch's
captions are tokenised if that happened between steps; a thread (the tokenizer is Python, but PyTorch's
kernels release the GIL) overlaps the two. Order is kept, and an exception in the thread is raised in the
caller, at the batch where it happened.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

_DONE = object()


class Prefetcher:
    """Iterate `fn(item)` for the items of `source`, computed up to `depth` items ahead in a daemon thread.
    `close()` (or leaving a `with` block) stops the thread; items not yet taken are dropped."""

    def __init__(self, source: Iterator, fn: Callable = lambda item: item, depth: int = 2):
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(iter(source), fn), daemon=True,
                                        name="miniclip-prefetch")
        self._thread.start()

    def _fill(self, source: Iterator, fn: Callable) -> None:
        try:
            for item in source:
                if not self._put((True, fn(item))):
                    return
        except BaseException as e:  # handed to the consumer, which raises it where the batch was expected
            self._put((False, e))
            return
        self._put((True, _DONE))

    def _put(self, entry) -> bool:
        """Queue `entry`, waking up now and then to see whether the consumer has gone; False if it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self):
        if self._stop.is_set():
            raise StopIteration
        ok, value = self._queue.get()
        if not ok:
            self.close()
            raise value
        if value is _DONE:
            self.close()
            raise StopIteration
        return value

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
