"""Moorage: a private OCI Distribution v1.1 container registry."""

__version__ = "0.1.0"
