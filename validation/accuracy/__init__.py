"""Numerical parity of every backend against float32 PyTorch, and its report."""
