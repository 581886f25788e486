"""`msvqa` commands that inspect rather than run a stage: models, store, weights, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli import ConfigArg, JsonOpt, SetOpt, app, console, load, run_body

store_app = typer.Typer(no_args_is_help=True, help="Inspect the Zarr store.")
app.add_typer(store_app, name="store")
weights_app = typer.Typer(no_args_is_help=True, help="Check backbone checkpoints.")
app.add_typer(weights_app, name="weights")
runs_app = typer.Typer(no_args_is_help=True, help="Compare tracked training runs.")
app.add_typer(runs_app, name="runs")


@runs_app.command("compare")
def runs_compare(config: Optional[Path] = typer.Argument(None, help="YAML config (tracking URI; default: built-in)."),
                 overrides: Optional[list[str]] = SetOpt,
                 experiment: Optional[str] = typer.Option(None, "--experiment",
                                                          help="MLflow experiment (default: the config's)."),
                 json_out: bool = JsonOpt) -> None:
    """Every trained model run: val/test accuracy, per question type, beside its question-only baseline."""
    cfg = load(config, overrides)

    def body() -> dict:
        from tasks.runs import compare_runs, runs_records, runs_text

        frame = compare_runs(cfg, experiment)
        if not json_out:
            console.print(runs_text(frame), highlight=False)
        return {"experiment": experiment or cfg.tracking.experiment or cfg.dataset.name, "runs": runs_records(frame)}

    run_body(body, json_out, "runs")


@app.command()
def models(config: Optional[Path] = typer.Argument(None, help="YAML config (default: built-in defaults)."),
           overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Parameter counts of every registered model at the config's sizes."""
    cfg = load(config, overrides)

    def body() -> dict:
        from tasks.model_report import model_parameter_table

        return {"models": model_parameter_table(cfg)}

    run_body(body, json_out, "models")


@app.command()
def serve(config: Optional[Path] = typer.Argument(None, help="YAML config: the deployments' default parameters."),
          overrides: Optional[list[str]] = SetOpt,
          cron: Optional[str] = typer.Option(None, "--cron", help="Cron schedule of the pipeline-from-file deployment."),
          limit: Optional[int] = typer.Option(None, "--limit", help="Most flow runs at the same time.")) -> None:
    """Serve every flow as a Prefect deployment until Ctrl-C (needs PREFECT_API_URL; `make stack` starts a server)."""
    load(config, overrides)  # validates the config, and prepares the environment before prefect is imported

    def body() -> dict:
        from flows.serve import serve_all

        serve_all(str(config) if config else None, overrides=overrides or [], schedule_cron=cron, limit=limit)
        return {"served": "stopped"}

    run_body(body, False, "serve stopped")


@store_app.command("info")
def store_info(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Groups, arrays, shapes, chunking, spec hashes, bytes, completion and quarantine of the store."""
    cfg = load(config, overrides)

    def body() -> dict:
        from storage.report import store_report

        return store_report(cfg.store.path)

    run_body(body, json_out, "store")


@store_app.command("show")
def store_show(config: Path = ConfigArg, video: str = typer.Argument(..., help="Clip file stem or numeric video id."),
               overrides: Optional[list[str]] = SetOpt,
               stream: str = typer.Option("appearance", help="appearance or motion"),
               out: Path = typer.Option(..., help="A .png contact sheet (clips as rows) or .npy raw uint8 array."),
               json_out: bool = JsonOpt) -> None:
    """Save the sampled frames of one stored video as a contact sheet or a raw array."""
    cfg = load(config, overrides)

    def body() -> dict:
        from tasks.contact_sheet import show_clip

        return show_clip(cfg, video, stream, out)

    run_body(body, json_out, "clip view")


@weights_app.command("check")
def weights_check(backbone: str = typer.Argument(..., help="Backbone name, e.g. resnet101 or resnext101_3d."),
                  path: Path = typer.Argument(..., help="Checkpoint file."), json_out: bool = JsonOpt) -> None:
    """Validate a checkpoint against a backbone before a long run; exit 0 only when it loads cleanly."""
    from tasks.weights import inspect_checkpoint

    report: dict = {}

    def body() -> dict:
        result = inspect_checkpoint(backbone, path)
        report["ok"] = result.ok
        return result.to_dict()

    run_body(body, json_out, "weights")
    if not report.get("ok"):
        raise typer.Exit(1)
