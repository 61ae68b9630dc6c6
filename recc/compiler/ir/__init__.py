"""recc's graph IR: typed values with symbolic batch dims, ops, parameters outside the graph."""

from recc.compiler.ir import fused_ops  # noqa: F401  (registers the fused ops' type rules)
from recc.compiler.ir.graph import Graph, Node, Value
from recc.compiler.ir.ops import ACTIVATIONS, OPS, IRTypeError, infer_types
from recc.compiler.ir.printer import print_graph
from recc.compiler.ir.types import Dim, Sym, TensorType, sym
from recc.compiler.ir.values import constant_scalar, is_zero, producer_op, single_user, trace_view
from recc.compiler.ir.verifier import VerificationError, verify

__all__ = ["Graph", "Node", "Value", "OPS", "ACTIVATIONS", "IRTypeError", "infer_types", "print_graph",
           "Dim", "Sym", "TensorType", "sym", "VerificationError", "verify",
           "constant_scalar", "is_zero", "producer_op", "single_user", "trace_view"]
