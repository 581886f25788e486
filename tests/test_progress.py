"""Progress of long waits: a throttled Prefect progress artifact inside a run, log lines outside one."""

from __future__ import annotations

import logging

import pytest

from tasks.progress import Progress


@pytest.fixture(scope="module")
def api_url():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def _progress_artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_inside_a_flow_run_the_artifact_is_throttled_and_ends_at_100(api_url):
    from prefect import flow

    @flow
    def steps() -> None:
        with Progress("qa", unit="steps", artifact_key="steps-unfinished", terminal=False,
                      artifact_every_s=3600) as progress:
            for done in range(1, 6):
                progress(done, 10)  # half way, and the throttle never lets an update through
        with Progress("qa", unit="steps", artifact_key="steps-finished", terminal=False,
                      artifact_every_s=3600) as progress:
            for done in range(1, 11):
                progress(done, 10)  # the last update always goes out

    steps()
    assert _progress_artifacts("steps-unfinished") == []
    finished = _progress_artifacts("steps-finished")
    assert [artifact.type for artifact in finished] == ["progress"]
    assert float(finished[0].data) == 100.0


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_outside_prefect_it_logs_at_most_once_per_interval():
    logger, seen = logging.getLogger("msvqa.progress"), _Lines()
    logger.addHandler(seen)
    logger.setLevel(logging.INFO)
    with Progress("GloVe scan", unit="lines read", artifact_key="never-published", terminal=False,
                  log_every_s=3600) as quiet:
        for lines in range(0, 5000, 1000):
            quiet(lines)
    assert seen.lines == []
    with Progress("GloVe scan", unit="lines read", terminal=False, log_every_s=0) as chatty:
        chatty(1000)
        chatty(2500, 4000)
    logger.removeHandler(seen)
    assert seen.lines == ["GloVe scan: 1,000 lines read", "GloVe scan: 2,500 of 4,000 lines read"]
