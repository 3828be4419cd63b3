"""A model on a running Triton server as a ``Runner`` (tritonclient, imported inside ``connect``; no torch).

The model's facts come from its config's ``parameters`` (ModelFacts.from_triton_config): scale, window,
minimum and maximum input, batch. Batches above the model's batch are split into several requests; the
runner is thread-safe (a client connection per thread: tritonclient's HTTP client is not), so that the
tile plan's ``concurrency`` can keep requests in flight for the server's dynamic batching.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import numpy as np

from esc_deploy.runtime.facts import ModelFacts
from esc_deploy.runtime.runner import RunnerBase

Protocol = Literal["http", "grpc"]
DEFAULT_TIMEOUT_S = 600.0


class TritonError(RuntimeError):
    """The server could not be reached, or refused the model or the request (one-line message)."""


class TritonRunner(RunnerBase):
    """``__call__``: [n, 3, h, w] float32 -> [n, 3, h*s, w*s] through one model on a Triton server."""

    def __init__(self, url: str, module: Any, config: dict[str, Any], protocol: Protocol, timeout_s: float) -> None:
        try:
            self.name = str(config["name"])
            (inp,), (out,) = config["input"], config["output"]
        except (KeyError, ValueError, TypeError):
            raise ValueError(
                f"expected a model config with one input and one output, got keys {list(config)}"
            ) from None
        self.input_name, self.output_name = str(inp["name"]), str(out["name"])
        self.facts = ModelFacts.from_triton_config(config)
        self.url, self.module, self.protocol, self.timeout_s = url, module, protocol, timeout_s
        self._local = threading.local()

    @property
    def client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = _client(self.module, self.url, self.protocol, self.timeout_s)
        return client

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = self.facts.max_batch
        if step > 0 and len(batch) > step:
            return np.concatenate([self(batch[i : i + step]) for i in range(0, len(batch), step)])
        n, c, h, w = batch.shape
        out = self.infer(batch)
        expected = (n, c, h * self.facts.scale, w * self.facts.scale)
        if out.shape != expected:
            raise TritonError(f"model {self.name!r} returned shape {out.shape}, expected {expected}")
        return out

    def infer(self, array: np.ndarray) -> np.ndarray:
        """One request with ``array`` as it is (any dtype or shape): the server's answer, or TritonError."""
        dtype = self.module.np_to_triton_dtype(array.dtype)
        try:
            inp = self.module.InferInput(self.input_name, list(array.shape), dtype)
            inp.set_data_from_numpy(array)
            out = self.module.InferRequestedOutput(self.output_name)
            timeout = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
            result = self.client.infer(self.name, inputs=[inp], outputs=[out], **timeout)
            data = result.as_numpy(self.output_name)
            if data is None:
                raise ValueError(f"no output {self.output_name!r} in the response")
            return np.asarray(data, dtype=np.float32)
        except Exception as exc:  # tritonclient raises InferenceServerException, transport and decode errors
            raise TritonError(f"inference on model {self.name!r} failed: {_one_line(exc)}") from None

    def statistics(self) -> dict[str, int]:
        """The model's ``inference_count`` and ``execution_count`` (fewer executions: batched requests)."""
        stats = self.client.get_inference_statistics(self.name)
        if self.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            stats = MessageToDict(stats, preserving_proto_field_name=True)
        (model,) = stats["model_stats"]
        return {key: int(model.get(key, 0)) for key in ("inference_count", "execution_count")}

    def describe(self) -> str:
        return f"Triton model {self.name!r} at {self.url} ({self.protocol})"

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None


def _client(module: Any, url: str, protocol: Protocol, timeout_s: float) -> Any:
    if protocol == "http":  # the HTTP client's own default gives up on a request after 60 s
        return module.InferenceServerClient(url=url, connection_timeout=timeout_s, network_timeout=timeout_s)
    return module.InferenceServerClient(url=url)  # gRPC: per call (client_timeout)


def connect(url: str, model: str, protocol: Protocol, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> TritonRunner:
    """A runner for ``model`` on the server at ``url`` (``HOST:PORT``), checked to be ready; each
    request may take up to ``timeout_s`` (queueing included: CPU inference of large tiles is slow)."""
    if protocol == "http":
        import tritonclient.http as module
    elif protocol == "grpc":
        import tritonclient.grpc as module
    else:
        raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
    try:
        client = _client(module, url, protocol, timeout_s)
        if not client.is_server_live():
            raise TritonError(f"model {model!r}: Triton server at {url} is not live")
        if not client.is_model_ready(model):
            raise TritonError(f"model {model!r} is not ready on {url} (is it in the repository and loaded?)")
        if protocol == "grpc":
            config = client.get_model_config(model, as_json=True)["config"]
        else:
            config = client.get_model_config(model)
        client.close()
    except TritonError:
        raise
    except Exception as exc:  # connection refused, DNS, timeouts: tritonclient wraps them differently
        raise TritonError(f"model {model!r}: cannot talk to Triton at {url} ({protocol}): {_one_line(exc)}") from None
    return TritonRunner(url, module, config, protocol, timeout_s)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
