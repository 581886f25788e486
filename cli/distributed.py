"""One torchrun rank of `msvqa train --nproc N`:

    torchrun --standalone --nproc_per_node 2 -m cli.distributed CONFIG [--set key=value ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.train.distributed import init_distributed, shutdown


def main(argv: list[str] | None = None) -> int:
    """Train the config on every rank; rank 0 prints the summary (one JSON line with --json)."""
    parser = argparse.ArgumentParser(prog="python -m cli.distributed", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key.path=value")
    parser.add_argument("--json", action="store_true", help="print one JSON object (rank 0)")
    args = parser.parse_args(argv)

    from configs.errors import UserError
    from configs.loader import load_config

    try:
        config = load_config(args.config, args.overrides)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from flows.runtime import prepare_environment

    prepare_environment(config.data_dir)  # before prefect or mlflow is imported
    from tasks.device import resolve_device
    from tasks.train.run import train_with_baseline

    try:
        ctx, device = init_distributed(resolve_device(config.train.device))
        summary = train_with_baseline(config, ctx=ctx, device=device)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    if ctx.is_main:
        print(json.dumps(summary, default=str) if args.json else summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
