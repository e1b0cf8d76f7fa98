"""Run one benchmark task (train / detect / mitigate) and write its file atomically.

These functions run in executor workers (the main process, a process pool, Ray), so they take
plain picklable arguments and load what they need themselves; datasets are cached per process.
"""

from __future__ import annotations

import inspect
import json
import time
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ban.attacks.implant import IMPLANT_ASR
from ban.bench.plan import MethodJob, ModelJob, Task
from ban.clean_data import CleanData
from ban.data import ImageData, balanced_sample, defender_split, load_dataset
from ban.errors import BanError
from ban.utils import atomic_write_text


@dataclass(frozen=True)
class Context:
    """Where results go and how tasks run (not part of any content key)."""

    out: str
    data_dir: str | None = None
    device: str = "auto"
    threads: int | None = None
    min_asr: float = IMPLANT_ASR  # the spec's gate: a trained backdoor below it is warned of


@dataclass
class Outcome:
    """What a worker reports back about one task (`warning`: a trained backdoor that did not take)."""

    task_id: str
    ok: bool
    seconds: float
    summary: str = ""
    error: str = ""
    warning: str = ""


@lru_cache(maxsize=4)
def _dataset(name: str, split: str, data_dir: str | None) -> ImageData:
    return load_dataset(name, split, data_dir)


@lru_cache(maxsize=4)
def _split(name: str, data_dir: str | None, fraction: float, seed: int) -> tuple[ImageData, ImageData]:
    return defender_split(_dataset(name, "train", data_dir), fraction, seed)


def attacker_part(job: ModelJob, ctx: Context) -> ImageData:
    """The attacker's 90% (a class-balanced subset of it, drawn with the model's seed, when the spec asks)."""
    d = job.data
    attacker, _ = _split(d["dataset"], ctx.data_dir, d["defender_fraction"], d["split_seed"])
    n = d.get("train_subset")
    return attacker if n is None or n >= len(attacker) else balanced_sample(attacker, n, seed=job.seed)


def defender_pool(job: ModelJob, ctx: Context) -> ImageData:
    """The defender's held-out clean pool (the attacker never saw it)."""
    d = job.data
    return _split(d["dataset"], ctx.data_dir, d["defender_fraction"], d["split_seed"])[1]


def test_set(job: ModelJob, ctx: Context) -> ImageData:
    """The test set (a class-balanced subset with seed 0 when the spec asks) for BA and ASR."""
    d = job.data
    test = _dataset(d["dataset"], "test", ctx.data_dir)
    n = d.get("test_subset")
    return test if n is None or n >= len(test) else balanced_sample(test, n, seed=0)


def clean_data(job: MethodJob, ctx: Context) -> CleanData:
    """`job.clean_samples` class-balanced images from the defender's pool, drawn with the job's seed."""
    pool = defender_pool(job.model, ctx)
    n = job.clean_samples
    return CleanData.from_images(pool if n >= len(pool) else balanced_sample(pool, n, seed=job.seed))


def with_clean_count(cls: type | None, kwargs: dict[str, Any], n: int) -> dict[str, Any]:
    """Pass the spec's clean-sample count as the method's own `clean_samples` setting when it has one
    (and the spec's settings do not set it), so methods that require N images get the N the bench gives."""
    if cls is None:
        return kwargs
    accepts = inspect.signature(getattr(cls, "Settings", cls.__init__)).parameters  # a mitigation: its dataclass
    if "clean_samples" not in kwargs and "clean_samples" in accepts:
        return {**kwargs, "clean_samples": n}
    return kwargs


def model_record(job: ModelJob, meta: dict[str, Any]) -> dict[str, Any]:
    """The facts about a model that every result file repeats (ground truth for the report)."""
    attack = meta.get("attack") or {}
    params = attack.get("params", {})
    return {
        "id": job.id,
        "key": job.key,
        "group": job.group,
        "arch": job.arch,
        "arch_label": job.arch_label,
        "width": job.width,
        "seed": job.seed,
        "attack": job.attack,
        "backdoored": job.backdoored,
        "target": params.get("target") if job.backdoored else None,
        "mode": params.get("mode") if job.backdoored else None,
        "victim": params.get("victim") if job.backdoored else None,
        "ba": meta.get("ba"),
        "asr": meta.get("asr"),
    }


def train(job: ModelJob, ctx: Context) -> tuple[str, str]:
    """Train one model of the zoo on the attacker's part and save it with its BA/ASR.

    Returns (summary, warning); the warning is not empty when a backdoor ended below the ASR
    the report needs (the model is written all the same, and the report lists it apart).
    """
    from ban.recipe import Recipe
    from ban.trainer import asr_warning, train_checkpoint

    path = job.path(Path(ctx.out))
    if path.exists():
        return "already trained", ""
    d = job.data
    recipe = Recipe(
        arch=job.arch,
        width=job.width,
        dataset=d["dataset"],
        split_seed=d["split_seed"],
        defender_fraction=d["defender_fraction"],
        subset=d.get("train_subset"),
        subset_seed=job.seed,
        test_subset=d.get("test_subset"),
        attack=job.attack,
        attack_params=job.attack_params,
        seed=job.seed,
        **job.recipe,
    )
    bench = {"id": job.id, "key": job.key, "group": job.group}
    data = (attacker_part(job, ctx), test_set(job, ctx))
    ckpt = train_checkpoint(recipe, path, data=data, device=ctx.device, meta={"bench": bench})
    asr = f" ASR {ckpt.meta['asr']:.3f}" if ckpt.meta.get("asr") is not None else ""
    warning = asr_warning(ckpt, "bench", ctx.min_asr)
    return f"BA {ckpt.meta['ba']:.3f}{asr}", f"{job.id}: {warning}" if warning else ""


def detect(job: MethodJob, ctx: Context) -> str:
    """Run one detector on one model (bare model + clean data: the detector never sees the attack)."""
    from ban.checkpoint import load_model
    from ban.detectors import DETECTORS, create_detector

    ckpt = load_model(job.model.path(Path(ctx.out)))
    clean = clean_data(job, ctx)
    kwargs = with_clean_count(DETECTORS.get(job.method), job.kwargs, len(clean))
    detector = create_detector(job.method, seed=job.seed, device=ctx.device, quiet=True, **kwargs)
    # a long search stopped part-way (a killed run, the end of a sitting) continues from here next time
    detector.snapshot_dir = job.path(Path(ctx.out)).with_suffix(".partial")
    verdict = detector.detect(ckpt.model, clean)
    result = {
        "kind": "detect",
        "key": job.key,
        "method": job.label,
        "detector": job.method,
        "settings": kwargs,
        "clean_samples": len(clean),
        "model": model_record(job.model, ckpt.meta),
        "verdict": verdict.to_dict(),
    }
    atomic_write_text(job.path(Path(ctx.out)), json.dumps(result, indent=2, sort_keys=True) + "\n")
    flag = f"flagged, target {verdict.target}" if verdict.backdoored else "not flagged"
    return f"{flag} (score {verdict.score:.3g}, {verdict.seconds:.1f} s)"


def mitigate(job: MethodJob, ctx: Context) -> str:
    """Run one mitigation on one backdoored model; BA/ASR before and after are measured by the evaluator."""
    from ban.checkpoint import load_model
    from ban.mitigations import MITIGATIONS, create_mitigation

    ckpt = load_model(job.model.path(Path(ctx.out)))
    clean = clean_data(job, ctx)
    kwargs = with_clean_count(MITIGATIONS.get(job.method), job.kwargs, len(clean))
    method = create_mitigation(job.method, seed=job.seed, device=ctx.device, quiet=True, **kwargs)
    _, report = method.run(ckpt.model, clean, test_set(job.model, ctx), ckpt.attack)
    result = {
        "kind": "mitigate",
        "key": job.key,
        "method": job.label,
        "mitigation": job.method,
        "settings": kwargs,
        "clean_samples": len(clean),
        "model": model_record(job.model, ckpt.meta),
        "report": report.to_dict(),
    }
    atomic_write_text(job.path(Path(ctx.out)), json.dumps(result, indent=2, sort_keys=True) + "\n")
    after = report.after
    return f"after: BA {after.ba:.3f} ASR {after.asr:.3f}" if after and after.asr is not None else "done"


def execute(task: Task, ctx: Context) -> Outcome:
    """Run `task`; errors are reported back (not raised) so one failure does not stop the benchmark."""
    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    start = time.perf_counter()
    warning = ""
    try:
        if task.kind == "train":
            assert isinstance(task.job, ModelJob)
            summary, warning = train(task.job, ctx)
        elif task.kind == "detect":
            assert isinstance(task.job, MethodJob)
            summary = detect(task.job, ctx)
        else:
            assert isinstance(task.job, MethodJob)
            summary = mitigate(task.job, ctx)
    except BanError as exc:
        return Outcome(task.id, False, time.perf_counter() - start, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a task's crash is reported, the benchmark goes on
        tb = traceback.format_exc(limit=3).strip().splitlines()
        return Outcome(task.id, False, time.perf_counter() - start, error=f"{type(exc).__name__}: {exc} [{tb[-1]}]")
    return Outcome(task.id, True, time.perf_counter() - start, summary=summary, warning=warning)
