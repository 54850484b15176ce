"""Progress of long operations (a rebuild, applying a long tail, a download): a rich bar on a terminal,
a log line every few seconds otherwise (systemd's journal, a container's log), nothing in tests."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

log = logging.getLogger("invite_ledger.recovery")
T = TypeVar("T")


class Progress(Protocol):
    def start(self, description: str, total: int | None) -> None: ...
    def advance(self, amount: int) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


class LogProgress:
    """One log line every `every_s` seconds: how far, how fast, and what is left."""

    def __init__(self, logger: logging.Logger = log, every_s: float = 2.0) -> None:
        self._log = logger
        self._every = every_s
        self._description = ""
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._next = 0.0

    def start(self, description: str, total: int | None) -> None:
        self._description, self._total, self._done = description, total, 0
        self._started = time.monotonic()
        self._next = self._started + self._every

    def advance(self, amount: int) -> None:
        self._done += amount
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every
            self._log.info("%s", self._line(now))

    def _line(self, now: float) -> str:
        rate = self._done / max(now - self._started, 1e-9)
        if self._total:
            left = (self._total - self._done) / rate if rate else 0.0
            return (
                f"{self._description}: {self._done:,} of {self._total:,} "
                f"({100 * self._done / self._total:.0f}%), {rate:,.0f}/s, about {left:.0f} s left"
            )
        return f"{self._description}: {self._done:,} so far, {rate:,.0f}/s"

    def finish(self) -> None:
        if time.monotonic() - self._started >= self._every:
            self._log.info("%s: done, %s", self._description, f"{self._done:,}")


class RichProgress:
    """A rich progress bar on stderr. Interrupting (Ctrl-C) stops the bar and leaves the terminal sane."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichBar,
        )

        self._bar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: Any = None

    def start(self, description: str, total: int | None) -> None:
        if self._task is None:
            self._bar.start()
        else:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._task is not None:
            self._bar.stop()
            self._task = None


def auto_progress() -> Progress:
    """A bar when a person watches a terminal, log lines otherwise."""
    return RichProgress() if sys.stderr.isatty() else LogProgress()


def resolve(progress: Progress | bool | None) -> Progress:
    """`None`/`True`: choose by the terminal; `False`: nothing; an object: itself."""
    if progress is None or progress is True:
        return auto_progress()
    if progress is False:
        return NoProgress()
    return progress


def counted(items: Iterable[T], progress: Progress, every: int = 10_000) -> Iterator[T]:
    """Pass `items` through, telling `progress` every `every` items (a per-item call would cost more than
    the bar is worth on a million records)."""
    pending = 0
    for item in items:
        yield item
        pending += 1
        if pending >= every:
            progress.advance(pending)
            pending = 0
    if pending:
        progress.advance(pending)
