"""The handbook in docs/ cannot drift from the code: its code blocks are run, its links resolve.

Fenced blocks are marked by their info string:

- ```nix         a guest module; evaluated with the guest module, tests/nix/stub.nix and the
                 stand-in packages (tests/nix/eval.nix), then the document it yields is given to
                 `microvm validate`.
- ```nix host    a host module; evaluated with nix/modules/host.nix and the same stand-ins; no
                 failed assertion, and every declared VM's runner derivation instantiates.
- ```nix flake   a flake.nix; parsed (flakes fetch nixpkgs, which this machine cannot).
- ```console     `$ command` lines, run by bash in a scratch directory holding a link to
                 examples/, with MICROVM_STATE_DIR=<scratch>/state and the venv's `microvm` on
                 PATH. Lines after a command are output that must appear in what it printed
                 (`<scratch>` stands for the scratch directory). A command that should fail
                 ends in `# exits N`.
- ```sh          commands not run (root, a real boot, systemd, nixpkgs): the page must say
                 "not run by the tests" so a reader knows.
- ```text, ```mermaid   output and diagrams, not run.

The stub declares only the NixOS options the modules touch, with `networking` and `systemd`
free-form: NixOS options outside microvm.* in a snippet (networking.nat, systemd.network) are
evaluated but not type-checked against NixOS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import REPO

DOCS = REPO / "docs"
NIXDIR = REPO / "tests" / "nix"
# the pages scripts/regen makes (tools/regen.py; tests/test_regen.py checks they are current)
GENERATED = {"hypervisors.md", "microvm-nix-differences.md", "options.md"}
KINDS = {"nix", "nix host", "nix flake", "console", "sh", "text", "mermaid"}
NOT_RUN = "not run by the tests"
FENCE = re.compile(r"^```(.*)$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"docs/{self.page}:{self.line}"


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def blocks_of(page: Path) -> list[Block]:
    out: list[Block] = []
    kind: str | None = None
    start = indent = 0
    body: list[str] = []
    for n, line in enumerate(page.read_text().splitlines(), 1):
        m = FENCE.match(line.strip())
        if m and kind is None:
            kind, start, body = m.group(1).strip(), n, []
            indent = len(line) - len(line.lstrip())
        elif line.strip() == "```" and kind is not None:
            out.append(Block(page.name, start, kind, "\n".join(body) + "\n"))
            kind = None
        elif kind is not None:
            body.append(line[indent:] if line[:indent].isspace() else line)
    assert kind is None, f"docs/{page.name}:{start}: unterminated code block"
    return out


def all_blocks(kind: str) -> list[Block]:
    return [b for p in pages() if p.name not in GENERATED for b in blocks_of(p) if b.kind == kind]


def ids(blocks: list[Block]) -> list[str]:
    return [str(b) for b in blocks]


# -- structure ----------------------------------------------------------------------------------

def test_every_block_says_what_to_do_with_it() -> None:
    handwritten = [p for p in pages() if p.name not in GENERATED]
    assert len(handwritten) >= 9
    for page in handwritten:
        for b in blocks_of(page):
            assert b.kind in KINDS, f"{b}: code block marked {b.kind!r}; use one of {sorted(KINDS)}"
        if any(b.kind == "sh" for b in blocks_of(page)):
            assert NOT_RUN in " ".join(page.read_text().split()), \
                f"docs/{page.name} has commands that are not run but does not say so"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_links_between_docs_resolve() -> None:
    checked = 0
    for page in pages():
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            assert dest.exists(), f"docs/{page.name}: link to {target} does not resolve"
            if anchor and dest.suffix == ".md":
                headings = [slug(h) for h in re.findall(r"^#+ (.*)$", dest.read_text(), re.M)]
                assert anchor in headings, f"docs/{page.name}: no heading #{anchor} in {path}"
            checked += 1
    assert checked > 20


def test_option_reference_examples_validate() -> None:
    """Each example of docs/options.md is accepted by the validator, on some hypervisor."""
    sys.path.insert(0, str(REPO / "tools"))
    import gen_options
    from microvm.capabilities import CAPABILITIES, Hypervisor
    from microvm.document import from_document
    from microvm.errors import ValidationError

    checked = 0
    wrong = []
    for option in gen_options.schema_options():
        if not option.example_value:
            continue  # the document's own fields (hostName, system, ...)
        refusals = []
        for hv in Hypervisor:
            microvm = {"hypervisor": str(hv), "kernel": "bzImage", "storeDisk": "store.img",
                       **option.example_value}
            platforms = CAPABILITIES[Hypervisor(microvm["hypervisor"])].platforms
            doc = {"hostName": "web", "system": sorted(platforms)[-1], "microvm": microvm}
            try:
                from_document(doc)
                break
            except ValidationError as e:
                refusals.append(f"{hv}: {e}")
        else:
            wrong.append(f"{option.path}: example `{option.example}` refused everywhere:\n  "
                         + "\n  ".join(refusals))
        checked += 1
    assert not wrong, "\n".join(wrong)
    assert checked > 80


def test_every_documented_option_exists() -> None:
    """Option names in the prose of the hand-written pages are options of the reference."""
    reference = (DOCS / "options.md").read_text()
    known = set(re.findall(r"`(microvm\.[\w.*-]+)`", reference))
    prefixes = {k.rsplit(".", 1)[0] for k in known}
    for page in pages():
        if page.name in GENERATED:
            continue
        for name in re.findall(r"`(microvm\.[a-zA-Z][\w.*-]*)", page.read_text()):
            name = re.sub(r"\.\d+\.", ".*.", name.rstrip("."))
            if name.startswith(("microvm.vms", "microvm.host.")) \
                    or name in ("microvm.autostart", "microvm.stateDir"):
                continue  # host options (nix/modules/host.nix), checked by the host snippets
            if name.startswith(("microvm.nixosModules.", "microvm.templates.")):
                continue  # flake outputs, checked by test_flake_snippet_parses
            assert name in known or name in prefixes, f"docs/{page.name}: unknown option {name}"


# -- Nix snippets -------------------------------------------------------------------------------

def nix_problem() -> str | None:
    if shutil.which("nix-instantiate") is None:
        return "nix is not installed"
    r = subprocess.run(["nix-instantiate", "--eval", "-E", "(import <nixpkgs/lib>).version"],
                       capture_output=True, text=True, env=nix_env())
    return None if r.returncode == 0 else "<nixpkgs/lib> is not on NIX_PATH"


def nix_env() -> dict[str, str]:
    env = dict(os.environ)
    if "nixpkgs=" not in env.get("NIX_PATH", "") and Path("/opt/nixpkgs-lib").is_dir():
        env["NIX_PATH"] = "nixpkgs=/opt/nixpkgs-lib"
    return env


def nix_eval(expr: str, snippet: Block, tmp_path: Path) -> str:
    if why := nix_problem():
        pytest.skip(why)
    config = tmp_path / "snippet.nix"
    config.write_text("{ module =\n" + snippet.text + "; }\n")
    r = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json",
                        "--arg", "python", json.dumps(sys.executable),
                        "--arg", "repo", json.dumps(str(REPO)),
                        "--arg", "configuration", str(config), "-E", expr],
                       cwd=NIXDIR, capture_output=True, text=True, timeout=300, env=nix_env())
    assert r.returncode == 0, f"{snippet} does not evaluate:\n{snippet.text}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.parametrize("snippet", all_blocks("nix"), ids=ids(all_blocks("nix")))
def test_guest_snippet_evaluates(snippet: Block, tmp_path: Path) -> None:
    out = nix_eval("{ python, repo, configuration }: (import ./eval.nix " +
                   "{ inherit python repo configuration; }).json", snippet, tmp_path)
    doc = tmp_path / "vm.json"
    doc.write_text(json.loads(out))
    r = subprocess.run([sys.executable, "-m", "microvm.cli", "validate", str(doc)],
                       capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO / "generator")})
    assert r.returncode == 0, f"{snippet}: microvm validate refuses its document:\n{r.stderr}"


HOST_EVAL = """{ python, repo, configuration }:
let
  lib = import <nixpkgs/lib>;
  pkgs = import ./pkgs-standin.nix { inherit lib python repo; };
  evaluated = lib.evalModules {
    modules = [ ./stub.nix ../../nix/modules/host.nix { _module.args.pkgs = pkgs; }
                (import configuration).module ];
  };
  inherit (evaluated) config;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
  if failed != [ ] then throw "failed assertions: ${lib.concatStringsSep "; " failed}"
  else {
    runners = lib.mapAttrs (_: vm: vm.config.config.microvm.declaredRunner.drvPath)
      (lib.filterAttrs (_: vm: vm.config != null) config.microvm.vms);
    units = map (p: p.drvPath) config.systemd.packages;
    networking = config.networking;
  }
"""


@pytest.mark.parametrize("snippet", all_blocks("nix host"), ids=ids(all_blocks("nix host")))
def test_host_snippet_evaluates(snippet: Block, tmp_path: Path) -> None:
    result = json.loads(nix_eval(HOST_EVAL, snippet, tmp_path))
    assert result["units"], f"{snippet}: the host module built no units"


@pytest.mark.parametrize("snippet", all_blocks("nix flake"), ids=ids(all_blocks("nix flake")))
def test_flake_snippet_parses(snippet: Block, tmp_path: Path) -> None:
    if shutil.which("nix-instantiate") is None:
        pytest.skip("nix is not installed")
    f = tmp_path / "flake.nix"
    f.write_text(snippet.text)
    r = subprocess.run(["nix-instantiate", "--parse", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, f"{snippet}: {r.stderr}"
    for output in re.findall(r"microvm\.(nixosModules\.\w+|templates\.\w+)", snippet.text):
        assert output.split(".")[1] in (REPO / "flake.nix").read_text(), \
            f"{snippet}: flake.nix has no {output}"


# -- commands -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    line: str
    expected: list[str]
    exit_code: int


def commands(block: Block) -> list[Command]:
    out: list[Command] = []
    for raw in block.text.splitlines():
        if raw.startswith("$ "):
            m = re.search(r"\s+# exits (\d+)$", raw)
            line = raw[2:m.start()] if m else raw[2:]
            out.append(Command(line, [], int(m.group(1)) if m else 0))
        elif raw.strip():
            assert out, f"{block}: output before the first `$ ` command"
            out[-1].expected.append(raw.rstrip())
    assert out, f"{block}: a console block without `$ ` commands"
    return out


@pytest.mark.parametrize("block", all_blocks("console"), ids=ids(all_blocks("console")))
def test_console_commands_run(block: Block, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "examples").symlink_to(REPO / "examples")
    env = {**os.environ, "MICROVM_STATE_DIR": str(scratch / "state"), "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for cmd in commands(block):
        r = subprocess.run(["bash", "-c", cmd.line], cwd=scratch, capture_output=True, text=True,
                           env=env, timeout=120)
        said = (r.stdout + r.stderr).replace(str(scratch), "<scratch>")
        assert r.returncode == cmd.exit_code, \
            f"{block}: `{cmd.line}` exited {r.returncode}, not {cmd.exit_code}:\n{said}"
        for want in cmd.expected:
            assert want.strip() in said, f"{block}: `{cmd.line}` did not print {want!r}:\n{said}"
