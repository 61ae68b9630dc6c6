"""recc's graph passes, one per module. This registry maps each pass's stable name to its class."""

from __future__ import annotations

from recc.passes.batch_embedding_bags import BatchEmbeddingBags
from recc.passes.canonicalize_activations import CanonicalizeActivations
from recc.passes.canonicalize_dense import CanonicalizeDense
from recc.passes.canonicalize_lookups import CanonicalizeLookups
from recc.passes.cse import CSE
from recc.passes.eliminate_dead_nodes import EliminateDeadNodes
from recc.passes.fold_constants import FoldConstants
from recc.passes.fuse_attention import FuseAttention
from recc.passes.fuse_dense_activation import FuseDenseActivation
from recc.passes.fuse_dot_interaction import FuseDotInteraction
from recc.passes.fuse_recurrent import FuseRecurrent
from recc.passes.quantize_dense import QuantizeDense
from recc.passes.simplify_reshapes import SimplifyReshapes
from recc.passes.simplify_slices import SimplifySlices

PASSES = {cls.name: cls for cls in (
    SimplifyReshapes, CSE, CanonicalizeDense, FoldConstants, CanonicalizeActivations, FuseDenseActivation,
    CanonicalizeLookups, BatchEmbeddingBags, FuseDotInteraction, FuseAttention, FuseRecurrent, SimplifySlices,
    EliminateDeadNodes, QuantizeDense)}

__all__ = ["PASSES"]
