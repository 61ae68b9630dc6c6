"""Load a recc artifact and run it from Python.

Inputs are validated: count, dtype, rank, static dims, one consistent batch across inputs, embedding ids within
their tables, offsets well formed; errors are ValueErrors naming the input and the problem. Torch tensors that
are contiguous and 64-byte aligned go straight to the compiled function (no copies), which checks dtypes and
dims itself and range-checks the ids in its first kernel, failing before any gather runs; on any failure, and
for everything else (numpy arrays, int32 ids, offsets), the careful path converts what it can, checks
everything in Python and explains. Outputs come back as torch tensors sharing TVM's memory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from recc.compiler.artifact import (
    BAD_ID_MESSAGE,
    ArtifactError,
    IdLimit,
    Manifest,
    id_bounds,
    read_manifest,
)
from recc.compiler.ir.types import Sym
from recc.compiler.host import host_features, request_amx
from recc.runtime.memory import load_weights, memory_report

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64,
                 "int32": torch.int32, "int16": torch.int16, "uint16": torch.uint16,
                 "uint32": torch.uint32, "uint64": torch.uint64, "bool": torch.bool, "float16": torch.float16, "int8": torch.int8,
                 "uint8": torch.uint8, "bfloat16": torch.bfloat16}
_WIDENABLE_TO_INT64 = (torch.int32,)  # as eager: lookups take int64 or int32 ids, nothing narrower


def _compact_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _configure_threads(threads: int | None) -> None:
    import tvm
    if threads is not None:
        tvm.get_global_func("runtime.config_threadpool")(0, int(threads))


class CompiledModel:
    """A compiled model: call it like the original module (torch tensors or numpy arrays)."""

    def __init__(self, path: Path, threads: int | None = None, check_hashes: bool = True,
                 allow_cpu_mismatch: bool = False, key: bytes | str | None = None, prefault: bool = False,
                 _owned_tmp: tempfile.TemporaryDirectory | None = None) -> None:
        import tvm

        self.path = Path(path)
        self._tmp = _owned_tmp
        key = key.encode() if isinstance(key, str) else key
        self.manifest: Manifest = read_manifest(self.path, check_hashes=check_hashes, key=key)
        m = self.manifest
        self._check_host(m, allow_cpu_mismatch)
        _configure_threads(threads)
        self.inputs = [(t.name, t.dtype, list(t.shape)) for t in m.inputs]
        # batch 1 has a function of its own with static shapes (the VM skips shape arithmetic), if the
        # artifact has one: (function name, symbol, input index, axis) where the batch is read
        self._batch_one = self._find_batch_one(m.specialized)
        # One VM per calling thread (the library and the weights are shared): concurrent calls never share
        # a VM's registers or its memory pool, so each caller gets its own result, and a later call never
        # overwrites an earlier call's output (outputs are fresh tensors the caller owns).
        self._local = threading.local()
        try:  # TVM raises its own error types for a bad shared object or one that is not a Relax executable
            self._library = tvm.runtime.load_module(str(self.path / "lib.so"))
            self._thread_functions()
            arity = self._local.vm._get_function_arity("main")
        except Exception as e:
            raise ArtifactError(f"{self.path / 'lib.so'}: not a loadable recc library ({e})") from e
        if arity != len(m.inputs) + len(m.weights):
            raise ArtifactError(f"{self.path / 'lib.so'}: its function takes {arity} parameters, the manifest lists "
                                f"{len(m.inputs)} inputs and {len(m.weights)} weights")
        self._arrays, self._prefaulted = load_weights(self.path, m.weights, prefault), prefault  # runtime/memory.py
        self._weights = [self._to_tvm(a) for a in self._arrays]
        self.input_names = [i[0] for i in self.inputs]
        # per input: (torch dtype, rank, static dims, symbolic dims) for the fast path of _coerce
        self._fast_specs = [(_TORCH_DTYPES.get(dtype), len(shape), [(a, d) for a, d in enumerate(shape) if isinstance(d, int)],
                             [(a, d.coef, d.names[0]) for a, d in enumerate(shape) if isinstance(d, Sym) and len(d.names) == 1])
                            for _, dtype, shape in self.inputs]
        self._id_limits = {name: self._prepare_limits(lims) for name, lims in m.id_checks.ids.items()}
        shapes = {name: shape for name, _, shape in self.inputs}
        self._id_bounds = {name: self._bound_array(lims, shapes[name]) for name, lims in self._id_limits.items()}
        self._offset_checks = m.id_checks.offsets
        # the fast path needs every ids input range-checked inside the function and no offsets to check
        in_kernel = set(m.id_checks.in_kernel)
        self._fast = not self._offset_checks and all(name in in_kernel for name in self._id_bounds)
        self._n_inputs = len(self.inputs)
        self._single_output = len(m.outputs) == 1

    def _find_batch_one(self, specialized: dict[str, dict[str, int]]) -> tuple[Any, str, int, int] | None:
        for name, values in specialized.items():
            if len(values) != 1 or list(values.values()) != [1]:
                continue
            symbol = next(iter(values))
            for index, (_, _, shape) in enumerate(self.inputs):
                if Sym((symbol,)) in shape:
                    return name, symbol, index, shape.index(Sym((symbol,)))
        return None

    def _thread_functions(self) -> tuple[Any, Any]:
        """This thread's (main, batch-1 function or None), on a VM of its own made at its first call."""
        import tvm
        from tvm import relax

        vm = relax.VirtualMachine(self._library, tvm.cpu())
        self._local.vm = vm
        self._local.functions = (vm["main"], vm[self._batch_one[0]] if self._batch_one else None)
        return self._local.functions

    def _function_for(self, batch: int | None) -> Any:
        functions = getattr(self._local, "functions", None) or self._thread_functions()
        return functions[1] if batch == 1 and functions[1] is not None else functions[0]

    @property
    def _main(self) -> Any:
        """This thread's `main` (any batch)."""
        return self._function_for(None)

    # -- loading --------------------------------------------------------------------------------------
    @staticmethod
    def _check_host(m: Manifest, allow_cpu_mismatch: bool) -> None:
        import tvm

        if m.versions.get("tvm") != tvm.__version__:
            raise ArtifactError(f"artifact was built with TVM {m.versions.get('tvm')}, this runtime is "
                                f"{tvm.__version__}; recompile the model")
        missing = m.target.missing_features(host_features()) if m.target.kind == "cpu" else []
        if missing and not allow_cpu_mismatch:
            raise ArtifactError(f"artifact was compiled for CPU {m.target.mcpu!r} and uses {', '.join(missing)}, "
                                "which this host's CPU lacks. Recompile here, or pass allow_cpu_mismatch=True "
                                "if you know better")
        # AMX code dies with SIGILL unless the process holds the tile state: ask Linux for it first
        if "amx-tile" in m.target.features and not missing and not request_amx():
            raise ArtifactError("artifact uses AMX tiles, and the OS refused this process the AMX state "
                                "(arch_prctl ARCH_REQ_XCOMP_PERM); recompile for a target without AMX")

    @staticmethod
    def _prepare_limits(limits: tuple[IdLimit, ...]) -> list[IdLimit]:
        kinds = {(lim.rows, lim.wrap) for lim in limits}
        if len(kinds) == 1:  # one bound for the whole input: a single max suffices
            rows, wrap = kinds.pop()
            return [IdLimit(None, None, None, rows, wrap)]
        return list(limits)

    @staticmethod
    def _to_tvm(array: Any) -> Any:
        import tvm

        if isinstance(array, torch.Tensor):
            # TVM needs 64-byte alignment (torch's allocator gives it) and textbook compact strides
            # (torch may report any stride for a dim of size 0 or 1)
            if array.data_ptr() % 64 or array.stride() != _compact_strides(array.shape):
                array = torch.empty(array.shape, dtype=array.dtype).copy_(array)
            return tvm.runtime.from_dlpack(array)
        if array.ctypes.data % 64 == 0 and array.flags.writeable and array.flags.c_contiguous:
            return tvm.runtime.from_dlpack(array)
        return CompiledModel._to_tvm(torch.from_numpy(np.ascontiguousarray(array)))

    @staticmethod
    def _bound_array(limits: list[IdLimit], shape: list[Any]) -> np.ndarray | None:
        """Upper bounds (uint64, broadcastable to the input) for a one-comparison check (artifact.id_bounds),
        or None where the limits need checking one by one (wrapping gathers, several axes)."""
        if any(lim.wrap for lim in limits):
            return None
        if len(limits) == 1 and limits[0].axis is None:
            return np.array(limits[0].rows, np.uint64)
        axes = {lim.axis for lim in limits}
        if len(axes) != 1 or None in axes or not isinstance(shape[next(iter(axes))], int):
            return None
        axis = axes.pop()
        size = shape[axis]  # an axis that is sliced into tables has a static size
        return id_bounds(limits, size).reshape((size,) + (1,) * (len(shape) - axis - 1))

    # -- calling --------------------------------------------------------------------------------------
    def _coerce(self, index: int, x: Any, env: dict[str, int]) -> torch.Tensor:
        """The input as a contiguous CPU torch tensor of the declared dtype, or a ValueError saying why not.
        The common case (a tensor that already fits) takes a short path; anything else the careful one."""
        want, rank, static, symbolic = self._fast_specs[index]
        if type(x) is torch.Tensor and x.dtype is want and x.dim() == rank and x.device.type == "cpu" \
                and x.layout is torch.strided and not x.requires_grad:
            shape = x.shape
            fits = all(shape[a] == d for a, d in static)
            for axis, coef, sym_name in symbolic if fits else ():
                n = shape[axis]
                if n % coef or env.setdefault(sym_name, n // coef) != n // coef:
                    fits = False
                    break
            if fits and (len(symbolic) + len(static) == rank):
                return x if x.is_contiguous() else x.contiguous()
        return self._coerce_carefully(index, x, env)

    def _coerce_carefully(self, index: int, x: Any, env: dict[str, int]) -> torch.Tensor:
        name, dtype, shape = self.inputs[index]
        if isinstance(x, np.ndarray):
            if x.dtype == object:
                raise ValueError(f"input {name!r}: object arrays are not tensors")
            x = torch.from_numpy(np.ascontiguousarray(x))
        elif not isinstance(x, torch.Tensor):
            raise ValueError(f"input {name!r}: expected a torch.Tensor or numpy array, got {type(x).__name__}")
        if x.layout is not torch.strided:
            raise ValueError(f"input {name!r}: {str(x.layout).removeprefix('torch.')} tensors are not supported; "
                             "pass a dense tensor (x.to_dense())")
        x = x.detach()  # inference only: no autograd graph through the compiled function
        want = _TORCH_DTYPES[dtype]
        if x.dtype != want:
            if want == torch.int64 and x.dtype in _WIDENABLE_TO_INT64:
                x = x.to(torch.int64)
            else:
                raise ValueError(f"input {name!r}: expected dtype {dtype}, got {str(x.dtype).removeprefix('torch.')}")
        if x.dim() != len(shape):
            raise ValueError(f"input {name!r}: expected {len(shape)} dims {self._shape_str(shape)}, "
                             f"got shape {tuple(x.shape)}")
        for axis, (d, n) in enumerate(zip(shape, x.shape)):
            if isinstance(d, int):
                if d != n:
                    raise ValueError(f"input {name!r}: dim {axis} must be {d} {self._shape_str(shape)}, got {n}")
                continue
            coef, names = d.coef, d.names
            if len(names) == 1 and n % coef == 0:
                value = n // coef
                bound = env.setdefault(names[0], value)
                if bound != value:
                    raise ValueError(f"input {name!r}: dim {axis} is {names[0]}={value}, but an earlier input "
                                     f"has {names[0]}={bound}")
            else:
                raise ValueError(f"input {name!r}: dim {axis} = {n} does not fit {coef}*{'*'.join(names)}")
        if x.device.type != "cpu":
            raise ValueError(f"input {name!r}: expected a CPU tensor, got device {x.device}")
        return x.contiguous()

    @staticmethod
    def _shape_str(shape: list[Any]) -> str:
        return "[" + ", ".join(str(d) for d in shape) + "]"

    def _check_ids(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, bound in self._id_bounds.items():
            if bound is None:  # limits checked one by one
                self._explain_bad_ids({name: tensors[name]})
                continue
            array = tensors[name].numpy().astype(np.int64, copy=False)  # int32 ids: values, not their bytes
            if array.size and (array.view(np.uint64) >= bound).any():
                self._explain_bad_ids(tensors)
        if self._offset_checks:
            self._check_offsets(tensors)

    def _explain_bad_ids(self, tensors: dict[str, torch.Tensor]) -> None:
        """The slow path: find the offending id and table and raise a ValueError naming them (returns if
        every id in `tensors` is in range)."""
        for name, ids in tensors.items():
            if name not in self._id_limits or ids.numel() == 0:
                continue
            array = ids.numpy().astype(np.int64, copy=False)
            for lim in self._id_limits[name]:
                part = array if lim.axis is None else array[(slice(None),) * lim.axis + (slice(lim.start, lim.end),)]
                if part.size:
                    self._refuse_ids(name, lim, int(part.min()), int(part.max()))
        if len(tensors) > 1:
            raise AssertionError("an id failed the range check but no table explains it")  # a recc bug

    @staticmethod
    def _refuse_ids(name: str, lim: IdLimit, low: int, high: int) -> None:
        where = "" if lim.axis is None else f" (indices {lim.start}:{lim.end} of dim {lim.axis})"
        lowest = -lim.rows if lim.wrap else 0
        valid = f"{lowest}..{lim.rows - 1}"
        if low < lowest and not lim.wrap:
            raise ValueError(f"input {name!r}{where}: embedding id {low} is negative (valid ids are {valid})")
        bad = low if low < lowest else high if high >= lim.rows else None
        if bad is not None:
            raise ValueError(f"input {name!r}{where}: embedding id {bad} is out of range for a table of "
                             f"{lim.rows} rows (valid ids are {valid})")

    def _check_offsets(self, tensors: dict[str, torch.Tensor]) -> None:
        for check in self._offset_checks:
            offsets = tensors[check.offsets].numpy()
            offsets = offsets if check.row is None else offsets[check.row]
            nnz = tensors[check.ids].shape[0]
            if not offsets.size:  # no bags
                continue
            bad_last = offsets[-1] != nnz if check.include_last_offset else offsets[-1] > nnz
            if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or bad_last:
                where = "" if check.row is None else f" row {check.row}"
                raise ValueError(f"input {check.offsets!r}{where}: offsets must start at 0, never decrease and stay "
                                 f"<= len({check.ids}) = {nnz}"
                                 + (" and end exactly there (include_last_offset)" if check.include_last_offset else ""))

    def __call__(self, *inputs: Any) -> Any:
        # The fast path, for tensors as torch allocates them: the compiled function checks dtypes, ranks
        # and dims itself, and its first kernels range-check the ids (codegen's kernels/cpu/checks.py), raising before
        # anything reads a table; what it cannot see (device, alignment, strides) is checked here. Any
        # failure goes to the careful path, which converts what it can and explains what it cannot.
        if len(inputs) != self._n_inputs and any(isinstance(x, (list, tuple, dict)) for x in inputs):
            inputs = tuple(pytree.tree_leaves(inputs))  # forward(dense, offsets, [ids per table]) as captured
        if self._fast and len(inputs) == self._n_inputs:
            for x in inputs:
                if type(x) is not torch.Tensor or x.layout is not torch.strided or x.requires_grad or not x.is_cpu \
                        or x.data_ptr() & 63 or not x.is_contiguous():
                    break
            else:
                batch = inputs[self._batch_one[2]].shape[self._batch_one[3]] if self._batch_one else None
                try:
                    return self._results(self._function_for(batch)(*inputs, *self._weights))
                except Exception:  # noqa: BLE001 - a check failed in TVM's words; the careful path uses recc's
                    pass
        return self._careful_call(inputs)

    def _results(self, result: Any) -> Any:
        if self._single_output:
            return result if isinstance(result, torch.Tensor) else torch.from_dlpack(result)
        return tuple(r if isinstance(r, torch.Tensor) else torch.from_dlpack(r) for r in result)

    def validate(self, *inputs: Any) -> tuple[list[torch.Tensor], dict[str, int]]:
        """Check inputs as a call does (count, dtypes, dims, one consistent batch, ids, offsets) without
        running the model: the tensors a call would pass and the symbolic dims' values ({"batch": 64}),
        or the ValueError the call would raise (a server checks each request before batching it)."""
        if len(inputs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs ({', '.join(self.input_names)}), got {len(inputs)}")
        env: dict[str, int] = {}
        tensors = [self._coerce(i, x, env) for i, x in enumerate(inputs)]
        self._check_ids(dict(zip(self.input_names, tensors)))
        return tensors, env

    def _careful_call(self, inputs: tuple[Any, ...]) -> Any:
        tensors, env = self.validate(*inputs)
        function = self._function_for(env.get(self._batch_one[1]) if self._batch_one else None)
        # tvm-ffi takes torch tensors as they are and returns torch tensors (no DLPack round trips)
        try:
            return self._results(function(*[self._aligned(t) for t in tensors], *self._weights))
        except Exception as e:  # TVM raises its own error types; only the index check is ours to explain
            if BAD_ID_MESSAGE not in str(e):
                raise
            lookups = ", ".join(self.manifest.id_checks.unchecked) or "?"
            raise ValueError(f"an index computed inside the model is out of range for its table (checked "
                             f"before the gather; lookups whose ids the model computes: {lookups})") from None

    @staticmethod
    def _aligned(array: torch.Tensor) -> torch.Tensor:
        """TVM's kernels assume 64-byte aligned, compactly strided buffers (torch may report any stride for
        a dim of size 0 or 1); copy the rare tensor that is not."""
        if array.data_ptr() % 64 or array.stride() != _compact_strides(array.shape):
            return array.clone(memory_format=torch.contiguous_format)  # torch's CPU allocator aligns to 64
        return array

    # -- artifact -------------------------------------------------------------------------------------
    def save(self, path: str | Path, move: bool = False) -> Path:
        """Copy the artifact directory to `path` (conventionally NAME.recc). `move`: a model fresh from
        `recc.compile` (in a temporary directory) is moved there instead, no gigabytes of tables copied,
        and runs from `path` from then on."""
        dest = Path(path)
        if dest.resolve() == self.path.resolve():
            return dest
        if dest.exists() and not (dest / "manifest.json").exists():
            raise FileExistsError(f"{dest} exists and is not a recc artifact; refusing to overwrite it")
        shutil.rmtree(dest, ignore_errors=True)
        if move and self._tmp is not None:
            with contextlib.suppress(OSError):  # a rename (on another filesystem: copied below)
                self.path, self._tmp = self.path.rename(dest), None
                return dest
        shutil.copytree(self.path, dest)  # a kernel-side copy (sendfile): the weights never pass through memory
        return dest

    def memory(self) -> dict[str, Any]:  # peak RSS, bytes on disk, the table buffers' huge pages
        return memory_report(self.path, self._arrays, self._prefaulted)

    @property
    def report(self) -> dict[str, Any]:
        return json.loads((self.path / "report.json").read_text())

    def __repr__(self) -> str:
        sig = ", ".join(f"{n}: {d}{self._shape_str(s)}" for n, d, s in self.inputs)
        return f"CompiledModel({self.manifest.model}({sig}) -> {self.manifest.target.kind})"


def load(path: str | Path, threads: int | None = None, check_hashes: bool = True,
         allow_cpu_mismatch: bool = False, key: bytes | str | None = None, prefault: bool = False) -> CompiledModel:
    """Load an artifact written by `CompiledModel.save` / `recc compile`. Raises ArtifactError.

    Weights are memory-mapped; `prefault=True` reads the table buffers into memory advised for huge pages at
    load, so no query pays a page fault (runtime/memory.py; `.memory()` says whether THP was granted).
    `key`: the artifact must carry a valid signature made with this key (`recc.compile(..., signing_key=)`);
    an unsigned, re-signed or edited artifact is refused, even one whose hashes are all consistent."""
    return CompiledModel(Path(path), threads=threads, check_hashes=check_hashes,
                         allow_cpu_mismatch=allow_cpu_mismatch, key=key, prefault=prefault)
