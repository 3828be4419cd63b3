"""The SASS instruction counter (validation/kernel_sass.py): its JSON schema, and that it sees one instruction.

Reads the kernel's sm_90 cubin as built (tests/conftest.py's compile_kernel, the compilation test_kernel_build
checks) and compiles it once more for sm_90 with ESC_SASS_PROBE, which adds one MUFU.EX2 to each tile of the
tensor-core body's main loop. Needs nvcc and nvdisasm (the dev extra's nvidia-cuda-nvdisasm).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_deploy.validation.kernel import sass as kernel_sass
from tests.conftest import KernelBuild

pytestmark = pytest.mark.nvcc


@pytest.fixture(scope="module")
def reports(kernel_build: KernelBuild, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    try:
        kernel_sass.find_tool("nvdisasm")
    except kernel_sass.ToolMissing as error:
        pytest.fail(f"{error}: it is in the dev extra")
    plain = kernel_sass.analyse_cubin("90", kernel_build.cubin("90"), kernel_build.ptxas)
    probed = kernel_sass.analyse("90", Path(tmp_path_factory.mktemp("sass")), ("ESC_SASS_PROBE",))
    return plain, probed


def test_counter_sees_one_extra_instruction(reports: tuple[dict, dict]) -> None:
    plain, probed = (r["mma"].instructions_per_tile for r in reports)
    assert probed["mufu"] == plain["mufu"] + 1, (plain, probed)
    assert plain["total"] + 1 <= probed["total"] <= plain["total"] + 3, (plain, probed)
    assert reports[1]["simt"].instructions_per_tile == reports[0]["simt"].instructions_per_tile


def test_report_counts_what_the_tile_must_issue(reports: tuple[dict, dict]) -> None:
    """Lower bounds any correct tile has: 16 mma (d = 16), one exponential per score (16 x 64 / 32 lanes)."""
    mma = reports[0]["mma"]
    assert mma.instructions_per_tile["mma"] >= 16
    assert mma.instructions_per_tile["mufu"] >= 32
    assert mma.registers > 0 and mma.blocks_per_sm >= 1 and mma.shared_bytes > 0
    total = sum(mma.instructions_per_tile[c] for c in kernel_sass.CLASSES)
    assert mma.instructions_per_tile["total"] == pytest.approx(total)


def test_tensor_core_body_meets_the_budget_of_issue_16(reports: tuple[dict, dict]) -> None:
    """The target the kernel was rewritten to (from 709 instructions, 2 blocks per SM): at most 300 issued
    instructions per 16x64 tile on sm_90, no spills, at least 3 resident blocks per SM at 640x360."""
    mma = reports[0]["mma"]
    assert mma.instructions_per_tile["total"] <= 300, mma.instructions_per_tile
    assert mma.spills == 0
    assert mma.blocks_per_sm >= 3, (mma.registers, mma.shared_bytes)


def test_json_schema(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], reports) -> None:
    monkeypatch.setattr(kernel_sass, "run_report", lambda archs, defines: {"sm_90": reports[0], "sm_80": reports[0]})
    assert kernel_sass.main(["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["sm_90", "sm_80"]
    for bodies in report.values():
        assert list(bodies) == ["mma", "simt"]
        for body in bodies.values():
            assert list(body) == ["registers", "spills", "shared_bytes", "blocks_per_sm", "instructions_per_tile"]
            assert list(body["instructions_per_tile"]) == ["total", *kernel_sass.CLASSES]


def test_occupancy_rules() -> None:
    assert kernel_sass.blocks_per_sm("90", registers=96, threads=256, shared_bytes=14704) == 2
    assert kernel_sass.blocks_per_sm("90", registers=80, threads=256, shared_bytes=14704) == 3
    assert kernel_sass.blocks_per_sm("90", registers=32, threads=256, shared_bytes=100_000) == 2


def test_ptxas_report_is_read_per_architecture(kernel_build: KernelBuild) -> None:
    """One nvcc call reports every architecture's kernels under the same names: each is read on its own."""
    per_arch = {arch: kernel_sass.parse_ptxas(kernel_build.ptxas, arch) for arch in ("80", "90")}
    assert len(per_arch["80"]) == len(per_arch["90"]) == 34
    assert per_arch["80"] != per_arch["90"]  # sm_80 and sm_90 allocate registers differently
