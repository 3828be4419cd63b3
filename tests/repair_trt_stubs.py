"""Make the installed tensorrt-stubs usable by mypy: `python tests/repair_trt_stubs.py [build/typings]`.

tensorrt-stubs 10.13 installs `tensorrt/__init__.pyi` without a py.typed marker, so mypy skips it
and every TensorRT call silently becomes Any; its `tensorrt.pyi` also has syntax errors (a parameter
named `in`, a non-default parameter after defaults) that stop mypy outright. This copies the stub
files into a folder for `mypy_path`, repairs those lines, and checks that every file parses.
Nothing here is imported at run time.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

DEFAULT_DEST = Path("build/typings")
DISTRIBUTION = "tensorrt-stubs"
PACKAGES = ("tensorrt", "tensorrt_bindings")

# (pattern, replacement): each repairs one kind of syntax error found in tensorrt-stubs 10.13.0.35.1.
REPAIRS = (
    (re.compile(r"\bin: "), "in_: "),  # `def get_workspace_size(self, in: list[...]`: keyword as a name
    (re.compile(r"(power: Weights = None, channel_axis: int)\)"), r"\1 = ...)"),  # default after defaults
)


def stub_files() -> list[tuple[Path, Path]]:
    """(installed file, path relative to site-packages) for each .pyi of the distribution."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{DISTRIBUTION} is not installed: pip install --no-deps {DISTRIBUTION}") from None
    files = [Path(str(f)) for f in dist.files or [] if str(f).endswith(".pyi") and Path(str(f)).parts[0] in PACKAGES]
    return [(Path(str(dist.locate_file(f))), f) for f in files]


def repair(text: str) -> str:
    for pattern, replacement in REPAIRS:
        text = pattern.sub(replacement, text)
    return text


def write_stubs(dest: Path) -> list[Path]:
    written: list[Path] = []
    for src, rel in stub_files():
        text = repair(src.read_text(encoding="utf-8"))
        try:
            ast.parse(text, filename=str(rel))
        except SyntaxError as exc:
            raise SystemExit(f"{rel}:{exc.lineno}: still not valid Python after repair: {exc.msg}") from None
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    if not written:
        raise SystemExit(f"{DISTRIBUTION} has no .pyi files for {', '.join(PACKAGES)}")
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    dest = Path(args[0]) if args else DEFAULT_DEST
    written = write_stubs(dest)
    print(f"wrote {len(written)} stub files under {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
