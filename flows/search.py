"""Search flow: rank the videos already in the feature store by a model's answer to one question."""

from __future__ import annotations

from prefect import flow

from configs.schema import PipelineConfig
from tasks.search import search_videos


@flow(name="search")
def search_flow(model_uri: str, question: str, answer: str | None = None, top: int = 10,
                config: PipelineConfig | None = None, tracking_uri: str | None = None, device: str = "auto") -> dict:
    """Score every stored video with the bundle's feature spec; rank by P(answer) or top-answer confidence."""
    return search_videos(model_uri, question, answer=answer, top=top, config=config, tracking_uri=tracking_uri,
                         device=device)
