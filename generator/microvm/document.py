"""Load a VM document: JSON text -> schema validation -> defaults -> typed model -> rules.

Imports go one way: document -> validate (rules) -> config (model) -> options (schema). Every
error names the option path as a user writes it in Nix (`microvm.volumes[1].size: ...`).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from .config import MicroVM
from .errors import Problem, ValidationError
from .options import JSON, MAX_NUMBER_DIGITS, apply_defaults, schema
from .validate import schema_problems, semantic_problems


def from_document(doc: JSON, *, duplicate_keys: Mapping[int, Sequence[str]] | None = None
                  ) -> MicroVM:
    """Validate a parsed document and build the model; raises ValidationError with all problems.

    duplicate_keys: id() of a parsed JSON object -> keys it had more than once (see `parse`)."""
    sch = schema()
    problems = schema_problems(doc, sch, duplicate_keys or {})
    if problems:
        raise ValidationError(problems)
    vm = MicroVM.from_json(apply_defaults(doc, sch))
    problems = semantic_problems(vm)
    if problems:
        raise ValidationError(problems)
    return vm



MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class _TooManyDigits(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _TooManyDigits(text)
    return int(text)


def parse(text: str, origin: str) -> tuple[JSON, dict[int, list[str]]]:
    """JSON text -> (document, duplicate keys by id() of the object that repeats them).

    Keeps what `from_document` must see to refuse it with an option path: duplicate keys,
    NaN/Infinity (as floats). Syntax errors, absurdly long numbers and nesting too deep for
    the parser are one problem naming `origin`."""
    duplicates: dict[int, list[str]] = {}

    def pairs_hook(pairs: list[tuple[str, JSON]]) -> dict[str, JSON]:
        obj: dict[str, JSON] = {}
        again: list[str] = []
        for key, value in pairs:
            if key in obj and key not in again:
                again.append(key)
            obj[key] = value
        if again:
            duplicates[id(obj)] = again
        return obj

    def fail(message: str) -> ValidationError:
        return ValidationError([Problem("", f"{origin}: {message}")])

    try:
        doc = json.loads(text, object_pairs_hook=pairs_hook, parse_int=_parse_int)
    except json.JSONDecodeError as e:
        raise fail(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except _TooManyDigits:
        raise fail(f"a number has more than {MAX_NUMBER_DIGITS} digits") from None
    except RecursionError:
        raise fail("lists and objects are nested too deeply") from None
    return doc, duplicates


def read_document(path: Path) -> str:
    """The text of a VM document file: a regular file of at most MAX_DOCUMENT_BYTES, UTF-8.
    A FIFO or device is refused rather than read (it could block, or never end)."""
    try:
        # O_NONBLOCK: opening a FIFO without a writer must not block; a regular file ignores it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ValidationError([Problem("", f"cannot read {path}: {e.strerror}")]) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):  # before fdopen(), which refuses a directory naming the fd
            raise ValidationError([Problem("", f"{path}: is a directory")])
        if not stat.S_ISREG(mode):
            raise ValidationError([Problem("", f"{path} is not a regular file")])
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as e:
            raise ValidationError([Problem("", f"cannot read {path}: {e.strerror}")]) from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ValidationError([Problem(
            "", f"{path} is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError([Problem("", f"{path} is not UTF-8 text")]) from None


def read_json(path: Path) -> JSON:
    """Any JSON file the CLI reads besides VM documents (`units --declared-file FILE`): the same
    bounded reader and parser, and a key given twice in one object is refused, naming it."""
    doc, duplicates = parse(read_document(path), str(path))
    if duplicates:
        keys = sorted({key for again in duplicates.values() for key in again})
        raise ValidationError([Problem("", f"{path}: key given more than once in one " +
                                       f"object: {', '.join(repr(k) for k in keys)}")])
    return doc


def load(path: Path) -> MicroVM:
    """Read and validate a VM document from a file ('-' is not special here)."""
    doc, duplicates = parse(read_document(path), str(path))
    return from_document(doc, duplicate_keys=duplicates)
