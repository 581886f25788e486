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
