"""Progress of the longest waits (downloads, the GloVe scan, steps inside an epoch).

On a terminal a rich bar; inside a Prefect run a progress artifact, updated at most every few seconds
(each update is an API call); elsewhere a log line a minute. Callers only report counts.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

ARTIFACT_EVERY_S = 5.0
LOG_EVERY_S = 60.0


def _run_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError

        try:
            return get_run_logger()
        except MissingContextError:
            pass
    except ImportError:  # pragma: no cover - prefect is a dependency
        pass
    return logging.getLogger("msvqa.progress")


def _in_prefect_run() -> bool:
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover
        return False
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class Progress:
    """Report `update(done, total)` as often as you like; it is throttled here. Use as a context manager."""

    def __init__(self, label: str, total: int | None = None, *, unit: str = "", artifact_key: str | None = None,
                 terminal: bool | None = None, artifact_every_s: float = ARTIFACT_EVERY_S,
                 log_every_s: float = LOG_EVERY_S) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done = 0
        self._artifact_key = artifact_key if artifact_key and _in_prefect_run() else None
        self._artifact_id: Any = None
        self._artifact_every_s, self._log_every_s = artifact_every_s, log_every_s
        self._last_artifact = self._last_log = time.monotonic()
        self._bar = self._task = None
        if sys.stderr.isatty() if terminal is None else terminal:
            from rich.console import Console
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, done: int, total: int | None = None) -> None:
        self.update(done, total)

    def update(self, done: int, total: int | None = None) -> None:
        self.done = int(done)
        if total is not None:
            self.total = int(total)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total)
        now = time.monotonic()
        finished = self.total is not None and self.done >= self.total
        if self._artifact_key and self.total and (finished or now - self._last_artifact >= self._artifact_every_s):
            self._publish()
            self._last_artifact = now
        elif self._bar is None and now - self._last_log >= self._log_every_s:
            _run_logger().info("%s: %s", self.label, self.describe())
            self._last_log = now

    def describe(self) -> str:
        of = f" of {self.total:,}" if self.total else ""
        return f"{self.done:,}{of} {self.unit}".strip()

    def _publish(self) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        percent = min(100.0, 100.0 * self.done / self.total)
        if self._artifact_id is None:
            self._artifact_id = create_progress_artifact(percent, key=self._artifact_key,
                                                         description=f"{self.label} ({self.unit})")
        else:
            update_progress_artifact(self._artifact_id, percent)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
