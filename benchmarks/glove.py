"""Wall time and peak memory of the streaming GloVe builder against a load-everything dict reader.

Prints one JSON object. It writes a synthetic file in glove.840B's format (one token and --dim values per line, a
few tokens containing spaces, some case variants) to a temporary folder, draws a vocabulary of --vocab words from
it plus a few absent ones, and runs each reader in a fresh subprocess so that each peak RSS is its own. The dict
reader is the reference approach: parse every line into {word: np.array}, then look the vocabulary up. Seconds
cover reading and matching only, not interpreter start-up; the builder's include the file's sha256, computed
on a second thread.

    python benchmarks/glove.py --lines 400000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere
from common import positive_int  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

VECTOR_POOL = 1024  # distinct vectors reused across lines: formatting every value would dominate the run
SPACE_TOKEN_EVERY = 20_000
CASE_VARIANT_EVERY = 997
ABSENT_WORDS = ("zzabsent0", "zzabsent1", "zzabsent2", "zzabsent3", "zzabsent4")



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=positive_int, default=400_000, help="lines in the synthetic file")
    parser.add_argument("--dim", type=positive_int, default=300)
    parser.add_argument("--vocab", type=positive_int, default=4000, help="vocabulary words drawn from the file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the file (default: a temp dir)")
    # internal: run one reader in this process and print its timing
    parser.add_argument("--child", choices=("builder", "dict"), help=argparse.SUPPRESS)
    parser.add_argument("--glove", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--vocab-json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def token_for(line: int) -> str:
    if line % SPACE_TOKEN_EVERY == SPACE_TOKEN_EVERY - 1:  # never line 1, which must be a plain token
        return f"at home {line}"
    if line % CASE_VARIANT_EVERY == CASE_VARIANT_EVERY - 1:
        return f"Word{line}"
    return f"word{line}"


def write_glove_file(path: Path, lines: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = [
        (" " + " ".join(f"{value:.6f}" for value in vector) + "\n").encode("ascii")
        for vector in rng.normal(0.0, 0.4, size=(VECTOR_POOL, dim))
    ]
    with open(path, "wb", buffering=1 << 20) as file:
        for line in range(lines):
            file.write(token_for(line).encode("ascii") + pool[line % VECTOR_POOL])


def draw_vocabulary(lines: int, size: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed + 1)
    chosen = rng.choice(lines, size=min(size, lines), replace=False)
    # lower-cased like question tokens, so case variants in the file are matched by case
    words = [token_for(int(line)).lower() for line in chosen]
    return ["<NULL>", "<UNK>", *words, *ABSENT_WORDS]


def dict_reader_matrix(path: Path, vocab: list[str], dim: int) -> np.ndarray:
    """The reference approach: every line parsed into a dict, then the vocabulary looked up (zeros if absent)."""
    vectors: dict[str, np.ndarray] = {}
    with open(path, encoding="utf-8") as file:
        for line in file:
            fields = line.rstrip().split(" ")
            vectors[" ".join(fields[:-dim])] = np.array(fields[-dim:], dtype=np.float32)
    zeros = np.zeros(dim, dtype=np.float32)
    return np.stack([vectors.get(word, zeros) for word in vocab])


def run_child(args: argparse.Namespace) -> None:
    vocab = json.loads(args.vocab_json.read_text(encoding="utf-8"))
    start = time.perf_counter()
    if args.child == "builder":
        from tasks.text.glove import build_glove_matrix

        matrix = build_glove_matrix(args.glove, vocab, args.dim).matrix
    else:
        matrix = dict_reader_matrix(args.glove, vocab, args.dim)
    seconds = time.perf_counter() - start
    np.save(args.out, matrix)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))


def time_reader(kind: str, glove: Path, vocab_json: Path, dim: int, out: Path) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--glove", str(glove), "--vocab-json", str(vocab_json),
               "--dim", str(dim), "--out", str(out)]  # fmt: skip
    completed = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(completed.stdout)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="glove-bench-") as folder:
        work = Path(folder)
        glove = work / "glove.synthetic.txt"
        write_glove_file(glove, args.lines, args.dim, args.seed)
        vocab = draw_vocabulary(args.lines, args.vocab, args.seed)
        vocab_json = work / "vocab.json"
        vocab_json.write_text(json.dumps(vocab), encoding="utf-8")
        builder = time_reader("builder", glove, vocab_json, args.dim, work / "builder.npy")
        reference = time_reader("dict", glove, vocab_json, args.dim, work / "dict.npy")
        built, looked_up = np.load(work / "builder.npy"), np.load(work / "dict.npy")
        # rows the dict reader found (nonzero) must be the builder's; other rows differ by design
        exact = [i for i, word in enumerate(vocab) if looked_up[i].any()]
        file_mb = glove.stat().st_size / 2**20
    print(json.dumps({
        "lines": args.lines,
        "dim": args.dim,
        "vocab": len(vocab),
        "file_mb": round(file_mb, 1),
        "builder_seconds": round(builder["seconds"], 3),
        "builder_peak_rss_mb": round(builder["peak_rss_mb"], 1),
        "dict_seconds": round(reference["seconds"], 3),
        "dict_peak_rss_mb": round(reference["peak_rss_mb"], 1),
        "speedup": round(reference["seconds"] / builder["seconds"], 2),
        "mb_per_s": round(file_mb / builder["seconds"], 1),
        "rows_agree": bool(np.array_equal(built[exact], looked_up[exact])),
        "rows_compared": len(exact),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
