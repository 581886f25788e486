"""Behaviour of the VideoQA models, their losses, decoders and registry, at tiny dimensions."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from configs.schema import ModelConfig
from models.decoders import ClipDecoder, make_reconstruction_target, reconstruction_loss
from models.losses import auxiliary_losses, common_consistency_loss, hsic_dependence_loss, qa_loss
from models.registry import build_autoencoder, build_model, count_parameters, model_names
from models.types import Batch

QUESTION_VOCAB, ANSWER_VOCAB = 20, 7
APPEARANCE_DIM, MOTION_DIM = 12, 10
CLIPS, FRAMES, WORD_DIM, MODULE_DIM = 4, 3, 8, 16
LENGTHS = (5, 2, 3)

# The models that read cached features or questions only (msvqa reads clips and has its own tests).
MODEL_NAMES = model_names(reads={"features", "questions"})

REFERENCE_PARAMETERS = 28_449_249


def tiny_config(name: str, **overrides: object) -> ModelConfig:
    return ModelConfig(name=name, module_dim=MODULE_DIM, gat_heads=4, unit_layers=2, decoder_size=8, **overrides)


def tiny_model(name: str, glove: torch.Tensor | None = None, seed: int = 0, **overrides: object):
    torch.manual_seed(seed)
    return build_model(
        tiny_config(name, **overrides),
        question_vocab_size=QUESTION_VOCAB,
        answer_vocab_size=ANSWER_VOCAB,
        appearance_dim=APPEARANCE_DIM,
        motion_dim=MOTION_DIM,
        num_clips=CLIPS,
        frames_per_clip=FRAMES,
        word_dim=WORD_DIM,
        glove=glove,
    )


def make_batch(seed: int = 1) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(LENGTHS)
    tokens = torch.randint(1, QUESTION_VOCAB, (len(LENGTHS), max(LENGTHS)), generator=generator)
    question = tokens * (torch.arange(max(LENGTHS)) < lengths.unsqueeze(1))
    return Batch(
        question=question,
        question_len=lengths,
        appearance=torch.randn(len(LENGTHS), CLIPS, FRAMES, APPEARANCE_DIM, generator=generator),
        motion=torch.randn(len(LENGTHS), CLIPS, MOTION_DIM, generator=generator),
        answer=torch.randint(0, ANSWER_VOCAB, (len(LENGTHS),), generator=generator),
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward_trains_every_parameter(name: str) -> None:
    model = tiny_model(name)
    model.train()
    batch = make_batch()
    output = model(batch)
    assert output.logits.shape == (len(LENGTHS), ANSWER_VOCAB)
    assert torch.isfinite(output.logits).all()
    loss, parts = qa_loss(output, batch.answer, alpha=0.1, beta=0.01)
    assert torch.isfinite(loss)
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_clip_features_follow_uses_video(name: str) -> None:
    model = tiny_model(name).eval()
    output = model(make_batch())
    if type(model).uses_video:
        assert output.clip_features is not None
        assert output.clip_features.shape == (len(LENGTHS), CLIPS, MODULE_DIM)
    else:
        assert output.clip_features is None


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_frozen_embeddings_get_no_gradient(name: str) -> None:
    glove = torch.randn(QUESTION_VOCAB, WORD_DIM)
    model = tiny_model(name, glove=glove, freeze_embeddings=True)
    embedding = model.question_encoder.embedding.weight
    assert torch.equal(embedding, glove)
    model(make_batch()).logits.sum().backward()
    assert embedding.grad is None
    total, trainable = count_parameters(model)
    assert total - trainable == QUESTION_VOCAB * WORD_DIM


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_extra_padding_leaves_logits_unchanged(name: str) -> None:
    model = tiny_model(name).eval()
    batch = make_batch()
    padded = dataclasses.replace(batch, question=F.pad(batch.question, (0, 4)))
    with torch.no_grad():
        torch.testing.assert_close(model(padded).logits, model(batch).logits, rtol=0, atol=1e-6)
        # Tokens after a question's length must be ignored, whatever they are.
        garbage = dataclasses.replace(padded, question=torch.where(padded.question == 0, 7, padded.question))
        torch.testing.assert_close(model(garbage).logits, model(batch).logits, rtol=0, atol=1e-6)


def test_question_only_ignores_video() -> None:
    model = tiny_model("question_only").eval()
    batch = make_batch()
    other_video = dataclasses.replace(batch, appearance=batch.appearance * 3 + 1, motion=-batch.motion)
    no_video = dataclasses.replace(batch, appearance=None, motion=None)
    with torch.no_grad():
        torch.testing.assert_close(model(other_video).logits, model(batch).logits, rtol=0, atol=0)
        torch.testing.assert_close(model(no_video).logits, model(batch).logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["dualvgr", "mean_pool"])
def test_video_models_depend_on_each_stream(name: str) -> None:
    model = tiny_model(name).eval()
    batch = make_batch()
    with torch.no_grad():
        base = model(batch).logits
        other_appearance = model(dataclasses.replace(batch, appearance=torch.randn_like(batch.appearance))).logits
        other_motion = model(dataclasses.replace(batch, motion=torch.randn_like(batch.motion))).logits
    assert not torch.allclose(base, other_appearance, atol=1e-5)
    assert not torch.allclose(base, other_motion, atol=1e-5)
    with pytest.raises(ValueError):
        model(dataclasses.replace(batch, motion=None))


def test_dualvgr_aux_losses_are_finite_and_train_the_graphs() -> None:
    model = tiny_model("dualvgr", graph_layers=2)
    output = model(make_batch())
    assert set(output.aux) == {"appearance_specific", "appearance_common", "motion_specific", "motion_common"}
    for tensor in output.aux.values():
        assert tensor.shape == (2 * 2, len(LENGTHS), CLIPS, MODULE_DIM)  # [unit*graph layers, B, C, D]
    losses = auxiliary_losses(output.aux)
    assert set(losses) == {"consistency", "dependence"}
    assert all(torch.isfinite(value) and value > 0 for value in losses.values())
    (losses["consistency"] + losses["dependence"]).backward()
    graph_weight = model.units[0].graphs["motion_common"].layers[0].weight
    assert graph_weight.grad is not None and graph_weight.grad.abs().sum() > 0
    assert model.answer_head.classifier[-1].weight.grad is None  # the aux losses do not reach the head


def _qa_loss_oracle(output, answer: torch.Tensor) -> tuple[float, float, float]:
    """The paper's loss written out per graph layer and per sample in float64 numpy, from its definitions:
    cross-entropy + alpha * mean squared difference of the common graphs' centred cosine Gram matrices
    + beta * HSIC trace(R Ks R Kc) of specific vs common (appearance and motion), summed over samples and
    averaged over graph layers. Returns the three terms: (cross-entropy, consistency, dependence)."""
    import numpy as np

    logits, labels = output.logits.double().numpy(), answer.numpy()
    shifted = logits - logits.max(1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    cross_entropy = -log_softmax[np.arange(len(labels)), labels].mean()
    aux = {key: value.double().numpy() for key, value in output.aux.items()}  # [G, B, N, D]
    layers, samples, nodes, _ = aux["appearance_common"].shape
    centring = np.eye(nodes) - 1.0 / nodes
    squared, hsic = [], 0.0
    for g in range(layers):
        for b in range(samples):
            grams = []
            for key in ("appearance_common", "motion_common"):
                x = aux[key][g, b] - aux[key][g, b].mean(0)
                x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # a node at the mean stays 0
                grams.append(x @ x.T)
            squared.append(((grams[0] - grams[1]) ** 2).mean())
            for stream in ("appearance", "motion"):
                s, c = aux[f"{stream}_specific"][g, b], aux[f"{stream}_common"][g, b]
                hsic += np.trace(centring @ s @ s.T @ centring @ c @ c.T)
    return float(cross_entropy), float(np.mean(squared)), float(hsic / layers)


def test_qa_loss_weights_the_aux_losses() -> None:
    model = tiny_model("dualvgr", graph_layers=2).eval()
    batch = make_batch()
    with torch.no_grad():
        output = model(batch)
        plain, _ = qa_loss(output, batch.answer, alpha=0.0, beta=0.0)
        weighted, _ = qa_loss(output, batch.answer, alpha=2.0, beta=0.5)
    cross_entropy, consistency, dependence = _qa_loss_oracle(output, batch.answer)
    assert plain.item() == pytest.approx(cross_entropy, rel=1e-5)
    # The auxiliary terms, weighted. The model computes them in float32, the oracle in float64, and the
    # consistency term normalises centred node vectors, some of them short at random init, so float32
    # error (which also moves with the thread count) reaches a few 1e-3 of it: 1% still tells any wrong
    # weight or definition apart.
    added = 2.0 * consistency + 0.5 * dependence
    assert abs(added) > 1e-3  # they weigh something here
    assert weighted.item() - plain.item() == pytest.approx(added, rel=1e-2)
    assert auxiliary_losses(tiny_model("question_only")(batch).aux) == {}


def test_consistency_loss_is_zero_for_identical_and_positive_for_different_graphs() -> None:
    nodes = torch.randn(2, 5, 6)
    assert common_consistency_loss(nodes, nodes).item() == pytest.approx(0.0, abs=1e-7)
    assert common_consistency_loss(nodes, 2 * nodes + 3).item() == pytest.approx(0.0, abs=1e-6)  # scale/shift free
    assert common_consistency_loss(nodes, torch.randn(2, 5, 6)).item() > 1e-3


def test_hsic_matches_trace_formula_and_vanishes_for_constant_nodes() -> None:
    specific, common = torch.randn(3, 4, 6), torch.randn(3, 4, 6)
    centring = torch.eye(4) - 1.0 / 4
    expected = sum(
        torch.trace(centring @ s @ s.T @ centring @ c @ c.T) for s, c in zip(specific, common, strict=True)
    )
    torch.testing.assert_close(hsic_dependence_loss(specific, common), expected, rtol=1e-5, atol=1e-5)
    constant_nodes = torch.randn(3, 1, 6).expand(3, 4, 6)
    assert hsic_dependence_loss(constant_nodes, common).abs().item() < 1e-4
    assert hsic_dependence_loss(specific, specific).item() > 0


def test_clip_decoder_shape_and_reconstruction_loss() -> None:
    decoder = ClipDecoder(MODULE_DIM, 16, FRAMES)
    clips = decoder(torch.randn(2, CLIPS, MODULE_DIM))
    assert clips.shape == (2, CLIPS, FRAMES, 3, 16, 16)
    assert reconstruction_loss(clips, clips).item() == 0.0
    target = torch.zeros_like(clips)
    torch.testing.assert_close(reconstruction_loss(clips, target), (clips**2).mean())
    with pytest.raises(ValueError):
        ClipDecoder(MODULE_DIM, 12, FRAMES)


def test_reconstruction_target_resizes_and_normalises() -> None:
    clips = torch.full((2, CLIPS, FRAMES, 20, 24, 3), 255, dtype=torch.uint8)
    target = make_reconstruction_target(clips, 8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    assert target.shape == (2, CLIPS, FRAMES, 3, 8, 8)
    torch.testing.assert_close(target[0, 0, 0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))


@pytest.mark.parametrize("name", ["dualvgr", "mean_pool"])
def test_autoencoder_reconstructs_both_streams_from_clip_features(name: str) -> None:
    model = tiny_model(name)
    autoencoder = build_autoencoder(model, tiny_config(name), frames_per_clip=FRAMES)
    result = autoencoder(make_batch())
    expected = (len(LENGTHS), CLIPS, FRAMES, 3, 8, 8)
    assert result.appearance.shape == expected and result.motion.shape == expected
    target = torch.zeros(expected)
    (reconstruction_loss(result.appearance, target) + reconstruction_loss(result.motion, target)).backward()
    assert autoencoder.appearance_decoder.seed.weight.grad.abs().sum() > 0
    assert autoencoder.motion_decoder.seed.weight.grad.abs().sum() > 0
    # The reconstruction trains the model's visual path, not only the decoders.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_autoencoder_refuses_a_model_without_video() -> None:
    with pytest.raises(ValueError):
        build_autoencoder(tiny_model("question_only"), tiny_config("question_only"), frames_per_clip=FRAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_gives_same_initialisation_and_logits(name: str) -> None:
    batch = make_batch()
    with torch.no_grad():
        first = tiny_model(name, seed=3).eval()(batch).logits
        second = tiny_model(name, seed=3).eval()(batch).logits
        other = tiny_model(name, seed=4).eval()(batch).logits
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_registry_flags_and_unknown_name() -> None:
    from models.baselines import MeanPool, QuestionOnly
    from models.dualvgr import DualVGR
    from models.msvqa import MSVQA
    from models.registry import UnknownModel, entry_of, model_entry

    assert model_names() == ("dualvgr", "mean_pool", "msvqa", "question_only")
    assert MODEL_NAMES == ("dualvgr", "mean_pool", "question_only")
    assert {name: model_entry(name).reads for name in model_names()} == {
        "dualvgr": "features", "mean_pool": "features", "msvqa": "clips", "question_only": "questions"}
    classes = {"dualvgr": DualVGR, "mean_pool": MeanPool, "msvqa": MSVQA, "question_only": QuestionOnly}
    assert {name: model_entry(name).model_class for name in model_names()} == classes
    assert {name: type(tiny_model(name)).uses_video for name in MODEL_NAMES} == {
        "dualvgr": True,
        "question_only": False,
        "mean_pool": True,
    }
    assert entry_of(tiny_model("mean_pool")).name == "mean_pool"
    with pytest.raises(UnknownModel, match="model.name: unknown model 'hcrn'; known: dualvgr, mean_pool, msvqa"):
        tiny_model("hcrn")


def test_dualvgr_paper_configuration_matches_reference_parameter_count() -> None:
    # The reference's MFB factor is 2; ModelConfig's default (5) would add ~1.18M parameters.
    model = build_model(
        ModelConfig(name="dualvgr", module_dim=768, gat_heads=4, graph_layers=1, unit_layers=2, mfb_factor=2),
        question_vocab_size=4000,
        answer_vocab_size=1854,
        appearance_dim=2048,
        motion_dim=2048,
        num_clips=8,
        frames_per_clip=16,
        word_dim=300,
    )
    total, trainable = count_parameters(model)
    assert total == trainable
    assert abs(total - REFERENCE_PARAMETERS) / REFERENCE_PARAMETERS < 0.02


def test_msvqa_trains_backbones_end_to_end_from_uint8_clips():
    from models.registry import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="msvqa", module_dim=16, unit_layers=1), appearance_backbone="tiny2d",
                        motion_backbone="tiny3d", appearance_normalization="unit", motion_normalization="unit",
                        question_vocab_size=20, answer_vocab_size=7, num_clips=2, frames_per_clip=3, word_dim=8)
    batch = Batch(question=torch.randint(1, 20, (2, 4)), question_len=torch.tensor([4, 2]),
                  appearance_clips=torch.randint(0, 256, (2, 2, 3, 32, 32, 3), dtype=torch.uint8),
                  motion_clips=torch.randint(0, 256, (2, 2, 3, 16, 16, 3), dtype=torch.uint8),
                  answer=torch.tensor([1, 3]))
    output = model(batch)
    assert output.logits.shape == (2, 7) and output.clip_features.shape == (2, 2, 16)
    torch.nn.functional.cross_entropy(output.logits, batch.answer).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.appearance_backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.motion_backbone.parameters())
    model.zero_grad()
    model.set_backbones_trainable(False)
    torch.nn.functional.cross_entropy(model(batch).logits, batch.answer).backward()
    assert all(p.grad is None for p in model.appearance_backbone.parameters())
    assert any(p.grad is not None for p in model.qa.parameters())


def test_models_command_lists_every_registered_model_with_backbones_counted() -> None:
    import json

    import torchvision
    from typer.testing import CliRunner

    from cli.app import app
    from models.backbones import build_backbone

    result = CliRunner().invoke(app, ["models", "configs/msvd_qa.yaml", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output.strip().splitlines()[-1])["models"]}
    assert sorted(rows) == ["dualvgr", "mean_pool", "msvqa", "question_only"]
    assert {name: row["reads"] for name, row in rows.items()} == {
        "dualvgr": "features", "mean_pool": "features", "msvqa": "clips", "question_only": "questions"}
    # MSVQA is DualVGR on the two backbones it trains: torchvision's ResNet-101 without its classifier
    # (an independent count) and the 3D ResNeXt-101.
    resnet = torchvision.models.resnet101()
    resnet_trunk = sum(p.numel() for p in resnet.parameters()) - sum(p.numel() for p in resnet.fc.parameters())
    motion = sum(p.numel() for p in build_backbone("resnext101_3d").parameters())
    assert rows["msvqa"]["parameters"] == rows["dualvgr"]["parameters"] + resnet_trunk + motion
    assert resnet_trunk == 42_500_160


def _msvqa(appearance: str = "tiny2d", checkpoint_activations: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name="msvqa", module_dim=16, unit_layers=1,
                                   checkpoint_activations=checkpoint_activations),
                       appearance_backbone=appearance, motion_backbone="tiny3d", appearance_normalization="unit",
                       motion_normalization="unit", question_vocab_size=20, answer_vocab_size=7, num_clips=2,
                       frames_per_clip=3, word_dim=8)


def _clip_batch() -> Batch:
    generator = torch.Generator().manual_seed(3)
    return Batch(question=torch.randint(1, 20, (2, 4), generator=generator), question_len=torch.tensor([4, 2]),
                 appearance_clips=torch.randint(0, 256, (2, 2, 3, 32, 32, 3), dtype=torch.uint8, generator=generator),
                 motion_clips=torch.randint(0, 256, (2, 2, 3, 16, 16, 3), dtype=torch.uint8, generator=generator),
                 answer=torch.tensor([1, 3]))


def _batchnorm_statistics(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in module.named_buffers() if "running" in name or "num_batches" in name}


def test_frozen_msvqa_backbones_keep_their_batchnorm_statistics_through_training_steps():
    model = _msvqa("resnet18")  # BatchNorm after every convolution
    before = _batchnorm_statistics(model.appearance_backbone)
    assert before and model.appearance_backbone.training
    model.set_backbones_trainable(False)
    model.train()  # what every epoch of the training loop does to the whole model
    assert not model.appearance_backbone.training and not model.motion_backbone.training
    assert model.qa.training  # the trainable rest still trains (dropout, its own BatchNorm)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        F.cross_entropy(model(_clip_batch()).logits, torch.tensor([1, 3])).backward()
        optimizer.step()
    after = _batchnorm_statistics(model.appearance_backbone)
    assert all(torch.equal(before[name], after[name]) for name in before)
    model.set_backbones_trainable(True)  # trainable again: back in train mode, statistics move
    assert model.appearance_backbone.training
    model(_clip_batch())
    mean = next(name for name in before if name.endswith("running_mean"))
    assert not torch.equal(before[mean], _batchnorm_statistics(model.appearance_backbone)[mean])


@pytest.mark.parametrize("appearance", ["tiny2d", "resnet18"])
def test_checkpointed_backbone_activations_give_the_same_gradients_with_less_saved(appearance: str):
    def run(checkpoint_activations: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
        model = _msvqa(appearance, checkpoint_activations)
        model.train()
        saved = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += tensor.numel() * tensor.element_size()
            return tensor

        torch.manual_seed(1)  # the same dropout masks in both runs
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = F.cross_entropy(model(_clip_batch()).logits, torch.tensor([1, 3]))
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return grads, _batchnorm_statistics(model), saved

    plain, plain_stats, plain_saved = run(False)
    checkpointed, checkpointed_stats, checkpointed_saved = run(True)
    assert plain.keys() == checkpointed.keys() and any(k.startswith("appearance_backbone.") for k in plain)
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], rtol=1e-5, atol=1e-7), name
    # The recomputation in the backward pass does not count the batch twice in BatchNorm's statistics.
    assert all(torch.equal(plain_stats[k], checkpointed_stats[k]) for k in plain_stats)
    assert checkpointed_saved < plain_saved
