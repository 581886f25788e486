"""Look at what the clip store holds for one video: a contact sheet image or the raw array."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from configs.errors import UserError
from configs.schema import PipelineConfig
from storage.store import open_store, spec_hash, store_exists
from tasks.video.clips import APPEARANCE, MOTION, clip_spec

GAP = 2  # pixels between tiles
GAP_VALUE = 255  # white, so dark frames stay distinguishable from the gaps
_VIDEO_ID = re.compile(r"^(?:vid)?(\d+)$")


def contact_sheet(frames: np.ndarray) -> np.ndarray:
    """[c, f, H, W, 3] uint8 -> one [c*H + (c-1)*GAP, f*W + (f-1)*GAP, 3] image: clips as rows, frames as columns."""
    if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [clips, frames, H, W, 3], got {frames.dtype} {frames.shape}")
    c, f, h, w, _ = frames.shape
    sheet = np.full((c * h + (c - 1) * GAP, f * w + (f - 1) * GAP, 3), GAP_VALUE, dtype=np.uint8)
    for row in range(c):
        for column in range(f):
            top, left = row * (h + GAP), column * (w + GAP)
            sheet[top:top + h, left:left + w] = frames[row, column]
    return sheet


def save_clip_view(frames: np.ndarray, out: Path) -> Path:
    """Write `frames` [c, f, H, W, 3] as a contact sheet (.png) or as the raw array (.npy)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise UserError(f"--out {out}: the file name must end in .png (contact sheet) or .npy (raw array)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        Image.fromarray(contact_sheet(frames)).save(out)
    else:
        np.save(out, frames)
    return out


def resolve_video(group_attrs: dict, video: str) -> int:
    """The clip group's row of VIDEO: a file stem ('-4wsuPCjDBc_5_15') or a video id ('1' or 'vid1')."""
    names = list(group_attrs.get("names") or [])
    video_ids = [int(v) for v in group_attrs.get("video_ids") or []]
    if video in names:  # names first: a stem may look like a number
        return names.index(video)
    match = _VIDEO_ID.match(video)
    if match and int(match.group(1)) in video_ids:
        return video_ids.index(int(match.group(1)))
    raise UserError(f"video {video!r} is not in the clip group ({len(names)} videos): give a file stem from "
                    "dataset.root/video/ or a vid<N> id from youtube_mapping.txt; `msvqa store info CONFIG` "
                    "shows which clip groups exist")


def show_clip(cfg: PipelineConfig, video: str, stream: str, out: Path) -> dict:
    """Save one video's stored clips of `stream` ('appearance' or 'motion') to `out`; what the CLI prints."""
    if stream not in (APPEARANCE, MOTION):
        raise UserError(f"--stream {stream!r}: expected 'appearance' or 'motion'")
    path = cfg.store.path
    if not store_exists(path, cfg.store.endpoint_url, cfg.store.region):
        raise UserError(f"store.path {path} does not exist yet: run `msvqa clips` first")
    group_path = f"{cfg.dataset.name}/clips/{spec_hash(clip_spec(cfg.clips))}"
    try:
        group = open_store(cfg.store, mode="r").open(group_path)
    except KeyError:
        raise UserError(f"store {path} has no clip group for this config's clips settings ({group_path}): "
                        "run `msvqa clips` first") from None
    row = resolve_video(group.attrs, video)
    name = group.attrs["names"][row]
    if not group.completed()[row]:
        reason = group.quarantined().get(name, "not decoded yet")
        raise UserError(f"video {name!r} has no stored clips in {path}/{group_path} ({reason})")
    frames = group.read(stream, row)
    save_clip_view(frames, out)
    return {"video": name, "video_id": int(group.attrs["video_ids"][row]), "row": row, "stream": stream,
            "shape": list(frames.shape), "out": str(out)}

