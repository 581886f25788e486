"""`msvqa serve`: every flow as a Prefect deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.common import SetOpt, load, run_body

app = typer.Typer()


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
