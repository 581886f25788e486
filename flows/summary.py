"""The `pipeline` run's summary for the Prefect UI: accuracy beside the comparison models, videos, MLflow links."""

from __future__ import annotations

import math
from typing import Any

from tasks.tracking.views import experiment_url, run_url


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def mlflow_links(tracking_uri: str, experiment_id: str) -> dict[str, Any]:
    """URL builders for the MLflow UI behind `tracking_uri`; a sqlite store has no UI of its own, so None.

    "experiment" is the experiment's runs in the comparison view (accuracies as columns, best first)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return {"experiment": None, "run": None, "model": None}
    base = tracking_uri.rstrip("/")
    return {"experiment": experiment_url(base, experiment_id),
            "run": lambda run_id: run_url(base, experiment_id, run_id),
            "model": lambda name, version: f"{base}/#/models/{name}/versions/{version}"}


def _ref(label: str, url: str | None) -> str:
    return f"[{label}]({url})" if url else f"`{label}`"


def _compare_ref(url: str | None) -> str:
    if url:
        return f"[comparison view]({url})"
    # A tracking database has no UI of its own (`make ui` serves the demo's): the command prints the link.
    return "`msvqa runs link CONFIG --ui-url MLFLOW_UI` prints its link (`make ui`: http://127.0.0.1:5000)"


def pipeline_markdown(dataset: str, tracking_uri: str, experiment_id: str, parent_run_id: str, model: str,
                      trained: dict[str, Any], videos: dict[str, int]) -> str:
    """Markdown: test accuracy overall and per question type beside each comparison model, videos, MLflow links."""
    links = mlflow_links(tracking_uri, experiment_id)
    run = links["run"] or (lambda run_id: None)
    # One column per model: the configured one, then each comparison run (train.compare_with).
    columns = {model: {"test_acc": trained.get("test_acc"), "test_acc_by_type": trained.get("test_acc_by_type") or {}}}
    others = dict(trained.get("comparisons") or {})
    if not others and "baseline_test_acc" in trained:
        others["question_only"] = {"test_acc": trained["baseline_test_acc"],
                                   "test_acc_by_type": trained.get("baseline_test_acc_by_type") or {}}
    columns.update(others)
    labels = ["question-only baseline" if name == "question_only" else name for name in columns]
    counts = trained.get("counts_by_type") or {}
    header = "| question type | questions | " + " | ".join(labels) + " |"
    rule = "|---|---:|" + "---:|" * len(columns)
    rows = [f"| **all** | {sum(counts.values()) or '-'} | "
            + " | ".join(_pct(c.get("test_acc")) for c in columns.values()) + " |"]
    for qtype in sorted(set().union(*(c.get("test_acc_by_type") or {} for c in columns.values()))):
        rows.append(f"| {qtype} | {counts.get(qtype, '-')} | "
                    + " | ".join(_pct((c.get("test_acc_by_type") or {}).get(qtype)) for c in columns.values()) + " |")
    lines = [f"# Pipeline: {dataset}", "", "## Test accuracy", "", header, rule, *rows, "",
             "## Videos", "",
             f"- in the dataset: {videos.get('videos', '-')}",
             f"- decoded: {videos.get('decoded', '-')}",
             f"- quarantined: {videos.get('quarantined', '-')}", "",
             "## MLflow", "", f"Tracking store: `{tracking_uri}`", "",
             f"- every run of the experiment, by test accuracy: {_compare_ref(links['experiment'])}",
             f"- pipeline run: {_ref(parent_run_id, run(parent_run_id))}"]
    if trained.get("train_run_id"):
        lines.append(f"- {model} run: {_ref(trained['train_run_id'], run(trained['train_run_id']))}")
    for name, other in others.items():
        run_id = other.get("run_id") or (trained.get("baseline_run_id") if name == "question_only" else None)
        if run_id:
            label = "baseline" if name == "question_only" else name
            lines.append(f"- {label} run: {_ref(run_id, run(run_id))}")
    if trained.get("registered_model") and trained.get("version"):
        name, version = trained["registered_model"], trained["version"]
        url = links["model"](name, version) if links["model"] else None
        lines.append(f"- registered model: {_ref(f'{name} version {version}', url)}")
    return "\n".join(lines) + "\n"
