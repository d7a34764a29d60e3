"""Optional fine-tuning of a compressed model: the trainer's loop, but starting from the folded weights.

Epoch 0 (the compressed model as folded) competes for "best" too, so fine-tuning never returns a model
with a worse validation AUC than it was given.
"""

from __future__ import annotations

import copy

import numpy as np
import torch.nn.functional as F

from models import FMFamilyModel, build_model

from ..progress import Progress
from ..train import TrainConfig, TrainResult, evaluate_rows, make_optimizers, shuffled_batches


def finetune(model: FMFamilyModel, dataset, config: TrainConfig, *, progress: bool = True) -> TrainResult:
    config.validate()
    train_rows, valid_rows, test_rows = (dataset.indices(s) for s in ("train", "valid", "test"))
    tuned = build_model(model.spec, sparse=True)
    tuned.load_state_dict(model.state_dict())
    optimizers = make_optimizers(tuned, config)
    rng = np.random.default_rng(config.seed)

    def score() -> float:
        if not len(valid_rows):
            return 0.0
        return evaluate_rows(tuned, dataset.ids, dataset.labels, valid_rows)["auc"]

    best_auc, best_epoch, best_state, stale = score(), 0, copy.deepcopy(tuned.state_dict()), 0
    history = [{"epoch": 0, "valid_auc": best_auc}]
    for epoch in range(1, config.epochs + 1):
        tuned.train()
        bar = Progress(f"fine-tune {epoch}/{config.epochs}", enabled=progress)
        seen = 0
        for x, y in shuffled_batches(dataset.ids, dataset.labels, train_rows, config.batch_size, rng):
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            logits, penalty = tuned.forward_with_penalty(x, config.l2)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            (loss + penalty).backward()
            for opt in optimizers:
                opt.step()
            seen += len(y)
            bar.update(seen, seen / len(train_rows), loss=loss.item())
        bar.done(seen)
        auc = score()
        history.append({"epoch": epoch, "valid_auc": auc})
        if auc > best_auc:
            best_auc, best_epoch, best_state, stale = auc, epoch, copy.deepcopy(tuned.state_dict()), 0
        else:
            stale += 1
            if stale > config.patience:
                break
    result_model = build_model(model.spec)
    result_model.load_state_dict(best_state)
    result_model.eval()
    metrics = {name: evaluate_rows(result_model, dataset.ids, dataset.labels, rows)
               for name, rows in (("train", train_rows), ("valid", valid_rows), ("test", test_rows)) if len(rows)}
    return TrainResult(result_model, best_epoch, history, metrics)
