"""Backbones: names, shapes, parameter counts against the reference architectures, normalisation values."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision

from models.backbones import BACKBONE_NAMES, NormalizeClips, NormalizeInput, build_backbone
from models.backbones.normalize import SCHEMES
from models.backbones.resnext3d import ZeroPadShortcut, resnet18_3d

# ---------------------------------------------------------------- registry and shapes


def test_unknown_backbone_lists_the_known_names() -> None:
    with pytest.raises(ValueError, match="resnext101_3d") as info:
        build_backbone("resnet1O1")
    assert "resnet1O1" in str(info.value)


@pytest.mark.parametrize(
    ("name", "kind", "out_dim", "input_size", "normalization"),
    [
        ("resnet101", "2d", 2048, 224, "imagenet"),
        ("resnet50", "2d", 2048, 224, "imagenet"),
        ("resnet18", "2d", 512, 224, "imagenet"),
        ("resnext101_3d", "3d", 2048, 112, "hara"),
        ("resnet18_3d", "3d", 512, 112, "hara"),
        ("tiny2d", "2d", 128, 64, "unit"),
        ("tiny3d", "3d", 128, 64, "unit"),
    ],
)
def test_backbone_interface_and_output_shape(
    name: str, kind: str, out_dim: int, input_size: int, normalization: str
) -> None:
    # Meta tensors check every shape through the whole forward without computing anything.
    with torch.device("meta"):
        model = build_backbone(name)
        shape = (2, 3, 16, input_size, input_size) if kind == "3d" else (2, 3, input_size, input_size)
        out = model(torch.empty(shape))
    assert (model.kind, model.out_dim, model.input_size, model.normalization) == (
        kind,
        out_dim,
        input_size,
        normalization,
    )
    assert model.normalization in SCHEMES
    assert out.shape == (2, out_dim)


def test_registry_covers_the_names() -> None:
    assert set(BACKBONE_NAMES) == {"resnet101", "resnet50", "resnet18", "resnext101_3d", "resnet18_3d", "tiny2d", "tiny3d"}


# ---------------------------------------------------------------- 2D ResNets vs torchvision


@pytest.mark.parametrize("name", ["resnet101", "resnet18"])
def test_resnet_trunk_is_torchvision_without_fc(name: str) -> None:
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None)
        trunk = build_backbone(name)
    reference_keys = {k for k in reference.state_dict() if not k.startswith("fc.")}
    assert set(trunk.state_dict()) == reference_keys
    fc_params = reference.fc.weight.numel() + reference.fc.bias.numel()
    assert sum(p.numel() for p in trunk.parameters()) == sum(p.numel() for p in reference.parameters()) - fc_params


def test_resnet18_trunk_computes_torchvision_pool5() -> None:
    reference = torchvision.models.resnet18(weights=None).eval()
    trunk = build_backbone("resnet18").eval()
    trunk.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")})
    reference.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(trunk(x), reference(x))


# ---------------------------------------------------------------- 3D ResNeXt-101 (Hara et al. 2017)


def reference_resnext101_3d_parameters() -> int:
    """Parameter count derived from the 2017 code's layer widths, independently of the module."""
    total = 3 * 64 * 7**3 + 2 * 64  # stem conv 7x7x7 and its BatchNorm
    in_channels = 64
    for planes, blocks in zip((128, 256, 512, 1024), (3, 4, 23, 3)):
        inner, out = 32 * (planes // 32), planes * 2
        for index in range(blocks):
            total += in_channels * inner + 2 * inner  # 1x1x1 + BN
            total += inner * (inner // 32) * 27 + 2 * inner  # grouped 3x3x3 (32 groups) + BN
            total += inner * out + 2 * out  # 1x1x1 + BN
            if index == 0:
                total += in_channels * out + 2 * out  # shortcut B projection + BN
            in_channels = out
    return total


@pytest.fixture(scope="module")
def resnext() -> torch.nn.Module:
    return build_backbone("resnext101_3d").eval()


def test_resnext101_3d_parameter_count(resnext: torch.nn.Module) -> None:
    assert reference_resnext101_3d_parameters() == 47_521_216
    # Plus the 2048x400 Kinetics classifier this is the paper's 48.3M.
    assert sum(p.numel() for p in resnext.parameters()) == 47_521_216


def test_resnext101_3d_names_and_shapes_match_the_checkpoint_layout(resnext: torch.nn.Module) -> None:
    shapes = {k: tuple(v.shape) for k, v in resnext.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7, 7)
    assert shapes["layer1.0.conv1.weight"] == (128, 64, 1, 1, 1)
    assert shapes["layer1.0.conv2.weight"] == (128, 4, 3, 3, 3)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1, 1)
    assert shapes["layer1.0.downsample.1.running_var"] == (256,)
    assert shapes["layer3.22.conv3.weight"] == (1024, 512, 1, 1, 1)
    assert "layer3.23.conv1.weight" not in shapes
    assert shapes["layer4.2.bn3.weight"] == (2048,)
    assert not any(k.startswith("fc.") for k in shapes)


@pytest.mark.parametrize("clip", [(4, 32, 32), (8, 48, 64)])
def test_resnext101_3d_accepts_other_clip_sizes(resnext: torch.nn.Module, clip: tuple[int, int, int]) -> None:
    with torch.inference_mode():
        out = resnext(torch.randn(1, 3, *clip))
    assert out.shape == (1, 2048)
    assert torch.isfinite(out).all()


def test_resnet18_3d_shortcuts() -> None:
    type_a = resnet18_3d("A")
    type_b = resnet18_3d("B")
    assert not any("downsample" in k for k in type_a.state_dict())
    assert type_b.state_dict()["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1, 1)
    with torch.inference_mode():
        assert type_a.eval()(torch.randn(2, 3, 8, 32, 32)).shape == (2, 512)


def test_zero_pad_shortcut_strides_and_pads() -> None:
    x = torch.randn(1, 2, 4, 5, 5)
    out = ZeroPadShortcut(out_channels=5, stride=2)(x)
    assert out.shape == (1, 5, 2, 3, 3)
    torch.testing.assert_close(out[:, :2], x[:, :, ::2, ::2, ::2])
    assert (out[:, 2:] == 0).all()


# ---------------------------------------------------------------- tiny random nets


def _square_clip(xs: list[int], y: int, size: int = 64, side: int = 12) -> torch.Tensor:
    clip = torch.zeros(len(xs), size, size, 3, dtype=torch.uint8)  # [T, H, W, 3]
    for t, x in enumerate(xs):
        clip[t, y : y + side, x : x + side] = 255
    return clip


@pytest.mark.parametrize("name", ["tiny2d", "tiny3d"])
def test_tiny_init_follows_torch_seed(name: str) -> None:
    torch.manual_seed(3)
    first = build_backbone(name).state_dict()
    torch.manual_seed(3)
    again = build_backbone(name).state_dict()
    torch.manual_seed(4)
    other = build_backbone(name).state_dict()
    for key in first:
        torch.testing.assert_close(first[key], again[key])
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_tiny2d_features_tell_where_an_object_is() -> None:
    torch.manual_seed(0)
    model, normalize = build_backbone("tiny2d").eval(), NormalizeInput("unit")
    frames = torch.stack([_square_clip([4], y=4)[0], _square_clip([48], y=48)[0]])  # top-left, bottom-right
    with torch.inference_mode():
        features = model(normalize(frames))  # [2, 128]
    grid_gap = (features[0] - features[1]).norm() / features[0].norm()
    # What a globally pooled net would see: the mean over the 2x2 grid cells.
    pooled = features.view(2, -1, 4).mean(-1)
    global_gap = (pooled[0] - pooled[1]).norm() / pooled[0].norm()
    assert grid_gap > 0.05
    assert grid_gap > 3 * global_gap


def test_tiny3d_features_tell_which_way_an_object_moves() -> None:
    torch.manual_seed(0)
    model, normalize = build_backbone("tiny3d").eval(), NormalizeClips("unit")
    xs = list(range(4, 52, 3))
    # Same positions visited, opposite order: only the direction of motion differs.
    clips = torch.stack([_square_clip(xs, y=24), _square_clip(xs[::-1], y=24)])
    with torch.inference_mode():
        features = model(normalize(clips))
    assert (features[0] - features[1]).norm() / features[0].norm() > 0.01


# ---------------------------------------------------------------- normalisation


def _pixels() -> torch.Tensor:
    # [1, 1, 2, 3] uint8: two pixels, (0, 128, 255) and (255, 0, 51).
    return torch.tensor([[[[0, 128, 255], [255, 0, 51]]]], dtype=torch.uint8)


@pytest.mark.parametrize(
    ("scheme", "first", "second"),
    [
        (
            "imagenet",
            [(0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225],
            [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (51 / 255 - 0.406) / 0.225],
        ),
        ("hara", [-114.7748, 128 - 107.7354, 255 - 99.4750], [255 - 114.7748, -107.7354, 51 - 99.4750]),
        ("hcrn", [0.0, 128.0, 255.0], [255.0, 0.0, 51.0]),
        (
            "hcrn_appearance",
            [(0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.224],
            [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (51 / 255 - 0.406) / 0.224],
        ),
        ("unit", [-0.5, 128 / 255 - 0.5, 0.5], [0.5, -0.5, 51 / 255 - 0.5]),
    ],
)
def test_normalization_values(scheme: str, first: list[float], second: list[float]) -> None:
    out = NormalizeInput(scheme)(_pixels())  # [1, 3, 1, 2]
    assert out.shape == (1, 3, 1, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(first), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(out[0, :, 0, 1], torch.tensor(second), rtol=1e-6, atol=1e-5)


def test_normalize_moves_channels_of_any_leading_dims() -> None:
    frames = torch.randint(0, 256, (2, 3, 5, 7, 3), dtype=torch.uint8)
    out = NormalizeInput("hcrn")(frames)
    assert out.shape == (2, 3, 3, 5, 7)
    torch.testing.assert_close(out[1, 2, :, 4, 6], frames[1, 2, 4, 6].float())


def test_normalize_clips_gives_channels_then_time() -> None:
    clips = torch.randint(0, 256, (2, 4, 5, 6, 3), dtype=torch.uint8)  # [N, T, H, W, 3]
    out = NormalizeClips("hara")(clips)
    assert out.shape == (2, 3, 4, 5, 6) and out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out[1, 0, 3, 2, 1], clips[1, 3, 2, 1, 0].float() - 114.7748)


@pytest.mark.parametrize(("name", "shape"), [("resnet18", (2, 3, 64, 64)), ("resnet18_3d", (1, 3, 8, 32, 32))])
def test_backbones_run_channels_last_and_compute_what_the_plain_layout_does(name: str, shape: tuple) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(name).eval()
    layout = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    convs = [m.weight for m in backbone.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert convs and all(w.is_contiguous(memory_format=layout) for w in convs)
    frames = torch.randint(0, 256, (shape[0], *shape[2:], 3) if len(shape) == 4 else
                           (shape[0], shape[2], *shape[3:], 3), dtype=torch.uint8)
    x = (NormalizeInput if len(shape) == 4 else NormalizeClips)(backbone.normalization)(frames)
    assert x.shape == shape and x.is_contiguous(memory_format=layout)
    plain = copy.deepcopy(backbone).to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), plain(x.contiguous()), rtol=1e-4, atol=1e-4)


def test_normalize_refuses_float_frames_and_unknown_schemes() -> None:
    with pytest.raises(TypeError, match="uint8"):
        NormalizeInput("imagenet")(torch.zeros(1, 4, 4, 3))
    with pytest.raises(ValueError, match="H, W, 3"):
        NormalizeInput("imagenet")(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="hcrn_appearance"):
        NormalizeInput("kinetics")
