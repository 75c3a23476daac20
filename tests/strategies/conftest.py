from __future__ import annotations

import pytest
import torch

from ._tiny import TinyNet


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # The tensors here are tiny: thread start-up and contention on the shared CPU cost more than they save.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()
