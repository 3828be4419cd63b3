"""What runs a model, for every stage above export: upscale, the Triton client, parity and the benchmarks.

* :mod:`.facts` -- ``ModelFacts``, the one record of a model's scale, window, input limits and precision, read
  from a checkpoint, an ONNX file's metadata, an engine's sidecar or a Triton model config.
* :mod:`.runner` -- the ``Runner`` protocol (numpy float32 NCHW batch in, upscaled batch out) and
  ``open_runner``; one implementation per backend: :mod:`.torch_runner`, :mod:`.ort_runner`, :mod:`.engine`
  (TensorRT), :mod:`.triton`. Each imports its backend inside, so importing this package stays light.
* :mod:`.tiles` -- the tile plan over esc/tiling.py's arithmetic, and ``upscale_array``.
* :mod:`.images` -- image files in and out with Pillow (alpha, grayscale and 16-bit kept; atomic writes).
"""
