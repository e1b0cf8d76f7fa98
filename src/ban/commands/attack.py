"""`ban attack preview`: a picture of clean images above their triggered versions, per attack."""

from __future__ import annotations

from pathlib import Path

import typer

from ban.attacks import ATTACKS, create_attack
from ban.checkpoint import load_model
from ban.commands.common import DataDirOpt, SeedOpt, check_output_file, console, maybe_subset, parse_params
from ban.data import load_dataset
from ban.errors import BanError
from ban.figures.preview import pick_images, prepare_preview, save_preview, trigger_row

attack_app = typer.Typer(help="Look at the attacks' triggers.", no_args_is_help=True)


@attack_app.command("preview")
def preview(
    attack: str = typer.Option("all", "--attack", help="An attack name, or 'all' for one row per attack."),
    out: Path = typer.Option(Path("triggers.png"), "--out", "-o", help="Where to write the picture (.png, .pdf)."),
    data: str = typer.Option(None, "--data", help="Dataset, folder or .npz (default: fashion-mnist or the model's)."),
    data_dir: Path = DataDirOpt,
    model: Path = typer.Option(
        None, "--model", help="Show the trigger a checkpoint carries (IAD/SSDT: its trained generators)."
    ),
    n: int = typer.Option(6, "--n", help="Images per row (cycling through the classes)."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Attack parameter key=value (one attack only)."),
    mask_epochs: int = typer.Option(
        10,
        "--mask-epochs",
        min=0,
        help="IAD/SSDT without --model: pre-train the mask network this many epochs on 512 images.",
    ),
    residual: bool = typer.Option(True, "--residual/--no-residual", help="Add a row of amplified |x' − x| per attack."),
    seed: int = SeedOpt,
) -> None:
    """Draw a grid of clean test images above their triggered versions (one or all attacks)."""
    check_output_file(out, "--out", "triggers.png")
    rows = []
    if model is not None:
        ckpt = load_model(model)
        if ckpt.attack is None:
            raise BanError(f"{model} carries no attack; preview an attack by name with --attack")
        name = data or ckpt.meta.get("dataset") or "fashion-mnist"
        test = load_dataset(name, "test", data_dir)
        if test.image_shape != tuple(ckpt.input_shape):
            raise BanError(f"data {test.image_shape} does not fit the model's input {tuple(ckpt.input_shape)}")
        shown = pick_images(test, n, seed)
        rows.append(trigger_row(ckpt.attack, shown.x, seed, note=f"from {model.name}"))
    else:
        names = list(ATTACKS) if attack.strip().lower() == "all" else [ATTACKS.canonical(attack)]
        params = parse_params(param)
        if params and len(names) > 1:
            raise BanError("-p/--param sets one attack's parameters; pass it with a single --attack")
        test = load_dataset(data or "fashion-mnist", "test", data_dir)
        shown = pick_images(test, n, seed)
        pool = maybe_subset(test, 512, seed)
        for key in names:
            atk = create_attack(key, **params)
            note = prepare_preview(atk, pool, seed, mask_epochs)
            rows.append(trigger_row(atk, shown.x, seed, note=note))
    title = f"{test.name}: clean images (top) and their triggered versions"
    path = save_preview(shown.x, rows, out, residual, title)
    console.print(f"saved {path} ({len(rows)} attack{'s' if len(rows) > 1 else ''}, {n} images each)")
