"""Process set-up for flows: Prefect's home and API, telemetry off, and the task runner.

`prepare_environment` must run before prefect or mlflow is imported, because both read their settings
at import time; the CLI calls it right after loading the config.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from configs.schema import RunnerConfig

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_UI_ENABLED": "true",
}


def prefect_home(data_dir: Path) -> Path:
    return Path(data_dir) / "prefect"


def prepare_environment(data_dir: Path) -> None:
    """Keep Prefect's database inside the data folder and switch telemetry off."""
    os.environ.update(TELEMETRY_OFF)
    # An explicitly configured PREFECT_HOME (e.g. `make ui` sharing one) wins over the default.
    home = Path(os.environ.setdefault("PREFECT_HOME", str(prefect_home(data_dir))))
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    # Dask's scheduler and workers narrate every connection at INFO; workers inherit this.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


STACK_URL_FILE = "stack-api-url"  # written by scripts/stack.sh into the Prefect home it serves


def running_stack_api(data_dir: Path | None, timeout_s: float = 2.0) -> str | None:
    """The API URL of a `make stack` serving this data folder's Prefect home, when it answers /health."""
    if data_dir is None:
        return None
    file = Path(os.environ.get("PREFECT_HOME") or prefect_home(data_dir)) / STACK_URL_FILE
    try:
        url = file.read_text().strip()
    except OSError:
        return None
    import urllib.request

    try:  # a stack that died without stack_down leaves its file behind: trust only a server that answers
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as response:
            return url if response.status == 200 else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def prefect_api(runner: RunnerConfig, data_dir: Path | None = None) -> Iterator[str]:
    """Use the configured Prefect API (a running server, or the test harness), else a running stack serving
    `data_dir`'s Prefect home (see `running_stack_api`), else start a temporary one.

    The URL is exported to the environment for the duration, so Dask worker processes report to the
    same server instead of each starting their own. The temporary server is shared by the project's
    commands that run at the same time (flows/prefect_server.py) and gets
    `runner.prefect_startup_timeout_s` to answer.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # A running `make stack` over the same Prefect home comes next, so CLI runs show up live in its UI.
    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() or running_stack_api(data_dir)
    home = None
    if not url:
        from flows import prefect_server

        # One temporary server per project, shared by commands that run at the same time.
        home = Path(os.environ.get("PREFECT_HOME") or prefect_home(data_dir or Path("data")))
        url = prefect_server.join(home, runner.prefect_startup_timeout_s)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        if home is not None:
            from flows import prefect_server

            _drain_prefect_workers()
            prefect_server.leave(home)


def _drain_prefect_workers() -> None:
    """Send queued logs and events before the temporary server goes, or their workers retry for minutes."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def task_runner(runner: RunnerConfig):
    """Threads for `local`; prefect-dask on a LocalCluster, or on an existing cluster given by address."""
    if runner.kind == "local":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=runner.workers)
    from prefect_dask import DaskTaskRunner

    if runner.address:
        return DaskTaskRunner(address=runner.address)
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": runner.workers,
        "threads_per_worker": runner.threads_per_worker,
        "processes": True,
        "dashboard_address": ":0",
    })

