"""One error hierarchy (microvm.errors), and only cli.py turns errors into exits."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from microvm import errors, process
from microvm.cli import main
from microvm.host import pin, state

PACKAGE = Path(errors.__file__).parent


def test_every_error_is_a_microvm_error_defined_in_errors() -> None:
    for cls in (errors.ValidationError, errors.UsageError, errors.HostError,
                errors.ProcessError):
        assert issubclass(cls, errors.MicrovmError)
        assert cls.__module__ == "microvm.errors"
    # the host modules use the classes of errors.py, they define none of their own
    assert not [name for name, value in vars(state).items()
                if isinstance(value, type) and issubclass(value, Exception)
                and value.__module__ != "microvm.errors"]
    assert not [name for name, value in vars(process).items()
                if isinstance(value, type) and issubclass(value, Exception)
                and value.__module__ == "microvm.process"]


def test_exit_codes_of_the_hierarchy() -> None:
    assert errors.MicrovmError("x").exit_code == 1
    assert errors.HostError("x").exit_code == 1
    assert errors.UsageError("x").exit_code == 2
    assert errors.ValidationError([errors.Problem("a", "b")]).exit_code == 2
    assert errors.ProcessError("x", 7).exit_code == 7


def test_pin_raises_a_host_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pin.SCRIPT_ENV, "")
    monkeypatch.setattr(pin, "PACKAGED", pin.PACKAGED.with_name("missing"))
    with pytest.raises(errors.HostError, match="microvm-prefetch-git not found"):
        pin.script_argv()


def _main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _exits(tree: ast.AST) -> list[str]:
    """sys.exit/exit/os._exit calls, raise SystemExit and click imports, outside an
    `if __name__ == "__main__":` block (a module's own entry point)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if _main_guard(node):
            return
        if isinstance(node, ast.Call):
            f = node.func
            name = (f.id if isinstance(f, ast.Name) else
                    f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute)
                    and isinstance(f.value, ast.Name) else "")
            if name in ("sys.exit", "exit", "quit", "os._exit", "os.abort"):
                found.append(f"line {node.lineno}: {name}()")
        if isinstance(node, ast.Name) and node.id == "SystemExit":
            found.append(f"line {node.lineno}: SystemExit")
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""])
            if any(m == "click" or m.startswith("click.") for m in mods):
                found.append(f"line {node.lineno}: imports click")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_nothing_below_cli_exits() -> None:
    """Only cli.py may exit or use click; everything else raises a MicrovmError."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "cli.py" and path.parent == PACKAGE:
            continue
        found = _exits(ast.parse(path.read_text("utf-8")))
        if found:
            offenders[str(path.relative_to(PACKAGE))] = found
    assert offenders == {}


def test_the_scan_finds_exits() -> None:
    code = ("import sys, click\nsys.exit(1)\nraise SystemExit(2)\n" +
            "if __name__ == '__main__':\n    sys.exit(0)\n")
    assert _exits(ast.parse(code)) == ["line 1: imports click", "line 2: sys.exit()",
                                       "line 3: SystemExit"]


def test_cli_maps_a_process_error_to_the_childs_exit_code() -> None:
    from click.testing import CliRunner

    @main.command("test-process-error", hidden=True)
    def failing() -> None:
        raise errors.ProcessError("boom failed with exit code 7", 7)

    try:
        result = CliRunner().invoke(main, ["test-process-error"])
    finally:
        del main.commands["test-process-error"]
    assert result.exit_code == 7
    assert result.output == "error: boom failed with exit code 7\n"
