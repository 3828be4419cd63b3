"""Which file each input of ``esc-deploy upscale`` becomes, checked before any image is decoded or written.

Rules (each refusal names the paths involved, and nothing is written):

* an image input writes one file: OUT itself when it has an image suffix, ``OUT/<name>`` when OUT is a folder;
* a folder input writes ``OUT/<stem><suffix>`` for each image in it (not in subfolders), where the suffix
  is ``--suffix``, else the input's own when it is a format written here, else ``.png``; OUT must be a
  folder, or not exist and have no image suffix (``out/x.png`` is refused, not made a folder);
* no output may be an input (of this run), and no two inputs may map to one output;
* no output path may be a folder, and the output format must hold the image (alpha, 16 bits): images
  are probed lazily (their headers only) for this;
* ``--skip-existing`` drops the inputs whose output exists.

Inputs whose header cannot be read are not refusals: each is reported in one line and the others run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from esc_deploy.runtime.images import WRITE_FORMATS, ImageHeader, cannot_hold, probe, readable_suffixes


@dataclass(frozen=True)
class Job:
    source: ImageHeader
    target: Path


@dataclass(frozen=True)
class JobList:
    jobs: list[Job]
    unreadable: list[str]  # one line each
    skipped: list[Path]  # outputs that exist (--skip-existing)


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def _output_suffix(source: Path, suffix: str | None) -> str:
    if suffix is not None:
        return suffix if suffix.startswith(".") else f".{suffix}"
    return source.suffix if source.suffix.lower() in WRITE_FORMATS else ".png"


def pairs(source: Path, target: Path, suffix: str | None) -> list[tuple[Path, Path]]:
    """(input, output) pairs by the rules above, before any check of the images themselves."""
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise ValueError(f"{source} is a folder but the output {target} is a file: give an output folder")
        if not target.exists() and target.suffix.lower() in readable_suffixes():
            raise ValueError(f"{source} is a folder but the output {target} names an image: give an output folder")
        suffixes = readable_suffixes()
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise ValueError(f"no images in {source}")
        return [(p, target / f"{p.stem}{_output_suffix(p, suffix)}") for p in files]
    if not source.is_file():
        raise ValueError(f"{source}: no such image or folder")
    if target.is_dir():
        return [(source, target / f"{source.stem}{_output_suffix(source, suffix)}")]
    if suffix is not None:
        raise ValueError(f"--suffix is for folder outputs; the output {target} has its own suffix")
    return [(source, target)]


def plan_jobs(source: Path, target: Path, *, suffix: str | None = None, skip_existing: bool = False) -> JobList:
    """Every (input, output) of a run, checked by the module's rules; ValueError (one line) for a refusal."""
    mapped = pairs(source, target, suffix)
    inputs = {_key(src): src for src, _ in mapped}
    seen: dict[str, Path] = {}
    for src, dst in mapped:
        if _key(dst) in inputs or (dst.exists() and any(_same(dst, s) for s in inputs.values())):
            raise ValueError(f"the output of {src} would be {dst}, an input: choose another output")
        # casefolded: on a case-insensitive disk (macOS, exFAT, CIFS) a.png and A.png are one file
        if _key(dst).casefold() in seen:
            raise ValueError(
                f"{seen[_key(dst).casefold()]} and {src} would both be written to {dst} (names that differ only in "
                "case are one file on some disks): rename one or use --suffix"
            )
        seen[_key(dst).casefold()] = src
        if dst.is_dir():
            raise ValueError(f"the output of {src} would be {dst}, which is a folder")
        reason = cannot_hold("RGB", dst.suffix)
        if reason is not None and reason.startswith("unknown"):
            raise ValueError(f"output {dst}: {reason}")
    jobs, unreadable, skipped = [], [], []
    for src, dst in mapped:
        if skip_existing and dst.exists():
            skipped.append(dst)
            continue
        try:
            header = probe(src)
        except ValueError as exc:
            unreadable.append(str(exc))
            continue
        reason = cannot_hold(header.mode, dst.suffix)
        if reason is not None:
            raise ValueError(f"{src} -> {dst}: {reason}")
        jobs.append(Job(header, dst))
    return JobList(jobs, unreadable, skipped)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
