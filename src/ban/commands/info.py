"""`ban info` (a checkpoint's metadata, or the registries) and `ban eval` (BA and ASR)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from ban.attacks import list_attacks, preset_lines
from ban.checkpoint import load_model
from ban.commands.common import DataDirOpt, DeviceOpt, InputSizeOpt, SeedOpt, console, maybe_subset
from ban.data import list_datasets, load_dataset
from ban.detectors import DETECTORS, list_detectors
from ban.errors import BanError
from ban.evaluate import evaluate
from ban.mitigations import MITIGATIONS, list_mitigations
from ban.models import list_models


def _shown(value: object) -> str:
    """A metadata value as inert text: no rich markup, no terminal control characters (it comes from the file)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    return escape(text)


def info(
    model: Path = typer.Argument(None, help="A checkpoint (.safetensors, or a plain PyTorch state dict with --arch)."),
    arch: str = typer.Option(None, "--arch", help="Architecture of a plain state dict."),
    input_size: int = InputSizeOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
) -> None:
    """Print a checkpoint's metadata, or (without MODEL) the available models, attacks and datasets."""
    if model is None:
        console.print(f"models:   {', '.join(list_models())}")
        console.print(f"attacks:  {', '.join(list_attacks())}")
        console.print("attack presets (explicit -p values override them):\n" + "\n".join(preset_lines()), markup=False)
        console.print(f"detectors: {', '.join(list_detectors())}")
        lines = DETECTORS.preset_lines("--param")
        console.print("detector presets (explicit --param values override them):\n" + "\n".join(lines), markup=False)
        console.print(f"mitigations: {', '.join(list_mitigations())}")
        lines = MITIGATIONS.preset_lines("--param")
        console.print("mitigation presets (explicit --param values override them):\n" + "\n".join(lines), markup=False)
        console.print(f"datasets: {', '.join(list_datasets())} (or an image folder / .npz path)")
        return
    ckpt = load_model(model, arch=arch, input_size=input_size)
    meta = dict(ckpt.meta)
    if as_json:
        console.print_json(json.dumps(meta))
        return
    meta.pop("train", None)
    for key, value in meta.items():
        note = "  (H, W taken from the data; or pass --input-size)" if key == "input_shape" and None in value else ""
        console.print(f"[bold]{_shown(key)}[/]: {_shown(value)}{note}")


def eval_cmd(
    model: Path = typer.Argument(..., help="A checkpoint."),
    data: str = typer.Option(None, "--data", help="Dataset (default: the one the checkpoint was trained on)."),
    data_dir: Path = DataDirOpt,
    test_subset: int = typer.Option(None, "--test-subset", min=1, help="Evaluate on N test images."),
    arch: str = typer.Option(None, "--arch", help="Architecture of a plain state dict."),
    input_size: int = InputSizeOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
) -> None:
    """Measure BA on the clean test set and, when the checkpoint carries its attack, ASR."""
    ckpt = load_model(model, arch=arch, input_size=input_size)
    name = data or ckpt.meta.get("dataset")
    if not name:
        raise BanError("the checkpoint does not name its dataset; pass --data")
    test = maybe_subset(load_dataset(name, "test", data_dir), test_subset, seed)
    ckpt.adopt_input_size(test.image_shape)
    if test.image_shape != tuple(ckpt.input_shape) or test.num_classes != ckpt.num_classes:
        raise BanError(
            f"data {test.image_shape} with {test.num_classes} classes does not fit the model "
            f"({tuple(ckpt.input_shape)}, {ckpt.num_classes} classes); pass the dataset it was trained on"
        )
    report = evaluate(ckpt.model, test, ckpt.attack, device=device, seed=seed)
    line = f"BA {report.ba:.4f} ({report.n_clean} images)"
    if report.asr is not None:
        line += f"  ASR {report.asr:.4f} ({report.n_asr} triggered images)"
    else:
        line += "  ASR: n/a (the checkpoint carries no attack)"
    if report.nvt_accuracy is not None:
        line += f"  non-victim acc {report.nvt_accuracy:.4f}"
    console.print(line)
