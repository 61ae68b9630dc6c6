"""Loading and running compiled recc artifacts."""

from recc.runtime.compiled_model import CompiledModel, load

__all__ = ["CompiledModel", "load"]
