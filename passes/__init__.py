"""recc's graph passes, one per module. This registry maps each pass's stable name to its class."""

from __future__ import annotations

from .eliminate_dead_nodes import EliminateDeadNodes
from .fuse_dense_activation import FuseDenseActivation
from .simplify_reshapes import SimplifyReshapes

PASSES = {cls.name: cls for cls in (SimplifyReshapes, FuseDenseActivation, EliminateDeadNodes)}

__all__ = ["PASSES"]
