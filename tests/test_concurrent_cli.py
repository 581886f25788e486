"""Two `msvqa` commands at once on one project and one store: two `clips`, then two `features`, then what a
scheduled reprocess meeting a run started from the UI does, on a folder and on S3. All end well, the store
equals one writer's cell for cell (attributes and completion included), and every commit is in its log."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from filelock import FileLock

from configs.loader import validate_config
from storage.store import open_store
from storage.transactions import LOCK_NAME
from tasks.ingest.synth_dataset import generate_dataset
from test_reprocess import hide, restore

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).with_name("tiny.yaml")
_buckets = itertools.count()


def write_config(path: Path, data_dir: Path, root: Path, store: dict, own: Path) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data.update(data_dir=str(data_dir), store=store, runner={"kind": "local", "workers": 2})
    data["dataset"]["root"] = str(root)
    data["text"]["glove_path"] = str(root / "glove.txt")
    data["clips"]["videos_per_task"] = 1  # many small commits, so the two writers interleave
    data["features"]["videos_per_task"] = 1
    # `msvqa run` trains as little as it can (one QA epoch, no autoencoder stage, no comparison models), and
    # keeps its checkpoints and MLflow runs in `own`, never in the working directory's data/.
    data["train"].update(autoencoder={"epochs": 0}, qa={"epochs": 1, "batch_size": 8, "lr": 0.001}, baseline=False,
                         compare_with=[], checkpoint_dir=str(own / "checkpoints"))
    data["tracking"].update(uri=f"sqlite:///{own / 'mlflow.db'}", artifact_location=str(own / "mlartifacts"),
                            register_model=False, system_metrics=False)
    path.write_text(yaml.safe_dump(data))
    return path


def wait_until(condition: Callable[[], bool], timeout_s: float, what: object = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.1)


def _read(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


class Command:
    """One `msvqa ... --json` process; its output is read as it comes, so a test can wait for a line."""

    def __init__(self, *args: str) -> None:
        # No PREFECT_API_URL: the commands share the project's temporary Prefect server between them.
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.app", *args, "--json"], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=_read, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    def wait_for(self, text: str, timeout_s: float = 300.0) -> None:
        def seen() -> bool:
            assert self.proc.poll() is None, (self.args, "".join(self.err)[-2500:])
            return any(text in line for line in list(self.err))

        wait_until(seen, timeout_s, (self.args, text))

    def result(self) -> dict:
        self.proc.wait(timeout=400)
        for reader in self.readers:
            reader.join()
        assert self.proc.returncode == 0, (self.args, "".join(self.err)[-2500:])
        return json.loads(self.out[-1])


@pytest.fixture
def launch() -> Iterator[Callable[..., Command]]:
    """Starts commands; those still running when the test ends (it failed) are killed: these processes only."""
    running: list[Command] = []

    def start(*args: str) -> Command:
        running.append(Command(*args))
        return running[-1]

    yield start
    for command in running:
        if command.proc.poll() is None:
            command.proc.kill()
            command.proc.wait()


def together(launch: Callable[..., Command], *commands: tuple[str, ...]) -> list[dict]:
    return [command.result() for command in [launch(*command) for command in commands]]


@contextlib.contextmanager
def held_commits(monkeypatch: pytest.MonkeyPatch, prefix: str) -> Iterator[list[str]]:
    """S3's commit lock, held: a commit ends with a conditional PUT of its branch's ref, and the test's moto
    server answers none under `prefix` (one store's refs) until the block ends. Yields the held requests."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    released, held = threading.Event(), []
    answer = DomainDispatcherApplication.__call__

    def hold(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "PUT" and environ["PATH_INFO"].startswith(prefix):
            held.append(environ["PATH_INFO"])
            released.wait(300)
        return answer(self, environ, start_response)

    monkeypatch.setattr(DomainDispatcherApplication, "__call__", hold)
    try:
        yield held
    finally:
        released.set()


def cells(config_path: Path) -> dict:
    """Every array and the attributes of every group and array under the dataset's groups (clips, features,
    text: the text group nests its splits, so each group is walked whole)."""
    config = validate_config(yaml.safe_load(config_path.read_text()))
    store = open_store(config.store, mode="r")
    out = {}
    for kind in store.kinds(config.dataset.name):
        for group in store.find(config.dataset.name, kind):
            where = f"{kind}/{group.ref.spec_hash}"
            out[f"{where}/attrs"] = group.attrs
            for name, member in group._group.members(max_depth=None):
                out[f"{where}/{name}/attrs"] = dict(member.attrs)
                if isinstance(member, zarr.Array):
                    out[f"{where}/{name}"] = member[...]
    return out


def assert_same_cells(left: dict, right: dict) -> None:
    assert sorted(left) == sorted(right) and any(key.endswith("/complete") for key in left)
    for key in left:
        if key.endswith("attrs"):
            assert left[key] == right[key], key
        else:
            np.testing.assert_array_equal(left[key], right[key], err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_writers_at_once_equal_one_writer(where, tmp_path, request, monkeypatch, launch):
    root = tmp_path / "dataset"
    late = generate_dataset(root, 10, 3, width=64, height=48, frames=24, fps=8, glove_dim=8).plans[-2:]
    hide(root, [p.name for p in late], [p.vid for p in late], tmp_path / "stash")  # they arrive later
    if where == "local":
        stores = [{"path": str(tmp_path / name)} for name in ("shared.store", "single.store")]
    else:
        import boto3

        endpoint = request.getfixturevalue("s3_server")
        bucket = f"cli-{os.getpid()}-{next(_buckets)}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        stores = [{"path": f"s3://{bucket}/{name}", "endpoint_url": endpoint} for name in ("shared", "single")]
    # One project folder (one temporary Prefect server at a time) for both stores; tracking of their own.
    shared = write_config(tmp_path / "shared.yaml", tmp_path / "project", root, stores[0], tmp_path / "shared")
    single = write_config(tmp_path / "single.yaml", tmp_path / "project", root, stores[1], tmp_path / "single")

    # Two clips at once, then two features at once, on the shared store; one of each on the other store at
    # the same time (its own store: that only saves wall time).
    *clips, _ = together(launch, ("clips", str(shared)), ("clips", str(shared)), ("clips", str(single)))
    *features, _ = together(launch, ("features", str(shared)), ("features", str(shared)), ("features", str(single)))
    assert all(result["complete"] == 8 for result in clips)
    assert_same_cells(cells(shared), cells(single))
    assert sum(result["decoded_now"] for result in clips) >= 8  # a row both decoded is written identically

    # Then the dataset gains two videos and one video's file changes, and a scheduled reprocess meets a run
    # started from the UI on the same store and project: both grow the groups, invalidate the changed row,
    # decode, extract and build the text group. The other store's one `msvqa run` does it all alone.
    restore(root, tmp_path / "stash")
    before = open_store(validate_config(yaml.safe_load(shared.read_text())).store, mode="r")
    names, history = before.find("tiny", "clips")[0].attrs["names"], len(before.log())
    shutil.copyfile(root / "video" / f"{names[0]}.avi", root / "video" / f"{names[1]}.avi")
    # CLI runs on a temporary Prefect server do not take the store's writer slot (flows/writer_slot.py: only
    # deployment runs do), so what makes them take turns is the commit lock (a folder) or icechunk's
    # conditional branch update with rebase-or-retry (S3). A run reaches its clips seconds after a reprocess
    # (MLflow, ingest), so the test holds the shared store's commits (the lock; on S3 the branch updates) until
    # both have begun their clips flows: both plan the same index change before either has committed it.
    if where == "local":
        gate = FileLock(str(tmp_path / "shared.store" / LOCK_NAME))
    else:
        gate = held_commits(monkeypatch, f"/{bucket}/shared/refs/")
    with gate as held:
        commands = [launch("reprocess", str(shared)), launch("run", str(shared)), launch("run", str(single))]
        for command in commands[:2]:
            command.wait_for("for flow 'clips'")
        if where == "local":
            time.sleep(3.0)  # planning takes milliseconds; then each waits for the lock
        else:
            wait_until(lambda: len(held) >= 2, 60)  # each has planned, written its snapshot, and waits
    reprocess, run, alone = (command.result() for command in commands)
    changes = (reprocess["new_videos"], reprocess["changed_videos"], reprocess["removed_videos"])
    assert changes == (2, 1, 0) and run["details"]["clips"]["complete"] == reprocess["clips"]["complete"] == 10
    assert alone["details"]["clips"]["decoded_now"] == 3
    left, right = cells(shared), cells(single)
    assert_same_cells(left, right)
    assert {key.split("/")[0] for key in left} >= {"clips", "features", "text"}

    # Every commit of every command is in the store's log, named by its stage, in one line of history:
    # the log's counts add up to what the commands report, so no writer's commit was lost to another's.
    log = together(launch, ("store", "log", str(shared)))[0]["commits"]
    assert log[-1]["stage"] is None and all(commit["stage"] for commit in log[:-1])  # [-1]: icechunk's own
    assert [commit["parent"] for commit in log[:-1]] == [commit["id"] for commit in log[1:]]
    for stage, count, key, results in (("clips", "decoded", "decoded_now", clips),
                                       ("features", "extracted", "extracted_now", features)):
        reported = [result[key] for result in results] + [reprocess[stage][key], run["details"][stage][key]]
        assert sum(commit["counts"].get(count, 0) for commit in log if commit["stage"] == stage) == sum(reported)
    raced = log[:len(log) - history]
    stages = {commit["stage"] for commit in raced}
    assert {"clips", "features", "text", "direct"} <= stages  # direct: the reprocess records the annotations
    index = [commit for commit in raced if commit["message"].startswith("clips: index")]
    assert 1 <= len([commit for commit in raced if commit["stage"] == "text"]) <= 2  # one, or both built it
    # Both planned the change before either had committed it: each committed it, the second on the first's
    # tip (after the lock, or after losing the race for the branch and applying its change again).
    assert len(index) == 2 and len({commit["flow_run"] for commit in index}) == 2
    # The project's temporary Prefect server was shared and is gone with its last user.
    assert not (tmp_path / "project" / "prefect" / "temporary-server.json").exists()
