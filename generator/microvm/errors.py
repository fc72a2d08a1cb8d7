"""The error hierarchy. Nothing below cli.py exits; the CLI maps these to exit codes.

    MicrovmError            anything the tool reports to a user (exit code 1)
      ValidationError       an invalid VM document, every problem by option path (exit code 2)
      UsageError            the command was called wrongly (exit code 2)
        ConflictError       files in the way of a managed tree, each named (exit code 2)
      HostError             a host operation failed: state directory, links, trust (exit code 1)
      ProcessError          a program could not be started, or failed (its exit code)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def escape(text: str) -> str:
    """`text` with every character Python would not print (control characters, lone
    surrogates, line separators, bidirectional overrides...) spelled as an escape, as repr()
    does, so a message quoting user input can neither move the cursor nor forge a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_one(ord(c)) for c in text)


def _escape_one(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class MicrovmError(Exception):
    """Base of every error the tool reports to a user (exit code 1 unless said otherwise)."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a VM document, located by the option path a user writes."""

    path: str
    message: str

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return escape(text)


class ValidationError(MicrovmError):
    """The VM document is invalid; carries every problem found (exit code 2)."""

    exit_code = 2

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(MicrovmError):
    """The command was called wrongly (exit code 2)."""

    exit_code = 2


class ConflictError(UsageError):
    """Paths in the way of a managed tree (managed.py): files it did not write or that changed
    since; carries one Problem per path (exit code 2, nothing changed)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class HostError(MicrovmError):
    """A host operation failed (exit code 1)."""


class ProcessError(MicrovmError):
    """A program could not be started, or failed. `exit_code` is the child's when it ran."""

    def __init__(self, message: str, exit_code: int = 1, output: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.output = output
