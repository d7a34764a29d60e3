"""Variable embedding dims (Section 4.1 of the paper): PCA dims per field, and compression that folds the
PCA bases into the field matrices instead of retraining."""

from .cost import DimsCost, cached_flops, cross_field_dims
from .dims import (DimsSelection, FieldDim, feature_counts, fit_pcas, require_field_matrices, select_dims,
                   write_dims_csv)
from .fold import compress_model
from .pca import FieldPCA, fit_field_pca

__all__ = ["DimsCost", "DimsSelection", "FieldDim", "FieldPCA", "cached_flops", "compress_model", "cross_field_dims",
           "feature_counts", "fit_field_pca", "fit_pcas", "require_field_matrices", "select_dims",
           "write_dims_csv"]
