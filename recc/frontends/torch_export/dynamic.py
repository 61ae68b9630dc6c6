"""Which input dims are dynamic, and what the IR calls them.

Two ways in:
- the user's own torch.export spec (`Dim` objects in a tuple or dict per input, as `torch.export.export`
  takes it): those dims are dynamic, named as the user named the `Dim`s;
- no spec: inferred. The batch B is dim 0 of the first input. The axes that follow it are dim 0 of size
  B, any other axis of size B of an integer input (offsets [tables, B]) and the length of a 1-D integer input that is a
  multiple of B (flat ids [B * pooling]). The inputs are resized along those axes to a second batch (B
  itself when no other axis has size B and B > 1: torch specializes size-1 dims) and exported with
  those axes `Dim.AUTO`, so torch keeps dynamic exactly the ones the model lets vary and relates them
  (the offsets' B gets the dense features' symbol). If that export fails (an axis of size B was a
  feature dim), only dims 0 and flat id lists are tried, then dim 0 of every input. Axes that follow
  the batch are named `batch`, other symbols `<input>_d<axis>`.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
from torch.utils import _pytree as pytree

AUTO = torch.export.Dim.AUTO


def leaves(tree: Any) -> list[torch.Tensor]:
    """The tensors of a (possibly nested) input tuple, in torch.export's placeholder order."""
    return [x for x in pytree.tree_leaves(tree) if isinstance(x, torch.Tensor)]


def as_inputs(example_inputs: Sequence[Any]) -> tuple[Any, ...]:
    """Inputs as torch.export takes them: tensors stay (nested lists/tuples kept), scalars and arrays
    become tensors."""
    def convert(x: Any) -> Any:
        if isinstance(x, (list, tuple)):
            return type(x)(convert(y) for y in x)
        if isinstance(x, dict):
            return {k: convert(v) for k, v in x.items()}
        return torch.as_tensor(x)
    return tuple(convert(x) for x in example_inputs)


def nest_var_positional(module: torch.nn.Module, shapes: tuple[Any, ...]) -> tuple[Any, ...]:
    """torch.export binds the inputs that fill a `*args` parameter as one tuple."""
    kinds = [p.kind for p in inspect.signature(module.forward).parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL not in kinds:
        return shapes
    fixed = kinds.index(inspect.Parameter.VAR_POSITIONAL)
    return shapes[:fixed] + (shapes[fixed:],)


def batch_size(inputs: tuple[Any, ...]) -> int | None:
    for t in leaves(inputs):
        if t.dim() > 0:
            return int(t.shape[0])
    return None


def _fresh_batch(inputs: tuple[Any, ...], batch: int) -> int:
    """The example batch, or the smallest size >= 2 that no input axis has when the batch collides with
    another axis' size (so a feature dim that happens to equal the batch is not mistaken for it)."""
    sizes = {n for t in leaves(inputs) for n in t.shape[1:]}
    if batch >= 2 and batch not in sizes:
        return batch
    fresh = 2
    while fresh in sizes or fresh == batch:
        fresh += 1
    return fresh


def _resize(t: torch.Tensor, axis: int, n: int) -> torch.Tensor:
    """`t` with `n` entries along `axis`, repeating or truncating the existing ones (values stay valid ids)."""
    return t.index_select(axis, torch.arange(n) % t.shape[axis]) if t.shape[axis] else t.new_zeros(
        *t.shape[:axis], n, *t.shape[axis + 1:])


def _batch_axes(t: torch.Tensor, batch: int, every_axis: bool) -> dict[int, int | None]:
    """{axis: multiple of the batch, or None for a free length} for the axes that follow the batch: dim 0
    of size B, (`every_axis`) any axis of size B of an integer input (offsets [tables, B]; a float input's
    other axes are features), and the length of a 1-D integer input (a flat id list: k * B for a fixed
    pooling k, free for variable bags)."""
    axes: dict[int, int | None] = {a: 1 for a, n in enumerate(t.shape)
                                   if n == batch and (a == 0 or (every_axis and not t.dtype.is_floating_point))}
    if t.dim() == 1 and not t.dtype.is_floating_point and t.dtype != torch.bool:
        n = int(t.shape[0])
        axes[0] = n // batch if n and n % batch == 0 else None
    return axes


def auto_dynamic_shapes(module: torch.nn.Module, inputs: tuple[Any, ...], every_axis: bool = False,
                        derived: bool = False) -> tuple[tuple[Any, ...], Any, dict[int, dict[int, str]]]:
    """(inputs resized to the capture batch, dynamic_shapes for torch.export, {flat input index: {axis:
    IR name}}) by the inference in this module's docstring. `derived`: the batch axes are one `Dim` and a
    flat id list of k * B is `k * batch` (so a model may reshape it to [batch, k]); else all `Dim.AUTO`."""
    batch = batch_size(inputs) or 1
    fresh = _fresh_batch(inputs, batch)
    dim = torch.export.Dim("batch", min=1, max=1 << 20)

    def resize(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        for axis, k in _batch_axes(t, batch, every_axis).items():
            t = _resize(t, axis, k * fresh if k else max(2, t.shape[axis]))
        return t

    def spec(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return None
        return {a: (dim if k == 1 else k * dim) if derived and k else AUTO
                for a, k in _batch_axes(t, batch, every_axis).items()}

    names = {i: {a: "batch" for a, k in _batch_axes(t, batch, every_axis).items() if k == 1}
             for i, t in enumerate(leaves(inputs))}
    return pytree.tree_map(resize, inputs), nest_var_positional(module, pytree.tree_map(spec, inputs)), names


ATTEMPTS = ({}, {"every_axis": True}, {"derived": True}, {"every_axis": True, "derived": True})


def dim0_dynamic_shapes(module: torch.nn.Module, inputs: tuple[Any, ...]
                        ) -> tuple[tuple[Any, ...], Any, dict[int, dict[int, str]]]:
    """The plain default: dim 0 of every input is one `batch` Dim (size-1 dims 0 widened to 2)."""
    inputs = pytree.tree_map(lambda t: t.repeat(2, *([1] * (t.dim() - 1))) if isinstance(t, torch.Tensor)
                             and t.dim() > 0 and t.shape[0] == 1 else t, inputs)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    spec = pytree.tree_map(lambda t: ({0: batch} if t.dim() > 0 else {}) if isinstance(t, torch.Tensor) else None,
                           inputs)
    return inputs, nest_var_positional(module, spec), {}


def _axis_names(spec: Any) -> dict[int, str]:
    if spec is None:
        return {}
    items = spec.items() if isinstance(spec, dict) else enumerate(spec)
    return {int(a): d.__name__ for a, d in items
            if isinstance(d, torch.export.Dim) and not getattr(d, "root", None)}


def _match(spec: Any, value: Any, out: list[dict[int, str]]) -> None:
    """Walk a user spec alongside the inputs; one {axis: Dim name} per tensor."""
    if isinstance(value, torch.Tensor):
        out.append(_axis_names(spec))
    elif isinstance(value, (list, tuple)):
        specs = spec if isinstance(spec, (list, tuple)) else [spec] * len(value)
        for s, v in zip(specs, value):
            _match(s, v, out)
    elif isinstance(value, dict):
        for k, v in value.items():
            _match(spec.get(k) if isinstance(spec, dict) else None, v, out)


def user_dim_names(module: torch.nn.Module, inputs: tuple[Any, ...], spec: Any) -> dict[int, dict[int, str]]:
    """{flat input index: {axis: Dim name}} from a torch.export dynamic_shapes spec (tuple or dict by
    parameter name)."""
    if isinstance(spec, dict):
        params = [p.name for p in inspect.signature(module.forward).parameters.values()]
        spec = tuple(spec.get(p) for p in params[:len(inputs)])
    elif isinstance(spec, (list, tuple)) and len(spec) != len(inputs):
        spec = tuple(spec)[:-1] + tuple(spec[-1]) if spec and isinstance(spec[-1], (list, tuple)) else spec
    out: list[dict[int, str]] = []
    _match(spec, inputs, out)
    return dict(enumerate(out))


def parse_dynamic(text: str) -> dict[str, dict[int, Any]]:
    """`--dynamic 'dense:0=batch,ids:0=4*batch,offsets:1=batch'` as torch.export's dict spec: one `Dim` per
    name (shared by every axis that names it), `k*name` a derived dim."""
    dims: dict[str, Any] = {}
    spec: dict[str, dict[int, Any]] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        try:
            where, dim_text = entry.split("=")
            param, axis_text = where.split(":")
            coef_text, _, name = dim_text.strip().rpartition("*")
            axis, coef = int(axis_text), int(coef_text) if coef_text else 1
        except ValueError:
            raise ValueError(f"--dynamic entry {entry!r}: expected INPUT:AXIS=NAME or INPUT:AXIS=K*NAME") from None
        if not name.isidentifier() or coef < 1:
            raise ValueError(f"--dynamic entry {entry!r}: {name!r} is not a dim name or {coef} is not >= 1")
        dim = dims.setdefault(name, torch.export.Dim(name, min=1, max=1 << 20))
        spec.setdefault(param.strip(), {})[axis] = dim if coef == 1 else coef * dim
    if not spec:
        raise ValueError("--dynamic is empty")
    return spec


def complete_spec(module: torch.nn.Module, inputs: tuple[Any, ...], spec: dict[str, Any]) -> dict[str, Any]:
    """A dict spec with every parameter of forward (unnamed ones static). A list input given one
    {axis: Dim} gets it per element, each element its own Dim (`n` -> `n_0`, `n_1`, ...: id lists of
    different lengths)."""
    params = list(inspect.signature(module.forward).parameters)[:len(inputs)]
    unknown = sorted(set(spec) - set(params))
    if unknown:
        raise ValueError(f"dynamic_shapes names {', '.join(unknown)}, which forward does not take "
                         f"(its inputs: {', '.join(params)})")
    out: dict[str, Any] = {}
    for name, value in zip(params, inputs):
        entry = spec.get(name)
        if isinstance(value, (list, tuple)) and isinstance(entry, dict):
            entry = type(value)({a: torch.export.Dim(f"{d.__name__}_{k}", min=1, max=1 << 20)
                                 if isinstance(d, torch.export.Dim) else d for a, d in entry.items()}
                                for k in range(len(value)))
        out[name] = entry
    return out


__all__ = ["parse_dynamic", "complete_spec", "leaves", "as_inputs", "auto_dynamic_shapes", "dim0_dynamic_shapes", "user_dim_names"]
