"""The trainer's background batch preparation: order kept, errors raised where they happened, a clean stop."""

import threading
import time

import pytest

from miniclip.data.prefetch import Prefetcher


def test_items_come_in_order_with_the_function_applied():
    assert list(Prefetcher(iter(range(20)), lambda x: x * x, depth=3)) == [x * x for x in range(20)]


def test_the_work_runs_ahead_in_another_thread():
    threads = []
    with Prefetcher(iter(range(3)), lambda x: threads.append(threading.current_thread().name) or x) as items:
        assert next(items) == 0
        deadline = time.time() + 5
        while len(threads) < 3 and time.time() < deadline:  # the next items are prepared without being asked
            time.sleep(0.01)
    assert threads == ["miniclip-prefetch"] * 3


def test_an_error_is_raised_at_the_item_where_it_happened():
    def source():
        yield 1
        yield 2
        raise OSError("disk gone")

    items = Prefetcher(source())
    assert [next(items), next(items)] == [1, 2]
    with pytest.raises(OSError, match="disk gone"):
        next(items)
    with pytest.raises(StopIteration):
        next(items)


def test_close_stops_an_endless_source():
    def endless():
        n = 0
        while True:
            yield n
            n += 1

    items = Prefetcher(endless(), depth=2)
    assert next(items) == 0
    items.close()
    assert not items._thread.is_alive()
    with pytest.raises(StopIteration):
        next(items)


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        Prefetcher(iter(()), depth=0)
