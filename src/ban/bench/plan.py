"""The benchmark's work as content-addressed tasks: train a model, run a detector on it, run a mitigation on it.

Each task's output path carries the hash of everything that shapes it (its resolved spec), so a
rerun finds finished work by path alone and an edited setting gets a new path.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ban.attacks import version_fields
from ban.bench.spec import ArchSpec, AttackSpec, BenchSpec, MethodSpec
from ban.errors import BanError

CLEAN = "clean"
#: bump when the meaning of a stored file changes, so old files are not reused
LAYOUT_VERSION = 1


def content_key(obj: Any) -> str:
    """Short stable hash of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps([obj, LAYOUT_VERSION], sort_keys=True).encode()).hexdigest()[:12]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


@dataclass
class ModelJob:
    """One model of the zoo: architecture, seed, recipe, and (for backdoored models) the attack."""

    group: str
    arch: str
    width: float
    arch_label: str
    seed: int
    attack: str | None
    attack_params: dict[str, Any]
    recipe: dict[str, Any]
    data: dict[str, Any]
    key: str = ""

    def __post_init__(self) -> None:
        self.key = content_key(
            {
                "arch": self.arch,
                "width": self.width,
                "seed": self.seed,
                "attack": self.attack,
                "attack_params": self.attack_params,
                "recipe": self.recipe,
                "data": self.data,
                **version_fields(self.attack),  # a model of older training code is not reused
            }
        )

    @property
    def id(self) -> str:
        return _slug(f"{self.group}-{self.arch_label}-s{self.seed}-{self.key[:8]}")

    @property
    def backdoored(self) -> bool:
        return self.attack is not None

    def path(self, out: Path) -> Path:
        return out / "models" / f"{self.id}.safetensors"


@dataclass
class MethodJob:
    """A detector ("detect") or mitigation ("mitigate") run on one model with the defender's clean data."""

    kind: Literal["detect", "mitigate"]
    model: ModelJob
    method: str
    label: str
    kwargs: dict[str, Any]
    clean_samples: int
    seed: int
    key: str = ""

    def __post_init__(self) -> None:
        self.key = content_key(
            {
                "kind": self.kind,
                "model": self.model.key,
                "method": self.method,
                "kwargs": self.kwargs,
                "clean_samples": self.clean_samples,
                "seed": self.seed,
            }
        )

    @property
    def id(self) -> str:
        return f"{self.kind} {self.label} on {self.model.id}"

    def path(self, out: Path) -> Path:
        return out / "results" / self.kind / self.model.id / f"{_slug(self.label)}-{self.key[:10]}.json"


@dataclass
class Task:
    """What an executor runs: a training job or a method job."""

    kind: Literal["train", "detect", "mitigate"]
    job: ModelJob | MethodJob
    depends_on: str | None = field(default=None)

    @property
    def id(self) -> str:
        return f"train {self.job.id}" if self.kind == "train" else self.job.id

    def path(self, out: Path) -> Path:
        return self.job.path(out)


def _data_key(spec: BenchSpec) -> dict[str, Any]:
    return spec.data.model_dump(mode="json", exclude={"data_dir"})


def _attack_params(atk: AttackSpec, i: int) -> dict[str, Any]:
    """The i-th model's attack parameters: the spec's, with the target cycling over `targets`.

    A `preset` is expanded into its values (and still named), so the model's key hashes the
    values it is trained with: a preset whose values change later does not reuse old models.
    """
    from ban.attacks import resolve_params

    params = resolve_params(atk.name, dict(atk.params)) if "preset" in atk.params else dict(atk.params)
    if atk.targets:
        params["target"] = atk.targets[i % len(atk.targets)]
    return params


def model_jobs(spec: BenchSpec) -> list[ModelJob]:
    """Every model of the zoo: per architecture, `models` per attack (targets cycling) and the clean ones.

    Ordered index-major: every group's first model, then every group's second, and so on. A run stopped
    early (or a partial one) has then covered all attacks and the clean models evenly, and the first
    models, which carry the per-method `models` limits and hence the costly work, come first.
    """
    recipe = spec.train.model_dump(mode="json")
    data = _data_key(spec)

    def job(arch: ArchSpec, group: str, i: int, attack: str | None, params: dict[str, Any]) -> ModelJob:
        return ModelJob(group, arch.arch, arch.width, arch.label, spec.seed + i, attack, params, recipe, data)

    jobs: list[ModelJob] = []
    for arch in spec.architectures:
        groups = [
            [
                job(arch, atk.row, i, atk.name, _attack_params(atk, i))
                for i in range(atk.models or spec.models_per_attack)
            ]
            for atk in spec.attacks
        ]
        groups.append([job(arch, CLEAN, i, None, {}) for i in range(spec.clean_models)])
        jobs += [g[i] for i in range(max(map(len, groups))) for g in groups if i < len(g)]
    return jobs


def _method_job(
    kind: Literal["detect", "mitigate"], model: ModelJob, m: MethodSpec, default_n: int, seed: int
) -> MethodJob:
    return MethodJob(kind, model, m.name, m.column, m.kwargs(), m.clean_samples or default_n, seed)


def _runs_on(method: MethodSpec, index: int, group: str) -> bool:
    """Whether `method` runs on the model at `index` in `group` (its `models` limit and its `groups`)."""
    return (method.models is None or index < method.models) and (method.groups is None or group in method.groups)


def _require_known(option: str, names: list[str], known: list[str], verb: str) -> None:
    """A one-line error for the first of `names` that is not in `known` (an option of `ban bench run`)."""
    unknown = [n for n in names if n not in known]
    if unknown:
        choices = ", ".join(known)
        raise BanError(f"{option} names '{unknown[0]}', which this spec does not {verb}; choose from {choices}")


def only_methods(tasks: list[Task], labels: list[str]) -> list[Task]:
    """The tasks of the methods labelled `labels` and the trainings they need (`ban bench run --methods`)."""
    known = list(dict.fromkeys(t.job.label for t in tasks if isinstance(t.job, MethodJob)))
    _require_known("--methods", labels, known, "run")
    kept = [t for t in tasks if isinstance(t.job, MethodJob) and t.job.label in labels]
    wanted = {t.id for t in kept} | {t.depends_on for t in kept}
    return [t for t in tasks if t.id in wanted]


def only_groups(tasks: list[Task], groups: list[str]) -> list[Task]:
    """The tasks on the models of `groups` (attack rows or "clean"; `ban bench run --groups`)."""

    def group(t: Task) -> str:
        return t.job.model.group if isinstance(t.job, MethodJob) else t.job.group

    _require_known("--groups", groups, list(dict.fromkeys(map(group, tasks))), "train")
    return [t for t in tasks if group(t) in groups]


def plan_tasks(spec: BenchSpec) -> list[Task]:
    """All tasks of the benchmark, each model's training followed by the detectors and mitigations on it."""
    tasks: list[Task] = []
    for model in model_jobs(spec):
        train = Task("train", model)
        tasks.append(train)
        index = model.seed - spec.seed  # position of the model in its group (model_jobs: seed = spec.seed + i)
        for d in (d for d in spec.detectors if _runs_on(d, index, model.group)):
            job = _method_job("detect", model, d, spec.clean_samples.detect, spec.seed)
            tasks.append(Task("detect", job, train.id))
        if model.backdoored:
            for m in (m for m in spec.mitigations if _runs_on(m, index, model.group)):
                job = _method_job("mitigate", model, m, spec.clean_samples.mitigate, spec.seed)
                tasks.append(Task("mitigate", job, train.id))
    return tasks
