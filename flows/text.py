"""Text flow: tokenise, build vocabularies, encode every split and the GloVe matrix into the store."""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from configs.schema import PipelineConfig
from tasks.text_store import build_text


@task(name="build-text", cache_policy=NO_CACHE)
def build_text_task(config: PipelineConfig) -> dict:
    summary = build_text(config.text, config.dataset.root, config.store.path, config.dataset.name, config.seed)
    out = asdict(summary)
    out["ref"] = summary.ref.path
    out["vocab_path"] = str(summary.vocab_path)
    return out


@flow(name="text")
def text_flow(config: PipelineConfig) -> dict:
    """Questions, vocabularies and GloVe: built once per text spec, reused after."""
    summary = build_text_task(config)
    if config.text.glove_path is None:
        get_run_logger().warning("text.glove_path is not set: word embeddings start random")
    get_run_logger().info("text %s: %d question tokens, %d answers, GloVe found %d, missing %d",
                          summary["ref"], summary["question_vocab_size"], summary["answer_vocab_size"],
                          summary["glove_found"], summary["glove_missing"])
    return summary


def run_text(config: PipelineConfig) -> dict:
    """The text flow, reported with the keys `msvqa text --json` promises."""
    summary = text_flow(config)
    keys = ("question_vocab_size", "answer_vocab_size", "glove_found", "glove_missing", "vocab_path", "glove_array",
            "questions")
    return {key: summary[key] for key in keys}
