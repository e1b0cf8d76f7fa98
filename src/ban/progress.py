"""One progress bar for every long loop (rich), silenced with quiet=True."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def _columns() -> tuple[ProgressColumn, ...]:
    """The columns of every ban progress bar: title, bar, done/total, elapsed, remaining, status."""
    return (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )


def track(items: Iterable[T], description: str, total: int | None = None, quiet: bool = False) -> Iterator[T]:
    """Iterate `items` showing a progress bar on stderr unless `quiet`."""
    if quiet:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(*_columns(), transient=False) as progress:
        task = progress.add_task(description, total=total, info="")
        for item in items:
            yield item
            progress.advance(task)


class Bar:
    """A manually advanced progress bar with a free-text status field."""

    def __init__(self, description: str, total: int, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress: Progress | None = None
        if not quiet:
            self._progress = Progress(*_columns())
            self._progress.start()
            self._task = self._progress.add_task(description, total=total, info="")

    def advance(self, n: int = 1, info: str | None = None) -> None:
        if self._progress is not None:
            kwargs = {"info": info} if info is not None else {}
            self._progress.update(self._task, advance=n, **kwargs)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
