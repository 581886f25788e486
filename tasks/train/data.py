"""Everything training and evaluation need from the store, resolved once from the config: the splits,
the vocabularies, GloVe, and whether features are held in memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from configs.errors import UserError
from configs.schema import PipelineConfig
from storage.qa_dataset import QADataset, VideoArrays, group_nbytes, load_split
from storage.store import SpecGroup, Store, open_store
from tasks.video.clips import clip_spec
from tasks.features.extract import feature_spec
from tasks.text.annotations import SPLITS
from tasks.text.vocabulary import Vocabularies
from tasks.text.store import read_vocabularies, text_spec
from tasks.train.log import run_logger


@dataclass
class QAData:
    """The three splits over one text group, one clip group and one feature group."""

    text: SpecGroup
    clips: SpecGroup | None
    features: SpecGroup | None
    vocab: Vocabularies
    splits: dict[str, QADataset]
    dropped: dict[str, int]  # questions per split whose video has no stored features
    glove: torch.Tensor | None

    @property
    def spec_hashes(self) -> dict[str, str]:
        groups = {"text": self.text, "clips": self.clips, "features": self.features}
        return {name: g.ref.spec_hash for name, g in groups.items() if g is not None}

    @property
    def snapshot(self) -> str:
        """The store snapshot every group here is read at."""
        return str(self.text.snapshot_id)


def _complete_group(store: Store, config: PipelineConfig, kind: str, spec: dict, stage: str) -> SpecGroup:
    # Reading must not create an empty group as a side effect, so peek instead of spec_group.
    group = store.peek(config.dataset.name, kind, spec)
    ready = group is not None and (group.attrs.get("complete") if kind == "text" else group.has_array("complete"))
    if not ready:
        raise UserError(f"store {config.store.path} has no {kind} for this config yet: run `msvqa {stage}` first")
    return group


def load_qa_data(config: PipelineConfig, *, with_video: bool = True, with_clips: bool = False) -> QAData:
    """Open the groups this config names; questions whose video is not stored are set aside and counted."""
    # One snapshot for everything (store.snapshot, else the tip now): its id is the run's data lineage.
    store = open_store(config.store, mode="r")
    text = _complete_group(store, config, "text", text_spec(config.text, config.dataset.root), "text")
    clips = features = None
    video_ids = usable = None
    if with_video:
        clips = _complete_group(store, config, "clips", clip_spec(config.clips), "clips")
        features = _complete_group(store, config, "features", feature_spec(config.features, clips.ref.spec_hash),
                                   "features")
        video_ids = list(features.attrs["video_ids"])
        usable = np.flatnonzero(features.completed())
        if len(usable) == 0:
            raise UserError(f"feature group {features.ref.path} holds no complete video: run `msvqa features`")
    feature_arrays = None
    if features is not None:
        names = ("appearance", "motion")
        feature_arrays = VideoArrays(features.ref, names, in_memory=features_in_memory(config, features.ref, names))
    clip_arrays = VideoArrays(clips.ref, ("appearance", "motion"), in_memory=False) if (with_clips and clips) else None
    splits, dropped = {}, {}
    for split in SPLITS:
        arrays = load_split(text.ref, split, video_ids, usable)
        if with_video:
            keep = arrays.video_rows >= 0
            dropped[split] = int((~keep).sum())
            arrays = arrays.subset(keep)
        else:
            dropped[split] = 0
        splits[split] = QADataset(arrays, feature_arrays if with_video else None, clip_arrays)
    glove = torch.from_numpy(text.read("glove")) if text.has_array("glove") else None
    return QAData(text, clips, features, read_vocabularies(text.ref), splits, dropped, glove)


def features_in_memory(config: PipelineConfig, ref, names: tuple[str, ...]) -> bool:
    """In memory when asked for and it fits in half the available memory; else read lazily from Zarr.

    The decision is logged: a run that falls back to lazy reads is slower, and should say why.
    """
    if not config.train.features_in_memory:
        return False
    needed, available = group_nbytes(ref, names) * 2, available_memory()  # x2: float32 copies while batching
    keep = available is None or needed < available
    where = "in memory" if keep else "read lazily from the store (train.features_in_memory is on, but they do not fit)"
    known = "unknown" if available is None else f"{available / 2**20:.0f} MiB"
    run_logger().info("features of %s: %s; twice their size is %.0f MiB, MemAvailable %s", ref.path, where,
                      needed / 2**20, known)
    return keep


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes the kernel can hand out without swapping (Linux MemAvailable); None where it does not say.

    Not free pages: after the clip stage the page cache holds most of the memory, and the kernel gives
    it back on demand, so free pages alone would send every large run to lazy reads.
    """
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    return None
