"""Archive extraction (safe and malicious archives), the manifest, and ensure_dataset with sources."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from configs.errors import UserError
from configs.schema import DatasetConfig, Source
from tasks.ingest.archive import extract, is_archive
from tasks.ingest.sources import copy_source, ensure_dataset
from tasks.ingest.layout import has_dataset
from tasks.ingest.manifest import load_manifest


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, target)
    return path


def _tar(path: Path, entries: list[tuple[str, str, bytes | str]]) -> Path:
    """entries: (name, kind 'file' | 'sym' | 'hard' | 'fifo', data or link target)."""
    with tarfile.open(path, "w:gz" if path.name.endswith(("gz", "tgz")) else "w") as bundle:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                bundle.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = payload if kind != "fifo" else ""
            bundle.addfile(info)
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_is_archive() -> None:
    assert [is_archive(n) for n in ("a.zip", "a.TAR", "a.tar.gz", "a.tgz", "a.json", "a.gz")] == \
        [True, True, True, True, False, False]


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz", ".tgz"])
def test_extract_merges_into_target(tmp_path: Path, suffix: str) -> None:
    entries = {"video/a.avi": b"AAA", "video/sub/b.avi": b"BB", "train_qa.json": b"[]"}
    archive = tmp_path / f"bundle{suffix}"
    if suffix == ".zip":
        _zip(archive, entries)
    else:
        _tar(archive, [(name, "file", data) for name, data in entries.items()]
             + [("video/c.avi", "sym", "a.avi"), ("video/d.avi", "hard", "video/a.avi")])
    target = tmp_path / "root"
    (target / "video").mkdir(parents=True)
    (target / "video" / "old.avi").write_bytes(b"old")
    (target / "train_qa.json").write_bytes(b"stale")
    written = extract(archive, target)
    expected = sorted(entries) + ([] if suffix == ".zip" else ["video/c.avi", "video/d.avi"])
    assert written == [target / name for name in sorted(expected)]
    links = {} if suffix == ".zip" else {"video/c.avi": b"AAA", "video/d.avi": b"AAA"}
    assert _tree(target) == {"train_qa.json": b"[]", "video/a.avi": b"AAA", "video/old.avi": b"old",
                             "video/sub/b.avi": b"BB"} | links
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([archive.name, "root"])  # no staging left


@pytest.mark.parametrize(("kind", "entries", "culprit"), [
    ("zip", {"../evil.txt": b"x"}, "../evil.txt"),
    ("zip", {"ok.txt": b"x", "/abs/evil.txt": b"x"}, "/abs/evil.txt"),
    ("zip", {"a/..\\..\\evil.txt": b"x"}, "a/..\\..\\evil.txt"),
    ("tar", [("ok.txt", "file", b"x"), ("a/../../evil.txt", "file", b"x")], "a/../../evil.txt"),
    ("tar", [("/etc/evil.txt", "file", b"x")], "/etc/evil.txt"),
    ("tar", [("link", "sym", "../outside")], "link"),
    ("tar", [("deep/link", "sym", "../../outside")], "deep/link"),
    ("tar", [("link", "sym", "/etc/passwd")], "link"),
    ("tar", [("ok.txt", "file", b"x"), ("d/hard", "hard", "../ok.txt")], "d/hard"),
    ("tar", [("hard", "hard", "/etc/passwd")], "hard"),
    # "x" points inside, but "x/y" then lands wherever x really leads: refused whatever its target.
    ("tar", [("x", "sym", "."), ("x/y", "sym", "..")], "x/y"),
    ("tar", [("pipe", "fifo", "")], "pipe"),
])
def test_extract_refuses_entries_escaping_the_target(tmp_path: Path, kind: str, entries, culprit: str) -> None:
    archive = tmp_path / ("bad.zip" if kind == "zip" else "bad.tar")
    _zip(archive, entries) if kind == "zip" else _tar(archive, entries)
    target = tmp_path / "sub" / "root"
    with pytest.raises(UserError, match=re.escape(f"entry {culprit!r}")) as caught:
        extract(archive, target)
    assert str(archive) in str(caught.value)
    assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == []  # nothing written anywhere, staging removed
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name, "sub"]


def test_extract_refuses_zip_symlink_outside(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bad.zip", {"a.txt": b"a"}, links={"up": "../../etc"})
    with pytest.raises(UserError, match=r"entry 'up' links to '\.\./\.\./etc', outside"):
        extract(archive, tmp_path / "root")


def test_extract_keeps_zip_symlink_inside(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "ok.zip", {"dir/a.txt": b"a"}, links={"dir/b.txt": "a.txt"})
    extract(archive, tmp_path / "root")
    link = tmp_path / "root" / "dir" / "b.txt"
    assert link.is_symlink() and link.read_bytes() == b"a"


def test_extract_reports_corrupt_and_unknown_archives(tmp_path: Path) -> None:
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"bad\.zip is not a readable zip archive"):
        extract(tmp_path / "bad.zip", tmp_path / "root")
    (tmp_path / "bad.rar").write_bytes(b"x")
    with pytest.raises(UserError, match=r"bad\.rar is not a \.zip, \.tar"):
        extract(tmp_path / "bad.rar", tmp_path / "root")


class _CountingHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        super().do_GET()


@pytest.fixture
def site(tmp_path: Path):
    """A static HTTP server over tmp_path/site that records every requested path."""
    folder = tmp_path / "site"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_CountingHandler, directory=str(folder)))
    httpd.paths = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.folder, httpd.url = folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _dataset_sources(site) -> tuple[list[Source], dict[str, bytes]]:
    """An MSVD-QA-layout dataset served as one zip (annotations, mapping) and one tar.gz (videos)."""
    annotations = {f"{split}_qa.json": json.dumps([{"video_id": 1}]).encode() for split in ("train", "val", "test")}
    annotations["youtube_mapping.txt"] = b"clipA_1_5 vid1\n"
    _zip(site.folder / "MSVD-QA.zip", annotations)
    _tar(site.folder / "clips.tar.gz", [("video/clipA_1_5.avi", "file", b"RIFF-not-really")])
    (site.folder / "readme.txt").write_bytes(b"hello")
    sources = [
        Source(url=f"{site.url}/MSVD-QA.zip", sha256=_sha((site.folder / "MSVD-QA.zip").read_bytes())),
        Source(url=f"{site.url}/clips.tar.gz"),
        Source(url=f"{site.url}/readme.txt", extract=True),  # not an archive: lands as it is
    ]
    return sources, annotations | {"video/clipA_1_5.avi": b"RIFF-not-really", "readme.txt": b"hello"}


def test_ensure_dataset_downloads_once_then_does_nothing(site, tmp_path: Path) -> None:
    sources, expected = _dataset_sources(site)
    root = tmp_path / "data"
    cfg = DatasetConfig(root=root, sources=sources)
    assert ensure_dataset(cfg) == "downloaded"
    assert site.paths == ["/MSVD-QA.zip", "/clips.tar.gz", "/readme.txt"]
    assert has_dataset(root)
    files = {p: d for p, d in _tree(root).items() if p != "manifest.json" and not p.startswith(".downloads/")}
    assert files == expected
    manifest = load_manifest(root)
    assert [(f.path, f.size, f.sha256) for f in manifest.files] == \
        [(p, len(d), _sha(d)) for p, d in sorted(expected.items())]
    zip_entry = manifest.sources[sources[0].url]
    assert (zip_entry.file, zip_entry.sha256, zip_entry.size) == \
        (".downloads/MSVD-QA.zip", sources[0].sha256, (site.folder / "MSVD-QA.zip").stat().st_size)
    assert zip_entry.extracted == {name: len(expected[name]) for name in
                                   ("test_qa.json", "train_qa.json", "val_qa.json", "youtube_mapping.txt")}
    assert manifest.sources[sources[2].url].file == "readme.txt"
    assert manifest.sources[sources[2].url].sha256 == _sha(b"hello")

    site.paths.clear()
    assert ensure_dataset(cfg) == "present"
    assert site.paths == []  # the manifest says everything is there: not one request

    (root / "video" / "clipA_1_5.avi").unlink()  # an unpacked file went missing: unpack again, no download
    assert ensure_dataset(cfg) == "extracted"
    assert site.paths == []
    assert (root / "video" / "clipA_1_5.avi").read_bytes() == b"RIFF-not-really"

    (root / "readme.txt").write_bytes(b"hello, edited")  # size no longer matches the manifest: fetch again
    assert ensure_dataset(cfg) == "downloaded"
    assert site.paths == ["/readme.txt"]
    assert (root / "readme.txt").read_bytes() == b"hello"


def test_changed_sha256_in_config_fetches_again(site, tmp_path: Path) -> None:
    sources, _ = _dataset_sources(site)
    root = tmp_path / "data"
    ensure_dataset(DatasetConfig(root=root, sources=sources))
    _zip(site.folder / "MSVD-QA.zip", {"train_qa.json": b"[1]"})  # a new release of the annotations
    sources[0] = Source(url=sources[0].url, sha256=_sha((site.folder / "MSVD-QA.zip").read_bytes()))
    site.paths.clear()
    assert ensure_dataset(DatasetConfig(root=root, sources=sources)) == "downloaded"
    assert site.paths == ["/MSVD-QA.zip"]
    assert (root / "train_qa.json").read_bytes() == b"[1]"
    assert next(f for f in load_manifest(root).files if f.path == "train_qa.json").sha256 == _sha(b"[1]")


def test_bad_checksum_source_leaves_no_file_and_no_manifest_entry(site, tmp_path: Path) -> None:
    sources, _ = _dataset_sources(site)
    bad = Source(url=sources[0].url, sha256="f" * 64)
    root = tmp_path / "data"
    with pytest.raises(UserError, match=r"MSVD-QA\.zip: sha256 mismatch: expected f{64}, downloaded [0-9a-f]{64}"):
        ensure_dataset(DatasetConfig(root=root, sources=[bad]))
    assert load_manifest(root).sources == {}
    assert list((root / ".downloads").iterdir()) == []


def test_local_folder_and_archive_sources(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    (folder / "video").mkdir(parents=True)
    (folder / "video" / "v.avi").write_bytes(b"vvv")
    (folder / "train_qa.json").write_bytes(b"[]")
    archive = _zip(tmp_path / "more.zip", {"val_qa.json": b"[]"})
    root = tmp_path / "data"
    cfg = DatasetConfig(root=root, sources=[Source(url=str(folder)), Source(url=f"file://{archive}")])
    assert ensure_dataset(cfg) == "copied"
    assert {p: d for p, d in _tree(root).items() if p != "manifest.json"} == {
        ".downloads/more.zip": archive.read_bytes(), "train_qa.json": b"[]", "val_qa.json": b"[]",
        "video/v.avi": b"vvv"}
    assert ensure_dataset(cfg) == "present"
    assert copy_source(Source(url=str(folder)), root) == []  # same sizes: nothing copied again
    with pytest.raises(UserError, match=r"dataset.sources: .*absent does not exist"):
        ensure_dataset(DatasetConfig(root=root, sources=[Source(url=str(tmp_path / "absent"))]))


def test_invalid_manifest_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"sources": 3}')
    with pytest.raises(UserError, match=r"manifest\.json is not a valid msvqa manifest"):
        load_manifest(tmp_path)


def test_no_dataset_and_nothing_configured(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no MSVD-QA dataset"):
        ensure_dataset(DatasetConfig(root=tmp_path / "empty"))


def test_prefect_retries_transient_failures_but_not_a_checksum_mismatch(site, tmp_path: Path) -> None:
    from prefect import flow, task
    from prefect.testing.utilities import prefect_test_harness

    from configs.schema import PipelineConfig
    from flows.ingest import ensure_dataset_task
    from flows.retries import retry_unless_user_error

    sources, _ = _dataset_sources(site)
    config = PipelineConfig(dataset=DatasetConfig(root=tmp_path / "data", sources=[sources[0].model_copy(
        update={"sha256": "f" * 64})]))
    tries: list[int] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_unless_user_error)
    def flaky() -> int:  # a lost connection, say: the second try works
        tries.append(len(tries))
        if len(tries) == 1:
            raise ConnectionResetError("peer went away")
        return len(tries)

    @flow
    def both() -> tuple[int, str]:
        try:
            ensure_dataset_task(config)
            return flaky(), "no error"
        except UserError as error:
            return flaky(), str(error)

    with prefect_test_harness():
        attempts, error = both()
    assert attempts == 2 and tries == [0, 1]
    assert "sha256 mismatch" in error
    # One download of the zip: the mismatch failed the task at once, neither task retry fetched it again.
    assert site.paths == ["/MSVD-QA.zip"]
