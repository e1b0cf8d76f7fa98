"""`ban train`: train a clean or backdoored model and save it as a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ban.commands.common import (
    DataDirOpt,
    DataOpt,
    DeviceOpt,
    QuietOpt,
    SeedOpt,
    check_output_file,
    console,
    err_console,
    parse_params,
)
from ban.recipe import Recipe
from ban.trainer import asr_warning, train_checkpoint


def train(
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the .safetensors checkpoint."),
    data: str = DataOpt,
    data_dir: Path = DataDirOpt,
    arch: str = typer.Option("resnet18", "--arch", help="Architecture (`ban info` lists them)."),
    width: float = typer.Option(1.0, "--width", help="Channel width multiplier (0.25 for CPU runs)."),
    epochs: int = typer.Option(5, "--epochs"),
    batch_size: int = typer.Option(128, "--batch-size"),
    lr: float = typer.Option(0.01, "--lr"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine, multistep or none."),
    milestones: str = typer.Option("", "--milestones", help="Comma-separated epochs for multistep, e.g. 100,150."),
    subset: int = typer.Option(None, "--subset", min=1, help="Train on a class-balanced subset of N images."),
    test_subset: int = typer.Option(None, "--test-subset", min=1, help="Evaluate on N test images."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Switch off crop/flip augmentation."),
    attack: str = typer.Option(None, "--attack", help="Poison with this attack (`ban info` lists them)."),
    target: int = typer.Option(0, "--target", help="Attack target class."),
    mode: str = typer.Option("all2one", "--mode", help="all2one, all2all or source-specific."),
    poison_rate: float = typer.Option(None, "--poison-rate", help="Fraction poisoned (default: the attack's)."),
    victim: int = typer.Option(None, "--victim", help="Victim class for source-specific attacks."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Extra attack parameter key=value (repeatable)."),
    seed: int = SeedOpt,
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the 90/10 attacker/defender split."),
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a model on the attacker's 90% of the training set (poisoned when --attack is given)."""
    check_output_file(out, "--out")
    params: dict[str, Any] = {}
    if attack:
        params = {"target": target, "mode": mode, "poison_rate": poison_rate, "victim": victim, **parse_params(param)}
        if mode == "source-specific" and victim is None:
            params.pop("victim")
    recipe = Recipe(
        arch=arch,
        width=width,
        dataset=data,
        split_seed=split_seed,
        subset=subset,
        subset_seed=seed,
        test_subset=test_subset,
        test_subset_seed=seed,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        schedule=schedule,
        milestones=tuple(int(m) for m in milestones.split(",") if m.strip()),
        augment=not no_augment,
        attack=attack or None,
        attack_params=params,
        seed=seed,
    )
    ckpt = train_checkpoint(recipe, out, data_dir=data_dir, device=device, quiet=quiet)
    report = ckpt.meta["train"]
    test = report["test"]
    line = f"BA {test['ba']:.4f}"
    if test.get("asr") is not None:
        line += f"  ASR {test['asr']:.4f}"
    if test.get("nvt_accuracy") is not None:
        line += f"  non-victim acc {test['nvt_accuracy']:.4f}"
    console.print(
        f"[bold]{arch}[/] w{width} on {report['num_train']} images, {epochs} epochs, {report['seconds']:.0f} s: {line}"
    )
    console.print(f"saved {out}")
    warning = asr_warning(ckpt, "train")
    if warning:
        err_console.print(f"warning: {warning}", soft_wrap=True, markup=False, highlight=False)
