"""`msvqa store gc` keeps the snapshots that registered MLflow models were trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from test_pipeline_e2e import tiny_config


def _register(client, experiment_id: str, name: str, snapshot: str) -> str:
    """A registered model version whose run carries the lineage tag, as training leaves it."""
    run = client.create_run(experiment_id, tags={"store.snapshot": snapshot})
    client.set_terminated(run.info.run_id)
    try:
        client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - not registered yet
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return str(version.version)


def test_gc_keeps_the_snapshot_a_registered_model_names(tmp_path):
    from mlflow.tracking import MlflowClient

    from cli.app import app
    from configs.loader import load_config
    from storage.store import Store

    config_path = tiny_config(tmp_path)
    cfg = load_config(config_path, [])
    store = Store(cfg.store.path)
    group = store.spec_group("ds", "clips", {"kind": "gc-test"})
    group.ensure_array("num_frames", (4,), "int64", chunks=(1,))
    snapshots = []
    for value in (11, 22, 33):  # snapshots A, B, C
        group.write("num_frames", np.full(4, value, np.int64))
        snapshots.append(store.last_commit)
    a, b, c = snapshots

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    experiment = client.create_experiment("gc", artifact_location=(tmp_path / "art").as_uri())
    version = _register(client, experiment, "tiny-model", a)
    # A model of another store (an id this store never had) must neither be protected nor break gc.
    _register(client, experiment, "other-store-model", "0" * 20)

    result = CliRunner().invoke(app, ["store", "gc", str(config_path), "--keep", "1", "--grace-s", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["models"] == {f"tiny-model/{version}": a}
    assert b in summary["expired"] and a not in summary["expired"] and c not in summary["expired"]
    assert summary["snapshots_deleted"] >= 1

    # A still resolves and reads back what was written at A; B is really gone; the tip is C.
    on_a = Store(cfg.store.path, mode="r", snapshot=a)
    assert on_a.snapshot_id == a
    assert on_a.peek("ds", "clips", {"kind": "gc-test"}).read("num_frames").tolist() == [11] * 4
    assert Store(cfg.store.path, mode="r").peek("ds", "clips", {"kind": "gc-test"}).read(
        "num_frames").tolist() == [33] * 4
    with pytest.raises(Exception):
        Store(cfg.store.path, mode="r", snapshot=b).peek("ds", "clips", {"kind": "gc-test"}).read("num_frames")
