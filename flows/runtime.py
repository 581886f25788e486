"""Process set-up for flows: Prefect's home and API, telemetry off, and the task runner.

`prepare_environment` must run before prefect or mlflow is imported, because both read their settings
at import time; the CLI calls it right after loading the config.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from configs.errors import UserError
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


@contextlib.contextmanager
def prefect_api(runner: RunnerConfig) -> Iterator[str]:
    """Use the configured Prefect API (a running server, or the test harness); else start a temporary one.

    The URL is exported to the environment for the duration, so Dask worker processes report to the
    same server instead of each starting their own. A temporary server gets
    `runner.prefect_startup_timeout_s` to answer.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    server = None
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        try:
            server.start(timeout=runner.prefect_startup_timeout_s)
        except RuntimeError as error:
            server.stop()  # a server that answers late must not outlive the command
            raise UserError(f"The temporary Prefect server did not answer within runner.prefect_startup_timeout_s="
                            f"{runner.prefect_startup_timeout_s:g} s; raise it, or set PREFECT_API_URL to a running "
                            "server.") from error
        url = server.api_url
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
        if server is not None:
            _drain_prefect_workers()
            server.stop()


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

