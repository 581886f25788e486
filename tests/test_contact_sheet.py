"""Contact sheets, raw dumps and VIDEO resolution for `msvqa store show`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from configs.errors import UserError
from configs.schema import ClipsConfig, PipelineConfig, StoreConfig
from storage.store import Store
from tasks.video.clips import clip_spec, prepare_clip_group
from tasks.video.contact_sheet import contact_sheet, resolve_video, save_clip_view, show_clip

ATTRS = {"video_ids": [1, 7, 12], "names": ["-4wsuPCjDBc_5_15", "12", "zz_0_3"]}


def _frames(c: int, f: int, h: int, w: int) -> np.ndarray:
    """Tile (k, j) is filled with 10 * k + j, so every tile is recognisable."""
    values = (10 * np.arange(c)[:, None] + np.arange(f)[None, :]).astype(np.uint8)
    return np.broadcast_to(values[:, :, None, None, None], (c, f, h, w, 3)).copy()


def test_contact_sheet_layout() -> None:
    sheet = contact_sheet(_frames(2, 3, 2, 4))
    assert sheet.shape == (2 * 2 + 2, 3 * 4 + 2 * 2, 3) and sheet.dtype == np.uint8
    assert sheet[0:2, 0:4].tolist() == np.full((2, 4, 3), 0).tolist()
    assert sheet[0:2, 6:10].tolist() == np.full((2, 4, 3), 1).tolist()
    assert sheet[4:6, 12:16].tolist() == np.full((2, 4, 3), 12).tolist()
    assert (sheet[2:4] == 255).all() and (sheet[:, 4:6] == 255).all() and (sheet[:, 10:12] == 255).all()
    assert int((sheet != 255).all(axis=2).sum()) == 2 * 3 * 2 * 4  # every other pixel is a frame pixel


def test_contact_sheet_single_tile_has_no_gap() -> None:
    assert contact_sheet(_frames(1, 1, 3, 5)).shape == (3, 5, 3)
    with pytest.raises(ValueError, match=r"uint8 \[clips, frames, H, W, 3\]"):
        contact_sheet(np.zeros((2, 2, 4, 4, 3), dtype=np.float32))


def test_save_clip_view_png_npy_and_bad_suffix(tmp_path: Path) -> None:
    frames = _frames(2, 2, 3, 3)
    png = save_clip_view(frames, tmp_path / "out" / "a.png")
    assert np.array_equal(np.asarray(Image.open(png)), contact_sheet(frames))
    npy = save_clip_view(frames, tmp_path / "a.npy")
    loaded = np.load(npy)
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, frames)
    with pytest.raises(UserError, match=r"a\.jpg: the file name must end in \.png .* or \.npy"):
        save_clip_view(frames, tmp_path / "a.jpg")
    assert not (tmp_path / "a.jpg").exists()


@pytest.mark.parametrize(("video", "row"), [
    ("-4wsuPCjDBc_5_15", 0), ("zz_0_3", 2), ("1", 0), ("vid7", 1), ("vid12", 2),
    ("12", 1),  # a name that looks like an id wins over the id
])
def test_resolve_video(video: str, row: int) -> None:
    assert resolve_video(ATTRS, video) == row


@pytest.mark.parametrize("video", ["2", "vid2", "-4wsuPCjDBc", "video1", ""])
def test_resolve_video_unknown(video: str) -> None:
    with pytest.raises(UserError, match=r"is not in the clip group \(3 videos\).*msvqa store info"):
        resolve_video(ATTRS, video)


def test_show_clip_reads_the_configs_group(tmp_path: Path) -> None:
    clips = ClipsConfig(num_clips=2, frames_per_clip=2, appearance_size=12, motion_size=8)
    cfg = PipelineConfig(store=StoreConfig(path=tmp_path / "store.zarr"), clips=clips)
    with pytest.raises(UserError, match="does not exist yet"):
        show_clip(cfg, "vid1", "appearance", tmp_path / "x.png")
    group = Store(cfg.store.path).spec_group(cfg.dataset.name, "clips", clip_spec(clips))
    group.update_attrs(**ATTRS)
    prepare_clip_group(group, clips, 3)
    motion = (np.arange(2 * 2 * 8 * 8 * 3) % 251).astype(np.uint8).reshape(2, 2, 8, 8, 3)
    group.write("motion", motion, row=1)
    group.mark_complete([1])
    group.quarantine({"zz_0_3": "truncated"})

    result = show_clip(cfg, "vid7", "motion", tmp_path / "m.npy")
    assert result == {"video": "12", "video_id": 7, "row": 1, "stream": "motion", "shape": [2, 2, 8, 8, 3],
                      "out": str(tmp_path / "m.npy")}
    assert np.array_equal(np.load(tmp_path / "m.npy"), motion)
    with pytest.raises(UserError, match=r"'zz_0_3' has no stored clips .* \(truncated\)"):
        show_clip(cfg, "zz_0_3", "motion", tmp_path / "z.png")
    with pytest.raises(UserError, match=r"'-4wsuPCjDBc_5_15' has no stored clips .* \(not decoded yet\)"):
        show_clip(cfg, "1", "appearance", tmp_path / "a.png")
    with pytest.raises(UserError, match="--stream 'audio'"):
        show_clip(cfg, "1", "audio", tmp_path / "a.png")
    other = cfg.model_copy(update={"clips": ClipsConfig(num_clips=4, frames_per_clip=2)})
    with pytest.raises(UserError, match="has no clip group for this config's clips settings"):
        show_clip(other, "1", "motion", tmp_path / "a.png")
