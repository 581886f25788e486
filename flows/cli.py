"""The `msvqa` command line: one command per stage, `run` for the whole pipeline.

Prefect and MLflow are imported inside the commands, after `prepare_environment`, because both read
their settings (home folder, telemetry) when first imported. Inspection commands live in
`flows/cli_inspect.py`, registered on the same app.
"""

from __future__ import annotations

import importlib
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
console = Console(stderr=True)

ConfigArg = typer.Argument(..., help="YAML config file (see configs/).", exists=False)
SetOpt = typer.Option(None, "--set", help="Override a config key: --set train.qa.epochs=3 (repeatable).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object as the last line.")


def fail(exc: BaseException) -> None:
    """One sentence on stderr and exit code 2: how every user error ends."""
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def load(config: Optional[Path], overrides: Optional[list[str]]) -> PipelineConfig:
    try:
        cfg = load_config(config, overrides or [])
    except UserError as exc:
        fail(exc)
    from flows.runtime import prepare_environment

    prepare_environment(cfg.data_dir)
    return cfg


def emit(result: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(result, default=str), flush=True)
        return
    from rich.pretty import Pretty

    console.print(f"[bold green]{title}[/]")
    console.print(Pretty(result))


def run_body(fn: Callable[[], dict], as_json: bool, title: str) -> None:
    """Run a command body; user errors become one sentence and exit code 2, bugs keep their traceback."""
    from tasks.video import VideoError

    try:
        result = fn()
    except (UserError, VideoError, FileNotFoundError) as exc:
        fail(exc)
    emit(result, as_json, title)


def with_prefect(fn: Callable[[], dict]) -> Callable[[], dict]:
    def wrapped() -> dict:
        from flows.runtime import prefect_api

        with prefect_api():
            return fn()

    return wrapped


def _call(target: str, cfg: PipelineConfig) -> dict:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(cfg)


def _stage_command(name: str, target: str, title: str, doc: str) -> None:
    """Register `msvqa NAME CONFIG [--set ...] [--json]` running the flow function `module:function`."""

    def command(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
        cfg = load(config, overrides)
        run_body(with_prefect(lambda: _call(target, cfg)), json_out, title)

    command.__doc__ = doc
    app.command(name)(command)


_stage_command("ingest", "flows.ingest:ingest_flow", "ingest finished",
               "Bring the dataset into dataset.root (download, copy or generate) and validate its layout.")
_stage_command("clips", "flows.clips:run_clips", "clips finished",
               "Decode and sample every video into the clip store (resumable, parallel).")
_stage_command("features", "flows.features:run_features", "features finished",
               "Extract appearance and motion features from the clip store (resumable).")
_stage_command("text", "flows.text:run_text", "text finished",
               "Tokenise questions, build vocabularies and the GloVe matrix into the store.")
_stage_command("baseline", "flows.baseline:baseline_flow", "baseline finished",
               "Train and test the question-only model from the text store alone: the language-prior floor.")
_stage_command("reprocess", "flows.reprocess:run_reprocess", "reprocess finished",
               "Rescan dataset.root and process only new, changed or removed videos and changed annotations.")
_stage_command("evaluate", "flows.evaluate:evaluate_flow", "evaluation finished",
               "Evaluate the configured model's best checkpoint on test, overall and per question type.")


@app.command()
def run(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Run the whole pipeline: ingest, clips, features, text, train (two stages), evaluate."""
    cfg = load(config, overrides)

    def body() -> dict:
        from flows.pipeline import pipeline_flow

        result = pipeline_flow(cfg)
        keys = ("run_id", "test_acc", "test_acc_by_type", "baseline_test_acc", "val_acc", "store", "tracking_uri",
                "seconds")
        return {key: result.get(key) for key in keys} | {"details": {k: v for k, v in result.items() if k not in keys}}

    run_body(with_prefect(body), json_out, "pipeline finished")


@app.command()
def train(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt,
          nproc: int = typer.Option(1, "--nproc", min=1,
                                    help="DDP processes on this machine (one per GPU), via torchrun.")) -> None:
    """Train the configured model (autoencoder then QA stage) and the baseline from the store."""
    cfg = load(config, overrides)
    if nproc > 1:
        import os

        from tasks.distributed import torchrun_command

        command = torchrun_command(config, overrides or [], nproc, json_out)
        os.execv(command[0], command)
    run_body(with_prefect(lambda: _call("flows.train:train_flow", cfg)), json_out, "training finished")


@app.command()
def synth(out: Path = typer.Argument(..., help="Folder to write the dataset into."),
          videos: int = typer.Option(240, help="Number of videos."),
          seed: int = typer.Option(0, help="Random seed: the same seed gives the same dataset."),
          json_out: bool = JsonOpt) -> None:
    """Generate a synthetic dataset in the exact MSVD-QA layout, plus a GloVe-format file."""
    from rich.progress import Progress

    from tasks.synth import generate_dataset

    def body() -> dict:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("encoding videos", total=videos)
            summary = generate_dataset(out, videos, seed,
                                       progress=lambda done, total: progress.update(bar, completed=done))
        return {"root": str(summary.root), "videos": summary.videos, "questions": summary.questions_per_split,
                "glove": str(summary.glove_path)}

    run_body(body, json_out, "synthetic dataset written")


def main() -> None:
    started = time.monotonic()
    try:
        app()
    finally:
        if "--json" not in sys.argv:
            console.print(f"[dim]{time.monotonic() - started:.1f}s[/]")


# Registered on `app` by importing them: inspection commands, answering and searching.
from flows import cli_answer, cli_inspect  # noqa: E402,F401

if __name__ == "__main__":
    # Run through the imported module: `python -m flows.cli` would otherwise build a second `app` here,
    # without the commands that cli_inspect and cli_answer registered on the imported one.
    from flows.cli import main as _main

    _main()
