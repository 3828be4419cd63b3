"""ESC from PyTorch checkpoints to TensorRT and Triton.

The stages are subpackages: ``esc_deploy.common``, ``esc_deploy.export``, ``esc_deploy.serving`` and
``esc_deploy.validation`` (the folders ``export/``, ``serving/`` and ``validation/`` of the checkout, linked
here), and the ``esc-deploy`` command line (``esc_deploy.cli``) over all of them. The model is ``esc``.
"""
