"""What a flow run shows in the Prefect UI: its name, its artifacts, its stored result."""

from __future__ import annotations

import json

import pytest

from flows.naming import name_parts
from flows.summary import pipeline_markdown
from tests.test_answer import _fake_store, bundle_path, video  # noqa: F401 - module fixtures
from tests.test_clip_store import latest_artifact


@pytest.fixture(scope="module")
def api_url():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield PREFECT_API_URL.value()


def _flow_run(state):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def test_name_parts_say_dataset_spec_model_and_video():
    config = {"dataset": {"name": "synthetic_msvd"}, "seed": 0}
    parts = name_parts({"config": config})
    assert parts[0] == "synthetic_msvd" and len(parts[1]) == 8
    assert name_parts({"config": dict(config, seed=1)})[1] != parts[1]  # another config, another spec
    assert name_parts({"config_path": "/x/configs/demo.yaml"}) == ["demo"]
    assert name_parts({"model_uri": "models:/synthetic_msvd-dualvgr@champion", "video": "/v/vid 7.avi"}) == [
        "synthetic_msvd-dualvgr@champion", "vid_7"]


def test_answer_flow_names_its_run_publishes_a_table_and_keeps_its_result(api_url, bundle_path, video):
    from flows.answer import answer_flow
    from tasks.serving.inference import answer_video

    question = "what color is the square at the beginning?"
    state = answer_flow(str(bundle_path), str(video), question, top_k=3, device="cpu", return_state=True)
    assert state.is_completed()
    run = _flow_run(state)
    assert run.name.startswith(f"answer-{bundle_path.stem}-{video.stem}-") and run.name.endswith(str(run.id)[:6])
    expected = answer_video(str(bundle_path), video, question, top_k=3, device="cpu")["answers"]
    table = json.loads(latest_artifact("answer-top-answers"))
    assert [row["answer"] for row in table] == [row["answer"] for row in expected]
    assert [row["rank"] for row in table] == [1, 2, 3]
    assert [row["probability"] for row in table] == pytest.approx([row["probability"] for row in expected], abs=1e-4)
    # Persisted: the finished run's state still yields the answer, read back from result storage.
    assert run.state.result()["answers"] == pytest.approx(expected)


def test_search_flow_publishes_the_ranking_as_a_table(api_url, bundle_path, tmp_path):
    from flows.search import search_flow
    from tasks.serving.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    _fake_store(tmp_path / "store.zarr", bundle)
    config = bundle.config.model_copy(update={"store": bundle.config.store.model_copy(
        update={"path": tmp_path / "store.zarr"})})
    state = search_flow(str(bundle_path), "what color is the square?", answer="red", top=4, config=config,
                        device="cpu", return_state=True)
    result = state.result()
    table = json.loads(latest_artifact("search-ranked-videos"))
    assert [row["video"] for row in table] == [row["video"] for row in result["rows"]] and len(table) == 4
    assert [row["rank"] for row in table] == [1, 2, 3, 4]
    assert _flow_run(state).name.startswith(f"search-{bundle.config.dataset.name}-")
    assert _flow_run(state).state.result()["videos_scored"] == 9


def test_pipeline_summary_puts_the_model_beside_the_baseline_and_links_mlflow():
    trained = {"test_acc": 0.625, "test_acc_by_type": {"what": 0.5, "who": 0.75},
               "baseline_test_acc": 0.25, "baseline_test_acc_by_type": {"what": 0.125, "who": 0.375},
               "counts_by_type": {"what": 8, "who": 8}, "train_run_id": "abc", "baseline_run_id": "def",
               "registered_model": "d-dualvgr", "version": "3"}
    text = pipeline_markdown("d", "http://127.0.0.1:5000", "7", "par", "dualvgr", trained,
                             {"videos": 12, "decoded": 11, "quarantined": 1})
    lines = text.splitlines()
    assert "| **all** | 16 | 62.5% | 25.0% |" in lines
    assert "| what | 8 | 50.0% | 12.5% |" in lines and "| who | 8 | 75.0% | 37.5% |" in lines
    assert "- decoded: 11" in lines and "- quarantined: 1" in lines
    assert "- dualvgr run: [abc](http://127.0.0.1:5000/#/experiments/7/runs/abc?workflowType=machine_learning)" in lines
    assert "- registered model: [d-dualvgr version 3](http://127.0.0.1:5000/#/models/d-dualvgr/versions/3)" in lines
    local = pipeline_markdown("d", "sqlite:///x.db", "7", "par", "dualvgr", {"test_acc": 0.5}, {})
    assert "- pipeline run: `par`" in local.splitlines() and "baseline" not in local


def test_the_demo_config_serves_a_scheduled_reprocess_deployment(api_url):
    from prefect.client.orchestration import get_client

    from flows import deployments as dep
    from tests.test_serve import DEMO

    built = {d.name: d for d in dep.build_deployments(DEMO)}
    deployment_id = built["reprocess"].apply()  # what `msvqa serve` registers, through the API
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name("run-reprocess/reprocess")
        assert found.id == deployment_id
        assert [s.schedule.cron for s in found.schedules] == ["0 3 * * *"] and all(s.active for s in found.schedules)
        assert found.parameters["config_path"] == str(DEMO)
