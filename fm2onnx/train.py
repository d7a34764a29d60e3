"""Training with early stopping on validation AUC, streaming shuffled batches from an encoded data set."""

from __future__ import annotations

import copy
import ctypes
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from models import FMFamilyModel, L2Config, ModelSpec, build_model
from models.memory import DEFAULT_MEMORY_BUDGET, MIN_MEMORY_BUDGET, micro_batch_rows
from models.scoring import score_rows

from . import interrupt
from .data.metrics import auc, log_loss
from .data.parallel import physical_cores  # also the default number of encoding processes
from .distributed import World, shard_batches
from .errors import Fm2OnnxError
from .files import reported_write_errors
from .progress import Progress
from .resume import ResumeFile, ResumeState

OPTIMIZERS = ("adam", "adagrad")
# Shuffled rows are read in blocks of this many sorted indices, so a memory-mapped file is read
# mostly sequentially and memory stays bounded however large the data set is.
READ_BLOCK_ROWS = 1 << 19
# Past these an optimizer step or the penalty swamps the loss: a typo, not a setting.
MAX_LEARNING_RATE = 10.0
MAX_L2 = 1.0


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    learning_rate: float = 3e-4
    l2_embeddings: float = 1e-6
    l2_field_matrices: float = 1e-6
    l2_linear: float = 1e-6
    batch_size: int = 2048
    # A cap, not a schedule: early stopping ends a run long before it on any data set tried
    # (docs/defaults.md), so the default never stops while validation AUC still climbs.
    epochs: int = 100
    # Three, not two: on a small validation set AUC can dip for two epochs early on while training still helps.
    patience: int = 3  # stop after this many epochs in a row without a better validation AUC
    # Early stopping waits for this many optimizer steps: on a small data set (a few steps per epoch)
    # validation AUC can sit on a plateau, even dip, for tens of epochs before training takes off.
    min_steps: int = 200
    seed: int = 0
    threads: int | None = None  # None: one per physical core
    # Working memory of one training step and of one scoring chunk, in bytes: a batch that needs more
    # is split into micro-batches whose gradients add up to the batch's (models/memory.py).
    memory_budget: int = DEFAULT_MEMORY_BUDGET

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise Fm2OnnxError(f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        # math.isfinite first: nan passes every comparison below, and inf would train to NaN
        if not math.isfinite(self.learning_rate) or not 0 < self.learning_rate <= MAX_LEARNING_RATE:
            raise Fm2OnnxError(f"learning rate {self.learning_rate}: expected a number in (0, {MAX_LEARNING_RATE}]")
        for option, value, least in (("--batch-size", self.batch_size, 1), ("--epochs", self.epochs, 1),
                                     ("--patience", self.patience, 1), ("--min-steps", self.min_steps, 0),
                                     ("--seed", self.seed, 0)):
            if value < least:
                raise Fm2OnnxError(f"{option} {value}: must be >= {least}")
        if self.threads is not None and self.threads < 1:
            raise Fm2OnnxError(f"--threads {self.threads}: must be >= 1 (leave it out for one per physical core)")
        if self.memory_budget < MIN_MEMORY_BUDGET:
            raise Fm2OnnxError(f"memory budget {self.memory_budget} bytes: at least 1M is needed")
        l2 = (self.l2_embeddings, self.l2_field_matrices, self.l2_linear)
        if not all(math.isfinite(w) and 0 <= w <= MAX_L2 for w in l2):
            raise Fm2OnnxError(f"L2 weights {list(l2)}: expected numbers in [0, {MAX_L2}]")

    @property
    def l2(self) -> L2Config:
        return L2Config(self.l2_embeddings, self.l2_field_matrices, self.l2_linear)


@dataclass
class TrainResult:
    model: FMFamilyModel
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # split -> {"auc", "logloss", "rows"} for the best model


def make_optimizers(model: FMFamilyModel, config: TrainConfig) -> list[torch.optim.Optimizer]:
    """Embedding tables get sparse gradients: SparseAdam (lazy Adam) for them, Adam for the rest;
    Adagrad takes both kinds in one optimizer."""
    if config.optimizer == "adagrad":
        return [torch.optim.Adagrad(model.parameters(), lr=config.learning_rate)]
    sparse, dense = [], []
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding) and module.sparse:
            sparse.append(module.weight)
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    optimizers = [torch.optim.Adam(dense, lr=config.learning_rate)]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=config.learning_rate))
    return optimizers


def shuffled_batches(ids: np.ndarray, labels: np.ndarray, rows: np.ndarray, batch_size: int,
                     rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    order = rng.permutation(rows)
    for start in range(0, len(order), READ_BLOCK_ROWS):
        block = np.sort(order[start:start + READ_BLOCK_ROWS])
        block_ids = np.asarray(ids[block], dtype=np.int64)
        block_labels = np.asarray(labels[block], dtype=np.float32)
        shuffle = rng.permutation(len(block))
        for b in range(0, len(block), batch_size):
            pick = shuffle[b:b + batch_size]
            yield torch.from_numpy(block_ids[pick]), torch.from_numpy(block_labels[pick])


def predict_logits(model: FMFamilyModel, ids: np.ndarray, rows: np.ndarray | None = None,
                   memory_budget: int = DEFAULT_MEMORY_BUDGET) -> np.ndarray:
    """float64 logits of ``ids[rows]``, scored in chunks whose working memory fits ``memory_budget``."""
    return score_rows(model, ids, rows, memory_budget)


def evaluate_rows(model: FMFamilyModel, ids: np.ndarray, labels: np.ndarray, rows: np.ndarray,
                  memory_budget: int = DEFAULT_MEMORY_BUDGET) -> dict:
    rows = np.sort(rows)
    logits = predict_logits(model, ids, rows, memory_budget)
    y = np.asarray(labels[rows], dtype=np.float64)
    probs = 1.0 / (1.0 + np.exp(-logits))
    return {"auc": auc(y, logits), "logloss": log_loss(y, probs), "rows": int(len(rows))}


@dataclass
class BestEpoch:
    """Early stopping's state: the best score so far, its epoch and weights, and the epochs since."""

    score: float = -np.inf
    epoch: int = 0
    state: dict | None = None
    stale: int = 0

    def offer(self, score: float, epoch: int, model: FMFamilyModel) -> bool:
        """Keep ``model``'s weights if ``score`` beats the best; True if it did."""
        if score > self.score:
            self.score, self.epoch, self.stale = score, epoch, 0
            self.state = copy.deepcopy(model.state_dict())
            return True
        self.stale += 1
        return False

    def to_dict(self) -> dict:
        return {"score": float(self.score), "epoch": self.epoch, "stale": self.stale, "state": self.state}

    @classmethod
    def from_dict(cls, saved: dict) -> "BestEpoch":
        return cls(saved["score"], saved["epoch"], saved["state"], saved["stale"])


class TrainingDiverged(Fm2OnnxError):
    """The training loss became NaN or infinite; ``result`` is the best epoch before it, if one finished."""

    result: "TrainResult | None" = None


@dataclass
class BatchGuard:
    """One epoch's batch boundaries: where a stop request (SIGINT, SIGTERM) takes effect, and where a loss
    that is no longer finite ends the run, both named by epoch and batch."""

    epoch: int
    batch: int = 0

    def batches(self, batches: Iterator, world: World = World()) -> Iterator:
        for self.batch, item in enumerate(batches, start=1):
            interrupt.stop_if(world.agreed_stop(), lambda: f"stopped at epoch {self.epoch} batch {self.batch}")
            yield item

    def check_loss(self, loss: float) -> None:
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss} at epoch {self.epoch} batch {self.batch} "
                                   "(a lower --lr usually helps)")


@dataclass
class TrainingRun:
    """What the epoch loop moves forward, in one place: the model, its optimizers, the shuffling
    generator, early stopping's best epoch and the history; ``epoch`` counts finished epochs."""

    model: FMFamilyModel
    optimizers: list[torch.optim.Optimizer]
    rng: np.random.Generator
    rows: dict[str, np.ndarray]
    best: BestEpoch = field(default_factory=BestEpoch)
    history: list[dict] = field(default_factory=list)
    epoch: int = 0

    def finished(self, config: TrainConfig) -> bool:
        steps = self.epoch * -(-len(self.rows["train"]) // config.batch_size)
        stopped_early = self.epoch > 0 and self.best.stale >= config.patience and steps >= config.min_steps
        return self.epoch >= config.epochs or stopped_early

    def resume_state(self, options: dict) -> ResumeState:
        return ResumeState.capture(options, self.epoch, self.model, self.optimizers, self.rng,
                                   self.best.to_dict(), self.history)

    def resume_from(self, state: ResumeState, where: Path) -> None:
        state.restore(self.model, self.optimizers, self.rng, where)
        self.best, self.history, self.epoch = BestEpoch.from_dict(state.best), state.history, state.epoch


def train(spec: ModelSpec, dataset, config: TrainConfig, *, progress: bool = True,
          log_path: Path | None = None, start_from: FMFamilyModel | None = None,
          resume_file: ResumeFile | None = None, resume: ResumeState | None = None,
          world: World = World()) -> TrainResult:
    """Train on dataset's train split, early-stop on its validation AUC, score the best model on all splits.

    ``start_from`` fine-tunes given weights instead of a fresh init; they then compete as epoch 0, so
    fine-tuning never returns a model with a worse validation AUC than it was given. With ``resume_file``
    the run's state is saved there at every epoch's end; ``resume`` (loaded from it) continues a run
    where it stopped. SIGINT and SIGTERM stop the run at the next batch boundary (interrupt.Interrupted);
    a loss that is no longer finite stops it with TrainingDiverged, carrying the best epoch so far.

    With several workers (``world``) each trains on its shard; rank 0 alone evaluates, decides when to
    stop, writes the log and the resumable state and returns the metrics (the others: their equal
    weights, no metrics). Every rank is given ``resume``.
    """
    config.validate()
    threads = set_threads(config.threads)
    rows = {split: dataset.indices(split) for split in ("train", "valid", "test")}
    if len(rows["train"]) == 0:
        raise Fm2OnnxError("the training split is empty")
    check_both_classes(dataset, rows["valid"])
    model = build_model(spec, sparse=True, seed=config.seed)
    run = TrainingRun(model, make_optimizers(model, config), np.random.default_rng(config.seed), rows)
    if resume is not None:
        run.resume_from(resume, resume_file.path if resume_file else Path("resumable state"))
    elif start_from is not None:
        model.load_state_dict(start_from.state_dict())
        run.best = starting_point(model, dataset, rows["valid"], run.history, config.memory_budget)
    world.broadcast_parameters(model)
    log = EpochLog(log_path if world.is_main else None, run.history if resume is not None else [])
    try:
        with interrupt.stop_at_boundaries(), log:
            run_epochs(run, dataset, config, threads, progress, log, resume_file if world.is_main else None, world)
    except TrainingDiverged as exc:
        if run.best.state is not None:
            exc.result = best_result(run, dataset, config.memory_budget)
        raise
    if not world.is_main:
        return TrainResult(run.model, 0, run.history, {})
    return best_result(run, dataset, config.memory_budget)


def check_both_classes(dataset, valid_rows: np.ndarray) -> None:
    """Early stopping compares validation AUCs, and AUC needs both classes among the validation rows."""
    if not len(valid_rows):
        return  # no validation split: the training loss decides instead
    classes = np.unique(np.asarray(dataset.labels[np.sort(valid_rows)]))
    if len(classes) == 1:
        raise Fm2OnnxError(f"{split_source(dataset, 'valid')}: the validation rows are all one class "
                           f"(label {classes[0]:g}): AUC, and so early stopping, is undefined")


def split_source(dataset, split: str) -> str:
    """The file a split's rows were read from: the user's own file for that split, else the one file
    that was split, else the encoded data set itself."""
    meta = getattr(dataset, "meta", None) or {}
    source = (meta.get("files") or {}).get(split, {}).get("source") or meta.get("source") or {}
    return source.get("path") or str(getattr(dataset, "path", "the data set"))


def run_epochs(run: TrainingRun, dataset, config: TrainConfig, threads: int, progress: bool, log: "EpochLog",
               resume_file: ResumeFile | None, world: World = World()) -> None:
    """Epochs until early stopping or the cap, each saved to ``resume_file`` (if any) once it finished."""
    while not world.main_decides(run.finished(config)):
        epoch = run.epoch + 1
        title = f"epoch {epoch} (at most {config.epochs}, {threads} thread{'s' if threads > 1 else ''})"
        record = {"epoch": epoch} | run_epoch(run.model, run.optimizers, dataset, run.rows["train"], config,
                                               run.rng, title, progress and world.is_main, BatchGuard(epoch), world)
        run.epoch = epoch
        if world.is_main:  # rank 0 evaluates, keeps the best epoch and writes; the others follow its verdict
            finish_epoch(run, record, dataset, config, log, resume_file, progress)
        interrupt.stop_if(world.agreed_stop(), lambda: f"stopped after epoch {epoch}")


def finish_epoch(run: TrainingRun, record: dict, dataset, config: TrainConfig, log: "EpochLog",
                 resume_file: ResumeFile | None, progress: bool) -> None:
    """Score the finished epoch, keep it if it is the best, save the resumable state and log it."""
    valid_rows = run.rows["valid"]
    if len(valid_rows):
        record["valid"] = evaluate_rows(run.model, dataset.ids, dataset.labels, valid_rows, config.memory_budget)
    # Without a validation split, the lowest training loss stands in for the best AUC.
    score = record["valid"]["auc"] if len(valid_rows) else -record["train_logloss_running"]
    improved = run.best.offer(score, run.epoch, run.model)
    record["best_epoch"] = run.best.epoch
    run.history.append(record)
    if resume_file is not None:
        resume_file.save(run.resume_state(resume_file.options))
    report_epoch(record, improved, log, progress)


def best_result(run: TrainingRun, dataset, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> TrainResult:
    """The best epoch's weights, scored on every split: the test score always comes from them."""
    run.model.load_state_dict(run.best.state)
    run.model.eval()
    metrics = {name: evaluate_rows(run.model, dataset.ids, dataset.labels, rows, memory_budget)
               for name, rows in run.rows.items() if len(rows)}
    return TrainResult(run.model, run.best.epoch, run.history, metrics)


def set_threads(threads: int | None) -> int:
    """torch's intra-op threads: ``threads``, or one per physical core; returns the count used."""
    count = threads or physical_cores()
    torch.set_num_threads(count)
    return count


def starting_point(model: FMFamilyModel, dataset, valid_rows: np.ndarray, history: list[dict],
                   memory_budget: int = DEFAULT_MEMORY_BUDGET) -> BestEpoch:
    """``model``'s given weights as epoch 0: the best so far, at their validation AUC if there is a split."""
    score = -np.inf
    if len(valid_rows):
        score = evaluate_rows(model, dataset.ids, dataset.labels, valid_rows, memory_budget)["auc"]
        history.append({"epoch": 0, "valid": {"auc": score}})
    return BestEpoch(score, 0, copy.deepcopy(model.state_dict()))


def run_epoch(model: FMFamilyModel, optimizers: list[torch.optim.Optimizer], dataset, train_rows: np.ndarray,
              config: TrainConfig, rng: np.random.Generator, title: str, progress: bool,
              guard: BatchGuard | None = None, world: World = World()) -> dict:
    """One pass over the shuffled training rows (this worker's shard of them) -> the running loss, speed
    and duration, over all workers."""
    guard = guard or BatchGuard(0)
    model.train()
    bar = Progress(title, enabled=progress)
    loss_sum, seen, started = 0.0, 0, time.perf_counter()
    micro_rows = micro_batch_rows(model.spec, config.batch_size, config.memory_budget)
    batches = (shard_batches(dataset.ids, dataset.labels, train_rows, config.batch_size, rng, world)
               if world.size > 1 else shuffled_batches(dataset.ids, dataset.labels, train_rows, config.batch_size, rng))
    for x, y in guard.batches(batches, world):
        loss_sum += train_step(model, optimizers, x, y, config.l2, micro_rows, world)
        guard.check_loss(loss_sum)
        seen += len(y)
        bar.update(seen * world.size, seen * world.size / len(train_rows), loss=loss_sum / seen)
    for opt in optimizers:  # the last step's gradients would otherwise sit beside the scoring that follows
        opt.zero_grad(set_to_none=True)
    return_freed_memory()
    loss_sum, seen = world.sum(loss_sum, seen)
    seen = int(seen)
    rows_per_s = seen / bar.done(seen, f", loss {loss_sum / max(seen, 1):.4f}")
    return {"train_logloss_running": loss_sum / max(seen, 1), "rows_per_s": rows_per_s,
            "seconds": time.perf_counter() - started}


def return_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim). A training step's
    tensors are freed into the heap, which keeps their pages; without this, the scoring after an
    epoch would add its chunks on top of the epoch's peak instead of reusing that memory."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc: its allocator returns memory its own way
        pass


def train_step(model: FMFamilyModel, optimizers: list[torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor,
               l2: L2Config, micro_rows: int, world: World = World()) -> float:
    """One optimizer step on the batch (x, y) -> its summed log loss.

    A batch wider than ``micro_rows`` goes through forward/backward in micro-batches: each one's mean
    loss and batch-scaled penalty is weighted by its share of the batch, so the accumulated gradients
    are the whole batch's (up to float rounding) and the step is the same. Under several workers the
    gradients are then reduced to the global batch's before the step."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    batch, loss_sum = len(y), 0.0
    for start in range(0, batch, micro_rows):
        xs, ys = x[start:start + micro_rows], y[start:start + micro_rows]
        logits, penalty = model.forward_with_penalty(xs, l2)
        loss = F.binary_cross_entropy_with_logits(logits, ys)
        ((loss + penalty) * (len(ys) / batch)).backward()
        loss_sum += loss.item() * len(ys)
    world.reduce_gradients(model, batch)
    for opt in optimizers:
        opt.step()
    return loss_sum


class EpochLog:
    """The epoch log: one JSON line per finished epoch, flushed, so a long run can be followed.

    The file is created at the first epoch's end, so a run stopped before any epoch finished leaves
    none; a resumed run then rewrites it from the resumable state's history, so it holds every epoch
    once, whatever an earlier run had written."""

    def __init__(self, path: Path | None, earlier: list[dict]):
        self.path, self.earlier, self.file = path, [r for r in earlier if r["epoch"] >= 1], None

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        with reported_write_errors(self.path, "--resume rewrites it whole from the resumable state"):
            if self.file is None:
                self.file = open(self.path, "w")
                self.file.writelines(json.dumps(r) + "\n" for r in self.earlier)
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def __enter__(self) -> "EpochLog":
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()


def report_epoch(record: dict, improved: bool, log: EpochLog, progress: bool) -> None:
    """One line in the epoch log and one line on stderr."""
    log.write(record)
    if progress:
        valid = record.get("valid")
        note = f"valid AUC {valid['auc']:.4f} log loss {valid['logloss']:.4f}" if valid else ""
        print(f"epoch {record['epoch']}: {note}{'  (best)' if improved else ''}", file=sys.stderr)


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)
