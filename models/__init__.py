"""The FM model family (LR, FM, FFM, FwFM, FvFM, FmFM) as one field-interaction abstraction."""

from .field_matrices import FieldMatrices
from .fm_family import FMFamilyModel, L2Config, build_model
from .interactions import FFMInteraction, FieldMatrixInteraction
from .spec import DEFAULT_LINEAR, FIELD_MATRIX_KIND, LINEAR_FORMS, MODEL_KINDS, ModelSpec, check_field_count

__all__ = ["DEFAULT_LINEAR", "FIELD_MATRIX_KIND", "FFMInteraction", "FMFamilyModel", "FieldMatrices",
           "FieldMatrixInteraction", "L2Config", "LINEAR_FORMS", "MODEL_KINDS", "ModelSpec", "build_model",
           "check_field_count"]
