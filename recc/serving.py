"""Serving from Python, in one place (the `serve` extra: pip install 'recc[serve]').

    from recc import serving

    app = serving.create_app(serving.load_models(["rmc1.recc"]), serving.ServeConfig(workers=2, max_batch=64))
    with serving.ServerThread(app) as server, serving.Client(server.url) as client:
        (scores,) = client.infer("rmc1", dense, ids)

    serving.serve(["rmc1.recc"], port=8000)              # blocking, as `recc serve`
    serving.run_load(serving.LoadConfig(url, "rmc1", qps=200, sizes="deeprecsys"))   # as `recc loadgen`
    serving.tune_layouts(...)                            # as `recc tune-serving`

Ray Serve lives in `recc.runtime.ray_serve` (the `ray` extra). docs/serving.md describes all of it.
"""

from __future__ import annotations

from recc.runtime.client import Client, ServerError
from recc.runtime.drive import Deployment, Load, QueryPool, artifact_deployment, measure
from recc.runtime.handler import ServeConfig
from recc.runtime.loadgen import LoadConfig, run_load
from recc.runtime.pool import Worker, WorkerCrashed, start_workers
from recc.runtime.server import ServerThread, create_app, load_models, serve
from recc.runtime.tune import Objective, config_path, load_config, max_qps, tune, tune_layouts

__all__ = ["Client", "Deployment", "Load", "LoadConfig", "Objective", "QueryPool", "ServeConfig", "ServerError",
           "ServerThread", "Worker", "WorkerCrashed", "artifact_deployment", "config_path", "create_app",
           "load_config", "load_models", "max_qps", "measure", "run_load", "serve", "start_workers", "tune",
           "tune_layouts"]
