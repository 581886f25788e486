"""Text flow: tokenise, build vocabularies, encode every split and the GloVe matrix into the store.

`build_text_task` is the one build-text task (the text, baseline and reprocess flows use it). It is keyed
by its inputs (the text spec: settings plus annotation and GloVe checksums, the store settings) and its
source, and only while the store still holds that complete text group; a deleted store or group gives
no key, so the task runs instead of answering from the cache. The cache expires, so stale records do not
pile up in PREFECT_HOME.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

from configs.schema import PipelineConfig, StoreConfig, TextConfig
from flows.naming import flow_run_name
from flows.writer_slot import writer_flow_slot
from storage.store import open_store, spec_hash, store_exists
from tasks.text.store import build_text, text_spec

CACHE_EXPIRATION = timedelta(days=7)


@dataclass
class WhileStored(CachePolicy):
    """INPUTS + TASK_SOURCE while the store holds the complete text group of `spec`; no key (no cache) else."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        store: StoreConfig = inputs["store"]
        group = f"{inputs['dataset']}/text/{spec_hash(inputs['spec'])}"
        try:
            complete = (store_exists(store.path, store.endpoint_url, store.region)
                        and open_store(store, mode="r").open(group).attrs.get("complete"))
        except KeyError:
            complete = False
        if not complete:
            return None
        return (INPUTS + TASK_SOURCE).compute_key(task_ctx, inputs, flow_parameters, **kwargs)


@task(name="build-text", cache_policy=WhileStored(), cache_expiration=CACHE_EXPIRATION)
def build_text_task(text: TextConfig, root: Path, store: StoreConfig, dataset: str, seed: int, spec: dict) -> dict:
    """Build (or reuse) the text group; `spec` is what the cache is keyed by."""
    summary = build_text(text, root, store, dataset, seed)
    out = asdict(summary)
    out["ref"] = summary.ref.path
    out["vocab_path"] = str(summary.vocab_path)
    return out


def build_text_for(config: PipelineConfig) -> dict:
    """The build-text task on this config's text settings, dataset and store."""
    root = Path(config.dataset.root)
    return build_text_task(config.text, root, config.store, config.dataset.name, config.seed,
                           text_spec(config.text, root))


@flow(name="text", flow_run_name=flow_run_name)
def text_flow(config: PipelineConfig) -> dict:
    """Questions, vocabularies and GloVe: built once per text spec, reused after."""
    with writer_flow_slot(config):  # a deployment run holds the store's writer slot (flows/writer_slot.py)
        summary = build_text_for(config)
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
