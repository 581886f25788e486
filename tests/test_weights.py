"""Checkpoint reading, format detection, key checks and round trips into backbones."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torchvision

from configs.errors import UserError
from models.backbones import build_backbone
from tasks.features.weights import (
    WeightsError,
    inspect_checkpoint,
    load_backbone_weights,
    save_backbone_weights,
)


def _seeded(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_backbone(name)
    # Non-default BatchNorm statistics, so a round trip that skipped buffers would show.
    for key, buffer in model.state_dict().items():
        if key.endswith("running_mean"):
            buffer.normal_()
        elif key.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    return model.eval()


def _hara_checkpoint(state: dict[str, torch.Tensor], classes: int, feature_dim: int) -> dict:
    """What Hara et al.'s 2017 code saved: DataParallel keys, no BN counters, the classifier, an optimizer."""
    weights = {"module." + k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    weights["module.fc.weight"] = torch.randn(classes, feature_dim)
    weights["module.fc.bias"] = torch.randn(classes)
    return {
        "epoch": 200,
        "arch": "resnext-101",
        "state_dict": weights,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]},
    }


@pytest.fixture
def hara_resnet18_3d(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    source = _seeded("resnet18_3d", seed=1)
    path = tmp_path / "resnet-18-kinetics.pth"
    # 2017 files predate the zip format; weights_only must still read them.
    torch.save(_hara_checkpoint(source.state_dict(), 400, 512), path, _use_new_zipfile_serialization=False)
    return path, source


def test_hara_checkpoint_round_trip_gives_identical_outputs(hara_resnet18_3d: tuple[Path, torch.nn.Module]) -> None:
    path, source = hara_resnet18_3d
    target = _seeded("resnet18_3d", seed=2)
    clip = torch.randn(1, 3, 8, 32, 32)
    with torch.inference_mode():
        assert not torch.allclose(target(clip), source(clip))
        report = load_backbone_weights(target, path)
        torch.testing.assert_close(target(clip), source(clip), rtol=0, atol=0)
    assert report.ok and report.format == "hara_checkpoint"
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.unexpected == []
    assert "bn1.num_batches_tracked" in report.defaulted
    assert report.matched == len(source.state_dict()) - len(report.defaulted)
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_resnext101_3d_loads_the_published_checkpoint_layout(tmp_path: Path) -> None:
    model = build_backbone("resnext101_3d")
    # One distinct constant per tensor, stored as a 1-element expanded view: full key set and
    # shapes in a tiny file, and each value proves which parameter the key landed in.
    fake = {k: torch.full((), float(i)).expand(v.shape) for i, (k, v) in enumerate(model.state_dict().items())}
    path = tmp_path / "resnext-101-kinetics.pth"
    torch.save(_hara_checkpoint(fake, 400, 2048), path)

    report = load_backbone_weights(model, path)

    assert report.ok and sorted(report.ignored) == ["fc.bias", "fc.weight"]
    assert len(report.defaulted) == sum(k.endswith("num_batches_tracked") for k in fake)
    loaded = model.state_dict()
    for i, key in enumerate(fake):
        if not key.endswith("num_batches_tracked"):
            assert loaded[key].flatten()[0].item() == float(i), key
    assert inspect_checkpoint("resnext101_3d", path).ok


def test_torchvision_state_dict_loads_into_resnet18_trunk(tmp_path: Path) -> None:
    torch.manual_seed(5)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(reference.state_dict(), path)
    trunk = _seeded("resnet18", seed=6)

    report = load_backbone_weights(trunk, path)

    assert report.format == "torchvision_state_dict" and report.ok
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"] and report.defaulted == []
    reference.fc = torch.nn.Identity()
    # The same memory layout as msvqa's backbones, so the same kernels run and the outputs are bit-equal.
    reference = reference.to(memory_format=torch.channels_last)
    image = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(trunk(image), reference(image), rtol=0, atol=0)


def test_msvqa_format_round_trip(tmp_path: Path) -> None:
    source = _seeded("tiny3d", seed=7)
    path = tmp_path / "sub" / "tiny3d.pt"
    digest = save_backbone_weights(source, path, backbone="tiny3d")
    target = _seeded("tiny3d", seed=8)
    report = load_backbone_weights(target, path)
    assert report.format == "msvqa" and report.sha256 == digest
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def _save_state(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(state, path)
    return path


def _unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_mis_shaped_key_is_refused_and_named(tmp_path: Path) -> None:
    state = _seeded("tiny2d", seed=1).state_dict()
    state["features.2.weight"] = torch.zeros(32, 16, 5, 5)
    path = _save_state(tmp_path / "bad.pt", state)
    target = _seeded("tiny2d", seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        load_backbone_weights(target, path)
    message = str(info.value)
    assert "1 mis-shaped key: features.2.weight (file [32, 16, 5, 5] vs model [32, 16, 3, 3])" in message
    assert str(path) in message
    assert _unchanged(target, before)


def test_missing_key_is_refused_and_named(tmp_path: Path) -> None:
    state = _seeded("tiny2d", seed=1).state_dict()
    del state["features.4.bias"]
    path = _save_state(tmp_path / "bad.pt", state)
    with pytest.raises(WeightsError, match=r"1 missing key: features\.4\.bias"):
        load_backbone_weights(_seeded("tiny2d", seed=2), path)


def test_unexpected_key_is_refused_and_named(tmp_path: Path) -> None:
    state = _seeded("tiny2d", seed=1).state_dict()
    state["head.weight"] = torch.zeros(3)
    path = _save_state(tmp_path / "bad.pt", state)
    with pytest.raises(WeightsError, match=r"1 unexpected key: head\.weight"):
        load_backbone_weights(_seeded("tiny2d", seed=2), path)


def test_long_key_lists_are_cut_with_a_count(tmp_path: Path) -> None:
    # A 2D ResNet file for the 3D ResNet: every conv is mis-shaped, and there are too many to list.
    torch.manual_seed(0)
    path = _save_state(tmp_path / "resnet18.pth", torchvision.models.resnet18(weights=None).state_dict())
    with pytest.raises(WeightsError) as info:
        load_backbone_weights(build_backbone("resnet18_3d"), path, backbone="resnet18_3d")
    message = str(info.value)
    assert "does not fit resnet18_3d" in message
    # 17 convolutions with 2D kernels; shortcut A has no projection for the 18 downsample.* entries.
    assert "17 mis-shaped keys: conv1.weight (file [64, 3, 7, 7] vs model [64, 3, 7, 7, 7])" in message
    assert "layer3.0.conv1.weight (file [256, 128, 3, 3] vs model [256, 128, 3, 3, 3]) ... and 7 more" in message
    assert "18 unexpected keys: layer2.0.downsample.0.weight" in message and "... and 8 more" in message


def test_non_strict_loads_what_fits_and_reports_the_rest(tmp_path: Path) -> None:
    source = _seeded("tiny2d", seed=1)
    state = source.state_dict()
    del state["features.0.weight"]
    path = _save_state(tmp_path / "partial.pt", state)
    target = _seeded("tiny2d", seed=2)
    report = load_backbone_weights(target, path, strict=False)
    assert report.missing == ["features.0.weight"] and not report.ok
    torch.testing.assert_close(target.state_dict()["features.2.weight"], state["features.2.weight"])
    assert not torch.equal(target.state_dict()["features.0.weight"], source.state_dict()["features.0.weight"])


@pytest.mark.parametrize(
    "write",
    [
        lambda p: p.write_text("not a checkpoint\n"),
        lambda p: torch.save([torch.zeros(2)], p),
        lambda p: torch.save({"epoch": 3, "arch": "resnext-101"}, p),
        lambda p: torch.save({}, p),
    ],
    ids=["text", "list", "no-state-dict", "empty"],
)
def test_a_file_that_is_not_a_checkpoint_is_refused_by_name(tmp_path: Path, write) -> None:
    path = tmp_path / "weights.pth"
    write(path)
    with pytest.raises(WeightsError, match="weights.pth"):
        load_backbone_weights(build_backbone("tiny2d"), path)
    with pytest.raises(WeightsError, match="weights.pth"):
        inspect_checkpoint("tiny2d", path)


def test_missing_file_is_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone_weights(build_backbone("tiny2d"), tmp_path / "absent.pth")


def test_weights_error_is_a_user_error_and_a_value_error() -> None:
    assert issubclass(WeightsError, ValueError) and issubclass(WeightsError, UserError)


def test_inspect_reports_a_wrong_backbone_without_raising(hara_resnet18_3d: tuple[Path, torch.nn.Module]) -> None:
    path, _ = hara_resnet18_3d
    assert inspect_checkpoint("resnet18_3d", path).ok
    report = inspect_checkpoint("tiny3d", path)
    assert not report.ok
    assert "features.0.weight" in report.missing and "layer1.0.conv1.weight" in report.unexpected
    summary = report.to_dict()
    assert summary["format"] == "hara_checkpoint" and summary["backbone"] == "tiny3d" and not summary["ok"]
