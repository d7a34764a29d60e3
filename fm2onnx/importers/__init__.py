"""Importers: models trained elsewhere (FuxiCTR, or any PyTorch state dict plus a JSON mapping) as
fm2onnx checkpoints, with tables remapped so that row 0 of every field is the unknown feature."""

from .common import ImportedParts, load_state_dict, to_checkpoint
from .fuxictr import import_fuxictr
from .torch_mapping import import_torch

__all__ = ["ImportedParts", "import_fuxictr", "import_torch", "load_state_dict", "to_checkpoint"]
