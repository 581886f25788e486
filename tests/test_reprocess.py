"""Reprocessing: the change set (pure), new/changed/removed videos end to end, caching, the scheduled deployment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from configs.errors import UserError
from configs.schema import PipelineConfig
from storage.store import Store
from tasks.ingest.changes import (MISSING_FILE, REMOVED, ChangeSet, IndexConflict, file_changes, plan_index,
                           should_retrain)
from tasks.features.extract import feature_spec
from tasks.ingest.layout import SPLITS
from tasks.ingest.synth_dataset import generate_dataset
from test_clip_store import clip_group, latest_artifact, tiny_config

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"


def fp(sha: str) -> dict:
    return {"size": 1, "mtime_ns": 1, "sha256": sha}


def test_plan_appends_new_videos_and_finds_changed_and_removed_ones():
    old_ids, old_names = [1, 2, 3, 4], ["a", "b", "c", "d"]
    old_files = {"a": fp("1"), "b": fp("2"), "c": fp("3")}  # d had no file when last seen
    current = [(1, "a"), (2, "b"), (4, "d"), (5, "e"), (0, "z")]  # c removed; z sorts first but is new
    files = {"a": fp("1"), "b": fp("changed"), "d": fp("4"), "e": fp("5"), "z": None}
    plan = plan_index(old_ids, old_names, old_files, {"d": MISSING_FILE}, current, files)
    assert plan.video_ids == [1, 2, 3, 4, 5, 0] and plan.names == ["a", "b", "c", "d", "e", "z"]
    assert (plan.new_rows, plan.changed_rows, plan.removed_rows) == ([4, 5], [1, 3], [2])
    assert plan.files == {"a": fp("1"), "b": fp("changed"), "d": fp("4"), "e": fp("5")}
    # Seen again with c still gone (and quarantined as removed): nothing new to report.
    again = plan_index(plan.video_ids, plan.names, plan.files, {"c": REMOVED}, current, files)
    assert (again.new_rows, again.changed_rows, again.removed_rows) == ([], [], [])
    # c comes back: decoded again, whatever its file.
    back = plan_index(plan.video_ids, plan.names, plan.files, {"c": REMOVED}, current + [(3, "c")],
                      files | {"c": fp("3")})
    assert (back.new_rows, back.changed_rows, back.removed_rows) == ([], [2], [])


def test_plan_trusts_groups_without_fingerprints_and_refuses_reassigned_ids():
    legacy = plan_index([1, 2], ["a", "b"], None, {"b": MISSING_FILE}, [(1, "a"), (2, "b")],
                        {"a": fp("1"), "b": fp("2")})
    assert (legacy.changed_rows, legacy.files) == ([1], {"a": fp("1"), "b": fp("2")})
    with pytest.raises(IndexConflict, match="vid2: b -> x"):
        plan_index([1, 2], ["a", "b"], {}, {}, [(1, "a"), (2, "x")], {"a": None, "x": None})
    with pytest.raises(IndexConflict, match="a: vid1 -> vid7"):
        plan_index([1], ["a"], {}, {}, [(7, "a")], {"a": None})


def test_file_changes_retrain_threshold_and_settings_defaults():
    assert file_changes(None, {"a": "1"}) == {"a": "new"}
    assert file_changes({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"}) == \
        {"b": "changed", "c": "removed", "d": "new"}
    changes = ChangeSet([(9, "n1"), (10, "n2")], [(3, "c")], [], {"test_qa.json": "changed"})
    assert (should_retrain(changes, None), should_retrain(changes, 3), should_retrain(changes, 4)) == (False, True, False)
    assert changes.table() == [{"item": "n1", "video_id": 9, "change": "new"},
                               {"item": "n2", "video_id": 10, "change": "new"},
                               {"item": "c", "video_id": 3, "change": "changed"},
                               {"item": "test_qa.json", "video_id": None, "change": "changed"}]
    settings = PipelineConfig().reprocess
    assert (settings.cron, settings.retrain_min_new_videos) == (None, None)


# End to end: ten synthetic videos, the last two hidden for the first run.

@pytest.fixture(scope="module")
def api_url():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield PREFECT_API_URL.value()


def hide(root: Path, names: list[str], ids: list[int], stash: Path) -> None:
    """Move videos out of the dataset: their files, mapping lines and questions."""
    stash.mkdir(exist_ok=True)
    for name in names:
        shutil.move(root / "video" / f"{name}.avi", stash / f"{name}.avi")
    for file in ["youtube_mapping.txt", *(f"{split}_qa.json" for split in SPLITS)]:
        shutil.copyfile(root / file, stash / file)
    mapping = (root / "youtube_mapping.txt").read_text().splitlines(keepends=True)
    (root / "youtube_mapping.txt").write_text("".join(l for l in mapping if l.split()[0] not in names))
    for split in SPLITS:
        path = root / f"{split}_qa.json"
        path.write_text(json.dumps([q for q in json.loads(path.read_text()) if q["video_id"] not in ids]))


def restore(root: Path, stash: Path) -> None:
    for path in stash.iterdir():
        shutil.move(path, root / ("video" if path.suffix == ".avi" else "") / path.name)


def test_reprocess_processes_exactly_what_changed(tmp_path, api_url):
    from flows.reprocess import reprocess_flow

    root = tmp_path / "dataset"
    summary = generate_dataset(root, 10, 1, width=64, height=48, frames=24, fps=8, glove_dim=8)
    late = summary.plans[-2:]
    hide(root, [p.name for p in late], [p.vid for p in late], tmp_path / "stash")
    config = tiny_config(tmp_path, root)

    first = reprocess_flow(config)
    assert (first["new_videos"], first["decoded_now"], first["extracted_now"], first["text_built"]) == (8, 8, 8, True)
    before = clip_group(config).read("appearance")

    restore(root, tmp_path / "stash")
    added = reprocess_flow(config)
    assert (added["new_videos"], added["changed_videos"], added["removed_videos"]) == (2, 0, 0)
    assert (added["decoded_now"], added["extracted_now"], added["text_built"]) == (2, 2, True)
    changed_splits = {f"{s}_qa.json" for s in SPLITS if any(q["video_id"] in (9, 10)
                                                            for q in json.loads((root / f"{s}_qa.json").read_text()))}
    assert added["annotation_files"] == len(changed_splits) > 0
    assert json.loads(latest_artifact("reprocess-changes-tiny")) == \
        [{"item": p.name, "video_id": p.vid, "change": "new"} for p in late] + \
        [{"item": name, "video_id": None, "change": "changed"} for name in sorted(changed_splits)]
    assert latest_artifact("features-progress-tiny") == 100.0
    group = clip_group(config)
    assert group.attrs["video_ids"] == list(range(1, 11)) and group.completed().all()
    assert np.array_equal(group.read("appearance")[:8], before)  # stored rows kept as they were
    features = Store(config.store.path).spec_group(config.dataset.name, "features",
                                                   feature_spec(config.features, group.ref.spec_hash))
    assert features.shape("appearance")[0] == 10 and features.completed().all()

    quiet = reprocess_flow(config)
    assert (quiet["status"], quiet["decoded_now"], quiet["extracted_now"], quiet["text_built"]) == \
        ("no changes", 0, 0, False)

    # One video's file replaced by another's, one video dropped from the mapping (its questions too).
    names = group.attrs["names"]
    shutil.copyfile(root / "video" / f"{names[0]}.avi", root / "video" / f"{names[1]}.avi")
    hide(root, [names[2]], [3], tmp_path / "stash2")
    edited = reprocess_flow(config)
    assert (edited["changed_videos"], edited["removed_videos"], edited["decoded_now"], edited["extracted_now"]) == \
        (1, 1, 1, 1)
    group = clip_group(config)
    assert group.completed().tolist() == [True, True, False] + [True] * 7
    assert group.quarantined() == {names[2]: REMOVED}
    assert np.array_equal(group.read("appearance", 1), group.read("appearance", 0))
    assert features.completed().tolist() == [True, True, False] + [True] * 7


def test_a_reassigned_video_id_is_a_user_error_naming_the_group(tmp_path, api_url):
    from flows.clips import run_clips

    root = tmp_path / "dataset"
    generate_dataset(root, 6, 1, width=64, height=48, frames=24, fps=8, glove_dim=8)
    config = tiny_config(tmp_path, root, **{"dataset.max_videos": 2})
    run_clips(config)
    mapping = root / "youtube_mapping.txt"
    lines = mapping.read_text().splitlines()
    first, second = lines[0].split(), lines[1].split()
    mapping.write_text("\n".join([f"{first[0]} {second[1]}", f"{second[0]} {first[1]}", *lines[2:]]) + "\n")
    with pytest.raises(UserError, match=rf"clip group {clip_group(config).ref.path} .*new store.path"):
        run_clips(config)


def test_cheap_tasks_are_cached_only_while_their_inputs_and_the_store_agree(tmp_path, api_url):
    from prefect import flow

    from flows.reprocess import folder_fingerprint, validate_layout_task
    from flows.text import build_text_task
    from tasks.text.store import text_spec

    root = tmp_path / "dataset"
    generate_dataset(root, 6, 1, width=64, height=48, frames=24, fps=8, glove_dim=8)
    config = tiny_config(tmp_path, root)

    @flow
    def states() -> list[str]:
        def layout() -> str:
            return validate_layout_task(root, None, config.store.path, folder_fingerprint(root), return_state=True).name

        def text() -> str:
            return build_text_task(config.text, root, config.store, config.dataset.name, 0,
                                   text_spec(config.text, root), return_state=True).name

        seen = [layout(), layout()]
        (root / "video" / "extra.avi").write_bytes(b"new file")  # the folder changed: a new key
        seen += [layout(), text(), text(), text()]
        shutil.rmtree(config.store.path)  # the store lost the group: no key, so the task runs
        return seen + [text()]

    assert states() == ["Completed", "Cached", "Completed", "Completed", "Completed", "Cached", "Completed"]


def test_reprocess_deployment_is_scheduled_by_the_config(monkeypatch):
    from prefect.utilities.importtools import import_object

    from flows import deployments as dep

    demo = dep.load_config(DEMO, [])
    assert demo.reprocess.cron is not None  # the demo schedules reprocessing out of the box
    unscheduled = demo.model_copy(update={"reprocess": demo.reprocess.model_copy(update={"cron": None})})
    assert dep.reprocess_deployment(unscheduled, DEMO) is None
    scheduled = dep.load_config(DEMO, ["reprocess.cron=30 2 * * *"])
    deployment = dep.reprocess_deployment(scheduled, DEMO, ["clips.num_clips=4"])
    assert deployment.name == "reprocess" and deployment.flow_name == "run-reprocess"
    assert [s.schedule.cron for s in deployment.schedules] == ["30 2 * * *"]
    assert deployment.parameters == {"config_path": str(DEMO.resolve()), "overrides": ["clips.num_clips=4"]}
    assert import_object(deployment.entrypoint) is dep.reprocess_from_file

    monkeypatch.setattr(dep, "load_config", lambda path, overrides: scheduled)
    built = dep.build_deployments(DEMO)
    assert [f"{d.flow_name}/{d.name}" for d in built] == dep.deployment_names(reprocess=True)
    assert built[-1].name == "reprocess" and [s.schedule.cron for s in built[-1].schedules] == ["30 2 * * *"]


def test_the_index_commit_keeps_every_derived_group_consistent(tmp_path):
    """New and changed videos: one commit grows the clip group and the groups made from it, lists the new
    index in each, and marks every stale row incomplete; a reader of that commit sees no disagreement."""
    from flows.clips import apply_index_plan
    from tasks.ingest.changes import IndexPlan

    store = Store(tmp_path / "store")
    old = {"video_ids": [1, 2], "names": ["a", "b"]}
    clips = store.spec_group("d", "clips", {"kind": "clips"})
    derived = [store.spec_group("d", kind, {"kind": kind}) for kind in ("features", "targets")]

    def setup(tx) -> None:
        for group in [clips, *derived]:
            view = tx.open(group.ref)
            view.ensure_array("complete", (2,), "uint8", chunks=(1,))
            view.ensure_array("data", (2, 3), "float32", chunks=(1, 3))
            view.mark_complete([0, 1])
            view.update_attrs(**old, **({} if group is clips else {"clips": clips.ref.path}))
        tx.open(clips.ref).update_attrs(files={"a": fp("1"), "b": fp("2")})

    store.transact(setup, stage="test")
    plan = IndexPlan([1, 2, 3], ["a", "b", "c"], {"a": fp("1"), "b": fp("changed"), "c": fp("3")},
                     new_rows=[2], changed_rows=[1])
    before = len(store.log())
    store.transact(lambda tx: apply_index_plan(tx, tx.open(clips.ref), plan, "d"), stage="clips")
    assert len(store.log()) == before + 1
    reader = Store(tmp_path / "store", mode="r")
    for group in [clips, *derived]:
        group = reader.open(group.ref)
        assert group.shape("data")[0] == group.num_rows == len(group.attrs["video_ids"]) == len(group.attrs["names"]) \
            == 3, group.ref.path
        assert (group.attrs["video_ids"], group.attrs["names"]) == (plan.video_ids, plan.names)
        assert group.completed().tolist() == [True, False, False], group.ref.path
