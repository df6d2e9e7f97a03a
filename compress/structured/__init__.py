"""Structured matrices: Monarch (layer, optimal projection, model surgery) and butterfly factors."""
from compress.structured.monarch import (MonarchLinear, MonarchShape, monarch_to_dense, monarchize, plan, project,
                                         projection_error, sqrt_shape, transpose_permutation)

__all__ = ["MonarchLinear", "MonarchShape", "monarch_to_dense", "monarchize", "plan", "project", "projection_error",
           "sqrt_shape", "transpose_permutation"]
