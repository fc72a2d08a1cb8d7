"""`microvm host install` and `microvm host uninstall`: the host side on a systemd host without
NixOS (Debian 12 and others), written as a managed tree (managed.py) under a prefix:

    {prefix}/lib/systemd/system/*            the units (units.build), with the link
                                             multi-user.target.wants/microvms.target enabling
                                             the target (systemd reads /usr/local/lib/systemd)
    {prefix}/lib/tmpfiles.d/microvm.conf     the state directory and .control (root, 0755)
    {prefix}/lib/sysusers.d/microvm.conf     the VM user (system user, home: the state
                                             directory, member of the group; the group is
                                             created when missing)
    {prefix}/libexec/microvm/*               the helpers the units run
    {prefix}/bin/microvm                     symlink to the `microvm` command of the Python
                                             environment that ran the install (a venv's)
    {prefix}/lib/microvm/install.json        the manifest: what was written, and the settings

Then it runs, unless --root is given (a scratch tree: nothing runs):

    systemd-sysusers {prefix}/lib/sysusers.d/microvm.conf
    systemd-tmpfiles --create {prefix}/lib/tmpfiles.d/microvm.conf
    systemctl daemon-reload                  (only where systemd is the service manager)

Running it again upgrades in place with the settings given, or else those recorded by the
last install (so an upgrade keeps the state directory, user and group). Uninstall removes what
the manifest records and is unchanged, keeps the changed files (naming them), the state
directory (the VMs' data) and the user, and reloads systemd. It refuses while a microvm@ unit is
active, unless --force.
"""

from __future__ import annotations

import os
import shlex
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, managed, process, units
from ..errors import HostError
from ..managed import Entry, Link
from ..render import render
from .service import systemd_present
from .state import check_dirs, check_tree

DEFAULT_PREFIX = units.PREFIX
MANIFEST = "lib/microvm/install.json"
SYSUSERS = "lib/sysusers.d/microvm.conf"
BIN = units.COMMAND_LINK
COMMAND = "microvm"
_UNITS = units.UnitOptions()  # the units' defaults: state directory, user, group

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    """What an install is made of (recorded in the manifest as `settings`)."""

    prefix: str = DEFAULT_PREFIX
    state_dir: str = _UNITS.state_dir
    user: str = _UNITS.user
    group: str = _UNITS.group

    def to_json(self) -> dict[str, str]:
        return {"prefix": self.prefix, "stateDir": self.state_dir, "user": self.user,
                "group": self.group}

    @property
    def libexec(self) -> str:
        return f"{self.prefix.rstrip('/')}/{units.LIBEXEC_DIR}"

    def path(self, rel: str) -> str:
        """Where a file of the tree is on the host (what units and messages name)."""
        return f"{self.prefix.rstrip('/')}/{rel}"


# what an install without --state-dir, --user or --group uses when no earlier one is recorded
DEFAULTS = {k: v for k, v in Settings().to_json().items() if k != "prefix"}


def check_prefix(prefix: str) -> str:
    """--prefix: absolute, and fit to be written into unit files (the helpers' path)."""
    return units.safe_path("--prefix", prefix)


def tree_root(prefix: str, root: Path | None) -> Path:
    """Where the tree is written: prefix, below --root when given."""
    return Path(root or "/") / prefix.lstrip("/")


def console_script() -> Path:
    """The `microvm` command of the Python environment running this (a venv's bin/microvm)."""
    script = Path(sysconfig.get_path("scripts")) / COMMAND
    if not script.is_file():
        raise HostError(f"no `{COMMAND}` command beside this Python ({script} is missing): " +
                        "install the package with pip (into a venv, e.g. /opt/microvm) and run " +
                        "that venv's bin/microvm")
    return script


def check_trusted(script: Path) -> None:
    """Root will run {prefix}/bin/microvm: the command it leads to and this package must be
    such that nobody but root could have changed them (host.state's trust rules)."""
    package = Path(__file__).resolve().parent.parent
    check_dirs(script)
    check_tree(package)


def previous(prefix: str, root: Path | None) -> dict[str, str]:
    """The settings the last install recorded (empty when none)."""
    found = managed.Tree(tree_root(prefix, root), MANIFEST).read()
    if found is None:
        return {}
    return {k: v for k, v in found.settings.items() if isinstance(v, str) and k in DEFAULTS}


def resolve(prefix: str, root: Path | None, state_dir: str | None, user: str | None,
            group: str | None) -> Settings:
    """The settings of this run: as given, else as the last install recorded, else defaults."""
    prefix = check_prefix(prefix)
    before = {**DEFAULTS, **previous(prefix, root)}
    return Settings(prefix=prefix,
                    state_dir=os.path.abspath(state_dir or before["stateDir"]),
                    user=user or before["user"], group=group or before["group"])


def build(settings: Settings, script: Path | None) -> dict[str, Entry]:
    """The installed tree, relative to the prefix."""
    opts = units.UnitOptions(state_dir=settings.state_dir, user=settings.user,
                             group=settings.group, libexec_dir=settings.libexec,
                             command=settings.path(BIN))
    files: dict[str, Entry] = dict(units.build(opts, settings.libexec))
    files[SYSUSERS] = (render("units/microvm.sysusers.j2", version=__version__,
                              user=settings.user, group=settings.group,
                              state_dir=settings.state_dir), 0o644)
    if script is not None:
        files[BIN] = Link(str(script))
    return files


def setup_argv(settings: Settings) -> list[list[str]]:
    """What install runs after writing the files (the host side of sysusers and tmpfiles)."""
    return [["systemd-sysusers", settings.path(SYSUSERS)],
            ["systemd-tmpfiles", "--create", settings.path(units.TMPFILES)]]


RELOAD = ["systemctl", "daemon-reload"]


def install(settings: Settings, root: Path | None, echo: Echo) -> managed.Outcome:
    if root is None and os.geteuid() != 0:
        raise HostError("`microvm host install` writes below " + settings.prefix + " and " +
                        "creates a user: run it as root (or with --root DIR to write the files " +
                        "into a scratch tree and run nothing)")
    script = console_script()
    check_trusted(script)
    link: Path | None = script
    if os.path.abspath(script) == settings.path(BIN):
        echo(f"{settings.path(BIN)} is this installation's own command: not linked")
        link = None
    top = tree_root(settings.prefix, root)
    outcome = managed.write(top, MANIFEST, build(settings, link),
                            writer=f"microvm host install {__version__}",
                            settings=settings.to_json())
    if outcome.recovered:
        echo(f"an interrupted install was {outcome.recovered} first")
    echo(f"{top}: {len(outcome.written)} files and links written, {len(outcome.removed)} " +
         f"removed, {len(outcome.unchanged)} unchanged (recorded in {top / MANIFEST})")
    echo(f"state directory {settings.state_dir}, VMs run as {settings.user}:{settings.group}")
    if root is not None:
        commands = [*setup_argv(settings), RELOAD]
        echo(f"--root given: not running {'; '.join(shlex.join(c) for c in commands)}")
        return outcome
    for argv in [*setup_argv(settings), *([RELOAD] if systemd_present() else [])]:
        echo("+ " + shlex.join(argv))
        process.run(argv, capture=False)
    if not systemd_present():
        echo("systemd is not the service manager here: not running systemctl daemon-reload " +
             "(systemd reads the units when it starts)")
    return outcome


def active_vms() -> list[str]:
    """microvm@NAME units systemd has active (or starting, stopping, reloading)."""
    result = process.run(["systemctl", "list-units", "--plain", "--no-legend", "--no-pager",
                          "--state=active,activating,deactivating,reloading",
                          "microvm@*.service"])
    return sorted(line.split()[0] for line in result.stdout.splitlines() if line.strip())


def uninstall(prefix: str, root: Path | None, force: bool, echo: Echo) -> managed.Outcome:
    prefix = check_prefix(prefix)
    if root is None and os.geteuid() != 0:
        raise HostError(f"`microvm host uninstall` removes files below {prefix}: run it as " +
                        "root (or with --root DIR for a scratch tree)")
    top = tree_root(prefix, root)
    ask_systemd = root is None and systemd_present()
    running = active_vms() if ask_systemd else []
    if running and not force:
        raise HostError(f"VMs are running: {', '.join(running)}; stop them first (microvm " +
                        "shutdown NAME), or pass --force: they would keep running without " +
                        "unit files until they stop, and not start again")
    outcome = managed.remove(top, MANIFEST)
    if outcome.recovered:
        echo(f"an interrupted install was {outcome.recovered} first")
    if outcome.manifest is None:
        echo(f"nothing to remove: no {top / MANIFEST}")
        return outcome
    echo(f"{top}: {len(outcome.removed)} files and links removed")
    for kept in outcome.kept:
        echo(f"kept {kept.path}: {kept.message}")
    if running:
        echo(f"left running without unit files: {', '.join(running)}")
    settings = {**DEFAULTS, **outcome.manifest.settings}
    echo(f"kept: the state directory {settings['stateDir']} (the VMs' data) and the user " +
         f"{settings['user']}; remove them by hand if you want them gone")
    if ask_systemd:
        echo("+ " + shlex.join(RELOAD))
        process.run(RELOAD, capture=False)
    elif root is not None:
        echo("--root given: not running " + shlex.join(RELOAD))
    return outcome
