"""Exporters: views of a compiled artifact in other formats (ONNX for looking at)."""
