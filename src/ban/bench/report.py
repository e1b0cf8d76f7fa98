"""`write_report(out)`: the paper-style tables (Markdown, CSV, LaTeX) and figures of a benchmark folder."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ban.bench.consistency import mixed_settings_lines
from ban.bench.metrics import (
    FPR_BUDGET,
    auroc,
    bd_and_acc,
    bootstrap,
    detection_times,
    is_correct,
    labels_and_scores,
    mean_std,
    not_implanted,
    tpr_at_fpr,
)
from ban.bench.plan import CLEAN
from ban.bench.results import BenchResults, load_results
from ban.bench.store import load_bench_spec
from ban.bench.table import Table
from ban.utils import atomic_write_text


@dataclass
class WrittenReport:
    markdown: Path
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # also in the Markdown, for a caller that prints no tables


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if x is None or np.isnan(x) else f"{x:.{digits}f}"


def _groups(res: BenchResults) -> list[str]:
    rows = [a.row for a in res.spec.attacks]
    return rows + ([CLEAN] if res.spec.clean_models else [])


def _archs(res: BenchResults) -> list[str]:
    return [a.label for a in res.spec.architectures]


def _detectors(res: BenchResults) -> list[str]:
    """The spec's detector columns that have results (a partial run's others are listed, not tabled)."""
    ran = {r["method"] for r in res.detections}
    return [d.column for d in res.spec.detectors if d.column in ran]


def _mitigations(res: BenchResults) -> list[str]:
    ran = {r["method"] for r in res.mitigations}
    return [m.column for m in res.spec.mitigations if m.column in ran]


def _not_run(res: BenchResults) -> list[str]:
    """Method columns of the spec without a single result yet."""
    methods = [m.column for m in res.spec.detectors + res.spec.mitigations]
    ran = set(_detectors(res)) | set(_mitigations(res))
    return [m for m in dict.fromkeys(methods) if m not in ran]


@dataclass
class ImplantGate:
    """Which poisoned models the detection and mitigation tables count: those with ASR ≥ `min_asr`."""

    min_asr: float
    weak: set[str]  # ids of the poisoned models below it ("not implanted")

    @classmethod
    def of(cls, res: BenchResults) -> ImplantGate:
        return cls(res.spec.min_asr, not_implanted(res.models, res.spec.min_asr))

    def counted(self, res: BenchResults) -> BenchResults:
        """`res` without the detections and mitigations of not-implanted models (the zoo keeps every model)."""

        def keep(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in rows if r["model"]["id"] not in self.weak]

        return replace(res, detections=keep(res.detections), mitigations=keep(res.mitigations))

    def note(self) -> str:
        """The sentence under every detection table."""
        rule = f"Backdoored = poisoned with ASR ≥ {self.min_asr:g} (the spec's min_asr)"
        n = len(self.weak)
        if not n:
            return f"{rule}; no poisoned model fell below it."
        which = "1 weaker poisoned model is" if n == 1 else f"{n} weaker poisoned models are"
        return f"{rule}; {which} counted neither as backdoored nor as clean (table 'Not implanted')."


def _by(results: list[dict[str, Any]], **where: str) -> list[dict[str, Any]]:
    out = []
    for r in results:
        if all((r["method"] if k == "method" else r["model"][k]) == v for k, v in where.items()):
            out.append(r)
    return out


def detection_table(res: BenchResults, gate: ImplantGate) -> Table:
    """Rows: attack (and clean); columns: detector x architecture, each a Bd. and an Acc. cell.

    `res` holds the counted results only (`ImplantGate.counted`); `gate` writes the note.
    """
    archs, dets = _archs(res), _detectors(res)
    headers = ["Attack"]
    cols: list[tuple[str, str]] = []
    for arch in archs:
        for det in dets:
            name = det if len(archs) == 1 else f"{det} ({arch})"
            headers += [f"{name} Bd.", f"{name} Acc."]
            cols.append((arch, det))
    table = Table(
        "detection",
        "Detection: Bd. = backdoored models detected with the right target / N (clean row: flagged / N); "
        "Acc. = detection accuracy over backdoored and clean models",
        headers,
        note="Acc. of an attack row counts that attack's models and the clean models of the same architecture. "
        + gate.note(),
    )
    for g in _groups(res):
        row = [g]
        for arch, det in cols:
            rows = _by(res.detections, arch_label=arch, method=det)
            if not any(r["model"]["group"] == g for r in rows):  # no result of this group yet: no Acc. either
                row += ["-", "-"]
                continue
            bd, acc = bd_and_acc(rows, g, CLEAN)
            row += [str(bd), _fmt(acc.rate, 2)]
        table.rows.append(row)
    return table


def roc_table(res: BenchResults, n_boot: int, gate: ImplantGate) -> Table:
    """Per detector over the whole zoo: AUROC and TPR at 5% FPR with bootstrap 95% CIs, detection rate.

    `res` holds the counted results only (`ImplantGate.counted`); `gate` writes the note.
    """
    table = Table(
        "roc",
        f"Score-based detection over the zoo: AUROC and TPR at {FPR_BUDGET:.0%} FPR "
        f"(bootstrap 95% CI, {n_boot} resamples)",
        [
            "Detector",
            "Backdoored",
            "Clean",
            "AUROC",
            "AUROC low",
            "AUROC high",
            "TPR@5%FPR",
            "TPR low",
            "TPR high",
            "Detected",
            "Accuracy",
        ],
        note="Backdoored models are positives; the verdict's continuous score ranks them. Detected = flagged with the "
        "right target; Accuracy = correct verdicts over all models. " + gate.note(),
    )
    for det in _detectors(res):
        rows = _by(res.detections, method=det)
        y, s = labels_and_scores(rows)
        a = bootstrap(y, s, auroc, n_boot)
        t = bootstrap(y, s, tpr_at_fpr, n_boot)
        bd = sum(is_correct(r) for r in rows if r["model"]["backdoored"])
        correct = sum(is_correct(r) for r in rows)
        table.rows.append(
            [
                det,
                str(int(y.sum())),
                str(int(len(y) - y.sum())),
                _fmt(a.value),
                _fmt(a.low),
                _fmt(a.high),
                _fmt(t.value),
                _fmt(t.low),
                _fmt(t.high),
                f"{bd}/{int(y.sum())}",
                _fmt(correct / len(rows) if rows else np.nan),
            ]
        )
    return table


def time_table(res: BenchResults) -> Table:
    """Mean and median wall time of one detection, per detector (and architecture), and how many a cap cut."""
    headers = ["Detector", "Architecture", "N", "Mean (s)", "Median (s)", "Allowance (s)", "Cut"]
    table = Table(
        "time",
        "Detection time per model (seconds)",
        headers,
        note="Allowance: the method's wall-clock cap per model (`time_limit`; '-' none). Cut: runs that reached it "
        "and decided from what they had then, before their own stopping rule.",
    )
    for det in _detectors(res):
        for arch in _archs(res):
            rows = _by(res.detections, method=det, arch_label=arch)
            mean, median = detection_times(rows)
            limits = sorted({r["verdict"]["settings"].get("time_limit") for r in rows} - {None})
            cut = sum(bool(r["verdict"]["details"].get("cut_by_time_limit")) for r in rows)
            allowance, cuts = (", ".join(_fmt(x, 0) for x in limits), f"{cut}/{len(rows)}") if limits else ("-", "-")
            table.rows.append([det, arch, str(len(rows)), _fmt(mean, 1), _fmt(median, 1), allowance, cuts])
    return table


def zoo_table(res: BenchResults, gate: ImplantGate) -> Table:
    """BA and ASR (mean±std over all the models) of the zoo, per attack and architecture, and how many implanted."""
    archs = _archs(res)
    headers = ["Attack"]
    for arch in archs:
        name = "" if len(archs) == 1 else f" ({arch})"
        headers += [f"N{name}", f"BA{name}", f"ASR{name}", f"Implanted{name}"]
    table = Table(
        "zoo",
        "The zoo: benign accuracy (BA) and attack success rate (ASR), mean±std over models",
        headers,
        note=f"Implanted = models with ASR ≥ {gate.min_asr:g} (source-specific attacks: on the victim class); "
        "BA and ASR are over all models.",
    )
    for g in _groups(res):
        row = [g]
        for arch in archs:
            models = [m for m in res.models if m["group"] == g and m["arch_label"] == arch]
            strong = sum(m["id"] not in gate.weak for m in models)
            implanted = f"{strong}/{len(models)}" if g != CLEAN and models else "-"
            row += [str(len(models)), mean_std(m["ba"] for m in models), mean_std(m["asr"] for m in models), implanted]
        table.rows.append(row)
    return table


def not_implanted_table(res: BenchResults, gate: ImplantGate) -> Table:
    """The poisoned models below `min_asr`, with what each detector said of them (not counted anywhere)."""
    dets = _detectors(res)
    table = Table(
        "not-implanted",
        f"Not implanted: poisoned models with ASR < {gate.min_asr:g}, counted neither as backdoored nor as clean",
        ["Attack", "Architecture", "Model", "Target", "BA", "ASR", *dets],
        note="ASR of a source-specific attack is on its victim class. A detector's cell: its verdict on the model "
        "(for information only). More epochs, or the attack's `preset: cpu` where it has one, help "
        "(docs/attacks.md).",
    )
    for m in res.models:
        if m["id"] not in gate.weak:
            continue
        verdicts = {r["method"]: r["verdict"] for r in res.detections if r["model"]["id"] == m["id"]}
        cells = []
        for det in dets:
            v = verdicts.get(det)
            cells.append("-" if v is None else (f"flagged, target {v['target']}" if v["backdoored"] else "not flagged"))
        target = "-" if m.get("target") is None else str(m["target"])
        if m.get("victim") is not None:
            target += f" (victim {m['victim']})"
        table.rows.append([m["group"], m["arch_label"], m["id"], target, _fmt(m["ba"]), _fmt(m["asr"]), *cells])
    return table


def mitigation_table(res: BenchResults, gate: ImplantGate) -> Table:
    """Rows: attack (x architecture); columns: BA / ASR before, then after each method, and its time.

    `res` holds the counted results only (`ImplantGate.counted`).
    """
    methods = _mitigations(res)
    archs = _archs(res)
    headers = ["Attack", "N", "Before BA / ASR"]
    for m in methods:
        headers += [f"{m} BA / ASR", f"{m} time (s)"]
    table = Table(
        "mitigation",
        "Mitigation: BA / ASR on the test set before and after each method (mean over the N mitigated models)",
        headers,
        note=f"Only models with ASR ≥ {gate.min_asr:g} before mitigation are counted.",
    )
    for g in [a.row for a in res.spec.attacks]:
        for arch in archs:
            mine = [r for r in res.mitigations if r["model"]["group"] == g and r["model"]["arch_label"] == arch]
            mitigated = {r["model"]["id"] for r in mine}  # before and after over the same models
            models = [m for m in res.models if m["group"] == g and m["arch_label"] == arch and m["id"] in mitigated]
            label = g if len(archs) == 1 else f"{g} ({arch})"
            before = f"{_mean(m['ba'] for m in models)} / {_mean(m['asr'] for m in models)}"
            row = [label, str(len(models)), before]
            for m in methods:
                rs = [r for r in mine if r["method"] == m]
                after = [r["report"].get("after") or {} for r in rs]
                row.append(f"{_mean(a.get('ba') for a in after)} / {_mean(a.get('asr') for a in after)}" if rs else "-")
                row.append(_mean((r["report"]["seconds"] for r in rs), 1))
            table.rows.append(row)
    return table


def _mean(values: Any, digits: int = 3) -> str:
    v = [float(x) for x in values if x is not None]
    return _fmt(float(np.mean(v)), digits) if v else "-"


def build_tables(res: BenchResults, n_boot: int = 1000) -> list[Table]:
    """The report's tables; detection and mitigation count only implanted backdoors (see `ImplantGate`)."""
    gate = ImplantGate.of(res)
    counted = gate.counted(res)
    tables = [zoo_table(res, gate)]
    if gate.weak:
        tables.append(not_implanted_table(res, gate))
    if _detectors(res):
        tables += [detection_table(counted, gate), roc_table(counted, n_boot, gate), time_table(res)]
    if _mitigations(res) and res.spec.attacks:
        tables.append(mitigation_table(counted, gate))
    return tables


def write_report(out: str | Path, n_boot: int = 1000) -> WrittenReport:
    """Read `out`'s results and write report/report.md, report/report.tex, report/tables/*.csv and the figures."""
    out = Path(out)
    spec = load_bench_spec(out)
    res = load_results(spec, out)
    folder = out / "report"
    tables = build_tables(res, n_boot)
    written = WrittenReport(folder / "report.md")
    counted = ImplantGate.of(res).counted(res)  # the figures count what the detection tables count
    by_det = {d: _by(counted.detections, method=d) for d in _detectors(res)}
    from ban.figures.bench import heatmap_figure, roc_figure  # figures sit above bench; they read its metrics

    figures = [
        roc_figure(by_det, folder / "roc.png"),
        heatmap_figure(by_det, _groups(res), CLEAN, folder / "heatmap.png"),
    ]
    done = res.total - len(res.missing)
    md = [f"# Benchmark `{spec.name}`", ""]
    if spec.description:
        md += [spec.description.strip(), ""]
    md += [
        f"{done} of {res.total} results present ({len(res.models)} models, {len(res.detections)} detections, "
        f"{len(res.mitigations)} mitigations)"
        + (f"; {len(res.missing)} missing: rerun `ban bench run` to finish." if res.missing else "."),
        "",
    ]
    not_run = _not_run(res)
    if not_run:
        md += [f"No results yet (left out of the tables): {', '.join(not_run)}.", ""]
    written.warnings = mixed_settings_lines(res.detections + res.mitigations)
    for line in written.warnings:
        md += [f"**Warning**: {line}", ""]
    tex = []
    for t in tables:
        md.append(t.to_markdown())
        tex.append(t.to_latex())
        csv_path = folder / "tables" / f"{t.name}.csv"
        atomic_write_text(csv_path, t.to_csv())
        written.files.append(csv_path)
    for stale in set((folder / "tables").glob("*.csv")) - set(written.files):  # e.g. no model is weak any more
        stale.unlink()
    for fig in figures:
        if fig is not None:
            md.append(f"![{fig.stem}]({fig.name})\n")
            written.files.append(fig)
    atomic_write_text(folder / "report.tex", "% needs \\usepackage{booktabs}\n" + "\n".join(tex))
    atomic_write_text(written.markdown, "\n".join(md))
    written.files[:0] = [written.markdown, folder / "report.tex"]
    return written
