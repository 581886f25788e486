"""Two writer flows, one nested in the other, as the typed pipeline calls text and train: served by
tests/test_writer_slot.py through a real deployment, so both run in a deployment's flow run."""

from __future__ import annotations

import time

from prefect import flow

from configs.schema import PipelineConfig
from flows.writer_slot import writer_flow_slot


def _mark(log: str, event: str) -> None:
    with open(log, "a") as out:
        out.write(f"{event} {time.time()}\n")


@flow(name="slot-inner")
def inner_writer(config: PipelineConfig, log: str) -> None:
    from prefect.runtime import deployment

    with writer_flow_slot(config):
        # Nested in a deployment run, it asks for the slot its parent holds: the case that must not wait.
        _mark(log, "inner" if deployment.id else "inner-outside-a-deployment")


@flow(name="slot-outer")
def outer_writer(config: PipelineConfig, log: str) -> None:
    with writer_flow_slot(config):
        _mark(log, "outer-start")
        inner_writer(config, log)
        _mark(log, "outer-end")
