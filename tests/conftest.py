from __future__ import annotations

import os

import pytest
import torch

from zoo import Zoo

# `make test` runs two workers (pytest-xdist), one core each; a plain `pytest` uses both cores.
# The zoo's models train at 2 threads either way (ban.zoo), so their bits do not depend on this.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session")
def zoo() -> Zoo:
    """Shared tiny real models and Fashion-MNIST subsets (see tests/zoo.py)."""
    return Zoo()
