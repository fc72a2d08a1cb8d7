"""The corpus of microvm.nix configurations for tests/test_upstream_corpus.py.

Read from upstream's source at test time (so new handbook text is picked up):
  - every ```nix (or untagged) block of doc/src/*.md, keyed `FILE.md#N` (N counts the blocks of
    that file from 0);
  - examples/*.nix, keyed `examples/FILE.nix`;
  - flake-template/flake.nix, keyed `flake-template/flake.nix`;
  - the example configurations upstream's flake.nix declares (`nixosConfigurations`, the
    `*-example` packages), keyed `flake.nix`;
  - real users' configurations, reduced to their microvm part, from this repository's
    tests/nix/users/*.nix (each file names its source), keyed `users/FILE.nix`, with
    USER_FIXES where a stand-in needs one.

How a block is evaluated is decided by its text (a flake, a module, or bindings to be wrapped
in a module; for the host when it sets microvm.vms, microvm.autostart or microvm.host.*, or no
microvm.* option at all, as the handbook's host network set-ups; else for a guest) unless FIXES
says otherwise; a block that cannot be evaluated
is listed in SKIP with the reason. Every fix names the handbook text it works around.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

Kind = str  # "guest", "host", "flake", "skip"


@dataclass(frozen=True)
class Fix:
    kind: Kind | None = None  # None: decided from the text
    # (old, new) replacements of the block's text before it is evaluated
    replace: tuple[tuple[str, str], ...] = ()
    why: str = ""
    # the guest's system and the host's package set (vfkit: a Linux guest on macOS)
    system: str = "x86_64-linux"
    # Nix bindings the block may refer to (the reader's own definitions it leaves out)
    bindings: str = ""


# blocks that are not configurations at all, or need what a stand-in cannot give
SKIP: dict[str, str] = {
    "faq.md#5": "an error message (untagged block), not Nix",
    "ssh-deploy.md#0": "a shell command (untagged block), not Nix",
    "host.md#1": "fetches microvm.nix with builtins.fetchGit (the network); the module it "
    + "imports is the host module the other host snippets use",
    "packages.md#0": "a flake output line (`packages.x86_64-linux.my-microvm = "
    + "self.nixosConfigurations...declaredRunner`), not a NixOS configuration; the runner it "
    + "names is what the flake template's package is, compared there",
}

FIXES: dict[str, Fix] = {
    "declarative.md#0": Fix(
        "host",
        (("{ microvm, ... }:", "{ ... }: let microvm = self.nixosModules; in"),),
        "the handbook's module takes microvm.nix's nixosModules as a module argument named "
        + "`microvm` (a specialArgs the reader would pass); bound here to the side's modules",
    ),
    "declarative.md#1": Fix(
        "host",
        (("flake = self;",
          'flake = { outPath = "/nix/store/00000000000000000000000000000000-source"; '
          + "nixosConfigurations.my-microvm = guestOf self; };"),),
        "`flake = self` is the reader's own flake, whose nixosConfigurations.my-microvm the host "
        + "builds; here a flake with that one configuration (a minimal guest)",
    ),
    "cpu-emulation.md#0": Fix(
        "flake",
        (("environment.systemPackages = with pkgs; [ cowsay htop ];", ""),),
        "the guest's packages (cowsay, htop) are not in the stand-in package set and are no "
        + "microvm.* option",
    ),
    "vfkit-rosetta.md#0": Fix(
        "guest",
        (('hypervisor = "vfkit";',
          'hypervisor = "vfkit"; vmHostPackages = nixpkgs.legacyPackages.aarch64-darwin;'),),
        "vfkit runs on macOS: an aarch64-linux guest with macOS host packages, as upstream's "
        + "flake.nix builds its vfkit example",
        "aarch64-linux",
    ),
    "vfkit-rosetta.md#1": Fix(
        "guest",
        (("pkgsCross.gnu64.hello", "hello"),),
        "pkgsCross is not in the stand-in package set (the packages are not compared)",
    ),
    "faq.md#1": Fix(
        "host",
        bindings='self = { lib.addresses.machineId = { my-microvm = '
        + '"a6a0b7c5e3f94c1b8d0e2f4a6b8c0d1e"; }; };',
        why="the host's tmpfiles rules read `self.lib.addresses.machineId`, the reader's own "
        + "flake output; here one VM's machine id",
    ),
    "advanced-network.md#3": Fix(
        "host",
        bindings='my-addresses = { http-reverse-proxy.ip4 = "10.0.0.80"; '
        + 'https-reverse-proxy.ip4 = "10.0.0.443"; };',
        why="the NAT rules read `my-addresses`, the reader's own attribute set; here two "
        + "addresses",
    ),
    "faq.md#2": Fix(
        "host",
        (("${pkgs.jq}/bin/jq", "jq"),),
        "a host script; jq is not in the stand-in package set",
    ),
    "faq.md#3": Fix(
        "host",
        (("${builtins.storePath <nixpkgs>}", "/nix/store/nixpkgs"),),
        "`builtins.storePath <nixpkgs>` needs nixpkgs in the store; a host setting either way",
    ),
}

# more configurations made from a block: what its text offers as optional, left out
# (key -> (the block's key, how it is changed))
VARIANTS: dict[str, tuple[str, Fix]] = {
    "declarative.md#1~without-updateFlake": ("declarative.md#1", Fix(
        "host",
        (*FIXES["declarative.md#1"].replace, ('updateFlake = "git+file:///etc/nixos";', "")),
        FIXES["declarative.md#1"].why + "; without the optional `updateFlake` (the comment above "
        + "it: where `microvm -u` updates from later on)",
    )),
}

HOST_OPTIONS = re.compile(r"microvm\.(vms|autostart|host\.|stateDir)|microvm\.host\b")


@dataclass(frozen=True)
class Snippet:
    key: str
    kind: Kind
    text: str  # the Nix file the test writes: `env: { NAME = system; ... }`
    source: str  # where it comes from, for messages
    fix: str = ""
    systems: list[str] = field(default_factory=list)


def handbook_blocks(src: Path) -> list[tuple[str, str, str]]:
    """(key, info string, text) of every fenced block of doc/src/*.md."""
    out = []
    for md in sorted((src / "doc" / "src").glob("*.md")):
        n = 0
        lines = md.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
            if m:
                indent, info = m.group(1), m.group(2)
                j = i + 1
                body = []
                while j < len(lines) and not re.match(rf"^{indent}```\s*$", lines[j]):
                    body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
                    j += 1
                if info in ("nix", ""):
                    out.append((f"{md.name}#{n}", info, "\n".join(body) + "\n"))
                    n += 1
                i = j + 1
            else:
                i += 1
    return out


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
                     for line in text.splitlines()).strip()


def is_expression(text: str) -> bool:
    """A module expression (an attribute set, a function, a let) rather than bindings."""
    t = _strip_comments(text)
    return bool(re.match(r"^(\{|let\b|[A-Za-z_][\w'-]*\s*:|\(|import\b)", t))


# a microvm.* option set (`microvm.x = ...`, `microvm = { ... }`), not a string or an attribute
# that only contains the word (a bridge named "microvm", users.users.microvm)
GUEST_OPTIONS = re.compile(r"(?m)(^|[\s{;(\[])microvm\s*(\.|=\s*\{)")


def guess_kind(text: str) -> Kind:
    code = _strip_comments(text)
    if re.search(r"\boutputs\s*=", code):
        return "flake"
    if HOST_OPTIONS.search(code) or not GUEST_OPTIONS.search(code):
        return "host"
    return "guest"


# a minimal guest for `flake = self` (declarative.md)
GUEST_OF = """guestOf = flake: env.nixosSystem { modules = [ env.microvm.nixosModules.microvm
    { networking.hostName = "my-microvm"; } ]; };"""


def wrap(kind: Kind, text: str, system: str = "x86_64-linux", bindings: str = "") -> str:
    """The file for one handbook block: `env: { NAME = system; }`."""
    if kind == "flake":
        return (
            "env: with env.scope; let\n  flake = (\n" + text + "\n  );\n"
            + "  outputs = flake.outputs { self = outputs; inherit (env) nixpkgs microvm; };\n"
            + "in outputs.nixosConfigurations\n"
        )
    module = text if is_expression(text) else (
        "{ config, lib, pkgs, ... }: {\n" + text + "\n}"
    )
    modules = {
        "guest": "env.microvm.nixosModules.microvm",
        "host": "env.microvm.nixosModules.host",
    }[kind]
    return (
        "env: with env.scope; let\n  " + GUEST_OF + "\n  " + bindings
        + "\n  snippet = (\n" + module + "\n  );\n"
        + "in { " + kind + f" = env.nixosSystem {{ system = \"{system}\"; modules = [ " + modules
        + " snippet ]; }; }\n"
    )


EXAMPLES: dict[str, tuple[str, tuple[tuple[str, str], ...], str]] = {
    # file -> (how it is called, text fixes, why)
    "microvms-host.nix": ("(FILE { inherit (env) nixpkgs; self = env.microvm; "
                          + "system = \"x86_64-linux\"; })", (), ""),
    "qemu-vnc.nix": ("(FILE { inherit (env) nixpkgs; self = env.microvm; "
                     + "system = \"x86_64-linux\"; })", (), ""),
    "graphics.nix": ("(FILE { inherit (env) nixpkgs; self = env.microvm; "
                     + "system = \"x86_64-linux\"; })", (), ""),
    "no-flake-microvm.nix": (
        "(FILE { inherit (env) pkgs; })",
        (("../nixos-modules/microvm", "env.microvm.nixosModules.microvm"),
         ("nixos.config.microvm.declaredRunner", "nixos")),
        "imports upstream's module by a relative path (here: the side's module) and returns "
        + "the runner (here: the evaluated system)",
    ),
}


def example_snippets(src: Path) -> list[Snippet]:
    out = []
    for path in sorted((src / "examples").glob("*.nix")):
        key = f"examples/{path.name}"
        if path.name not in EXAMPLES:
            raise AssertionError(f"{key}: a new upstream example; say in EXAMPLES how to call it")
        call, fixes, why = EXAMPLES[path.name]
        text = path.read_text()
        for old, new in fixes:
            assert old in text, f"{key}: fix-up text {old!r} not found (upstream changed?)"
            text = text.replace(old, new)
        # a fixed example is inlined (its text changed); the others are imported from upstream
        value = f"(\n{text}\n)" if fixes else f"import {path}"
        kind = "host" if "microvm.vms" in text else "guest"
        out.append(Snippet(key, kind, f"env: let FILE = {value}; in {{ example = {call}; }}\n",
                           str(path), why))
    return out


def template_snippet(src: Path) -> Snippet:
    path = src / "flake-template" / "flake.nix"
    return Snippet("flake-template/flake.nix", "flake", wrap("flake", path.read_text()),
                   str(path))


def flake_examples_snippet(src: Path) -> Snippet:
    """Upstream's flake.nix: its nixosConfigurations (the examples its packages build), with the
    side's modules and lib as `self`'s."""
    text = (
        "env: let\n"
        + f"  flake = import {src}/flake.nix;\n"
        + "  outputs = flake.outputs { self = outputs // { inherit (env.microvm) nixosModules "
        + "overlay; lib = env.microvm.lib // { inherit (upstreamLib) hypervisors "
        + "hypervisorsWithNetwork; }; }; inherit (env) nixpkgs; spectrum = null; };\n"
        + f"  upstreamLib = import {src}/lib {{ inherit (env) lib; }};\n"
        + "in outputs.nixosConfigurations\n"
    )
    return Snippet("flake.nix", "flake", text, f"{src}/flake.nix",
                   "upstream's lib gives the list of hypervisors on both sides (the names of "
                   + "the examples)")


USERS = Path(__file__).resolve().parents[1] / "nix" / "users"

# users' files that need something the stand-ins do not give (file name -> fix)
USER_FIXES: dict[str, Fix] = {
    "gshipunov-nix-config-minime-host.nix": Fix(
        None,
        (("{ inputs, ... }:", "{ ... }:"),),
        "`inputs` is a specialArgs of the user's flake and `inputs.self` the flake itself, whose "
        + "nixosConfigurations.auth and .radicale the host builds; bound here to a flake with "
        + "those two configurations (minimal guests)",
        bindings='inputs.self = { outPath = "/nix/store/00000000000000000000000000000000-source"; '
        + "nixosConfigurations = env.lib.genAttrs [ \"auth\" \"radicale\" ] (name: "
        + "env.nixosSystem { modules = [ env.microvm.nixosModules.microvm "
        + "{ networking.hostName = name; } ]; }); };",
    ),
}


def user_snippets(users: Path = USERS) -> list[Snippet]:
    """Real users' configurations (tests/nix/users/*.nix): each a module, for the host
    (FILE-host.nix) or a guest (FILE-guest.nix)."""
    out = []
    for path in sorted(users.glob("*.nix")):
        text = path.read_text()
        source = text.splitlines()[0]
        assert source.startswith("# Source: "), f"{path}: does not start by naming its source"
        fix = USER_FIXES.get(path.name, Fix())
        for old, new in fix.replace:
            assert old in text, f"{path.name}: fix-up text {old!r} not found"
            text = text.replace(old, new)
        assert path.stem.endswith(("-host", "-guest")), f"{path.name}: name it *-host or *-guest"
        kind = fix.kind or ("host" if path.stem.endswith("-host") else "guest")
        out.append(Snippet(f"users/{path.name}", kind, wrap(kind, text, fix.system, fix.bindings),
                           str(path), fix.why))
    stale = set(USER_FIXES) - {p.name for p in users.glob("*.nix")}
    assert not stale, f"USER_FIXES for files tests/nix/users/ no longer has: {stale}"
    return out


def snippets(src: Path) -> tuple[list[Snippet], dict[str, str]]:
    """The corpus, and the blocks left out with the reason."""
    out: list[Snippet] = []
    skipped: dict[str, str] = {}
    blocks = {key: text for key, _info, text in handbook_blocks(src)}
    variants = [(key, block, fix) for key, (block, fix) in VARIANTS.items() if block in blocks]
    for key, block, fix in [(key, key, FIXES.get(key, Fix())) for key in blocks] + variants:
        if key in SKIP:
            skipped[key] = SKIP[key]
            continue
        text = blocks[block]
        for old, new in fix.replace:
            assert old in text, f"{key}: fix-up text {old!r} not found (upstream changed?)"
            text = text.replace(old, new)
        kind = fix.kind or guess_kind(text)
        out.append(Snippet(key, kind, wrap(kind, text, fix.system, fix.bindings),
                           f"doc/src/{block}", fix.why))
    out += example_snippets(src)
    out.append(template_snippet(src))
    out.append(flake_examples_snippet(src))
    out += user_snippets()
    return out, skipped
