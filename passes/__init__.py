"""recc's graph passes, one per module. This registry maps each pass's stable name to its class."""

from __future__ import annotations

from .batch_embedding_bags import BatchEmbeddingBags
from .canonicalize_activations import CanonicalizeActivations
from .canonicalize_dense import CanonicalizeDense
from .cse import CSE
from .eliminate_dead_nodes import EliminateDeadNodes
from .fold_constants import FoldConstants
from .fuse_attention import FuseAttention
from .fuse_dense_activation import FuseDenseActivation
from .fuse_dot_interaction import FuseDotInteraction
from .fuse_recurrent import FuseRecurrent
from .simplify_reshapes import SimplifyReshapes
from .simplify_slices import SimplifySlices

PASSES = {cls.name: cls for cls in (SimplifyReshapes, FuseDenseActivation, BatchEmbeddingBags,
                                         FuseDotInteraction, FuseAttention, FuseRecurrent, SimplifySlices, EliminateDeadNodes)}
PASSES.update({cls.name: cls for cls in (CSE, CanonicalizeDense, FoldConstants, CanonicalizeActivations)})

__all__ = ["PASSES"]
