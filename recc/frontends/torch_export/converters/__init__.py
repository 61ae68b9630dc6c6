"""ATen op -> IR converters, one module per op family; importing this package registers them all."""

from recc.frontends.torch_export.converters import (dense, elementwise, embedding, math, resize,  # noqa: F401
                                                 scalars, scatter, scatter_index, shapes, sort, strided)
from recc.frontends.torch_export.converters.context import (CONVERTERS, TORCH_TO_IR_DTYPE, ConversionError, Ctx,
                                                             Lazy, converts)

__all__ = ["CONVERTERS", "TORCH_TO_IR_DTYPE", "ConversionError", "Ctx", "Lazy", "converts"]
