"""Datasets: readers, the defender's split, balanced sampling, augmentation."""

from ban.data.augment import Augment
from ban.data.dataset import ImageData
from ban.data.registry import (
    DATASETS,
    DEFAULT_DATASET,
    dataset_info,
    list_datasets,
    load_dataset,
    normalization_for,
    unknown_dataset,
)
from ban.data.split import balanced_sample, defender_split

__all__ = [
    "Augment",
    "DATASETS",
    "DEFAULT_DATASET",
    "ImageData",
    "balanced_sample",
    "dataset_info",
    "defender_split",
    "list_datasets",
    "load_dataset",
    "normalization_for",
    "unknown_dataset",
]
