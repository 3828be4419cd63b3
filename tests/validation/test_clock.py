"""The exp floor's SM clock is read while the timed calls run, not before them (idle, a GPU here read 345 MHz
against 1980 under load). nvidia-smi is a stand-in script on PATH that reports an idle clock on its first query
and the boost clock after it, as a real one does around a burst of work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from esc_deploy.validation.kernel.benchmark import CASES, SfuAssumption
from esc_deploy.validation.machine import SmClockSampler, nvidia_smi_query, sm_clock_mhz
from tests.validation.nvidia_smi import stand_in_nvidia_smi


@pytest.fixture
def ramping_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    counter = tmp_path / "queries"
    stand_in_nvidia_smi(
        tmp_path / "bin",
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}\n"
        'case "$*" in *clocks.sm*) if [ "$n" = 0 ]; then echo 345; else echo 1980; fi ;; *) echo 580.1 ;; esac',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    return counter


def test_the_floor_uses_the_clock_read_during_the_work(ramping_gpu: Path) -> None:
    assert sm_clock_mhz() == 345  # the idle reading the floor must not use
    with SmClockSampler(period=0.01) as clock:
        time.sleep(0.3)
    assert len(clock.samples) >= 3 and clock.median == 1980
    sfu = SfuAssumption().at_clock(clock)
    assert sfu.clock_ghz == pytest.approx(1.98) and "1980 MHz" in sfu.describe()
    # 9.44e8 exponentials (x2) on 132 SMs at 16 per clock: 0.226 ms at 1.98 GHz (0.244 at the assumed 1.83).
    assert sfu.floor_ms(CASES[0].exponentials, 132) == pytest.approx(0.2257, abs=1e-4)


def test_without_a_reading_the_floor_keeps_its_stated_assumption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in_nvidia_smi(tmp_path / "bin", "exit 9")  # a driver without a GPU
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert nvidia_smi_query("clocks.sm") is None
    with SmClockSampler(period=0.01) as clock:
        time.sleep(0.05)
    assert clock.samples == [] and clock.median is None
    assert SfuAssumption().at_clock(clock) == SfuAssumption()
    assert "assumed" in SfuAssumption().describe() and "not read" in clock.describe()
