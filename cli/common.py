"""What every `msvqa` command shares: config loading, options, one-sentence user errors, output.

Prefect and MLflow are imported inside the commands, after `prepare_environment`, because both read
their settings (home folder, telemetry) when first imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console

from configs.errors import UserError
from configs.loader import load_config
from configs.schema import PipelineConfig

console = Console(stderr=True)
# Whether `msvqa` prints its closing timing line; query commands whose output is a table turn it off (`quiet`).
_show_timing = True


def quiet() -> None:
    """This command's output is its result alone: no closing timing line."""
    global _show_timing
    _show_timing = False


def show_timing() -> bool:
    return _show_timing

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
    from tasks.video.ffmpeg_run import VideoError

    try:
        result = fn()
    except (UserError, VideoError, FileNotFoundError) as exc:
        fail(exc)
    emit(result, as_json, title)


def with_prefect(fn: Callable[[], dict], cfg: PipelineConfig) -> Callable[[], dict]:
    def wrapped() -> dict:
        from flows.runtime import prefect_api

        with prefect_api(cfg.runner, cfg.data_dir):
            return fn()

    return wrapped
