"""ban: detect, name and remove backdoors in image classifiers (BAN, NeurIPS 2024, and baselines)."""

from ban.api import detect, mitigate
from ban.attacks import create_attack, list_attacks
from ban.checkpoint import Checkpoint, load_model, save_model
from ban.data import load_dataset
from ban.evaluate import evaluate
from ban.models import create_model, list_models
from ban.train import TrainConfig, train_model
from ban.version import __version__

__all__ = [
    "Checkpoint",
    "TrainConfig",
    "__version__",
    "create_attack",
    "create_model",
    "detect",
    "evaluate",
    "list_attacks",
    "list_models",
    "mitigate",
    "load_dataset",
    "load_model",
    "save_model",
    "train_model",
]
