"""Which store snapshots the registered models of a tracking store were trained on (for `msvqa store gc`)."""

from __future__ import annotations

from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from configs.errors import UserError
from configs.schema import TrackingConfig

SNAPSHOT_TAG = "store.snapshot"  # set on every training and evaluation run by tasks.train.publish.log_lineage


def registered_model_snapshots(cfg: TrackingConfig) -> dict[str, str]:
    """`{"NAME/VERSION": snapshot id}` for every registered model version whose run carries `store.snapshot`.

    Versions whose run is gone or predates lineage tags are left out: they name no snapshot. A sqlite
    tracking store that does not exist yet holds no models, and is not created just to say so.
    """
    if cfg.uri.startswith("sqlite:///") and not Path(cfg.uri[len("sqlite:///"):]).exists():
        return {}
    client = MlflowClient(tracking_uri=cfg.uri)
    found: dict[str, str] = {}
    snapshot_of_run: dict[str, str | None] = {}
    token: str | None = None
    try:
        while True:
            page = client.search_model_versions(max_results=1000, page_token=token)
            for version in page:
                run_id = version.run_id
                if not run_id:
                    continue
                if run_id not in snapshot_of_run:
                    try:
                        snapshot_of_run[run_id] = client.get_run(run_id).data.tags.get(SNAPSHOT_TAG)
                    except MlflowException:  # the run was deleted; its model names no snapshot
                        snapshot_of_run[run_id] = None
                if snapshot_of_run[run_id]:
                    found[f"{version.name}/{version.version}"] = snapshot_of_run[run_id]
            token = page.token
            if not token:
                return found
    except MlflowException as exc:
        raise UserError(f"tracking.uri {cfg.uri!r} could not be read for registered models: {exc.message}") from exc
