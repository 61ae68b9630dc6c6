"""recc's graph IR: typed values with symbolic batch dims, ops, parameters outside the graph."""

from . import fused_ops  # noqa: F401  (registers the fused ops' type rules)
from .graph import Graph, Node, Value
from .ops import ACTIVATIONS, OPS, IRTypeError, infer_types
from .printer import print_graph
from .types import Dim, Sym, TensorType, sym
from .verifier import VerificationError, verify

__all__ = ["Graph", "Node", "Value", "OPS", "ACTIVATIONS", "IRTypeError", "infer_types", "print_graph",
           "Dim", "Sym", "TensorType", "sym", "VerificationError", "verify"]
