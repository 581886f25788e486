"""MSVD-QA questions: loading, HCRN/DualVGR tokenisation, vocabularies and integer encoding.

Everything here is a pure function returning Python or numpy objects; storing them is someone else's job.
The tokenisation and vocabularies reproduce the HCRN preprocessing for MSVD-QA, which DualVGR reuses.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from configs.errors import UserError

QUESTION_NULL = "<NULL>"
QUESTION_UNK = "<UNK>"
ANSWER_UNK_TRAIN = "<UNK0>"  # the reference's slot for unknown training answers
ANSWER_UNK_EVAL = "<UNK1>"  # and for unknown val/test answers
QTYPES: tuple[str, ...] = ("what", "who", "how", "when", "where", "other")
CSV_COLUMNS = ("video", "question", "answer", "qid")


class TextInputError(UserError, ValueError):
    """An annotation or vocabulary file that cannot be used; the message names the file and record."""


@dataclass(frozen=True)
class QARecord:
    """One question as in MSVD-QA's `*_qa.json`: `id` is the question id, `video_id` the clip number."""

    id: int
    video_id: int
    question: str
    answer: str


def _check_record(item: object, where: str) -> QARecord:
    """Validate one JSON-shaped record; `where` names the file and record for the error message."""
    if not isinstance(item, dict):
        raise TextInputError(
            f"{where} is a {type(item).__name__}, expected an object with answer, id, question, video_id."
        )
    for key in ("answer", "id", "question", "video_id"):
        if key not in item:
            raise TextInputError(f"{where} has no {key!r} key.")
    for key, kind in (("answer", str), ("question", str), ("id", int), ("video_id", int)):
        value = item[key]
        # bool is an int subclass, but true/false is never a valid id
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TextInputError(f"{where}: {key!r} is {value!r}, expected {kind.__name__}.")
    # The tokeniser drops the last character (the question mark), so a question needs more than that.
    if not item["question"][:-1].strip():
        raise TextInputError(f"{where} has an empty question {item['question']!r}.")
    if not item["answer"].strip():
        raise TextInputError(f"{where} has an empty answer.")
    return QARecord(id=item["id"], video_id=item["video_id"], question=item["question"], answer=item["answer"])


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TextInputError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start}).") from None


def _load_json(path: Path, text: str) -> list[QARecord]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise TextInputError(f"{path} is not valid JSON: {exc.msg} at {where}.") from None
    if not isinstance(items, list):
        raise TextInputError(f"{path} holds a JSON {type(items).__name__}, expected a list of question records.")
    return [_check_record(item, f"{path}: record {index}") for index, item in enumerate(items)]


def _load_csv(path: Path, text: str) -> list[QARecord]:
    """HQGA's CSV form: the question has no question mark, `qid` is the id and `video` the video id."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    absent = [name for name in CSV_COLUMNS if name not in (reader.fieldnames or [])]
    if absent:
        raise TextInputError(f"{path}: the CSV header lacks the column(s) {', '.join(absent)}.")
    records = []
    for index, row in enumerate(reader):
        where = f"{path}: record {index} (line {reader.line_num})"
        if None in row or any(row[name] is None for name in CSV_COLUMNS):
            raise TextInputError(f"{where} does not have the header's number of fields.")
        item: dict[str, object] = {"answer": row["answer"], "question": row["question"] + "?"}
        for key, column in (("id", "qid"), ("video_id", "video")):
            try:
                item[key] = int(row[column])
            except ValueError:
                raise TextInputError(f"{where}: {column!r} is {row[column]!r}, expected an integer.") from None
        records.append(_check_record(item, where))
    return records


def load_annotations(path: Path) -> list[QARecord]:
    """Read an MSVD-QA `*_qa.json`, or HQGA's CSV of the same questions (`.csv`), into records in file order."""
    path = Path(path)
    try:
        text = _read_utf8(path)
    except OSError as exc:
        raise TextInputError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    if path.suffix.lower() == ".csv":
        return _load_csv(path, text)
    return _load_json(path, text)


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
