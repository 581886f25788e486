"""The pipeline's commands: one per stage, `run` for the whole pipeline, `train`, `synth`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

import typer

from cli.common import ConfigArg, JsonOpt, SetOpt, console, fail, load, run_body, with_prefect
from configs.errors import UserError
from configs.schema import PipelineConfig

app = typer.Typer()


def _call(target: str, cfg: PipelineConfig) -> dict:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(cfg)


def _stage_command(name: str, target: str, title: str, doc: str) -> None:
    """Register `msvqa NAME CONFIG [--set ...] [--json]` running the flow function `module:function`."""

    def command(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
        cfg = load(config, overrides)
        run_body(with_prefect(lambda: _call(target, cfg), cfg), json_out, title)

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


@app.command()
def evaluate(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt,
             model: Optional[str] = typer.Option(
                 None, "--model", help="runs:/RUN_ID, models:/NAME@alias, models:/NAME/VERSION or a bundle file; "
                                       "default: the configured model's best checkpoint."),
             json_out: bool = JsonOpt) -> None:
    """Evaluate on test (overall and per question type), at store.snapshot: the configured model or --model."""
    cfg = load(config, overrides)

    def body() -> dict:
        from flows.evaluate import evaluate_flow, evaluate_model_flow

        return evaluate_flow(cfg) if model is None else evaluate_model_flow(cfg, model)

    run_body(with_prefect(body, cfg), json_out, "evaluation finished")


@app.command()
def run(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Run the whole pipeline: ingest, clips, features, text, train (two stages), evaluate."""
    cfg = load(config, overrides)

    def body() -> dict:
        from flows.pipeline import pipeline_flow

        result = pipeline_flow(cfg)
        keys = ("run_id", "test_acc", "test_acc_by_type", "baseline_test_acc", "comparisons", "val_acc", "store",
                "tracking_uri", "seconds")
        return {key: result.get(key) for key in keys} | {"details": {k: v for k, v in result.items() if k not in keys}}

    run_body(with_prefect(body, cfg), json_out, "pipeline finished")


@app.command()
def train(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt, json_out: bool = JsonOpt,
          nproc: int = typer.Option(1, "--nproc", min=1,
                                    help="DDP processes on this machine (one per GPU), via torchrun."),
          nnodes: int = typer.Option(1, "--nnodes", min=1, help="Machines in the job (torchrun c10d rendezvous)."),
          node_rank: int = typer.Option(0, "--node-rank", min=0, help="This machine's rank, 0 .. nnodes - 1."),
          rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint",
                                                      help="HOST:PORT of the rendezvous, the same on every node."),
          rdzv_id: str = typer.Option("msvqa", "--rdzv-id", help="Job id, the same on every node.")) -> None:
    """Train the configured model (autoencoder then QA stage) and its comparison models from the store."""
    cfg = load(config, overrides)
    if nproc > 1 or nnodes > 1 or rdzv_endpoint:
        import os

        from tasks.train.distributed import torchrun_command

        try:
            command = torchrun_command(config, overrides or [], nproc, json_out, nnodes=nnodes, node_rank=node_rank,
                                       rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id)
        except UserError as exc:
            fail(exc)
        os.execv(command[0], command)
    run_body(with_prefect(lambda: _call("flows.train:train_flow", cfg), cfg), json_out, "training finished")


@app.command()
def synth(out: Path = typer.Argument(..., help="Folder to write the dataset into."),
          videos: int = typer.Option(240, help="Number of videos."),
          seed: int = typer.Option(0, help="Random seed: the same seed gives the same dataset."),
          world: str = typer.Option("default", help="What the videos look like: default, textured, shapes, "
                                    "fast, distractors or mixed (see docs/models.md)."),
          json_out: bool = JsonOpt) -> None:
    """Generate a synthetic dataset in the exact MSVD-QA layout, plus a GloVe-format file."""
    from rich.progress import Progress

    from tasks.ingest.synth_dataset import generate_dataset

    def body() -> dict:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("encoding videos", total=videos)
            summary = generate_dataset(out, videos, seed, world=world,
                                       progress=lambda done, total: progress.update(bar, completed=done))
        return {"root": str(summary.root), "videos": summary.videos, "questions": summary.questions_per_split,
                "glove": str(summary.glove_path), "world": summary.world}

    run_body(body, json_out, "synthetic dataset written")
