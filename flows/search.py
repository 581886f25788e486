"""Search flow: rank the videos already in the feature store by a model's answer to one question."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from configs.schema import PipelineConfig
from flows.clips import artifact_key
from flows.naming import flow_run_name
from tasks.serving.search import search_videos


# persist_result: the ranking stays readable from the run in the UI and API after the process ends.
@flow(name="search", flow_run_name=flow_run_name, persist_result=True)
def search_flow(model_uri: str, question: str, answer: str | None = None, top: int = 10,
                config: PipelineConfig | None = None, tracking_uri: str | None = None, device: str = "auto") -> dict:
    """Score every stored video with the bundle's feature spec; rank by P(answer) or top-answer confidence."""
    result = search_videos(model_uri, question, answer=answer, top=top, config=config, tracking_uri=tracking_uri,
                           device=device)
    rows = [{"rank": rank, **row, "score": round(float(row["score"]), 4)}
            for rank, row in enumerate(result["rows"], start=1)]
    scored_by = f"P({answer!r})" if answer else "top-answer confidence"
    create_table_artifact(rows, key=artifact_key("search-ranked-videos"),
                          description=f"Videos for {question!r} by {scored_by}, {result['videos_scored']} scored "
                                      f"({result['model']})")
    get_run_logger().info("%s: %d videos scored, best %s", question, result["videos_scored"],
                          rows[0]["video"] if rows else "-")
    return result
