"""Questions, vocabularies and encoding (tasks/text/vocabulary.py), on inline data and on the real MSVD-QA."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from tasks.text.annotations import QARecord, TextInputError, load_annotations
from tasks.text.vocabulary import QTYPES, Vocabularies, build_vocabularies, encode_split, question_type, tokenize

MSVD_QA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "msvd-qa"

TRAIN = [
    QARecord(id=0, video_id=7, question="What is the man's dog doing?", answer="run"),
    QARecord(id=1, video_id=7, question="who is running?", answer="dog"),
    QARecord(id=2, video_id=9, question="what runs?", answer="dog"),
    QARecord(id=3, video_id=9, question="Is a dog, running?", answer="run"),
    QARecord(id=4, video_id=9, question="where is it?", answer="park"),
]


def write_json(path: Path, items: object) -> Path:
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


# --- tokenisation and question types ---


def test_tokenize_lowercases_drops_last_character_and_splits_treebank_style():
    assert tokenize("What is the man's dog doing?") == ["what", "is", "the", "man", "'s", "dog", "doing"]
    assert tokenize("Is a dog, running?") == ["is", "a", "dog", ",", "running"]
    # the last character goes whatever it is, as in the reference
    assert tokenize("who runs") == ["who", "run"]


def test_question_type_is_first_word_or_other():
    assert question_type("What is it?") == "what"
    assert question_type("where is it?") == "where"
    assert question_type("whom does he see?") == "other"
    assert question_type("is it?") == "other"


# --- vocabularies ---


def test_answer_vocabulary_orders_by_frequency_then_first_appearance():
    vocab = build_vocabularies(TRAIN)
    # run and dog tie at 2; run appears first
    assert vocab.answer_token_to_idx == {"<UNK0>": 0, "<UNK1>": 1, "run": 2, "dog": 3, "park": 4}
    assert build_vocabularies(TRAIN, answer_top=1).answer_token_to_idx == {"<UNK0>": 0, "<UNK1>": 1, "run": 2}


def test_question_vocabulary_lists_training_tokens_in_first_appearance_order():
    vocab = build_vocabularies(TRAIN)
    words = ["<NULL>", "<UNK>", "what", "is", "the", "man", "'s", "dog", "doing", "who", "running", "runs", "a", ",",
             "where", "it"]  # fmt: skip
    assert vocab.question_token_to_idx == {word: index for index, word in enumerate(words)}
    assert vocab.question_words == words
    assert vocab.answer_words == ["<UNK0>", "<UNK1>", "run", "dog", "park"]


def test_vocabularies_json_round_trip_uses_hcrn_keys():
    vocab = build_vocabularies(TRAIN)
    data = json.loads(vocab.to_json())
    assert sorted(data) == ["answer_token_to_idx", "question_answer_token_to_idx", "question_token_to_idx"]
    assert data["question_answer_token_to_idx"] == {"<NULL>": 0, "<UNK>": 1}
    assert Vocabularies.from_json(vocab.to_json()) == vocab


def test_vocabularies_from_json_rejects_bad_input():
    with pytest.raises(TextInputError, match="vocab.json is not valid JSON"):
        Vocabularies.from_json("{", source="vocab.json")
    with pytest.raises(TextInputError, match="'answer_token_to_idx' is missing"):
        Vocabularies.from_json(json.dumps({"question_token_to_idx": {"<NULL>": 0}}))
    bad = {"question_token_to_idx": {"<NULL>": 0, "<UNK>": 2}, "answer_token_to_idx": {"<UNK0>": 0}}
    with pytest.raises(TextInputError, match="indices of 'question_token_to_idx' are not 0..1"):
        Vocabularies.from_json(json.dumps(bad))


# --- encoding ---


def test_encode_split_pads_with_null_and_maps_unknown_words_to_unk():
    vocab = build_vocabularies(TRAIN)
    records = [
        QARecord(id=40, video_id=9, question="who is the cat?", answer="dog"),
        QARecord(id=41, video_id=7, question="what is it?", answer="cat"),
        QARecord(id=42, video_id=3, question="how fast is a dog running?", answer="run"),
    ]
    encoded = encode_split(records, vocab)
    np.testing.assert_array_equal(
        encoded.questions, [[9, 3, 4, 1, 0, 0], [2, 3, 15, 0, 0, 0], [1, 1, 3, 12, 7, 10]]
    )
    assert encoded.questions.dtype == np.int64
    np.testing.assert_array_equal(encoded.lengths, [4, 3, 6])
    # "cat" is no training answer: it gets <UNK1> (the evaluation slot) and answer_known False
    np.testing.assert_array_equal(encoded.answers, [3, 1, 2])
    np.testing.assert_array_equal(encoded.answer_known, [True, False, True])
    np.testing.assert_array_equal(encoded.video_ids, [9, 7, 3])
    np.testing.assert_array_equal(encoded.question_ids, [40, 41, 42])
    assert [QTYPES[code] for code in encoded.qtypes] == ["who", "what", "how"]
    assert encoded.video_index is None
    assert encoded.question_texts == [r.question for r in records]
    assert encoded.answer_texts == ["dog", "cat", "run"]
    assert len(encoded) == 3


def test_encode_split_unknown_training_answer_gets_unk0():
    vocab = build_vocabularies(TRAIN, answer_top=1)
    encoded = encode_split(TRAIN, vocab, training=True)
    np.testing.assert_array_equal(encoded.answers, [2, 0, 0, 2, 0])
    np.testing.assert_array_equal(encoded.answer_known, [True, False, False, True, False])


def test_encode_split_maps_video_ids_to_rows_and_names_missing_video():
    vocab = build_vocabularies(TRAIN)
    encoded = encode_split(TRAIN, vocab, {7: 1, 9: 0})
    np.testing.assert_array_equal(encoded.video_index, [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(encoded.video_ids, [7, 7, 9, 9, 9])
    with pytest.raises(TextInputError, match=r"record 2 \(question id 2\) refers to video 9"):
        encode_split(TRAIN, vocab, {7: 0})


# --- loading and validation ---


def test_json_and_csv_forms_load_to_the_same_records(tmp_path):
    items = [
        {"answer": "dog", "id": 30, "question": "what runs, fast?", "video_id": 12},
        {"answer": "man", "id": 31, "question": "who cooks?", "video_id": 5},
    ]
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(
        'video,width,height,question,answer,qid\n12,480,360,"what runs, fast",dog,30\n5,640,480,who cooks,man,31\n',
        encoding="utf-8",
    )
    expected = [QARecord(30, 12, "what runs, fast?", "dog"), QARecord(31, 5, "who cooks?", "man")]
    assert load_annotations(write_json(tmp_path / "train_qa.json", items)) == expected
    assert load_annotations(csv_path) == expected


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"answer": "a", "id": 0, "question": "who?", "video_id": 1}, {"answer": "a", "id": 1, "video_id": 1}],
         "record 1 has no 'question' key"),
        ([{"answer": "a", "id": "0", "question": "who?", "video_id": 1}], "record 0: 'id' is '0', expected int"),
        ([{"answer": "a", "id": 0, "question": "who?", "video_id": True}], "record 0: 'video_id' is True"),
        ([{"answer": 3, "id": 0, "question": "who?", "video_id": 1}], "record 0: 'answer' is 3, expected str"),
        ([{"answer": "a", "id": 0, "question": "who?", "video_id": 1}] * 2
         + [{"answer": "a", "id": 2, "question": "?", "video_id": 1}], "record 2 has an empty question '\\?'"),
        ([{"answer": " ", "id": 0, "question": "who?", "video_id": 1}], "record 0 has an empty answer"),
        (["who?"], "record 0 is a str"),
        ({"answer": "a"}, "holds a JSON dict, expected a list"),
    ],
)  # fmt: skip
def test_bad_json_records_name_file_and_record(tmp_path, items, message):
    path = write_json(tmp_path / "bad_qa.json", items)
    with pytest.raises(TextInputError, match=f"bad_qa.json.*{message}"):
        load_annotations(path)


def test_not_json_names_file_and_position(tmp_path):
    path = tmp_path / "train_qa.json"
    path.write_text('[{"answer": "a",\n oops}]', encoding="utf-8")
    with pytest.raises(TextInputError, match=r"train_qa.json is not valid JSON: .* line 2, column 2"):
        load_annotations(path)


def test_bad_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "train_qa.json"
    path.write_bytes(b'[{"answer": "a", "id": 0,\n"question": "who \xff?", "video_id": 1}]')
    with pytest.raises(TextInputError, match=r"train_qa.json: line 2 is not valid UTF-8"):
        load_annotations(path)


def test_missing_file_is_a_text_input_error(tmp_path):
    with pytest.raises(TextInputError, match="absent_qa.json cannot be read"):
        load_annotations(tmp_path / "absent_qa.json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("video,question,answer\n1,who,a\n", "the CSV header lacks the column\\(s\\) qid"),
        ("video,question,answer,qid\n1,who,a,0\n2,who,a,x\n",
         "record 1 \\(line 3\\): 'qid' is 'x', expected an integer"),
        ("video,question,answer,qid\n1,who,a\n", "record 0 \\(line 2\\) does not have the header's number of fields"),
        ("video,question,answer,qid\n1,,a,0\n", "record 0 \\(line 2\\) has an empty question"),
    ],
)
def test_bad_csv_records_name_file_record_and_line(tmp_path, text, message):
    path = tmp_path / "test.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TextInputError, match=f"test.csv: {message}"):
        load_annotations(path)


# --- the real MSVD-QA ---

needs_msvd_qa = pytest.mark.skipif(not MSVD_QA.is_dir(), reason=f"real MSVD-QA not found at {MSVD_QA}")


@pytest.fixture(scope="module")
def msvd_splits() -> dict[str, list[QARecord]]:
    return {split: load_annotations(MSVD_QA / f"{split}_qa.json") for split in ("train", "val", "test")}


@pytest.mark.realdata
@needs_msvd_qa
def test_real_msvd_qa_vocabularies_and_question_types(msvd_splits):
    vocab = build_vocabularies(msvd_splits["train"])
    assert len(vocab.answer_token_to_idx) == 1854
    assert len(vocab.question_token_to_idx) == 4800
    test = encode_split(msvd_splits["test"], vocab)
    counts = Counter(QTYPES[code] for code in test.qtypes)
    assert counts == {"what": 8149, "who": 4552, "how": 370, "when": 58, "where": 28}
    assert len(test) == 13157 and test.questions.shape[0] == 13157


@pytest.mark.realdata
@needs_msvd_qa
def test_real_msvd_qa_first_word_baseline_scores_18_86_percent(msvd_splits):
    answers_by_first_word: dict[str, Counter] = defaultdict(Counter)
    for record in msvd_splits["train"]:
        answers_by_first_word[tokenize(record.question)[0]][record.answer] += 1
    guess = {word: counts.most_common(1)[0][0] for word, counts in answers_by_first_word.items()}
    test = msvd_splits["test"]
    accuracy = sum(guess.get(tokenize(r.question)[0]) == r.answer for r in test) / len(test)
    assert round(accuracy, 4) == 0.1886


@pytest.mark.realdata
@needs_msvd_qa
def test_real_msvd_qa_csv_form_matches_json_form(msvd_splits):
    for split, records in msvd_splits.items():
        assert load_annotations(MSVD_QA / "hqga-csv" / f"{split}.csv") == records, split
