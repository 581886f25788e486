"""`msvqa serve`: every deployment of flows/deployments.py, served from one process.

Runs of the deployments execute as subprocesses of the serving process. It needs a Prefect server that
outlives it (PREFECT_API_URL; `make stack` starts one), which is also where the UI lists the deployments.
Prefect is imported inside the functions, after `prepare_environment`, as everywhere in the CLI.

    python -m flows.serve [CONFIG] [--set key=value ...] [--cron "0 3 * * *"] [--limit N]
    python -m flows.serve --print-prefect-yaml > prefect.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from configs.errors import UserError


def require_api_url() -> str:
    """The configured Prefect API URL, exported so that run subprocesses and Dask workers inherit it."""
    from prefect.settings import PREFECT_API_URL

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if not url:
        # Without one Prefect would start a temporary server that vanishes with this process.
        raise UserError("PREFECT_API_URL is not set: start a server (`make stack` or `prefect server start "
                        "--host 127.0.0.1`) and export PREFECT_API_URL=http://127.0.0.1:4200/api")
    os.environ["PREFECT_API_URL"] = url
    return url


def serve_all(config_path: str | Path | None, *, overrides: list[str] | None = None,
              schedule_cron: str | None = None, limit: int | None = None) -> None:
    """Register every deployment (defaults from `config_path`) and run their flow runs until interrupted.

    `schedule_cron` schedules the `pipeline-from-file` deployment; `limit` caps concurrent runs.
    """
    from prefect import serve

    from flows.deployments import build_deployments

    # Config mistakes first: they are the user's to fix whatever server is running.
    deployments = build_deployments(config_path, overrides, schedule_cron=schedule_cron)
    require_api_url()
    if config_path is not None:
        from configs.loader import load_config
        from flows.writer_slot import ensure_store_limit

        # The writer deployments share the store's one slot on this server (flows/writer_slot.py).
        ensure_store_limit(load_config(Path(config_path), list(overrides or [])))
    serve(*deployments, limit=limit)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="YAML config: the deployments' default parameters")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key.path=value (repeatable)")
    parser.add_argument("--cron", help="cron schedule of the pipeline-from-file deployment")
    parser.add_argument("--limit", type=int, help="most flow runs at the same time")
    parser.add_argument("--print-prefect-yaml", action="store_true", help="print prefect.yaml and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from configs.loader import load_config
    from flows.runtime import prepare_environment

    try:
        config = load_config(Path(args.config) if args.config else None, args.overrides)
        # Before any prefect or mlflow import, which would settle on ~/.prefect and telemetry defaults.
        prepare_environment(config.data_dir)
        if args.print_prefect_yaml:
            from flows.deployments import prefect_yaml

            sys.stdout.write(prefect_yaml())
            return 0
        serve_all(args.config, overrides=args.overrides, schedule_cron=args.cron, limit=args.limit)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
