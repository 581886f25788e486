"""tasks.ingest.download against a real HTTP server on 127.0.0.1: resume, retry, 404, checksum, local copies."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from configs.errors import UserError
from tasks.ingest.download import download, file_name, local_path

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, no two neighbouring KiB alike
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at /data.bin; the server's `plan` scripts what the first requests do."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        server = self.server
        rng = self.headers.get("Range")
        server.requests.append((self.path, rng))
        if self.path != "/data.bin":
            self.send_error(404, "Not Found")
            return
        step = server.plan.pop(0) if server.plan else "ok"
        if step == "503":
            self.send_error(503, "Busy")
            return
        start = int(rng[len("bytes="):-1]) if rng and server.honour_range else 0
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if step.startswith("drop:"):
            # Announce the whole body, send part of it, then cut the connection.
            self.wfile.write(body[:int(step[5:])])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests, httpd.plan, httpd.honour_range = [], [], True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_interrupted_download_resumes_with_range(server, tmp_path: Path) -> None:
    server.plan = ["drop:300000"]
    seen = []
    out = download(f"{server.url}/data.bin", tmp_path / "data.bin", PAYLOAD_SHA, timeout_s=5, backoff_s=0.01,
                   progress=lambda done, total: seen.append((done, total)))
    assert out == tmp_path / "data.bin"
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", None), ("/data.bin", "bytes=300000-")]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not (tmp_path / "data.bin.partial").exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path: Path) -> None:
    server.plan, server.honour_range = ["drop:123456"], False
    out = download(f"{server.url}/data.bin", tmp_path / "data.bin", PAYLOAD_SHA, timeout_s=5, backoff_s=0.01)
    assert out.read_bytes() == PAYLOAD  # the 200 answer overwrote the partial file instead of appending
    assert server.requests == [("/data.bin", None), ("/data.bin", "bytes=123456-")]


def test_503_is_retried_then_succeeds(server, tmp_path: Path) -> None:
    server.plan = ["503", "503"]
    out = download(f"{server.url}/data.bin", tmp_path / "sub" / "data.bin", None, timeout_s=5, backoff_s=0.01)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", None)] * 3


def test_persistent_503_gives_up_after_the_retries(server, tmp_path: Path) -> None:
    server.plan = ["503"] * 10
    with pytest.raises(UserError, match=r"data\.bin: download failed after 3 tries in a row \(HTTP 503\)"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", None, timeout_s=5, retries=2, backoff_s=0.01)
    assert len(server.requests) == 3
    assert not (tmp_path / "data.bin").exists()


def test_404_fails_at_once(server, tmp_path: Path) -> None:
    url = f"{server.url}/missing.zip"
    with pytest.raises(UserError) as caught:
        download(url, tmp_path / "missing.zip", None, timeout_s=5, backoff_s=0.01)
    assert str(caught.value) == f"{url}: the server answered HTTP 404 (Not Found)"
    assert server.requests == [("/missing.zip", None)]


def test_checksum_mismatch_names_url_and_both_hashes(server, tmp_path: Path) -> None:
    url = f"{server.url}/data.bin"
    wrong = "0" * 64
    with pytest.raises(UserError) as caught:
        download(url, tmp_path / "data.bin", wrong.upper(), timeout_s=5)
    assert str(caught.value) == f"{url}: sha256 mismatch: expected {wrong}, downloaded {PAYLOAD_SHA}"
    assert list(tmp_path.iterdir()) == []  # neither the partial nor the target is left


def test_refused_connection_is_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserError, match=r"download failed after 2 tries in a row \(ConnectionRefusedError"):
        download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", None, timeout_s=5, retries=1,
                 backoff_s=0.01)


def test_local_paths_and_file_urls_are_copied(tmp_path: Path) -> None:
    source = tmp_path / "in dir" / "a.json"
    source.parent.mkdir()
    source.write_bytes(b'{"a": 1}')
    digest = hashlib.sha256(b'{"a": 1}').hexdigest()
    assert download(str(source), tmp_path / "out" / "a.json", digest, timeout_s=1).read_bytes() == b'{"a": 1}'
    url = "file://" + str(source).replace(" ", "%20")
    assert local_path(url) == source
    assert download(url, tmp_path / "b.json", None, timeout_s=1).read_bytes() == b'{"a": 1}'
    with pytest.raises(UserError, match="sha256 mismatch"):
        download(str(source), tmp_path / "c.json", "1" * 64, timeout_s=1)
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "c.json.partial").exists()
    with pytest.raises(UserError, match=r"dataset.sources: .*nope\.json is not a file"):
        download(str(tmp_path / "nope.json"), tmp_path / "d.json", None, timeout_s=1)


def test_file_name_and_unsupported_schemes() -> None:
    assert file_name("https://example.org/dl/MSVD%20QA.zip?token=1") == "MSVD QA.zip"
    assert file_name("/data/YouTubeClips.tar") == "YouTubeClips.tar"
    with pytest.raises(UserError, match="does not end in a file name"):
        file_name("https://example.org/")
    with pytest.raises(UserError, match="only http"):
        local_path("ftp://example.org/a.zip")
