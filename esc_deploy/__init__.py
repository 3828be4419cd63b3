"""``esc-deploy``: one command line over every stage (export, build, parity, bench, triton-repo, upscale)."""
