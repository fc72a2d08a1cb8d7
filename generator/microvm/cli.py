"""The `microvm` command. Only this module turns errors into exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .config import load, schema
from .errors import MicrovmError, ValidationError


class _Group(click.Group):
    """Maps MicrovmError to a one-line message and its exit code; no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ValidationError as e:
            for problem in e.problems:
                click.echo(f"error: {problem}", err=True)
            ctx.exit(e.exit_code)
        except MicrovmError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="microvm")
def main() -> None:
    """Generate and run NixOS MicroVMs."""


VM_DOC = click.Path(path_type=Path, dir_okay=False)


@main.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of a VM document."""
    click.echo(json.dumps(schema(), indent=2, ensure_ascii=False))


@main.command()
@click.argument("document", type=VM_DOC)
def validate(document: Path) -> None:
    """Check a VM document; print one line per problem (exit 2) or nothing (exit 0)."""
    load(document)


@main.command()
@click.argument("document", type=VM_DOC)
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory to write the runner tree to.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
def generate(document: Path, out: Path, force: bool) -> None:
    """Write the runner tree (bin/microvm-run, ...) for a VM document."""
    from .runner import write

    vm = load(document)
    write(vm, out, force=force)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
