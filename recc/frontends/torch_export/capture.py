"""Capture a PyTorch module with torch.export and convert the exported ATen graph into recc's IR.

Every user input gets dim 0 as the shared symbolic `batch` dim unless `dynamic_shapes` says otherwise.
Each converted node records where it came from in the user's source (the last frame of its stack trace),
and an op we cannot convert raises UnsupportedOpError naming the op and that line.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from recc.compiler.ir import Graph, TensorType, Value, verify
from recc.compiler.ir.types import Dim, Sym
from recc.frontends.torch_export import dynamic
from recc.frontends.torch_export.converters import CONVERTERS, TORCH_TO_IR_DTYPE, ConversionError, Ctx, Lazy
from recc.frontends.torch_export.converters.context import ir_dtype


class UnsupportedOpError(NotImplementedError):
    pass


class SymbolicShapeError(ConversionError):
    """A size the IR cannot express (not a product of input dims)."""


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


def _export(module: torch.nn.Module, inputs: tuple[Any, ...], dynamic_shapes: Any) -> torch.export.ExportedProgram:
    # torch logs every failed meta kernel at ERROR level; a failed attempt is reported once, by us
    quiet = logging.getLogger("torch._subclasses.fake_tensor")
    with torch.no_grad(), _log_level(quiet, logging.CRITICAL):
        try:
            return torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes)
        except Exception as e:  # torch raises many types here; the user needs the reason, not the type
            raise ValueError(f"torch.export could not capture {type(module).__name__}: {e}") from e


@contextlib.contextmanager
def _log_level(logger: logging.Logger, level: int) -> Iterator[None]:
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def attempts(module: torch.nn.Module, example_inputs: Sequence[Any], dynamic_shapes: Any = None
             ) -> Iterator[tuple[torch.export.ExportedProgram | ValueError, dict[int, dict[int, str]]]]:
    """torch.export `module` (eval mode) with the user's `dynamic_shapes`, else with each inferred spec
    in turn (see recc.frontends.torch_export.dynamic): (program or the export error, IR dim names)."""
    inputs = dynamic.as_inputs(example_inputs)
    module = module.eval()
    if dynamic_shapes is not None:
        if isinstance(dynamic_shapes, dict):
            dynamic_shapes = dynamic.complete_spec(module, inputs, dynamic_shapes)
        if isinstance(dynamic_shapes, (list, tuple)) and len(dynamic_shapes) == len(inputs):
            dynamic_shapes = dynamic.nest_var_positional(module, tuple(dynamic_shapes))  # forward(*inputs)
        names = dynamic.user_dim_names(module, inputs, dynamic_shapes)
        specs = [(inputs, dynamic_shapes, names)]
    else:
        specs = [dynamic.auto_dynamic_shapes(module, inputs, **kw) for kw in dynamic.ATTEMPTS]
        specs.append(dynamic.dim0_dynamic_shapes(module, inputs))
    for resized, spec, names in specs:
        try:
            yield _export(module, resized, spec), names
        except ValueError as e:
            yield e, names


def capture(module: torch.nn.Module, example_inputs: Sequence[Any],
            input_names: Sequence[str] | None = None, dynamic_shapes: Any = None) -> Graph:
    """torch.export `module`, decompose to Core ATen and convert. Raises UnsupportedOpError / ValueError.

    Without `dynamic_shapes`, the first inferred spec whose program keeps the batch dynamic and converts
    wins; a spec torch rejects, or whose sizes the IR cannot express (ids [k * B] reshaped by a model
    that torch saw as an unrelated length), gives way to the next."""
    name = type(module).__name__
    first: Exception | None = None
    static: Graph | None = None
    for ep, dim_names in attempts(module, example_inputs, dynamic_shapes):
        try:
            if isinstance(ep, ValueError):
                raise ep
            graph = from_exported_program(to_core_aten(ep, name), input_names, name, dim_names)
        except (ValueError, UnsupportedOpError) as e:
            if dynamic_shapes is not None or (isinstance(e, UnsupportedOpError)
                                              and not isinstance(e.__cause__, SymbolicShapeError)):
                raise
            first = first or e
            continue
        if dynamic_shapes is not None or _batch_stays_dynamic(graph, dim_names):
            return graph
        static = static or graph  # torch specialized the batch: a later spec may keep it dynamic
    if static is not None:
        return static
    assert first is not None
    raise first


def _batch_stays_dynamic(graph: Graph, names: dict[int, dict[int, str]]) -> bool:
    """Whether every axis the inference called `batch` came out symbolic (torch's Dim.AUTO specializes an
    axis the model ties to a constant, e.g. dense rows tied to offsets whose batch axis stayed static)."""
    return all(not isinstance(graph.inputs[i].type.shape[a], int) for i, axes in names.items() for a in axes
               if i < len(graph.inputs))


def _op_key(op: Any) -> str:
    return f"{op._schema.name.split('::')[-1]}.{op._overloadname}"


def decomposition_table() -> Any:
    """torch.export's Core ATen decompositions, less the ops recc converts itself (linear, matmul, gru,
    scaled_dot_product_attention, embedding_bag, ...): those stay whole so the passes can fuse them."""
    table = torch.export.default_decompositions()
    # torch's own decompositions of the rest (adaptive pools, grid_sample, upsampling, addmv ...): fallbacks
    for op, fn in torch._decomp.decomposition_table.items():
        if isinstance(op, torch._ops.OpOverload) and op.namespace == "aten" and op not in table:
            table[op] = fn
    for op in [op for op in table.keys() if _op_key(op) in CONVERTERS]:
        del table[op]
    return table


def to_core_aten(ep: torch.export.ExportedProgram, name: str) -> torch.export.ExportedProgram:
    """Functionalize and decompose to Core ATen: in-place and view-mutating ops (add_, relu_, index_put_,
    ...) arrive as their functional forms. A forward that mutates a buffer (a running counter, a cache)
    has no stateless inference meaning and is refused."""
    try:
        ep = ep.run_decompositions(decomposition_table())
    except Exception as e:  # decomposition failures surface as assorted torch errors
        raise ValueError(f"torch.export could not decompose {name} to Core ATen: {e}") from e
    mutated = dict(ep.graph_signature.buffers_to_mutate)
    mutated.update(getattr(ep.graph_signature, "user_inputs_to_mutate", {}) or {})
    if mutated:
        raise ValueError(f"{name}'s forward mutates {', '.join(sorted(set(mutated.values())))}; recc compiles "
                         "stateless inference graphs — move the update out of forward or make it functional")
    return ep


class _SymbolNames:
    """Maps torch's symbols (s0, s23, ...) to stable IR names: the dim-0 symbol of inputs is `batch`."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def name_input_dims(self, fake: torch.Tensor, hints: dict[int, str], label: str, default: bool) -> None:
        taken = set(self.names.values())
        for axis, d in enumerate(fake.shape):
            if not isinstance(d, torch.SymInt) or not d.node.expr.is_Symbol or str(d.node.expr) in self.names:
                continue
            if default:
                name = "batch" if axis == 0 and "batch" not in taken else f"d{len(taken)}"
            else:
                name = hints.get(axis) if hints.get(axis) not in taken else None
                name = name or "".join(c if c.isalnum() else "_" for c in f"{label}_d{axis}")
            self.names[str(d.node.expr)] = name
            taken.add(name)

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
                raise SymbolicShapeError(f"symbolic size {expr} is not a product of input dims")
        return Sym(tuple(names), coef)

    def shape(self, fake: torch.Tensor) -> tuple[Dim, ...]:
        return tuple(self.dim(d) for d in fake.shape)


def from_exported_program(ep: torch.export.ExportedProgram, input_names: Sequence[str] | None = None,
                          name: str = "main", dim_names: dict[int, dict[int, str]] | None = None) -> Graph:
    """`dim_names`: {user input index: {axis: IR name}} for dynamic dims (default: `batch` for dim 0,
    `<input>_d<axis>` for the others)."""
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
            label = input_names[user_index] if input_names and user_index < len(input_names) else node.name
            symbols.name_input_dims(fake, (dim_names or {}).get(user_index, {}), label, default=dim_names is None)
            user_index += 1
            try:
                dtype = ir_dtype(fake.dtype)
            except ConversionError as e:
                raise UnsupportedOpError(f"input {label}: {e}") from None
            ctx.env[node] = graph.add_input(label, TensorType(symbols.shape(fake), dtype))
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
        key = _op_key(target)
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
        expected = TensorType(ctx.symbols.shape(val), ir_dtype(val.dtype))
        if result.type != expected:
            raise UnsupportedOpError(f"internal: {key} (from {where}) converted to {result.type}, torch says "
                                     f"{expected}")


__all__ = ["capture", "from_exported_program", "UnsupportedOpError", "Lazy", "np"]
