"""Read a benchmark folder's finished results back: the planned tasks whose files exist."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ban.bench.plan import ModelJob, Task, plan_tasks
from ban.bench.spec import BenchSpec
from ban.checkpoint import read_metadata
from ban.errors import BanError
from ban.untrusted.files import read_bytes
from ban.untrusted.json_io import parse_json_object


@dataclass
class BenchResults:
    """The zoo's models (metadata), the detection and mitigation results, and what is still missing."""

    spec: BenchSpec
    models: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    mitigations: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.models) + len(self.detections) + len(self.mitigations) + len(self.missing)


def _model_row(job: ModelJob, meta: dict[str, Any]) -> dict[str, Any]:
    train = meta.get("train") or {}
    attack = (meta.get("attack") or {}).get("params", {})
    return {
        "id": job.id,
        "group": job.group,
        "arch_label": job.arch_label,
        "backdoored": job.backdoored,
        "seed": job.seed,
        "target": meta.get("target"),
        "victim": attack.get("victim"),
        "ba": meta.get("ba"),
        "asr": meta.get("asr"),
        "train_seconds": train.get("seconds"),
    }


def load_results(spec: BenchSpec, out: Path) -> BenchResults:
    """Every result of `spec` present under `out` (only files of the planned tasks: stale ones are ignored)."""
    res = BenchResults(spec)
    tasks: list[Task] = plan_tasks(spec)
    for task in tasks:
        path = task.path(out)
        if not path.exists():
            res.missing.append(task.id)
            continue
        if task.kind == "train":
            assert isinstance(task.job, ModelJob)
            res.models.append(_model_row(task.job, read_metadata(path)))
        elif task.kind == "detect":
            res.detections.append(read_result(path, "verdict", out))
        else:
            res.mitigations.append(read_result(path, "report", out))
    return res


def read_result(path: Path, body: str, out: Path) -> dict[str, Any]:
    """One task's result file, checked for the parts a report reads (`method`, `model` and `body`); a file
    that is not one (edited, truncated by a full disk) is one line naming it and how to redo its task."""
    fix = f"delete it and run `ban bench run SPEC --out {out}` again: that task is redone"
    row = parse_json_object(read_bytes(path, "bench result"), f"bench result {path}", fix)
    for key, kind in (("method", str), ("model", dict), (body, dict)):
        if not isinstance(row.get(key), kind):
            raise BanError(f"bench result {path} has no '{key}' {kind.__name__}; {fix}")
    return row
