"""`run_bench`: train the missing models, run every detector and mitigation, resume where a run stopped.

Finished work is found by its content-addressed path, so a rerun (after a crash, a kill, or with
more methods in the spec under --force) does only what is missing. Ready tasks are scheduled
results-first: a model's detectors run as soon as it is trained, so results stream in. Ctrl-C or
SIGTERM stops the workers with the driver (a task cut off leaves no result and reruns next time).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ban.bench.display import RunDisplay
from ban.bench.executors import create_executor
from ban.bench.plan import Task, only_groups, only_methods, plan_tasks
from ban.bench.spec import BenchSpec, check_against_data, check_data
from ban.bench.store import claim
from ban.bench.work import Context, Outcome


@dataclass
class RunSummary:
    """Counts of a run: tasks in the spec, found finished, run now, failed (with their errors), warnings."""

    total: int
    cached: int
    ran: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def schedule(tasks: list[Task], out: Path, executor: Any, display: RunDisplay) -> RunSummary:
    """Run the unfinished `tasks` on `executor`, dependents after their model, method tasks first."""
    done = {t.id for t in tasks if t.path(out).exists()}
    summary = RunSummary(total=len(tasks), cached=len(done))
    todo = [t for t in tasks if t.id not in done]
    failed_deps: set[str] = set()
    in_flight: dict[Any, Task] = {}

    def ready() -> Task | None:
        for t in todo:  # method tasks first: results stream in, a kill loses little
            if t.kind != "train" and t.depends_on in done:
                return t
        for t in todo:
            if t.kind == "train":
                return t
        return None

    aborted = True  # until the loop ends normally: an interrupt stops the workers instead of waiting for them
    try:
        while todo or in_flight:
            while len(in_flight) < executor.slots:
                task = ready()
                if task is None:
                    break
                todo.remove(task)
                display.started(task)
                in_flight[executor.submit(task)] = task
            if not in_flight:
                break
            for handle, outcome in executor.wait(list(in_flight)):
                task = in_flight.pop(handle)
                _finish(task, outcome, done, failed_deps, summary, display)
            _drop_orphans(todo, failed_deps, summary, display)
        aborted = False
    finally:
        executor.close(abort=aborted)
        display.close()
        if aborted:
            display.stopped(len(todo) + len(in_flight))
    return summary


def _drop_orphans(todo: list[Task], failed_deps: set[str], summary: RunSummary, display: RunDisplay) -> None:
    """Remove (in place) the tasks whose model failed to train, recording them as skipped."""
    for t in [t for t in todo if t.depends_on in failed_deps]:
        todo.remove(t)
        summary.failed[t.id] = f"skipped: {t.depends_on} failed"
        display.skipped(t, f"its model failed ({t.depends_on})")


def _finish(
    task: Task, outcome: Outcome, done: set[str], failed_deps: set[str], summary: RunSummary, display: RunDisplay
) -> None:
    display.finished(task, outcome)
    if outcome.warning:
        summary.warnings.append(outcome.warning)
    if outcome.ok:
        done.add(task.id)
        summary.ran += 1
        summary.seconds += outcome.seconds
    else:
        summary.failed[task.id] = outcome.error
        if task.kind == "train":
            failed_deps.add(task.id)


def run_bench(
    spec: BenchSpec,
    out: str | Path,
    executor: str = "local",
    jobs: int | None = None,
    ray_address: str | None = None,
    force: bool = False,
    quiet: bool = False,
    threads: int | None = None,
    methods: list[str] | None = None,
    groups: list[str] | None = None,
) -> RunSummary:
    """Run the benchmark `spec` into `out` (see `ban.bench.store` for the layout); `methods`: only these labels;
    `groups`: only the models of these groups (attack rows or "clean")."""
    out = Path(out)
    tasks = plan_tasks(spec)
    if methods:
        tasks = only_methods(tasks, methods)
    if groups:
        tasks = only_groups(tasks, groups)
    check_data(spec)
    check_against_data(spec)
    claim(out, spec, force)
    ctx = Context(str(out.resolve()), spec.data.data_dir, spec.device, threads, spec.min_asr)
    ex = create_executor(executor, ctx, jobs, ray_address, spec.resources.cpus_per_task, spec.resources.gpus_per_task)
    done = {t.id for t in tasks if t.path(out).exists()}
    display = RunDisplay(tasks, done, quiet)
    with terminate_as_interrupt():
        return schedule(tasks, out, ex, display)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within this block SIGTERM (`kill`, a scheduler's stop) interrupts like Ctrl-C, so the run stops its workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
