"""Progress bars (rich), quiet when output is not a terminal or progress is off."""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True)


def enabled(progress: bool | None = None) -> bool:
    """Progress bars show when asked for (default) and stderr is a terminal or a Jupyter notebook
    (rich draws them as a live cell output there)."""
    if progress is False:
        return False
    return sys.stderr.isatty() or console.is_jupyter


def make_progress(*extra_columns, transient: bool = False) -> Progress:
    """A rich Progress with the project's standard columns (description, bar, n/N, elapsed, ETA);
    ``transient`` bars vanish when done (for work whose result is printed as a line anyway)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def track(items: Iterable[T], description: str, total: int | None = None, progress: bool | None = None) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (or silently)."""
    if not enabled(progress):
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
