"""Inference bundles: what save_bundle writes, and that load_bundle rebuilds the very same model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from configs.errors import UserError
from configs.loader import load_config
from configs.schema import PipelineConfig
from models.input_norm import StandardizedInputs
from models.registry import build_model
from models.types import Batch
from storage.store import spec_hash
from tasks.serving.bundle import Bundle, load_bundle, save_bundle
from tasks.video.clips import clip_spec
from tasks.features.extract import feature_spec
from tasks.text.annotations import QARecord
from tasks.text.vocabulary import Vocabularies, build_vocabularies

TINY = Path(__file__).with_name("tiny.yaml")
COLORS = ("red", "green", "blue", "yellow", "white", "purple")
SHAPES = ("circle", "square", "triangle")


def tiny_pipeline_config(tmp_path: Path, **model_changes) -> PipelineConfig:
    """tests/tiny.yaml with its paths in tmp_path and `model_changes` applied."""
    config = load_config(TINY, [f"store.path={tmp_path / 'store.zarr'}", f"data_dir={tmp_path}"])
    return config.model_copy(update={"model": config.model.model_copy(update=model_changes)})


def tiny_vocab() -> Vocabularies:
    """Question words of the synthetic colour questions; answers: the two slots + six colours."""
    records = [QARecord(i, i, f"what color is the {shape} at the beginning?", COLORS[i % len(COLORS)])
               for i, shape in enumerate(SHAPES * 2)]
    return build_vocabularies(records)


def random_model(config: PipelineConfig, vocab: Vocabularies, dims: tuple[int, int] = (128, 128),
                 standardize: bool = True, seed: int = 0) -> torch.nn.Module:
    """An untrained model at the config's sizes; with non-trivial standardisation statistics."""
    torch.manual_seed(seed)
    model = build_model(config.model, question_vocab_size=len(vocab.question_token_to_idx),
                        answer_vocab_size=len(vocab.answer_token_to_idx), appearance_dim=dims[0],
                        motion_dim=dims[1], num_clips=config.clips.num_clips,
                        frames_per_clip=config.clips.frames_per_clip, word_dim=config.text.word_dim)
    if not standardize or not model.uses_video:
        return model
    wrapped = StandardizedInputs(model, *dims)
    wrapped.set_statistics(torch.randn(50, dims[0]) * 3 + 1, torch.randn(50, dims[1]) * 2 - 1)
    return wrapped


def random_bundle(tmp_path: Path, config: PipelineConfig | None = None, **kwargs) -> Path:
    """A bundle of an untrained tiny model (tiny backbones: 128-d features), trained on nothing."""
    config = config or tiny_pipeline_config(tmp_path)
    vocab = tiny_vocab()
    clips = spec_hash(clip_spec(config.clips))
    hashes = {"text": "t" * 12, "clips": clips, "features": spec_hash(feature_spec(config.features, clips))}
    return save_bundle(tmp_path / "bundle" / "bundle.pt", config=config, vocab=vocab,
                       model=random_model(config, vocab, **kwargs), spec_hashes=hashes, metrics={"val_acc": 0.25})


def _batch(config: PipelineConfig, size: int = 3) -> Batch:
    torch.manual_seed(1)
    c, f = config.clips.num_clips, config.clips.frames_per_clip
    return Batch(question=torch.tensor([[2, 3, 4, 5, 6, 7, 8]] * size), question_len=torch.tensor([7] * size),
                 appearance=torch.randn(size, c, f, 128), motion=torch.randn(size, c, 128))


def test_round_trip_rebuilds_the_same_model(tmp_path):
    config = tiny_pipeline_config(tmp_path)
    vocab = tiny_vocab()
    model = random_model(config, vocab).eval()
    path = save_bundle(tmp_path / "b.pt", config=config, vocab=vocab, model=model, spec_hashes={"text": "abc"},
                       metrics={"val_acc": 0.5, "nan": float("nan")})

    # A plain dict of tensors and JSON-able values: the safe loader reads it.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == "msvqa-bundle" and raw["model_name"] == "dualvgr"
    assert raw["sizes"] == {"question_vocab_size": len(vocab.question_token_to_idx), "answer_vocab_size": 8,
                            "appearance_dim": 128, "motion_dim": 128, "num_clips": 2, "frames_per_clip": 2,
                            "word_dim": 8}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("b.pt.")] == []  # no temp file left

    bundle = load_bundle(path)
    assert isinstance(bundle, Bundle) and isinstance(bundle.model, StandardizedInputs)
    assert not bundle.model.training
    assert bundle.config == config
    assert bundle.vocab == vocab
    assert bundle.metrics == {"val_acc": 0.5}  # non-finite figures are left out
    assert bundle.clip_spec == clip_spec(config.clips)
    assert bundle.feature_spec["appearance"] == {"backbone": "tiny2d", "weights_sha256": None, "normalization": "unit"}
    assert bundle.feature_spec["clips"] == spec_hash(clip_spec(config.clips))
    batch = _batch(config)
    with torch.no_grad():
        assert torch.equal(bundle.model(batch).logits, model(batch).logits)
    assert torch.equal(bundle.model.appearance_std, model.appearance_std)


def test_weights_sha256_is_recorded(tmp_path):
    from models.backbones import build_backbone
    import hashlib

    weights = tmp_path / "tiny2d.pt"
    torch.save(build_backbone("tiny2d").state_dict(), weights)
    config = tiny_pipeline_config(tmp_path)
    config = config.model_copy(update={"features": config.features.model_copy(update={
        "appearance": config.features.appearance.model_copy(update={"weights": weights})})})
    bundle = load_bundle(save_bundle(tmp_path / "b.pt", config=config, vocab=tiny_vocab(),
                                     model=random_model(config, tiny_vocab()), spec_hashes={}, metrics={}))
    assert bundle.feature_spec["appearance"]["weights_sha256"] == hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    assert bundle.feature_spec["motion"]["weights_sha256"] is None


def test_baseline_bundles_name_their_own_model(tmp_path):
    config = tiny_pipeline_config(tmp_path)  # model.name says dualvgr, the module is the question-only baseline
    baseline_cfg = config.model_copy(update={"model": config.model.model_copy(update={"name": "question_only"})})
    model = random_model(baseline_cfg, tiny_vocab())
    bundle = load_bundle(save_bundle(tmp_path / "b.pt", config=config, vocab=tiny_vocab(), model=model,
                                     spec_hashes={}, metrics={}))
    assert bundle.config.model.name == "question_only"
    assert not bundle.uses_video
    assert not isinstance(bundle.model, StandardizedInputs)


def test_unstandardized_model_gets_backbone_dims(tmp_path):
    config = tiny_pipeline_config(tmp_path, standardize_features=False)
    bundle = load_bundle(random_bundle(tmp_path, config, standardize=False))
    assert not isinstance(bundle.model, StandardizedInputs)
    assert (bundle.sizes["appearance_dim"], bundle.sizes["motion_dim"]) == (128, 128)  # tiny2d / tiny3d out_dim


def test_feature_spec_must_match_the_trained_group(tmp_path):
    config = tiny_pipeline_config(tmp_path)
    with pytest.raises(ValueError, match="trained on feature group 000000000000"):
        save_bundle(tmp_path / "b.pt", config=config, vocab=tiny_vocab(), model=random_model(config, tiny_vocab()),
                    spec_hashes={"features": "000000000000"}, metrics={})


def test_unusable_files_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_bundle(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="not a readable msvqa bundle"):
        load_bundle(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(UserError, match="not an msvqa bundle"):
        load_bundle(other)
    path = random_bundle(tmp_path)
    raw = torch.load(path, weights_only=True)
    raw["sizes"]["answer_vocab_size"] = 9  # the weights no longer fit the recorded sizes
    torch.save(raw, path)
    with pytest.raises(UserError, match="do not fit the recorded model sizes"):
        load_bundle(path)


def random_msvqa_bundle(tmp_path: Path, seed: int = 0) -> Path:
    """A bundle of an untrained end-to-end MSVQA on the tiny config's backbones (tiny2d, tiny3d)."""
    return saved_msvqa(tmp_path, seed)[0]


def saved_msvqa(tmp_path: Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """`random_msvqa_bundle`, and the model object that was saved into it."""
    config = tiny_pipeline_config(tmp_path, name="msvqa")
    vocab = tiny_vocab()
    torch.manual_seed(seed)
    features = config.features
    model = build_model(config.model, appearance_backbone=features.appearance.backbone,
                        motion_backbone=features.motion.backbone,
                        appearance_normalization=features.appearance.normalization,
                        motion_normalization=features.motion.normalization,
                        question_vocab_size=len(vocab.question_token_to_idx),
                        answer_vocab_size=len(vocab.answer_token_to_idx), num_clips=config.clips.num_clips,
                        frames_per_clip=config.clips.frames_per_clip, word_dim=config.text.word_dim)
    clips = spec_hash(clip_spec(config.clips))
    # MSVQA trains its backbones: whatever feature group the store holds does not describe them.
    hashes = {"text": "t" * 12, "clips": clips, "features": "f" * 12}
    path = save_bundle(tmp_path / "msvqa" / "bundle.pt", config=config, vocab=vocab, model=model,
                       spec_hashes=hashes, metrics={"val_acc": 0.3})
    return path, model


def test_msvqa_bundles_carry_their_backbones(tmp_path):
    path, original = saved_msvqa(tmp_path)
    bundle = load_bundle(path)
    assert bundle.config.model.name == "msvqa" and bundle.uses_clips and bundle.uses_video
    original.eval()  # the model that was saved, as inference runs it
    torch.manual_seed(3)
    c, f = bundle.config.clips.num_clips, bundle.config.clips.frames_per_clip
    a, m = bundle.config.clips.appearance_size, bundle.config.clips.motion_size
    batch = Batch(question=torch.tensor([[2, 3, 4]] * 2), question_len=torch.tensor([3, 2]),
                  appearance_clips=torch.randint(0, 256, (2, c, f, a, a, 3), dtype=torch.uint8),
                  motion_clips=torch.randint(0, 256, (2, c, f, m, m, 3), dtype=torch.uint8))
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(batch).logits, original(batch).logits, rtol=0, atol=0)
    # The backbones' trained weights travel in the bundle, not as references to weights files.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    loaded = bundle.model.state_dict()
    assert raw["state_dict"].keys() == loaded.keys()
    assert all(torch.equal(value, loaded[key]) for key, value in raw["state_dict"].items())
    assert any(key.startswith("appearance_backbone.") for key in raw["state_dict"])
    assert any(key.startswith("motion_backbone.") for key in raw["state_dict"])
    other = load_bundle(random_msvqa_bundle(tmp_path / "other", seed=1)).model
    with torch.no_grad():
        assert not torch.allclose(other(batch).logits, bundle.model(batch).logits)
