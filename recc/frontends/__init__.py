"""Converters from user model formats into recc's IR (no optimization happens here)."""
