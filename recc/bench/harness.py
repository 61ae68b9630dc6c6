"""`recc bench`: the same model and inputs through eager PyTorch, torch.compile, ONNX Runtime and recc.

    recc bench [--models m1,m2|all] [--batches 1,16,64,256,1024] [--systems eager,inductor,ort,ort-best,recc]
               [--threads N] [--scale S] [--out DIR] [--quick] [--spin off|on|both]

Per model: every system is built in its own process (bench/worker.py; setup and compile times
recorded there, peak RSS per process). Per batch: each process runs the same seeded inputs once and the
outputs are compared with eager's (max abs error per system; beyond --atol the system is flagged
MISMATCH in every table, still timed, and left out of the summaries); then warm-up, a short calibration
that sizes the number of calls (about --seconds per system and cell, within --min-calls/--max-calls),
and --rounds rounds interleaved across systems (rotating order), so all systems see the same machine
noise. Statistics are over every timed call: median, p90, p99, items/s = batch / median.
Before the models, the roofline's machine limits are measured (bench/roofline.py).
Output under --out: results.json, results.md, speedup.png, latency.png (bench/report.py).
--spin both: each system under both thread-pool policies, as NAME and NAME+spin (bench/policies.py).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from recc.bench.cells import CellTimes, compare, summarize
from recc.bench.policies import DEFAULT_SPIN, SPIN_CHOICES, base_system, entries, entry_policy
from recc.bench.progress import Progress
from recc.bench.reduced import REDUCED_SYSTEMS
from recc.bench.systems import SYSTEMS

DEFAULT_BATCHES = (1, 16, 64, 256, 1024)
DEFAULT_SYSTEMS = ("eager", "inductor", "ort", "ort-best", "recc")
QUICK = {"models": ("ncf",), "batches": (1, 64), "systems": ("eager", "ort", "ort-best", "recc"),
         "rounds": 3, "seconds": 0.05, "min_calls": 3, "max_calls": 50, "warmup": 1}
SETUP_TIMEOUT_S = 1800
FORKSERVER_PRELOAD = ["torch", "numpy", "onnx", "onnxruntime", "recc", "recc.models", "recc.bench.systems",
                      "recc.bench.worker"]
CALL_TIMEOUT_S = 1200


@dataclass(frozen=True)
class BenchConfig:
    models: tuple[str, ...]
    batches: tuple[int, ...] = DEFAULT_BATCHES
    systems: tuple[str, ...] = DEFAULT_SYSTEMS
    threads: int = 1
    scale: float = 0.01
    out: Path = Path("bench-results")
    quick: bool = False
    rounds: int = 5
    seconds: float = 1.0
    min_calls: int = 10
    max_calls: int = 2000
    warmup: int = 3
    atol: float = 1e-5
    atol_reduced: float = 3e-2  # for the reduced-precision systems (bench/reduced.py)
    inductor_dynamic: bool = False
    recc_target: str = "cpu"  # recc's systems compile for this target ("cpu:haswell": an AVX2-only CPU's code)
    spin: str = DEFAULT_SPIN  # idle thread pools: off (spin briefly), on (library defaults), both (bench/policies.py)
    command: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "out": str(self.out)}


class SystemFailed(RuntimeError):
    pass


class Worker:
    """A spawned worker process serving one system for one model (see bench/worker.py)."""

    def __init__(self, config: BenchConfig, model: str, system: str, log_path: Path, policy: str = "off") -> None:
        from recc.bench.policies import environment_applied, policy_environment, worker_context
        from recc.bench.worker import serve

        self.system = system
        # forkserver: one server process imports torch, TVM, ONNX Runtime and recc once, before any thread
        # pool exists, and forks a clean worker per system (spawn would pay ~6 s of imports per worker);
        # workers under the spinning policy are spawned instead: libgomp reads its variables when loaded
        context = worker_context(policy, FORKSERVER_PRELOAD)
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=serve, args=(child, model, config.scale, system, config.threads, {
                "inductor_dynamic": config.inductor_dynamic, "recc_target": config.recc_target, "spin": policy},
                str(log_path)), daemon=True)
        with environment_applied(policy_environment(config.threads, policy)):  # inherited by server/children
            self.process.start()
        child.close()

    def receive(self, timeout_s: float) -> tuple[Any, ...]:
        if not self.conn.poll(timeout_s):
            self.close()
            raise SystemFailed(f"{self.system}: no answer within {timeout_s:.0f} s")
        try:
            reply = self.conn.recv()
        except EOFError as error:
            raise SystemFailed(f"{self.system}: worker died (exit code {self.process.exitcode})") from error
        if reply[0] == "error":
            raise SystemFailed(f"{self.system}: {reply[1]}")
        return reply

    def ask(self, *command: Any, timeout_s: float = CALL_TIMEOUT_S) -> tuple[Any, ...]:
        try:
            self.conn.send(command)
        except (BrokenPipeError, OSError) as error:
            raise SystemFailed(f"{self.system}: worker gone ({error})") from error
        return self.receive(timeout_s)

    def close(self) -> None:
        try:
            self.conn.send(("quit",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class Bench:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.cells: list[dict[str, Any]] = []
        self.setups: list[dict[str, Any]] = []
        self.entries = entries(config.systems, config.spin)  # each system under each thread-pool policy
        ticks = len(config.models) * (len(self.entries) + len(config.batches) * (config.rounds + 1))
        self.progress = Progress(ticks, "recc bench")

    def run(self) -> dict[str, Any]:
        from recc.bench.machine import describe_machine
        from recc.bench.report import write_outputs
        from recc.bench.roofline import measure_limits

        config = self.config
        config.out.mkdir(parents=True, exist_ok=True)
        sizes = {"copy_mib": 64, "gemm_size": 1024} if config.quick else {}
        # at 1 thread, at the run's thread count, and at every core (for reference)
        counts = sorted({1, config.threads, os.cpu_count() or 1})
        limits = {str(count): measure_limits(count, **sizes).to_json() for count in counts}
        self.limits = limits[str(config.threads)]
        self.progress.write(f"threads {config.threads} in every system; machine limits: "
                            + ", ".join(f"{t} thread(s) copy {v['copy_gbps']} GB/s GEMM {v['gemm_gflops']} GFLOP/s"
                                        for t, v in limits.items()))
        started = time.time()
        machine = describe_machine()

        def results() -> dict[str, Any]:
            return {"config": config.to_json(), "entries": list(self.entries), "invocation": shlex.join(sys.argv),
                    "machine": machine, "roofline_limits": limits,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                    "wall_s": round(time.time() - started, 1), "setups": self.setups, "cells": self.cells}

        for model in config.models:
            self.run_model(model)
            if model != config.models[-1]:  # a long run leaves usable files behind after every model
                write_outputs({**results(), "partial": True}, config.out)
        self.progress.close()
        return results()

    def run_model(self, model_name: str) -> None:
        from recc.models import create

        from recc.bench.roofline import model_work

        config = self.config
        model = create(model_name, scale=config.scale, seed=0)
        work = {batch: model_work(model, batch) for batch in config.batches}
        del model
        log_path = config.out / "workers.log"
        started = {entry: (Worker(config, model_name, base_system(entry), log_path, entry_policy(entry)),
                           time.perf_counter()) for entry in self.entries}  # imports overlap; builds run one at a time
        workers: dict[str, Worker] = {}
        for system, (worker, start) in started.items():
            self.progress.set_note(f"{model_name}: building {system}")
            if self.build(model_name, system, worker, start):
                workers[system] = worker
            self.progress.update()
        for batch in config.batches:
            self.run_cell(model_name, batch, workers, work[batch])
        for system, worker in workers.items():
            setup = next(s for s in self.setups if s["model"] == model_name and s["system"] == system)
            try:
                setup["memory"] = worker.ask("memory")[1]
            except SystemFailed as error:
                setup["memory_error"] = str(error)
            worker.close()

    def build(self, model_name: str, system: str, worker: Worker, spawned: float) -> bool:
        record: dict[str, Any] = {"model": model_name, "system": system, "spin": entry_policy(system)}
        self.setups.append(record)
        try:
            worker.receive(SETUP_TIMEOUT_S)
            record["spawn_and_import_s"] = round(time.perf_counter() - spawned, 2)
            start = time.perf_counter()
            record["facts"] = worker.ask("setup", timeout_s=SETUP_TIMEOUT_S)[1]
            record["setup_wall_s"] = round(time.perf_counter() - start, 2)
        except SystemFailed as error:
            record["error"] = str(error)
            self.progress.write(f"{model_name}: {system} failed to build (details in results.json)")
            worker.close()
            return False
        return True

    def run_cell(self, model_name: str, batch: int, workers: dict[str, Worker], work: Any) -> None:
        from recc.bench.roofline import MachineLimits, fraction_of_bound

        config = self.config
        self.progress.set_note(f"{model_name} batch {batch}: checking outputs")
        seed = batch
        cells: dict[str, CellTimes] = {}
        failures: dict[str, str] = {}
        for system, worker in workers.items():
            try:
                reply = worker.ask("prepare", batch, seed, config.warmup)
                cells[system] = CellTimes(reply[1], reply[2], facts=reply[3])
            except SystemFailed as error:
                failures[system] = str(error)
        reference = next((cells[e].output for e in ("eager", "eager+spin") if e in cells), None)
        calls = {}
        for system in cells:
            try:
                probe = workers[system].ask("time", 3)[1]
                wanted = math.ceil(config.seconds / max(float(np.median(probe)), 1e-9))
                calls[system] = math.ceil(min(max(wanted, config.min_calls), config.max_calls) / config.rounds)
            except SystemFailed as error:
                failures[system] = str(error)
        self.progress.update()
        active = [system for system in cells if system not in failures]
        for round_index in range(config.rounds):
            self.progress.set_note(f"{model_name} batch {batch}: round {round_index + 1}/{config.rounds}")
            shift = round_index % max(len(active), 1)
            for system in active[shift:] + active[:shift]:
                if system in failures:
                    continue
                try:
                    cells[system].times += workers[system].ask("time", calls[system])[1]
                except SystemFailed as error:
                    failures[system] = str(error)
            self.progress.update()
        limits = MachineLimits(**self.limits)
        eager_median = None
        if "eager" in cells and "eager" not in failures:
            eager_median = float(np.median(cells["eager"].times))
        for system in self.entries:
            row: dict[str, Any] = {"model": model_name, "batch": batch, "system": system, "threads": config.threads,
                                   "spin": entry_policy(system),
                                   "gathered_bytes": work.gathered_bytes, "dense_flops": work.dense_flops,
                                   "bound_us": work.bound_s(limits) * 1e6, "bound_kind": work.bound_kind(limits)}
            if system not in cells or system in failures:
                row["status"] = "failed"
                row["error"] = failures.get(system, "not built (see setups)")
                self.cells.append(row)
                continue
            cell = cells[system]
            error, matched = compare(cell.output, reference,
                                     config.atol_reduced if base_system(system) in REDUCED_SYSTEMS else config.atol)
            row.update({"max_abs_error": error, "matched": matched, "first_call_s": round(cell.first_call_s, 4)})
            if cell.facts:
                row["cell_facts"] = cell.facts
            row.update(summarize(cell.times, batch))
            median_s = row["median_us"] / 1e6
            row["status"] = "ok" if matched else ("MISMATCH" if matched is False else "unchecked")
            row["speedup_vs_eager"] = eager_median / median_s if eager_median else None
            row["bound_fraction"] = fraction_of_bound(work, limits, median_s)
            row["gathered_gbps"] = work.gathered_bytes / median_s / 1e9
            row["dense_gflops"] = work.dense_flops / median_s / 1e9
            self.cells.append(row)
            if matched is False:
                self.progress.write(f"{model_name} batch {batch}: {system} MISMATCH, max abs error {error:.3g}")


def parse_list(text: str, valid: tuple[str, ...] | None = None, what: str = "") -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if valid is not None:
        unknown = [item for item in items if item not in valid]
        if unknown:
            raise ValueError(f"unknown {what} {unknown}; valid: {', '.join(valid)}")
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="all", help="comma-separated model names, or all (default)")
    parser.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)))
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"comma-separated, from {', '.join(SYSTEMS)} (eager is always run: the reference)")
    parser.add_argument("--threads", type=int, default=1, help="threads in every system (default 1)")
    parser.add_argument("--scale", type=float, default=0.01, help="table-row scale (default 0.01)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output directory")
    parser.add_argument("--quick", action="store_true",
                        help="ncf only, batches 1 and 64, eager/ort/ort-best/recc, few calls (a smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 5)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="timed seconds per system and cell, split over the rounds (default 1.0)")
    parser.add_argument("--min-calls", type=int, default=None, help="timed calls per system and cell, at least")
    parser.add_argument("--max-calls", type=int, default=None, help="timed calls per system and cell, at most")
    parser.add_argument("--atol", type=float, default=1e-5, help="max abs error vs eager accepted (default 1e-5)")
    parser.add_argument("--atol-reduced", type=float, default=3e-2,
                        help="the same for int8/bf16 systems (default 3e-2); their error is reported either way")
    parser.add_argument("--inductor-dynamic", action="store_true",
                        help="torch.compile(dynamic=True) instead of one static graph per batch size")
    parser.add_argument("--spin", choices=SPIN_CHOICES, default=DEFAULT_SPIN,
                        help="idle thread pools: off = spin briefly then sleep (default; ONNX Runtime not at all), "
                        "on = library defaults (spinning), both = every system under each, as NAME and NAME+spin")
    parser.add_argument("--recc-target", default="cpu", help="recc's compile target (default cpu: this host; "
                        "cpu:haswell measures the AVX2-only code a CPU without AVX-512 would run)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    from recc.models import names

    base = BenchConfig(models=tuple(names()))
    if args.quick:
        base = replace(base, quick=True, **QUICK)
    explicit = {option: getattr(args, option) for option in ("rounds", "seconds", "min_calls", "max_calls")
                if getattr(args, option) is not None}
    models = base.models if args.models == "all" else parse_list(args.models, tuple(names()), "model(s)")
    systems = base.systems if args.quick and args.systems == ",".join(DEFAULT_SYSTEMS) \
        else parse_list(args.systems, SYSTEMS, "system(s)")
    if "eager" not in systems:
        systems = ("eager", *systems)
    batches = base.batches if args.quick and args.batches == ",".join(map(str, DEFAULT_BATCHES)) \
        else tuple(int(b) for b in parse_list(args.batches))
    if args.threads < 1 or any(b < 1 for b in batches):
        raise ValueError("--threads and every batch must be >= 1")
    config = replace(base, models=models, systems=systems, batches=batches, threads=args.threads,
                     scale=args.scale, out=args.out, atol=args.atol, atol_reduced=args.atol_reduced,
                     inductor_dynamic=args.inductor_dynamic, recc_target=args.recc_target, spin=args.spin, **explicit)
    return replace(config, command=canonical_command(config))


def config_from_argv(argv: list[str]) -> BenchConfig:
    """The BenchConfig `recc bench ARGV` would run (parsed and checked, without running it)."""
    parser = argparse.ArgumentParser(prog="recc bench")
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def canonical_command(config: BenchConfig) -> str:
    """The fully spelled-out command that reproduces `config` (what results.md and README print)."""
    return (f"recc bench --models {','.join(config.models)} --batches {','.join(map(str, config.batches))} "
            f"--systems {','.join(config.systems)} --threads {config.threads} --scale {config.scale:g} "
            f"--out {config.out} --rounds {config.rounds} --seconds {config.seconds:g} "
            f"--min-calls {config.min_calls} --max-calls {config.max_calls} --atol {config.atol:g} "
            f"--atol-reduced {config.atol_reduced:g}"
            + (" --inductor-dynamic" if config.inductor_dynamic else "")
            + (f" --recc-target {config.recc_target}" if config.recc_target != "cpu" else "")
            + (f" --spin {config.spin}" if config.spin != DEFAULT_SPIN else ""))


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmark and write results.json, results.md and the plots under config.out."""
    from recc.bench.report import write_outputs

    results = Bench(config).run()
    write_outputs(results, config.out)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recc bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return cmd_bench(args)


def register(sub: Any) -> None:
    """The `recc bench` subcommand (entry point group "recc.commands"; `sub` is argparse's subparsers)."""
    b = sub.add_parser("bench", help="benchmark eager, torch.compile, ONNX Runtime and recc side by side")
    add_arguments(b)
    b.set_defaults(fn=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Entry point of `recc bench`; exit status 1 if any system mismatched eager or failed."""
    config = config_from_args(args)
    results = run_bench(config)
    from recc.bench.report import console_summary

    print(console_summary(results))
    bad = [c for c in results["cells"] if c["status"] not in ("ok",)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
