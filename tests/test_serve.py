"""Deployments of every flow, prefect.yaml, and one served pipeline run against a real Prefect server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from configs.errors import UserError
from configs.schema import PipelineConfig
from flows import deployments as dep

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
STAGES = ["pipeline", "ingest", "clips", "features", "text", "train", "evaluate"]


def _validate(parameters: dict, schema: dict) -> None:
    from prefect.utilities.schema_tools import validate

    # The check the Prefect API applies to a run's parameters when the schema is enforced.
    validate(parameters, schema, raise_on_error=True, preprocess=True)


# What a run of each asking deployment must pass itself: everything else has a default.
LEFT_TO_THE_RUN = {"answer": {"video", "question"}, "search": {"question"}}


def _validate_defaults(name: str, parameters: dict, schema: dict) -> None:
    """A deployment's default parameters are valid, and leave out exactly what its runs must pass."""
    missing = set(schema.get("required", [])) - set(parameters)
    assert missing == LEFT_TO_THE_RUN.get(name, set()), name
    _validate(parameters, {**schema, "required": sorted(set(schema.get("required", [])) - missing)})


def test_build_deployments_covers_every_flow_with_valid_defaults():
    built = dep.build_deployments(DEMO, ["train.qa.epochs=3"], schedule_cron="0 3 * * *")
    names = [f"{d.flow_name}/{d.name}" for d in built]
    # The demo config schedules reprocessing, so its deployment is served too.
    assert names == dep.deployment_names(reprocess=True)
    assert {n.split("/")[1] for n in names} == set(STAGES) | {f"{s}-from-file" for s in STAGES} | {
        "answer", "search", "reprocess"}
    from prefect.utilities.importtools import import_object

    by_name = {d.name: d for d in built}
    for stage in STAGES:
        typed, from_file = by_name[stage], by_name[f"{stage}-from-file"]
        # Runs re-import the flow from the entrypoint: it must be the very flow that was deployed.
        assert import_object(typed.entrypoint) is dep.STAGE_FLOWS[stage]
        assert import_object(from_file.entrypoint) is dep.run_from_file
        config = PipelineConfig.model_validate(typed.parameters["config"])
        assert config.train.qa.epochs == 3 and config.store.path.is_absolute()
        assert from_file.parameters == {"config_path": str(DEMO), "overrides": ["train.qa.epochs=3"], "stage": stage}
        for d in (typed, from_file):
            _validate(d.parameters, d._parameter_openapi_schema.model_dump())
            assert [s.schedule.cron for s in d.schedules] == (["0 3 * * *"] if d.name == "pipeline-from-file" else [])
    for name, flow_obj in dep.QUESTION_FLOWS.items():
        asking = by_name[name]
        assert import_object(asking.entrypoint) is flow_obj
        # The demo's champion, in the demo's tracking store (resolved like every path of the config); search
        # ranks stored features, so it asks the demo's feature model (its dualvgr comparison), not msvqa.
        expected = {"answer": "msvqa", "search": "dualvgr"}[name]
        assert asking.parameters["model_uri"] == f"models:/synthetic_msvd-{expected}@champion"
        assert asking.parameters["tracking_uri"].startswith("sqlite:///")
        _validate_defaults(name, asking.parameters, asking._parameter_openapi_schema.model_dump())
    assert PipelineConfig.model_validate(by_name["search"].parameters["config"]).train.qa.epochs == 3


def test_build_deployments_without_config_leaves_parameters_required():
    built = dep.build_deployments(None)
    assert all("config" not in d.parameters and "config_path" not in d.parameters for d in built)
    with pytest.raises(UserError, match="schedule"):
        dep.build_deployments(None, schedule_cron="0 3 * * *")


def test_run_from_file_loads_the_yaml_with_overrides_and_dispatches(monkeypatch):
    seen: list[PipelineConfig] = []
    monkeypatch.setitem(dep.STAGE_RUNNERS, "text", lambda config: seen.append(config) or {"ok": True})
    assert dep.run_from_file.fn(str(DEMO), "text", ["text.answer_top=7"]) == {"ok": True}
    assert seen[0].text.answer_top == 7 and seen[0].dataset.root.is_absolute()
    # Clips and features go through the helpers that apply the configured task runner (Dask or threads).
    from flows.clips import run_clips
    from flows.features import run_features

    assert dep.STAGE_RUNNERS["clips"] is run_clips and dep.STAGE_RUNNERS["features"] is run_features


def test_prefect_yaml_is_the_generated_one():
    text = (REPO / "prefect.yaml").read_text(encoding="utf-8")
    assert text == dep.prefect_yaml(), "prefect.yaml is stale: python -m flows.serve --print-prefect-yaml > prefect.yaml"
    declared = yaml.safe_load(text)["deployments"]
    assert [d["name"] for d in declared] == [n.split("/")[1] for n in dep.deployment_names(reprocess=True)]
    assert {d["work_pool"]["name"] for d in declared} == {"msvqa"}
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.importtools import import_object

    for d in declared:
        _validate_defaults(d["name"], d["parameters"], parameter_schema(import_object(d["entrypoint"])).model_dump())


def test_serving_refuses_to_start_without_a_prefect_server(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.serve import require_api_url

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(UserError, match="PREFECT_API_URL"):
        require_api_url()


# The end-to-end test: a real server, `python -m flows.serve`, one run of the pipeline deployment.

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"prefect server exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} not healthy after {timeout}s")


def _tiny_config(tmp: Path) -> Path:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["data_dir"] = str(tmp / "data")
    data["dataset"]["root"] = str(tmp / "dataset")
    data["dataset"]["synthetic"].update(videos=12, width=64, height=48, frames=24)
    data["store"] = {"path": str(tmp / "store.zarr")}
    data["clips"].update(num_clips=2, frames_per_clip=2, appearance_size=32, motion_size=16)
    data["text"]["glove_path"] = str(tmp / "dataset" / "glove.txt")
    data["train"]["autoencoder"]["epochs"] = 1
    data["train"]["qa"]["epochs"] = 1
    data["train"]["checkpoint_dir"] = str(tmp / "checkpoints")
    data["tracking"] = {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "artifact_location": str(tmp / "mlartifacts"),
                        "experiment": "serve-test", "register_model": False}
    data["runner"] = {"kind": "local", "workers": 2}
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _stop(proc: subprocess.Popen) -> None:
    """End a process we started, and its children (flow-run subprocesses): it leads its own session."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_served_pipeline_deployment_runs_and_tracks_in_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = f"http://127.0.0.1:{_free_port()}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"}
    config_path = _tiny_config(tmp_path)
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    procs: list[subprocess.Popen] = []
    try:
        with server_log.open("w") as log:
            procs.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                 "--port", url.split(":")[-1].split("/")[0]],
                env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        _wait_healthy(f"{url}/health", procs[0], timeout=60)
        with serve_log.open("w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "flows.serve", str(config_path)], env=env, cwd=REPO,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        config = PipelineConfig.model_validate(yaml.safe_load(config_path.read_text()))
        with temporary_settings(updates={PREFECT_API_URL: url}):
            with get_client(sync_client=True) as client:
                deadline = time.monotonic() + 60
                while True:  # the serving process registers its deployments once it has imported the flows
                    assert procs[1].poll() is None, f"serve exited early:\n{_tail(serve_log)}"
                    try:
                        client.read_deployment_by_name("pipeline/pipeline")
                        break
                    except Exception:
                        assert time.monotonic() < deadline, f"deployment never registered:\n{_tail(serve_log)}"
                        time.sleep(1)
            run = run_deployment("pipeline/pipeline", parameters={"config": config.model_dump(mode="json")},
                                 timeout=150, poll_interval=2)
            assert run.state is not None and run.state.is_completed(), \
                f"flow run ended {run.state!r}\n--- serve log ---\n{_tail(serve_log)}"
            # Then ask the model that run trained, through the served `answer` deployment.
            tracking = MlflowClient(tracking_uri=config.tracking.uri)
            trained = tracking.search_runs([tracking.get_experiment_by_name("serve-test").experiment_id],
                                           "tags.mlflow.runName = 'dualvgr'")
            assert len(trained) == 1  # this test's tracking store is its own
            video = sorted((tmp_path / "dataset" / "video").glob("*.avi"))[0]
            asked = run_deployment("answer/answer", parameters={
                "model_uri": f"runs:/{trained[0].info.run_id}", "tracking_uri": config.tracking.uri,
                "video": str(video), "question": "what color is the square?"}, timeout=90, poll_interval=2)
            assert asked.state is not None and asked.state.is_completed(), \
                f"answer run ended {asked.state!r}\n--- serve log ---\n{_tail(serve_log)}"
    finally:
        for proc in reversed(procs):
            _stop(proc)
    client = MlflowClient(tracking_uri=config.tracking.uri)
    experiment = client.get_experiment_by_name("serve-test")
    parents = client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'pipeline'")
    assert len(parents) == 1
    parent = parents[0]
    assert "test_acc" in parent.data.metrics and parent.info.status == "FINISHED"
    # The MLflow run is the one this deployment's flow run made, not some other run's.
    assert parent.data.tags["prefect.flow_run_id"] == str(run.id)
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {c.data.tags["mlflow.runName"] for c in children} >= {"dualvgr", "question_only"}
