"""Answer flow: one question about one video file, with a model bundle from a path or MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.clips import artifact_key
from flows.naming import flow_run_name
from tasks.serving.inference import answer_video


# persist_result: the answer stays readable from the run in the UI and API after the process ends.
@flow(name="answer", flow_run_name=flow_run_name, persist_result=True)
def answer_flow(model_uri: str, video: str, question: str, top_k: int = 5, tracking_uri: str | None = None,
                device: str = "auto") -> dict:
    """Decode `video` and extract its features as in training, then print the model's top-k answers."""
    result = answer_video(model_uri, Path(video), question, top_k=top_k, tracking_uri=tracking_uri, device=device)
    rows = [{"rank": rank, "answer": row["answer"], "probability": round(float(row["probability"]), 4)}
            for rank, row in enumerate(result["answers"], start=1)]
    unknown = ", ".join(result["unknown_words"]) or "none"
    create_table_artifact(rows, key=artifact_key("answer-top-answers"),
                          description=f"{question!r} about {Path(video).name} ({result['model_name']}, "
                                      f"{result['model']}); unknown words: {unknown}")
    best = rows[0] if rows else {"answer": "-", "probability": float("nan")}
    get_run_logger().info("%s -> %s (p=%.3f)", question, best["answer"], best["probability"])
    return result
