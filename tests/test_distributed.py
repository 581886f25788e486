"""DDP on CPU with gloo: two torchrun processes train as one, and only rank 0 writes or tracks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from configs.errors import UserError
from tasks.train.distributed import DistContext, epoch_sampler, per_rank_batch, shard, torchrun_command

REPO = Path(__file__).resolve().parents[1]

# Both stages as the train flow runs them: autoencoder (lazy clips, unused answer head), then QA.
JOB = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import numpy as np, torch
    from configs.schema import ModelConfig, StageConfig
    from models.registry import build_autoencoder, build_model
    from storage.qa_dataset import QAArrays, QADataset, VideoArrays
    from storage.store import Store
    from tasks.train import checkpoints
    from tasks.train.autoencoder import autoencoder_loss_fn, autoencoder_val_loss
    from tasks.train.distributed import init_distributed, shutdown
    from tasks.train.loop import qa_loss_fn, qa_validator, run_stage

    work = Path(sys.argv[1])
    torch.set_num_threads(1)
    ctx, device = init_distributed("cpu")
    saves = []
    real_save = checkpoints.save_atomic
    checkpoints.save_atomic = lambda state, path: (saves.append(path.name), real_save(state, path))
    rng = np.random.default_rng(0)
    if ctx.is_main:  # one writer; the others open the store once it is complete
        groups = {kind: Store(work / "store.zarr").spec_group("d", kind, {"t": 1}) for kind in ("features", "clips")}
        for kind, name, shape, dtype in (("features", "appearance", (10, 2, 3, 6), "float16"),
                                         ("features", "motion", (10, 2, 5), "float16"),
                                         ("clips", "appearance", (10, 2, 3, 8, 8, 3), "uint8"),
                                         ("clips", "motion", (10, 2, 3, 8, 8, 3), "uint8")):
            groups[kind].ensure_array(name, shape, dtype, chunks=(1,) + shape[1:])
            values = rng.integers(0, 255, size=shape) if dtype == "uint8" else rng.normal(size=shape)
            groups[kind].write(name, values.astype(dtype))
    ctx.barrier()
    store = Store(work / "store.zarr", mode="r")
    groups = {kind: store.spec_group("d", kind, {"t": 1}) for kind in ("features", "clips")}
    n = 40
    arrays = QAArrays(questions=rng.integers(2, 12, size=(n, 4)), lengths=rng.integers(1, 5, size=n),
                      answers=rng.integers(0, 5, size=n), answer_known=np.ones(n, bool),
                      video_ids=np.arange(n) % 10, question_ids=np.arange(n), qtypes=np.arange(n) % 3,
                      video_rows=np.arange(n) % 10)
    features = VideoArrays(groups["features"].ref, ("appearance", "motion"), in_memory=True)
    clips = VideoArrays(groups["clips"].ref, ("appearance", "motion"), in_memory=False)
    data = QADataset(arrays, features, clips)
    torch.manual_seed(0)
    cfg = ModelConfig(module_dim=8, unit_layers=1, decoder_size=8)
    model = build_model(cfg, question_vocab_size=12, answer_vocab_size=5, appearance_dim=6, motion_dim=5,
                        num_clips=2, frames_per_clip=3, word_dim=4)
    ae = build_autoencoder(model, cfg, 3)
    ae_result = run_stage(name="ae", model=ae, loss_fn=autoencoder_loss_fn(8), train_set=data,
                          validate=lambda: {"ae_val_loss": autoencoder_val_loss(ae, data, 8, 8, "cpu", ctx=ctx)},
                          monitor="ae_val_loss", higher_is_better=False, device=device,
                          cfg=StageConfig(epochs=1, batch_size=8, lr=0.01), checkpoint_dir=work / "ckpt" / "ae",
                          seed=3, ctx=ctx, unused_parameters=True)
    stepped = {}
    def progress(done, total):  # parameters right after each optimizer step, before any checkpoint is read
        stepped.update({k: v.detach().clone() for k, v in model.named_parameters()})
    qa_result = run_stage(name="qa", model=model, loss_fn=qa_loss_fn(), train_set=data, progress=progress,
                          validate=qa_validator(model, data, 8, "cpu", ctx=ctx), monitor="val_acc",
                          higher_is_better=True, cfg=StageConfig(epochs=2, batch_size=8, lr=0.01), device=device,
                          checkpoint_dir=work / "ckpt" / "qa", seed=3, ctx=ctx)
    torch.save({"stepped": stepped, "final": model.state_dict()}, work / f"rank{ctx.rank}.pt")
    (work / f"rank{ctx.rank}.json").write_text(json.dumps(
        {"saves": saves, "history": ae_result.history + qa_result.history}))
    shutdown()
''')


def test_epoch_order_is_the_same_for_any_world_size():
    data = list(range(23))
    single = list(epoch_sampler(data, seed=5, epoch=2, ctx=DistContext()))
    assert sorted(single) == data and single != data  # a shuffled permutation
    assert list(epoch_sampler(data, seed=5, epoch=2, ctx=DistContext())) == single  # (seed, epoch) alone decide
    # Every (seed, epoch) of a run and of its neighbours' runs gets its own order.
    orders = {tuple(epoch_sampler(data, seed=s, epoch=e, ctx=DistContext())) for s in range(4) for e in range(25)}
    assert len(orders) == 100
    ranks = [list(epoch_sampler(data, seed=5, epoch=2, ctx=DistContext(rank=r, world_size=2))) for r in (0, 1)]
    assert ranks[0] == single[0::2] and ranks[1][:11] == single[1::2]  # the last item pads rank 1
    assert list(epoch_sampler(data, seed=5, epoch=3, ctx=DistContext())) != single


def test_shards_cover_each_item_once_and_batches_must_divide():
    ctx = [DistContext(rank=r, world_size=3) for r in range(3)]
    assert sorted(sum((shard(10, c).tolist() for c in ctx), [])) == list(range(10))
    assert per_rank_batch(32, DistContext(rank=0, world_size=2)) == 16
    with pytest.raises(UserError, match="batch_size 33"):
        per_rank_batch(33, DistContext(rank=0, world_size=2))


def test_torchrun_command_runs_this_module():
    command = torchrun_command(Path("c.yaml"), ["train.qa.epochs=1"], nproc=4, json_out=True)
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m",
                           "cli.distributed", "c.yaml", "--set", "train.qa.epochs=1", "--json"]


def test_torchrun_command_spans_nodes_through_a_c10d_rendezvous():
    command = torchrun_command(Path("c.yaml"), [], nproc=2, nnodes=3, node_rank=1, rdzv_endpoint="10.0.0.5:29400",
                               rdzv_id="job7")
    assert command[1:] == ["-m", "torch.distributed.run", "--nnodes=3", "--node-rank=1", "--rdzv-backend=c10d",
                           "--rdzv-endpoint=10.0.0.5:29400", "--rdzv-id=job7", "--nproc_per_node=2", "-m",
                           "cli.distributed", "c.yaml"]
    with pytest.raises(UserError, match="--rdzv-endpoint"):
        torchrun_command(Path("c.yaml"), nnodes=2)
    with pytest.raises(UserError, match="--node-rank 2"):
        torchrun_command(Path("c.yaml"), nnodes=2, node_rank=2, rdzv_endpoint="127.0.0.1:1")


def _torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """torchrun with two processes in its own session, so a timeout kills the workers too, not just torchrun."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun ran past {timeout}s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def test_two_gloo_processes_end_identical_and_only_rank_0_writes(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + JOB)
    done = _torchrun(str(script), str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    weights = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    # Gradients are averaged over ranks, so every step leaves the same parameters on both ranks.
    for name in ("stepped", "final"):
        assert all(torch.equal(weights[0][name][k], weights[1][name][k]) for k in weights[0][name]), name
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[1]["saves"] == []
    assert {"last.pt", "best.pt"} <= set(reports[0]["saves"])
    # Metrics are reduced over ranks, so both ranks saw the same history (and stopped together).
    assert reports[0]["history"] == reports[1]["history"]
    assert [row["epoch"] for row in reports[0]["history"]] == [0, 0, 1]
    assert {"ae_val_loss", "val_acc", "val_acc_what", "qa_train_loss"} <= set().union(*reports[0]["history"])


@pytest.mark.slow
def test_entry_point_under_torchrun_tracks_once(tmp_path):
    from mlflow.tracking import MlflowClient

    from configs.loader import config_to_yaml
    from tasks.text.store import build_text
    from test_baseline import tiny_config, write_annotations

    write_annotations(tmp_path / "dataset")
    config = tiny_config(tmp_path)
    config = config.model_copy(update={"data_dir": tmp_path})
    build_text(config.text, config.dataset.root, config.store, config.dataset.name)
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    done = _torchrun("-m", "cli.distributed", str(path), "--set", "train.qa.epochs=2", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 alone reports
    summary = json.loads(lines[0])
    client = MlflowClient(config.tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["question_only", "train"]
    assert all(run.info.status == "FINISHED" for run in runs)
    child = next(run for run in runs if run.info.run_name == "question_only")
    assert child.data.params["world_size"] == "2"
    assert child.data.metrics["test_acc"] == pytest.approx(summary["test_acc"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_of_one_process_end_like_two_processes_on_one_node(tmp_path):
    """`--nnodes 2` on loopback (two torchrun launchers, one rank each, c10d rendezvous) ends with the
    metrics of `--nproc 2` on one node: the ranks, the data and the order are the same."""
    from configs.loader import config_to_yaml
    from tasks.text.store import build_text
    from test_baseline import tiny_config, write_annotations

    write_annotations(tmp_path / "dataset")
    config = tiny_config(tmp_path).model_copy(update={"data_dir": tmp_path})
    build_text(config.text, config.dataset.root, config.store, config.dataset.name)
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")

    def summary(stdout: str) -> dict:
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        assert len(lines) == 1, stdout[-2000:]
        return json.loads(lines[0])

    one_node = _torchrun("-m", "cli.distributed", str(path), "--set", "train.qa.epochs=2",
                         "--set", f"train.checkpoint_dir={tmp_path / 'ckpt-one'}", "--json")
    assert one_node.returncode == 0, one_node.stderr[-3000:]
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = []
    for rank in (0, 1):
        command = torchrun_command(path, ["train.qa.epochs=2", f"train.checkpoint_dir={tmp_path / 'ckpt-two'}"],
                                   nproc=1, json_out=True, nnodes=2, node_rank=rank, rdzv_endpoint=endpoint,
                                   rdzv_id="two-nodes")
        nodes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      cwd=REPO, env=env, start_new_session=True))
    outputs = []
    try:
        outputs = [node.communicate(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    reports = [line for out, _ in outputs for line in out.splitlines() if line.startswith("{")]
    assert len(reports) == 1  # global rank 0 alone reports
    two_nodes, reference = json.loads(reports[0]), summary(one_node.stdout)
    for key in ("val_acc", "test_acc", "test_acc_by_type", "baseline_test_acc"):
        assert two_nodes.get(key) == reference.get(key), key
