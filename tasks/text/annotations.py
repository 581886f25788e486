"""MSVD-QA annotation files (`*_qa.json`, or HQGA's CSV of the same questions) read into checked records."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from configs.errors import UserError

SPLITS = ("train", "val", "test")  # one annotation file each: <split>_qa.json
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
