"""recc: a graph-optimizing compiler for neural recommendation inference.

    import recc
    compiled = recc.compile(module, example_inputs)        # torch.export -> IR -> passes -> TVM
    compiled(*inputs)                                       # torch tensors or numpy arrays in, torch out
    compiled.save("model.recc"); recc.load("model.recc")
"""

import os as _os

__version__ = "0.1.0"

# TVM sizes its thread pool once, on first use, from TVM_NUM_THREADS (else half the cores: 1 here), and
# `threads=` can later only choose within that size. Allow every core; a user's own setting wins.
_os.environ.setdefault("TVM_NUM_THREADS", str(_os.cpu_count() or 1))

from recc.api import CompiledModel, compile, load  # noqa: E402

__all__ = ["compile", "load", "CompiledModel", "__version__"]
