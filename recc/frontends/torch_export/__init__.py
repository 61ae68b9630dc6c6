"""torch.export frontend: an nn.Module plus example inputs -> recc IR with a symbolic batch dim."""

from recc.frontends.torch_export.capture import UnsupportedOpError, capture, from_exported_program

__all__ = ["capture", "from_exported_program", "UnsupportedOpError"]
