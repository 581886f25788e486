"""The writer deployments share one Prefect concurrency slot per store: two writers of one store take turns."""

from __future__ import annotations

import threading
import time

import pytest

from configs.schema import PipelineConfig
from test_reprocess import api_url  # noqa: F401  (the module's Prefect test server)


def test_writers_of_one_store_take_turns_and_other_stores_do_not_wait(tmp_path, api_url):  # noqa: F811
    from flows.writer_slot import ensure_store_limit, store_limit_name, store_writer_slot

    one = PipelineConfig.model_validate({"store": {"path": str(tmp_path / "a")}})
    other = PipelineConfig.model_validate({"store": {"path": str(tmp_path / "b")}})
    assert store_limit_name(one) != store_limit_name(other)
    ensure_store_limit(one)
    ensure_store_limit(other)
    spans: dict[str, tuple[float, float]] = {}

    def write(name: str, config: PipelineConfig) -> None:
        with store_writer_slot(config):
            began = time.monotonic()
            time.sleep(3.0)
            spans[name] = (began, time.monotonic())

    threads = [threading.Thread(target=write, args=args) for args in (("x", one), ("y", one), ("z", other))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (x0, x1), (y0, y1), (z0, z1) = spans["x"], spans["y"], spans["z"]
    assert x1 <= y0 or y1 <= x0  # one store: never both inside at once
    # Another store's writer did not wait: it was inside before the second writer of `one` could be (that
    # one waited the first's 3 s), a margin that survives a loaded machine.
    assert z0 < max(x0, y0)


@pytest.mark.slow  # a served deployment run in a subprocess (about 30 s on 2 shared cores)
@pytest.mark.timeout(300)  # a nested writer waiting for its parent's slot would hang here forever
def test_a_deployment_writer_waits_for_the_slot_and_its_nested_writer_flow_does_not(tmp_path, api_url):  # noqa: F811
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    from flows.writer_slot import ensure_store_limit, store_writer_slot
    from writer_slot_flows import outer_writer

    config = PipelineConfig.model_validate({"store": {"path": str(tmp_path / "store")}})
    ensure_store_limit(config)
    log = tmp_path / "events.txt"
    runner = Runner(name="writer-slot-test")
    deployment_id = runner.add_deployment(outer_writer.to_deployment(
        name="slot-outer", parameters={"config": config.model_dump(mode="json"), "log": str(log)}))
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment_id)

    held, released = threading.Event(), []

    def other_writer() -> None:  # e.g. a reprocess started first: it holds the slot for a while
        with store_writer_slot(config):
            held.set()
            time.sleep(4.0)
            released.append(time.time())

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert held.wait(60)
    asyncio.run(runner.start(run_once=True))  # runs the due deployment run and waits for it
    thread.join()

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert state.is_completed(), state
    events = {name: float(at) for name, at in (line.split() for line in log.read_text().splitlines())}
    # The deployment run waited for the other writer; its nested writer flow ran inside it, without waiting.
    assert released[0] <= events["outer-start"] <= events["inner"] <= events["outer-end"]
