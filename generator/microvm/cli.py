"""The `microvm` command. Only this module turns errors into exit codes.

Exit codes: 0 success, 1 a failure (or the exit code of a program that failed), 2 a usage error
or an invalid VM document. `--debug` logs every program run and shows tracebacks.

The short flags of microvm.nix's `microvm` command are accepted too (see `_short_flags`):
`-c NAME [-f FLAKE]`, `-u NAME... [-R]`, `-r NAME`, `-s NAME [-- SSH-OPTIONS | COMMAND]`, `-l`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from . import __version__
from .errors import (
    ConflictError,
    MicrovmError,
    Problem,
    UsageError,
    ValidationError,
    escape,
)
from .host import defaults

if TYPE_CHECKING:
    from .config import MicroVM
    from .units import UnitOptions

# Each command imports what it uses when it runs: `microvm generate` pays for jsonschema and
# jinja2, `microvm list`, --help and shell completion do not (bench/REPORT.md, section 4).

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Maps MicrovmError to a one-line message and its exit code; no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (ValidationError, ConflictError) as e:
            if debug:
                raise
            for problem in e.problems:
                click.echo(f"error: {problem}", err=True)
            ctx.exit(e.exit_code)
        except MicrovmError as e:
            if debug:
                raise
            click.echo(f"error: {escape(str(e))}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:
            # a file or directory the command had to use: say which and why, no traceback
            if debug:
                raise
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"error: {escape(f'{where}{e.strerror or e}')}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            if debug:
                raise
            ctx.exit(130)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """microvm.nix's short flags become subcommands before click parses anything."""
        try:
            args = _short_flags(args)
        except UsageError as e:
            raise click.UsageError(str(e), ctx) from None
        return super().parse_args(ctx, args)


@click.group(cls=_Group, help=f"""Generate and run NixOS MicroVMs.

    Host commands keep their state under --state-dir (default $MICROVM_STATE_DIR, else
    {defaults.STATE_DIR}). microvm.nix's short flags work too: -c NAME [-f FLAKE], -u NAME...
    [-R], -r NAME, -s NAME, -l.
    """)
@click.version_option(__version__, prog_name="microvm")
@click.option("--debug", is_flag=True, help="Log every program run; show tracebacks.")
def main(debug: bool) -> None:
    """Generate and run NixOS MicroVMs (the group's help is above: it names the defaults)."""
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(message)s", stream=sys.stderr)


# a directory is refused by the reader (document.read_document), with an `error:` line
VM_DOC = click.Path(path_type=Path)
# `microvm balloon NAME SIZE`: at most microvm.mem's maximum in the schema (MiB)
BALLOON_MAX_MIB = 16 * 1024 * 1024


@main.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of a VM document."""
    from .options import schema

    click.echo(json.dumps(schema(), indent=2, ensure_ascii=False))


def _warn(vm: MicroVM, document: Path | None = None) -> None:
    """One `warning: <option path>: ...` line per accepted option the hypervisor ignores
    (prefixed with the document when several are checked together)."""
    from .validate import warnings

    for w in warnings(vm):
        where = f"{document}: " if document is not None else ""
        click.echo(f"warning: {escape(where + str(w))}", err=True)


def _load_all(documents: Sequence[Path]) -> list[MicroVM]:
    """Every document loaded, or a ValidationError with the problems of all of them, each
    prefixed with its document."""
    from .document import load

    vms: list[MicroVM] = []
    problems: list[Problem] = []
    for document in documents:
        try:
            vms.append(load(document))
        except ValidationError as e:
            problems += [Problem(f"{document}: {p.path}" if p.path else str(document), p.message)
                         for p in e.problems]
    if problems:
        raise ValidationError(problems)
    return vms


@main.command()
@click.argument("document", type=VM_DOC)
def validate(document: Path) -> None:
    """Check a VM document; print one line per problem (exit 2) or nothing (exit 0)."""
    from .document import load

    _warn(load(document))


OUT_DIR = click.Path(path_type=Path, file_okay=False)


def _complete_path(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a path, for the pair of --batch (click completes no tuple)."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


@main.command()
@click.argument("document", type=VM_DOC, required=False)
@click.option("--out", "-o", type=OUT_DIR,
              help="Directory to write the runner tree of DOCUMENT to.")
@click.option("--batch", multiple=True, type=(VM_DOC, OUT_DIR), metavar="DOCUMENT OUT",
              shell_complete=_complete_path,
              help="Generate DOCUMENT's runner tree into OUT too, in the same process " +
              "(repeatable: one start-up for many VMs).")
@click.option("--force", is_flag=True, help="Replace existing output directories.")
def generate(document: Path | None, out: Path | None, batch: tuple[tuple[Path, Path], ...],
             force: bool) -> None:
    """Write the runner tree (bin/microvm-run, ...) for a VM document, or for many with
    --batch. Each output directory is written completely or not at all; with several, every
    document is checked and every output is checked for existence before any is written."""
    if (document is None) != (out is None):
        raise click.UsageError("give DOCUMENT with --out, or --batch DOCUMENT OUT")
    jobs = [*([(document, out)] if document is not None and out is not None else []), *batch]
    if not jobs:
        raise click.UsageError("give DOCUMENT --out OUT, or --batch DOCUMENT OUT (repeatable)")

    from .document import load
    from .runner import write

    if len(jobs) == 1:
        vms = [load(jobs[0][0])]  # its problems as they are, without the document's name
        _warn(vms[0])
    else:
        vms = _load_all([d for d, _ in jobs])
        for vm, (d, _) in zip(vms, jobs, strict=True):
            _warn(vm, d)
    outs = [Path(os.path.abspath(o)) for _, o in jobs]
    taken: set[Path] = set()  # the outputs so far
    above: set[Path] = set()  # and the directories they are in
    for o in outs:
        if o in taken or o in above or not taken.isdisjoint(o.parents):
            raise UsageError(f"{o}: given for two runner trees (the same directory, or one " +
                             "inside the other)")
        taken.add(o)
        above.update(o.parents)
        if not force and o.exists():
            raise UsageError(f"{o} exists; pass --force to replace it")
    for vm, o in zip(vms, outs, strict=True):
        write(vm, o, force=force)


@main.command("validate-host")
@click.argument("documents", nargs=-1, required=True, type=VM_DOC)
@click.option("--state-dir", default=defaults.STATE_DIR, show_default=True,
              help="Where the host runs each VM (relative paths are resolved in " +
              "<state-dir>/<hostName>).")
@click.option("--networks", type=click.Path(path_type=Path), default=None,
              help="The host's network declaration (as for `microvm network`): also check " +
              "each VM's type = \"network\" interfaces against it.")
def validate_host(documents: tuple[Path, ...], state_dir: str, networks: Path | None) -> None:
    """Check the VM documents of one host together: each must be valid, and no two may use
    the same interface name, MAC, vsock CID, forwarded host port, socket, PCI or USB device,
    or volume image one of them writes. One line per problem (exit 2) or nothing (exit 0)."""
    from .document import load
    from .hostwide import host_problems

    vms = []
    problems: list[Problem] = []
    for document in documents:
        try:
            vms.append(load(document))
        except ValidationError as e:
            problems += [Problem(f"{document}: {p.path}" if p.path else "", p.message)
                         for p in e.problems]
    if not problems:
        problems = host_problems(vms, os.path.abspath(state_dir))
    if not problems and networks is not None:
        from .document import read_json
        from .netplan import derive, vm_problems

        plan = derive(read_json(networks))
        for document, vm in zip(documents, vms, strict=True):
            problems += vm_problems(plan, vm.host_name, vm.network_joins, f"{document}: ")
    if problems:
        raise ValidationError(problems)


# -- systemd units ---------------------------------------------------------------------------

def _grouped(name: str, build: Callable[[dict[str, Any]], Any],
             options: Sequence[Callable[[F], F]]) -> Callable[[F], F]:
    """Add `options` to a command, which gets them as one value: keyword `name`, made by
    `build` from the options' values (by parameter name) once, when the command runs."""

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs[name] = build({k: kwargs.pop(k) for k in names})
            return f(*args, **kwargs)

        before = len(getattr(command, "__click_params__", []))
        for option in reversed(options):
            command = option(command)
        names = [p.name for p in getattr(command, "__click_params__", [])[before:]]
        return cast(F, command)

    return decorate


def _unit_options(params: dict[str, Any]) -> UnitOptions:
    """The UnitOptions of `microvm units`' settings and declared VMs."""
    from . import units as u

    declared = u.parse_declared(params["declare"], params["no_restart_if_changed"],
                                params["no_autostart"], params["update_flake"])
    declared_file = params["declared_file"] or params["declared_file_alias"]
    if declared_file is not None:
        from .document import read_json

        declared += u.declared_from_json(read_json(declared_file))
    return u.UnitOptions(
        state_dir=os.path.abspath(params["state_dir"]), user=params["user"],
        group=params["group"], libexec_dir=params["libexec_dir"],
        readiness=u.Readiness(params["readiness"]), console=u.Console(params["console"]),
        start_timeout=params["start_timeout"], shutdown_timeout=params["shutdown_timeout"],
        virtiofsd_notify=params["virtiofsd_notify"], declared=declared,
        **({"command": params["command"]} if params["command"] else {}))


UNIT_OPTIONS = _grouped("opts", _unit_options, [
    click.option("--state-dir", default=defaults.STATE_DIR, show_default=True,
                 help="Where the units find the VMs (<state-dir>/.control/<name>/current, " +
                 "booted; data in <state-dir>/<name>)."),
    click.option("--user", default=defaults.USER, show_default=True,
                 help="User the VMs run as."),
    click.option("--group", default=defaults.GROUP, show_default=True,
                 help="Group the VMs run as."),
    click.option("--libexec-dir", help="Absolute directory the helpers will be installed in " +
                 "(default: <out>/libexec/microvm)."),
    click.option("--command", help="The `microvm` command microvm-networks.service runs as " +
                 "root: a path only root may change (default: where `microvm host install` " +
                 "links it, PREFIX/bin/microvm with its default PREFIX)."),
    click.option("--readiness", type=click.Choice(["started", "vsock"]), default="started",
                 show_default=True, help="When microvm@NAME is up: the runner was started, " +
                 "or the guest sent READY=1 over vsock."),
    click.option("--console", type=click.Choice(["socket", "journal"]), default="socket",
                 show_default=True, help="Serial console on console.sock (microvm console) " +
                 "or in the journal."),
    click.option("--start-timeout", type=click.IntRange(min=1), default=150, show_default=True,
                 help="Seconds a VM (or its virtiofsd) may take to become ready."),
    click.option("--shutdown-timeout", type=click.IntRange(min=1), default=60,
                 show_default=True, help="Seconds the guest gets to power off before SIGTERM."),
    click.option("--virtiofsd-notify", is_flag=True,
                 help="virtiofsd sends sd_notify READY=1 (the Rust one): Type=notify."),
    click.option("--declare", "declare", multiple=True, metavar="NAME=RUNNER",
                 help="A VM of the host configuration (install-microvm-NAME.service)."),
    click.option("--declared-file", "declared_file", type=click.Path(path_type=Path),
                 metavar="FILE", help="JSON object NAME -> {runner, restartIfChanged, " +
                 "autostart, updateFlake}: declared VMs, as the host module writes them."),
    # --declared-file's old spelling, kept working for scripts (hidden: `reconcile --declared
    # NAME` means something else)
    click.option("--declared", "declared_file_alias", type=click.Path(path_type=Path),
                 hidden=True),
    click.option("--no-restart-if-changed", multiple=True, metavar="NAME",
                 help="A declared VM keeps running when its runner changes."),
    click.option("--no-autostart", multiple=True, metavar="NAME",
                 help="A declared VM is not started by microvms.target."),
    click.option("--update-flake", multiple=True, metavar="NAME=FLAKE",
                 help="A declared VM installed once, then updated with `microvm update NAME` " +
                 "from FLAKE (microvm.vms.NAME.updateFlake)."),
])


@main.command()
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory to write lib/systemd/system/* and libexec/microvm/* to.")
@UNIT_OPTIONS
@click.option("--force", is_flag=True, help="Write into an existing directory: replace or " +
              "remove what an earlier run wrote there (recorded in DIR/.microvm-units.json); " +
              "other files are never touched, and one in the way stops the run (exit 2).")
@click.option("--for-nixos", "for_nixos", is_flag=True, hidden=True,
              help="For the NixOS host module, which declares the units every VM uses and " +
              "each declared VM's restartIfChanged itself (from nix/lib/units.json).")
def units(out: Path, opts: UnitOptions, force: bool, for_nixos: bool) -> None:
    """Write the host's systemd units (microvm@.service and its helpers), recorded in
    OUT/.microvm-units.json."""
    from dataclasses import replace

    from . import units as u

    u.write(out, replace(opts, nixos=for_nixos), force=force)


# -- installing the host side (non-NixOS hosts) --------------------------------------------

ROOT_DIR = click.Path(path_type=Path, file_okay=False, exists=True)


@main.group("host")
def host_group() -> None:
    """Install or remove the host side (units, helpers, the VM user) on a systemd host without
    NixOS. NixOS hosts use the Nix host module instead."""


def _echo(msg: str) -> None:
    """A host command's message on stderr. Messages quote names from places other users write
    (the VM's data directory, a runner's files): no control character of theirs reaches the
    terminal."""
    click.echo("\n".join(escape(line) for line in msg.split("\n")), err=True)


@host_group.command("install", short_help="Install the host side under PREFIX (/usr/local).")
@click.option("--prefix", default="/usr/local", show_default=True,
              help="Where the files go: PREFIX/lib/systemd/system, lib/tmpfiles.d, " +
              "lib/sysusers.d, libexec/microvm, bin/microvm; recorded in " +
              "PREFIX/lib/microvm/install.json.")
@click.option("--state-dir", help="Where the VMs live (default: what the last install used, " +
              f"else {defaults.STATE_DIR}).")
@click.option("--user", help="User the VMs run as, created by systemd-sysusers (default: the " +
              f"last install's, else {defaults.USER}).")
@click.option("--group", help="Group the VMs run as, which may open /dev/kvm; created when " +
              f"missing (default: the last install's, else {defaults.GROUP}).")
@click.option("--root", type=ROOT_DIR, help="Write the files below this directory and run " +
              "nothing (a scratch tree or an image).")
def host_install(prefix: str, state_dir: str | None, user: str | None, group: str | None,
                 root: Path | None) -> None:
    """Install the units, tmpfiles and sysusers files, helpers and PREFIX/bin/microvm, then run
    systemd-sysusers, systemd-tmpfiles --create and systemctl daemon-reload. Never overwrites
    a file it did not write; running it again upgrades in place."""
    from .host import install as i

    root = Path(os.path.abspath(root)) if root is not None else None
    i.install(i.resolve(prefix, root, state_dir, user, group), root, _echo)


@host_group.command("uninstall", short_help="Remove what `host install` wrote.")
@click.option("--prefix", default="/usr/local", show_default=True,
              help="The prefix given to `host install`.")
@click.option("--root", type=ROOT_DIR, help="The directory given to `host install --root`; " +
              "run nothing.")
@click.option("--force", is_flag=True, help="Also while microvm@ units are active (they keep " +
              "running until they stop, without unit files).")
def host_uninstall(prefix: str, root: Path | None, force: bool) -> None:
    """Remove what `host install` wrote and nobody changed since (changed files are kept and
    named), then systemctl daemon-reload. The state directory with the VMs' data and the user
    stay."""
    from .host import install as i

    root = Path(os.path.abspath(root)) if root is not None else None
    i.uninstall(prefix, root, force, _echo)


# -- host commands ---------------------------------------------------------------------------

def _state_dir_option(f: F) -> F:
    return click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                        help="State directory (default: $MICROVM_STATE_DIR, else " +
                        f"{defaults.STATE_DIR}).")(f)


def _host(state_dir: str | None) -> Any:
    from .host.commands import Host
    from .host.service import Service
    from .host.state import state_root

    networks = os.environ.get("MICROVM_NETWORKS_FILE") or defaults.NETWORKS_FILE
    return Host(root=state_root(state_dir), service=Service(echo=_echo), echo=_echo,
                networks=Path(networks))


def _use_color() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


@main.command()
@click.argument("name")
@click.option("--flake", "-f", help="Flake to build nixosConfigurations.NAME from " +
              "(default git+file:///etc/nixos when --runner is not given).")
@click.option("--runner", type=click.Path(exists=True, file_okay=False),
              help="An existing runner tree (a Nix store path or `microvm generate` output).")
@click.option("--restart-on-update", is_flag=True,
              help="`microvm update` restarts this VM when its runner changed.")
@click.option("--user", default=defaults.USER, show_default=True,
              help="Owner of the VM's directory (when run as root and the user exists).")
@click.option("--group", default=defaults.GROUP, show_default=True, help="Its group.")
@click.option("--autostart", is_flag=True,
              help="Start it at boot (systemctl enable microvm@NAME; see `microvm enable`).")
@_state_dir_option
def create(name: str, flake: str | None, runner: str | None, restart_on_update: bool,
           user: str, group: str, autostart: bool, state_dir: str | None) -> None:
    """Create a VM from a flake or a runner."""
    from .host import commands

    if flake is None and runner is None:
        flake = commands.DEFAULT_FLAKE
    host = _host(state_dir)
    commands.create(host, name, flake=flake, runner=runner,
                    restart_on_update=restart_on_update, user=user, group=group)
    if autostart:
        commands.set_autostart(host, [name], True)


@main.command()
@click.argument("names", nargs=-1, required=True)
@_state_dir_option
def enable(names: tuple[str, ...], state_dir: str | None) -> None:
    """Start VMs at boot (systemctl enable microvm@NAME)."""
    from .host import commands

    commands.set_autostart(_host(state_dir), names, True)


@main.command()
@click.argument("names", nargs=-1, required=True)
@_state_dir_option
def disable(names: tuple[str, ...], state_dir: str | None) -> None:
    """No longer start VMs at boot (systemctl disable microvm@NAME)."""
    from .host import commands

    commands.set_autostart(_host(state_dir), names, False)


@main.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--restart", "-R", is_flag=True, help="Restart running VMs whose runner changed.")
@click.option("--flake", "-f", help="Build from this flake from now on (one VM).")
@click.option("--runner", type=click.Path(exists=True, file_okay=False),
              help="Switch to this runner (one VM).")
@_state_dir_option
def update(names: tuple[str, ...], restart: bool, flake: str | None, runner: str | None,
           state_dir: str | None) -> None:
    """Rebuild VMs, switch their `current` runner, show what changed."""
    from .host import commands

    commands.update(_host(state_dir), names, restart=restart, flake=flake, runner=runner)


@main.command()
@click.argument("name")
@_state_dir_option
@click.pass_context
def run(ctx: click.Context, name: str, state_dir: str | None) -> None:
    """Run a VM in the foreground (its console on this terminal)."""
    from .host import commands

    ctx.exit(commands.run(_host(state_dir), name))


@main.command("list")
@click.option("--check", is_flag=True, help="Evaluate flakes to find outdated VMs (slow).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_state_dir_option
def list_cmd(check: bool, as_json: bool, state_dir: str | None) -> None:
    """List VMs: running or stopped, current vs booted runner, hypervisor."""
    from .host import commands

    rows = commands.list_status(_host(state_dir), check=check)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    color = _use_color()
    if not rows:
        click.echo("no MicroVMs")
        return
    width = max(len("NAME"), *(len(escape(r.name)) for r in rows))
    click.echo(f"{'NAME':<{width}}  {'STATE':<8} {'HYPERVISOR':<17} RUNNER")
    for r in rows:
        nets = "; ".join(f"{n} {a or '(no address yet)'}" + (f" {d}" if d else "")
                         for n, a, d in r.networks)
        state = r.state
        runner = escape(r.runner_state)
        name, hypervisor = escape(r.name), escape(r.hypervisor)
        fg_state = "green" if r.running else "red" if r.failed or not r.booted else "yellow"
        fg_runner = ("green" if runner == "up to date" else
                     "red" if runner.startswith(("outdated", "broken")) else "yellow")
        line = (f"{click.style(f'{name:<{width}}', bold=True)}  " +
                f"{click.style(f'{state:<8}', fg=fg_state)} {hypervisor:<17} " +
                f"{click.style(runner, fg=fg_runner)}")
        click.echo(line, color=color)
        if nets:
            click.echo(f"{'':<{width}}  network: {escape(nets)}", color=color)


@main.command()
@click.argument("name")
@click.option("--timeout", type=click.IntRange(min=1), default=60, show_default=True,
              help="Seconds the guest gets to power off before it is killed.")
@_state_dir_option
def shutdown(name: str, timeout: int, state_dir: str | None) -> None:
    """Ask a VM to power off and wait for it."""
    from .host import commands

    commands.shutdown(_host(state_dir), name, timeout)


@main.command()
@click.argument("name")
@click.argument("size", type=click.IntRange(min=0, max=BALLOON_MAX_MIB))
@_state_dir_option
@click.pass_context
def balloon(ctx: click.Context, name: str, size: int, state_dir: str | None) -> None:
    """Inflate a running VM's balloon to SIZE MiB (0 gives all memory back)."""
    from .host import commands

    ctx.exit(commands.balloon(_host(state_dir), name, size))


@main.command()
@click.argument("name")
@_state_dir_option
@click.pass_context
def console(ctx: click.Context, name: str, state_dir: str | None) -> None:
    """Attach to a VM's serial console (console.sock; Ctrl-] detaches)."""
    from .host import commands

    ctx.exit(commands.console(_host(state_dir), name))


@main.command(context_settings={"allow_interspersed_args": False})
@click.argument("name")
@click.option("--login", "-l", "user", default="root", show_default=True,
              help="User to log in as.")
@click.option("--option", "-o", "options", multiple=True, metavar="OPTION",
              help="ssh -o OPTION (repeatable).")
@click.option("--ssh-arg", "ssh_args", multiple=True, help="Raw argument for ssh.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_state_dir_option
@click.pass_context
def ssh(ctx: click.Context, name: str, user: str, options: tuple[str, ...],
        ssh_args: tuple[str, ...], command: tuple[str, ...], state_dir: str | None) -> None:
    """ssh into a VM over vsock (needs microvm.vsock.cid and an sshd on vsock in the guest).

    Options go before NAME; everything after NAME is the remote command."""
    from .host import commands

    host = _host(state_dir)
    ctx.exit(commands.ssh(host, name, user, [*_ssh_options(options), *ssh_args], command))


def _ssh_options(options: Sequence[str]) -> list[str]:
    out: list[str] = []
    for o in options:
        out += ["-o", o]
    return out


@main.command()
@click.argument("name")
@click.option("--purge", is_flag=True,
              help="Also delete the VM's directory with its volumes.")
@click.option("--timeout", type=click.IntRange(min=1), default=60, show_default=True)
@_state_dir_option
def remove(name: str, purge: bool, timeout: int, state_dir: str | None) -> None:
    """Stop a VM and remove it; volumes stay unless --purge."""
    from .host import commands

    commands.remove(_host(state_dir), name, purge=purge, timeout=timeout)


@main.command()
@click.option("--declared", "declared", multiple=True, metavar="NAME", required=False,
              help="A VM the host configuration declares (repeatable; also NAME...).")
@click.argument("names", nargs=-1)
@click.option("--timeout", type=click.IntRange(min=1), default=60, show_default=True)
@_state_dir_option
def reconcile(declared: tuple[str, ...], names: tuple[str, ...], timeout: int,
              state_dir: str | None) -> None:
    """Apply the host configuration: restart changed VMs, stop undeclared ones."""
    from .host import commands

    commands.reconcile(_host(state_dir), [*declared, *names], timeout=timeout)


@main.command()
@click.option("--user", default=defaults.USER, show_default=True)
@click.option("--group", default=defaults.GROUP, show_default=True)
@click.option("--networks", type=click.Path(path_type=Path), default=None,
              help="A network declaration (as for `microvm network`): also check what on " +
              "this host breaks those networks (another table's forward drop, br_netfilter, " +
              "a route over a network's subnet, /dev/net/tun).")
@_state_dir_option
@click.pass_context
def doctor(ctx: click.Context, user: str, group: str, networks: Path | None,
           state_dir: str | None) -> None:
    """Check what this host can run and say what to fix (exit 1 on failures)."""
    from .host import doctor as d
    from .host.state import state_root

    plan = _plan(networks, state_dir) if networks is not None else None
    findings = d.diagnose(state_root(state_dir), user, group, networks=plan)
    color = _use_color()
    fg = {d.Level.OK: "green", d.Level.WARN: "yellow", d.Level.FAIL: "red"}
    for f in findings:
        tag = click.style(f"{f.level:<4}", fg=fg[f.level], bold=f.level is not d.Level.OK)
        click.echo(f"{tag}  {escape(f.check)}: {escape(f.detail)}", color=color)
        if f.fix:
            click.echo(f"      fix: {escape(f.fix)}")
    ctx.exit(1 if d.worst(findings) is d.Level.FAIL else 0)


# -- declared host networks -------------------------------------------------------------------

NET_DECL = click.Path(path_type=Path)


def _plan(file: Path, state_dir: str | None, given: Any = None) -> Any:
    """The plan of a network declaration (netplan.derive) with the IPv4 addresses the host
    gave out before (`given`, or else host/network.read_addresses in the state directory),
    checked for what the host side needs (host/network.problems)."""
    from .document import read_json
    from .host import network as net
    from .host.state import state_root
    from .netplan import derive

    if given is None:
        given = net.read_addresses(state_root(state_dir))
    plan = derive(read_json(file), given)
    net.check(plan)
    return plan


# host/network.RUN_DIR (not imported here: `microvm --help` stays fast; a test ties the two)
NETWORK_RUN_DIR = "/run/microvm/net"


def _run_dir_option(f: F) -> F:
    return click.option("--run-dir", type=click.Path(path_type=Path, file_okay=False),
                        default=NETWORK_RUN_DIR, show_default=True,
                        help="Where dnsmasq's configuration, pid and lease files and the " +
                        "loaded table's copy live.")(f)


@main.group("network")
def network_group() -> None:
    """Declared host networks: a bridge per network with the VMs' gateway, DHCP, DNS names
    and router advertisements (dnsmasq), NAT to the uplinks, port forwards, isolation and
    anti-spoofing (one nftables table of its own). FILE is the JSON declaration
    (hostName, hostAddresses, networks, vms)."""


@network_group.command("check")
@click.argument("file", type=NET_DECL)
@_state_dir_option
def network_check(file: Path, state_dir: str | None) -> None:
    """Check a declaration; print one line per problem (exit 2) or nothing (exit 0)."""
    _plan(file, state_dir)


@network_group.command("show")
@click.argument("file", type=NET_DECL)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_state_dir_option
def network_show(file: Path, as_json: bool, state_dir: str | None) -> None:
    """Show what is derived for every VM on every network: tap, MAC, addresses, DNS name."""
    from .host.network import rows

    table = rows(_plan(file, state_dir))
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    cols = ("network", "vm", "tap", "mac", "ipv4", "ipv6", "name")
    cells = [[escape(str(r[c] if r[c] is not None else "-")) for c in cols] for r in table]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    for row in [[c.upper() for c in cols], *cells]:
        click.echo("  ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip())


@network_group.command("tables")
@click.argument("file", type=NET_DECL)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="A directory to create (it must not exist): FAMILY.nft for each table.")
@_state_dir_option
def network_tables(file: Path, out: Path, state_dir: str | None) -> None:
    """Write the body of each of the project's nftables tables (inet.nft, bridge.nft: what goes
    between `table FAMILY microvm {` and `}`), for a firewall that declares its tables itself
    (the NixOS host module gives them to networking.nftables.tables). `up` loads the same."""
    import shutil

    from .host import network as net

    bodies = net.tables(_plan(file, state_dir))
    if out.exists() or out.is_symlink():
        raise UsageError(f"--out {out}: exists; give a directory that does not")
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside it, then renamed: OUT is there whole or not at all
    tmp = out.with_name(f".{out.name}.new.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for family, body in bodies.items():
            (tmp / f"{family}.nft").write_text(body, "utf-8")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@network_group.command("up")
@click.argument("file", type=NET_DECL)
@_run_dir_option
@_state_dir_option
def network_up(file: Path, run_dir: Path, state_dir: str | None) -> None:
    """Create or update the declared networks (as root): bridges and their addresses, the
    nftables table, one dnsmasq per network; join member taps that exist. Running it again
    changes nothing; networks an earlier FILE had and this one has not are removed. FILE and
    the directories above it must be root's and not writable by others. The IPv4
    address each VM got is recorded in the state directory: a VM keeps it when others are
    added or removed."""
    from .host import network as net
    from .host.state import check_dirs, state_root

    check_dirs(file)  # root takes no instructions from a file others could have written
    given = net.read_addresses(state_root(state_dir))
    plan = _plan(file, state_dir, given)
    for line in net.moved(plan, given):
        click.echo(f"microvm network up: warning: {escape(line)}", err=True)
    net.up(plan, Path(os.path.abspath(run_dir)))
    net.record_addresses(state_root(state_dir), plan)


@network_group.command("down")
@click.argument("file", type=NET_DECL)
@_run_dir_option
@_state_dir_option
def network_down(file: Path, run_dir: Path, state_dir: str | None) -> None:
    """Remove the declared networks (as root): dnsmasq, bridges, the table, the host sysctls
    `up` changed (restored) and the run directory's files. Running it again does nothing; the
    record of addresses given out stays (the next `up` gives each VM its own again)."""
    from .host import network as net
    from .host.state import check_dirs

    check_dirs(file)
    net.down(_plan(file, state_dir), Path(os.path.abspath(run_dir)))


# -- examples in every command's --help --------------------------------------------------------

EXAMPLES: dict[str, tuple[str, ...]] = {
    "schema": ("microvm schema > vm.schema.json",),
    "validate": ("microvm validate vm.json",),
    "generate": ("microvm generate vm.json --out runner",
                 f"cd {defaults.STATE_DIR}/demo && /path/to/runner/bin/microvm-run",
                 "microvm generate --batch web.json runners/web --batch db.json runners/db"),
    "validate-host": ("microvm validate-host web.json db.json",),
    "units": ("microvm units --out units --declare web=/nix/store/...-microvm-qemu-web",),
    "create": ("microvm create web --flake git+file:///etc/nixos",
               "microvm create web --runner ./result --autostart"),
    "enable": ("microvm enable web db",),
    "disable": ("microvm disable web",),
    "update": ("microvm update web db --restart", "microvm update web --runner ./result"),
    "run": ("microvm run web",),
    "list": ("microvm list", "microvm list --check --json"),
    "shutdown": ("microvm shutdown web --timeout 30",),
    "balloon": ("microvm balloon web 256",),
    "console": ("microvm console web",),
    "ssh": ("microvm ssh web", "microvm ssh web -- systemctl status"),
    "remove": ("microvm remove web", "microvm remove web --purge"),
    "reconcile": ("microvm reconcile --declared web --declared db",),
    "doctor": ("microvm doctor",),
    "host": ("microvm host install", "microvm host uninstall"),
    "network": ("microvm network show networks.json", "microvm network up networks.json"),
}
# the subcommands of `microvm host`
HOST_EXAMPLES: dict[str, tuple[str, ...]] = {
    "install": ("microvm host install",
                "microvm host install --state-dir /srv/vms --root /tmp/image"),
    "uninstall": ("microvm host uninstall", "microvm host uninstall --force"),
}
# the subcommands of `microvm network`
NETWORK_EXAMPLES: dict[str, tuple[str, ...]] = {
    "check": ("microvm network check networks.json",),
    "show": ("microvm network show networks.json", "microvm network show networks.json --json"),
    "up": ("microvm network up networks.json",
           "microvm network up networks.json --run-dir /tmp/net"),
    "down": ("microvm network down networks.json",),
    "tables": ("microvm network tables networks.json --out tables",),
}
for _examples, _group in ((EXAMPLES, main), (HOST_EXAMPLES, host_group),
                          (NETWORK_EXAMPLES, network_group)):
    for _name, _command in _group.commands.items():
        # \b keeps click from re-wrapping the lines
        _command.epilog = "\b\nExamples:\n" + "\n".join(f"  {x}" for x in _examples[_name])
main.epilog = ("\b\nShell completion (bash, zsh, fish), e.g. in ~/.bashrc:\n" +
               '  eval "$(_MICROVM_COMPLETE=bash_source microvm)"')


# -- microvm.nix's short flags ---------------------------------------------------------------

def _short_flags(argv: list[str]) -> list[str]:
    """Translate microvm.nix's `microvm -c NAME -f FLAKE`, `-Ru NAME...`, `-r NAME`,
    `-s NAME [-- SSH-OPTIONS | COMMAND...]` and `-l` into subcommands (its getopts
    ":c:C:f:uRr:s:l": the last action flag wins, -f only matters to -c (an update rebuilds
    from the recorded flake), -R only to -u, and -u takes the names that follow the flags)."""
    if not argv or not argv[0].startswith("-") or argv[0].startswith("--"):
        return argv
    if argv[0] == "-h":
        return ["--help"]
    flag, name, flake, restart, rest = _getopts(argv)
    match flag:
        case "-c":
            return ["create", str(name), *(["--flake", flake] if flake else [])]
        case "-u":
            return ["update", *rest, *(["--restart"] if restart else [])]
        case "-r":
            return ["run", str(name)]
        case "-s":
            if rest and rest[0] == "--":
                return ["ssh", *[f"--ssh-arg={a}" for a in rest[1:]], str(name)]
            return ["ssh", str(name), "--", *rest]
        case _:
            return ["list"]


def _getopts(argv: list[str]) -> tuple[str, str | None, str | None, bool, list[str]]:
    """microvm.nix's flags in `argv`: the action flag that counts (the last), its NAME (None
    for -u and -l), -f's FLAKE, whether -R was given, and the arguments after the flags."""
    import getopt

    try:
        opts, rest = getopt.getopt(argv, "c:f:uRr:s:l")
    except getopt.GetoptError as e:
        raise UsageError(f"{e}; see microvm --help") from None
    action: tuple[str, str | None] | None = None
    flake = None
    restart = False
    for flag, value in opts:
        match flag:
            case "-f":
                flake = value
            case "-R":
                restart = True
            case "-u" | "-l":
                action = (flag, None)
            case _:
                action = (flag, value)
    if action is None:
        raise UsageError("give an action: -c NAME, -u NAME..., -r NAME, -s NAME or -l " +
                         "(see microvm --help)")
    return action[0], action[1], flake, restart, rest


if __name__ == "__main__":  # pragma: no cover
    main()
