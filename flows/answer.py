"""Answer flow: one question about one video file, with a model bundle from a path or MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.inference import answer_video


@flow(name="answer")
def answer_flow(model_uri: str, video: str, question: str, top_k: int = 5, tracking_uri: str | None = None,
                device: str = "auto") -> dict:
    """Decode `video` and extract its features as in training, then print the model's top-k answers."""
    return answer_video(model_uri, Path(video), question, top_k=top_k, tracking_uri=tracking_uri, device=device)
