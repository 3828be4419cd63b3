"""Numerical parity and latency/memory reports for every ESC backend."""
