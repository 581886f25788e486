"""Where training's own log lines go: the Prefect run's logger inside a flow, so they show in the UI."""

from __future__ import annotations

import logging


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run's logger inside a flow or task; a plain logger in torchrun ranks and bare calls."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("msvqa.train")
