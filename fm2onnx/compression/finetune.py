"""Optional fine-tuning of a compressed model: the trainer, started from the folded weights."""

from __future__ import annotations

from models import FMFamilyModel

from ..train import TrainConfig, TrainResult, train


def finetune(model: FMFamilyModel, dataset, config: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Epoch 0 (the model as folded) competes for "best", so the result is never worse on validation."""
    return train(model.spec, dataset, config, progress=progress, start_from=model)
