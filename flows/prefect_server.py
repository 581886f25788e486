"""One temporary Prefect server per project, shared by the CLI commands that run at the same time.

Commands with no PREFECT_API_URL and no running stack need a server. Each starting its own over the one
SQLite database in PREFECT_HOME made two commands at once fight over it, so the first starts one (in its
own session, so it can outlive its starter), records it in `PREFECT_HOME/temporary-server.json`, and
later commands join it; the last to leave stops it. Users are process ids: a command killed with
`kill -9` is pruned by the next one, and a server left without users is reused, not duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from filelock import FileLock

from configs.errors import UserError

RECORD = "temporary-server.json"
LOCK = "temporary-server.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def answers(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(home: Path, timeout_s: float) -> dict:
    import prefect
    from prefect.settings import get_current_settings

    port = _free_port()
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "temporary-server.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level",
         "error", "--lifespan", "on"],
        env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout_s
    while not answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process.pid)
            raise UserError(f"The temporary Prefect server did not answer within runner.prefect_startup_timeout_s="
                            f"{timeout_s:g} s; raise it, or set PREFECT_API_URL to a running server "
                            f"(its log: {home / 'temporary-server.log'}).")
        time.sleep(0.2)
    return {"url": url, "pid": process.pid, "users": []}


def _stop(pid: int, wait_s: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)  # the server's own session: uvicorn and anything it started
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it when this process started it
        except ChildProcessError:
            pass
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, record: dict) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record))
    partial.replace(path)


def join(home: Path, timeout_s: float) -> str:
    """The URL of the project's temporary server, started when none is running; this process is a user."""
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home / LOCK), timeout=timeout_s + 60):
        record = _read(home / RECORD)
        if not (record and _alive(record["pid"]) and answers(record["url"])):
            if record and _alive(record["pid"]):
                _stop(record["pid"])  # alive but not answering: not worth keeping
            record = _start(home, timeout_s)
        record["users"] = [pid for pid in record["users"] if _alive(pid) and pid != os.getpid()] + [os.getpid()]
        _write(home / RECORD, record)
        return record["url"]


def leave(home: Path) -> None:
    """This process no longer needs the server; the last user stops it."""
    with FileLock(str(home / LOCK), timeout=120):
        record = _read(home / RECORD)
        if record is None:
            return
        record["users"] = [pid for pid in record["users"] if _alive(pid) and pid != os.getpid()]
        if record["users"]:
            _write(home / RECORD, record)
            return
        _stop(record["pid"])
        (home / RECORD).unlink(missing_ok=True)
