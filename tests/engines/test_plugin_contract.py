"""The C++ plugin header repeats export/plugin_contract.py: every constant must agree, in both directions."""

from __future__ import annotations

import re
from pathlib import Path

from esc_deploy.export import plugin_contract

HEADER = Path(__file__).resolve().parents[2] / "engines" / "plugin" / "escWindowAttentionPlugin.h"
_STRING = re.compile(r'constexpr\s+char\s+const\s*\*\s*k(\w+)\s*=\s*"([^"]*)"\s*;')
_INT = re.compile(r"constexpr\s+int32_t\s+k(\w+)\s*=\s*(-?\d+)\s*;")


def header_contract() -> dict[str, str | int]:
    """Constants between the ``contract-begin`` and ``contract-end`` markers, without the leading k; every
    constexpr line of the block must be read (one of another form would otherwise escape the comparison)."""
    text = HEADER.read_text()
    block = text.split("// contract-begin", 1)[1].split("// contract-end", 1)[0]
    values: dict[str, str | int] = {name: value for name, value in _STRING.findall(block)}
    values.update({name: int(value) for name, value in _INT.findall(block)})
    statements = [line for line in block.splitlines() if line.strip().startswith("constexpr")]
    assert len(statements) == len(values), f"constexpr lines not of the forms compared: {statements}"
    return values


def python_contract() -> dict[str, str | int]:
    return {
        name: value for name, value in vars(plugin_contract).items() if name.isupper() and isinstance(value, str | int)
    }


def test_header_matches_exporter_contract() -> None:
    assert header_contract() == python_contract()


def test_plugin_name_is_the_op_type() -> None:
    assert re.search(r"constexpr\s+char\s+const\s*\*\s*kPLUGIN_NAME\s*=\s*kOP_TYPE\s*;", HEADER.read_text())
