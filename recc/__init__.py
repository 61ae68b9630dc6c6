"""recc: a graph-optimizing compiler for neural recommendation inference.

    import recc
    compiled = recc.compile(module, example_inputs)        # torch.export -> IR -> passes -> TVM
    compiled(*inputs)                                       # torch tensors or numpy arrays in, torch out
    compiled.save("model.recc"); recc.load("model.recc")
"""

__version__ = "0.1.0"

from .api import CompiledModel, compile, load  # noqa: E402

__all__ = ["compile", "load", "CompiledModel", "__version__"]
