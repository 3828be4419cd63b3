"""Library code leaves global logging alone; only the command lines' main() may quiet loggers."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("esc", "esc_deploy", "export", "serving", "validation")  # pyproject maps the last three into esc_deploy
# Calls that change process-wide logging state.
LOGGING_CALLS = {"setLevel", "basicConfig", "disable", "quiet_exporter_logs"}
# Where such a call belongs: a command's entry point, or the helper that the commands share.
ALLOWED_IN = {"main", "quiet_exporter_logs"}


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _logging_calls(tree: ast.Module) -> list[tuple[str, int, str]]:
    """(enclosing top-level function or '<module>', line, call) for each logging-state call."""
    found = []
    for node in tree.body:
        owner = node.name if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else "<module>"
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and _called_name(sub) in LOGGING_CALLS:
                found.append((owner, sub.lineno, str(_called_name(sub))))
    return found


def test_only_entry_points_change_global_logging() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for owner, line, call in _logging_calls(ast.parse(path.read_text(), str(path))):
                if owner not in ALLOWED_IN:
                    offenders.append(f"{path.relative_to(REPO)}:{line} {call}() in {owner}")
    assert not offenders, "library code changes global logging:\n" + "\n".join(offenders)


def test_the_check_sees_a_library_call() -> None:
    tree = ast.parse("def export_graphs():\n    quiet_exporter_logs()\n\ndef main():\n    quiet_exporter_logs()\n")
    assert _logging_calls(tree) == [("export_graphs", 2, "quiet_exporter_logs"), ("main", 5, "quiet_exporter_logs")]
