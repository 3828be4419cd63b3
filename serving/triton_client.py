"""Upscale an image through a running Triton server, tiling images larger than the model accepts.

    python serving/triton_client.py --url localhost:8000 --model esc-light_x4_python in.png out.png
    python serving/triton_client.py --protocol grpc --url localhost:8001 --model esc-light_x4 a.png b.png

Scale, tile alignment (the attention window) and the model's minimum and maximum input come from the
model's config; images and tiles below the minimum are reflect-padded and the result cropped. Tiles go
out as up to --concurrency requests at once, for the server's dynamic batching to merge. The library is
serving/client/triton_io.py (tiling: esc/tiling.py); no torch is imported. Errors: one line on stderr
naming the model, exit 2.
"""

import sys

from esc_deploy.serving.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
