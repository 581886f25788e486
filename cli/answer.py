"""`msvqa answer` and `msvqa search`: use a trained model on a video file or on the whole feature store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.common import JsonOpt, SetOpt, load, run_body

app = typer.Typer()

ModelOpt = typer.Option(..., "--model", help="models:/NAME@champion, models:/NAME/VERSION, runs:/RUN_ID or a bundle file.")
TrackingOpt = typer.Option(None, "--tracking-uri",
                           help="MLflow tracking URI for models:/ and runs:/ (default: MLFLOW_TRACKING_URI, else "
                                "--config's, else sqlite:///data/mlflow.db).")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda[:N].")


@app.command()
def answer(model: str = ModelOpt,
           video: Path = typer.Option(..., "--video", help="The video file to ask about."),
           question: str = typer.Option(..., "--question", help="The question, e.g. 'what is the man doing?'"),
           top_k: int = typer.Option(5, "--top-k", help="How many answers to list."),
           tracking_uri: Optional[str] = TrackingOpt, device: str = DeviceOpt, json_out: bool = JsonOpt) -> None:
    """Answer a question about one video file with a trained model: top-k answers and their probabilities."""

    def body() -> dict:
        from tasks.serving.inference import answer_video

        return answer_video(model, video, question, top_k=top_k, tracking_uri=tracking_uri, device=device)

    run_body(body, json_out, "answers")


@app.command()
def search(model: str = ModelOpt,
           question: str = typer.Option(..., "--question", help="The question asked of every stored video."),
           answer_word: Optional[str] = typer.Option(None, "--answer",
                                                     help="Rank by this answer's probability (default: by the "
                                                          "confidence of each video's top answer)."),
           top: int = typer.Option(10, "--top", help="How many videos to list."),
           config: Optional[Path] = typer.Option(None, "--config",
                                                 help="Search this config's store (default: the model's own)."),
           overrides: Optional[list[str]] = SetOpt, tracking_uri: Optional[str] = TrackingOpt,
           device: str = DeviceOpt, json_out: bool = JsonOpt) -> None:
    """Rank the videos already in the feature store by the model's answer to one question (no decoding)."""
    cfg = load(config, overrides) if config is not None else None

    def body() -> dict:
        from tasks.serving.search import search_videos

        return search_videos(model, question, answer=answer_word, top=top, config=cfg, tracking_uri=tracking_uri,
                             device=device)

    run_body(body, json_out, "search")
