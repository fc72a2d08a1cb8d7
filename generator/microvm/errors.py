"""The error hierarchy. Nothing below cli.py exits; the CLI maps these to exit codes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# C0 and C1 control characters, DEL, lone surrogates, and the bidirectional overrides/isolates
# that can make a terminal line read differently from its bytes
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    """`text` with every control character (and lone surrogate) spelled as an escape, so a
    message quoting user input can neither move the cursor nor forge another line."""
    def one(m: re.Match[str]) -> str:
        c = ord(m.group())
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    return _UNPRINTABLE.sub(one, text)


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
