"""Structured matrices: the StructuredLinear base and registry, Monarch (layer, optimal projection), butterfly factors."""
from compress.structured.base import (
                                         STRUCTURE_MODULES,
                                         StructuredLinear,
                                         structure,
                                         structurize,
)
from compress.structured.base import plan as plan_structure
from compress.structured.monarch import (
                                         MonarchLinear,
                                         MonarchShape,
                                         monarch_to_dense,
                                         monarchize,
                                         plan,
                                         project,
                                         projection_error,
                                         sqrt_shape,
                                         transpose_permutation,
)

__all__ = [
                                         "STRUCTURE_MODULES",
                                         "MonarchLinear",
                                         "MonarchShape",
                                         "StructuredLinear",
                                         "monarch_to_dense",
                                         "monarchize",
                                         "plan",
                                         "plan_structure",
                                         "project",
                                         "projection_error",
                                         "sqrt_shape",
                                         "structure",
                                         "structurize",
                                         "transpose_permutation",
]
