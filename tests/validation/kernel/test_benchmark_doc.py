"""validation/kernel_benchmark.py rewrites only its own section of docs/benchmarks.md: the SASS budget and the CPU
tables that other tools wrote stay as they are (checked on the real document, without a GPU)."""

from __future__ import annotations

from esc_deploy.common.defaults import DOCS_DIR
from esc_deploy.validation.kernel import sass
from esc_deploy.validation.kernel.benchmark import SECTION_BEGIN, SECTION_END, TITLE, replace_section

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
