"""`msvqa ablate`: the four-model ablation of the end-to-end encoders and the autoencoder stage."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.common import ConfigArg, JsonOpt, SetOpt, console, load, run_body, with_prefect

app = typer.Typer()


@app.command("ablate")
def ablate(config: Path = ConfigArg, seeds: int = typer.Option(1, help="Seeds per variant: train.seed onwards."),
           overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Train dualvgr, msvqa_no_ae, msvqa and question_only on one store and split; compare them on test."""
    cfg = load(config, overrides)

    def body() -> dict:
        from flows.ablate import ablate_flow

        result = ablate_flow(cfg, seeds)
        if not json_out:
            _print_table(result["runs"])
        return result

    run_body(with_prefect(body, cfg), json_out, "ablation")


def _print_table(runs: list[dict]) -> None:
    from rich.table import Table

    types = list(runs[0]["test_acc_by_type"])
    table = Table("variant", "test acc", *types, title="test accuracy, mean ± sd over seeds")
    for run in runs:
        table.add_row(run["name"], f"{run['test_acc_mean']:.3f} ± {run['test_acc_std']:.3f}",
                      *(f"{run['test_acc_by_type'][t]:.3f}" for t in types))
    console.print(table)
