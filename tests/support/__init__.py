"""Helpers shared by the test modules (tests/test_*.py) and bench/: documents, runners, fake
programs, oracles. A test module imports helpers from here and never another test module
(tests/test_suite_shape.py checks it); pytest puts tests/ on sys.path, bench/ does it itself."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
