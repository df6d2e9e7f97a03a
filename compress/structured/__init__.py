"""Structured matrices: the StructuredLinear base and registry, Monarch (layer, optimal projection), butterfly factors."""
from compress.structured.base import STRUCTURE_MODULES, StructuredLinear, plan as plan_structure, structure, structurize
from compress.structured.monarch import (MonarchLinear, MonarchShape, monarch_to_dense, monarchize, plan, project,
                                         projection_error, sqrt_shape, transpose_permutation)

__all__ = ["STRUCTURE_MODULES", "StructuredLinear", "plan_structure", "structure", "structurize", "MonarchLinear", "MonarchShape",
           "monarch_to_dense", "monarchize", "plan", "project", "projection_error", "sqrt_shape", "transpose_permutation"]
