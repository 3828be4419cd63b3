"""Running what export produced: the TensorRT engine runner, Triton (repository, local server, client), upscale."""
