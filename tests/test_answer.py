"""`answer` and `search`: bad inputs are user errors; a trained tiny model answers and finds red squares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from configs.errors import UserError
from configs.schema import StoreConfig
from models.types import Batch
from storage.store import Store
from tasks.serving.bundle import load_bundle
from tasks.video.clips import DECODER_VERSION, ClipJob, decode_one
from tasks.features.extract import FEATURE_DTYPE, feature_spec, prepare_feature_group
from tasks.serving.inference import answer_video, encode_question
from tasks.serving.search import search_bundle
from tests.conftest import shared_data
from tests.test_bundle import random_bundle, random_msvqa_bundle, tiny_pipeline_config

REPO = Path(__file__).resolve().parents[1]


def synthetic_video(path: Path, index: int = 0) -> Path:
    """One synthetic video (a moving shape that changes colour), 24 frames of 64x48."""
    from tasks.ingest.synth import encode_avi, plan_videos, render_frames

    plan = plan_videos(6, seed=3, frames=24, width=64, height=48)[index]
    encode_avi(render_frames(plan, 64, 48), 8, path)
    return path


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory) -> Path:
    return random_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return synthetic_video(tmp_path_factory.mktemp("video") / "shape.avi")


def test_answers_a_video_with_probabilities_and_reports_unknown_words(bundle_path, video):
    result = answer_video(str(bundle_path), video, "What color is the hexagon at the beginning", top_k=3,
                          device="cpu")
    assert result["unknown_words"] == ["hexagon"]  # "hexagon" is not among the bundle's 13 question words
    assert result["tokens"][-1] == "beginning"  # a missing '?' does not cost the last word its last letter
    probabilities = [row["probability"] for row in result["answers"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert 0.0 < sum(probabilities) <= 1.0 + 1e-6
    assert {row["answer"] for row in result["answers"]} <= {"red", "green", "blue", "yellow", "white", "purple"}


@pytest.mark.parametrize("question, message", [
    ("", "--question is empty"),
    ("   ?", "--question is empty"),
    ("how many dogs jump?", "no word the model knows .unknown: how, many, dogs, jump"),
])
def test_unusable_questions(bundle_path, video, question, message):
    with pytest.raises(UserError, match=message):
        answer_video(str(bundle_path), video, question, device="cpu")


def test_missing_bundle_and_unknown_model_uri(tmp_path, video):
    with pytest.raises(UserError, match="model bundle .*missing.pt does not exist"):
        answer_video(str(tmp_path / "missing.pt"), video, "what color is it?", device="cpu")
    with pytest.raises(UserError, match="tracking database .*nope.db does not exist"):
        answer_video("models:/tiny-dualvgr@champion", video, "what color is it?",
                     tracking_uri=f"sqlite:///{tmp_path / 'nope.db'}", device="cpu")


def test_undecodable_video(bundle_path, tmp_path):
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=r"--video .*empty.avi cannot be used \(empty file\): the file is empty"):
        answer_video(str(bundle_path), empty, "what color is the square at the beginning?", device="cpu")
    with pytest.raises(UserError, match=r"cannot be used \(not found\): no such file"):
        answer_video(str(bundle_path), tmp_path / "absent.avi", "what color is the square?", device="cpu")


def test_backbone_weights_must_be_the_bundled_files(tmp_path, video):
    from models.backbones import build_backbone

    weights = tmp_path / "tiny2d.pt"
    torch.manual_seed(0)
    torch.save(build_backbone("tiny2d").state_dict(), weights)
    config = tiny_pipeline_config(tmp_path)
    config = config.model_copy(update={"features": config.features.model_copy(update={
        "appearance": config.features.appearance.model_copy(update={"weights": weights})})})
    path = random_bundle(tmp_path, config)
    assert answer_video(str(path), video, "what color is the square?", device="cpu")["answers"]
    torch.manual_seed(1)
    torch.save(build_backbone("tiny2d").state_dict(), weights)  # same name, other weights
    with pytest.raises(UserError, match="features.appearance.weights .* is not the file the model was trained with"):
        answer_video(str(path), video, "what color is the square?", device="cpu")


def test_a_bundle_from_other_clips_names_what_differs(bundle_path, video, tmp_path):
    state = torch.load(bundle_path, map_location="cpu", weights_only=True)
    state["clip_spec"] = {**state["clip_spec"], "decoder": "ffmpeg-select-scale-bicubic-v1"}
    del state["clip_spec"]["scaler"]  # as bundles made before the scaler was a setting
    older = tmp_path / "older.pt"
    torch.save(state, older)
    with pytest.raises(UserError, match=r"made with decoder=ffmpeg-select-scale-bicubic-v1, scaler=None; this msvqa "
                                        rf"makes them with decoder={DECODER_VERSION}, scaler=bicubic"):
        answer_video(str(older), video, "what color is the square?", device="cpu")


def test_an_msvqa_bundle_answers_from_the_decoded_clips(video, tmp_path):
    path = random_msvqa_bundle(tmp_path)
    result = answer_video(str(path), video, "what color is the square?", top_k=6, device="cpu")
    # The same clips the clip stage would store, through the bundled model, give the same probabilities.
    bundle = load_bundle(path)
    decoded, _ = decode_one(ClipJob(0, 0, video.stem, str(video)), bundle.config.clips)
    encoded = encode_question("what color is the square?", bundle.vocab)
    batch = Batch(question=encoded.ids.unsqueeze(0), question_len=torch.tensor([encoded.ids.numel()]),
                  appearance_clips=torch.from_numpy(np.ascontiguousarray(decoded.appearance)).unsqueeze(0),
                  motion_clips=torch.from_numpy(np.ascontiguousarray(decoded.motion)).unsqueeze(0))
    with torch.no_grad():
        expected = torch.softmax(bundle.model(batch).logits, dim=-1)[0]
    for row in result["answers"]:
        index = bundle.vocab.answer_token_to_idx[row["answer"]]
        assert row["probability"] == pytest.approx(float(expected[index]), rel=1e-5)
    with pytest.raises(UserError, match="end-to-end msvqa model: search ranks the stored features"):
        search_bundle(bundle, "what color is the square?")


def _fake_store(store_path: Path, bundle, videos: int = 10, seed_offset: int = 0) -> np.ndarray:
    """A feature group with random features for `videos` videos; the last one is left incomplete."""
    config = bundle.config
    spec = feature_spec(config.features.model_copy(update={"seed": config.features.seed + seed_offset}),
                        bundle.feature_spec["clips"])
    group = Store(store_path).spec_group(config.dataset.name, "features", spec)
    c, f = config.clips.num_clips, config.clips.frames_per_clip
    prepare_feature_group(group, videos, c, f, (128, 128))
    rng = np.random.default_rng(0)
    appearance = rng.normal(size=(videos, c, f, 128)).astype(FEATURE_DTYPE)
    group.write("appearance", appearance)
    group.write("motion", rng.normal(size=(videos, c, 128)).astype(FEATURE_DTYPE))
    group.update_attrs(video_ids=list(range(100, 100 + videos)), names=[f"clip{i}" for i in range(videos)])
    group.mark_complete(range(videos - 1))
    return appearance


def test_search_ranks_stored_videos_by_answer_probability(bundle_path, tmp_path):
    bundle = load_bundle(bundle_path)
    _fake_store(tmp_path / "store.zarr", bundle)
    question = "what color is the square at the beginning?"
    found = search_bundle(bundle, question, answer="red", top=4, store=StoreConfig(path=tmp_path / "store.zarr"), batch_size=3)
    assert found["videos_scored"] == 9  # 10 stored, the incomplete one skipped
    scores = [row["score"] for row in found["rows"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert "clip9" not in {row["video"] for row in found["rows"]}
    # Each score is the model's P(red) for that video's stored features, batched or not.
    everything = search_bundle(bundle, question, answer="red", top=9, store=StoreConfig(path=tmp_path / "store.zarr"))
    group = Store(tmp_path / "store.zarr", mode="r").find(bundle.config.dataset.name, "features")[0]
    first = everything["rows"][0]
    row = first["video_id"] - 100
    with torch.no_grad():
        logits = bundle.model(Batch(
            question=torch.tensor([[bundle.vocab.question_token_to_idx[w] for w in question[:-1].split()]]),
            question_len=torch.tensor([8]),
            appearance=torch.from_numpy(group.read("appearance", np.array([row]))).float(),
            motion=torch.from_numpy(group.read("motion", np.array([row]))).float())).logits
    red = bundle.vocab.answer_token_to_idx["red"]
    assert first["score"] == pytest.approx(torch.softmax(logits, -1)[0, red].item(), abs=1e-6)
    assert found["rows"][0] == first
    # Without --answer the score is each video's top-answer confidence.
    confident = search_bundle(bundle, question, top=9, store=StoreConfig(path=tmp_path / "store.zarr"))
    for row in confident["rows"][:3]:
        alone = search_bundle(bundle, question, answer=row["top_answer"], store=StoreConfig(path=tmp_path / "store.zarr"),
                              video_ids={row["video_id"]})
        assert alone["rows"][0]["score"] == pytest.approx(row["score"], abs=1e-6)
    assert len({row["top_answer"] for row in confident["rows"]} - {"red", "green", "blue", "yellow", "white",
                                                                    "purple"}) == 0


def test_search_refuses_bad_answers_and_other_feature_specs(bundle_path, tmp_path):
    bundle = load_bundle(bundle_path)
    question = "what color is the square at the beginning?"
    for word in ("banana", "<UNK0>"):
        with pytest.raises(UserError, match=f"--answer '{word}' is not one of the model's 6 answers"):
            search_bundle(bundle, question, answer=word, store=StoreConfig(path=tmp_path / "none.zarr"))
    with pytest.raises(UserError, match="store.path .*none.zarr does not exist"):
        search_bundle(bundle, question, store=StoreConfig(path=tmp_path / "none.zarr"))
    _fake_store(tmp_path / "other.zarr", bundle, seed_offset=1)  # features of differently seeded backbones
    with pytest.raises(UserError, match=f"no tiny features with the model's feature spec {bundle.feature_hash} "
                                        r".*seed 0\); it holds: \w{12} .*seed 1\)"):
        search_bundle(bundle, question, store=StoreConfig(path=tmp_path / "other.zarr"))


@pytest.mark.realdata
def test_real_footage_gets_answer_probabilities(bundle_path):
    """An untrained tiny-model bundle answers about an MSR-VTT mp4 and an MSVD avi: real decoding, real sizes."""
    videos = [shared_data("real-clips", "video7010.mp4"),
              sorted(shared_data("msvd-mini", "video").glob("*.avi"))[0]]
    for video in videos:
        result = answer_video(str(bundle_path), video, "what color is the square?", top_k=5, device="cpu")
        probabilities = [row["probability"] for row in result["answers"]]
        assert len(probabilities) == 5
        assert all(0.0 <= p <= 1.0 for p in probabilities) and sum(probabilities) <= 1.0 + 1e-6


def _run_tiny_pipeline(tmp_path: Path) -> dict:
    from tests.test_pipeline_e2e import tiny_config

    # 240 videos and 20 epochs: the fewest with which the tiny DualVGR learns colours (at 144 videos,
    # R-precision stayed at chance); no autoencoder and no baseline, to stay under 90 s.
    config = tiny_config(tmp_path, **{
        "dataset.synthetic": {"videos": 240, "seed": 1, "width": 64, "height": 48, "frames": 24, "fps": 8,
                              "glove_dim": 8},
        "model.module_dim": 32, "model.dropout": 0.1,
        "train.qa": {"epochs": 20, "batch_size": 16, "lr": 0.003},
        "train.autoencoder": {"epochs": 0}, "train.baseline": False, "runner.kind": "local"})
    # One thread per process: on 2 shared cores, OpenMP threads spin-wait against each other and a
    # tiny model's training step takes ~1 s instead of ~7 ms.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "cli.app", "run", str(config), "--json"], capture_output=True,
                          text=True, env=env, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_trained_tiny_model_answers_and_searches(tmp_path):
    from tasks.text.annotations import load_annotations

    torch.set_num_threads(1)
    result = _run_tiny_pipeline(tmp_path)
    tracking = result["tracking_uri"]
    uri = "models:/tiny-dualvgr@champion"  # the registered version's run carries bundle/bundle.pt
    for bad in ("models:/tiny-nothing@champion", "models:/tiny-dualvgr/99", "runs:/0123456789abcdef"):
        with pytest.raises(UserError, match=f"model {bad} could not be fetched"):
            answer_video(bad, tmp_path / "x.avi", "what color?", tracking_uri=tracking)

    from tasks.serving.inference import open_bundle

    bundle = open_bundle(uri, tracking)
    root = tmp_path / "dataset"
    names = dict(line.split()[::-1] for line in (root / "youtube_mapping.txt").read_text().splitlines())
    test = [r for r in load_annotations(root / "test_qa.json") if r.question.endswith("at the beginning?")]
    colour = {r.video_id: r.answer for r in test}

    # Answer from the video file: decoding and extraction reproduce the stored features, so the answer's
    # probabilities equal search's scores of the same video from the store.
    record = test[0]
    answered = answer_video(uri, root / "video" / f"{names[f'vid{record.video_id}']}.avi", record.question,
                            top_k=6, tracking_uri=tracking, device="cpu")
    probability = {row["answer"]: row["probability"] for row in answered["answers"]}
    assert sum(probability.values()) <= 1.0 + 1e-6
    stored = search_bundle(bundle, record.question, answer=record.answer, top=1, video_ids={record.video_id})
    assert stored["rows"][0]["score"] == pytest.approx(probability[record.answer], abs=1e-4)

    # Search the test split for red squares: the first hit is red, and of the top R (R = red test
    # videos) far more are red than chance. Measured: 64 test videos, 11 red (chance 0.17);
    # precision@1 = 1.0, R-precision = 8/11 = 0.73.
    found = search_bundle(bundle, "what color is the square at the beginning?", answer="red", top=len(colour),
                          video_ids=set(colour))
    ranked = [colour[row["video_id"]] for row in found["rows"]]
    reds = ranked.count("red")
    chance = reds / len(ranked)
    precision_at_1 = float(ranked[0] == "red")
    r_precision = ranked[:reds].count("red") / reds
    assert (len(ranked), reds) == (64, 11)
    assert precision_at_1 == 1.0 > chance
    assert r_precision >= 3 * chance, (r_precision, chance, ranked)
