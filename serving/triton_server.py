"""A local Triton Inference Server from the ``nvidia-pytriton`` wheel, for tests, the benchmark and CPU serving.

    python serving/triton_server.py --repository triton_repo            # serves until Ctrl-C
    pid=$(python serving/triton_server.py --repository triton_repo --detach) ... kill $pid

PyTriton 0.7.0 bundles ``tritonserver`` 2.51 with the Python backend only. The wheel pins numpy<2, so
it is installed without its dependencies into a folder of its own (nothing of it is imported)::

    pip install --no-deps --target build/pytriton nvidia-pytriton==0.7.0

:func:`find_pytriton` looks in ``$ESC_PYTRITON_DIR``, then ``build/pytriton``, then the interpreter's
own packages. :class:`LocalTriton` lays out the backend folder Triton expects (``python/`` with the
backend library, ``triton_python_backend_utils.py`` and the stub built for this interpreter), starts
the server on 127.0.0.1 on free ports with ``--model-control-mode=explicit``, waits for
``/v2/health/ready``, and stops it by its process id: SIGTERM to its process group (the server and its
Python stubs), SIGKILL after a grace period, then removes any shared-memory region left under this
server's unique prefix. The stub runs this interpreter's packages (numpy, onnxruntime) because the
interpreter's ``bin`` folder is first on the server's PATH.
"""

import sys

from esc_deploy.serving.local_server import main

if __name__ == "__main__":
    sys.exit(main())
