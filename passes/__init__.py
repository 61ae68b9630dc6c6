"""recc's graph passes, one per module. This registry maps each pass's stable name to its class."""

from __future__ import annotations

from .batch_embedding_bags import BatchEmbeddingBags
from .eliminate_dead_nodes import EliminateDeadNodes
from .fuse_attention import FuseAttention
from .fuse_dense_activation import FuseDenseActivation
from .fuse_dot_interaction import FuseDotInteraction
from .fuse_recurrent import FuseRecurrent
from .simplify_reshapes import SimplifyReshapes
from .simplify_slices import SimplifySlices

PASSES = {cls.name: cls for cls in (SimplifyReshapes, FuseDenseActivation, BatchEmbeddingBags,
                                         FuseDotInteraction, FuseAttention, FuseRecurrent, SimplifySlices, EliminateDeadNodes)}

__all__ = ["PASSES"]
