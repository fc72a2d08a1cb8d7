"""Fuzzing: generated VM documents of every hypervisor, valid and corrupted (hostile numbers,
control characters, NUL, lone surrogates, hostile keys), as data and as JSON text. Each one
validates and generates a complete runner tree, or is refused with located `error:` lines;
never a traceback, never a partial tree (the property is tests/support/fuzzdocs.py's `check`).
bench/fuzz.py runs the same with 100,000 examples."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from support.fuzzdocs import check, corrupted_documents, document_texts, documents

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
OUT = Path(tempfile.mkdtemp(prefix="microvm-fuzz-")) / "out"


@settings(FUZZ, max_examples=800)
@given(documents())
def test_documents_validate_and_generate_or_are_refused(doc: dict[str, Any]) -> None:
    check(doc, OUT)


@settings(FUZZ, max_examples=800)
@given(corrupted_documents())
def test_corrupted_documents_are_refused_or_generate(doc: dict[str, Any]) -> None:
    check(doc, OUT)


@settings(FUZZ, max_examples=600)
@given(document_texts())
def test_json_texts_are_refused_or_generate(text: str) -> None:
    check(text, OUT)
