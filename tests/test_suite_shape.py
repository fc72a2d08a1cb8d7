"""The shape of the test suite: test modules import helpers from tests/support/ and never each
other, are named for what they test, and `mypy --strict` (scripts/test) checks them too."""

from __future__ import annotations

import ast
import re
import tomllib

from support import REPO

TESTS = REPO / "tests"
# modules still importing other test modules, until they are rewritten (issue 20); a module
# that no longer does must leave this list
IMPORTS_TEST_MODULES: set[str] = set()
# old names of moved helpers, kept only for modules not yet importing them from tests/support/
SHIMS: dict[str, str] = {}


def imported_modules(source: str) -> set[str]:
    """The top-level names of every module imported anywhere in `source` (functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_module_imports_another() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        imported = sorted(m for m in imported_modules(path.read_text("utf-8"))
                          if m.startswith("test_") and m != path.stem)
        if imported:
            offenders[path.name] = imported
    assert set(offenders) <= IMPORTS_TEST_MODULES, (
        "test modules import helpers from tests/support/, not from other test modules: "
        + repr({k: v for k, v in offenders.items() if k not in IMPORTS_TEST_MODULES}))
    assert set(offenders) == IMPORTS_TEST_MODULES, (
        "no longer importing a test module, remove from IMPORTS_TEST_MODULES: "
        + repr(sorted(IMPORTS_TEST_MODULES - set(offenders))))


def test_helpers_live_in_the_support_package() -> None:
    top = {p.name for p in TESTS.glob("*.py")
           if not p.name.startswith("test_") and p.name != "conftest.py"}
    assert top == set(SHIMS), f"helper modules belong in tests/support/: {sorted(top)}"
    for shim, user in SHIMS.items():
        assert shim.removesuffix(".py") in imported_modules((TESTS / user).read_text("utf-8")), (
            f"nothing imports tests/{shim} any more: delete it")
    assert (TESTS / "support" / "__init__.py").is_file()


def test_the_checkout_root_is_declared_once() -> None:
    """support.REPO; the modules still to be rewritten (IMPORTS_TEST_MODULES, SHIMS) excepted."""
    pending = IMPORTS_TEST_MODULES | set(SHIMS.values())
    own = [p.name for p in sorted(TESTS.glob("test_*.py")) if p.name not in pending
           and re.search(r"^REPO = ", p.read_text("utf-8"), re.M)]
    assert not own, f"import REPO from support instead: {own}"


def test_test_modules_are_named_for_what_they_test() -> None:
    assert not [p.name for p in TESTS.glob("test_*.py") if re.search(r"issue_?\d", p.name)]


def test_mypy_checks_the_tests_and_nix_lib() -> None:
    mypy = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["tool"]["mypy"]
    assert mypy["strict"] is True
    assert {"generator/microvm", "tests", "nix/lib"} <= set(mypy["files"])
