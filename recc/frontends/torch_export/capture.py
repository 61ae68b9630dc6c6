"""Capture a PyTorch module with torch.export and convert the exported ATen graph into recc's IR.

Every user input gets dim 0 as the shared symbolic `batch` dim unless `dynamic_shapes` says otherwise.
Each converted node records where it came from in the user's source (the last frame of its stack trace),
and an op we cannot convert raises UnsupportedOpError naming the op and that line.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np
import torch

from recc.compiler.ir import Graph, TensorType, Value, verify
from recc.compiler.ir.types import Dim, Sym
from recc.frontends.torch_export.converters import CONVERTERS, TORCH_TO_IR_DTYPE, ConversionError, Ctx, Lazy


class UnsupportedOpError(NotImplementedError):
    pass


def source_line(node: torch.fx.Node) -> str:
    """Where a node came from: the module path (e.g. `bot.0 (Linear)`) and the innermost user frame of
    its stack trace ('file:line: code'); torch's own frames are used only when no user frame exists."""
    parts = []
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, kind = list(stack.values())[-1]
        kind_name = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1].strip("'>"))
        parts.append(f"{path or '<root>'} ({kind_name})")
    lines = [line.strip() for line in (node.meta.get("stack_trace") or "").strip().splitlines()]
    frames = [(line, lines[i + 1] if i + 1 < len(lines) else "") for i, line in enumerate(lines)
              if line.startswith("File ")]
    user = [f for f in frames if "site-packages/torch" not in f[0]] or frames
    if user:
        where, code = user[-1]
        pieces = where.split(",")
        file = pieces[0].removeprefix("File ").strip('"')
        line = pieces[1].strip().removeprefix("line ") if len(pieces) > 1 else "?"
        parts.append(f"{file}:{line}: {code}")
    return " at ".join(parts) or f"<fx node {node.name}>"


def _default_dynamic_shapes(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor]) -> tuple[Any, ...]:
    """Dim 0 of every input is `batch`, laid out as torch.export binds `forward`'s parameters: the inputs
    that fill a `*args` parameter form one tuple."""
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    shapes = tuple({0: batch} if t.dim() > 0 else {} for t in example_inputs)
    kinds = [p.kind for p in inspect.signature(module.forward).parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL not in kinds:
        return shapes
    fixed = kinds.index(inspect.Parameter.VAR_POSITIONAL)
    return shapes[:fixed] + (shapes[fixed:],)


def _widen_batch(example_inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """torch.export specializes a dim whose example size is 1; export with batch 2 instead."""
    return tuple(t.repeat(2, *([1] * (t.dim() - 1))) if t.dim() > 0 and t.shape[0] == 1 else t
                 for t in example_inputs)


def capture(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor],
            input_names: Sequence[str] | None = None, dynamic_shapes: Any = None) -> Graph:
    """torch.export `module` (eval mode) and convert it. Raises UnsupportedOpError / ValueError."""
    inputs = tuple(torch.as_tensor(t) for t in example_inputs)
    if dynamic_shapes is None:
        inputs = _widen_batch(inputs)
        dynamic_shapes = _default_dynamic_shapes(module, inputs)
    module = module.eval()
    with torch.no_grad():
        try:
            ep = torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes)
        except Exception as e:  # torch raises many types here; the user needs the reason, not the type
            raise ValueError(f"torch.export could not capture {type(module).__name__}: {e}") from e
    return from_exported_program(ep, input_names=input_names, name=type(module).__name__)


class _SymbolNames:
    """Maps torch's symbols (s0, s23, ...) to stable IR names: the dim-0 symbol of inputs is `batch`."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def name_input_dims(self, fake: torch.Tensor) -> None:
        for axis, d in enumerate(fake.shape):
            if isinstance(d, torch.SymInt):
                expr = d.node.expr
                if expr.is_Symbol and str(expr) not in self.names:
                    taken = set(self.names.values())
                    self.names[str(expr)] = "batch" if axis == 0 and "batch" not in taken else f"d{len(taken)}"

    def dim(self, d: Any) -> Dim:
        if isinstance(d, int):
            return d
        expr = d.node.expr if isinstance(d, torch.SymInt) else d
        if expr.is_Integer:
            return int(expr)
        coef, names = 1, []
        for factor in (expr.args if expr.is_Mul else (expr,)):
            if factor.is_Integer:
                coef *= int(factor)
            elif factor.is_Symbol and str(factor) in self.names:
                names.append(self.names[str(factor)])
            else:
                raise ConversionError(f"symbolic size {expr} is not a product of input dims")
        return Sym(tuple(names), coef)

    def shape(self, fake: torch.Tensor) -> tuple[Dim, ...]:
        return tuple(self.dim(d) for d in fake.shape)


def from_exported_program(ep: torch.export.ExportedProgram, input_names: Sequence[str] | None = None,
                          name: str = "main") -> Graph:
    graph = Graph(name)
    symbols = _SymbolNames()
    ctx = Ctx(graph, symbols)
    specs = {s.arg.name: s for s in ep.graph_signature.input_specs}
    user_index = 0
    for node in ep.graph.nodes:
        if node.op != "placeholder":
            continue
        spec = specs[node.name]
        kind = spec.kind.name
        if kind == "USER_INPUT":
            fake = node.meta["val"]
            if not isinstance(fake, torch.Tensor):
                raise ValueError(f"input {node.name} is not a tensor ({type(fake).__name__})")
            symbols.name_input_dims(fake)
            label = input_names[user_index] if input_names and user_index < len(input_names) else node.name
            user_index += 1
            ctx.env[node] = graph.add_input(label, TensorType(symbols.shape(fake), TORCH_TO_IR_DTYPE[fake.dtype]))
        else:
            tensor = ep.state_dict.get(spec.target) if kind in ("PARAMETER", "BUFFER") else None
            if tensor is None:
                tensor = ep.constants.get(spec.target)
            if tensor is None:
                raise ValueError(f"exported program has no value for {kind.lower()} {spec.target}")
            ctx.env[node] = ctx.param(spec.target or node.name, tensor)
    for node in ep.graph.nodes:
        if node.op == "call_function":
            _convert_node(ctx, node)
        elif node.op == "output":
            outs = node.args[0]
            graph.outputs = [ctx.value(o, node) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
    graph.remove_dead()
    verify(graph)
    return graph


def _convert_node(ctx: Ctx, node: torch.fx.Node) -> None:
    target = node.target
    key = getattr(target, "__name__", str(target))
    if isinstance(target, torch._ops.OpOverload):
        key = f"{target._schema.name.split('::')[-1]}.{target._overloadname}"
    converter = CONVERTERS.get(key)
    where = source_line(node)
    if converter is None:
        raise UnsupportedOpError(f"unsupported op {key} (from {where}); recc's torch frontend does not "
                                 "convert it yet")
    ctx.origin = where
    try:
        result = converter(ctx, node, *node.args, **node.kwargs)
    except (ConversionError, ValueError) as e:
        raise UnsupportedOpError(f"cannot convert {key} (from {where}): {e}") from e
    ctx.env[node] = result
    val = node.meta.get("val")
    if isinstance(result, Value) and isinstance(val, torch.Tensor):
        expected = TensorType(ctx.symbols.shape(val), TORCH_TO_IR_DTYPE[val.dtype])
        if result.type != expected:
            raise UnsupportedOpError(f"internal: {key} (from {where}) converted to {result.type}, torch says "
                                     f"{expected}")


__all__ = ["capture", "from_exported_program", "UnsupportedOpError", "Lazy", "np"]
