"""The `recc serve`, `recc serve-ray` and `recc loadgen` verbs. Their argument parsers import nothing heavy:
FastAPI, uvicorn and httpx (the `serve` extra) and Ray (the `ray` extra) load only when a verb runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add `serve`, `serve-ray` and `loadgen` to the CLI's subparsers."""
    s = sub.add_parser("serve", help="serve artifacts over HTTP (KServe v2 protocol) with dynamic batching")
    s.add_argument("artifacts", nargs="+", metavar="ART", help="artifact directory, or NAME=PATH to name it")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--sla-ms", type=float, default=10.0,
                   help="default per-request deadline: a request predicted to miss it is refused with 429 "
                        "(0: no admission control; a request may send parameters.sla_ms)")
    s.add_argument("--max-batch", type=int, default=None,
                   help="rows per model call (default: the tuned serving config's, else 256)")
    s.add_argument("--max-delay-ms", type=float, default=2.0,
                   help="how long the oldest queued request waits for others to join its batch (default 2)")
    s.add_argument("--max-body-mb", type=float, default=64.0, help="larger request bodies are refused (400)")
    s.add_argument("--threads", type=int, default=None, help="TVM threads (default: TVM's, one per core)")
    s.add_argument("--inline-max-ms", type=float, default=1.0,
                   help="a request finding its model idle runs at once, on the event loop, when its call is "
                        "predicted to take at most this long (default 1; 0: always through the batcher)")
    s.add_argument("--workers", type=int, default=None,
                   help="worker processes per model, each pinned to --worker-threads cores (default: the model's "
                        "tuned serving config, NAME.serving.json beside the artifact, else 0: calls in the server process)")
    s.add_argument("--worker-threads", type=int, default=None, help="TVM threads (and cores) per worker (default 1)")
    s.add_argument("--no-split", action="store_true",
                   help="with workers: run a request bigger than --max-batch whole on one worker instead of splitting it")
    s.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                   help="a second artifact of model NAME (same inputs and outputs) for its requests of more than "
                        "--variant-threshold rows (default: the tuned serving config's)")
    s.add_argument("--variant-threshold", type=int, default=None, help="rows above which --variant serves (default 256)")
    s.add_argument("--allow-swap", action="store_true",
                   help="answer POST /v2/repository/models/NAME/load {\"parameters\": {\"path\": ART}}: hot swap a "
                        "model's artifact (off by default: it lets any client that reaches the port make the server "
                        "load an artifact, i.e. run its native code, from any path the server can read)")
    s.add_argument("--log-level", default="info")
    s.add_argument("--access-log", action="store_true", help="log every request (off: it costs ~tens of us each)")
    s.set_defaults(fn=cmd_serve)
    _register_serve_ray(sub)

    t = sub.add_parser("tune-serving", help="DeepRecSched: search the rows per call (query splitting) that "
                       "maximize queries/s within a latency SLA, by measurement; saved beside the artifact")
    t.add_argument("artifact", metavar="ART")
    t.add_argument("--sla-ms", type=float, default=10.0, help="the latency bound (default 10)")
    t.add_argument("--percentile", choices=("p95", "p99"), default="p95")
    t.add_argument("--workers", type=int, default=None,
                   help="only this layout: N worker processes (0: in the server process) (default: search pools of "
                        "N >= 2 workers using every core, and in process)")
    t.add_argument("--worker-threads", type=int, default=None, help="with --workers: threads per worker")
    t.add_argument("--sizes", default="deeprecsys", help="items per query, as recc loadgen (default deeprecsys)")
    t.add_argument("--duration", type=float, default=3.0, help="seconds per measured load (default 3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--variant", metavar="ART2", help="a second artifact of the model: also search the query size "
                   "above which queries go to it (DeepRecSched's offload threshold)")
    t.add_argument("--out", metavar="JSON", help="where to save the config (default: NAME.serving.json beside ART)")
    t.set_defaults(fn=cmd_tune_serving)

    g = sub.add_parser("loadgen", help="open-loop Poisson load against a served model; latency percentiles as JSON")
    g.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    g.add_argument("--model", required=True)
    g.add_argument("--qps", default="200",
                   help="mean arrival rate (queries per second); several, comma-separated, run one after another "
                        "(a latency-vs-load curve)")
    g.add_argument("--plot", metavar="PNG", help="plot latency percentiles against the offered rate")
    g.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals")
    g.add_argument("--max-requests", type=int, default=None, help="stop after this many queries")
    g.add_argument("--sizes", default="fixed:64",
                   help="items per query: fixed:N, lognormal:MU,SIGMA, deeprecsys, file:PATH (default fixed:64)")
    g.add_argument("--sla-ms", type=float, default=None, help="deadline sent with each request (default: the server's)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--binary", action="store_true",
                   help="send and receive tensors with the binary tensor extension instead of JSON")
    g.add_argument("--phases", type=_phases, default=None, metavar="QPS:S,...",
                   help="piecewise rates instead of --qps/--duration: QPS for S seconds, then the next "
                        "(e.g. 50:10,100:60,50:10, an overload burst)")
    g.add_argument("--trace", metavar="FILE", help="replay recorded arrivals: one query per line, 'SECONDS [ITEMS]' "
                   "(arrival from the start; its size, else drawn from --sizes) instead of Poisson arrivals")
    g.add_argument("--record-requests", action="store_true",
                   help="keep every request in the results: [scheduled s, latency ms, status, rows]")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as an error")
    g.add_argument("--out", metavar="JSON", help="write the results here (they are printed either way)")
    g.set_defaults(fn=cmd_loadgen)


def _register_serve_ray(sub: Any) -> None:
    r = sub.add_parser("serve-ray", help="serve artifacts on Ray Serve: replicas, @serve.batch batching, autoscaling "
                                         "(the ray extra)")
    r.add_argument("artifacts", nargs="+", metavar="ART", help="artifact directory, or NAME=PATH to name it")
    r.add_argument("--address", default="local",
                   help="local: start Ray here (default); auto: join the cluster `ray start` made; or a Ray address")
    r.add_argument("--host", default="127.0.0.1", help="Ray Serve's HTTP proxy host")
    r.add_argument("--port", type=int, default=8000, help="Ray Serve's HTTP proxy port")
    r.add_argument("--replicas", type=int, default=1, help="replicas per model (default 1; ignored with --autoscale)")
    r.add_argument("--autoscale", metavar="MIN,MAX", type=_replica_range, default=None,
                   help="autoscale between MIN and MAX replicas on ongoing requests per replica")
    r.add_argument("--target-ongoing", type=float, default=None,
                   help="with --autoscale: ongoing requests per replica to hold (default: --max-batch-size)")
    r.add_argument("--num-cpus", type=float, default=1.0, help="Ray CPUs per replica (default 1)")
    r.add_argument("--threads", type=int, default=None, help="TVM threads per replica (default: --num-cpus)")
    r.add_argument("--max-batch-size", type=int, default=16, help="requests per @serve.batch batch (default 16)")
    r.add_argument("--batch-wait-ms", type=float, default=2.0, help="how long a batch waits to fill (default 2)")
    r.add_argument("--max-rows", type=int, default=256, help="rows per model call (default 256)")
    r.set_defaults(fn=cmd_serve_ray)


def _phases(text: str) -> tuple[tuple[float, float], ...]:
    try:
        phases = tuple((float(q), float(s)) for q, s in (piece.split(":") for piece in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected QPS:SECONDS,... (e.g. 50:10,100:60), got {text!r}") from None
    if not phases or any(q <= 0 or s <= 0 for q, s in phases):
        raise argparse.ArgumentTypeError(f"rates and durations must be positive, got {text!r}")
    return phases


def _replica_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(",")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected MIN,MAX replicas (e.g. 1,4), got {text!r}")
    return int(low), int(high)


def cmd_serve_ray(args: argparse.Namespace) -> int:
    try:
        from recc.runtime.ray_serve import serve_until_stopped
    except ModuleNotFoundError as e:
        raise ValueError(f"recc serve-ray needs the ray extra: pip install 'recc[ray]' ({e})") from None

    serve_until_stopped(args.artifacts, host=args.host, port=args.port, address=args.address,
                        num_replicas=args.replicas, autoscaling=args.autoscale,
                        target_ongoing_requests=args.target_ongoing, num_cpus=args.num_cpus, threads=args.threads,
                        max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_wait_ms / 1e3,
                        max_rows=args.max_rows)
    return 0


def _need_serve_extra(e: ModuleNotFoundError) -> ValueError:
    return ValueError(f"this verb needs the serve extra (pip install 'recc[serve]'): {e}")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from recc.runtime.server import ServeConfig, serve
    except ModuleNotFoundError as e:
        raise _need_serve_extra(e) from None

    config = ServeConfig(sla_ms=args.sla_ms or None, max_batch=args.max_batch or 256, max_delay_ms=args.max_delay_ms,
                         max_body_bytes=int(args.max_body_mb * (1 << 20)), inline_max_ms=args.inline_max_ms,
                         workers=args.workers or 0, worker_threads=args.worker_threads or 1, split=not args.no_split,
                         variant_threshold=args.variant_threshold or 256, allow_swap=args.allow_swap,
                         per_model=_tuned_settings(args))
    serve(args.artifacts, host=args.host, port=args.port, config=config, threads=args.threads,
          log_level=args.log_level, access_log=args.access_log)
    return 0


def _tuned_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each artifact's saved serving config (`recc tune-serving`), less what the command line sets."""
    from recc.runtime.protocol import named_artifacts
    from recc.runtime.tune import config_path, load_config

    given = {"max_batch": args.max_batch, "workers": args.workers, "worker_threads": args.worker_threads,
             "split": False if args.no_split else None, "variant": None,
             "variant_threshold": getattr(args, "variant_threshold", None)}
    variants = named_artifacts(getattr(args, "variant", []))
    settings: dict[str, dict[str, Any]] = {}
    for name, path in named_artifacts(args.artifacts).items():
        saved = load_config(path)
        if saved:
            if name in variants:  # a variant given on the command line replaces the saved one
                saved.pop("variant", None)
            settings[name] = {k: v for k, v in saved.items() if given[k] is None}
            print(f"{name}: serving config {config_path(path)}: {settings[name]}", file=sys.stderr)
    for name, path in variants.items():
        settings.setdefault(name, {})["variant"] = path
    return settings


def _command_line(args: argparse.Namespace) -> list[str]:
    """The command that repeats this run, every setting spelled out (defaults included)."""
    line = ["recc", "loadgen", args.url]
    for flag in ("model", "qps", "duration", "max_requests", "sizes", "sla_ms", "seed", "timeout", "out", "plot", "trace"):
        value = getattr(args, flag)
        if value is not None:
            line += ["--" + flag.replace("_", "-"), str(value)]
    if args.phases:
        line += ["--phases", ",".join(f"{q:g}:{s:g}" for q, s in args.phases)]
    return line + (["--binary"] if args.binary else []) + (["--record-requests"] if args.record_requests else [])


def cmd_tune_serving(args: argparse.Namespace) -> int:
    import os

    try:
        from recc.runtime.drive import artifact_deployment
        from recc.runtime.query_sizes import parse_sizes
        from recc.runtime.tune import Objective, config_path, layouts, print_curve, save_config, tune_layouts
    except ModuleNotFoundError as e:
        raise _need_serve_extra(e) from None

    cores = len(os.sched_getaffinity(0))
    if args.workers is not None:
        candidates = [(args.workers, args.worker_threads or (cores if args.workers == 0 else 1))]
    else:
        candidates = layouts(cores)
    objective = Objective(sla_ms=args.sla_ms, percentile=args.percentile, duration_s=args.duration, seed=args.seed)
    sizes = parse_sizes(args.sizes)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    say(f"tuning {args.artifact}: layouts {candidates} (workers x threads; 0 workers: in process), sizes "
        f"{args.sizes}, {args.percentile} <= {args.sla_ms:g} ms")
    name = Path(args.artifact).name
    result = tune_layouts(lambda w, t: artifact_deployment(name, args.artifact, w, t), candidates, sizes, objective, say)
    if args.variant:
        result.update(_tune_variant(args, result, sizes, objective, say))
    print_curve(result)
    path = Path(args.out) if args.out else config_path(args.artifact)
    save_config(path, args.artifact, result, ["recc", "tune-serving", *sys.argv[2:]])
    print(f"saved {path}" + ("" if path == config_path(args.artifact) else
                             f" (recc serve reads {config_path(args.artifact)}: copy it there to use it)"))
    return 0


def _tune_variant(args: argparse.Namespace, result: dict[str, Any], sizes: Any, objective: Any, say: Any) -> dict[str, Any]:
    """The offload threshold to `--variant`, both variants at the layout and rows per call just tuned."""
    from recc.runtime.compiled_model import load
    from recc.runtime.drive import Routed, artifact_deployment
    from recc.runtime.router import check_same_signature
    from recc.runtime.tune import tune_threshold

    check_same_signature(load(args.artifact), load(args.variant))
    say(f"variant {args.variant}: searching the offload threshold")
    parts = [artifact_deployment(Path(p).name, p, result["workers"], result["worker_threads"])
             for p in (args.artifact, args.variant)]
    for part in parts:
        part.max_batch, part.split = result["max_batch"], result["split"]
    routed = Routed(parts[0], parts[1], 0)
    try:
        found = tune_threshold(routed, sizes, objective, say)
    finally:
        routed.close()
    if found["offloads"] and found["max_qps"] > result["max_qps"]:
        return dict(found, variant=str(Path(args.variant).resolve()))
    say("the variant does not raise the latency-bounded rate: not used")
    return {"threshold_curve": found["threshold_curve"], "variant": None}


def cmd_loadgen(args: argparse.Namespace) -> int:
    try:
        from recc.runtime.loadgen import LoadConfig, run_load
    except ModuleNotFoundError as e:
        raise _need_serve_extra(e) from None

    try:
        rates = [float(q) for q in str(args.qps).split(",")]
    except ValueError:
        raise ValueError(f"--qps: expected a rate or comma-separated rates, got {args.qps!r}") from None
    runs = []
    for qps in rates:
        config = LoadConfig(args.url, args.model, qps=qps, duration_s=args.duration, sizes=args.sizes, seed=args.seed,
                            max_requests=args.max_requests, sla_ms=args.sla_ms, timeout_s=args.timeout,
                            binary=args.binary, phases=args.phases or (),
                            record_requests=args.record_requests, trace=args.trace)
        runs.append(run_load(config, command=_command_line(args)))
        if len(rates) > 1:
            latency = runs[-1]["latency_ms"] or {}
            print(f"{qps:g} qps: p50 {latency.get('p50', float('nan')):.2f} ms, p95 {latency.get('p95', float('nan')):.2f}"
                  f" ms, p99 {latency.get('p99', float('nan')):.2f} ms, {runs[-1]['refused']} refused", file=sys.stderr)
    results = runs[0] if len(runs) == 1 else {"command": _command_line(args), "runs": runs}
    if args.plot:
        from recc.runtime.plot import latency_vs_load

        latency_vs_load({args.model: runs}, args.plot, sla_ms=args.sla_ms, title=f"{args.model}, sizes {args.sizes}")
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0
