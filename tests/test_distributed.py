"""Data-parallel training: shards, the gradient all-reduce against a single process's gradient, and a
two-worker run from the command line."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from fm2onnx.distributed import SPARSE_METHODS, World, reduce_gradients, shard_batches, shard_parts
from models import L2Config, ModelSpec, build_model
from tests.small_runs import synthesize_ids

SPEC = ModelSpec.create("fmfm", ["a", "b", "c"], [7, 5, 9], dim=3)
L2 = L2Config(1e-2, 1e-2, 1e-2)


@pytest.mark.parametrize("total,batch,world_size", [(1000, 64, 2), (1000, 64, 3), (129, 64, 2), (130, 64, 3),
                                                    (5, 64, 2), (64, 64, 4)])
def test_shards_are_disjoint_cover_the_rows_and_are_never_empty(total, batch, world_size):
    order = np.random.default_rng(0).permutation(np.arange(10, 10 + total))
    shards = [list(shard_parts(order, batch, rank, world_size)) for rank in range(world_size)]
    steps = {len(s) for s in shards}
    assert len(steps) == 1  # every worker takes the same number of steps, or the all-reduce would hang
    rows = np.concatenate([part for shard in shards for part, _ in shard])
    assert len(rows) == total and np.array_equal(np.sort(rows), np.sort(order))
    for step in zip(*shards):
        assert all(len(part) >= 1 for part, _ in step)
        assert sum(len(part) for part, _ in step) == step[0][1]  # the global batch's rows, split


def test_shard_batches_read_each_workers_own_rows():
    rows = np.arange(3, 2003, dtype=np.int64)
    ids = np.repeat(np.arange(2003, dtype=np.int32)[:, None], 2, axis=1)  # a row's ids are its index
    labels = (np.arange(2003) % 2).astype(np.float32)
    seen = []
    for rank in range(2):
        rng = np.random.default_rng(5)
        for x, y in shard_batches(ids, labels, rows, 100, rng, World(rank, 2)):
            assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(y, (x[:, 0] % 2).float())
            seen.append(x[:, 0].numpy())
    assert np.array_equal(np.sort(np.concatenate(seen)), rows)


def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.stack([torch.randint(0, v, (8,), generator=g) for v in SPEC.vocab_sizes], dim=1)
    return x, torch.randint(0, 2, (8,), generator=g).float()


def mean_loss_grads(model, x, y):
    logits, penalty = model.forward_with_penalty(x, L2)
    (F.binary_cross_entropy_with_logits(logits, y) + penalty).backward()
    return {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone() for n, p in model.named_parameters()}


def reduce_on_two_ranks(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    x, y = batch()
    part = slice(0, 3) if rank == 0 else slice(3, 8)  # unequal parts: the weighting matters
    results = {}
    for method in SPARSE_METHODS:
        model = build_model(SPEC, sparse=True, seed=0)
        mean_loss_grads(model, x[part], y[part])
        reduce_gradients(model, len(y[part]), method)
        results[method] = {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad) for n, p in model.named_parameters()}
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_sparse_and_dense_gradient_all_reduce_equal_the_whole_batch_gradient(tmp_path):
    mp.spawn(reduce_on_two_ranks, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    x, y = batch()
    reference = mean_loss_grads(build_model(SPEC, sparse=False, seed=0), x, y)  # one process, dense tables
    for rank in range(2):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for method in SPARSE_METHODS:
            assert results[method].keys() == reference.keys()
            for name, grad in reference.items():
                torch.testing.assert_close(results[method][name], grad, rtol=1e-5, atol=1e-7,
                                           msg=f"{method}: {name}")


def leave_after_an_optimizer(rank, port, out_dir):
    """A launched worker's life in brief: join, make an optimizer (which imports torch._dynamo), leave."""
    from fm2onnx import distributed

    first_import = "torch._dynamo" not in sys.modules  # else this process could not show the fault
    os.environ.update({"TORCHELASTIC_RUN_ID": "test", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    world = distributed.start()
    torch.optim.Adam(build_model(SPEC, seed=0).parameters())
    with distributed.session(world):
        world.barrier()
    threads = sorted(Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task"))
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({"first_import": first_import, "threads": threads}))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process's threads from /proc")
def test_leaving_the_group_ends_its_threads(tmp_path):
    """Threads of a process group that outlive the interpreter abort the worker at exit, now and then."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(leave_after_an_optimizer, args=(port, str(tmp_path)), nprocs=2)
    for rank in range(2):
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert seen["first_import"], "torch._dynamo was imported before the group: the test shows nothing"
        assert not [t for t in seen["threads"] if "gloo" in t], seen["threads"]


class Rows:
    """A dataset in memory: 400 rows of SPEC's fields, the first 300 for training, the rest for validation."""

    def __init__(self):
        rng = np.random.default_rng(2)
        self.ids = np.stack([rng.integers(0, v, 400) for v in SPEC.vocab_sizes], axis=1)
        self.labels = (rng.random(400) < 0.3).astype(np.float32)

    def indices(self, split):
        return {"train": np.arange(300), "valid": np.arange(300, 400), "test": np.arange(0)}[split]


def signal_one_rank_first(moment: str, rank: int) -> None:
    """Make the signal reach ``rank`` alone first, at ``moment``; the other rank's copy comes later."""
    import fm2onnx.train as training
    from fm2onnx import interrupt

    if moment == "epoch end":  # rank 0 scores and saves epoch 1 while rank 1 waits for its verdict
        report = training.report_epoch

        def report_then_signal(*args, **kwargs):  # only rank 0 reports epochs
            report(*args, **kwargs)
            interrupt.request_stop(signal.SIGINT)

        training.report_epoch = report_then_signal
    elif moment == "after a batch's all-reduce" and rank == 1:
        agreed_stop, boundaries = World.agreed_stop, []

        def agree_then_signal(world):
            agreed = agreed_stop(world)
            boundaries.append(1)
            if len(boundaries) == 3:
                interrupt.request_stop(signal.SIGINT)
            return agreed

        World.agreed_stop = agree_then_signal


def train_two_ranks_signalled(rank, moment, init_file, out_dir):
    import fm2onnx.train as training
    from fm2onnx import interrupt
    from fm2onnx.distributed import session

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    signal_one_rank_first(moment, rank)
    config = training.TrainConfig(batch_size=32, epochs=3, min_steps=0, threads=1)
    world = World(rank, 2)
    try:
        with session(world):
            training.train(SPEC, Rows(), config, progress=False, world=world)
        outcome = "finished"
    except interrupt.Interrupted as exc:
        outcome = f"{exc} ({exc.exit_code})"
    except SystemExit as exc:
        outcome = f"quiet exit {exc.code}"
    except Exception as exc:  # a worker left waiting in a collective for one that is gone
        outcome = f"{type(exc).__name__}: {exc}"
    (Path(out_dir) / f"rank{rank}.txt").write_text(outcome)


@pytest.mark.parametrize("moment, where", [("epoch end", "stopped after epoch 1"),
                                           ("after a batch's all-reduce", "stopped at epoch 1 batch 4")])
def test_a_signal_that_reaches_one_worker_first_stops_both_at_the_same_boundary(tmp_path, moment, where):
    """Both ranks stop at one boundary, rank 0 saying where, rank 1 silent; a request that came after a
    boundary's all-reduce waits for the next boundary."""
    mp.spawn(train_two_ranks_signalled, args=(moment, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    outcomes = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(2)]
    assert outcomes == [f"{where} (130)", "quiet exit 130"]


def train_args(data, output, *extra):
    # 100 global batches an epoch, so that a signal sent once the first epoch is saved lands in the second
    return ("train", "--data", data, "--model", "fmfm", "--dim", "4", "--epochs", "2", "--batch-size", "64",
            "--workers", "2", "--threads", "1", "-o", output, "--quiet", *extra)


def left_in(temp: Path) -> set[str]:
    """What a run left in its temp dir, but for the caches torch and onnxruntime keep there per user."""
    return {p.name for p in temp.iterdir()} - {f"torchinductor_{getpass.getuser()}", ".ses"}


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    """An uninterrupted two-worker run, from the command line in a process of its own like the others."""
    tmp = tmp_path_factory.mktemp("two-workers")
    data = synthesize_ids(tmp)
    out = tmp / "run" / "ckpt.pt"
    out.parent.mkdir()
    temp = tmp / "temp"
    temp.mkdir()
    done = subprocess.run([sys.executable, "-m", "fm2onnx", *map(str, train_args(data, out))], capture_output=True,
                          text=True, env=os.environ | {"TMPDIR": str(temp)})
    assert done.returncode == 0, done.stderr
    assert left_in(temp) == set()  # the launcher's log folder is gone with it
    return data, out


@pytest.mark.slow
def test_two_workers_write_one_checkpoint_that_exports(cli, two_worker_run, tmp_path):
    _, out = two_worker_run
    assert sorted(p.name for p in out.parent.iterdir()) == ["ckpt.pt", "ckpt.pt.log.jsonl"]  # rank 1 wrote nothing
    log = [json.loads(line) for line in (out.parent / "ckpt.pt.log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all(r["valid"]["auc"] > 0 for r in log)
    assert torch.load(out, weights_only=True)["training"]["workers"] == 2
    code, _, err = cli("export", out, "-o", tmp_path / "model.onnx")
    assert code == 0 and (tmp_path / "model.onnx").is_file(), err


@pytest.mark.slow
def test_a_stopped_two_worker_run_resumes_to_the_uninterrupted_model(two_worker_run, tmp_path):
    """SIGINT to the launcher, which passes it to both workers: they stop at the same batch, rank 0 having
    saved the first epoch; ``--resume`` with two workers then ends with the uninterrupted run's model."""
    data, reference = two_worker_run
    out = tmp_path / "ckpt.pt"
    command = [sys.executable, "-m", "fm2onnx", *map(str, train_args(data, out))]
    temp = tmp_path.parent / f"{tmp_path.name}-temp"
    temp.mkdir()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"TMPDIR": str(temp)})
    state = tmp_path / "ckpt.pt.resume.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    [line] = err.strip().splitlines()  # one voice: rank 0's, neither rank 1's nor the launcher's
    assert f"kept in {state}" in line
    assert left_in(temp) == set()  # a stopped run leaves no launcher logs behind either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt.log.jsonl", "ckpt.pt.resume.pt"]

    done = subprocess.run(command + ["--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = (torch.load(path, weights_only=True) for path in (out, reference))
    for name, tensor in b["state_dict"].items():
        assert torch.equal(a["state_dict"][name], tensor), name
    assert a["training"]["metrics"] == b["training"]["metrics"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.pt.log.jsonl"]


@pytest.mark.parametrize("args,message", [
    (("--workers", "0"), "--workers 0: expected 1 or more"),
    (("--nnodes", "2"), "--nnodes 2: several machines meet at --rdzv-endpoint"),
])
def test_bad_launch_options_fail_in_one_line(cli, tmp_path, args, message):
    data = tmp_path / "d.txt"
    data.write_text("")
    code, _, err = cli("train", "--data", data, "-o", tmp_path / "x.pt", "--quiet", *args)
    assert code == 2 and message in err and "Traceback" not in err
