"""`ban detect`: scan one checkpoint (or every checkpoint in a folder) for a backdoor."""

from __future__ import annotations

import functools
from pathlib import Path

import typer
from rich.table import Table

from ban.calibration import Reference
from ban.checkpoint import Checkpoint, load_model
from ban.clean_data import CleanData
from ban.commands.common import (
    DataDirOpt,
    DeviceOpt,
    InputSizeOpt,
    QuietOpt,
    SeedOpt,
    attacker_and_defender,
    check_output_dir,
    check_output_file,
    console,
    err_console,
    parse_params,
)
from ban.data import ImageData, balanced_sample
from ban.detectors import Verdict, create_detector
from ban.detectors.ban_detector import averaged_scores
from ban.errors import BanError
from ban.model_fit import accuracy_warning, check_fits

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def checkpoints_in(path: Path) -> list[Path]:
    """`path` itself, or the checkpoints inside a folder (sorted)."""
    if not path.exists():
        raise BanError(f"{path} not found; pass a checkpoint file or a folder of checkpoints")
    if not path.is_dir():
        return [path]  # a file, or something that is not one: the checkpoint reader says which
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if not found:
        raise BanError(f"folder {path} holds no checkpoints ({', '.join(CHECKPOINT_SUFFIXES)})")
    return found


@functools.lru_cache(maxsize=2)
def held_out(data: str, data_dir: Path | None, split_seed: int) -> ImageData:
    """The defender's held-out pool, read once for all the models of a folder that share it (the whole
    training set was read again for every model)."""
    return attacker_and_defender(data, data_dir, split_seed)[1]


@functools.cache
def warn_once(message: str) -> None:
    """Print a warning on stderr once however many models of a folder it applies to (`detect` forgets what it
    printed when it starts)."""
    err_console.print(message, soft_wrap=True, markup=False, highlight=False)


def defender_pool(ckpt: Checkpoint, data: str, data_dir: Path | None, n: int | None, seed: int) -> CleanData:
    """The defender's held-out 10% of the training set (the checkpoint's split_seed), class-balanced sample of `n`."""
    pool = held_out(data, data_dir, int(ckpt.meta.get("split_seed", 0) or 0))
    if n is not None and n > len(pool):
        warn_once(
            f"warning: --clean-samples {n} asks for more than the {len(pool)} held-out clean images; using them all"
        )
    sample: ImageData = pool if n is None or n >= len(pool) else balanced_sample(pool, n, seed)
    clean = CleanData.from_images(sample)
    ckpt.adopt_input_size(clean.image_shape)  # a plain state dict scans at its data's size
    check_fits(clean, ckpt.num_classes, ckpt.input_shape)
    return clean


def histogram_line(counts: list[int]) -> str:
    total = max(1, sum(counts))
    return "  ".join(f"{c}:{n}" + ("*" if n == max(counts) else "") for c, n in enumerate(counts)) + f"  (of {total})"


def with_calibration(v: Verdict, refs: list[Reference], ckpt: Checkpoint, clean: CleanData, source: str) -> Verdict:
    """The verdict with its score's rank among the reference's clean models (details["calibration"])."""
    from dataclasses import replace

    from ban.calibration import calibrate, select_reference

    meta = ckpt.meta
    ref = select_reference(
        refs,
        v.detector,
        str(meta.get("arch")),
        float(meta.get("width", 1.0)),
        clean.images.name,
        ckpt.num_classes,
        v.settings,
        source,
    )
    return replace(v, details={**v.details, "calibration": calibrate(ref, v.score).to_dict()})


def print_verdict(name: str, v: Verdict) -> None:
    state = "[bold red]BACKDOORED[/]" if v.backdoored else "[bold green]clean[/]"
    target = f", target class {v.target}" if v.target is not None else ""
    console.print(f"{name}: {state}{target}  score {v.score:.3f} vs threshold {v.threshold:.3f}  ({v.seconds:.1f} s)")
    if (averaged := averaged_scores(v)) is not None:
        scores, per_run, seeds = averaged
        top = scores.index(max(scores))
        each = ", ".join(f"seed {s}: {r[top]:.3f}" for s, r in zip(seeds, per_run, strict=True))
        chosen = int(v.details.get("restart_chosen", 0))
        console.print(
            f"  score = mean of {len(per_run)} runs on class {top} ({each}); "
            f"histograms: the run of seed {seeds[chosen]}"
        )
    for key, label in (("histogram_negative_mask", "(1-m) under noise"), ("histogram_no_mask", "no mask under noise")):
        if key in v.details:
            console.print(f"  {label}: {histogram_line(v.details[key])}")
    if "flip_rates" in v.details and v.settings.get("rule") == "per-class":
        t = int(v.details["scores_per_class"].index(max(v.details["scores_per_class"])))
        rates = "  ".join(f"{c}:{r:.2f}" for c, r in enumerate(v.details["flip_rates"]) if c != t)
        console.print(f"  share of each class sent to class {t} (score = median): {rates}")
    if "calibration" in v.details:
        console.print(f"  score {v.score:.3f}: {v.details['calibration']['text']}")
    if "histogram" in v.details and "histogram_no_mask" not in v.details:
        console.print(f"  histogram: {histogram_line(v.details['histogram'])}")


def detect(
    model: Path = typer.Argument(..., help="A checkpoint, or a folder: every checkpoint in it is scanned."),
    data: str = typer.Option(None, "--data", help="Dataset the model was trained on (default: the checkpoint's)."),
    data_dir: Path = DataDirOpt,
    clean_samples: int = typer.Option(
        None, "--clean-samples", help="Clean images to use (default: the whole 10% pool)."
    ),
    preset: str = typer.Option(
        None,
        "--preset",
        help="The detector's named preset (`ban info`): BAN paper (default, the paper's equations, fast) or "
        "faithful (official code); the baselines paper (default) or cpu (smaller samples and networks).",
    ),
    detector: str = typer.Option("ban", "--detector", help="Detector name (ban, or a baseline)."),
    param: list[str] = typer.Option(None, "--param", help="Extra detector setting key=value (repeatable)."),
    budget: float = typer.Option(1.0, "--budget", help="Fraction of the paper's epochs/steps (CPU runs: 0.25)."),
    json_out: Path = typer.Option(None, "--json", help="Write the verdict (a list for a folder) as JSON."),
    figures: Path = typer.Option(None, "--figures", help="Folder for PNG figures (histogram, mask, t-SNE)."),
    fail_on_backdoor: bool = typer.Option(False, "--fail-on-backdoor", help="Exit 1 when a model is flagged."),
    arch: str = typer.Option(None, "--arch", help="Architecture of a plain state dict."),
    input_size: int = InputSizeOpt,
    reference: Path = typer.Option(
        None, "--reference", help="Clean-model scores (`ban bench reference`): rank the score among them."
    ),
    snapshots: Path = typer.Option(
        None,
        "--snapshots",
        help="Folder where a long search (NC, Tabor, FeatureRE, Unicorn) keeps its state: run the same command "
        "again and a stopped scan continues where it stopped.",
    ),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Scan a model for a backdoor and print the verdict and the prediction histogram under noise."""
    import json

    check_output_file(json_out, "--json", "verdict.json", model=model)
    check_output_dir(figures, "--figures")
    check_output_dir(snapshots, "--snapshots")
    paths = checkpoints_in(model)
    refs = None
    if reference is not None:
        from ban.calibration import load_references

        refs = load_references(reference)
    given = {"preset": preset} if preset is not None else {}
    settings = {"seed": seed, "device": device, "quiet": quiet, "budget": budget, **given, **parse_params(param)}
    verdicts: list[tuple[str, Verdict]] = []
    loaded: list[tuple[Checkpoint, CleanData]] = []  # the two models of a t-SNE figure
    warn_once.cache_clear()

    def checked(path: Path) -> tuple[Checkpoint, str]:
        ckpt = load_model(path, arch=arch, input_size=input_size)
        name = data or ckpt.meta.get("dataset")
        if not name:
            raise BanError(f"{path.name} does not name its dataset; pass --data")
        return ckpt, name

    if len(paths) > 1:  # a bad file in a folder ends the scan before the first model, not after hours of them
        for path in paths:
            checked(path)
    for path in paths:
        ckpt, name = checked(path)
        clean = defender_pool(ckpt, name, data_dir, clean_samples, seed)
        det = create_detector(detector, **settings)
        if snapshots is not None:
            det.snapshot_dir = snapshots / path.stem
        verdict = det.detect(ckpt.model, clean)
        if refs is not None:
            verdict = with_calibration(verdict, refs, ckpt, clean, str(reference))
        verdicts.append((path.name, verdict))
        if figures is not None and len(paths) == 2:
            loaded.append((ckpt, clean))
        print_verdict(path.name, verdict)
        if warning := accuracy_warning(verdict.details.get("clean_accuracy"), clean.num_classes):
            err_console.print(f"warning: {path.name}: {warning}", soft_wrap=True, markup=False, highlight=False)
        if figures is not None:
            from ban.figures.detection import detection_figures

            for fig in detection_figures(det, verdict, ckpt.model, clean, figures / path.stem, seed=seed):
                console.print(f"  figure: {fig}")
    if len(verdicts) > 1:
        table = Table("model", "verdict", "target", "score", "threshold", "seconds")
        for n, v in verdicts:
            table.add_row(
                n,
                "backdoored" if v.backdoored else "clean",
                str(v.target),
                f"{v.score:.3f}",
                f"{v.threshold:.3f}",
                f"{v.seconds:.1f}",
            )
        console.print(table)
    if figures is not None and len(loaded) == 2:
        from ban.figures.detection import carries_noise, tsne_figure

        models, names, found = [c.model for c, _ in loaded], [n for n, _ in verdicts], [v for _, v in verdicts]
        if all(carries_noise(v) for v in found):  # BAN's verdicts carry the noise the t-SNE applies
            tsne = tsne_figure(models, found, names, loaded[0][1], figures / "tsne.png", seed=seed)
            console.print(f"  figure: {tsne}")
    if json_out is not None:
        from ban.utils import atomic_write_text

        payload = verdicts[0][1].to_dict() if len(verdicts) == 1 else [{"model": n, **v.to_dict()} for n, v in verdicts]
        atomic_write_text(json_out, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if fail_on_backdoor and any(v.backdoored for _, v in verdicts):
        raise typer.Exit(1)
