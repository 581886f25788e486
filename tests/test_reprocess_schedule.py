"""The scheduled `reprocess` deployment picks up a video dropped into the dataset folder.

The schedule fires through the API as Prefect's scheduler service would fire it (the server's
`POST /deployments/{id}/schedule`, over a window that ends now, so the run is due), and the run executes
the way `msvqa serve` executes runs: a Runner serving the deployment, in a subprocess.
"""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest
import yaml

from configs.loader import validate_config
from storage.store import Store
from tasks.features.extract import feature_spec
from tasks.ingest.synth_dataset import generate_dataset
from test_clip_store import clip_group, latest_artifact, tiny_data
from test_reprocess import api_url, hide, restore  # noqa: F401 - module fixture


# Slow (about 70 s on 2 shared cores): two reprocess runs, one in a served subprocess that imports torch.
@pytest.mark.slow
def test_the_next_scheduled_run_processes_a_new_video(tmp_path, api_url):
    from prefect.runner import Runner
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from flows.deployments import reprocess_deployment
    from flows.reprocess import reprocess_flow

    root = tmp_path / "dataset"
    summary = generate_dataset(root, 8, 1, width=64, height=48, frames=24, fps=8, glove_dim=8)
    late = summary.plans[-1]
    hide(root, [late.name], [late.vid], tmp_path / "stash")
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(tiny_data(tmp_path, root) | {"reprocess": {"cron": "0 3 * * *"}}))
    config = validate_config(yaml.safe_load(config_path.read_text()))
    assert reprocess_flow(config)["new_videos"] == 7  # the store as the dataset was before the new video

    restore(root, tmp_path / "stash")  # the new video, its mapping line and its questions
    runner = Runner(name="reprocess-schedule-test")
    deployment_id = runner.add_deployment(reprocess_deployment(config, config_path))
    now = datetime.datetime.now(datetime.timezone.utc)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
        assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
        # The last 03:00 before now: one due run, created by the server from the deployment's schedule.
        response = client.request("POST", "/deployments/{id}/schedule", path_params={"id": deployment_id},
                                  json={"start_time": (now - datetime.timedelta(days=1)).isoformat(),
                                        "end_time": now.isoformat(), "max_runs": 1})
        assert response.status_code < 300, response.text
        scheduled = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    assert len(scheduled) == 1 and scheduled[0].state.is_scheduled() and scheduled[0].auto_scheduled
    assert scheduled[0].expected_start_time.hour == 3

    asyncio.run(runner.start(run_once=True))  # polls once, runs the due run, waits for it

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(scheduled[0].id)
    assert run.state.is_completed(), run.state
    result = run.state.result()  # persisted by the flow, read back from result storage
    assert (result["new_videos"], result["changed_videos"], result["removed_videos"]) == (1, 0, 0)
    assert (result["decoded_now"], result["extracted_now"]) == (1, 1)
    assert json.loads(latest_artifact("reprocess-changes-tiny"))[0] == \
        {"item": late.name, "video_id": late.vid, "change": "new"}
    group = clip_group(config)
    assert group.attrs["names"][-1] == late.name and group.num_rows == 8 and group.completed().all()
    features = Store(config.store.path).spec_group(config.dataset.name, "features",
                                                   feature_spec(config.features, group.ref.spec_hash))
    assert features.shape("appearance")[0] == 8 and features.completed().all()
