import numpy as np
import pytest

from storage.store import Store, open_group, spec_hash


def test_spec_hash_ignores_key_order_and_changes_with_values():
    assert spec_hash({"a": 1, "b": [1, 2]}) == spec_hash({"b": [1, 2], "a": 1})
    assert spec_hash({"a": 1}) != spec_hash({"a": 2})


def test_two_specs_live_side_by_side(tmp_path):
    store = Store(tmp_path / "s.zarr")
    g1 = store.spec_group("ds", "clips", {"size": 1})
    g2 = store.spec_group("ds", "clips", {"size": 2})
    assert g1.ref.path != g2.ref.path
    assert g1.spec == {"size": 1} and g2.spec == {"size": 2}
    assert [g.ref.path for g in store.find("ds", "clips")] == sorted([g1.ref.path, g2.ref.path])


def test_rows_write_read_and_completion_by_the_driver(tmp_path):
    store = Store(tmp_path / "s.zarr")
    group = store.spec_group("ds", "clips", {"k": 1})
    group.ensure_array("x", (4, 2, 3), "uint8", chunks=(1, 2, 3))
    group.ensure_array("complete", (4,), "uint8")
    value = np.arange(6, dtype=np.uint8).reshape(2, 3)
    # A worker in another process reopens the group from its reference.
    worker_view = open_group(group.ref)
    worker_view.write("x", value, row=2)
    assert np.array_equal(group.read("x", 2), value)
    assert group.read("x", 1).sum() == 0
    assert not group.completed().any()
    group.mark_complete([2])
    assert group.completed().tolist() == [False, False, True, False]
    assert np.array_equal(group.read("x", np.array([2, 0]))[0], value)


def test_completion_read_against_more_or_fewer_rows_than_the_group_holds(tmp_path):
    store = Store(tmp_path / "s.zarr")
    group = store.spec_group("ds", "features", {"k": 1})
    assert group.completed(3).tolist() == [False, False, False]  # no arrays yet: nothing is complete
    group.ensure_array("complete", (3,), "uint8")
    group.mark_complete([0, 2])
    assert group.completed(5).tolist() == [True, False, True, False, False]  # rows it does not hold yet
    assert group.completed(2).tolist() == [True, False]


def test_ensure_array_keeps_data_and_refuses_other_shapes(tmp_path):
    group = Store(tmp_path / "s.zarr").spec_group("ds", "f", {})
    group.ensure_array("a", (2, 3), "float16")
    group.write("a", np.ones((2, 3), dtype=np.float16))
    group.ensure_array("a", (2, 3), "float16")
    assert group.read("a").sum() == 6
    with pytest.raises(ValueError, match="exists with shape"):
        group.ensure_array("a", (3, 3), "float16")


def test_compression_level_is_chosen_at_creation_and_kept_by_a_resumed_run(tmp_path):
    group = Store(tmp_path / "s.zarr").spec_group("ds", "clips", {})
    group.ensure_array("fast", (2, 64), "uint8", chunks=(1, 64), compression_level=-5)
    group.ensure_array("default", (2, 64), "uint8", chunks=(1, 64))
    group.ensure_array("raw", (2, 64), "uint8", chunks=(1, 64), compression_level=None)
    values = np.arange(128, dtype=np.uint8).reshape(2, 64)
    group.write("fast", values)
    group.write("raw", values)
    group.ensure_array("fast", (2, 64), "uint8", chunks=(1, 64), compression_level=3)  # a rerun with another level
    info = {entry["name"]: entry["compression"] for entry in group.array_info()}
    assert info == {"default": "zstd level 1", "fast": "zstd level -5", "raw": "none"}
    np.testing.assert_array_equal(group.read("fast"), values)
    np.testing.assert_array_equal(group.read("raw"), values)


def test_quarantine_and_padding_records_merge(tmp_path):
    group = Store(tmp_path / "s.zarr").spec_group("ds", "clips", {})
    group.quarantine({"v1": "empty file"})
    group.quarantine({"v2": "truncated"})
    group.record_padded(["v3"])
    group.record_padded(["v3", "v4"])
    assert group.quarantined() == {"v1": "empty file", "v2": "truncated"}
    assert group.padded() == ["v3", "v4"]


def test_read_only_store_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError):
        Store(tmp_path / "missing.zarr", mode="r")


def test_chunks_larger_than_a_write_slice_round_trip_and_replace_atomically(tmp_path, monkeypatch):
    import pathlib

    from storage.store import _write_atomically_in_slices

    group = Store(tmp_path / "s.zarr").spec_group("ds", "clips", {})
    group.ensure_array("x", (2, 3, 1024, 1024), "uint8", chunks=(1, 3, 1024, 1024))  # 3 MiB rows
    rows = np.random.default_rng(0).integers(0, 256, size=(2, 3, 1024, 1024), dtype=np.uint8)
    group.write("x", rows[0], row=0)
    group.write("x", rows[1], row=1)
    assert np.array_equal(group.read("x"), rows)

    # A crash after the first 1 MiB of a new value: the old file stays whole and no temporary file stays.
    target = tmp_path / "chunk"
    target.write_bytes(b"old")
    real_open = pathlib.Path.open

    class FailsOnSecondWrite:
        def __init__(self, file):
            self.file, self.writes = file, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.writes += 1
            if self.writes == 2:
                raise OSError("disk full")
            return self.file.write(data)

    def open_partial(path, *args, **kwargs):
        file = real_open(path, *args, **kwargs)
        return FailsOnSecondWrite(file) if path.suffix == ".partial" else file

    monkeypatch.setattr(pathlib.Path, "open", open_partial)
    with pytest.raises(OSError, match="disk full"):
        _write_atomically_in_slices(target, bytes(3 << 20))
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk", "s.zarr"]


def test_empty_arrays_round_trip(tmp_path):
    """An empty split's arrays have a zero-length axis: stored and read back, not refused as metadata."""
    store = Store(tmp_path / "store")
    group = store.spec_group("ds", "text", {"empty": True})
    group.ensure_array("test/questions", (0, 5), "int64")
    group.ensure_array("test/answers", (0,), "int64")
    reread = Store(tmp_path / "store", mode="r").open(group.ref.path)
    assert reread.read("test/questions").shape == (0, 5) and reread.read("test/answers").shape == (0,)
