"""The `msvqa` command line: one command per stage, `run` for the whole pipeline.

Prefect and MLflow are imported inside the commands, after `prepare_environment`, because both read
their settings (home folder, telemetry) when first imported.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console

from configs.errors import UserError
from configs.loader import load_config
from configs.schema import PipelineConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Video question answering: DualVGR / MSVQA.")
store_app = typer.Typer(no_args_is_help=True, help="Inspect the Zarr store.")
app.add_typer(store_app, name="store")
console = Console(stderr=True)

ConfigArg = typer.Argument(..., help="YAML config file (see configs/).", exists=False)
SetOpt = typer.Option(None, "--set", help="Override a config key: --set train.qa.epochs=3 (repeatable).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object as the last line.")


def _fail(exc: BaseException) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _load(config: Optional[Path], overrides: Optional[list[str]]) -> PipelineConfig:
    try:
        cfg = load_config(config, overrides or [])
    except UserError as exc:
        _fail(exc)
    from flows.runtime import prepare_environment

    prepare_environment(cfg.data_dir)
    return cfg


def _emit(result: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(result, default=str), flush=True)
        return
    from rich.pretty import Pretty

    console.print(f"[bold green]{title}[/]")
    console.print(Pretty(result))


def _run(fn: Callable[[], dict], as_json: bool, title: str) -> None:
    """Run a command body; user errors become one sentence and exit code 2."""
    from tasks.video import VideoError

    try:
        result = fn()
    except (UserError, VideoError, FileNotFoundError) as exc:
        _fail(exc)
    _emit(result, as_json, title)


def _with_prefect(fn: Callable[[], dict]) -> Callable[[], dict]:
    def wrapped() -> dict:
        from flows.runtime import prefect_api

        with prefect_api():
            return fn()

    return wrapped


@app.command()
def synth(out: Path = typer.Argument(..., help="Folder to write the dataset into."),
          videos: int = typer.Option(240, help="Number of videos."),
          seed: int = typer.Option(0, help="Random seed: the same seed gives the same dataset."),
          json_out: bool = JsonOpt) -> None:
    """Generate a synthetic dataset in the exact MSVD-QA layout, plus a GloVe-format file."""
    from rich.progress import Progress

    from tasks.synth import SynthError, generate_dataset

    def body() -> dict:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("encoding videos", total=videos)
            try:
                summary = generate_dataset(out, videos, seed, progress=lambda done, total: progress.update(bar, completed=done))
            except SynthError as exc:
                raise UserError(str(exc)) from exc
        return {"root": str(summary.root), "videos": summary.videos, "questions": summary.questions_per_split,
                "glove": str(summary.glove_path)}

    _run(body, json_out, "synthetic dataset written")


@app.command()
def run(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Run the whole pipeline: ingest, clips, features, text, train (two stages), evaluate."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from flows.pipeline import pipeline_flow

        result = pipeline_flow(cfg)
        keys = ("run_id", "test_acc", "test_acc_by_type", "baseline_test_acc", "val_acc", "store", "tracking_uri",
                "seconds")
        return {key: result.get(key) for key in keys} | {"details": {k: v for k, v in result.items() if k not in keys}}

    _run(_with_prefect(body), json_out, "pipeline finished")


@app.command()
def ingest(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Bring the dataset into dataset.root (copy or generate) and validate its layout."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from flows.ingest import ingest_flow

        return ingest_flow(cfg)

    _run(_with_prefect(body), json_out, "ingest finished")


@app.command()
def clips(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Decode and sample every video into the clip store (resumable)."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from flows.clips import run_clips

        return run_clips(cfg)

    _run(_with_prefect(body), json_out, "clips finished")


@app.command()
def features(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Extract appearance and motion features from the clip store (resumable)."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from flows.features import run_features

        return run_features(cfg)

    _run(_with_prefect(body), json_out, "features finished")


@app.command()
def text(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Tokenise questions, build vocabularies and the GloVe matrix into the store."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from flows.text import text_flow

        summary = text_flow(cfg)
        return {"question_vocab_size": summary["question_vocab_size"],
                "answer_vocab_size": summary["answer_vocab_size"], "glove_found": summary["glove_found"],
                "glove_missing": summary["glove_missing"], "vocab_path": summary["vocab_path"],
                "glove_array": summary["glove_array"], "questions": summary["questions"]}

    _run(_with_prefect(body), json_out, "text finished")


@app.command()
def train(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Train the configured model (autoencoder then QA stage) and the baseline from the store."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from flows.train import train_flow

        return train_flow(cfg)

    _run(_with_prefect(body), json_out, "training finished")


@app.command()
def evaluate(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Evaluate the configured model's best checkpoint on the test split, overall and per question type."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from flows.evaluate import evaluate_flow

        return evaluate_flow(cfg)

    _run(_with_prefect(body), json_out, "evaluation finished")


@app.command()
def models(config: Optional[Path] = typer.Argument(None, help="YAML config (default: built-in defaults)."),
           overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Parameter counts of every registered model at the config's sizes."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from tasks.model_report import model_parameter_table

        return {"models": model_parameter_table(cfg)}

    _run(body, json_out, "models")


@app.command()
def serve(config: Optional[Path] = typer.Argument(None, help="YAML config: the deployments' default parameters."),
          overrides: Optional[list[str]] = SetOpt,
          cron: Optional[str] = typer.Option(None, "--cron", help="Cron schedule of the pipeline-from-file deployment."),
          limit: Optional[int] = typer.Option(None, "--limit", help="Most flow runs at the same time.")) -> None:
    """Serve every flow as a Prefect deployment until Ctrl-C (needs PREFECT_API_URL; `make stack` starts a server)."""
    _load(config, overrides)  # validates the config, and prepares the environment before prefect is imported

    def body() -> dict:
        from flows.serve import serve_all

        serve_all(str(config) if config else None, overrides=overrides or [], schedule_cron=cron, limit=limit)
        return {"served": "stopped"}

    _run(body, False, "serve stopped")


@store_app.command("info")
def store_info(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Groups, arrays, shapes, chunking, spec hashes, bytes, completion and quarantine of the store."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from storage.report import store_report

        return store_report(cfg.store.path)

    _run(body, json_out, "store")


@store_app.command("show")
def store_show(config: Path = ConfigArg, video: str = typer.Argument(..., help="Clip file stem or numeric video id."),
               overrides: Optional[list[str]] = SetOpt,
               stream: str = typer.Option("appearance", help="appearance or motion"),
               out: Path = typer.Option(..., help="A .png contact sheet (clips as rows) or .npy raw uint8 array."),
               json_out: bool = JsonOpt) -> None:
    """Save the sampled frames of one stored video as a contact sheet or a raw array."""
    cfg = _load(config, overrides)

    def body() -> dict:
        from tasks.contact_sheet import show_clip

        return show_clip(cfg, video, stream, out)

    _run(body, json_out, "clip view")


weights_app = typer.Typer(no_args_is_help=True, help="Check backbone checkpoints.")
app.add_typer(weights_app, name="weights")


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

    _run(body, json_out, "weights")
    if not report.get("ok"):
        raise typer.Exit(1)


def main() -> None:
    started = time.monotonic()
    try:
        app()
    finally:
        if "--json" not in sys.argv:
            console.print(f"[dim]{time.monotonic() - started:.1f}s[/]")


if __name__ == "__main__":
    main()
