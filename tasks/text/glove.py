"""GloVe word vectors for a vocabulary, streamed from the text file without loading it.

The file (plain, `.gz`, or a `.zip` holding one text file) is read once in 1 MiB blocks; only rows of vocabulary
words are parsed, so memory stays at the block plus the [V, dim] matrix whatever the file's size. It handles the
quirks of glove.840B.300d.txt: tokens containing spaces (the last `dim` fields are the vector, the rest is the
token), duplicate tokens (the first occurrence wins) and case variants (see `build_glove_matrix`).
"""

from __future__ import annotations

import gzip
import threading
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tasks.digest import sha256_uncached
from tasks.text.annotations import TextInputError
from tasks.text.vocabulary import QUESTION_NULL

BLOCK_BYTES = 1 << 20  # small enough to stay in CPU cache for the numpy scans, large enough to amortise them
NEWLINE, SPACE = 10, 32


@dataclass(frozen=True)
class GloveResult:
    """The embedding matrix (row i = vocabulary word i) and what the build saw."""

    matrix: np.ndarray  # float32 [V, dim]
    found: int  # vocabulary words given a vector from the file (exactly or by case)
    missing: list[str]  # words absent from the file, given the seeded random initialisation
    skipped_lines: int  # malformed lines skipped (skip_malformed=True)
    lines_read: int
    sha256: str  # of the file as stored on disk
    matched_by_case: list[str] = field(default_factory=list)  # found only through a different-case token
    from_cache: bool = False


class _BackgroundSha256:
    """Hashes the file in a thread while the main thread parses it: hashlib releases the GIL on large updates,
    so on a second core the hash costs no wall time. `stop()` ends it early when the build fails."""

    def __init__(self, path: Path) -> None:
        self._stop = threading.Event()
        self._digest = ""
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True, name="glove-sha256")
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._digest = sha256_uncached(path, self._stop)
        except OSError as exc:
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise TextInputError(f"cannot read {self._error.filename}: {self._error.strerror}.")
        return self._digest

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def _open_decompressed(path: Path) -> Iterator[BinaryIO]:
    """The file's text as a binary stream: plain, gzip (`.gz`) or the single text member of a `.zip`."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise TextInputError(f"{path} is not a readable zip archive.") from None
        with archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            texts = [info for info in members if info.filename.lower().endswith(".txt")] or members
            if len(texts) != 1:
                names = ", ".join(info.filename for info in members) or "nothing"
                raise TextInputError(f"{path} should hold exactly one .txt file, but holds {names}.")
            with archive.open(texts[0]) as stream:
                yield stream
    elif suffix == ".gz":
        with gzip.open(path, "rb") as stream:
            yield stream
    else:
        with open(path, "rb", buffering=0) as stream:
            yield stream


def _read_blocks(stream: BinaryIO, path: Path) -> Iterator[bytes]:
    """Blocks of whole lines, each ending with a newline (one is added to an unterminated last line)."""
    rest = b""
    while True:
        try:
            block = stream.read(BLOCK_BYTES)
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:  # gzip raises BadGzipFile, an OSError
            raise TextInputError(f"{path} cannot be decompressed: {exc}.") from None
        if not block:
            break
        block = rest + block if rest else block
        end = block.rfind(b"\n") + 1
        if end == 0:  # a line longer than a block
            rest = block
            continue
        rest = block[end:]
        yield block if end == len(block) else block[:end]
    if rest:
        yield rest + b"\n"


def _unicode_lower(token: bytes) -> bytes:
    # bytes.lower() only folds ASCII; the vocabulary was lower-cased as str
    return token.lower() if token.isascii() else token.decode("utf-8", "replace").lower().encode("utf-8")


class _VectorCollector:
    """Keeps the vectors the vocabulary needs: exact matches, and the first same-when-lower-cased token per word."""

    def __init__(self, vocab: Sequence[str], dim: int, zero_words: Collection[str]) -> None:
        self.dim = dim
        self.rows = np.zeros((len(vocab), dim), dtype=np.float32)
        self.exact_found = np.zeros(len(vocab), dtype=bool)
        self.exact: dict[bytes, int] = {}  # tokens still awaited; a hit removes its entry, so the first wins
        self.by_lower: dict[bytes, list[int]] = {}  # lower-cased keys still awaiting a case-variant candidate
        self.case_vectors: dict[bytes, np.ndarray] = {}
        for index, word in enumerate(vocab):
            if word in zero_words:
                continue
            token = word.encode("utf-8")
            if token in self.exact:
                raise ValueError(f"the vocabulary lists {word!r} twice (rows {self.exact[token]} and {index}).")
            self.exact[token] = index
            self.by_lower.setdefault(_unicode_lower(token), []).append(index)

    def take(self, token: bytes, vector: np.ndarray) -> None:
        index = self.exact.pop(token, None)
        if index is not None:
            self.rows[index] = vector
            self.exact_found[index] = True
        key = _unicode_lower(token)
        if key in self.by_lower:
            self.case_vectors[key] = vector
            del self.by_lower[key]


def _parse_vector(fields: list[bytes]) -> np.ndarray | None:
    """float64 values of the fields, or None when one is not a finite number."""
    try:
        vector = np.array([float(value) for value in fields], dtype=np.float64)
    except ValueError:
        return None
    return vector if np.isfinite(vector).all() else None


def _block_lines(block: bytes) -> tuple[list[int], list[int], list[int]]:
    """Per line of `block`: start, position of its newline, and number of spaces.

    Counted with numpy because counting spaces line by line in Python costs more than the rest of the build.
    """
    data = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(data == NEWLINE)
    starts = np.empty_like(newlines)
    starts[0] = 0
    starts[1:] = newlines[:-1] + 1
    space_counts = np.add.reduceat((data == SPACE).view(np.uint8), starts, dtype=np.int64)
    return starts.tolist(), newlines.tolist(), space_counts.tolist()


def build_glove_matrix(
    path: Path,
    vocab: Sequence[str],
    dim: int,
    *,
    seed: int = 0,
    skip_malformed: bool = False,
    zero_words: Collection[str] = (QUESTION_NULL,),
    progress: Callable[[int], None] | None = None,
) -> GloveResult:
    """Row i of the result is the GloVe vector of `vocab[i]`, read from the text file at `path`.

    Matching: a token equal to the word wins wherever it is in the file; a word with no equal token takes the
    first token equal to it when both are lower-cased (vocab "the", file only "The"). Duplicate tokens: the first
    occurrence counts. `zero_words` (default <NULL>) get zero rows. Every other absent word gets
    `normal(0, s)` values, s being the standard deviation of all found values (1.0 if none is found), drawn from
    `np.random.default_rng(seed)` in vocabulary order: the same inputs give the same matrix.

    Validation: line 1 must have exactly dim + 1 fields (this catches a wrong `dim`); a later line with fewer, or
    a kept line whose values are not finite numbers, raises TextInputError naming the line, or is counted in
    `skipped_lines` when `skip_malformed`. Values of lines that are not kept are not parsed, for speed.
    `progress`, if given, is called with the number of lines read so far after each 1 MiB block.
    """
    path = Path(path)
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}.")
    if not path.is_file():
        raise TextInputError(f"GloVe file {path} does not exist.")
    collector = _VectorCollector(vocab, dim, set(zero_words))
    hashing = _BackgroundSha256(path)
    try:
        with _open_decompressed(path) as stream:
            sha256, lines_read, skipped = _scan(stream, path, dim, collector, skip_malformed, progress, hashing)
    finally:
        hashing.stop()
    return _finish(collector, vocab, set(zero_words), seed, skipped, lines_read, sha256)


def _scan(
    stream: BinaryIO,
    path: Path,
    dim: int,
    collector: _VectorCollector,
    skip_malformed: bool,
    progress: Callable[[int], None] | None,
    hashing: _BackgroundSha256,
) -> tuple[str, int, int]:
    """Feed every wanted line of `stream` to `collector`; returns (sha256, lines read, lines skipped)."""
    skipped = 0
    lines_read = 0

    def malformed(line_number: int, why: str) -> None:
        nonlocal skipped
        if not skip_malformed:
            raise TextInputError(f"{path}: line {line_number} {why}.")
        skipped += 1

    wanted, by_lower, take = collector.exact, collector.by_lower, collector.take  # locals: this loop is hot
    for block in _read_blocks(stream, path):
        starts, ends, space_counts = _block_lines(block)
        for offset, (start, end, spaces) in enumerate(zip(starts, ends, space_counts)):
            if spaces == dim:  # the common case: a space-free token and dim values
                first_space = block.find(b" ", start, end)
                token = block[start:first_space]
                if token in wanted or (by_lower and _unicode_lower(token) in by_lower):
                    vector = _parse_vector(block[first_space + 1 : end].split(b" "))
                    if vector is None:
                        malformed(lines_read + offset + 1, "has a value that is not a finite number")
                    else:
                        take(token, vector)
                continue
            # Rare lines: trailing blanks or CR, a token containing spaces, or too few fields.
            line = block[start:end].rstrip(b" \r")
            fields = line.rsplit(b" ", dim)
            line_number = lines_read + offset + 1
            if line_number == 1 and (len(fields) != dim + 1 or b" " in fields[0]):
                raise TextInputError(
                    f"{path}: line 1 has {line.count(b' ') + 1 if line else 0} fields, but the first line must be"
                    f" a token and {dim} values (is dim right?)."
                )
            if len(fields) != dim + 1:
                malformed(line_number, f"has {line.count(b' ') + 1 if line else 0} fields, expected {dim + 1}")
                continue
            token = fields[0]
            if token in wanted or (by_lower and _unicode_lower(token) in by_lower):
                vector = _parse_vector(fields[1:])
                if vector is None:
                    malformed(line_number, "has a value that is not a finite number")
                else:
                    take(token, vector)
        lines_read += len(starts)
        if progress is not None:
            progress(lines_read)
    return hashing.result(), lines_read, skipped


def _finish(
    collector: _VectorCollector,
    vocab: Sequence[str],
    zero_words: Collection[str],
    seed: int,
    skipped: int,
    lines_read: int,
    sha256: str,
) -> GloveResult:
    matrix = collector.rows
    found = collector.exact_found.copy()
    matched_by_case = []
    for index, word in enumerate(vocab):
        if found[index] or word in zero_words:
            continue
        vector = collector.case_vectors.get(_unicode_lower(word.encode("utf-8")))
        if vector is not None:
            matrix[index] = vector
            found[index] = True
            matched_by_case.append(word)
    missing = [i for i, word in enumerate(vocab) if not found[i] and word not in zero_words]
    std = float(matrix[found].std()) if found.any() else 1.0
    rng = np.random.default_rng(seed)
    matrix[missing] = rng.normal(0.0, std, size=(len(missing), matrix.shape[1])).astype(np.float32)
    return GloveResult(
        matrix=matrix,
        found=int(found.sum()),
        missing=[vocab[i] for i in missing],
        skipped_lines=skipped,
        lines_read=lines_read,
        sha256=sha256,
        matched_by_case=matched_by_case,
    )
