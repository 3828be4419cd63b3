"""The fused kernel's instruction budget, read from its SASS on a machine without a GPU.

Compiles engines/plugin/escWindowAttentionKernel.cu with nvcc for each architecture (``-cubin``), disassembles
it with nvdisasm (what ``cuobjdump -sass`` calls; PyPI wheel ``nvidia-cuda-nvdisasm``), and reports per kernel
body, for the ESC configuration (head size 16, window 32, fp32 bias table; fp16 tensors for the tensor-core
body, fp32 for the SIMT body):

- registers and spill bytes (ptxas -v), shared memory per block (the launch plan at 640x360), resident blocks
  per SM (from registers, shared memory and warps, by the occupancy rules of the architecture);
- issued instructions per 16-query x 64-key tile in the main loop, per warp, in total and by class.

The main loop is the outermost loop of the body that holds its matrix products (HMMA) or, in the SIMT body,
its exponentials (MUFU.EX2); where a body has several (one per staging path), the one with the fewest
instructions, the path of interior windows. Every instruction of the loop counts once (a conditional block
too: the count is that of a tile on which a row maximum grew); a loop nested in it counts as often as it
runs, estimated from its exit test (bound / step; a step by a register is one step per thread of the launch),
and the text report lists each nested loop with that estimate. Predicated-off instructions are issued too.

    python validation/kernel_sass.py [--json] [--arch 90 --arch 80] [--update-doc docs/benchmarks.md]

--update-doc replaces the table between the markers TABLE_BEGIN and TABLE_END of that file; the section
between SECTION_BEGIN and SECTION_END around it (with the recorded history) is what validation/kernel_benchmark.py
keeps when it rewrites the file.

Exits 2 with one line where nvcc or nvdisasm is missing.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from esc.kernel_files import KERNEL_SOURCES, find_nvcc, kernel_source_dir
from esc_deploy.common.command import ArgumentParser, fail

ARCHS = ("90", "80")
HEAD_SIZE = 16  # ESC: dim 64, 4 heads
WINDOW = 32
REFERENCE_MAP = (360, 640)  # (height, width) of the qkv map at a 1280x720 output, x2
KEYS_PER_TILE = 64
TILE_QUERIES = 16
# The tensor-core body's slower staging path (the faster one copies 16 bytes at a time by cp.async).
ELEMENT_PATH = "element loads: windows reflected at the right edge, maps whose width is not a multiple of 8"
CLASSES = ("mma", "mufu", "memory", "integer", "other")
SECTION_BEGIN = "<!-- kernel_sass: begin -->"
SECTION_END = "<!-- kernel_sass: end -->"
TABLE_BEGIN = "<!-- kernel_sass: table -->"
TABLE_END = "<!-- kernel_sass: table end -->"


@dataclass(frozen=True)
class Architecture:
    """The occupancy limits of one SM (CUDA C Programming Guide, compute capabilities table)."""

    registers: int = 65536
    max_warps: int = 64
    max_blocks: int = 32
    shared_bytes: int = 233472  # 228 KiB (sm_90); sm_80 has 164 KiB
    reserved_shared_per_block: int = 1024
    register_granularity: int = 256  # registers are allocated per warp in units of 256


ARCHITECTURES = {
    "80": Architecture(shared_bytes=167936),
    "86": Architecture(max_warps=48, max_blocks=16, shared_bytes=102400),
    "89": Architecture(max_warps=48, max_blocks=24, shared_bytes=102400),
    "90": Architecture(),
}


@dataclass(frozen=True)
class Instruction:
    address: int
    opcode: str  # e.g. "HMMA.16816.F32", without the predicate
    operands: str
    predicate: str  # "@!P1" or ""
    target: int | None = None  # branch target address


@dataclass
class Loop:
    start: int  # address of the first instruction (the branch target)
    end: int  # address of the closing branch
    trips: float = 1.0
    trips_note: str = ""

    def contains(self, address: int) -> bool:
        return self.start <= address <= self.end

    def inside(self, other: Loop) -> bool:
        within = other.start <= self.start and self.end <= other.end
        return within and (self.start, self.end) != (other.start, other.end)


@dataclass
class BodyReport:
    function: str
    registers: int
    spills: int
    shared_bytes: int
    blocks_per_sm: int
    instructions_per_tile: dict[str, float]
    opcodes: dict[str, float] = field(default_factory=dict)
    nested_loops: list[str] = field(default_factory=list)
    #: per-tile totals of every main loop (one per staging path), the counted (shortest) first
    main_loop_totals: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "registers": self.registers,
            "spills": self.spills,
            "shared_bytes": self.shared_bytes,
            "blocks_per_sm": self.blocks_per_sm,
            "instructions_per_tile": {key: round(value, 1) for key, value in self.instructions_per_tile.items()},
        }


class ToolMissing(RuntimeError):
    pass


def nvcc() -> str:
    """The project's one nvcc search (esc.kernel_files.find_nvcc); ToolMissing without one."""
    found = find_nvcc()
    if found is None:
        raise ToolMissing("nvcc not found on PATH (nor in CUDA_HOME, CUDA_PATH or /usr/local/cuda)")
    return found


def find_tool(name: str) -> str:
    """`name` on PATH, next to nvcc, or in its NVIDIA wheel (nvidia-cuda-<name>), wherever that is installed:
    a virtual environment with system site packages finds the system's."""
    from importlib import metadata

    found = shutil.which(name)
    if found:
        return found
    nvcc = find_nvcc()
    candidates = [Path(nvcc).parent / name] if nvcc else []
    try:
        wheel = metadata.distribution(f"nvidia-cuda-{name}")
        candidates += [Path(str(wheel.locate_file(f))) for f in wheel.files or () if f.name == name]
    except metadata.PackageNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise ToolMissing(f"{name} not found on PATH, next to nvcc, or in an nvidia wheel (pip install nvidia-cuda-{name})")


def classify(opcode: str) -> str:
    base = opcode.split(".")[0]
    if base in {"HMMA", "IMMA", "HGMMA", "DMMA", "BMMA"}:
        return "mma"
    if base == "MUFU":
        return "mufu"
    if base in {"LDS", "STS", "LDSM", "LDG", "STG", "LDGSTS", "LD", "ST", "LDL", "STL", "ATOMS", "ATOM", "RED"}:
        return "memory"
    integer = {
        "IMAD", "IADD3", "IADD", "VIADD", "LEA", "SHF", "LOP3", "ISETP", "SEL", "IABS", "IMNMX", "PRMT", "MOV",
        "I2F", "F2I", "POPC", "FLO", "BMSK", "SGXT", "IDP", "I2I", "VIMNMX", "LOP", "SHL", "SHR", "CS2R", "S2R",
        "S2UR", "R2UR", "LDC", "ULDC", "P2R", "R2P", "PLOP3",
    }  # fmt: skip
    if base in integer or (base.startswith("U") and base[1:] in integer | {"MOV", "IADD3", "IMAD", "LEA"}):
        return "integer"
    return "other"


def compile_cubin(arch: str, workdir: Path, defines: Sequence[str] = ()) -> tuple[Path, str]:
    """The kernel as an sm_`arch` cubin, and the ptxas -v report."""
    cubin = workdir / f"kernel_sm{arch}{'_'.join(('', *defines))}.cubin"
    command = [
        nvcc(), "-std=c++17", "-O3", "-cubin", f"-arch=sm_{arch}", "-Xptxas", "-v",
        *(f"-D{define}" for define in defines), str(kernel_source_dir() / KERNEL_SOURCES[0]), "-o", str(cubin),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    return cubin, result.stdout + result.stderr


def parse_ptxas(report: str, arch: str | None = None) -> dict[str, tuple[int, int]]:
    """Function -> (registers, spill bytes stored + loaded) from ptxas -v; where the report covers several
    architectures (one nvcc call for all), those of sm_`arch`."""
    resources: dict[str, tuple[int, int]] = {}
    current = None
    spills = 0
    for line in report.splitlines():
        match = re.search(r"Compiling entry function '(\S+)'(?: for 'sm_(\w+)')?", line)
        if match:
            current = match.group(1) if arch is None or match.group(2) == arch else None
            continue
        match = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if match and current:
            spills = int(match.group(1)) + int(match.group(2))
            continue
        match = re.search(r"Used (\d+) registers", line)
        if match and current:
            resources[current] = (int(match.group(1)), spills)
            current = None
    return resources


_INSTRUCTION = re.compile(r"/\*([0-9a-f]+)\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")


def disassemble(cubin: Path) -> dict[str, list[Instruction]]:
    """Function -> its instructions, from nvdisasm -c (labels resolved to addresses)."""
    result = subprocess.run([find_tool("nvdisasm"), "-c", str(cubin)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"nvdisasm failed:\n{result.stderr[-2000:]}")
    functions: dict[str, list[tuple[int, str, str, str, str | None]]] = {}
    labels: dict[str, dict[str, int]] = {}
    current: str | None = None
    pending: list[str] = []
    for line in result.stdout.splitlines():
        match = re.match(r"\.text\.(\S+):", line)
        if match:
            current = match.group(1)
            functions[current] = []
            labels[current] = {}
            pending = []
            continue
        if current is None:
            continue
        match = re.match(r"(\.L_x_\d+):", line)
        if match:
            pending.append(match.group(1))
            continue
        match = _INSTRUCTION.search(line)
        if match:
            address = int(match.group(1), 16)
            for label in pending:
                labels[current][label] = address
            pending = []
            target = re.search(r"`\((\.L_x_\d+)\)", match.group(4))
            functions[current].append(
                (address, match.group(3), match.group(4), (match.group(2) or "").strip(), target and target.group(1))
            )
    return {
        name: [
            Instruction(a, op, operands, pred, labels[name].get(t) if t else None)
            for a, op, operands, pred, t in instructions
        ]
        for name, instructions in functions.items()
    }


def find_loops(instructions: Sequence[Instruction]) -> list[Loop]:
    """One loop per backward branch: from its target to the branch. Branches from the out-of-line code that
    ptxas places after the body for divergent warps (the targets of BRA.DIV) back into the body are no loops."""
    divergent = [i.target for i in instructions if i.opcode.startswith("BRA.DIV") and i.target is not None]
    out_of_line = min(divergent, default=None)
    return [
        Loop(i.target, i.address)
        for i in instructions
        if i.opcode.startswith("BRA")
        and i.target is not None
        and i.target <= i.address
        and (out_of_line is None or i.address < out_of_line)
    ]


def estimate_trips(loop: Loop, instructions: Sequence[Instruction], threads: int) -> None:
    """Trip count of a nested loop from its exit test: ISETP on the induction register against an immediate
    bound (else one key tile), the step an immediate or, added from a register, the thread count."""
    body = [i for i in instructions if loop.contains(i.address)]
    branch = body[-1]
    predicate = re.sub(r"[@!]", "", branch.predicate)
    compare = next(
        (i for i in reversed(body[:-1]) if i.opcode.startswith("ISETP") and i.operands.startswith(predicate + ",")),
        None,
    )
    if compare is None:
        loop.trips_note = "no exit test found: counted once"
        return
    operands = [o.strip() for o in compare.operands.split(",")]
    induction = operands[2]
    bound = int(operands[3], 16) if operands[3].startswith("0x") else None
    step: int | None = None
    for i in body:
        if i.operands.split(",")[0].strip() != induction:
            continue
        if i.opcode.split(".")[0] in {"IADD3", "VIADD", "IMAD"}:
            sources = [o.strip() for o in i.operands.split(",")[1:]]
            immediates = [int(s, 16) for s in sources if s.startswith("0x") and s != "0x1"]
            step = immediates[0] if immediates else threads
    if step is None or step <= 0:
        loop.trips_note = "no induction step found: counted once"
        return
    limit = bound if bound is not None else KEYS_PER_TILE
    loop.trips = limit / step
    loop.trips_note = f"{limit} / {step}{' (threads)' if step == threads else ''}" + (
        "" if bound is not None else " (bound a register: one key tile)"
    )


def main_loop_counts(
    instructions: Sequence[Instruction], key_opcode: str, threads: int, key_loop_trips: float
) -> tuple[dict[str, float], list[Loop], list[float]]:
    """Weighted opcode counts of one iteration of the main loop, its nested loops, and every candidate's total
    (the counted, shortest one first).
    A nested loop that holds `key_opcode` (the SIMT body's chunk loop) runs `key_loop_trips` times."""
    loops = find_loops(instructions)
    holding = [
        loop
        for loop in loops
        if any(loop.contains(i.address) and i.opcode.startswith(key_opcode) for i in instructions)
    ]
    candidates = [loop for loop in holding if not any(loop.inside(other) for other in holding)]
    if not candidates:
        raise RuntimeError(f"no loop holds a {key_opcode} instruction")
    best: tuple[dict[str, float], list[Loop]] | None = None
    totals = []
    for main in candidates:
        nested = [loop for loop in loops if loop.inside(main)]
        for loop in nested:
            if any(loop.contains(i.address) and i.opcode.startswith(key_opcode) for i in instructions):
                loop.trips, loop.trips_note = key_loop_trips, "the key chunks of one tile"
            else:
                estimate_trips(loop, instructions, threads)
        counts: dict[str, float] = {}
        for i in instructions:
            if main.contains(i.address):
                weight = math.prod(loop.trips for loop in nested if loop.contains(i.address))
                counts[i.opcode] = counts.get(i.opcode, 0.0) + weight
        totals.append(sum(counts.values()))
        if best is None or sum(counts.values()) < sum(best[0].values()):
            best = (counts, nested)
    assert best is not None
    return best[0], best[1], sorted(totals)


def blocks_per_sm(arch: str, registers: int, threads: int, shared_bytes: int) -> int:
    limits = ARCHITECTURES.get(arch, Architecture())
    warps = math.ceil(threads / 32)
    per_warp = math.ceil(registers * 32 / limits.register_granularity) * limits.register_granularity
    by_registers = (limits.registers // per_warp) // warps if per_warp else limits.max_blocks
    by_shared = limits.shared_bytes // (shared_bytes + limits.reserved_shared_per_block)
    by_warps = limits.max_warps // warps
    return min(by_registers, by_shared, by_warps, limits.max_blocks)


_PLAN_PROBE = r"""
#include "escWindowAttentionPlan.h"
#include <cstdio>
template <int kHead> void show(bool tensorCores) {
    esc::LaunchPlan plan{};
    esc::planWindowAttention<kHead>(1, 4, %(height)d, %(width)d, %(window)d, tensorCores, plan);
    std::printf("%%d %%d %%d %%zu %%d %%d\n", kHead, static_cast<int>(plan.body), plan.threads, plan.sharedBytes,
        esc::SimtTiling<kHead>::kQueriesPerThread, esc::SimtTiling<kHead>::kKeyChunk);
}
int main() { show<16>(false); show<16>(true); show<32>(false); show<32>(true); return 0; }
"""


@functools.lru_cache(maxsize=1)
def reference_plans() -> dict[tuple[int, str], tuple[int, int, int, int]]:
    """(head size, body) -> (threads, shared bytes, SIMT queries per thread, SIMT keys per chunk) of the launch
    plan at 640x360."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.cpp"
        height, width = REFERENCE_MAP
        source.write_text(_PLAN_PROBE % {"height": height, "width": width, "window": WINDOW})
        binary = Path(tmp) / "probe"
        command = [nvcc(), "-std=c++17", f"-I{kernel_source_dir()}", str(source), "-o", str(binary)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    plans = {}
    for line in output.split("\n"):
        if line.strip():
            head, body, threads, shared, per_thread, chunk = (int(x) for x in line.split())
            plans[(head, "mma" if body == 1 else "simt")] = (threads, shared, per_thread, chunk)
    return plans


def select_function(names: Sequence[str], body: str) -> str:
    """The mangled name of the ESC instantiation: fp32 table, head size 16, window 32 where templated on it."""
    if body == "mma":
        stem = f"mmaWindowAttentionKernelIfLi{HEAD_SIZE}E"
        matches = [n for n in names if stem in n]
        windowed = [n for n in matches if f"{stem}Li{WINDOW}E" in n]
        matches = windowed or matches
    else:
        matches = [n for n in names if f"simtWindowAttentionKernelIffLi{HEAD_SIZE}E" in n]
    if len(matches) != 1:
        raise RuntimeError(f"expected one {body} kernel for head size {HEAD_SIZE}, found {matches}")
    return matches[0]


def analyse(arch: str, workdir: Path, defines: Sequence[str] = ()) -> dict[str, BodyReport]:
    cubin, ptxas = compile_cubin(arch, workdir, defines)
    return analyse_cubin(arch, cubin, ptxas)


def analyse_cubin(arch: str, cubin: Path, ptxas: str) -> dict[str, BodyReport]:
    """The report of a compiled sm_`arch` cubin and the ptxas -v output of its compilation."""
    resources = parse_ptxas(ptxas, arch)
    functions = disassemble(cubin)
    plans = reference_plans()
    reports = {}
    for body, key_opcode in (("mma", "HMMA"), ("simt", "MUFU.EX2")):
        name = select_function(list(functions), body)
        threads, shared, per_thread, chunk = plans[(HEAD_SIZE, body)]
        counts, nested, totals = main_loop_counts(functions[name], key_opcode, threads, KEYS_PER_TILE / chunk)
        # One iteration of the main loop: 16 queries x 64 keys per warp (tensor cores); 32 * per_thread queries
        # x 64 keys per warp (SIMT).
        tiles = 1 if body == "mma" else 32 * per_thread / TILE_QUERIES
        by_class = dict.fromkeys(CLASSES, 0.0)
        for opcode, count in counts.items():
            by_class[classify(opcode)] += count / tiles
        registers, spills = resources[name]
        reports[body] = BodyReport(
            function=name,
            registers=registers,
            spills=spills,
            shared_bytes=shared,
            blocks_per_sm=blocks_per_sm(arch, registers, threads, shared),
            instructions_per_tile={"total": sum(by_class.values()), **by_class},
            opcodes={op: count / tiles for op, count in sorted(counts.items(), key=lambda item: -item[1])},
            nested_loops=[
                f"{hex(loop.start)}-{hex(loop.end)}: {loop.trips:g} trips ({loop.trips_note})" for loop in nested
            ],
            main_loop_totals=[total / tiles for total in totals],
        )
    return reports


def run_report(archs: Sequence[str] = ARCHS, defines: Sequence[str] = ()) -> dict[str, dict[str, BodyReport]]:
    """Per architecture ("sm_90"), per body ("mma", "simt"): the report."""
    nvcc()
    find_tool("nvdisasm")
    with tempfile.TemporaryDirectory() as tmp:
        return {f"sm_{arch}": analyse(arch, Path(tmp), defines) for arch in archs}


def render(report: dict[str, dict[str, BodyReport]]) -> str:
    lines = [
        f"Head size {HEAD_SIZE}, window {WINDOW}, fp32 bias table; shared memory and blocks/SM at a "
        f"{REFERENCE_MAP[1]}x{REFERENCE_MAP[0]} map. Instructions: issued per warp per {TILE_QUERIES}x"
        f"{KEYS_PER_TILE} tile in the main loop.",
        "",
        "| arch | body | registers | spills (B) | shared (B) | blocks/SM | instr/tile | " + " | ".join(CLASSES) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(CLASSES),
    ]
    for arch, bodies in report.items():
        for body, r in bodies.items():
            per = r.instructions_per_tile
            lines.append(
                f"| {arch} | {body} | {r.registers} | {r.spills} | {r.shared_bytes} | {r.blocks_per_sm} | "
                f"{per['total']:.0f} | " + " | ".join(f"{per[c]:.0f}" for c in CLASSES) + " |"
            )
    lines.append("")
    for arch, bodies in report.items():
        for body, r in bodies.items():
            top = ", ".join(f"{op} {count:.1f}" for op, count in list(r.opcodes.items())[:14])
            lines.append(f"- {arch} {body}: {top}")
            if r.nested_loops:
                lines.append(f"  nested loops: {'; '.join(r.nested_loops)}")
            if len(r.main_loop_totals) > 1:
                others = ", ".join(f"{total:.0f}" for total in r.main_loop_totals[1:])
                note = f" ({ELEMENT_PATH})" if body == "mma" else ""
                count = len(r.main_loop_totals)
                lines.append(f"  {count} main loops (staging paths); counted: the shortest; the other: {others}{note}")
    return "\n".join(lines)


def doc_section(text: str, begin_marker: str = SECTION_BEGIN, end_marker: str = SECTION_END) -> str:
    """The marked section of a document (markers included), or ''."""
    begin, end = text.find(begin_marker), text.find(end_marker)
    if begin < 0 or end < begin:
        return ""
    return text[begin : end + len(end_marker)]


def replace_doc_table(text: str, content: str) -> str:
    """`text` with the content between TABLE_BEGIN and TABLE_END replaced (appended where there is none)."""
    table = f"{TABLE_BEGIN}\n{content.rstrip()}\n{TABLE_END}"
    old = doc_section(text, TABLE_BEGIN, TABLE_END)
    if old:
        return text.replace(old, table)
    return f"{text.rstrip()}\n\n{SECTION_BEGIN}\n{table}\n{SECTION_END}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--arch", action="append", choices=sorted(ARCHITECTURES), help="default: 90 and 80")
    parser.add_argument("-D", dest="defines", action="append", default=[], help="macro for nvcc (tests)")
    parser.add_argument("--update-doc", type=Path, help="write the table into this file's marked section")
    args = parser.parse_args(argv)
    try:
        report = run_report(tuple(args.arch or ARCHS), tuple(args.defines))
    except ToolMissing as error:
        fail(f"kernel_sass: {error}")
    if args.json:
        print(json.dumps({arch: {body: r.as_json() for body, r in bodies.items()} for arch, bodies in report.items()}))
        return 0
    table = render(report)
    print(table)
    if args.update_doc:
        from esc_deploy.common.files import atomic_write_text

        old = args.update_doc.read_text() if args.update_doc.exists() else ""
        generated = "Generated by `python validation/kernel_sass.py --update-doc docs/benchmarks.md`.\n\n" + table
        atomic_write_text(args.update_doc, replace_doc_table(old, generated))
        print(f"wrote {args.update_doc}")
    return 0
