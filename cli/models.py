"""`msvqa models` and `msvqa weights`: what the registered models and backbone checkpoints hold."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.common import JsonOpt, SetOpt, load, run_body

app = typer.Typer()
weights_app = typer.Typer(no_args_is_help=True, help="Check backbone checkpoints.")


@app.command()
def models(config: Optional[Path] = typer.Argument(None, help="YAML config (default: built-in defaults)."),
           overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Parameter counts of every registered model at the config's sizes."""
    cfg = load(config, overrides)

    def body() -> dict:
        from tasks.tracking.model_report import model_parameter_table

        return {"models": model_parameter_table(cfg)}

    run_body(body, json_out, "models")


@weights_app.command("check")
def weights_check(backbone: str = typer.Argument(..., help="Backbone name, e.g. resnet101 or resnext101_3d."),
                  path: Path = typer.Argument(..., help="Checkpoint file."), json_out: bool = JsonOpt) -> None:
    """Validate a checkpoint against a backbone before a long run; exit 0 only when it loads cleanly."""
    from tasks.features.weights import inspect_checkpoint

    report: dict = {}

    def body() -> dict:
        result = inspect_checkpoint(backbone, path)
        report["ok"] = result.ok
        return result.to_dict()

    run_body(body, json_out, "weights")
    if not report.get("ok"):
        raise typer.Exit(1)
