"""The MSVD-QA folder layout: the video index from youtube_mapping.txt and one report of what is missing."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from configs.errors import UserError
from tasks.text.annotations import SPLITS

VIDEO_EXTENSIONS = (".avi", ".mp4", ".webm", ".mkv", ".mov")
_MAPPING_LINE = re.compile(r"^(\S+)\s+vid(\d+)$")


@dataclass(frozen=True)
class VideoEntry:
    video_id: int
    name: str  # the clip's file stem, e.g. "-4wsuPCjDBc_5_15"
    path: Path | None  # None when the file is not in video/


@dataclass
class LayoutReport:
    root: Path
    videos: list[VideoEntry]
    missing_files: list[str] = field(default_factory=list)  # required files or folders absent
    missing_videos: list[int] = field(default_factory=list)  # mapped video ids whose file is absent
    # Questions about a video id that youtube_mapping.txt lacks are set aside like questions about a
    # missing file (no video row, so training drops them); counted here so the run reports them.
    unmapped_video_ids: list[int] = field(default_factory=list)  # video ids not in youtube_mapping.txt
    unmapped_questions: dict[int, int] = field(default_factory=dict)  # such video id -> its question count

    @property
    def ok(self) -> bool:
        return not self.missing_files

    def summary(self) -> str:
        parts = [f"{len(self.videos)} videos in the mapping"]
        if self.missing_files:
            parts.append("missing: " + ", ".join(self.missing_files))
        if self.missing_videos:
            parts.append(f"{len(self.missing_videos)} videos of the mapping have no file in video/")
        if self.unmapped_video_ids:
            parts.append(f"{sum(self.unmapped_questions.values())} questions about {len(self.unmapped_video_ids)} "
                         "video ids not in youtube_mapping.txt are set aside")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "videos": len(self.videos),
            "videos_present": sum(1 for v in self.videos if v.path is not None),
            "missing_files": self.missing_files,
            "missing_videos": self.missing_videos,
            "unmapped_video_ids": self.unmapped_video_ids,
            "unmapped_questions": sum(self.unmapped_questions.values()),
        }

    def unmapped_table(self) -> list[dict]:
        """One row per video id that questions name but the mapping lacks (a Prefect table artifact)."""
        return [{"video_id": vid, "questions": self.unmapped_questions.get(vid, 0),
                 "reason": "not in youtube_mapping.txt"} for vid in self.unmapped_video_ids]


def has_dataset(root: Path) -> bool:
    """True when `root` looks like an MSVD-QA folder (annotations, mapping and video/ present)."""
    return (root / "youtube_mapping.txt").is_file() and (root / "video").is_dir() and all(
        (root / f"{split}_qa.json").is_file() for split in SPLITS
    )


def read_mapping(path: Path) -> list[tuple[int, str]]:
    """youtube_mapping.txt -> [(video_id, name)] sorted by video id."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = _MAPPING_LINE.match(line.strip())
        if not match:
            raise UserError(f"{path} line {number} is not '<clip name> vid<N>': {line[:80]!r}")
        entries.append((int(match.group(2)), match.group(1)))
    return sorted(entries)


def find_video_files(video_dir: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(video_dir.iterdir()) if video_dir.is_dir() else []:
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.stem not in files:
            files[path.stem] = path
    return files


def question_video_ids(root: Path) -> Counter[int]:
    """Video id -> number of questions about it, over every split."""
    ids: Counter[int] = Counter()
    for split in SPLITS:
        path = root / f"{split}_qa.json"
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{path} is not a readable JSON file ({exc.__class__.__name__})") from exc
        ids.update(int(r["video_id"]) for r in records if isinstance(r, dict) and "video_id" in r)
    return ids


def validate_layout(root: Path, max_videos: int | None = None) -> LayoutReport:
    """Check the MSVD-QA layout and list every problem at once instead of failing on the first."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset.root {root} is not a folder")
    required = [f"{s}_qa.json" for s in SPLITS] + ["youtube_mapping.txt", "video/"]
    missing = [name for name in required if not (root / name.rstrip("/")).exists()]
    if "youtube_mapping.txt" in missing:
        raise UserError(f"dataset.root {root} has no youtube_mapping.txt (missing: {', '.join(missing)})")
    files = find_video_files(root / "video")
    mapping = read_mapping(root / "youtube_mapping.txt")
    if max_videos is not None:
        mapping = mapping[:max_videos]
    videos = [VideoEntry(vid, name, files.get(name)) for vid, name in mapping]
    report = LayoutReport(root=root, videos=videos, missing_files=missing,
                          missing_videos=[v.video_id for v in videos if v.path is None])
    if not any(name.endswith(".json") for name in missing):
        all_mapped = {vid for vid, _ in read_mapping(root / "youtube_mapping.txt")}
        asked = question_video_ids(root)
        report.unmapped_video_ids = sorted(set(asked) - all_mapped)
        report.unmapped_questions = {vid: asked[vid] for vid in report.unmapped_video_ids}
    return report
