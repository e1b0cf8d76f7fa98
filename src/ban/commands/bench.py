"""`ban bench run SPEC --out DIR` and `ban bench report DIR`: the benchmark over a zoo of models."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ban.commands.common import console, err_console
from ban.errors import BanError

app = typer.Typer(
    name="bench",
    help="Benchmark detectors and mitigations over a zoo of clean and backdoored models.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("run")
def run(
    spec: Path = typer.Argument(..., help="A zoo spec (YAML), e.g. benchmarks/specs/smoke.yaml."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (models, results, report)."),
    executor: str = typer.Option("local", "--executor", help="local (process pool; --jobs 1 runs inline) or ray."),
    jobs: int = typer.Option(
        None, "--jobs", "-j", help="Tasks run at once (default: local 1, run inline; ray: the cluster's CPUs)."
    ),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address (default: start Ray locally)."),
    force: bool = typer.Option(False, "--force", help="Use DIR even if it holds another spec's results."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Override the spec's data.data_dir."),
    device: str = typer.Option(None, "--device", help="Override the spec's device (auto, cpu, cuda[:N])."),
    threads: int = typer.Option(None, "--threads", min=1, help="Torch threads per task (default: cores / jobs)."),
    methods: str = typer.Option(
        None, "--methods", help="Run only these methods (labels, comma-separated) and the models they need."
    ),
    groups: str = typer.Option(
        None,
        "--groups",
        help="Only the models of these groups (attack rows or clean, comma-separated), e.g. one method on the clean "
        "models.",
    ),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report when the run is complete."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Train the zoo's missing models, run every detector and mitigation, write one JSON per result."""
    from ban.bench.runner import run_bench
    from ban.bench.spec import load_spec

    bench = load_spec(spec).with_overrides(str(data_dir) if data_dir else None, device)
    start = time.perf_counter()
    labels = _names(methods)
    summary = run_bench(bench, out, executor, jobs, ray_address, force, quiet, threads, labels, _names(groups))
    wall = time.perf_counter() - start
    console.print(
        f"{summary.total} tasks: {summary.cached} already done, {summary.ran} run now, "
        f"{len(summary.failed)} failed; {wall:.0f} s"
    )
    if summary.failed:
        for task_id, error in list(summary.failed.items())[:10]:
            err_console.print(f"failed: {task_id}: {error}")
        raise typer.Exit(1)
    if report:
        _write_report(out, quiet)


def _names(option: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [m.strip() for m in option.split(",") if m.strip()] if option else None


@app.command("report")
def report_cmd(
    out: Path = typer.Argument(..., help="A folder written by `ban bench run`."),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", min=0, help="Bootstrap resamples for the confidence intervals (0: none)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only list the files written."),
) -> None:
    """Tables (Markdown, CSV, LaTeX), AUROC / TPR@5%FPR with bootstrap CIs, times, BA/ASR, plots."""
    _write_report(out, quiet, bootstrap)


def _write_report(out: Path, quiet: bool, bootstrap: int = 1000) -> None:
    from ban.bench.report import write_report

    if not out.is_dir():
        raise BanError(f"{out} not found; pass the --out folder of `ban bench run`")
    written = write_report(out, n_boot=bootstrap)
    if not quiet:
        console.print(written.markdown.read_text(), soft_wrap=True, markup=False, highlight=False)
    else:  # warnings (results of mixed settings) are shown even when quiet
        for line in written.warnings:
            console.print(f"Warning: {line}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"report: {', '.join(str(p) for p in written.files)}", soft_wrap=True)


@app.command("reference")
def reference_cmd(
    out: Path = typer.Argument(..., help="A folder written by `ban bench run`."),
    file: Path = typer.Option(..., "--out", "-o", help="Where to write the reference file (JSON)."),
) -> None:
    """Write the clean models' scores per detector and architecture, for `ban detect --reference FILE`."""
    from ban.bench.results import load_results
    from ban.bench.store import load_bench_spec
    from ban.calibration import MIN_CLEAN, references_from_detections, save_references
    from ban.checkpoint import read_metadata

    if not out.is_dir():
        raise BanError(f"{out} not found; pass the --out folder of `ban bench run`")
    spec = load_bench_spec(out)
    res = load_results(spec, out)
    clean = [r for r in res.detections if not r["model"].get("backdoored")]
    if not clean:
        raise BanError(f"{out} has no detection results on clean models; add clean_models to the spec and run it")
    first = out / "models" / f"{clean[0]['model']['id']}.safetensors"
    dataset = read_metadata(first).get("dataset") or spec.data.dataset
    refs = references_from_detections(clean, str(dataset), spec.name)
    save_references(file, refs)
    for r in refs:
        few = f"  (fewer than {MIN_CLEAN}: `ban detect` will refuse it)" if len(r.clean_scores) < MIN_CLEAN else ""
        console.print(f"{r.label}: {len(r.clean_scores)} clean scores, highest {max(r.clean_scores):.3f}{few}")
    console.print(f"reference: {file}")
