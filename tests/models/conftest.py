"""Model tests run single-threaded: the tensors are tiny, and on a shared CPU intra-op threads only add contention
(a 32x32 forward went from ~0.03 s to ~2.6 s with 2 threads on a loaded 2-core machine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
