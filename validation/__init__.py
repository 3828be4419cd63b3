"""Validation beside the stages: parity (``accuracy``), benchmarks (``bench``) and the fused kernel's checks
(``kernel``), sharing one set of backend runners (``backends``). Imports the stages; no stage imports it."""
