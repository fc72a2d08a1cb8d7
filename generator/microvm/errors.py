"""The error hierarchy. Nothing below cli.py exits; the CLI maps these to exit codes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class MicrovmError(Exception):
    """Base of every error the tool reports to a user (exit code 1 unless said otherwise)."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a VM document, located by the option path a user writes."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ValidationError(MicrovmError):
    """The VM document is invalid; carries every problem found (exit code 2)."""

    exit_code = 2

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(MicrovmError):
    """The command was called wrongly (exit code 2)."""

    exit_code = 2
