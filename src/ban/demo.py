"""`make demo` / `python -m ban.demo`: BAN end to end on Fashion-MNIST in a few CPU minutes.

Trains (or reuses from the cache folder, default runs/demo/) one clean and one BadNets-backdoored
small CNN on 8000 images of the attacker's 90%, scans both with BAN (paper preset), fine-tunes the
backdoored one with neuron noise, and prints the verdicts and BA/ASR before and after.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from ban.api import detect, mitigate
from ban.checkpoint import Checkpoint, load_model
from ban.clean_data import CleanData
from ban.data import ImageData
from ban.detectors import Verdict
from ban.recipe import recipe_data
from ban.trainer import train_checkpoint
from ban.zoo import BASE, RECIPES


def get_model(name: str, cache: Path, train: ImageData, test: ImageData, quiet: bool) -> Checkpoint:
    """Load `name` from the cache, or train it (the reference zoo's recipe of that name) and save it there."""
    path = cache / f"{name}.safetensors"
    if path.exists():
        return load_model(path)
    recipe = RECIPES[name]
    return train_checkpoint(
        recipe, path, data=(train, test), device="cpu", quiet=quiet, record_training=False, meta={"split_seed": 0}
    )


def describe(name: str, v: Verdict) -> str:
    state = f"BACKDOORED, target {v.target}" if v.backdoored else "clean"
    return (
        f"{name:8s} -> {state:24s} score {v.score:.3f} (threshold {v.threshold:.2f}), {v.seconds:.0f} s\n"
        f"           no-mask histogram under noise: {v.details['histogram_no_mask']}\n"
        f"           (1-m)  histogram under noise: {v.details['histogram_negative_mask']}"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ban.demo", description=__doc__)
    p.add_argument("--cache", type=Path, default=Path("runs/demo"), help="Folder of cached demo models.")
    p.add_argument("--budget", type=float, default=0.5, help="Fraction of BAN's epochs/steps (1.0 = the paper's).")
    p.add_argument("--seed", type=int, default=0, help="Seed of detection and mitigation (the models use seed 0).")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    start = time.perf_counter()
    train, test, defender = recipe_data(BASE)
    clean = CleanData.from_images(defender)
    models = {name: get_model(name, a.cache, train, test, a.quiet) for name in ("clean", "badnets")}
    print(f"models ready in {a.cache}/ ({time.perf_counter() - start:.0f} s)")
    for name, ckpt in models.items():
        print(f"  {name}: BA {ckpt.meta['ba']:.3f}" + (f", ASR {ckpt.meta['asr']:.3f}" if ckpt.meta.get("asr") else ""))
    print("\nBAN detection (paper preset; the held-out 10% of the training set, 6000 images):")
    for name, ckpt in models.items():
        print(describe(name, detect(ckpt.model, clean, "ban", budget=a.budget, quiet=a.quiet, seed=a.seed)))
    print("\nBAN mitigation (fine-tuning with neuron noise) of the backdoored model:")
    # the cpu preset, measured in docs/mitigations.md: 8 of the paper's 24 epochs, lr 0.02 annealed to 0
    # (cosine), rob_lambda 1.0, no augmentation (the demo models are trained without it)
    _, report = mitigate(models["badnets"], clean, "ban", test=test, quiet=a.quiet, seed=a.seed, preset="cpu")
    assert report.before is not None and report.after is not None
    print(f"  before: BA {report.before.ba:.3f}  ASR {report.before.asr:.3f}")
    print(f"  after:  BA {report.after.ba:.3f}  ASR {report.after.asr:.3f}  ({report.seconds:.0f} s)")
    print(f"\ndone in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
