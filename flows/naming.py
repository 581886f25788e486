"""Flow-run names that say what ran: `<flow>-<dataset>-<spec>-<id>` instead of Prefect's random "phi20-calakmul".

Used as every flow's `flow_run_name`; Prefect calls it once the run exists, with the run's parameters in
`prefect.runtime.flow_run`. The spec is a short hash of the config (two runs of the same config share it),
and the id, the start of the flow run's id, keeps names unique.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from configs.schema import PipelineConfig

_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]+")


def _config_parts(config: Any) -> list[str]:
    data = config.model_dump(mode="json") if isinstance(config, PipelineConfig) else config
    if not isinstance(data, dict):
        return []
    dataset = (data.get("dataset") or {}).get("name") or "dataset"
    spec = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return [dataset, spec]


def _model_part(uri: str) -> str:
    """models:/synthetic_msvd-dualvgr@champion -> synthetic_msvd-dualvgr@champion; a path -> its stem."""
    if uri.startswith(("models:/", "runs:/")):
        return uri.split(":/", 1)[1].strip("/").replace("/", "@")
    return Path(uri).stem


def name_parts(parameters: dict[str, Any]) -> list[str]:
    """The parts after the flow name, from the parameters a run was called with."""
    parts: list[str] = []
    if parameters.get("config") is not None:
        parts += _config_parts(parameters["config"])
    elif parameters.get("config_path"):
        parts.append(Path(str(parameters["config_path"])).stem)
    if parameters.get("model_uri"):
        parts.append(_model_part(str(parameters["model_uri"])))
    if parameters.get("video"):
        parts.append(Path(str(parameters["video"])).stem)
    return [_UNSAFE.sub("_", part).strip("_")[:40] for part in parts if part]


def flow_run_name() -> str:
    """`<flow>-<parts>-<first 6 of the run id>`; never fails a run (falls back to the flow's name and id)."""
    from prefect.runtime import flow_run

    flow_name, run_id = flow_run.flow_name or "flow", str(flow_run.id or "")[:6]
    try:
        parts = name_parts(dict(flow_run.parameters or {}))
    except Exception:  # noqa: BLE001 - a name is never worth failing a run for
        parts = []
    return "-".join([flow_name, *parts, run_id] if run_id else [flow_name, *parts])
