"""What the MLflow UI opens on: the comparison view of an experiment's runs, and links to it (no mlflow import).

MLflow 3.17's experiment page loads a shared view from the experiment tag `mlflow.sharedViewState.<key>`
when its URL carries `viewStateShareKey=<key>` (and no search facet of its own): a JSON object of search
facets (`orderByKey`, `orderByAsc`, ...) and table state (`selectedColumns`, ...). Without it the runs
table shows three attribute columns and no metric at all until each is added from the Columns menu.
The tracking adapter writes the tag whenever it opens the experiment (`Tracker`).

Sorted by a metric, the table lists every run on its own row (MLflow nests child runs under their
parent only when sorted by start time), so the pipeline run and each model run it trained sit side by
side. Which parent rows are expanded is not part of a shared view in MLflow: the UI drops it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tasks.text.vocabulary import QTYPES

COMPARE_VIEW = "msvqa-compare"
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
COMPARE_VIEW_TAG = SHARED_VIEW_TAG_PREFIX + COMPARE_VIEW
# MLflow 3.17 takes GenAI-or-training from this query parameter, else from a browser preference (default
# GenAI); its UI does not read the experiment's `mlflow.experimentKind` tag for that choice.
WORKFLOW_QUERY = "workflowType=machine_learning"
# The figures people compare, as every training run logs them (tasks/train/run.py): test accuracy, the
# best validation accuracy (what `champion` goes by), test accuracy per question type; the pipeline run
# also carries its question-only baseline's test accuracy.
COMPARE_METRICS = ("test_acc", "best_val_acc", *(f"test_acc_{qtype}" for qtype in QTYPES), "baseline_test_acc")
SORT_METRIC = "test_acc"


def _column(kind: str, name: str) -> str:
    """The runs table's key of a column, as MLflow's UI builds it: metrics.`test_acc`, attributes.`Models`."""
    return f"{kind}.`{name}`"


def compare_view_state() -> dict[str, Any]:
    """The comparison view: the compared metrics as columns, then the registered model (MLflow's default
    Source and Dataset columns left to its Columns menu, for room), every run by test accuracy, best first."""
    columns = [*(_column("metrics", name) for name in COMPARE_METRICS), _column("attributes", "Models")]
    return {"orderByKey": _column("metrics", SORT_METRIC), "orderByAsc": False,
            "selectedColumns": columns, "columnOrder": columns}


def compare_view_json() -> str:
    """The tag's value: stable JSON, so writing it again changes nothing."""
    return json.dumps(compare_view_state(), sort_keys=True, separators=(",", ":"))


def experiment_url(ui_url: str, experiment_id: str) -> str:
    """The experiment's runs table in the comparison view, in the model-training UI."""
    return (f"{ui_url.rstrip('/')}/#/experiments/{quote(str(experiment_id))}/runs"
            f"?viewStateShareKey={COMPARE_VIEW}&{WORKFLOW_QUERY}")


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """A run's page, in the model-training UI (without the query a fresh browser shows it as a GenAI run)."""
    return f"{ui_url.rstrip('/')}/#/experiments/{quote(str(experiment_id))}/runs/{run_id}?{WORKFLOW_QUERY}"
