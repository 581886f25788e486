"""Clips and features on a Dask cluster (2 worker processes, given by address) store what threads store."""

from __future__ import annotations

import pytest

from configs.schema import RunnerConfig
from tasks.ingest.synth_dataset import generate_dataset
from test_clip_store import assert_same_arrays, tiny_config


@pytest.fixture(scope="module")
def api_url():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield PREFECT_API_URL.value()


@pytest.mark.timeout(240)
def test_dask_cluster_by_address_gives_the_local_store(tmp_path, api_url, monkeypatch):
    from distributed import Client, LocalCluster

    from flows.clips import run_clips
    from flows.features import run_features

    root = tmp_path / "dataset"
    generate_dataset(root, 8, 1, width=64, height=48, frames=24, fps=8, glove_dim=8)
    local = tiny_config(tmp_path, root, "local.zarr", **{"clips.videos_per_task": 2})
    assert run_clips(local)["decoded_now"] == 8 and run_features(local)["extracted_now"] == 8

    # Worker processes report their task runs to the same Prefect API: they inherit it from the environment.
    monkeypatch.setenv("PREFECT_API_URL", api_url)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      host="127.0.0.1") as cluster:
        dask = tiny_config(tmp_path, root, "dask.zarr", **{"clips.videos_per_task": 2})
        dask.runner = RunnerConfig(kind="dask", address=cluster.scheduler_address)
        clips, features = run_clips(dask), run_features(dask)
        with Client(cluster) as client:
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
            # The workers outlive the flow: it released the backbones they built.
            cached = client.run(lambda: len(__import__("tasks.features.extract", fromlist=["_"])._BACKBONES))
    assert list(cached.values()) == [0, 0]
    assert (clips["decoded_now"], features["extracted_now"]) == (8, 8)
    # Both worker processes ran tasks (4 decode and 4 extract tasks between them), not the test process.
    assert len(executed) == 2 and all(count > 0 for count in executed.values())
    assert_same_arrays(local, dask, kinds=("clips", "features"))
