"""spandrel's ModelLoader loads the official checkpoints of every ESC family once esc.spandrel.register() ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import esc
import esc.spandrel as esc_spandrel
from esc.loading import UnsupportedVariantError
from tests.conftest import GOLDEN_DIR, load_golden
from tests.esc.test_golden import TOLERANCE as GOLDEN_TOLERANCE

spandrel = pytest.importorskip("spandrel")

LOADED = ("tiny_x2", "light_x4", "fp_x4", "real_x4")  # the esc, esc-light, esc-fp and esc-real families


@pytest.fixture(scope="module")
def registry() -> spandrel.ArchRegistry:
    """spandrel's own registry with ESC added (a copy: the test leaves the process-wide one as it was)."""
    registry = spandrel.MAIN_REGISTRY.copy()
    esc_spandrel.register(registry)
    return registry


@pytest.fixture(scope="module")
def descriptors(registry: spandrel.ArchRegistry) -> dict[str, spandrel.ImageModelDescriptor]:
    loader = spandrel.ModelLoader(registry=registry)
    return {name: loader.load_from_file(GOLDEN_DIR / f"{name}.pth") for name in LOADED}


def test_unregistered_spandrel_does_not_know_esc() -> None:
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.ModelLoader(registry=spandrel.MAIN_REGISTRY.copy()).load_from_file(GOLDEN_DIR / "tiny_x2.pth")


@pytest.mark.parametrize("name", LOADED)
def test_official_outputs_reproduced(descriptors: dict, name: str) -> None:
    golden = load_golden(name)
    descriptor = descriptors[name]
    assert descriptor.architecture.id == "ESC" and descriptor.purpose == "SR"
    assert descriptor.scale == golden["kwargs"]["upscaling_factor"]
    reference = esc.load_model(GOLDEN_DIR / f"{name}.pth", attention="naive")
    descriptor.model.set_attention("naive")  # the official attention; the default path is checked below
    try:
        with torch.no_grad():
            out, expected = descriptor.model(golden["input"]), reference(golden["input"])
    finally:
        descriptor.model.set_attention("auto")
    # What spandrel adds is loading: its model is esc's, bit for bit. Against the official outputs the
    # project's golden tolerance holds (float32 summation order: light_x4 lands at 1.2e-5 on one thread).
    assert torch.equal(out, expected)
    assert (out - golden["output"]).abs().max().item() <= GOLDEN_TOLERANCE


def test_spandrel_call_pads_clamps_and_crops(descriptors: dict) -> None:
    """spandrel's __call__ (its own padding to the size requirements, clamping) on an input below the minimum."""
    descriptor = descriptors["tiny_x2"]
    golden = load_golden("tiny_x2")
    out = descriptor(golden["input"])
    assert (out - golden["output"].clamp(0, 1)).abs().max().item() <= 1e-4
    small = golden["input"][..., :3, :4]  # below the minimum side (5): spandrel pads, the crop restores 6x8
    assert descriptor(small).shape == (1, 3, 6, 8)


@pytest.mark.parametrize(("name", "minimum"), [("tiny_x2", 5), ("light_x4", 17), ("fp_x4", 17), ("real_x4", 17)])
def test_size_requirements_and_hints(descriptors: dict, name: str, minimum: int) -> None:
    descriptor = descriptors[name]
    requirements = descriptor.size_requirements
    assert (requirements.minimum, requirements.multiple_of, requirements.square) == (minimum, 1, False)
    assert descriptor.model.config.min_side == minimum
    assert descriptor.tiling == spandrel.ModelTiling.SUPPORTED
    window = load_golden(name)["kwargs"]["window_size"]
    assert f"tile=k*{window}" in descriptor.tags
    assert "esc-light" in descriptors["light_x4"].tags and "esc-fp" in descriptors["fp_x4"].tags


def test_supports_half_follows_the_fp16_rule(registry: spandrel.ArchRegistry) -> None:
    state = torch.load(GOLDEN_DIR / "tiny_x2.pth", weights_only=True)["params_ema"]
    loader = spandrel.ModelLoader(registry=registry)
    assert loader.load_from_state_dict(state).supports_half
    loud = dict(state, **{"proj.weight": state["proj.weight"] * 1e7})  # features far above 65504 / 8
    descriptor = loader.load_from_state_dict(loud)
    assert not descriptor.supports_half
    with pytest.raises(spandrel.UnsupportedDtypeError):
        descriptor.half()


@pytest.mark.parametrize("wrapper", ["params_ema", "params", "state_dict", "model", "module.", None])
def test_every_wrapper_loads(tmp_path: Path, registry: spandrel.ArchRegistry, wrapper: str | None) -> None:
    state = torch.load(GOLDEN_DIR / "tiny_x2.pth", weights_only=True)["params_ema"]
    if wrapper == "module.":
        content: dict = {"params": {f"module.{k}": v for k, v in state.items()}}
    else:
        content = {wrapper: state} if wrapper else state
    torch.save(content, tmp_path / "model.pth")
    save_file(state, tmp_path / "model.safetensors")
    loader = spandrel.ModelLoader(registry=registry)
    golden = load_golden("tiny_x2")
    for path in (tmp_path / "model.pth", tmp_path / "model.safetensors"):
        descriptor = loader.load_from_file(path)
        with torch.no_grad():
            assert (descriptor.model(golden["input"]) - golden["output"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("preset", esc.PRESETS)
def test_every_family_detected_with_its_hyperparameters(preset: str) -> None:
    """Detection and inference on all five published configurations (random weights; loading is shown above)."""
    state = esc.build_model(preset, scale=4).state_dict()
    assert esc_spandrel.architecture().detect({"params_ema": state})
    assert esc_spandrel.preset_name(esc.infer_config(state)) == preset


def test_other_architectures_and_refused_variants() -> None:
    arch = esc_spandrel.architecture()
    assert not arch.detect({"conv_first.weight": torch.zeros(64, 3, 3, 3)})  # an ESRGAN key
    state = torch.load(GOLDEN_DIR / "real_x4.pth", weights_only=True)["params_ema"]
    dysample = dict(state, **{"to_img.offset.weight": torch.zeros(32, 64, 1, 1)})  # ESCRealM's upsampler
    assert arch.detect(dysample)  # ESC, so spandrel stops here and says why it cannot load it
    with pytest.raises(UnsupportedVariantError, match="DySample"):
        arch.load(dysample)


def test_register_is_idempotent_and_uses_the_main_registry() -> None:
    before = len(spandrel.MAIN_REGISTRY)
    had = "ESC" in spandrel.MAIN_REGISTRY
    esc_spandrel.register()
    esc_spandrel.register()
    assert "ESC" in spandrel.MAIN_REGISTRY
    assert len(spandrel.MAIN_REGISTRY) == before + (0 if had else 1)


def test_esc_imports_without_spandrel() -> None:
    code = (
        "import sys; sys.modules['spandrel'] = None\n"
        "import esc, esc.spandrel\n"
        f"esc.load_model({str(GOLDEN_DIR / 'tiny_x2.pth')!r})\n"
        "try:\n    esc.spandrel.register()\nexcept ImportError:\n    print('needs spandrel')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "needs spandrel"
