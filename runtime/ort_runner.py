"""ONNX Runtime as a runner: one session (export/onnx_graph/ort_session.py) on a file or an in-memory graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from esc_deploy.runtime.facts import ModelFacts
from esc_deploy.runtime.runner import RunnerBase

if TYPE_CHECKING:
    import onnx

CPU = ("CPUExecutionProvider",)


class OrtRunner(RunnerBase):
    """``arena``: keep buffers between runs of one shape (tiles, benchmarks); see ort_session."""

    def __init__(
        self,
        model: onnx.ModelProto | Path,
        *,
        providers: Sequence[str] = CPU,
        arena: bool = False,
        threads: int | None = None,
        facts: ModelFacts | None = None,
    ) -> None:
        from esc_deploy.export.onnx_graph.ort_session import ort_session

        if facts is None:
            facts = ModelFacts.from_onnx(model) if isinstance(model, Path) else _facts_of_proto(model)
        self.facts = facts
        self.session = ort_session(model, providers=providers, arena=arena, threads=threads)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return self.checked(batch, np.asarray(out))

    def describe(self) -> str:
        import onnxruntime as ort

        return f"ONNX Runtime {ort.__version__}, {', '.join(self.session.get_providers())} ({self.facts.source})"

    def close(self) -> None:
        self.__dict__.pop("session", None)  # ONNX Runtime frees the session's arena with the object


def _facts_of_proto(proto: onnx.ModelProto) -> ModelFacts:
    import json

    from esc_deploy.export.onnx_graph.metadata import CONFIG_KEY, config_from_dict

    props = {p.key: p.value for p in proto.metadata_props}
    if CONFIG_KEY not in props:
        raise ValueError(f"the ONNX graph has no {CONFIG_KEY!r} metadata (export it with keep_metadata=True)")
    config = config_from_dict(json.loads(props[CONFIG_KEY]), f"graph metadata {CONFIG_KEY!r}")
    return ModelFacts.from_config(config, source="in-memory ONNX graph")
