"""Portico: a fast gateway to Jupyter kernels."""

__version__ = "0.1.0"
