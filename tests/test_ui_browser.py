"""The daily uses in a real headless Chromium: ask the `answer` deployment from the Prefect UI and read the
answer on its run's artifacts page; open the project's MLflow link and read the trained `dualvgr` run's
`test_acc` and per-type accuracy in the runs table, MLflow's UI telemetry off.

A Prefect server and an MLflow server on free 127.0.0.1 ports, a tiny pipeline tracked in that MLflow,
and `msvqa serve` (flows.serve) serving the deployments, as `make stack` runs them. Chromium is Debian's
`chromium` package driven by Playwright (no browser download); without either the tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.test_pipeline_e2e import tiny_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TELEMETRY_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
QUESTION = "what color is the square at the beginning?"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args[:3]} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer in {seconds} s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    """End a server this test started, with its children (each runs in its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Servers, a trained tiny project tracked in the MLflow server, and `msvqa serve` serving it."""
    tmp = tmp_path_factory.mktemp("stack")
    prefect_port, mlflow_port = free_port(), free_port()
    api_url, mlflow_url = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"
    env = dict(os.environ, **TELEMETRY_OFF, PREFECT_HOME=str(tmp / "prefect"), PREFECT_API_URL=api_url,
               PREFECT_SERVER_LOGGING_LEVEL="WARNING", OMP_NUM_THREADS="1")
    processes: list[subprocess.Popen] = []

    def start(name: str, *command: str) -> tuple[subprocess.Popen, Path]:
        log = tmp / f"{name}.log"
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        processes.append(process)
        return process, log

    try:
        prefect, prefect_log = start("prefect", str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                     "--port", str(prefect_port))
        mlflow, mlflow_log = start("mlflow", str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                                   str(mlflow_port), "--workers", "1", "--backend-store-uri",
                                   f"sqlite:///{tmp / 'mlflow.db'}", "--artifacts-destination", str(tmp / "mlartifacts"))
        wait_for(f"{api_url}/health", prefect, prefect_log)
        wait_for(f"{mlflow_url}/health", mlflow, mlflow_log)

        config = tiny_config(tmp, **{"runner.kind": "local"})
        data = yaml.safe_load(config.read_text())
        data["tracking"] = {"uri": mlflow_url, "artifact_location": str(tmp / "mlartifacts"), "experiment": "tiny",
                            "register_model": True, "system_metrics": False}
        config.write_text(yaml.safe_dump(data))
        done = subprocess.run([sys.executable, "-m", "cli.app", "run", str(config), "--json"], capture_output=True,
                              text=True, env=env, timeout=600, cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]
        trained = json.loads(done.stdout.strip().splitlines()[-1])

        serve, serve_log = start("serve", sys.executable, "-m", "flows.serve", str(config))
        deployment = _wait_for_deployment(api_url, "answer/answer", serve, serve_log)
        yield {"api_url": api_url, "ui_url": api_url.removesuffix("/api"), "mlflow_url": mlflow_url, "tmp": tmp,
               "config": config, "trained": trained, "deployment": deployment, "env": env}
    finally:
        for process in reversed(processes):
            stop(process)


def _wait_for_deployment(api_url: str, name: str, serve: subprocess.Popen, log: Path, seconds: float = 180):
    """The deployment's id once `msvqa serve` registered it."""
    deadline = time.monotonic() + seconds
    request = urllib.request.Request(f"{api_url}/deployments/name/{name}")
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            pytest.fail(f"serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return json.load(response)
        except OSError:
            time.sleep(1)
    pytest.fail(f"deployment {name} not registered in {seconds} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _textarea(page, label: str):
    """The text box of the Prefect form field labelled `label` (the labels are not bound to their inputs)."""
    return page.locator(f"xpath=//*[normalize-space(text())='{label}']/ancestor::*[.//textarea][1]//textarea").first


def _runs_of(api_url: str, deployment_id: str) -> list[dict]:
    body = json.dumps({"deployments": {"id": {"any_": [deployment_id]}}}).encode()
    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_ask_the_answer_deployment_from_the_prefect_form_and_read_the_answer(stack, browser, tmp_path):
    from tasks.serving.inference import answer_video

    video = sorted((stack["tmp"] / "dataset" / "video").glob("*.avi"))[0]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{stack['ui_url']}/deployments/deployment/{stack['deployment']['id']}/run")
    _textarea(page, "video").fill(str(video))
    _textarea(page, "question").fill(QUESTION)
    _textarea(page, "device (Optional)").fill("cpu")
    page.screenshot(path=tmp_path / "prefect-form.png", full_page=True)
    page.get_by_role("button", name="Submit").click()

    deadline = time.monotonic() + 180  # the served run: a subprocess that imports torch and decodes the video
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = _runs_of(stack["api_url"], stack["deployment"]["id"])
        if runs and runs[0]["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED"):
            break
        time.sleep(2)
    assert len(runs) == 1 and runs[0]["state"]["type"] == "COMPLETED", runs
    run = runs[0]
    assert (run["parameters"]["video"], run["parameters"]["question"]) == (str(video), QUESTION)  # from the form
    assert run["name"].startswith("answer-tiny-dualvgr@champion-")

    # The run's Artifacts tab (the `?tab=` query alone does not select it), then the table artifact.
    page.goto(f"{stack['ui_url']}/runs/flow-run/{run['id']}")
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("answer-top-answers", exact=True).first.click()
    page.get_by_text("5 Items").wait_for(timeout=30000)
    page.screenshot(path=tmp_path / "prefect-answer.png", full_page=True)
    cells = [cell.strip() for cell in page.locator("td").all_inner_texts()]

    # Oracle: the same model asked the same question here, outside Prefect.
    expected = answer_video(run["parameters"]["model_uri"], video, QUESTION, top_k=5,
                            tracking_uri=stack["mlflow_url"], device="cpu")["answers"]
    answers = [row["answer"] for row in expected]
    assert [cell for cell in cells if cell in answers] == answers  # every answer, ranked as the model ranks them
    assert f"{expected[0]['probability']:.4f}" in cells


def test_mlflow_opens_the_project_link_on_the_runs_compared_by_accuracy(stack, browser, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stack["mlflow_url"])
    experiment = client.get_experiment_by_name("tiny")
    run = client.search_runs([experiment.experiment_id], "attributes.run_name = 'dualvgr'")[0]
    qtype = min(key for key in run.data.metrics if key.startswith("test_acc_"))  # one per-type accuracy
    # The link `make stack` prints (the same command, over the same config and tracking server).
    done = subprocess.run([sys.executable, "-m", "cli.app", "runs", "link", str(stack["config"])],
                          capture_output=True, text=True, env=stack["env"], timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    link = done.stdout.strip()
    assert link == (f"{stack['mlflow_url']}/#/experiments/{experiment.experiment_id}/runs"
                    "?viewStateShareKey=msvqa-compare&workflowType=machine_learning")
    # The same link in the pipeline run's summary in the Prefect UI.
    body = json.dumps({"artifacts": {"key": {"any_": ["pipeline-summary-tiny"]}}}).encode()
    request = urllib.request.Request(f"{stack['api_url']}/artifacts/filter", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        summaries = [artifact["data"] for artifact in json.load(response)]
    assert summaries and all(f"[comparison view]({link})" in summary for summary in summaries), summaries

    page = browser.new_page(viewport={"width": 2000, "height": 1000})
    # The experiments list (the fallback link): no "collects usage data" banner (MLflow 3.17 shows it on its
    # home page until dismissed in the browser, whatever the server's telemetry).
    page.goto(f"{stack['mlflow_url']}/#/experiments?workflowType=machine_learning")
    page.get_by_text("tiny", exact=True).first.wait_for(timeout=30000)
    assert "collects usage data" not in page.inner_text("body")
    # What MLflow's UI asks before it sends any usage event (its telemetry worker fetches this): off.
    # (tests/test_mlflow_views.py shows that the project's variables switch it off, not this test's environment.)
    config = page.evaluate("fetch('/ajax-api/3.0/mlflow/ui-telemetry').then(response => response.json())")
    assert config["disable_ui_telemetry"] is True, config

    # The project's link, in a browser that never saw MLflow's Columns menu: the accuracies are columns.
    page.goto(link)
    cell = "[role=row][row-id='{}'] [role=gridcell][col-id='metrics.`{}`']"
    for metric in ("test_acc", qtype):
        page.locator(cell.format(run.info.run_id, metric)).wait_for(timeout=30000)
    page.screenshot(path=tmp_path / "mlflow-runs.png")
    headers = page.eval_on_selector_all("[role=columnheader][col-id]",
                                        "cells => cells.map(c => c.getAttribute('col-id'))")
    assert {"metrics.`test_acc`", "metrics.`best_val_acc`", f"metrics.`{qtype}`",
            "metrics.`baseline_test_acc`"} <= set(headers), headers
    for metric in ("test_acc", qtype):  # the run's own values (MLflow prints them whole)
        assert float(page.locator(cell.format(run.info.run_id, metric)).inner_text()) == run.data.metrics[metric]
    body = page.inner_text("body")
    assert "Sort: test_acc" in body
    # Best first: the runs' test_acc cells, top to bottom (every run on its own row when sorted by a metric).
    shown = page.eval_on_selector_all(
        "[role=row][row-index] [role=gridcell][col-id='metrics.`test_acc`']",
        "cells => cells.map(c => [Number(c.closest('[role=row]').getAttribute('row-index')), c.innerText])")
    values = [float(text) for _, text in sorted(shown) if text not in ("", "-")]
    assert len(values) >= 3 and values == sorted(values, reverse=True), shown
    # The model-training side bar (runs, models), not the GenAI one (overview, traces, evaluation runs).
    side = page.locator("aside").first.inner_text().splitlines()
    assert "Runs" in side and "Evaluation runs" not in side, side
