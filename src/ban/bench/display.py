"""The benchmark's live progress: per kind of task, how many are done, running and left (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ban.bench.plan import Task
from ban.bench.work import Outcome

KINDS = ("train", "detect", "mitigate")


class RunDisplay:
    """Rows train / detect / mitigate with done/total and what runs now; a log line per finished task.

    Silent when `quiet`, except for warnings (a backdoor that did not take).
    """

    def __init__(self, tasks: list[Task], done: set[str], quiet: bool = False) -> None:
        self.quiet = quiet
        self.running: dict[str, set[str]] = {k: set() for k in KINDS}
        self.failed = 0
        self.console = Console(stderr=True)
        self._progress: Progress | None = None
        if quiet:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._rows = {}
        for kind in KINDS:
            total = sum(t.kind == kind for t in tasks)
            if total:
                finished = sum(t.kind == kind and t.id in done for t in tasks)
                self._rows[kind] = self._progress.add_task(kind, total=total, completed=finished, state="")
        self._progress.start()
        self._refresh()

    def _state(self, kind: str, left: int) -> str:
        running = sorted(self.running[kind])
        state = f"left {left}"
        if running:
            names = ", ".join(r.split(" on ")[-1].removeprefix("train ") for r in running[:2])
            more = f" +{len(running) - 2}" if len(running) > 2 else ""
            state += f" · running {len(running)}: {names}{more}"
        return state

    def _refresh(self) -> None:
        if self._progress is None:
            return
        for kind, row in self._rows.items():
            task = next(t for t in self._progress.tasks if t.id == row)
            left = int((task.total or 0) - task.completed) - len(self.running[kind])
            self._progress.update(row, state=self._state(kind, left))

    def started(self, task: Task) -> None:
        self.running[task.kind].add(task.id)
        self._refresh()

    def finished(self, task: Task, outcome: Outcome) -> None:
        self.running[task.kind].discard(task.id)
        if not outcome.ok:
            self.failed += 1
        if outcome.warning:
            console = self._progress.console if self._progress is not None else self.console
            console.print(f"warning: {outcome.warning}", soft_wrap=True, markup=False, highlight=False)
        if self._progress is None:
            return
        if outcome.ok:
            self._progress.console.log(f"[green]done[/] {task.id} ({outcome.seconds:.0f} s): {outcome.summary}")
            self._progress.advance(self._rows[task.kind])
        else:
            self._progress.console.log(f"[red]failed[/] {task.id}: {outcome.error}")
        self._refresh()

    def skipped(self, task: Task, reason: str) -> None:
        if self._progress is not None:
            self._progress.console.log(f"[yellow]skipped[/] {task.id}: {reason}")

    def stopped(self, unfinished: int) -> None:
        """Say (even when quiet) that the run was stopped and how it continues."""
        self.console.print(
            f"stopped: {unfinished} task(s) unfinished; the same command continues where this run stopped",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
