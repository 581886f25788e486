"""`msvqa runs`: compare tracked training runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from cli.common import JsonOpt, SetOpt, fail, load, quiet

app = typer.Typer(no_args_is_help=True, help="Compare tracked training runs (`compare`), open them in MLflow (`link`).")
# What `msvqa runs compare` reads with no config, run from the project folder: the store `make demo` writes to.
DEFAULT_CONFIG = Path("configs/demo.yaml")
# A piped table is printed whole: no terminal width to fit, and a reader (or a script) wants every column.
_UNBOUNDED = 100_000
_HEADERS = {"baseline_test_acc": "baseline", "start_time": "started"}


def print_table(frame, file=None) -> None:
    """The runs as a table on stdout: fitted to the terminal's width, whole (no wrapping) when not a terminal."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from tasks.tracking.compare import runs_display

    out = file or sys.stdout
    console = Console(file=out, width=None if out.isatty() else _UNBOUNDED, highlight=False)
    if frame.empty:
        console.print("no training runs")
        return
    shown = runs_display(frame)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for column in shown.columns:
        numeric = column not in ("run_name", "model", "start_time")
        # Names give way first on a narrow terminal (folded, never cut to nothing); figures never wrap.
        table.add_column(_HEADERS.get(column, column), justify="right" if numeric else "left",
                         no_wrap=numeric, overflow="fold",
                         min_width=12 if column in ("run_name", "model") else None)
    for row in shown.itertuples(index=False):
        table.add_row(*row)
    console.print(table)


# Both commands read the project's default config when given none, and name the experiment as runs do.
ConfigArg = typer.Argument(
    None, help=f"YAML config (tracking URI; default: {DEFAULT_CONFIG} when it exists, else built-in).")
ExperimentOpt = typer.Option(None, "--experiment", help="MLflow experiment (default: the config's).")


def _load_project_config(config: Optional[Path], overrides: Optional[list[str]]):
    """The config given, else the project's demo config when run from the project folder, else the built-in."""
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    return load(config, overrides)


@app.command("compare")
def runs_compare(config: Optional[Path] = ConfigArg, overrides: Optional[list[str]] = SetOpt,
                 experiment: Optional[str] = ExperimentOpt, json_out: bool = JsonOpt) -> None:
    """Every trained model run: val/test accuracy, per question type, beside its question-only baseline."""
    quiet()  # the table is the whole output: no title, no result dict, no timing line
    cfg = _load_project_config(config, overrides)
    from configs.errors import UserError
    from tasks.tracking.compare import compare_runs, runs_records
    from tasks.tracking.mlflow_adapter import experiment_name

    try:
        frame = compare_runs(cfg, experiment)
    except UserError as exc:
        fail(exc)
    if json_out:
        name = experiment_name(cfg.tracking, cfg.dataset.name, experiment)
        print(json.dumps({"experiment": name, "runs": runs_records(frame)}, default=str), flush=True)
    else:
        print_table(frame)


@app.command("link")
def runs_link(config: Optional[Path] = ConfigArg, overrides: Optional[list[str]] = SetOpt,
              experiment: Optional[str] = ExperimentOpt,
              ui_url: Optional[str] = typer.Option(None, "--ui-url",
                                                   help="The MLflow UI over tracking.uri (default: tracking.uri "
                                                        "when it is an http(s) server).")) -> None:
    """The MLflow UI link to the experiment's runs in the comparison view (accuracies as columns, best first).

    Opens the experiment as a run does: creates it when it does not exist yet.
    """
    quiet()  # the link is the whole output
    cfg = _load_project_config(config, overrides)
    from configs.errors import UserError
    from tasks.tracking.mlflow_adapter import comparison_link

    uri = cfg.tracking.uri
    base = ui_url or (uri if uri.startswith(("http://", "https://")) else None)
    try:
        if base is None:
            raise UserError(f"tracking.uri {uri} is not an MLflow server: pass the UI's address with --ui-url "
                            "(`make ui`: http://127.0.0.1:5000)")
        print(comparison_link(cfg.tracking, cfg.dataset.name, base, experiment), flush=True)
    except UserError as exc:
        fail(exc)
