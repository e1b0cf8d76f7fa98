"""ban: detect, name and remove backdoors in image classifiers (BAN, NeurIPS 2024, and baselines)."""

__version__ = "0.1.0"

from ban.api import detect, mitigate  # noqa: E402
from ban.attacks import create_attack, list_attacks  # noqa: E402
from ban.checkpoint import Checkpoint, load_model, save_model  # noqa: E402
from ban.data import load_dataset  # noqa: E402
from ban.evaluate import evaluate  # noqa: E402
from ban.models import create_model, list_models  # noqa: E402
from ban.train import TrainConfig, train_model  # noqa: E402

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
