"""The versioned store with real parts: a local folder and an S3 server on loopback (moto), real processes.

Run as a script (`python tests/test_store_versions.py STORE ROWS...`) it is one writer: a stage driver
that forks a session per task, lets worker threads write rows into the forks, and commits per batch.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from storage.store import GroupRef, Store, open_group  # noqa: E402

ROWS = 12
ROW_SHAPE = (2, 8, 8, 3)
SPEC = {"kind": "test-clips", "v": 1}


def row_value(row: int) -> np.ndarray:
    return np.random.default_rng(row).integers(1, 255, size=ROW_SHAPE, dtype=np.uint8)


def prepare(store: Store):
    group = store.spec_group("ds", "clips", SPEC)
    group.ensure_array("appearance", (ROWS, *ROW_SHAPE), "uint8", chunks=(1, *ROW_SHAPE), compression_level=-5)
    group.ensure_array("num_frames", (ROWS,), "int64", chunks=(1,))
    group.ensure_array("complete", (ROWS,), "uint8")
    return group


def write_rows_task(ref: GroupRef, rows: list[int], delay_s: float = 0.0) -> dict:
    """A worker: write each row into the forked session of `ref`; hand the fork back."""
    group = open_group(ref)
    for row in rows:
        if delay_s:
            time.sleep(delay_s)
        group.write("appearance", row_value(row), row=row)
    return {"rows": rows, "fork": group.handoff()}


def run_stage(location, rows: list[int], batch: int = 3, flow_run: str = "run-1", delay_s: float = 0.0,
              endpoint_url: str | None = None) -> list[str]:
    """The driver: only incomplete rows; one commit per finished batch (data, completion, attributes)."""
    store = Store(location, endpoint_url=endpoint_url)
    group = prepare(store)
    done = group.completed()
    todo = [r for r in rows if not done[r]]
    batches = [todo[i:i + batch] for i in range(0, len(todo), batch)]
    commits = []
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(write_rows_task, store.fork(group.ref), b, delay_s) for b in batches]
        for future in futures:
            result = future.result()

            def record(tx, rows=result["rows"]):
                g = tx.open(group.ref)
                g.write_rows("num_frames", rows, [100 + r for r in rows])
                g.mark_complete(rows)
                g.record_padded(f"v{r}" for r in rows if r % 5 == 0)
                g.quarantine({f"bad{r}": "too few frames" for r in rows if r % 4 == 0})

            store.transact(record, stage="clips", flow_run=flow_run, forks=[result["fork"]],
                           counts={"decoded": len(result["rows"])})
            commits.append(store.last_commit)
            print(json.dumps({"committed": store.last_commit, "rows": result["rows"]}), flush=True)
    return commits


def snapshot_of(store: Store) -> dict:
    group = store.peek("ds", "clips", SPEC)
    return {"appearance": group.read("appearance"), "num_frames": group.read("num_frames"),
            "complete": group.read("complete"), "attrs": group.attrs}


def assert_equal_stores(a: Store, b: Store) -> None:
    left, right = snapshot_of(a), snapshot_of(b)
    for name in ("appearance", "num_frames", "complete"):
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)
    assert left["attrs"] == right["attrs"]


# ------------------------------------------------------------------------------------- fixtures

import pytest  # noqa: E402


# free_port and the s3_server fixture (moto on loopback) live in conftest.py, shared with the S3 end-to-end test.


_bucket_counter = iter(range(10_000))


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path):
    """A fresh store location: a local folder, or a new bucket on the loopback S3 server."""
    if request.param == "local":
        return {"location": str(tmp_path / "store"), "endpoint_url": None}
    import boto3

    endpoint = request.getfixturevalue("s3_server")
    bucket = f"store-{os.getpid()}-{next(_bucket_counter)}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return {"location": f"s3://{bucket}/msvqa", "endpoint_url": endpoint}


def open_store(loc: dict, mode: str = "a", **kw) -> Store:
    return Store(loc["location"], mode=mode, endpoint_url=loc["endpoint_url"], **kw)


def writer_process(loc: dict, rows: list[int], flow_run: str, delay_s: float = 0.0) -> subprocess.Popen:
    args = [sys.executable, __file__, loc["location"], flow_run, str(delay_s), ",".join(map(str, rows))]
    if loc["endpoint_url"]:
        args.append(loc["endpoint_url"])
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ------------------------------------------------------------------------------------- tests


def test_each_batch_is_one_commit_of_data_completion_and_attributes(location):
    commits = run_stage(location["location"], list(range(ROWS)), batch=4, flow_run="fr-7",
                        endpoint_url=location["endpoint_url"])
    store = open_store(location, "r")
    log = store.log()
    assert [c["id"] for c in log[:3]] == commits[::-1]
    newest = log[0]
    assert newest["stage"] == "clips" and newest["flow_run"] == "fr-7" and newest["counts"] == {"decoded": 4}
    assert "clips" in newest["message"] and "fr-7" in newest["message"] and "decoded 4" in newest["message"]
    # Each batch's snapshot holds exactly the rows completed so far, their data and their attributes.
    for n, commit in enumerate(commits, start=1):
        at = store.at(commit)
        group = at.peek("ds", "clips", SPEC)
        done = np.flatnonzero(group.completed()).tolist()
        assert done == list(range(4 * n))
        for row in done:
            np.testing.assert_array_equal(group.read("appearance", row), row_value(row))
            assert group.read("num_frames", row) == 100 + row
        assert group.read("appearance", slice(4 * n, ROWS)).sum() == 0
        assert set(group.quarantined()) == {f"bad{r}" for r in done if r % 4 == 0}
    # Completion is one chunk per row: writers of different rows never write the same chunk.
    info = {i["name"]: i for i in store.peek("ds", "clips", SPEC).array_info()}
    assert info["complete"]["chunks"] == [1] and info["num_frames"]["chunks"] == [1]


def test_a_rerun_commits_nothing_and_reads_are_pinned(location):
    run_stage(location["location"], list(range(ROWS)), batch=6, endpoint_url=location["endpoint_url"])
    reader = open_store(location, "r")
    before = len(reader.log())
    run_stage(location["location"], list(range(ROWS)), batch=6, endpoint_url=location["endpoint_url"])
    assert len(open_store(location, "r").log()) == before
    # A reference from a read-only store reopens at the same snapshot in another process.
    ref = reader.read_ref(reader.peek("ds", "clips", SPEC).ref)
    assert ref.snapshot == reader.snapshot_id
    copy = pickle.loads(pickle.dumps(ref))
    np.testing.assert_array_equal(open_group(copy, mode="r").read("appearance", 3), row_value(3))
    ref_without_session = GroupRef(ref.location, ref.path)
    assert open_group(ref_without_session, mode="r").snapshot_id == reader.snapshot_id


def _process_worker(ref: GroupRef, rows: list[int]):
    return write_rows_task(ref, rows)["fork"]


def test_forks_travel_to_worker_processes_and_back(tmp_path):
    store = Store(tmp_path / "store")
    group = prepare(store)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        forks = list(pool.map(_process_worker, [store.fork(group.ref), store.fork(group.ref)], [[0, 1], [2, 3]]))
    store.transact(lambda tx: tx.open(group.ref).mark_complete(range(4)), stage="clips", forks=forks,
                   counts={"decoded": 4})
    reader = Store(tmp_path / "store", mode="r")
    got = reader.peek("ds", "clips", SPEC)
    assert got.completed().tolist()[:5] == [True] * 4 + [False]
    for row in range(4):
        np.testing.assert_array_equal(got.read("appearance", row), row_value(row))


def test_two_writer_processes_on_different_rows_equal_one_writer(location, tmp_path):
    evens, odds = [r for r in range(ROWS) if r % 2 == 0], [r for r in range(ROWS) if r % 2]
    procs = [writer_process(location, evens, "fr-a", 0.02), writer_process(location, odds, "fr-b", 0.02)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    single = {"location": str(tmp_path / "single"), "endpoint_url": None}
    run_stage(single["location"], list(range(ROWS)))
    assert_equal_stores(open_store(location, "r"), open_store(single, "r"))
    runs = [c["flow_run"] for c in open_store(location, "r").log() if c["stage"] == "clips"]
    assert runs.count("fr-a") == 2 and runs.count("fr-b") == 2  # 6 rows each in batches of 3


def test_kill_9_mid_stage_keeps_committed_batches_and_a_rerun_equals_an_uninterrupted_run(location, tmp_path):
    proc = writer_process(location, list(range(ROWS)), "fr-killed", delay_s=0.15)
    committed = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(committed) < 1:
        line = proc.stdout.readline()
        if line.startswith("{"):
            committed.append(json.loads(line))
    time.sleep(0.2)  # the next batch is being written
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert committed, proc.stderr.read()[-3000:]
    store = open_store(location, "r")
    group = store.peek("ds", "clips", SPEC)
    done = np.flatnonzero(group.completed())
    assert 3 <= len(done) < ROWS and len(done) % 3 == 0  # whole batches only
    for row in done:  # every completed row has its data and frame count
        np.testing.assert_array_equal(group.read("appearance", row), row_value(row))
        assert group.read("num_frames", row) == 100 + row
    commits = run_stage(location["location"], list(range(ROWS)), endpoint_url=location["endpoint_url"])
    assert len(commits) == (ROWS - len(done)) // 3  # only the rest is redone
    clean = {"location": str(tmp_path / "clean"), "endpoint_url": None}
    run_stage(clean["location"], list(range(ROWS)))
    assert_equal_stores(open_store(location, "r"), open_store(clean, "r"))


def test_log_tags_time_travel_and_gc(tmp_path):
    from configs.errors import UserError

    store = Store(tmp_path / "store")
    group = prepare(store)
    versions = []
    for value in (1, 2, 3, 4):
        group.write("num_frames", np.full(ROWS, value, np.int64))
        versions.append(store.last_commit)
    assert store.snapshot_id == versions[-1]
    store.tag("first", versions[0])
    assert store.tags() == {"first": versions[0]}
    with pytest.raises(UserError, match="tag first already names"):
        store.tag("first", versions[1])
    old = Store(tmp_path / "store", mode="r", snapshot="first")
    assert old.snapshot_id == versions[0]
    assert old.peek("ds", "clips", SPEC).read("num_frames").tolist() == [1] * ROWS
    assert Store(tmp_path / "store", mode="r", snapshot=versions[1]).peek("ds", "clips", SPEC).read(
        "num_frames")[0] == 2
    with pytest.raises(UserError, match="store.snapshot nope is neither a tag nor a snapshot id"):
        Store(tmp_path / "store", mode="r", snapshot="nope")
    with pytest.raises(PermissionError):
        old.peek("ds", "clips", SPEC).write("num_frames", np.zeros(ROWS, np.int64))
    log = store.log()
    assert log[0]["id"] == versions[-1] and log[0]["stage"] == "direct"
    assert [c for c in log if c["id"] == versions[0]][0]["tags"] == ["first"]

    summary = store.gc(keep=1, protect=[versions[1]], grace_s=0)
    assert versions[2] in summary["expired"] and versions[0] not in summary["expired"]
    assert versions[1] not in summary["expired"] and summary["snapshots_deleted"] >= 1
    # The tip, the tagged snapshot and the protected one still read; the expired one is gone.
    assert Store(tmp_path / "store", mode="r").peek("ds", "clips", SPEC).read("num_frames")[0] == 4
    assert Store(tmp_path / "store", mode="r", snapshot="first").peek("ds", "clips", SPEC).read(
        "num_frames")[0] == 1
    assert Store(tmp_path / "store", mode="r", snapshot=versions[1]).peek("ds", "clips", SPEC).read(
        "num_frames")[0] == 2
    assert f"keep-{versions[1]}" in store.tags()
    with pytest.raises(Exception):
        Store(tmp_path / "store", mode="r", snapshot=versions[2]).peek("ds", "clips", SPEC).read("num_frames")


def test_a_plain_zarr_store_is_refused_with_the_way_to_convert_it(tmp_path):
    import zarr

    from configs.errors import UserError
    from storage.convert import import_plain_store

    old = tmp_path / "old.zarr"
    root = zarr.open_group(old, mode="w")
    root.require_group("ds").attrs["annotations"] = {"train": "abc"}
    group = root.require_group(f"ds/clips/{'a' * 12}")
    group.attrs.update({"spec": {"k": 1}, "kind": "clips", "quarantined": {"v9": "empty file"}})
    group.create_array("appearance", shape=(3, 4), chunks=(1, 4), dtype="uint8", fill_value=0)[...] = 7
    group.create_array("complete", shape=(3,), chunks=(3,), dtype="uint8", fill_value=0)[...] = [1, 0, 1]
    text = root.require_group(f"ds/text/{'b' * 12}")
    text.attrs.update({"spec": {"t": 1}, "kind": "text", "complete": True})
    text.require_group("train").create_array("questions", shape=(2, 3), dtype="int64", fill_value=0)[...] = 5
    (old / "ds" / "text" / ("b" * 12) / "vocab.json").write_text('{"a": 1}')

    with pytest.raises(UserError, match=r"plain Zarr store from before versioning: convert it with `msvqa store "
                                        r"import .* NEW`"):
        Store(old)
    with pytest.raises(UserError, match="plain Zarr"):
        Store(old, mode="r")
    summary = import_plain_store(old, tmp_path / "new")
    assert summary["imported"] == [f"ds/clips/{'a' * 12}", f"ds/text/{'b' * 12}"]
    new = Store(tmp_path / "new", mode="r")
    clips = new.open(f"ds/clips/{'a' * 12}")
    assert clips.completed().tolist() == [True, False, True] and clips.read("appearance").sum() == 7 * 12
    assert clips.quarantined() == {"v9": "empty file"} and clips.spec == {"k": 1}
    assert [i["chunks"] for i in clips.array_info() if i["name"] == "complete"] == [[1]]
    assert new.dataset_attrs("ds") == {"annotations": {"train": "abc"}}
    text_group = new.open(f"ds/text/{'b' * 12}")
    assert text_group.read("train/questions").sum() == 30 and text_group.read_blob("vocab.json") == b'{"a": 1}'
    assert import_plain_store(old, tmp_path / "new")["skipped"] == summary["imported"]  # resumable


if __name__ == "__main__":
    location_arg, flow_run_arg, delay_arg, rows_arg = sys.argv[1:5]
    endpoint_arg = sys.argv[5] if len(sys.argv) > 5 else None
    run_stage(location_arg, [int(r) for r in rows_arg.split(",")], flow_run=flow_run_arg,
              delay_s=float(delay_arg), endpoint_url=endpoint_arg)
