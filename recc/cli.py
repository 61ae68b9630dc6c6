"""The `recc` command line: models, passes, compile, run, report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Sequence
from recc.compiler.codegen.tvm.tuning import default_database_path


def _say(msg: str) -> None:
    print(f"[recc] {msg}", file=sys.stderr, flush=True)


def cmd_models(args: argparse.Namespace) -> int:
    from recc.models import create, names

    header = ("model", "tables", "rows/table", "dim", "pooling", "params", "bytes")
    rows = [header]
    for name in names():
        info = create(name, scale=args.scale).info()
        table_rows = sorted({t.rows for t in info.tables})
        rows.append((name, str(len(info.tables)), ",".join(f"{r:,}" for r in table_rows[:3]) + ("..." if len(table_rows) > 3 else ""),
                     ",".join(str(d) for d in sorted({t.dim for t in info.tables})),
                     ",".join(str(p) for p in sorted({t.pooling for t in info.tables})),
                     f"{info.param_count:,}", _bytes(info.param_bytes)))
    _table(rows)
    print(f"(scale {args.scale}: table rows divided accordingly; --scale 1 for the DeepRecSys sizes)")
    return 0


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def cmd_passes(args: argparse.Namespace) -> int:
    from recc.passes.pipeline import DEFAULT_PIPELINE
    from recc.passes import PASSES

    for i, name in enumerate(DEFAULT_PIPELINE, 1):
        print(f"{i:2d}. {name:28s} {PASSES[name].summary}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from recc import api
    from recc.compiler.report import format_report
    from recc.frontends.torch_export.dynamic import parse_dynamic
    from recc.sources import resolve

    if args.model.endswith(".onnx") or (Path(args.model).is_file() and ":" not in args.model):
        return _compile_onnx(args)
    if args.batch_dim:
        raise ValueError("--batch-dim applies to ONNX models only")
    dynamic = parse_dynamic(args.dynamic) if args.dynamic else None
    source = resolve(args.model, scale=args.scale, seed=args.seed)
    # a factory's own inputs as given (offsets [tables, batch] do not survive resizing dim 0)
    example = source.examples if source.examples is not None else source.make_inputs(args.example_batch, 0)
    _say(f"compiling {source.name} for {args.target} (scale {args.scale})")
    start = time.perf_counter()
    budget = args.budget * 60 if args.tune else None
    compiled = api.compile(source.module, example, target=args.target, name=source.name,
                           disable_passes=args.disable_pass, verify=args.verify, dump_ir=args.dump_ir,
                           progress=_say, source=source.record, tune_budget_s=budget,
                           tuning_db=None if args.tuning_db == "none" else Path(args.tuning_db),
                           signing_key=_key(args.signing_key_file), precision=args.precision,
                           keep_fp32=args.keep_fp32, max_error=args.max_error, dynamic_shapes=dynamic,
                           calibrate=args.calibrate)
    out = compiled.save(args.output, move=True)
    print(format_report(compiled.report))
    tuning = compiled.report["tuning"]
    for entry in tuning["tuned"]:
        _say(f"tuned {entry['kernel']} {entry['shape']}: {entry['params'] or 'defaults'} "
             f"({entry['default_us']:.1f} -> {entry['us']:.1f} us)")
    if tuning["reused"]:
        _say(f"{tuning['reused']} kernel schedule(s) reused from {tuning['database']}")
    _say(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _compile_onnx(args: argparse.Namespace) -> int:
    """`recc compile model.onnx`: the input signature comes from the graph, the batch from its first
    symbolic dim (or --batch-dim)."""
    from recc import api
    from recc.compiler.report import format_report
    from recc.frontends.onnx import import_onnx

    if args.dynamic:
        raise ValueError("--dynamic applies to PyTorch models; an ONNX model's dynamic dims are its dim_params "
                         "(--batch-dim names the batch)")
    if args.verify:
        raise ValueError("--verify needs example inputs; it is available for PyTorch models (or call "
                         "recc.api.compile_graph(import_onnx(path), name, validate_inputs=[...]) from Python)")
    path = Path(args.model).resolve()
    _say(f"importing {path}")
    start = time.perf_counter()
    graph = import_onnx(path, batch_dim=args.batch_dim)
    signature = ", ".join(f"{v.name}: {v.type}" for v in graph.inputs)
    _say(f"imported {len(graph.nodes)} nodes, inputs ({signature}); compiling for {args.target}")
    budget = args.budget * 60 if args.tune else None
    compiled = api.compile_graph(graph, path.stem, target=args.target, disable_passes=args.disable_pass,
                                 dump_ir=args.dump_ir, progress=_say, source={"kind": "onnx", "path": str(path)},
                                 tune_budget_s=budget,
                                 tuning_db=None if args.tuning_db == "none" else Path(args.tuning_db),
                                 signing_key=_key(args.signing_key_file), precision=_onnx_precision(args))
    out = compiled.save(args.output, move=True)
    print(format_report(compiled.report))
    _say(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _onnx_precision(args: argparse.Namespace) -> Any:
    from recc.compiler.accuracy import PrecisionConfig

    if args.precision == "auto" or args.max_error is not None or args.calibrate is not None:
        raise ValueError("--precision auto, --max-error and --calibrate need example inputs (to measure on, or to "
                         "draw calibration rows like), which an ONNX file does not carry; use --precision int8 "
                         "(activations quantized per row), or compile from PyTorch")
    return PrecisionConfig(args.precision, tuple(args.keep_fp32))


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from recc.exporters.onnx import export_artifact

    out = export_artifact(args.artifact, args.output)
    _say(f"wrote {out} (ops in the custom domain ai.recc; open it in Netron)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from recc.compiler.artifact import read_manifest
    from recc.compiler.report import format_report

    read_manifest(Path(args.artifact))
    report = json.loads((Path(args.artifact) / "report.json").read_text())
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _median_us(fn: Any, inputs: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e6


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from recc.runtime import load
    from recc.sources import rebuild

    compiled = load(args.artifact, threads=args.threads, key=_key(args.key_file), prefault=args.prefault)
    torch.set_num_threads(args.threads)
    source = rebuild(compiled.manifest.source)
    inputs = source.make_inputs(args.batch, args.seed)
    with torch.inference_mode():
        expected = source.module(*inputs)
        got = compiled(*inputs)
        error = float((got - expected).abs().max())
        eager_times, recc_times = [], []
        for _ in range(args.warmup):
            source.module(*inputs), compiled(*inputs)
        for _ in range(args.rounds):  # interleaved rounds: both systems see the same machine noise
            eager_times.append(_median_us(source.module, inputs, args.repeat))
            recc_times.append(_median_us(compiled, inputs, args.repeat))
    eager_us, recc_us = sorted(eager_times)[len(eager_times) // 2], sorted(recc_times)[len(recc_times) // 2]
    precision = compiled.report.get("precision") or {}
    tolerance = args.tolerance if args.tolerance is not None else _default_tolerance(precision)
    print(f"model {compiled.manifest.model}  batch {args.batch}  threads {args.threads}"
          + (f"  precision {precision['requested']}" if precision.get("layers") else ""))
    print(f"max abs error vs eager: {error:.3g}  ({'OK' if error <= tolerance else 'MISMATCH'} at tolerance {tolerance:g})")
    print(f"median latency: eager {eager_us:.1f} us   recc {recc_us:.1f} us   speedup {eager_us / recc_us:.2f}x")
    print(_memory_line(compiled.memory()))
    return 0 if error <= tolerance else 1


def _memory_line(m: dict[str, Any]) -> str:
    """Peak RSS (this process: the eager model too), the artifact on disk, and THP for its table buffers."""
    thp = (f"THP {m['huge_page_bytes'] / 2**20:.0f} MiB of {m['table_buffer_bytes'] / 2**20:.0f} MiB of tables "
           f"(kernel setting {m['thp_setting']}, {'prefaulted' if m['prefaulted'] else 'mmap, not prefaulted'})")
    return (f"memory: peak RSS {m['peak_rss_bytes'] / 2**30:.2f} GiB (eager model included)   artifact "
            f"{m['artifact_bytes'] / 2**30:.2f} GiB on disk   " + thp)


REDUCED_TOLERANCE = 3e-2  # `recc run`'s default for an int8/bf16 artifact compiled without --max-error


def _default_tolerance(precision: dict[str, Any]) -> float:
    """1e-5 for fp32; for reduced layers, the artifact's --max-error, else REDUCED_TOLERANCE."""
    if not precision.get("layers"):
        return 1e-5
    return precision.get("max_error") or REDUCED_TOLERANCE


def _key(path: str | None) -> bytes | None:
    """A signing key from a file (its bytes, trailing newline stripped); None without a file."""
    if path is None:
        return None
    key = Path(path).read_bytes().rstrip(b"\n")
    if not key:
        raise ValueError(f"{path}: the key file is empty")
    return key


def _add_precision_arguments(c: argparse.ArgumentParser) -> None:
    """`recc compile`'s reduced-precision options (docs/precision.md)."""
    c.add_argument("--precision", choices=("fp32", "int8", "bf16", "auto"), default="fp32",
                   help="fp32 (default); int8: dense layers in int8 (AMX-INT8, AVX512-VNNI or AVX2 kernels) and "
                        "tables 8-bit row-wise; bf16: dense in bf16 (AMX-BF16, else bf16 weights with fp32 math); "
                        "auto: int8 for each layer the --max-error bound allows")
    c.add_argument("--keep-fp32", nargs="+", default=[], metavar="LAYER",
                   help="layers to keep fp32, by module path (top.4) or weight name")
    c.add_argument("--max-error", type=float, metavar="E",
                   help="refuse an artifact whose outputs differ from fp32 by more than E (max abs, on held-out "
                        "inputs); the bound auto keeps (default 1e-2)")
    c.add_argument("--calibrate", type=int, metavar="N",
                   help="int8/auto: quantize activations statically, one scale and zero point per layer from its "
                        "input's range on N calibration rows (default: per row, on every call)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recc", description="a graph-optimizing compiler for recommendation inference")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list the built-in models with parameter counts and bytes")
    m.add_argument("--scale", type=float, default=0.01, help="divide table rows by 1/scale (default 0.01)")
    m.set_defaults(fn=cmd_models)

    ps = sub.add_parser("passes", help="list the optimization pipeline's passes")
    ps.set_defaults(fn=cmd_passes)

    c = sub.add_parser("compile", help="compile a built-in model or module:factory into an artifact")
    c.add_argument("model", help="built-in model name (see `recc models`), package.module:factory, or a .onnx file")
    c.add_argument("--batch-dim", metavar="NAME", help="ONNX models: the input dim_param that is the batch "
                   "(default: the first symbolic dim 0 of an input)")
    c.add_argument("--dynamic", metavar="SPEC",
                   help="PyTorch models: the dynamic dims, 'input:axis=name,...' (k*name for a multiple, e.g. "
                        "'dense_x:0=batch,lS_o:1=batch,ids:0=26*batch'); default: inferred from the example "
                        "(dim 0, offsets [tables, batch], flat id lists)")
    c.add_argument("-o", "--output", required=True, help="artifact directory to write (NAME.recc)")
    c.add_argument("--scale", type=float, default=0.01, help="table-row scale for built-in models (default 0.01)")
    c.add_argument("--seed", type=int, default=0, help="weight seed for built-in models")
    c.add_argument("--target", default="cpu", help="cpu (host CPU, detected) or cpu:<llvm cpu name>")
    c.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help="skip a pass (repeatable)")
    c.add_argument("--verify", action="store_true", help="check every pass with the reference interpreter")
    c.add_argument("--dump-ir", metavar="DIR", help="write the IR before/after each pass (text and SVG)")
    c.add_argument("--tune", action="store_true",
                   help="tune kernel schedules on this machine (remembered in the tuning database)")
    c.add_argument("--budget", type=float, default=5.0, metavar="MIN", help="tuning time budget in minutes (default 5)")
    c.add_argument("--signing-key-file", metavar="FILE",
                   help="sign the artifact with the key in FILE (HMAC-SHA256); `recc run --key-file` demands it")
    c.add_argument("--tuning-db", default=str(default_database_path()), metavar="PATH",
                   help="tuning database to read and extend ('none': no database; default %(default)s)")
    c.add_argument("--example-batch", type=int, default=4, help=argparse.SUPPRESS)
    _add_precision_arguments(c)
    c.set_defaults(fn=cmd_compile)

    r = sub.add_parser("run", help="run an artifact on synthetic inputs and compare with eager PyTorch")
    r.add_argument("artifact")
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--repeat", type=int, default=20, help="calls per timing round")
    r.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--key-file", metavar="FILE",
                   help="refuse the artifact unless it is signed with the key in FILE")
    r.add_argument("--tolerance", type=float, default=None,
                   help="max abs error accepted (default 1e-5; an int8 artifact's --max-error, else 3e-2)")
    r.add_argument("--prefault", action="store_true",
                   help="read the table buffers into huge-page memory at load instead of memory-mapping them")
    r.set_defaults(fn=cmd_run)

    from recc.runtime.commands import register as register_serving  # argparse only; the serve extra loads on use

    register_serving(sub)
    # Subcommands from other packages (`recc bench` from recc.bench) register through the entry point
    # group "recc.commands": the CLI does not depend on them.
    for command in entry_points(group="recc.commands"):
        command.load()(sub)

    ex = sub.add_parser("export-onnx", help="write an artifact's optimized graph as ONNX (to look at, e.g. in Netron)")
    ex.add_argument("artifact")
    ex.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    ex.set_defaults(fn=cmd_export_onnx)
    rep = sub.add_parser("report", help="print an artifact's pass report")
    rep.add_argument("artifact")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(fn=cmd_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from recc.compiler.artifact import ArtifactError
    from recc.frontends.torch_export import UnsupportedOpError

    try:
        return int(args.fn(args))
    except (ArtifactError, UnsupportedOpError, ValueError, FileExistsError) as e:
        print(f"recc: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
