"""`ban mitigate`: remove a backdoor with a mitigation method and save the cleaned checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from ban.checkpoint import load_model, save_model
from ban.clean_data import CleanData
from ban.commands.common import (
    DataDirOpt,
    DeviceOpt,
    InputSizeOpt,
    QuietOpt,
    SeedOpt,
    attacker_and_defender,
    check_output_file,
    console,
    parse_params,
)
from ban.data import load_dataset
from ban.errors import BanError
from ban.evaluate import EvalReport
from ban.mitigations import MitigationReport, create_mitigation
from ban.model_fit import check_fits


def eval_line(label: str, r: EvalReport | None) -> str:
    if r is None:
        return f"{label}: not measured"
    asr = f"ASR {r.asr:.4f}" if r.asr is not None else "ASR n/a"
    return f"{label}: BA {r.ba:.4f}  {asr}"


def print_report(report: MitigationReport) -> None:
    console.print(f"{report.method}: {report.seconds:.1f} s")
    console.print("  " + eval_line("before", report.before))
    console.print("  " + eval_line("after ", report.after))
    if not report.asr_known:
        console.print("  (the checkpoint carries no attack, so only BA is measured)")


def mitigate(
    model: Path = typer.Argument(..., help="The checkpoint to repair."),
    out: Path = typer.Option(..., "--out", help="Where to write the cleaned checkpoint (.safetensors)."),
    data: str = typer.Option(None, "--data", help="Dataset the model was trained on (default: the checkpoint's)."),
    data_dir: Path = DataDirOpt,
    method: str = typer.Option("ban", "--method", help="Mitigation method (ban, ft, fp, anp, nad, ibau, ftsam, ...)."),
    budget: float = typer.Option(
        None, "--budget", help="Fraction of the paper's epochs (default 1.0, or the preset's; CPU runs: 0.25)."
    ),
    param: list[str] = typer.Option(None, "--param", help="Extra method setting key=value (repeatable)."),
    test_subset: int = typer.Option(None, "--test-subset", min=1, help="Measure BA/ASR on N test images."),
    arch: str = typer.Option(None, "--arch", help="Architecture of a plain state dict."),
    input_size: int = InputSizeOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Repair MODEL on the defender's clean data; print BA/ASR before and after; save a checkpoint `ban eval` loads."""
    from ban.commands.common import maybe_subset

    check_output_file(out, "--out", model=model)
    ckpt = load_model(model, arch=arch, input_size=input_size)
    name = data or ckpt.meta.get("dataset")
    if not name:
        raise BanError(f"{model.name} does not name its dataset; pass --data")
    _, pool = attacker_and_defender(name, data_dir, int(ckpt.meta.get("split_seed", 0) or 0))
    clean = CleanData.from_images(pool)
    ckpt.adopt_input_size(clean.image_shape)  # a plain state dict is repaired at its data's size
    check_fits(clean, ckpt.num_classes, ckpt.input_shape)
    test = maybe_subset(load_dataset(name, "test", data_dir), test_subset, seed)
    given = {"budget": budget} if budget is not None else {}  # a preset's budget holds unless --budget is given
    mitigation = create_mitigation(method, seed=seed, device=device, quiet=quiet, **given, **parse_params(param))
    repaired, report = mitigation.run(ckpt.model, clean, test, ckpt.attack)
    print_report(report)
    meta = dict(ckpt.meta)
    meta["mitigation"] = {"method": report.method, "settings": report.settings, "seed": seed, "source": model.name}
    if report.after is not None:
        meta["ba"] = report.after.ba
        meta["asr"] = report.after.asr
    save_model(out, repaired.cpu(), meta, ckpt.attack)  # type: ignore[arg-type]
    console.print(f"saved {out}")
