"""What changed in a dataset since the store last saw it: the clip group's row plan and the change set.

Rows are positional and never move: a video keeps its row for the life of a clip group, new videos get
new rows at the end (whatever their id), a removed video keeps its row, marked incomplete and quarantined.
Readers map video ids to rows through the group's `video_ids` attribute, so rows need not be sorted.
Everything here is pure except `fingerprint_file` / `fingerprint_videos`, which stat and hash files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tasks.digest import file_sha256

MISSING_FILE = "missing file"
REMOVED = "removed from dataset"

Fingerprint = dict[str, Any]  # {"size", "mtime_ns", "sha256"}: JSON-able, kept in the clip group's attrs


def fingerprint_file(path: Path, previous: Fingerprint | None = None) -> Fingerprint:
    """Size, mtime and sha256 of a file; the recorded sha256 is trusted while size and mtime are unchanged."""
    info = Path(path).stat()
    if previous and previous.get("size") == info.st_size and previous.get("mtime_ns") == info.st_mtime_ns:
        return dict(previous)
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns,
            "sha256": file_sha256(path)}


def fingerprint_videos(videos: Iterable[Any], previous: dict[str, Fingerprint] | None) -> dict[str, Fingerprint | None]:
    """Fingerprint of each `tasks.ingest.layout.VideoEntry` by name; None where the mapping names no file."""
    previous = previous or {}
    return {v.name: (fingerprint_file(v.path, previous.get(v.name)) if v.path is not None else None) for v in videos}


class IndexConflict(ValueError):
    """The new video index gives a stored row's id another clip name (or its name another id)."""


@dataclass(frozen=True)
class IndexPlan:
    """The clip group's rows after a change, and which rows the change touches."""

    video_ids: list[int]
    names: list[str]
    files: dict[str, Fingerprint]  # what to record: the fingerprint of every row whose file was seen
    new_rows: list[int] = field(default_factory=list)  # appended: decode
    changed_rows: list[int] = field(default_factory=list)  # file changed, appeared or came back: decode again
    removed_rows: list[int] = field(default_factory=list)  # left the mapping since the last run

    def entries(self, rows: Iterable[int]) -> list[tuple[int, str]]:
        return [(self.video_ids[row], self.names[row]) for row in rows]


def plan_index(old_ids: list[int], old_names: list[str], old_files: dict[str, Fingerprint] | None,
               quarantined: dict[str, str], current: list[tuple[int, str]],
               current_files: dict[str, Fingerprint | None]) -> IndexPlan:
    """Compare the stored index (rows) with the dataset's `current` [(video id, name)] and file fingerprints.

    `old_files` None means the group predates fingerprints: its rows are trusted, only recorded now.
    Raises IndexConflict when an id and a name that share a row are no longer paired.
    """
    old = list(zip((int(i) for i in old_ids), old_names))
    id_to_name, name_to_id = dict(old), {name: vid for vid, name in old}
    clashes = [f"vid{vid}: {id_to_name[vid]} -> {name}" for vid, name in current
               if vid in id_to_name and id_to_name[vid] != name]
    clashes += [f"{name}: vid{name_to_id[name]} -> vid{vid}" for vid, name in current
                if name in name_to_id and name_to_id[name] != vid]
    if clashes:
        raise IndexConflict(f"{len(clashes)} stored videos changed identity ({'; '.join(clashes[:3])})")
    known, present = set(old), set(current)
    rows = old + [entry for entry in current if entry not in known]
    files = dict(old_files or {})
    new_rows = list(range(len(old), len(rows)))
    changed_rows, removed_rows = [], []
    for row, (vid, name) in enumerate(old):
        reason = quarantined.get(name)
        if (vid, name) not in present:
            if reason != REMOVED:
                removed_rows.append(row)
            files.pop(name, None)  # a video that comes back is decoded again, whatever its file
            continue
        now = current_files.get(name)
        if now is None:
            continue  # file gone but still mapped: stored rows stay valid, the old fingerprint stays
        before = (old_files or {}).get(name)
        if reason == REMOVED:
            changed_rows.append(row)  # back in the dataset
        elif old_files is None:
            if reason == MISSING_FILE:
                changed_rows.append(row)  # a file appeared where none was
        elif before is None or before.get("sha256") != now["sha256"]:
            changed_rows.append(row)
    for name, now in current_files.items():
        if now is not None:
            files[name] = now
    return IndexPlan([vid for vid, _ in rows], [name for _, name in rows], files, new_rows, changed_rows,
                     removed_rows)


def file_changes(previous: dict[str, str] | None, current: dict[str, str]) -> dict[str, str]:
    """{file: "new" | "changed" | "removed"} between two {file: sha256} records (None: nothing recorded)."""
    previous = previous or {}
    out = {name: "new" for name in current if name not in previous}
    out |= {name: "changed" for name in current if name in previous and previous[name] != current[name]}
    out |= {name: "removed" for name in previous if name not in current}
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class ChangeSet:
    """What reprocessing found: videos by (id, name), annotation files by name."""

    new_videos: list[tuple[int, str]]
    changed_videos: list[tuple[int, str]]
    removed_videos: list[tuple[int, str]]
    annotations: dict[str, str]

    @property
    def videos_changed(self) -> bool:
        return bool(self.new_videos or self.changed_videos or self.removed_videos)

    @property
    def empty(self) -> bool:
        return not (self.videos_changed or self.annotations)

    def counts(self) -> dict[str, int]:
        return {"new_videos": len(self.new_videos), "changed_videos": len(self.changed_videos),
                "removed_videos": len(self.removed_videos), "annotation_files": len(self.annotations)}

    def table(self) -> list[dict[str, Any]]:
        """One row per changed item, for a Prefect table artifact."""
        rows = [{"item": name, "video_id": vid, "change": change}
                for change, videos in (("new", self.new_videos), ("changed", self.changed_videos),
                                       ("removed", self.removed_videos)) for vid, name in videos]
        return rows + [{"item": name, "video_id": None, "change": change} for name, change in self.annotations.items()]


def change_set(plan: IndexPlan, annotations: dict[str, str]) -> ChangeSet:
    return ChangeSet(plan.entries(plan.new_rows), plan.entries(plan.changed_rows), plan.entries(plan.removed_rows),
                     annotations)


def should_retrain(changes: ChangeSet, min_new_videos: int | None) -> bool:
    """Retrain when configured and at least `min_new_videos` videos are new or changed (new footage to learn)."""
    return min_new_videos is not None and len(changes.new_videos) + len(changes.changed_videos) >= min_new_videos

