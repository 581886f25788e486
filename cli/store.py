"""`msvqa store`: inspect the store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.common import ConfigArg, JsonOpt, SetOpt, fail, load, run_body

app = typer.Typer(no_args_is_help=True, help="Inspect the store.")


@app.command("info")
def store_info(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Groups, arrays, shapes, chunking, spec hashes, bytes, completion and quarantine of the store."""
    cfg = load(config, overrides)

    def body() -> dict:
        from storage.report import store_report

        return store_report(cfg.store)

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


@app.command("log")
def store_log(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt,
              limit: Optional[int] = typer.Option(None, help="Only the newest N commits."),
              json_out: bool = JsonOpt) -> None:
    """The store's commits, newest first: id, time, message, stage, flow run, counts, tags."""
    cfg = load(config, overrides)

    def body() -> dict:
        from storage.store import open_store

        store = open_store(cfg.store, mode="r")
        return {"store": store.location.url, "commits": store.log(limit)}

    if json_out:
        run_body(body, True, "store log")
        return
    from configs.errors import UserError

    try:
        commits = body()["commits"]
    except (UserError, FileNotFoundError) as exc:
        fail(exc)  # one sentence, exit 2
    _print_commits(commits)


def _print_commits(commits: list[dict]) -> None:
    """The commits as a table, newest first (the JSON form has every field)."""
    from rich.console import Console
    from rich.table import Table

    import sys

    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "time", "stage", "message", "tags"):
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "time", "stage"))
    for commit in commits:
        table.add_row(str(commit.get("id", "")), str(commit.get("time", ""))[:19], str(commit.get("stage") or ""),
                      str(commit.get("message", "")), ", ".join(commit.get("tags") or []))
    # Fitted to a terminal; whole lines when piped.
    Console(highlight=False, width=None if sys.stdout.isatty() else 100_000).print(table)


@app.command("tag")
def store_tag(config: Path = ConfigArg, name: str = typer.Argument(..., help="The tag's name."),
              snapshot: Optional[str] = typer.Argument(None, help="Snapshot id or tag (default: the tip)."),
              overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Name a snapshot; a tagged snapshot is never collected by `msvqa store gc`."""
    cfg = load(config, overrides)

    def body() -> dict:
        from storage.store import open_store

        store = open_store(cfg.store, mode="r")
        return {"tag": name, "snapshot": store.tag(name, snapshot or cfg.store.snapshot)}

    run_body(body, json_out, "store tag")


@app.command("gc")
def store_gc(config: Path = ConfigArg, keep: int = typer.Option(..., help="Keep the newest N commits."),
             protect: Optional[list[str]] = typer.Option(None, help="Also keep this snapshot id (repeatable)."),
             grace_s: float = typer.Option(3600.0, help="Never delete objects younger than this (writers in flight)."),
             overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Expire old snapshots and delete what only they used; tagged, protected and model snapshots stay."""
    cfg = load(config, overrides)

    def body() -> dict:
        from storage.store import open_store
        from tasks.tracking.lineage import registered_model_snapshots

        store = open_store(cfg.store, mode="r")
        # A registered model must keep resolving the features it was trained on; the tracking store may
        # also hold models of other stores, whose snapshot ids this one does not know.
        models = {name: snap for name, snap in registered_model_snapshots(cfg.tracking).items()
                  if store.has_snapshot(snap)}
        summary = store.gc(keep, protect=[*(protect or ()), *sorted(set(models.values()))], grace_s=grace_s)
        return {**summary, "models": models}

    run_body(body, json_out, "store gc")


@app.command("import")
def store_import(old: Path = typer.Argument(..., help="A plain Zarr store (the layout before versioning)."),
                 new: str = typer.Argument(..., help="The new store: a folder or s3://BUCKET/PREFIX."),
                 endpoint_url: Optional[str] = typer.Option(None, help="S3-compatible endpoint for NEW."),
                 json_out: bool = JsonOpt) -> None:
    """Copy a store from before versioning into a new versioned store (resumable: one commit per group)."""

    def body() -> dict:
        from storage.convert import import_plain_store

        return import_plain_store(old, new, endpoint_url=endpoint_url)

    run_body(body, json_out, "store import")
