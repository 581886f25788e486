"""`msvqa store`: inspect the store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.common import ConfigArg, JsonOpt, SetOpt, load, run_body

app = typer.Typer(no_args_is_help=True, help="Inspect the store.")


@app.command("info")
def store_info(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Groups, arrays, shapes, chunking, spec hashes, bytes, completion and quarantine of the store."""
    cfg = load(config, overrides)

    def body() -> dict:
        from storage.report import store_report

        return store_report(cfg.store.path)

    run_body(body, json_out, "store")


@app.command("show")
def store_show(config: Path = ConfigArg, video: str = typer.Argument(..., help="Clip file stem or numeric video id."),
               overrides: Optional[list[str]] = SetOpt,
               stream: str = typer.Option("appearance", help="appearance or motion"),
               out: Path = typer.Option(..., help="A .png contact sheet (clips as rows) or .npy raw uint8 array."),
               json_out: bool = JsonOpt) -> None:
    """Save the sampled frames of one stored video as a contact sheet or a raw array."""
    cfg = load(config, overrides)

    def body() -> dict:
        from tasks.video.contact_sheet import show_clip

        return show_clip(cfg, video, stream, out)

    run_body(body, json_out, "clip view")
