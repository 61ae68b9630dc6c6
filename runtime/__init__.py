"""Loading and running compiled recc artifacts."""

from .compiled_model import CompiledModel, load

__all__ = ["CompiledModel", "load"]
