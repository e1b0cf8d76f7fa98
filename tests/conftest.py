from __future__ import annotations

import pytest
import torch

from zoo import Zoo

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def zoo() -> Zoo:
    """Shared tiny real models and Fashion-MNIST subsets (see tests/zoo.py)."""
    return Zoo()
