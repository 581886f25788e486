"""The `msvqa` command line: the command groups of this package on one typer app."""

from __future__ import annotations

import sys
import time

import typer

from cli import ablate, answer, models, runs, serve, stages, store
from cli.common import console, show_timing

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Video question answering: DualVGR / MSVQA.")
for group in (stages, ablate, answer, models, serve):
    app.registered_commands += group.app.registered_commands
app.add_typer(store.app, name="store")
app.add_typer(models.weights_app, name="weights")
app.add_typer(runs.app, name="runs")


def main() -> None:
    started = time.monotonic()
    try:
        app()
    finally:
        if "--json" not in sys.argv and show_timing():
            console.print(f"[dim]{time.monotonic() - started:.1f}s[/]")


if __name__ == "__main__":
    main()
