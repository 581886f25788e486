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


def test_ensure_array_keeps_data_and_refuses_other_shapes(tmp_path):
    group = Store(tmp_path / "s.zarr").spec_group("ds", "f", {})
    group.ensure_array("a", (2, 3), "float16")
    group.write("a", np.ones((2, 3), dtype=np.float16))
    group.ensure_array("a", (2, 3), "float16")
    assert group.read("a").sum() == 6
    with pytest.raises(ValueError, match="exists with shape"):
        group.ensure_array("a", (3, 3), "float16")


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
