"""The text stage: annotations -> vocabularies, encoded splits and the GloVe matrix in the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from configs.schema import StoreConfig, TextConfig
from storage.store import GroupRef, SpecGroup, Store, open_group, open_store
from tasks.text.glove import build_glove_matrix
from tasks.text.glove_cache import cached_glove_matrix
from tasks.text.annotations import SPLITS
from tasks.text.annotations import load_annotations
from tasks.progress import Progress
from tasks.text.vocabulary import QTYPES, Vocabularies, build_vocabularies, encode_split
from tasks.digest import file_sha256

TEXT_VERSION = "hcrn-treebank-v1"  # bump when tokenisation or encoding changes
VOCAB_FILE = "vocab.json"


@dataclass(frozen=True)
class TextSummary:
    ref: GroupRef
    question_vocab_size: int
    answer_vocab_size: int
    glove_found: int
    glove_missing: int
    vocab_path: str  # where the vocabularies live: a blob of the text group, `<store>/<group>/vocab.json`
    glove_array: str | None
    questions: dict[str, int]
    built_now: bool


def annotation_paths(root: Path) -> dict[str, Path]:
    return {split: Path(root) / f"{split}_qa.json" for split in SPLITS}


def text_spec(cfg: TextConfig, root: Path) -> dict:
    """Versioned by the text settings and the annotation and GloVe files' checksums."""
    return {
        "version": TEXT_VERSION,
        "answer_top": cfg.answer_top,
        "word_dim": cfg.word_dim,
        "glove_sha256": file_sha256(cfg.glove_path) if cfg.glove_path else None,
        "glove_skip_malformed": cfg.glove_skip_malformed,
        "annotations": {split: file_sha256(path) for split, path in annotation_paths(root).items()},
    }


def vocab_path(store: Store, ref: GroupRef) -> str:
    return f"{store.location.url}/{ref.path}/{VOCAB_FILE}"


def read_vocabularies(ref: GroupRef) -> Vocabularies:
    """The vocabularies kept with the text group, at the snapshot `ref` reads."""
    data = open_group(ref, mode="r").read_blob(VOCAB_FILE)
    source = f"{ref.location.url}/{ref.path}/{VOCAB_FILE}"
    if data is None:
        raise FileNotFoundError(f"{source} does not exist: run `msvqa text` again")
    return Vocabularies.from_json(data.decode("utf-8"), source)


def _summary(store: Store, group: SpecGroup, built_now: bool) -> TextSummary:
    attrs = group.attrs
    return TextSummary(
        ref=group.ref,
        question_vocab_size=attrs["question_vocab_size"],
        answer_vocab_size=attrs["answer_vocab_size"],
        glove_found=attrs["glove_found"],
        glove_missing=attrs["glove_missing"],
        vocab_path=vocab_path(store, group.ref),
        glove_array=f"{group.ref.path}/glove" if group.has_array("glove") else None,
        questions=attrs["questions"],
        built_now=built_now,
    )


def build_text(cfg: TextConfig, root: Path, store_cfg: StoreConfig, dataset: str, seed: int = 0) -> TextSummary:
    """Build the text group once per spec, in one commit; a complete group is reused."""
    store = open_store(store_cfg)
    spec = text_spec(cfg, root)
    group = store.spec_group(dataset, "text", spec)
    if group.attrs.get("complete"):
        return _summary(store, group, built_now=False)
    records = {split: load_annotations(path) for split, path in annotation_paths(root).items()}
    vocab = build_vocabularies(records["train"], cfg.answer_top)
    # Parse everything before the first write, so a bad file leaves nothing half-written.
    encoded = {split: encode_split(records[split], vocab, training=(split == "train")) for split in SPLITS}
    glove = None
    if cfg.glove_path is not None and cfg.glove_cache is not None:
        # Keyed by the GloVe file and the vocabulary: a rebuilt store reuses the filtered matrix.
        with Progress(f"GloVe scan of {Path(cfg.glove_path).name}", unit="lines read") as progress:
            glove = cached_glove_matrix(cfg.glove_path, vocab.question_words, cfg.word_dim, cfg.glove_cache,
                                        seed=seed, skip_malformed=cfg.glove_skip_malformed, progress=progress)
    elif cfg.glove_path is not None:
        with Progress(f"GloVe scan of {Path(cfg.glove_path).name}", unit="lines read") as progress:
            glove = build_glove_matrix(cfg.glove_path, vocab.question_words, cfg.word_dim, seed=seed,
                                       skip_malformed=cfg.glove_skip_malformed, progress=progress)
    spec_path = group.ref.path

    def write(tx) -> None:
        # The whole group in one commit: readers see it complete or not at all, never half-written, and
        # those reading an older snapshot keep reading theirs.
        tx.delete(spec_path)
        group = tx.spec_group(dataset, "text", spec)
        for split, enc in encoded.items():
            arrays = {
                "questions": enc.questions, "lengths": enc.lengths, "answers": enc.answers,
                "answer_known": enc.answer_known.astype(np.uint8), "video_ids": enc.video_ids,
                "question_ids": enc.question_ids, "qtypes": enc.qtypes.astype(np.int8),
            }
            for name, value in arrays.items():
                shape = value.shape if value.size else (0,) * value.ndim
                group.ensure_array(f"{split}/{name}", shape, str(value.dtype))
                if value.size:
                    group.write(f"{split}/{name}", value)
        if glove is not None:
            group.ensure_array("glove", glove.matrix.shape, "float32")
            group.write("glove", glove.matrix)
        group.write_blob(VOCAB_FILE, vocab.to_json().encode("utf-8"))
        group.update_attrs(
            question_vocab_size=len(vocab.question_token_to_idx),
            answer_vocab_size=len(vocab.answer_token_to_idx),
            glove_found=glove.found if glove else 0,
            glove_missing=len(glove.missing) if glove else len(vocab.question_token_to_idx),
            questions={split: len(enc) for split, enc in encoded.items()},
            qtypes=list(QTYPES),
            complete=True,
        )

    store.transact(write, stage="text", message=f"build {spec_path}",
                   counts={"questions": sum(len(enc) for enc in encoded.values())})
    group = store.open(spec_path)
    return _summary(store, group, built_now=True)
