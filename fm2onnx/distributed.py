"""Data-parallel training on torch.distributed (gloo, CPU): process group, shards, gradient all-reduce.

A worker is a process started by torch's elastic launcher (``torchrun``, or ``fm2onnx train --workers N``
through :func:`launch`), which sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and the rendezvous.
Every worker holds the whole model. Each step, the step's global batch (``--batch-size`` rows of the
seeded epoch permutation) is split among the workers, each computes the gradient of its part, and the
gradients are summed, each weighted by its part's rows, so an update equals the one a single process
makes on the whole global batch. Rank 0 alone evaluates, decides early stopping and writes files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from . import interrupt
from .errors import Fm2OnnxError

# Rows of each worker's shard read per block, sorted, so memory-mapped ids are read mostly sequentially
# and memory stays bounded (the single-process reader's block size).
READ_BLOCK_ROWS = 1 << 19
# How long a worker waits for the others in one collective: the others wait while rank 0 encodes the
# text (tens of minutes for 45M rows) or scores the validation split, far past gloo's default 30 minutes.
# A worker that dies is noticed at once (its connections close); this only bounds a silent hang.
COLLECTIVE_TIMEOUT = timedelta(hours=2)
# The ways reduce_sparse can all-reduce the embedding tables' gradients; training uses the first, the
# fastest on 2 processes (bench/train_workers.py, docs/training.md).
SPARSE_METHODS = ("gather", "union", "native")


def launched() -> bool:
    """True in a worker process of a multi-process run (torchrun or ``--workers``)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass
class World:
    """This process's place among the workers; ``World()`` is a single process and makes every call a no-op."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def on_main(self, work: Callable[[], object], share: bool = False):
        """``work()`` on rank 0 while the others wait; its value on every rank if ``share`` (else None
        elsewhere). If it raises Fm2OnnxError, rank 0 reports it and the others exit quietly (status 2), so
        the error is printed once."""
        if self.size == 1:
            return work()
        outcome, error, value = [("value", None)], None, None
        if self.is_main:
            try:
                value = work()
                outcome = [("value", value if share else None)]
            except Fm2OnnxError as exc:
                error, outcome = exc, [("error", str(exc))]
        dist.broadcast_object_list(outcome, src=0)
        if error is not None:
            raise error
        if outcome[0][0] == "error":
            raise SystemExit(2)
        return value if self.is_main else outcome[0][1]

    def main_decides(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (e.g. early stopping's verdict)."""
        if self.size == 1:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int64)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the workers."""
        if self.size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast_parameters(self, model: torch.nn.Module) -> None:
        """Rank 0's weights everywhere: every replica starts from the same point."""
        if self.size > 1:
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, src=0)

    def check_same(self, what: str, fingerprint: list[int]) -> None:
        """Fail on every rank if ``fingerprint`` differs between ranks (e.g. another data file on one machine)."""
        if self.size == 1:
            return
        mine = torch.tensor(fingerprint, dtype=torch.int64)
        found = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(found, mine)
        for rank, theirs in enumerate(found):
            if not torch.equal(theirs, found[0]):
                raise Fm2OnnxError(f"rank {rank}'s {what} differs from rank 0's ({theirs.tolist()} against "
                                   f"{found[0].tolist()}): every machine needs the same data and settings")

    def agreed_stop(self) -> int | None:
        """The signal every rank stops for at this boundary, or None. A signal reaches the workers at
        slightly different moments, so they stop on the all-reduced request, never on one that only
        some have seen: those would leave the others waiting in a collective for workers that are gone.
        A request that comes after the all-reduce waits for the next boundary."""
        own = interrupt.stop_requested()
        if self.size == 1:
            return own
        flag = torch.tensor([own or 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        agreed = int(flag.item()) or None
        if agreed is not None and own is None:
            interrupt.take_stop(agreed)
        return agreed

    def reduce_gradients(self, model: torch.nn.Module, rows: int) -> None:
        """Replace each worker's gradients (of its ``rows``-row part's mean loss) by the global batch's."""
        if self.size > 1:
            reduce_gradients(model, rows)


def start() -> World:
    """Join the process group (gloo) when this is a worker of a multi-process run; else a single-process world."""
    if not launched():
        return World()
    if not dist.is_initialized():
        # torch._dynamo (imported by the first optimizer) keeps references to a process group that exists
        # when it is imported, so leaving the group would not end it: its threads would then outlive the
        # interpreter and abort the worker at exit. Imported first, it never sees the group.
        import torch._dynamo  # noqa: F401

        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    env = os.environ
    return World(dist.get_rank(), dist.get_world_size(), int(env.get("LOCAL_RANK", 0)),
                 int(env.get("LOCAL_WORLD_SIZE", 1)))


@contextlib.contextmanager
def session(world: World):
    """The worker's part of a run; the process group is left at its end.

    A run speaks with one voice: a stop by signal is reported by rank 0 alone, which says what it kept;
    the others exit with the same status, silently. A worker whose peer stopped (an error, a kill) fails
    in one line, not a traceback: the peer's own message says why."""
    failed = True
    try:
        yield
        failed = False
    except interrupt.Interrupted as exc:
        if world.is_main:
            raise
        raise SystemExit(exc.exit_code) from None
    except (dist.DistError, RuntimeError) as exc:
        if world.size == 1 or not (isinstance(exc, dist.DistError) or "gloo" in str(exc).lower()):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Fm2OnnxError(f"rank {world.rank}: lost the other workers ({first})") from None
    finally:
        leave(quietly=failed)


def leave(quietly: bool = False) -> None:
    """Leave the process group. ``quietly`` when the run already failed or stopped: a peer that is gone
    can make the teardown fail too, and that second error would only hide the first."""
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except (dist.DistError, RuntimeError):
        if not quietly:
            raise


def encode_once(world: World, open_data: Callable[[bool], object]):
    """``open_data(show_progress)`` on every rank, encoding text only once per machine, never racing.

    Rank 0 opens (and encodes) first while the others wait; then the first worker of each other machine
    (which finds rank 0's cache on a shared file system, or encodes its own copy on a local one); then
    the rest, which find the cache written.
    """
    dataset = world.on_main(lambda: open_data(True))
    if world.size == 1:
        return dataset
    if world.rank != 0 and world.local_rank == 0:
        dataset = open_data(False)
    world.barrier()
    return dataset if dataset is not None else open_data(False)


# ----------------------------------------------------------------------------- shards


def global_batches(total: int, batch_size: int, world_size: int) -> list[tuple[int, int]]:
    """[start, stop) of each global batch over ``total`` permuted rows. A last batch too small to give
    every worker a row joins the one before, so no worker ever gets an empty part."""
    bounds = [(a, min(a + batch_size, total)) for a in range(0, total, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < world_size:
        bounds[-2:] = [(bounds[-2][0], total)]
    return bounds


def part(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of ``rank``'s part of a global batch: sizes differ by at most one row."""
    n = stop - start
    return start + n * rank // world_size, start + n * (rank + 1) // world_size


def shard_parts(order: np.ndarray, batch_size: int, rank: int, world_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """``rank``'s rows of each global batch of the permutation ``order``, with that global batch's row count.
    Over the epoch the ranks' parts are disjoint and together are every row of ``order``."""
    for start, stop in global_batches(len(order), batch_size, world_size):
        a, b = part(start, stop, rank, world_size)
        yield order[a:b], stop - start


def shard_batches(ids: np.ndarray, labels: np.ndarray, rows: np.ndarray, batch_size: int, rng: np.random.Generator,
                  world: World) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This worker's batches of a seeded epoch: every worker draws the same permutation of ``rows`` and reads
    only its own parts of each global batch, a block of parts at a time in sorted row order."""
    if len(rows) < world.size:
        raise Fm2OnnxError(f"the training split has {len(rows)} rows, fewer than the {world.size} workers")
    order = rng.permutation(rows)
    pending: list[np.ndarray] = []
    for mine, _ in shard_parts(order, batch_size, world.rank, world.size):
        pending.append(mine)
        if sum(len(p) for p in pending) >= READ_BLOCK_ROWS // world.size:
            yield from read_parts(ids, labels, pending)
            pending = []
    yield from read_parts(ids, labels, pending)


def read_parts(ids: np.ndarray, labels: np.ndarray, parts: list[np.ndarray]):
    if not parts:
        return
    block = np.concatenate(parts)
    sort = np.argsort(block, kind="stable")
    sorted_rows = block[sort]
    block_ids = np.empty((len(block), ids.shape[1]), dtype=np.int64)
    block_labels = np.empty(len(block), dtype=np.float32)
    block_ids[sort] = np.asarray(ids[sorted_rows], dtype=np.int64)
    block_labels[sort] = np.asarray(labels[sorted_rows], dtype=np.float32)
    start = 0
    for p in parts:
        yield torch.from_numpy(block_ids[start:start + len(p)]), torch.from_numpy(block_labels[start:start + len(p)])
        start += len(p)


# ----------------------------------------------------------------------------- gradients


def sparse_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]


def reduce_gradients(model: torch.nn.Module, rows: int, sparse_method: str = "gather") -> None:
    """Every gradient becomes sum over workers of (rows_r * grad_r) / sum of rows_r: the gradient of the
    global batch's mean loss. Dense gradients and the row counts go in one all-reduce; the embedding
    tables' sparse gradients by ``sparse_method`` (see :func:`reduce_sparse`)."""
    sparse = sparse_parameters(model)
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids and p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in dense]
                     + [torch.ones(1)]) * float(rows)
    dist.all_reduce(flat)
    total = flat[-1].item()
    flat /= total
    offset = 0
    for p in dense:
        p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    if sparse:
        grads = [local_sparse_grad(p) for p in sparse]
        reduced = reduce_sparse(grads, float(rows) / total, sparse_method)
        for p, g in zip(sparse, reduced):
            p.grad = g


def local_sparse_grad(p: torch.nn.Parameter) -> torch.Tensor:
    """``p``'s sparse gradient, coalesced: a batch looks up popular rows many times, so summing them before
    sending shrinks what is sent and what the optimizer coalesces after (bench/train_workers.py)."""
    if p.grad is None:
        return torch.sparse_coo_tensor(torch.empty(1, 0, dtype=torch.int64), torch.empty(0, *p.shape[1:]), p.shape,
                                       check_invariants=False)
    return p.grad.coalesce()


def reduce_sparse(grads: list[torch.Tensor], weight: float, method: str) -> list[torch.Tensor]:
    """Sum over workers of ``weight`` * each sparse gradient (rows of a table), left uncoalesced.

    gather: all-gather every table's touched row ids and values, packed into one id and one value buffer
      (3 collectives per step whatever the number of tables); the optimizer sums duplicate rows.
    union: all-gather the row ids, then all-reduce dense values over the union of touched rows.
    native: gloo's own sparse all-reduce, one call per table.
    """
    if method == "native":
        out = []
        for g in grads:
            g = torch.sparse_coo_tensor(g._indices(), g._values() * weight, g.shape, check_invariants=False)
            dist.all_reduce(g)
            out.append(g)
        return out
    world_size = dist.get_world_size()
    counts = torch.tensor([g._indices().shape[1] for g in grads], dtype=torch.int64)
    all_counts = gather_padded(counts, world_size)  # [W, T]
    indices = gather_padded(torch.cat([g._indices()[0] for g in grads]), world_size,
                            int(all_counts.sum(dim=1).max()))
    if method == "union":
        return union_reduce(grads, weight, all_counts, indices)
    widths = torch.tensor([int(np.prod(g.shape[1:])) for g in grads])
    values = gather_padded(torch.cat([g._values().reshape(-1) for g in grads]) * weight, world_size,
                           int((all_counts * widths).sum(dim=1).max()))
    id_parts, value_parts = unpack(indices, all_counts), unpack(values, all_counts * widths)
    return [torch.sparse_coo_tensor(torch.cat([ids[t] for ids in id_parts])[None],
                                    torch.cat([vals[t] for vals in value_parts]).view(-1, *g.shape[1:]), g.shape,
                                    check_invariants=False) for t, g in enumerate(grads)]


def union_reduce(grads, weight, all_counts, indices) -> list[torch.Tensor]:
    out = []
    id_parts = unpack(indices, all_counts)
    for t, g in enumerate(grads):
        union = torch.unique(torch.cat([ids[t] for ids in id_parts]))
        dense = torch.zeros(len(union), *g.shape[1:])
        dense.index_add_(0, torch.searchsorted(union, g._indices()[0]), g._values() * weight)
        dist.all_reduce(dense)
        out.append(torch.sparse_coo_tensor(union[None], dense, g.shape, is_coalesced=True, check_invariants=False))
    return out


def unpack(gathered: torch.Tensor, sizes: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Each rank's row of ``gathered`` [W, L] cut into its per-table pieces of ``sizes`` [W, T] (then padding)."""
    return [row.split(counts.tolist() + [len(row) - int(counts.sum())]) for row, counts in zip(gathered, sizes)]


def gather_padded(t: torch.Tensor, world_size: int, length: int | None = None) -> torch.Tensor:
    """All-gather a 1-D tensor whose length may differ by rank (padded to ``length``) -> [W, length]."""
    length = len(t) if length is None else length
    padded = torch.zeros(length, dtype=t.dtype)
    padded[:len(t)] = t
    out = torch.empty(world_size * length, dtype=t.dtype)
    dist.all_gather_single(out, padded)
    return out.view(world_size, length)


# ----------------------------------------------------------------------------- launching


def quiet_launcher_warnings() -> None:
    """The launcher's own warnings (a signal forwarded, workers shutting down) repeat what the workers say
    themselves; ``LOGLEVEL=WARNING`` (torch's setting) shows them."""
    if "LOGLEVEL" not in os.environ:
        os.environ["LOGLEVEL"] = "ERROR"  # read as torch's elastic modules are first imported
        logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)


def launch(child_args: list[str], workers: int, nnodes: str, rdzv_endpoint: str | None, rdzv_id: str) -> None:
    """Run ``python -m fm2onnx CHILD_ARGS`` as ``workers`` processes on this machine (of ``nnodes`` machines)
    through torch's elastic launcher, exactly as ``torchrun`` would."""
    quiet_launcher_warnings()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if workers < 1:
        raise Fm2OnnxError(f"--workers {workers}: expected 1 or more")
    if rdzv_endpoint:
        where = ["--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", rdzv_id]
    elif nnodes not in ("1", "1:1"):
        raise Fm2OnnxError(f"--nnodes {nnodes}: several machines meet at --rdzv-endpoint HOST:PORT; give it")
    else:
        where = ["--standalone"]
    # torch threads are set per worker (fm2onnx.train.set_threads); this only silences torchrun's banner
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # the launcher's own log folder (its workers' error files) would otherwise stay behind in the temp dir
    with tempfile.TemporaryDirectory(prefix="fm2onnx-workers-") as logs:
        args = ["--nnodes", nnodes, "--nproc-per-node", str(workers), *where, "--log-dir", logs,
                "-m", "fm2onnx", *child_args]
        try:
            run(parse_args(args))
        except ChildFailedError as exc:
            failed = ", ".join(f"rank {r} (exit code {f.exitcode})" for r, f in sorted(exc.failures.items()))
            raise Fm2OnnxError(f"training workers failed: {failed}; the first error is printed above") from None
        except SignalException as exc:  # Ctrl-C or a kill: the workers got it too, and rank 0 said what it kept
            raise SystemExit(128 + exc.sigval) from None
        except ValueError as exc:  # a malformed --nnodes or --rdzv-endpoint
            raise Fm2OnnxError(f"--nnodes/--rdzv-endpoint: {exc}") from None

