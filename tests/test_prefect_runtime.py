"""The temporary Prefect server a command starts when no PREFECT_API_URL is set."""

from __future__ import annotations

import os

import httpx
import pytest

from configs.errors import UserError
from configs.schema import RunnerConfig
from flows.runtime import prefect_api


@pytest.fixture
def no_api_url(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: None}):
        yield


def test_temporary_server_waits_as_long_as_the_runner_config_says(no_api_url):
    # 0.05 s is one poll of Prefect's wait loop: far too short for any server to start, so the
    # setting is what decides, and the error names it.
    with pytest.raises(UserError, match=r"runner\.prefect_startup_timeout_s=0\.05 s"):
        with prefect_api(RunnerConfig(prefect_startup_timeout_s=0.05)):
            pass
    assert "PREFECT_API_URL" not in os.environ
    with prefect_api(RunnerConfig()) as url:  # the default, 120 s, outlasts a slow start on busy cores
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert os.environ["PREFECT_API_URL"] == url
    assert "PREFECT_API_URL" not in os.environ
    assert RunnerConfig().prefect_startup_timeout_s == 120


SHARED = """
import json, sys, time
from pathlib import Path
from flows.runtime import prepare_environment
prepare_environment(Path(sys.argv[1]))
from prefect import flow
from configs.schema import RunnerConfig
from flows.runtime import prefect_api

@flow
def hello() -> int:
    return 7

with prefect_api(RunnerConfig(), Path(sys.argv[1])) as url:
    record = json.loads((Path(sys.argv[1]) / "prefect" / "temporary-server.json").read_text())
    result = hello()
    time.sleep(float(sys.argv[2]))  # overlap with the other command
print(json.dumps({"url": url, "server": record["pid"], "result": result}))
"""


def test_commands_at_once_share_one_temporary_server_that_the_last_one_stops(tmp_path, monkeypatch):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from flows.prefect_server import _alive

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    repo = Path(__file__).resolve().parents[1]
    script = tmp_path / "command.py"
    script.write_text(SHARED)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    commands = [subprocess.Popen([sys.executable, str(script), str(tmp_path), pause], cwd=repo, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for pause in ("8", "1")]
    outputs = [command.communicate(timeout=240) for command in commands]
    assert [command.returncode for command in commands] == [0, 0], [err[-2000:] for _, err in outputs]
    first, second = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert first["result"] == second["result"] == 7
    assert first["url"] == second["url"] and first["server"] == second["server"]  # one server for both
    assert not _alive(first["server"])  # the last to leave stopped it
    assert not (tmp_path / "prefect" / "temporary-server.json").exists()
