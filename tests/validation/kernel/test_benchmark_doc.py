"""validation/kernel_benchmark.py rewrites only its own section of docs/benchmarks.md: the SASS budget and the CPU
tables that other tools wrote stay as they are (checked on the real document, without a GPU); the section it
renders and the floor the document states."""

from __future__ import annotations

from esc_deploy.common.defaults import DOCS_DIR
from esc_deploy.validation.kernel import sass
from esc_deploy.validation.kernel.benchmark import (
    CASES,
    SECTION_BEGIN,
    SECTION_END,
    TITLE,
    MeasureOptions,
    SfuAssumption,
    render,
    replace_section,
    table,
)

DOC = (DOCS_DIR / "benchmarks.md").read_text()
NEW = f"{SECTION_BEGIN}\n## Window attention on the GPU\n\nmeasured\n{SECTION_END}"


def test_only_the_gpu_section_changes() -> None:
    old = sass.doc_section(DOC, SECTION_BEGIN, SECTION_END)
    assert old and "Not yet measured" in old
    updated = replace_section(DOC, NEW)
    assert updated == DOC.replace(old, NEW)
    assert sass.doc_section(updated) == sass.doc_section(DOC) != ""  # the SASS section, byte for byte
    cpu = DOC[DOC.index("## ONNX Runtime on CPU") :]
    assert updated.endswith(cpu)
    assert replace_section(updated, NEW) == updated


def test_a_document_without_the_section_gets_it_after_its_title() -> None:
    updated = replace_section(f"{TITLE}\n\nother text\n", NEW)
    assert updated == f"{TITLE}\n\n{NEW}\n\nother text\n"


def test_the_floor_counts_output_queries_as_the_document_states() -> None:
    x2, x4 = CASES
    assert x2.exponentials == 4 * 640 * 360 * 1024 < 240 * 4 * 1024**2  # the padding rows' queries are cropped
    for case, text in ((x2, "{:.3f} ms per layer at 1.83 GHz"), (x4, "{:.3f} and")):
        assert text.format(SfuAssumption(16, 1.83).floor_ms(case.exponentials, 132)) in DOC


def test_section_lists_every_column_and_each_case_clock() -> None:
    rows = [
        {"case": "x2", "SM clock MHz": "1980", "fused ms": "0.300", "flex ms": "0.900", "clock": "read: 1980 MHz"},
        {"case": "x4", "SM clock MHz": "1830", "fused ms": "failed: RuntimeError: boom", "clock": "assumed"},
    ]
    section = render(rows, {"GPU": "test"}, MeasureOptions(iters=7))
    assert "| case | SM clock MHz | fused ms | flex ms |" in section  # 'clock' goes to the text, not the table
    assert "| x4 | 1830 | failed: RuntimeError: boom |  |" in section
    assert "- x2: read: 1980 MHz" in section and "- x4: assumed" in section
    assert "median of 7 calls" in section


def test_table_cells_keep_their_columns() -> None:
    header, rule, row = table([{"case": "x2", "note": "a|b"}])
    assert header == "| case | note |" and rule == "|---|---|" and row == "| x2 | a\\|b |"
