"""The streaming GloVe builder (tasks/text/glove.py) on small files with the quirks of glove.840B."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tasks.text import glove, glove_cache
from tasks.text.glove import build_glove_matrix
from tasks.text.glove_cache import cached_glove_matrix
from tasks.text.annotations import TextInputError

# "The" comes before "the", "cat" is duplicated, "at home" is a token with a space, "Dog"/"DOG" are case variants.
QUIRKY = (
    "The 9 9 9\n"
    "cat 1 2 3\n"
    "at home 4 5 6\n"
    "the 0.1 0.2 0.3\n"
    "cat 7 7 7\n"
    "Dog 0.5 0.5 0.5\n"
    "DOG 0.25 0.25 0.25\n"
    "\u00c9mile -1 -2 -3\n"
)
VOCAB = ["<NULL>", "<UNK>", "the", "cat", "at home", "dog", "at", "\u00e9mile", "absent"]
FOUND_ROWS = {
    2: [0.1, 0.2, 0.3],  # the exact "the" beats the earlier "The"
    3: [1, 2, 3],  # the first "cat"
    4: [4, 5, 6],
    5: [0.5, 0.5, 0.5],  # the first case variant of "dog"
    7: [-1, -2, -3],
}
MISSING_ROWS = [1, 6, 8]  # <UNK>, "at" (only inside "at home"), "absent"


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def expected_random_rows(found: dict[int, list[float]], count: int, dim: int, seed: int) -> np.ndarray:
    """The documented initialisation: normal(0, std of the found values) from default_rng(seed)."""
    std = np.array(list(found.values()), dtype=np.float32).std()
    return np.random.default_rng(seed).normal(0.0, float(std), size=(count, dim)).astype(np.float32)


def test_quirky_file_gives_exact_rows_and_seeded_rows_for_missing_words(tmp_path):
    path = write(tmp_path / "vectors.txt", QUIRKY)
    result = build_glove_matrix(path, VOCAB, 3, seed=5)
    assert result.matrix.dtype == np.float32 and result.matrix.shape == (9, 3)
    np.testing.assert_array_equal(result.matrix[0], [0, 0, 0])  # <NULL>
    for row, vector in FOUND_ROWS.items():
        np.testing.assert_array_equal(result.matrix[row], np.array(vector, dtype=np.float32))
    np.testing.assert_array_equal(result.matrix[MISSING_ROWS], expected_random_rows(FOUND_ROWS, 3, 3, seed=5))
    assert result.found == 5
    assert result.missing == ["<UNK>", "at", "absent"]
    assert result.matched_by_case == ["dog", "\u00e9mile"]
    assert result.lines_read == 8 and result.skipped_lines == 0
    assert result.sha256 == hashlib.sha256(QUIRKY.encode("utf-8")).hexdigest()
    assert result.from_cache is False


def test_missing_word_rows_depend_on_the_seed_only(tmp_path):
    path = write(tmp_path / "vectors.txt", QUIRKY)
    first = build_glove_matrix(path, VOCAB, 3, seed=1).matrix
    np.testing.assert_array_equal(build_glove_matrix(path, VOCAB, 3, seed=1).matrix, first)
    other = build_glove_matrix(path, VOCAB, 3, seed=2).matrix
    assert not np.array_equal(other[MISSING_ROWS], first[MISSING_ROWS])
    np.testing.assert_array_equal(other[list(FOUND_ROWS)], first[list(FOUND_ROWS)])


def test_gz_and_zip_inputs_give_the_plain_file_matrix_and_hash_the_stored_bytes(tmp_path):
    plain = build_glove_matrix(write(tmp_path / "vectors.txt", QUIRKY), VOCAB, 3)
    gz_path = tmp_path / "vectors.txt.gz"
    gz_path.write_bytes(gzip.compress(QUIRKY.encode("utf-8")))
    zip_path = tmp_path / "vectors.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("glove.840B.300d.txt", QUIRKY)
    for packed in (gz_path, zip_path):
        result = build_glove_matrix(packed, VOCAB, 3)
        np.testing.assert_array_equal(result.matrix, plain.matrix)
        assert result.lines_read == 8
        assert result.sha256 == hashlib.sha256(packed.read_bytes()).hexdigest()


def test_zip_with_several_text_files_is_rejected(tmp_path):
    zip_path = tmp_path / "vectors.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("a.txt", "a 1\n")
        archive.writestr("b.txt", "b 1\n")
    with pytest.raises(TextInputError, match="should hold exactly one .txt file, but holds a.txt, b.txt"):
        build_glove_matrix(zip_path, ["a"], 1)


def test_block_boundaries_crlf_trailing_blanks_and_no_final_newline(tmp_path, monkeypatch):
    text = "cat 1 2 3\r\nthe 0.1 0.2 0.3 \nat home 4 5 6\r\nDog 0.5 0.5 0.5"
    path = write(tmp_path / "vectors.txt", text)
    monkeypatch.setattr(glove, "BLOCK_BYTES", 5)  # lines straddle blocks and are longer than one
    result = build_glove_matrix(path, VOCAB, 3)
    for row, vector in FOUND_ROWS.items():
        if row != 7:
            np.testing.assert_array_equal(result.matrix[row], np.array(vector, dtype=np.float32))
    assert result.lines_read == 4 and result.found == 4


def test_short_line_raises_with_its_line_number_or_is_skipped(tmp_path):
    path = write(tmp_path / "vectors.txt", "cat 1 2 3\nthe 1 2 3\ndog 1 2\nbird 4 5 6\n")
    with pytest.raises(TextInputError, match=r"vectors.txt: line 3 has 3 fields, expected 4"):
        build_glove_matrix(path, ["cat", "bird"], 3)
    result = build_glove_matrix(path, ["cat", "bird"], 3, skip_malformed=True)
    assert result.skipped_lines == 1 and result.lines_read == 4
    np.testing.assert_array_equal(result.matrix, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))


@pytest.mark.parametrize("bad_value", ["x", "nan", "1e999", ""])
def test_bad_value_in_a_kept_line_raises_with_its_line_number_or_is_skipped(tmp_path, bad_value):
    path = write(tmp_path / "vectors.txt", f"cat 1 2 3\ndog 1 {bad_value} 3\n")
    if bad_value == "":  # an empty field is a doubled space: a kept line with a bad value all the same
        path = write(tmp_path / "vectors.txt", "cat 1 2 3\ndog 1  3\n")
    with pytest.raises(TextInputError, match="vectors.txt: line 2 has a value that is not a finite number"):
        build_glove_matrix(path, ["dog"], 3)
    assert build_glove_matrix(path, ["dog", "cat"], 3, skip_malformed=True).skipped_lines == 1


def test_values_of_lines_not_kept_are_not_parsed(tmp_path):
    path = write(tmp_path / "vectors.txt", "cat 1 2 3\ndog 1 x 3\n")
    result = build_glove_matrix(path, ["cat"], 3)
    assert result.skipped_lines == 0
    np.testing.assert_array_equal(result.matrix, np.array([[1, 2, 3]], dtype=np.float32))


@pytest.mark.parametrize(("dim", "fields"), [(4, 4), (2, 4)])
def test_wrong_dim_fails_on_line_one_even_when_skipping(tmp_path, dim, fields):
    path = write(tmp_path / "vectors.txt", "cat 1 2 3\ndog 4 5 6\n")
    message = f"line 1 has {fields} fields, .* token and {dim} values \\(is dim right\\?\\)"
    with pytest.raises(TextInputError, match=message):
        build_glove_matrix(path, ["cat"], dim, skip_malformed=True)


def test_progress_reports_lines_read(tmp_path, monkeypatch):
    path = write(tmp_path / "vectors.txt", QUIRKY)
    monkeypatch.setattr(glove, "BLOCK_BYTES", 40)
    seen: list[int] = []
    build_glove_matrix(path, VOCAB, 3, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 8 and len(seen) > 1


def test_bad_arguments(tmp_path):
    path = write(tmp_path / "vectors.txt", QUIRKY)
    with pytest.raises(ValueError, match="lists 'cat' twice \\(rows 0 and 2\\)"):
        build_glove_matrix(path, ["cat", "dog", "cat"], 3)
    with pytest.raises(TextInputError, match="GloVe file .*absent.txt does not exist"):
        build_glove_matrix(tmp_path / "absent.txt", ["cat"], 3)


def test_cache_returns_the_same_result_and_rebuilds_when_the_file_changes(tmp_path, monkeypatch):
    path = write(tmp_path / "vectors.txt", QUIRKY)
    cache = tmp_path / "cache"
    first = cached_glove_matrix(path, VOCAB, 3, cache, seed=3)
    assert first.from_cache is False
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".npy"]

    def fail(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(glove_cache, "build_glove_matrix", fail)
    second = cached_glove_matrix(path, VOCAB, 3, cache, seed=3)
    assert second.from_cache is True
    np.testing.assert_array_equal(second.matrix, first.matrix)
    assert (second.found, second.missing, second.matched_by_case, second.lines_read, second.sha256) == (
        first.found, first.missing, first.matched_by_case, first.lines_read, first.sha256,
    )  # fmt: skip
    with pytest.raises(AssertionError, match="the cache was not used"):
        cached_glove_matrix(path, VOCAB, 3, cache, seed=4)  # another seed is another entry
    monkeypatch.undo()

    write(path, QUIRKY + "absent 8 8 8\n")
    rebuilt = cached_glove_matrix(path, VOCAB, 3, cache, seed=3)
    assert rebuilt.from_cache is False
    np.testing.assert_array_equal(rebuilt.matrix[8], np.array([8, 8, 8], dtype=np.float32))


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    path = write(tmp_path / "vectors.txt", QUIRKY)
    cache = tmp_path / "cache"
    first = cached_glove_matrix(path, VOCAB, 3, cache)
    next(cache.glob("*.json")).write_text("{", encoding="utf-8")
    again = cached_glove_matrix(path, VOCAB, 3, cache)
    assert again.from_cache is False
    np.testing.assert_array_equal(again.matrix, first.matrix)
    assert cached_glove_matrix(path, VOCAB, 3, cache).from_cache is True
