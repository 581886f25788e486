"""MSVD-QA questions: HCRN/DualVGR tokenisation, question types, vocabularies and integer encoding.

Everything here is a pure function returning Python or numpy objects; storing them is someone else's job.
The tokenisation and vocabularies reproduce the HCRN preprocessing for MSVD-QA, which DualVGR reuses.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tasks.text.annotations import QARecord, TextInputError

QUESTION_NULL = "<NULL>"
QUESTION_UNK = "<UNK>"
ANSWER_UNK_TRAIN = "<UNK0>"  # the reference's slot for unknown training answers
ANSWER_UNK_EVAL = "<UNK1>"  # and for unknown val/test answers
QTYPES: tuple[str, ...] = ("what", "who", "how", "when", "where", "other")


def tokenize(question: str) -> list[str]:
    """HCRN's MSVD-QA tokens: lower-case, drop the last character (the '?'), NLTK's Treebank word tokenizer.

    preserve_line=True skips Punkt sentence splitting (which needs downloaded data); MSVD-QA questions are one
    sentence without inner periods, so the tokens equal the reference's.
    """
    # Imported here: importing nltk costs about 180 MB and a second, which GloVe-only users should not pay.
    from nltk.tokenize import word_tokenize

    return word_tokenize(question.lower()[:-1], preserve_line=True)


def question_type(question: str) -> str:
    """The question's first word when it is what/who/how/when/where, else "other"."""
    words = question.lower().split(maxsplit=1)
    first = words[0] if words else ""
    return first if first in QTYPES[:-1] else "other"


@dataclass(frozen=True)
class Vocabularies:
    """Token-to-index maps, with the key names of HCRN's `*_vocab.json`."""

    question_token_to_idx: dict[str, int]
    answer_token_to_idx: dict[str, int]
    # The reference writes this constant map and never fills it; kept so the JSON matches.
    question_answer_token_to_idx: dict[str, int] = field(
        default_factory=lambda: {QUESTION_NULL: 0, QUESTION_UNK: 1}
    )

    @property
    def question_words(self) -> list[str]:
        """Question tokens in index order (row order of the word-embedding matrix)."""
        return sorted(self.question_token_to_idx, key=self.question_token_to_idx.__getitem__)

    @property
    def answer_words(self) -> list[str]:
        """Answers in class-index order."""
        return sorted(self.answer_token_to_idx, key=self.answer_token_to_idx.__getitem__)

    def to_json(self) -> str:
        return json.dumps(
            {
                "question_token_to_idx": self.question_token_to_idx,
                "answer_token_to_idx": self.answer_token_to_idx,
                "question_answer_token_to_idx": self.question_answer_token_to_idx,
            },
            indent=4,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "vocabulary JSON") -> Vocabularies:
        """Parse `to_json()` output or HCRN's vocab file; `source` names the file in error messages."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TextInputError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}.") from None
        if not isinstance(data, dict):
            raise TextInputError(f"{source} holds a JSON {type(data).__name__}, expected an object.")
        maps = {}
        for key in ("question_token_to_idx", "answer_token_to_idx", "question_answer_token_to_idx"):
            default = {QUESTION_NULL: 0, QUESTION_UNK: 1} if key == "question_answer_token_to_idx" else None
            value = data.get(key, default)
            if not isinstance(value, dict) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in value.values()
            ):
                raise TextInputError(f"{source}: {key!r} is missing or not a map of token to integer index.")
            if sorted(value.values()) != list(range(len(value))):
                raise TextInputError(f"{source}: the indices of {key!r} are not 0..{len(value) - 1} each once.")
            maps[key] = value
        return cls(**maps)


def build_vocabularies(train: Sequence[QARecord], answer_top: int = 4000) -> Vocabularies:
    """The reference's MSVD-QA vocabularies, built from the training split only.

    Answers: <UNK0>, <UNK1>, then the `answer_top` most frequent training answers, most frequent first and ties
    in order of first appearance (Counter.most_common). Questions: <NULL>, <UNK>, then every training token in
    order of first appearance.
    """
    answer_counts = Counter(record.answer for record in train)
    answer_token_to_idx = {ANSWER_UNK_TRAIN: 0, ANSWER_UNK_EVAL: 1}
    for answer, _ in answer_counts.most_common(answer_top):
        answer_token_to_idx[answer] = len(answer_token_to_idx)
    question_token_to_idx = {QUESTION_NULL: 0, QUESTION_UNK: 1}
    for record in train:
        for token in tokenize(record.question):
            question_token_to_idx.setdefault(token, len(question_token_to_idx))
    return Vocabularies(question_token_to_idx=question_token_to_idx, answer_token_to_idx=answer_token_to_idx)


@dataclass(frozen=True)
class EncodedSplit:
    """One split as arrays, row i = record i. Unknown answers keep a row (answer_known False) so they count wrong."""

    questions: np.ndarray  # [N, Lmax] int64, padded with <NULL> = 0
    lengths: np.ndarray  # [N] int64, tokens per question
    answers: np.ndarray  # [N] int64 answer class; unknown answers get the <UNK0>/<UNK1> slot
    answer_known: np.ndarray  # [N] bool, the answer is in the vocabulary
    video_ids: np.ndarray  # [N] int64 MSVD video ids as in the annotations
    video_index: np.ndarray | None  # [N] int64 rows from `video_ids_to_index`, None when none was given
    question_ids: np.ndarray  # [N] int64 record ids
    qtypes: np.ndarray  # [N] int8 index into QTYPES
    question_texts: list[str]
    answer_texts: list[str]

    def __len__(self) -> int:
        return len(self.question_texts)


def encode_split(
    records: Sequence[QARecord],
    vocab: Vocabularies,
    video_ids_to_index: Mapping[int, int] | None = None,
    *,
    training: bool = False,
) -> EncodedSplit:
    """Encode questions and answers with `vocab`; question words outside it become <UNK>.

    Like the reference, an answer outside the vocabulary gets <UNK0> in the training split (`training=True`) and
    <UNK1> otherwise. A video id absent from `video_ids_to_index` raises TextInputError.
    """
    question_vocab = vocab.question_token_to_idx
    answer_vocab = vocab.answer_token_to_idx
    unk_question = question_vocab[QUESTION_UNK]
    unk_answer = answer_vocab[ANSWER_UNK_TRAIN if training else ANSWER_UNK_EVAL]
    encoded = [[question_vocab.get(token, unk_question) for token in tokenize(r.question)] for r in records]
    lengths = np.array([len(tokens) for tokens in encoded], dtype=np.int64)
    questions = np.full((len(records), int(lengths.max(initial=0))), question_vocab[QUESTION_NULL], dtype=np.int64)
    for row, tokens in enumerate(encoded):
        questions[row, : len(tokens)] = tokens
    answer_known = np.array([r.answer in answer_vocab for r in records], dtype=bool)
    answers = np.array([answer_vocab.get(r.answer, unk_answer) for r in records], dtype=np.int64)
    video_index = None
    if video_ids_to_index is not None:
        rows = []
        for index, r in enumerate(records):
            if r.video_id not in video_ids_to_index:
                raise TextInputError(
                    f"record {index} (question id {r.id}) refers to video {r.video_id}, which has no entry in the"
                    " video index."
                )
            rows.append(video_ids_to_index[r.video_id])
        video_index = np.array(rows, dtype=np.int64)
    return EncodedSplit(
        questions=questions,
        lengths=lengths,
        answers=answers,
        answer_known=answer_known,
        video_ids=np.array([r.video_id for r in records], dtype=np.int64),
        video_index=video_index,
        question_ids=np.array([r.id for r in records], dtype=np.int64),
        qtypes=np.array([QTYPES.index(question_type(r.question)) for r in records], dtype=np.int8),
        question_texts=[r.question for r in records],
        answer_texts=[r.answer for r in records],
    )
