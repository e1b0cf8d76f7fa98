"""The model zoo: CIFAR-style architectures with a declared `features | head` split."""

from ban.models.base import Normalize, SplitModel
from ban.models.registry import MODELS, canonical_arch, create_model, list_models
from ban.models.split import Split, get_split

__all__ = ["MODELS", "Normalize", "Split", "SplitModel", "canonical_arch", "create_model", "get_split", "list_models"]
