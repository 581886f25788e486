"""Everything training and evaluation need from the store, resolved once from the config: the splits,
the vocabularies, GloVe, the autoencoder stage's reconstruction targets, and what is held in memory."""

from __future__ import annotations

from dataclasses import dataclass, replace
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
from tasks.train.targets import KIND as TARGETS, STREAMS, config_targets_spec


@dataclass
class QAData:
    """The three splits over one text group, one clip group and one feature group (and, for the
    autoencoder stage, the stored reconstruction targets when the snapshot holds them)."""

    text: SpecGroup
    clips: SpecGroup | None
    features: SpecGroup | None
    vocab: Vocabularies
    splits: dict[str, QADataset]
    dropped: dict[str, int]  # questions per split whose video has no stored features
    glove: torch.Tensor | None
    # Not among spec_hashes: stored or derived, the targets are the same bits, so the checkpoint key
    # (and a model's lineage) does not depend on which.
    targets: SpecGroup | None = None

    def for_qa(self, clips: bool) -> "QAData":
        """The splits as the QA stage and test read them: no targets, and clips only for models that read them."""
        return replace(self, splits={name: split.select(clips=clips, targets=False)
                                     for name, split in self.splits.items()})

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


def load_qa_data(config: PipelineConfig, *, with_video: bool = True, with_clips: bool = False,
                 with_targets: bool = False, ranks_here: int = 1) -> QAData:
    """Open the groups this config names; questions whose video is not stored are set aside and counted.

    `with_clips`: the model reads the uint8 clips. `with_targets`: the autoencoder stage runs, so the
    splits carry the stored reconstruction targets, or else the clips to derive them from. `ranks_here`:
    the processes on this machine loading the same data (torchrun's local world), each its own copy.
    """
    # One snapshot for everything (store.snapshot, else the tip now): its id is the run's data lineage.
    store = open_store(config.store, mode="r")
    text = _complete_group(store, config, "text", text_spec(config.text, config.dataset.root), "text")
    clips = features = targets = None
    video_ids = usable = None
    if with_video:
        clips = _complete_group(store, config, "clips", clip_spec(config.clips), "clips")
        features = _complete_group(store, config, "features", feature_spec(config.features, clips.ref.spec_hash),
                                   "features")
        video_ids = list(features.attrs["video_ids"])
        usable = np.flatnonzero(features.completed())
        if len(usable) == 0:
            raise UserError(f"feature group {features.ref.path} holds no complete video: run `msvqa features`")
        if with_targets:
            targets = stored_targets(store, config, clips, usable)
    names = ("appearance", "motion")
    feature_arrays = clip_arrays = target_arrays = None
    if features is not None:
        feature_arrays = VideoArrays(features.ref, names,
                                     in_memory=features_in_memory(config, features.ref, names, ranks_here))
    if targets is not None:
        target_arrays = VideoArrays(targets.ref, STREAMS,
                                    in_memory=clips_in_memory(config, targets.ref, STREAMS, "reconstruction targets",
                                                              ranks_here))
    if clips is not None and (with_clips or (with_targets and targets is None)):
        clip_arrays = VideoArrays(clips.ref, names,
                                  in_memory=clips_in_memory(config, clips.ref, names, ranks=ranks_here))
    splits, dropped = {}, {}
    for split in SPLITS:
        arrays = load_split(text.ref, split, video_ids, usable)
        if with_video:
            keep = arrays.video_rows >= 0
            dropped[split] = int((~keep).sum())
            arrays = arrays.subset(keep)
        else:
            dropped[split] = 0
        splits[split] = QADataset(arrays, feature_arrays, clip_arrays, target_arrays)
    glove = torch.from_numpy(text.read("glove")) if text.has_array("glove") else None
    return QAData(text, clips, features, read_vocabularies(text.ref), splits, dropped, glove, targets)


def stored_targets(store: Store, config: PipelineConfig, clips: SpecGroup, usable: np.ndarray) -> SpecGroup | None:
    """The targets group when it holds every usable video at this snapshot; else None, and the fallback is logged."""
    group = store.peek(config.dataset.name, TARGETS, config_targets_spec(config, clips.ref.spec_hash))
    missing = len(usable) if group is None else int((~group.completed(int(usable.max()) + 1)[usable]).sum())
    if group is not None and not missing:
        run_logger().info("reconstruction targets: stored group %s", group.ref.path)
        return group
    why = "no targets group" if group is None else f"{missing} videos without targets"
    run_logger().info("reconstruction targets: derived from the clips of %s on the fly (%s at snapshot %s)",
                      clips.ref.path, why, store.snapshot_id)
    return None


def features_in_memory(config: PipelineConfig, ref, names: tuple[str, ...], ranks: int = 1) -> bool:
    """In memory when `train.features_in_memory` asks for it and it fits; else read lazily from Zarr."""
    return fits_in_memory("features", config.train.features_in_memory, "train.features_in_memory", ref, names,
                          ranks)


def clips_in_memory(config: PipelineConfig, ref, names: tuple[str, ...], what: str = "clips", ranks: int = 1) -> bool:
    """The clips (and the stored reconstruction targets) in memory when `train.clips_in_memory` asks and they fit."""
    return fits_in_memory(what, config.train.clips_in_memory, "train.clips_in_memory", ref, names, ranks)


def fits_in_memory(what: str, wanted: bool, switch: str, ref, names: tuple[str, ...], ranks: int = 1) -> bool:
    """In memory when asked for and twice the arrays fit in the available memory; else read lazily from Zarr.

    The decision is logged: a run that falls back to lazy reads is slower, and should say why.
    """
    if not wanted:
        run_logger().info("%s of %s: read lazily from the store (%s is off)", what, ref.path, switch)
        return False
    # x2: room for the batches gathered from them (features: their float32 copies). Under torchrun every
    # rank on this machine (`ranks`) decides at the same moment and holds its own copy.
    needed, available = group_nbytes(ref, names) * 2 * ranks, available_memory()
    keep = available is None or needed < available
    where = "in memory" if keep else f"read lazily from the store ({switch} is on, but they do not fit)"
    known = "unknown" if available is None else f"{available / 2**20:.0f} MiB"
    per_rank = f" for each of {ranks} ranks" if ranks > 1 else ""
    run_logger().info("%s of %s: %s; twice their size%s is %.0f MiB, MemAvailable %s", what, ref.path, where,
                      per_rank, needed / 2**20, known)
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
