"""The `pipeline` run's summary for the Prefect UI: accuracy beside the baseline, videos, links to MLflow."""

from __future__ import annotations

import math
from typing import Any


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def mlflow_links(tracking_uri: str, experiment_id: str) -> dict[str, Any]:
    """URL builders for the MLflow UI behind `tracking_uri`; a sqlite store has no UI of its own, so None."""
    if not tracking_uri.startswith(("http://", "https://")):
        return {"run": None, "model": None}
    base = tracking_uri.rstrip("/")
    return {"run": lambda run_id: f"{base}/#/experiments/{experiment_id}/runs/{run_id}",
            "model": lambda name, version: f"{base}/#/models/{name}/versions/{version}"}


def _ref(label: str, url: str | None) -> str:
    return f"[{label}]({url})" if url else f"`{label}`"


def pipeline_markdown(dataset: str, tracking_uri: str, experiment_id: str, parent_run_id: str, model: str,
                      trained: dict[str, Any], videos: dict[str, int]) -> str:
    """Markdown: test accuracy overall and per question type beside the baseline, video counts, MLflow links."""
    links = mlflow_links(tracking_uri, experiment_id)
    run = links["run"] or (lambda run_id: None)
    has_baseline = "baseline_test_acc" in trained
    by_type = trained.get("test_acc_by_type") or {}
    base_by_type = trained.get("baseline_test_acc_by_type") or {}
    counts = trained.get("counts_by_type") or {}
    header = f"| question type | questions | {model} |" + (" question-only baseline |" if has_baseline else "")
    rule = "|---|---:|---:|" + ("---:|" if has_baseline else "")
    rows = [f"| **all** | {sum(counts.values()) or '-'} | {_pct(trained.get('test_acc'))} |"
            + (f" {_pct(trained.get('baseline_test_acc'))} |" if has_baseline else "")]
    for qtype in sorted(set(by_type) | set(base_by_type)):
        rows.append(f"| {qtype} | {counts.get(qtype, '-')} | {_pct(by_type.get(qtype))} |"
                    + (f" {_pct(base_by_type.get(qtype))} |" if has_baseline else ""))
    lines = [f"# Pipeline: {dataset}", "", "## Test accuracy", "", header, rule, *rows, "",
             "## Videos", "",
             f"- in the dataset: {videos.get('videos', '-')}",
             f"- decoded: {videos.get('decoded', '-')}",
             f"- quarantined: {videos.get('quarantined', '-')}", "",
             "## MLflow", "", f"Tracking store: `{tracking_uri}`", "",
             f"- pipeline run: {_ref(parent_run_id, run(parent_run_id))}"]
    if trained.get("train_run_id"):
        lines.append(f"- {model} run: {_ref(trained['train_run_id'], run(trained['train_run_id']))}")
    if trained.get("baseline_run_id"):
        lines.append(f"- baseline run: {_ref(trained['baseline_run_id'], run(trained['baseline_run_id']))}")
    if trained.get("registered_model") and trained.get("version"):
        name, version = trained["registered_model"], trained["version"]
        url = links["model"](name, version) if links["model"] else None
        lines.append(f"- registered model: {_ref(f'{name} version {version}', url)}")
    return "\n".join(lines) + "\n"
