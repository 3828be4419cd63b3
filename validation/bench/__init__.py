"""Latency, memory and throughput benchmarks that write reports."""
