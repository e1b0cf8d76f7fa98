"""`ban train`: train a clean or backdoored model and save it as a checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from ban.attacks import create_attack, implant_warning
from ban.checkpoint import model_metadata, save_model
from ban.commands.common import (
    DataDirOpt,
    DataOpt,
    DeviceOpt,
    QuietOpt,
    SeedOpt,
    attacker_and_defender,
    check_output_file,
    console,
    err_console,
    maybe_subset,
    parse_params,
)
from ban.data import load_dataset, normalization_for
from ban.models import create_model
from ban.train import TrainConfig, train_model


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
    subset: int = typer.Option(None, "--subset", help="Train on a class-balanced subset of N images."),
    test_subset: int = typer.Option(None, "--test-subset", help="Evaluate on N test images."),
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
    train_part, _ = attacker_and_defender(data, data_dir, split_seed)
    train_part = maybe_subset(train_part, subset, seed)
    test = maybe_subset(load_dataset(data, "test", data_dir), test_subset, seed)
    atk = None
    if attack:
        kwargs = {"target": target, "mode": mode, "poison_rate": poison_rate, "victim": victim, **parse_params(param)}
        if mode == "source-specific" and victim is None:
            kwargs.pop("victim")
        atk = create_attack(attack, **kwargs)
    mean, std = normalization_for(train_part)
    model = create_model(arch, train_part.num_classes, train_part.image_shape[0], width, mean, std, seed=seed)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        milestones=tuple(int(m) for m in milestones.split(",") if m.strip()),
        augment=not no_augment,
        seed=seed,
        device=device,
        quiet=quiet,
    )
    report = train_model(model, train_part, cfg, atk, test)
    assert report.test is not None
    meta = model_metadata(
        model,
        arch,
        train_part.num_classes,
        train_part.image_shape,
        width,
        dataset=train_part.name,
        seed=seed,
        ba=report.test.ba,
        asr=report.test.asr,
        target=atk.target if atk is not None else None,
        train=report.to_dict(),
        split_seed=split_seed,
    )
    save_model(out, model, meta, atk)
    line = f"BA {report.test.ba:.4f}"
    if report.test.asr is not None:
        line += f"  ASR {report.test.asr:.4f}"
    if report.test.nvt_accuracy is not None:
        line += f"  non-victim acc {report.test.nvt_accuracy:.4f}"
    console.print(
        f"[bold]{arch}[/] w{width} on {len(train_part)} images, {epochs} epochs, {report.seconds:.0f} s: {line}"
    )
    console.print(f"saved {out}")
    warning = implant_warning(atk, report.test.asr) if atk is not None else None
    if warning:
        err_console.print(f"warning: {warning}", soft_wrap=True, markup=False, highlight=False)
