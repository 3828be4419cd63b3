"""The fused kernel: SASS budget, kernel benchmark, GPU checks."""
