"""What `recc bench` writes: results.json (everything), results.md (tables), speedup.png and latency.png."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from recc.bench.policies import base_system, best_policy_lines

SYSTEM_COLORS = {"eager": "#444444", "inductor": "#1f77b4", "inductor-max": "#17becf", "ort": "#ff7f0e",
                 "ort-best": "#d62728", "recc": "#2ca02c"}


def write_outputs(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    (out / "results.md").write_text(markdown(results))
    plot_speedup(results, out / "speedup.png")
    plot_latency(results, out / "latency.png")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _ok(cell: dict[str, Any]) -> bool:
    return cell.get("status") == "ok"


def _systems(results: dict[str, Any]) -> list[str]:
    """The run's entries: its systems, each under each thread-pool policy run (`NAME+spin`: bench/policies.py)."""
    return list(results.get("entries") or results["config"]["systems"])


def _color(entry: str) -> str | None:
    return SYSTEM_COLORS.get(base_system(entry))


def _cells(results: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {(c["model"], c["batch"], c["system"]): c for c in results["cells"]}


def geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def speedup_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "not run"
    if cell.get("status") == "failed":
        return "failed"
    if cell.get("status") == "MISMATCH":
        return f"MISMATCH ({cell['max_abs_error']:.1g})"
    speedup = cell.get("speedup_vs_eager")
    return f"{speedup:.2f}x" if speedup else "-"


def markdown(results: dict[str, Any]) -> str:
    config, machine = results["config"], results["machine"]
    systems = _systems(results)
    cells = _cells(results)
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [
        "# recc bench results", "",
        f"Command: `{config['command'] or 'recc bench'}`  ",
        (f"Started {results['started']}, took {results['wall_s']:.0f} s. Scale {config['scale']}, "
         f"**threads {config['threads']}** in every system, fp32, atol {config['atol']:g} vs eager.  "),
        (f"Thread pools: --spin {config.get('spin', 'off')} (bench/policies.py; `NAME+spin`: the library "
         "defaults, spinning).  " if config.get("spin", "off") != "off" else ""),
        (f"Machine: {machine['cpu_model']} ({machine['llvm_cpu']}), {machine['logical_cores']} logical cores "
         f"({machine['cores_available_to_process']} available), {machine['memory_gib']} GiB, "
         f"flags {' '.join(machine['cpu_flags'])}; load average at the start "
         f"{machine.get('load_average_1_5_15_min', '?')} (1/5/15 min).  "),
        f"Versions: {versions}; git {machine['git_commit']}{' (uncommitted changes)' if machine.get('git_dirty') else ''}.  ",
        (f"Method: each system in its own process; per cell {config['rounds']} rounds interleaved across "
         f"systems (rotating order) after {config['warmup']} warm-up calls and 3 calibration calls; about "
         f"{config['seconds']:g} s of timed calls per system and cell ({config['min_calls']}-"
         f"{config['max_calls']} calls). Latencies are per call, in microseconds; speedup = eager median / "
         "system median. Machine limits measured before the run: " + "; ".join(
             f"{t} thread(s): copy {v['copy_gbps']} GB/s (read+write), GEMM {v['gemm_gflops']} GFLOP/s"
             for t, v in results["roofline_limits"].items()) + "."), "",
        "## Speedup over eager PyTorch (median latency ratio; > 1 is faster than eager)", "",
    ]
    others = [s for s in systems if s != "eager"]
    lines += [f"| model | batch | {' | '.join(others)} |", "|---|---:|" + "---:|" * len(others)]
    for model in config["models"]:
        for batch in config["batches"]:
            lines.append(f"| {model} | {batch} | "
                         + " | ".join(speedup_text(cells.get((model, batch, s))) for s in others) + " |")
    means = []
    for system in others:
        mean = geomean([c["speedup_vs_eager"] for c in results["cells"] if c["system"] == system and _ok(c)])
        means.append(f"{mean:.2f}x" if mean else "-")
    lines += [f"| **geomean** | | {' | '.join(means)} |", ""]
    lines += [("MISMATCH: outputs differ from eager beyond atol (the system was timed, but its speed is not "
               "counted in the geomean)."), ""]
    lines += best_policy_lines(results)
    lines += _detail_tables(results, cells)
    lines += _setup_table(results, cells)
    lines += _roofline_table(results, cells)
    return "\n".join(lines) + "\n"


def _detail_tables(results: dict[str, Any], cells: dict[tuple[str, int, str], dict[str, Any]]) -> list[str]:
    config = results["config"]
    lines = ["## Latency per model", ""]
    for model in config["models"]:
        lines += [f"### {model}", "",
                  "| batch | system | median us | p90 us | p99 us | items/s | vs eager | of bound | max abs err | calls |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for batch in config["batches"]:
            for system in _systems(results):
                cell = cells.get((model, batch, system))
                if cell is None:
                    continue
                if cell["status"] == "failed":
                    lines.append(f"| {batch} | {system} | failed | | | | | | | |")
                    continue
                error = cell["max_abs_error"]
                lines.append(
                    f"| {batch} | {system} | {cell['median_us']:.1f} | {cell['p90_us']:.1f} | {cell['p99_us']:.1f} "
                    f"| {cell['items_per_s']:,.0f} | {speedup_text(cell)} | {cell['bound_fraction']:.1%} "
                    f"| {'-' if error is None else f'{error:.1g}'} | {cell['calls']} |")
        lines.append("")
    return lines


def _setup_facts(setup: dict[str, Any], first_calls: list[str]) -> str:
    facts = setup.get("facts", {})
    system = base_system(setup["system"])
    if "error" in setup:
        return "failed: " + setup["error"].strip().splitlines()[-1][:200]
    if system == "recc":
        return f"compile {facts.get('compile_s')} s ({facts.get('compile_timings_s')})"
    if system in ("inductor", "inductor-max"):
        return f"{facts.get('mode')}; compile (first call) per batch: {', '.join(first_calls)}"
    if system in ("ort", "ort-best"):
        rewritten = f", {facts['embedding_bags_rewritten']} EmbeddingBags -> Gather+ReduceSum" \
            if "embedding_bags_rewritten" in facts else ""
        return (f"{facts.get('exporter')}, export {facts.get('export_s')} s, session {facts.get('session_s')} s; "
                f"Loop ops: {facts.get('loop_ops')} (EmbeddingBag became Loop: "
                f"{'yes' if facts.get('embedding_bag_became_loop') else 'no'}){rewritten}")
    return str(facts.get("mode", ""))


def _setup_table(results: dict[str, Any], cells: dict[tuple[str, int, str], dict[str, Any]]) -> list[str]:
    lines = ["## Setup, compile time and memory", "",
             ("Memory per system process: `baseline` = resident after imports (torch, TVM, recc) and building "
              "the torch model, which every process pays; `peak` = the process's high-water mark (VmHWM) over "
              "setup and all runs; `added` = peak - baseline, what the system itself costs (compiler or "
              "exporter working memory, a second copy of the weights, buffers); `end` = resident at the end."), "",
             "| model | system | setup wall s | baseline MiB | peak MiB | added MiB | end MiB | details |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for setup in results["setups"]:
        first_calls = [_first_call_text(cells[(setup["model"], b, setup["system"])])
                       for b in results["config"]["batches"] if (setup["model"], b, setup["system"]) in cells
                       and "first_call_s" in cells[(setup["model"], b, setup["system"])]]
        memory = setup.get("memory", {})
        baseline, peak = memory.get("baseline_mb"), memory.get("peak_mb")
        added = peak - baseline if baseline is not None and peak is not None else None
        lines.append(f"| {setup['model']} | {setup['system']} | {setup.get('setup_wall_s', '')} "
                     f"| {_num(baseline)} | {_num(peak)} | {_num(added)} | {_num(memory.get('rss_mb'))} "
                     f"| {_setup_facts(setup, first_calls)} |")
    return lines + [""]


def _first_call_text(cell: dict[str, Any]) -> str:
    """`b64: 12.3 s`, with the configuration a system chose for the cell (inductor-max) when it says."""
    facts = cell.get("cell_facts", {})
    how = f" ({facts['configuration']})" if "configuration" in facts else ""
    return f"b{cell['batch']}: {cell['first_call_s']:.1f} s{how}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _roofline_table(results: dict[str, Any], cells: dict[tuple[str, int, str], dict[str, Any]]) -> list[str]:
    systems = _systems(results)
    config = results["config"]
    lines = ["## Roofline: fraction of the machine's bound reached", "",
             ("bound = max(embedding bytes gathered / copy bandwidth, dense FLOPs / GEMM peak) at the run's "
              "thread count; fraction = bound / median latency. Elementwise work and per-call overhead are not "
              "in the bound, so small batches sit far below 100% for every system; a streaming copy is an "
              "optimistic bound for random row gathers (and tables at small scales partly fit in cache)."), "",
             f"| model | batch | gathered KiB | dense MFLOP | bound us | bound by | {' | '.join(systems)} |",
             "|---|---:|---:|---:|---:|---|" + "---:|" * len(systems)]
    for model in config["models"]:
        for batch in config["batches"]:
            any_cell = next((cells[(model, batch, s)] for s in systems if (model, batch, s) in cells), None)
            if any_cell is None:
                continue
            fractions = []
            for system in systems:
                cell = cells.get((model, batch, system))
                fractions.append(f"{cell['bound_fraction']:.1%}" if cell and "bound_fraction" in cell else "-")
            lines.append(f"| {model} | {batch} | {any_cell['gathered_bytes'] / 1024:,.0f} "
                         f"| {any_cell['dense_flops'] / 1e6:,.1f} | {any_cell['bound_us']:.1f} "
                         f"| {any_cell['bound_kind']} | {' | '.join(fractions)} |")
    return lines + [""]


def plot_speedup(results: dict[str, Any], path: Path) -> None:
    series = _series(results, "speedup_vs_eager")

    def draw(axis: Any, model: str) -> None:
        axis.axhline(1.0, color=SYSTEM_COLORS["eager"], linewidth=1, linestyle="--", label="eager")
        for system in [s for s in _systems(results) if s != "eager"]:
            if series[(model, system)]:
                xs, ys = zip(*series[(model, system)])
                axis.plot(xs, ys, marker="o", color=_color(system), label=system,
                          linestyle=":" if system.endswith("+spin") else "-")

    _plot_per_model(results, path, draw, "speedup over eager (x)",
                    "Speedup over eager PyTorch (median latency); mismatching systems left out")


def plot_latency(results: dict[str, Any], path: Path) -> None:
    medians, p90s = _series(results, "median_us"), _series(results, "p90_us")

    def draw(axis: Any, model: str) -> None:
        for system in _systems(results):
            points = medians[(model, system)]
            if not points:
                continue
            xs, ys = zip(*points)
            axis.plot(xs, [y / 1e3 for y in ys], marker="o", color=_color(system), label=system,
                      linestyle=":" if system.endswith("+spin") else "-")
            upper = dict(p90s[(model, system)])
            axis.fill_between(xs, [y / 1e3 for y in ys], [upper.get(x, y) / 1e3 for x, y in points],
                              color=_color(system), alpha=0.15, linewidth=0)

    _plot_per_model(results, path, draw, "latency per call (ms)",
                    "Median latency vs batch (band: median to p90); lower is better")


def _plot_per_model(results: dict[str, Any], path: Path, draw: Any, ylabel: str, title: str) -> None:
    """One log-log panel per model (batch on x), `draw(axis, model)` fills it; one shared legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = results["config"]
    models, batches = config["models"], config["batches"]
    columns = min(4, len(models))
    rows = math.ceil(len(models) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for index, model in enumerate(models):
        axis = axes[index // columns][index % columns]
        draw(axis, model)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks(batches, [str(b) for b in batches])
        axis.set_title(model)
        axis.grid(True, which="both", alpha=0.3)
        if index % columns == 0:
            axis.set_ylabel(ylabel)
        if index // columns == rows - 1 or index + columns >= len(models):
            axis.set_xlabel("batch")
    for index in range(len(models), rows * columns):
        axes[index // columns][index % columns].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 0.96))
    figure.suptitle(f"{title}. threads {config['threads']}, scale {config['scale']}", y=0.995, fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _series(results: dict[str, Any], key: str) -> dict[tuple[str, str], list[tuple[int, float]]]:
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for cell in results["cells"]:
        if _ok(cell) and cell.get(key):
            series[(cell["model"], cell["system"])].append((cell["batch"], cell[key]))
    return series


def console_summary(results: dict[str, Any]) -> str:
    """The speedup matrix and where the files went, for the terminal."""
    config = results["config"]
    cells = _cells(results)
    others = [s for s in _systems(results) if s != "eager"]
    width = max(len(s) for s in [*others, "MISMATCH (1e-01)"]) + 2
    lines = [f"threads {config['threads']}, scale {config['scale']}: median speedup over eager",
             f"{'model':12s} {'batch':>6s}" + "".join(f"{s:>{width}s}" for s in others)]
    for model in config["models"]:
        for batch in config["batches"]:
            lines.append(f"{model:12s} {batch:6d}"
                         + "".join(f"{speedup_text(cells.get((model, batch, s))):>{width}s}" for s in others))
    matched = [c for c in results["cells"] if c.get("matched") is True]
    mismatched = [c for c in results["cells"] if c.get("status") == "MISMATCH"]
    failed = [c for c in results["cells"] if c.get("status") == "failed"]
    lines.append(f"outputs matched eager (atol {config['atol']:g}) in {len(matched)} cells; "
                 f"{len(mismatched)} mismatched, {len(failed)} failed")
    lines.append(f"wrote {config['out']}/results.json, results.md, speedup.png, latency.png")
    return "\n".join(lines)
