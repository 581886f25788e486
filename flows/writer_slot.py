"""One writer at a time per store on one Prefect server: a global concurrency limit named after the store.

The writer deployments (pipeline, clips, features, text, train, reprocess) hold the store's one slot for
their whole run, so a scheduled reprocess waits for a run started from the UI instead of racing it (the
store would stay consistent either way, commits being transactions; the wait saves redone work). Only
deployment runs take the slot: the typed `pipeline`, `text` and `train` flows take it through
`writer_flow_slot` when their run came from a deployment, and the slot is re-entrant within one flow run's
context (a context variable, which Prefect carries into nested flows and their tasks), so the stage flows a
pipeline or a file run calls never wait for the slot their parent holds. Without the limit on the server (a
CLI run on a temporary server) the slot is not waited for.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator

from configs.schema import PipelineConfig

WRITER_STAGES = frozenset({"pipeline", "clips", "features", "text", "train", "reprocess"})
# Names of the store limits whose slot this context already holds: nested writers must not wait for them.
_HELD: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("msvqa_store_slots_held", default=frozenset())


def store_limit_name(config: PipelineConfig) -> str:
    """`msvqa-store-<12 hex>`: the same for every config naming the same store location."""
    where = f"{config.store.path}|{config.store.endpoint_url or ''}"
    return "msvqa-store-" + hashlib.sha256(where.encode()).hexdigest()[:12]


def ensure_store_limit(config: PipelineConfig) -> str:
    """Create (or keep) the store's limit with one slot on the current Prefect server; returns its name."""
    from prefect.client.orchestration import get_client

    name = store_limit_name(config)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    return name


@contextlib.contextmanager
def store_writer_slot(config: PipelineConfig) -> Iterator[None]:
    """Hold the store's writer slot for the block (a no-op where the server has no such limit, or where an
    enclosing block of this context holds it already: a limit of one would otherwise wait for itself)."""
    from prefect.concurrency.sync import concurrency

    name = store_limit_name(config)
    if name in _HELD.get():
        yield
        return
    with concurrency(name, occupy=1, strict=False):
        token = _HELD.set(_HELD.get() | {name})
        try:
            yield
        finally:
            _HELD.reset(token)


def _from_deployment() -> bool:
    from prefect.runtime import deployment

    return deployment.id is not None


@contextlib.contextmanager
def writer_flow_slot(config: PipelineConfig) -> Iterator[None]:
    """The slot for a writer flow that is also a typed deployment: held when its run came from a deployment.

    A CLI run goes on without it (its temporary server has no limit, and Prefect would warn of that).
    """
    if _from_deployment():
        with store_writer_slot(config):
            yield
    else:
        yield
