"""The Triton client: tiled requests, image I/O, its command line."""
