"""The ablation: does training the encoders end to end help, and does the autoencoder stage before it?

On one store, one split and the same seeds, four models are trained as sibling runs under one parent
run named "ablate": DualVGR on the frozen stored features, MSVQA without its autoencoder stage, MSVQA
with it, and the question-only model (the language-prior floor). The parent carries the comparison
chart and table. Plain Python: the ablate flow passes its Prefect task as `train_one`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from configs.errors import UserError
from configs.loader import config_to_yaml
from configs.schema import PipelineConfig
from tasks.tracking.mlflow_adapter import git_commit, open_tracker, prefect_flow_run_id
from tasks.tracking.plots import ablation_chart
from tasks.train.run import train_model

# (config, parent_run_id, model_name, run_name) -> train_model's figures
TrainVariant = Callable[[PipelineConfig, str, str, str], dict]


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation: a run name, the model it trains, and whether its autoencoder stage runs."""

    name: str
    model: str
    autoencoder: bool


VARIANTS: tuple[Variant, ...] = (
    Variant("dualvgr", "dualvgr", True),  # as the pipeline trains it: frozen features, stage 1 as configured
    Variant("msvqa_no_ae", "msvqa", False),
    Variant("msvqa", "msvqa", True),
    Variant("question_only", "question_only", False),  # no video at all: the stage never applies
)


def variant_config(config: PipelineConfig, variant: Variant, seed: int) -> PipelineConfig:
    """The config one variant trains with: its model, its seed, stage 1 off when it has none, no registration.

    Registration stays off so an ablation never moves a registered model's `champion` alias.
    """
    train = config.train.model_copy(update={"seed": seed})
    if not variant.autoencoder:
        train = train.model_copy(update={"autoencoder": train.autoencoder.model_copy(update={"epochs": 0})})
    return config.model_copy(update={
        "model": config.model.model_copy(update={"name": variant.model}),
        "train": train,
        "tracking": config.tracking.model_copy(update={"register_model": False}),
    })


def _spread(values: list[float]) -> float:
    # One seed has no spread to report; 0.0 keeps the JSON valid where NaN would not be.
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(variant: Variant, results: list[dict], seeds: list[int]) -> dict[str, Any]:
    """One variant's figures over its seeds: mean and sample standard deviation, overall and per type."""
    accs = [float(r["test_acc"]) for r in results]
    types = list(results[0]["test_acc_by_type"])
    by_type = {t: [float(r["test_acc_by_type"].get(t, float("nan"))) for r in results] for t in types}
    return {
        "name": variant.name,
        "model": variant.model,
        "autoencoder": variant.autoencoder,
        "seeds": seeds,
        "run_ids": [r["run_id"] for r in results],
        "test_acc": statistics.fmean(accs),
        "test_acc_by_type": {t: statistics.fmean(v) for t, v in by_type.items()},
        "test_acc_mean": statistics.fmean(accs),
        "test_acc_std": _spread(accs),
        "test_acc_by_type_std": {t: _spread(v) for t, v in by_type.items()},
        "test_accs": accs,
        "val_acc_mean": statistics.fmean(float(r["val_acc"]) for r in results),
    }


def ablation_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per variant: overall and per-type test accuracy (mean over seeds) and their spread."""
    rows = []
    for run in runs:
        row = {"variant": run["name"], "model": run["model"], "seeds": len(run["seeds"]),
               "test_acc_mean": run["test_acc_mean"], "test_acc_std": run["test_acc_std"]}
        row.update({f"test_acc_{t}": a for t, a in run["test_acc_by_type"].items()})
        row.update({f"test_acc_{t}_std": s for t, s in run["test_acc_by_type_std"].items()})
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(runs: list[dict[str, Any]]) -> str:
    """The table docs/models.md shows: mean ± spread over seeds, overall and per question type."""
    types = list(runs[0]["test_acc_by_type"])
    lines = ["| variant | test accuracy | " + " | ".join(types) + " |", "|---" * (len(types) + 2) + "|"]
    for run in runs:
        cells = [f"{run['test_acc_mean']:.3f} ± {run['test_acc_std']:.3f}"]
        cells += [f"{run['test_acc_by_type'][t]:.3f} ± {run['test_acc_by_type_std'][t]:.3f}" for t in types]
        lines.append(f"| {run['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(config: PipelineConfig, seeds: int = 1, *, train_one: TrainVariant | None = None) -> dict:
    """Train every variant for seeds train.seed .. train.seed + seeds - 1 under one "ablate" parent run."""
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}.")
    if config.train.autoencoder.epochs < 1:
        raise UserError("train.autoencoder.epochs must be at least 1: the ablation measures what the autoencoder "
                        "stage adds, so the msvqa variant needs one.")
    seed_list = list(range(config.train.seed, config.train.seed + seeds))
    tracker = open_tracker(config.tracking, config.dataset.name)
    parent = tracker.start_run("ablate", tags={"stage": "ablate", "git.commit": git_commit(),
                                               "prefect.flow_run_id": prefect_flow_run_id()})

    def train(variant: Variant, seed: int) -> dict:
        cfg = variant_config(config, variant, seed)
        if train_one is not None:
            return train_one(cfg, parent, variant.model, variant.name)
        return train_model(cfg, parent, variant.model, run_name=variant.name)

    try:
        tracker.log_text(parent, config_to_yaml(config), "config.yaml")
        tracker.log_params(parent, {"ablation.seeds": ",".join(map(str, seed_list)),
                                    "ablation.variants": ",".join(v.name for v in VARIANTS)})
        results: dict[str, list[dict]] = {v.name: [] for v in VARIANTS}
        for seed in seed_list:  # seed-major: an interrupted ablation still holds every variant of its first seeds
            for variant in VARIANTS:
                results[variant.name].append(train(variant, seed))
        runs = [summarise(v, results[v.name], seed_list) for v in VARIANTS]
        counts = results[VARIANTS[0].name][0].get("counts_by_type", {})
        tracker.log_metrics(parent, {f"{r['name']}_{k}": r[k] for r in runs for k in ("test_acc_mean", "test_acc_std")})
        table = ablation_table(runs)
        tracker.log_table(parent, table, "ablation/ablation.csv")
        tracker.log_text(parent, markdown_table(runs), "ablation/ablation.md")
        tracker.log_figure(parent, ablation_chart(runs, counts), "plots/ablation.png")
        tracker.end_run(parent)
    except BaseException:
        tracker.end_run(parent, failed=True)
        raise
    return {"run_id": parent, "tracking_uri": config.tracking.uri, "seeds": seed_list, "runs": runs}
