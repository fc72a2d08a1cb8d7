"""`microvm doctor`: what this host can run, and what to fix.

Every check yields Findings (ok / warn / fail, with a fix). Nothing is changed on the host; the
programs run are `qemu-system-* -accel kvm`, for a moment, to tell whether KVM really works,
and access.py's probe, as the VMs' user, to tell what it may open and run (the devices, each
VM's runner): root being able to is not enough, microvm@.service runs VMs as that user.
"""

from __future__ import annotations

import fcntl
import grp
import ipaddress
import json
import os
import platform
import pwd
import shutil
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from .. import process
from ..capabilities import CAPABILITIES, Feature, Hypervisor
from ..document import from_document
from ..errors import HostError, ProcessError
from ..hypervisors import backend
from ..hypervisors.qemu import KVM_MODULES
from ..layout import Program
from ..netplan import Plan
from . import access, defaults, network
from .state import COMPAT_LINKS, Runner, VMDir, compat_link_ok, list_vms

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    detail: str
    fix: str = ""


def _arch() -> str:
    machine = platform.machine()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)


def _system(hv: Hypervisor) -> str:
    """This host's Nix system where `hv` runs on it, else the first one it runs on."""
    here = f"{_arch()}-{'darwin' if platform.system() == 'Darwin' else 'linux'}"
    platforms = CAPABILITIES[hv].platforms
    return here if here in platforms else sorted(platforms)[0]


def hypervisor_programs(hv: Hypervisor) -> tuple[str, ...]:
    """The programs a runner of `hv` starts on this host (besides the shell tools), as the
    backend writes them: argv[0] of the hypervisor and of its control requests, for a VM with
    a control socket and a balloon where `hv` has them."""
    system = _system(hv)
    caps = CAPABILITIES[hv]
    kernel = "/nix/store/k/Image" if system.endswith("-darwin") else "/nix/store/k/kernel"
    vm = from_document({"hostName": "doctor", "system": system, "microvm": {
        "hypervisor": str(hv), "kernel": kernel, "initrdPath": "/nix/store/i/initrd",
        "storeOnDisk": False,
        "socket": "doctor.sock" if caps.supports(Feature.CONTROL_SOCKET, system) else None,
        "balloon": caps.supports(Feature.BALLOON, system)}})
    return backend(hv).programs(vm)


def _open(path: str) -> tuple[int | None, str]:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC), ""
    except OSError as e:
        return None, e.strerror or str(e)


FIX_TCG = "QEMU falls back to emulation (TCG, much slower); other hypervisors cannot run"


def check_kvm(qemu: str | None) -> Iterator[Finding]:
    """Whether VMs get KVM: /dev/kvm can be opened and makes a VM, the runner's own test finds
    a KVM module loaded, and QEMU (when found) starts a VM with it."""
    version = yield from _kvm_api()
    if version is None:
        return
    flags = _cpu_flags()
    if flags is not None and not ({"vmx", "svm"} & flags) and _arch() == "x86_64":
        note = "the CPU reports neither vmx nor svm (a nested or emulated KVM); "
    else:
        note = ""
    modules = KVM_MODULES.get(_arch(), ())
    if modules and not any(os.path.isdir(m) for m in modules):
        # the runner's own test (hypervisors/qemu.py): without them it emulates
        loaded = sorted(p.name for p in Path("/sys/module").glob("kvm_*"))
        yield Finding(Level.WARN, "/dev/kvm",
                      f"present but unusable: {note}none of " +
                      f"{', '.join(Path(m).name for m in modules)} is loaded " +
                      f"(loaded: {', '.join(loaded) or 'none'}); an ordinary guest kernel " +
                      "fails under it, so QEMU runners emulate (TCG)",
                      "use a host with VT-x/AMD-V (or nested virtualisation) and load " +
                      "kvm_intel or kvm_amd; " + FIX_TCG)
    elif qemu is None:
        yield Finding(Level.OK if not note else Level.WARN, "/dev/kvm",
                      f"{note}KVM API {version}, a VM can be created by {_me()} (QEMU not " +
                      "found to try more)")
    else:
        yield _try_qemu(qemu, note)


def _kvm_api() -> Generator[Finding, None, int | None]:
    """The KVM API version of /dev/kvm once it made a VM; None (after a finding) if not."""
    if not os.path.exists("/dev/kvm"):
        yield Finding(Level.WARN, "/dev/kvm", "missing: no hardware virtualisation",
                      "enable VT-x/AMD-V (or nested virtualisation) and load kvm_intel/kvm_amd; "
                      + FIX_TCG)
        return None
    fd, err = _open("/dev/kvm")
    if fd is None:
        yield Finding(Level.WARN, "/dev/kvm", f"present but cannot be opened: {err}",
                      "add the VM user to the group owning /dev/kvm (usually kvm)")
        return None
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
        os.close(fcntl.ioctl(fd, KVM_CREATE_VM, 0))
    except OSError as e:
        yield Finding(Level.WARN, "/dev/kvm", f"present but KVM_CREATE_VM fails: {e.strerror}",
                      FIX_TCG)
        return None
    finally:
        os.close(fd)
    return version


def _try_qemu(qemu: str, note: str) -> Finding:
    """Start QEMU with -accel kvm, stopped, and quit it: does KVM really work?"""
    probe = [qemu, "-machine", "none,accel=kvm" if _arch() != "x86_64"
             else "microvm,accel=kvm", "-cpu", "host", "-m", "16M", "-nodefaults",
             "-no-user-config", "-display", "none", "-S", "-monitor", "stdio"]
    try:
        result = process.run(probe, input="quit\n", check=False, timeout=30)
    except ProcessError as e:
        return Finding(Level.WARN, "/dev/kvm", f"cannot try QEMU with KVM: {e}")
    if result.returncode == 0:
        return Finding(Level.OK, "/dev/kvm",
                       f"{note}usable by {_me()} (QEMU starts a VM with -accel kvm)")
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    why = lines[0].strip() if lines else f"exit code {result.returncode}"
    return Finding(Level.WARN, "/dev/kvm",
                   f"present but unusable: {note}QEMU with -accel kvm fails: {why}",
                   "use a host with working (nested) virtualisation; " + FIX_TCG)


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def check_device(path: str, what: str, fix: str, level: Level = Level.WARN) -> Finding:
    if not os.path.exists(path):
        return Finding(level, path, f"missing: no {what}", fix)
    fd, err = _open(path)
    if fd is None:
        if err and "No such device" in err:
            return Finding(level, path, f"present but without a driver: {err}", fix)
        return Finding(level, path, f"present but cannot be opened: {err}", fix)
    os.close(fd)
    return Finding(Level.OK, path, f"{what}: usable by {_me()}")


def _me() -> str:
    """Who this process is, for findings about what it can do."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _account(user: str, group: str) -> tuple[access.Account | None, Finding | None]:
    """The account VMs run as, or a finding saying why what it can do cannot be checked."""
    try:
        acct, _ = access.account(user, group)  # a missing group: check_accounts says so
    except HostError as e:
        return None, Finding(Level.WARN, f"devices as {user}", f"not checked: {e}",
                             f"create it (useradd --system --gid {group} {user})")
    if not access.can_probe(acct):
        return None, Finding(Level.WARN, f"devices as {user}",
                             "not checked: only root can act as another user",
                             "run microvm doctor as root")
    return acct, None


def check_devices_as(user: str, group: str,
                     devices: Sequence[str] = access.DEVICES) -> Iterator[Finding]:
    """Each device (of those present) opened read-write as `user` with Group=`group`, as the
    hypervisor opens it under microvm@.service: usable by root is not usable by it."""
    acct, why = _account(user, group)
    if acct is None:
        assert why is not None
        yield why
        return
    for device in devices:
        if not os.path.exists(device):
            continue  # root's finding says it is missing
        try:
            problem = access.device_problem(acct, device)
        except (HostError, ProcessError) as e:
            yield Finding(Level.WARN, f"{device} as {user}", f"cannot check: {e}")
            continue
        if problem is None:
            yield Finding(Level.OK, f"{device} as {user}", f"usable by {user}")
        else:
            why_not, fix = problem
            yield Finding(Level.WARN, f"{device} as {user}", f"not usable by {user}: {why_not}",
                          fix)


def check_binaries(path: str | None = None) -> Iterator[Finding]:
    for hv in Hypervisor:
        if hv is Hypervisor.VFKIT and platform.system() != "Darwin":
            yield Finding(Level.OK, f"hypervisor {hv}", "macOS only; not applicable here")
            continue
        wanted = hypervisor_programs(hv)
        missing = [n for n in wanted if shutil.which(n, path=path) is None]
        found = [shutil.which(n, path=path) for n in wanted if n not in missing]
        if missing:
            yield Finding(Level.WARN, f"hypervisor {hv}",
                          f"missing on PATH: {', '.join(missing)}",
                          f"install {hv} to run VMs with microvm.hypervisor = \"{hv}\"")
        else:
            yield Finding(Level.OK, f"hypervisor {hv}", ", ".join(str(f) for f in found))


def check_tools(path: str | None = None) -> Iterator[Finding]:
    tools = [
        ("virtiofsd", Level.WARN, "virtiofs shares",
         "install virtiofsd (or put the directory of QEMU's one in the VM document's runtimePath)"),
        ("socat", Level.FAIL, "shutdown, balloon, console and ssh", "install socat"),
        ("curl", Level.WARN, "shutdown and balloon of cloud-hypervisor, firecracker and vfkit " +
         "(their REST sockets)", "install curl"),
        ("ip", Level.WARN, "tap and macvtap interfaces", "install iproute2"),
        ("ssh", Level.WARN, "microvm ssh", "install an OpenSSH client"),
        ("nix", Level.WARN, "microvm create/update --flake", "install Nix"),
    ]
    for name, level, used_for, fix in tools:
        found = shutil.which(name, path=path)
        if found:
            yield Finding(Level.OK, name, found)
        else:
            yield Finding(level, name, f"missing on PATH (needed for {used_for})", fix)


def check_accounts(user: str, group: str) -> Iterator[Finding]:
    try:
        g = grp.getgrnam(group)
    except KeyError:
        yield Finding(Level.WARN, f"group {group}", "does not exist",
                      f"create it (groupadd --system {group}) and give it /dev/kvm")
        g = None
    try:
        u = pwd.getpwnam(user)
    except KeyError:
        yield Finding(Level.WARN, f"user {user}", "does not exist (the units run VMs as it)",
                      f"useradd --system --gid {group} {user}")
        u = None
    if g is not None and u is not None:
        member = u.pw_gid == g.gr_gid or user in g.gr_mem
        yield Finding(Level.OK if member else Level.WARN, f"user {user}",
                      f"{'in' if member else 'not in'} group {group}",
                      "" if member else f"usermod -aG {group} {user}")
    if g is not None and os.path.exists("/dev/kvm"):
        st = os.stat("/dev/kvm")
        if st.st_gid != g.gr_gid:
            owner = _group_name(st.st_gid)
            yield Finding(Level.WARN, "/dev/kvm group", f"owned by group {owner}, not {group}",
                          f"chgrp {group} /dev/kvm (udev: KERNEL==\"kvm\", GROUP=\"{group}\")")
    if os.geteuid() != 0:
        mine = {_group_name(x) for x in os.getgroups()}
        if group not in mine:
            yield Finding(Level.WARN, "you", f"not in group {group}: `microvm run` cannot use " +
                          "KVM", f"usermod -aG {group} $USER, then log in again")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_runner_as(vm: VMDir, target: Path, user: str, group: str) -> Iterator[Finding]:
    """Whether the VM's user (VMDir.account: its account.json, else an older layout's
    directory owner, else `user`, `group`) can run its runner as microvm@NAME.service does:
    through the `current` link (ExecStart= goes through root's directory of the VM), the runner
    tree and what it reads."""
    user, group = vm.account(user, group)
    check = f"vm {vm.name} as {user}"
    acct, why = _account(user, group)
    if acct is None:
        assert why is not None
        yield Finding(why.level, check, why.detail, why.fix)
        return
    try:
        problem = access.runner_problem(acct, Runner(vm.current_link), vm.name, target)
    except (HostError, ProcessError, OSError) as e:
        yield Finding(Level.WARN, check, f"cannot check: {e}")
        return
    if problem is None:
        yield Finding(Level.OK, check, f"can run {target}")
    else:
        yield Finding(Level.FAIL, check, *problem)


def check_state(root: Path, user: str = defaults.USER,
                group: str = defaults.GROUP) -> Iterator[Finding]:
    if not root.exists():
        yield Finding(Level.WARN, "state directory", f"{root} does not exist yet",
                      "microvm create makes it")
        return
    if not os.access(root, os.W_OK):
        yield Finding(Level.WARN, "state directory", f"{root} is not writable for you",
                      "run as root or pass --state-dir")
    else:
        yield Finding(Level.OK, "state directory", str(root))
    for vm in list_vms(root):
        runner = vm.runner("current")
        if runner is None or not runner.valid:
            yield Finding(Level.FAIL, f"vm {vm.name}", "current does not point at a runner",
                          f"microvm update {vm.name}, or microvm remove {vm.name}")
            continue
        yield from check_runner_as(vm, runner.path, user, group)
        yield from check_data_dir(vm)
        hv = runner.hypervisor
        try:
            names = _runner_programs(runner)
        except HostError as e:
            yield Finding(Level.FAIL, f"vm {vm.name}", str(e),
                          f"microvm update {vm.name}, or regenerate its runner")
            continue
        if names is None:
            continue
        runtime = _runtime_path(runner)
        search = os.pathsep.join([*runtime, os.environ.get("PATH", "")])
        missing = [n for n in names if shutil.which(n, path=search) is None]
        uses_virtiofsd = runner.bin(Program.VIRTIOFSD_RUN).is_file()
        if uses_virtiofsd and shutil.which("virtiofsd", path=search) is None:
            missing.append("virtiofsd")
        if missing:
            yield Finding(Level.FAIL, f"vm {vm.name}", f"{hv}: missing {', '.join(missing)}",
                          "install them or add their directory to the VM document's runtimePath")
        else:
            yield Finding(Level.OK, f"vm {vm.name}", f"{hv}: binaries found")


def check_data_dir(vm: VMDir) -> Iterator[Finding]:
    """A data directory still in microvm.nix's layout, or an older one of this project: the VM's
    user owns it, or microvm.nix's `current`/`booted` there are not root's links (SECURITY.md)."""
    try:
        st = os.lstat(vm.path)
    except FileNotFoundError:
        return
    wrong = [n for n in COMPAT_LINKS if not compat_link_ok(vm, n)]
    mine = (0, os.geteuid())
    if st.st_uid not in mine or wrong:
        how = (f"microvm.vms.{vm.name}: install-microvm-{vm.name} at the next switch"
               if vm.declared is not None else f"microvm update {vm.name}")
        yield Finding(Level.WARN, f"vm {vm.name}",
                      f"{vm.path} is in an older layout (" + (
                          f"owned by uid {st.st_uid}" if st.st_uid not in mine
                          else "no root links " + "/".join(wrong)) +
                      "): scripts using its current/booted may not find the runner",
                      f"{how} takes it back")


def _runner_programs(runner: Runner) -> tuple[str, ...] | None:
    """The programs a VM's runner starts: its hypervisor as launch.json records it (a HostError
    when that is malformed) and the control tools of its backend; None when neither can be
    told (a runner of an unknown hypervisor)."""
    launch = runner.launch()
    model = runner.model()
    if model is None:
        return launch.programs if launch is not None else None
    be = backend(model.hypervisor)
    if launch is None:
        return be.programs(model)
    return tuple(dict.fromkeys([*launch.programs, *be.control_programs(model)]))


def _runtime_path(runner: Runner) -> list[str]:
    """The runner's runtimePath, from its document as written (also one this version's model
    would refuse: the programs it needs are looked up all the same)."""
    value = (runner.document() or {}).get("runtimePath", [])
    return [str(x) for x in value] if isinstance(value, list) else []


def diagnose(root: Path, user: str = defaults.USER, group: str = defaults.GROUP,
             path: str | None = None, networks: Plan | None = None) -> list[Finding]:
    qemu = shutil.which(f"qemu-system-{_arch()}", path=path)
    out: list[Finding] = [*check_kvm(qemu)]
    out.append(check_device("/dev/net/tun", "tap devices", "modprobe tun", Level.WARN))
    out.append(check_device("/dev/vhost-net", "vhost-net acceleration",
                            "modprobe vhost_net (interfaces with tap.vhost = true need it)"))
    out.append(check_device("/dev/vhost-vsock", "vsock (microvm ssh, readiness over vsock)",
                            "modprobe vhost_vsock (VMs with microvm.vsock.cid need it)"))
    out += check_devices_as(user, group)
    out += check_binaries(path)
    out += check_tools(path)
    out += check_accounts(user, group)
    out += check_state(root, user, group)
    if networks is not None:
        out += check_networks(networks)
    return out


def worst(findings: Sequence[Finding]) -> Level:
    levels = {f.level for f in findings}
    return Level.FAIL if Level.FAIL in levels else Level.WARN if Level.WARN in levels \
        else Level.OK



# -- declared networks: what breaks one at run time (issue 23) --------------------------------

BR_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
TUN = Path("/dev/net/tun")
OUR_TABLES = {(family, network.TABLE) for family in network.FAMILIES}


def check_networks(plan: Plan) -> Iterator[Finding]:
    """What, elsewhere on the host, breaks the declared networks of `plan`: another table's
    forward drop (Docker's), br_netfilter sending bridged traffic through it, a route that
    takes a network's subnet elsewhere (a VPN), /dev/net/tun closed to the users of rootless
    VMs; one ok finding when nothing is in the way."""
    found = list(_network_problems(plan))
    yield from found or [Finding(Level.OK, "networks",
                                 f"nothing in the way of {len(plan.networks)} declared")]


def _network_problems(plan: Plan) -> Iterator[Finding]:
    if not plan.networks:
        return
    names = ", ".join(n.name for n in plan.networks)
    yield from _forward_drops(names)
    try:
        br_nf = BR_NF.read_text().strip() == "1"
    except OSError:
        br_nf = False
    if br_nf:
        yield Finding(Level.WARN, "networks: br_netfilter",
                      f"{BR_NF} is 1: traffic between VMs of one network ({names}) passes the " +
                      "ip/inet forward hooks, where another table's drop blocks it and a " +
                      "port forward's hairpin meets the network's isolation",
                      "sysctl net.bridge.bridge-nf-call-iptables=0 (unless Docker's own " +
                      "bridges need it; then accept the mvb- bridges in its table)")
    yield from _shadowing_routes(plan)
    try:
        mode = TUN.stat().st_mode
    except OSError:
        yield Finding(Level.WARN, "networks: /dev/net/tun", "missing: no tap can be made",
                      "modprobe tun")
        return
    if not mode & 0o006:
        yield Finding(Level.WARN, "networks: /dev/net/tun",
                      f"mode {oct(mode & 0o777)}: only root (and its group) may open it, so a " +
                      "VM run by another user cannot make or open a tap, nor pasta a " +
                      "namespace's", "chmod 0666 /dev/net/tun (as distributions ship it)")


def _nft_ruleset() -> list[dict[str, object]]:
    try:
        out = process.run(["nft", "-j", "list", "ruleset"], check=False, capture=True)
    except (ProcessError, OSError):
        return []
    if out.returncode != 0:
        return []
    try:
        data = json.loads(out.stdout)
    except ValueError:
        return []
    items = data.get("nftables", []) if isinstance(data, dict) else []
    return [i for i in items if isinstance(i, dict)]


def _forward_drops(names: str) -> Iterator[Finding]:
    for item in _nft_ruleset():
        chain = item.get("chain")
        if not isinstance(chain, dict) or chain.get("hook") != "forward" or \
                chain.get("policy") != "drop":
            continue
        table = (str(chain.get("family")), str(chain.get("table")))
        if table in OUR_TABLES:
            continue
        yield Finding(Level.WARN, "networks: forward drop",
                      f"table {table[0]} {table[1]}, chain {chain.get('name')}: drops what it " +
                      "does not accept (policy drop; Docker's is one), and an accept in " +
                      f"microvm's table does not override it: VMs of {names} lose NAT and " +
                      "forwards", "accept the mvb- bridges in that table (Docker: iptables -I " +
                      "DOCKER-USER -i mvb-NAME -j ACCEPT and -o mvb-NAME -j ACCEPT)")


def _routes(version: int) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                         str, str]]:
    """The host's routes of one IP version (every table) as (destination, as written, dev),
    without the default, local, broadcast, multicast and link-local ones."""
    try:
        out = process.run(["ip", "-j", f"-{version}", "route", "show", "table", "all"],
                          check=False, capture=True)
        routes = json.loads(out.stdout or "[]")
    except (ProcessError, OSError, ValueError):
        return []
    found = []
    for r in routes:
        dst, dev = r.get("dst"), r.get("dev")
        if not isinstance(dst, str) or dst == "default" or \
                r.get("type") in ("local", "broadcast", "multicast", "anycast") or \
                dst.startswith(("fe80:", "ff00:")):
            continue
        try:
            net = ipaddress.ip_network(dst if "/" in dst else
                                       f"{dst}/{32 if version == 4 else 128}", strict=False)
        except ValueError:
            continue
        found.append((net, dst, str(dev)))
    return found


def _shadowing_routes(plan: Plan) -> Iterator[Finding]:
    """A route over a declared subnet by an interface other than the network's bridge (the
    routes of each IP version read once)."""
    routes = {v: _routes(v) for v in (4, 6)}
    for n in plan.networks:
        for subnet in (s for s in (n.ipv4, n.ipv6) if s is not None):
            for net, dst, dev in routes[subnet.version]:
                if dev != n.bridge and net.overlaps(subnet):
                    yield Finding(Level.WARN, f"networks: {n.name}",
                                  f"route {dst} dev {dev} overlaps {subnet} (networks.{n.name}): " +
                                  "traffic to those VMs may leave by it (a VPN's route?)",
                                  f"declare another subnet for {n.name}, or narrow that route")
