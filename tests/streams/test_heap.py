"""The start-up heap kept out of full collections, in the worker and in its engine's process."""

from __future__ import annotations

import gc

from agentwatch.streams.heap import freeze_startup_heap


def test_the_start_up_heap_is_frozen_once_per_process() -> None:
    before = gc.get_freeze_count()  # non-zero once a worker started in this test process
    frozen = freeze_startup_heap()
    assert frozen == (0 if before else gc.get_freeze_count())
    count = gc.get_freeze_count()
    assert count > 0
    assert freeze_startup_heap() == 0, "a second worker in the process froze again"
    assert gc.get_freeze_count() == count
