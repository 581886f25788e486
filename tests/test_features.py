"""The feature unit of work: deterministic on CPU, one row per video, spec records the weights."""

from __future__ import annotations

import os

import numpy as np
import torch

from configs.schema import BackboneConfig, FeaturesConfig
from models.backbones import build_backbone
from storage.store import Store
from tasks.features.extract import clear_backbone_cache, extract_video, feature_spec, load_backbone, prepare_feature_group, process_feature_rows
from tasks.features.weights import save_backbone_weights

CFG = FeaturesConfig(appearance=BackboneConfig(backbone="tiny2d", normalization="unit"),
                     motion=BackboneConfig(backbone="tiny3d", normalization="unit"), device="cpu", seed=5)


def _clips(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8))


def test_features_are_deterministic_and_shaped():
    app, mot = _clips(0)
    first = extract_video(app, mot, CFG, "cpu")
    clear_backbone_cache()  # a fresh worker builds the random-init backbones again from the seed
    second = extract_video(app, mot, CFG, "cpu")
    assert first[0].shape == (2, 3, 128) and first[1].shape == (2, 128)
    assert first[0].dtype == np.float16
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    other = extract_video(*_clips(1), CFG, "cpu")
    assert not np.array_equal(first[0], other[0])


def test_rows_written_by_workers_match_direct_extraction(tmp_path):
    store = Store(tmp_path / "s.zarr")
    clips = store.spec_group("d", "clips", {"k": 1})
    clips.ensure_array("appearance", (3, 2, 3, 32, 32, 3), "uint8", chunks=(1, 2, 3, 32, 32, 3))
    clips.ensure_array("motion", (3, 2, 3, 16, 16, 3), "uint8", chunks=(1, 2, 3, 16, 16, 3))
    for row in range(3):
        app, mot = _clips(row)
        clips.write("appearance", app, row=row)
        clips.write("motion", mot, row=row)
    features = store.spec_group("d", "features", feature_spec(CFG, clips.ref.spec_hash))
    prepare_feature_group(features, 3, 2, 3, (128, 128))
    assert process_feature_rows(clips.ref, features.ref, [2, 0], CFG) == [2, 0]
    expected = extract_video(*_clips(2), CFG, "cpu")
    assert np.array_equal(features.read("appearance", 2), expected[0])
    assert np.array_equal(features.read("motion", 2), expected[1])
    assert not features.read("appearance", 1).any()  # untouched row stays empty, and is not complete
    assert not features.completed().any()


def test_spec_records_weights_checksum(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w.pt"
    sha = save_backbone_weights(load_backbone("tiny2d", "", 0, "cpu"), path, backbone="tiny2d")
    cfg = CFG.model_copy(update={"appearance": BackboneConfig(backbone="tiny2d", weights=path, normalization="unit")})
    spec = feature_spec(cfg, "abc")
    assert spec["appearance"]["weights_sha256"] == sha
    assert spec["motion"]["weights_sha256"] is None
    assert spec["clips"] == "abc"


def test_a_weights_file_replaced_at_the_same_path_gives_the_new_backbone(tmp_path):
    path = tmp_path / "tiny2d.pt"
    torch.manual_seed(1)
    first = build_backbone("tiny2d")
    save_backbone_weights(first, path, backbone="tiny2d")
    frames = torch.rand(2, 3, 16, 16)

    def features() -> torch.Tensor:
        with torch.inference_mode():
            return load_backbone("tiny2d", str(path), 0, "cpu")(frames)

    clear_backbone_cache()
    with torch.inference_mode():
        assert torch.equal(features(), first.eval()(frames))
    torch.manual_seed(2)
    second = build_backbone("tiny2d")
    replacement = tmp_path / "new.pt"
    save_backbone_weights(second, replacement, backbone="tiny2d")
    os.replace(replacement, path)  # a new file under the old name, as a deploy would leave it
    with torch.inference_mode():
        assert torch.equal(features(), second.eval()(frames))
        assert not torch.equal(features(), first(frames))
    clear_backbone_cache()
