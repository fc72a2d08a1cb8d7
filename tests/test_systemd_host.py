"""The host side under a real systemd: Debian 12 with systemd 252 as PID 1 in a container
(tests/support/hostsys.py), the package installed from a wheel into /opt/microvm and `microvm host
install`ed as docs/host.md tells a Debian user, QEMU TCG guests started by `microvm@NAME`.

Every scenario drives `systemctl`, `journalctl` and the installed `microvm` inside the
container. The guests' serial consoles go to the journal (a drop-in an administrator could
write: MICROVM_CONSOLE empty), where each boot prints `GUEST-READY tag=T mem=M`: T names the
runner (its kernel command line), M its memory, so a test sees which runner booted.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from microvm import units
from microvm.host.service import all_units
from support import REPO, hostsys, vmtest
from support.hostsys import Host
from support.netns import GUEST_DHCP

pytestmark = [pytest.mark.boot, pytest.mark.systemd]

CONTROL = "/var/lib/microvms/.control"
STATE = "/var/lib/microvms"

GUEST = r"""power_button
net_up
echo "GUEST-READY tag=$(param e2e.tag) mem=$(sed -n 's/MemTotal: *//p' /proc/meminfo)"
if param e2e.virtiofs >/dev/null; then
    mkdir -p /mnt/s && mount -t virtiofs share /mnt/s && echo "VIRTIOFS-OK $(cat /mnt/s/hello)"
fi
if param e2e.ip >/dev/null; then
    while :; do echo "HELLO-$(param e2e.tag)" | nc -l -p 22; done &
fi
while :; do sleep 1; done
"""

@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    if os.geteuid() != 0:
        pytest.skip("needs root (systemd-nspawn, overlay mounts)")
    if missing := hostsys.missing_tools():
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/setup installs them)")
    work = tmp_path_factory.mktemp("systemd-host")
    with vmtest.boot_lock():
        h = hostsys.installed_host(work, GUEST)
        try:
            yield h
        finally:
            h.close()


def make_vm(h: Host, name: str, tag: str = "A", mem: int = 256,
            params: tuple[str, ...] = (), **microvm: object) -> str:
    """A runner made with the installed `microvm generate` inside the host; its path there."""
    doc = {"hostName": name, "runtimePath": ["/usr/lib/qemu"], "microvm": {
        "kernel": f"{hostsys.ASSETS}/vmlinux", "initrdPath": f"{hostsys.ASSETS}/initrd.gz",
        "storeOnDisk": False, "mem": mem, "socket": f"{name}.sock",
        "kernelParams": ["quiet", f"e2e.tag={tag}", *params], **microvm}}
    d = f"/srv/vms/{name}"
    h.path(d).mkdir(parents=True, exist_ok=True)
    h.path(f"{d}/vm-{tag}.json").write_text(json.dumps(doc))
    h.microvm("generate", f"{d}/vm-{tag}.json", "--out", f"{d}/runner-{tag}", "--force")
    return f"{d}/runner-{tag}"


def ready_lines(h: Host, name: str, marker: str = "GUEST-READY") -> list[str]:
    return hostsys.lines_with(h.journal("-u", f"microvm@{name}.service"), marker)


def wait_ready(h: Host, name: str, seen: int, marker: str = "GUEST-READY",
               timeout: float = 90.0) -> str:
    """Wait for the (seen+1)th marker line of NAME's console; return it."""
    try:
        h.wait(f"{marker} #{seen + 1} of {name}",
               lambda: len(ready_lines(h, name, marker)) > seen, timeout)
    except AssertionError as e:
        units = [a for u in all_units(name) for a in ("-u", u)]
        raise AssertionError(f"{e}; the journal of its units:\n" +
                             h.journal("-o", "short-precise", *units)[-4000:]) from None
    return ready_lines(h, name, marker)[seen]


def failed_units(h: Host) -> list[str]:
    out = h.systemctl("list-units", "--all", "--state=failed", "--no-legend", "--plain").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def start(h: Host, name: str) -> float:
    t = time.monotonic()
    h.systemctl("start", f"microvm@{name}")
    return time.monotonic() - t


def test_installed_package_and_host_install(host: Host) -> None:
    """What `microvm host install` put on the host is the installed wheel's: the command on
    PATH, units systemd loaded, the VM user, the state directory."""
    assert host.run("sh", "-c", "command -v microvm").stdout.strip() == "/usr/local/bin/microvm"
    assert os.readlink(host.path("/usr/local/bin/microvm")).startswith(hostsys.VENV)
    assert host.prop("microvm@x.service", "LoadState") == "loaded"
    assert host.prop("microvms.target", "UnitFileState") in ("enabled", "static", "disabled")
    assert "kvm" in host.run("id", "-nG", "microvm").stdout.split()
    st = host.path(STATE).stat()
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (0, "0o755")
    # the package carries the programs its commands run (no source tree here)
    p = host.run(f"{hostsys.VENV}/bin/python", "-c",
                 "import microvm, sys; print(microvm.__file__)")
    assert p.stdout.startswith(f"{hostsys.VENV}/lib/")


def test_start_stop_restart(host: Host) -> None:
    runner = make_vm(host, "basic")
    host.microvm("create", "basic", "--runner", runner)
    took = start(host, "basic")
    assert host.state("microvm@basic") == "active"
    t = time.monotonic()
    line = wait_ready(host, "basic", 0)
    print(f"start: active after {took:.2f} s, guest ready after {time.monotonic() - t:.2f} s more")
    assert "tag=A" in line
    assert os.readlink(host.path(f"{CONTROL}/basic/booted")) == runner
    t = time.monotonic()
    host.systemctl("stop", "microvm@basic")
    print(f"stop: {time.monotonic() - t:.2f} s")
    journal = host.journal("-u", "microvm@basic.service")
    assert "reboot: Power down" in journal  # the guest powered off (ACPI power button)
    assert host.prop("microvm@basic.service", "Result") == "success"
    assert "SIGKILL" not in journal and "Killing process" not in journal
    # the helpers stop after the VM (PartOf=), a moment after `systemctl stop` returned
    host.wait("set-booted to clear booted",
              lambda: not host.path(f"{CONTROL}/basic/booted").is_symlink(), timeout=10)
    for u in all_units("basic"):
        # the default binds the loop's unit; mypy cannot infer a lambda with a default
        host.wait(f"{u} to stop", lambda u=u: host.state(u) == "inactive",  # type: ignore[misc]
                  timeout=10)
    start(host, "basic")
    wait_ready(host, "basic", 1)
    host.systemctl("restart", "microvm@basic")
    wait_ready(host, "basic", 2)
    rows = {r["name"]: r for r in json.loads(host.microvm("list", "--json").stdout)}
    assert rows["basic"]["state"] == "running" and rows["basic"]["runBy"] == "systemd"
    host.microvm("remove", "basic")
    assert failed_units(host) == []


def test_microvm_nix_paths_in_a_users_own_unit_settings(host: Host) -> None:
    """Issue 21: a user's override written for microvm.nix (an ExecStop through
    <state>/NAME/booted, a root ExecStartPost reading <state>/NAME/current) reaches the runner
    under a real systemd; the data directory is root's, its group's to write, sticky."""
    runner = make_vm(host, "compat")
    host.microvm("create", "compat", "--runner", runner)
    st = host.path(f"{STATE}/compat").stat()
    assert (st.st_uid, oct(st.st_mode & 0o7777)) == (0, "0o1775")
    assert host.run("stat", "-c", "%G", f"{STATE}/compat").stdout.strip() == "kvm"
    dropin = host.path("/etc/systemd/system/microvm@compat.service.d/90-mine.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nExecStop=\n" +
                      f"ExecStop={STATE}/%i/booted/bin/microvm-shutdown\n" +
                      "ExecStartPost=+/bin/sh -c 'readlink -f " +
                      f"{STATE}/%i/current > /run/compat-current'\n")
    host.systemctl("daemon-reload")
    try:
        start(host, "compat")
        wait_ready(host, "compat", 0)
        assert host.run("cat", "/run/compat-current").stdout.strip() == runner
        assert host.run("readlink", "-f", f"{STATE}/compat/booted").stdout.strip() == runner
        host.systemctl("stop", "microvm@compat")
        journal = host.journal("-u", "microvm@compat.service")
        assert "reboot: Power down" in journal  # through the user's ExecStop
        assert host.prop("microvm@compat.service", "Result") == "success"
    finally:
        dropin.unlink()
        host.systemctl("daemon-reload")
    host.microvm("remove", "compat")
    assert not host.path(f"{STATE}/compat/current").is_symlink()
    assert failed_units(host) == []


def test_automatic_restarts_boot_the_runner_that_ran(host: Host) -> None:
    """After a crash (kill -9 of the hypervisor) or a power-off inside the guest, systemd
    restarts the VM with the runner it ran, not with a pending update; a requested restart
    boots the update."""
    a = make_vm(host, "upd", "A", 256)
    b = make_vm(host, "upd", "B", 512)
    host.microvm("create", "upd", "--runner", a)
    start(host, "upd")
    assert "tag=A" in wait_ready(host, "upd", 0)
    out = host.microvm("update", "upd", "--runner", b).stderr
    assert "restart it to boot the new runner" in out
    # crash: the hypervisor is killed
    pid = host.prop("microvm@upd.service", "MainPID")
    host.run("kill", "-9", pid)
    line = wait_ready(host, "upd", 1)
    assert "tag=A" in line, line
    assert host.prop("microvm@upd.service", "NRestarts") == "1"
    assert os.readlink(host.path(f"{CONTROL}/upd/booted")) == a
    journal = host.journal("-u", "microvm-set-booted@upd.service")
    assert "automatic restart of upd: booting the runner it ran" in journal
    # the guest powers off by itself (here: microvm-shutdown run by hand, as the VM's user)
    host.run("sh", "-c", f"cd {STATE}/upd && exec {CONTROL}/upd/booted/bin/microvm-shutdown",
             user="microvm")
    line = wait_ready(host, "upd", 2)
    assert "tag=A" in line, line
    assert host.prop("microvm@upd.service", "NRestarts") == "2"
    rows = {r["name"]: r for r in json.loads(host.microvm("list", "--json").stdout)}
    assert rows["upd"]["runner"] == "restart pending: the new runner is installed"
    # a requested restart boots the update
    host.systemctl("restart", "microvm@upd")
    line = wait_ready(host, "upd", 3)
    assert "tag=B" in line, line
    assert int(re.findall(r"mem=(\d+)", line)[0]) > 400_000
    assert host.prop("microvm@upd.service", "NRestarts") == "0"
    rows = {r["name"]: r for r in json.loads(host.microvm("list", "--json").stdout)}
    assert rows["upd"]["runner"] == "up to date"
    # and `microvm update --restart` to A again
    host.microvm("update", "upd", "--runner", a, "--restart")
    assert "tag=A" in wait_ready(host, "upd", 4)
    host.microvm("remove", "upd")


def test_remove_while_running_leaves_nothing_failed(host: Host) -> None:
    runner = make_vm(host, "gone", params=("e2e.ip=10.231.9.2/24",),
                     interfaces=[{"type": "tap", "id": "vm-gone", "mac": "02:00:00:00:09:02"}])
    host.microvm("create", "gone", "--runner", runner, "--autostart")
    start(host, "gone")
    wait_ready(host, "gone", 0)
    assert host.state("microvm-tap-interfaces@gone") == "active"
    assert host.run("ip", "link", "show", "vm-gone", check=False).returncode == 0
    host.microvm("remove", "gone")
    assert failed_units(host) == []
    for u in all_units("gone"):
        assert host.state(u) == "inactive", u
    assert not host.path(f"{CONTROL}/gone").exists()
    assert host.run("ip", "link", "show", "vm-gone", check=False).returncode != 0
    assert host.systemctl("is-enabled", "microvm@gone", check=False).stdout.strip() != "enabled"


def test_virtiofs_vm_starts_and_survives_stop_start_cycles(host: Host) -> None:
    """virtiofsd (Debian's C one) runs in its unit's sandbox; a socket left by the last run is
    not mistaken for the new one."""
    host.path("/srv/share").mkdir(parents=True, exist_ok=True)
    host.path("/srv/share/hello").write_text("hello-from-the-host\n")
    runner = make_vm(host, "fs", params=("e2e.virtiofs=1",), shares=[{
        "proto": "virtiofs", "tag": "share", "source": "/srv/share", "mountPoint": "/mnt/s",
        "socket": "share.sock"}])
    host.microvm("create", "fs", "--runner", runner)
    start(host, "fs")
    assert "hello-from-the-host" in wait_ready(host, "fs", 0, "VIRTIOFS-OK")
    for i in range(1, 4):
        host.systemctl("stop", "microvm@fs")
        assert host.path(f"{STATE}/fs/share.sock").exists()  # virtiofsd leaves its socket
        start(host, "fs")
        wait_ready(host, "fs", i, "VIRTIOFS-OK", timeout=40)
    host.run("kill", "-9", host.prop("microvm@fs.service", "MainPID"))
    wait_ready(host, "fs", 4, "VIRTIOFS-OK", timeout=40)
    assert "seccomp_init() failed" not in host.journal("-u", "microvm-virtiofsd@fs.service")
    host.microvm("remove", "fs")
    assert failed_units(host) == []


TCP_HELLO = """
import socket, sys, time
for _ in range(100):
    try:
        with socket.create_connection((sys.argv[1], 22), timeout=2) as s:
            data = s.recv(64)
        if data:
            print(data.decode().strip())
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
"""


def _tcp_hello(h: Host, address: str) -> str:
    """What the guest's listener on port 22 says, read inside the host (python3 there)."""
    return h.run("python3", "-c", TCP_HELLO, address, timeout=60).stdout.strip()


def test_tap_vm_keeps_its_tap_across_an_automatic_restart(host: Host) -> None:
    """The tap unit makes the tap; the administrator gives it an address; a crash of the
    hypervisor restarts the VM on the same tap, address kept; stop removes the tap."""
    runner = make_vm(host, "net", params=("e2e.ip=10.231.8.2/24",),
                     interfaces=[{"type": "tap", "id": "vm-net", "mac": "02:00:00:00:08:02"}])
    host.microvm("create", "net", "--runner", runner)
    start(host, "net")
    wait_ready(host, "net", 0)
    host.run("ip", "addr", "add", "10.231.8.1/24", "dev", "vm-net")
    assert _tcp_hello(host, "10.231.8.2") == "HELLO-A"
    host.run("kill", "-9", host.prop("microvm@net.service", "MainPID"))
    wait_ready(host, "net", 1)
    addr = host.run("ip", "-4", "addr", "show", "dev", "vm-net").stdout
    assert "10.231.8.1/24" in addr, addr
    assert _tcp_hello(host, "10.231.8.2") == "HELLO-A"
    host.systemctl("stop", "microvm@net")
    host.wait("the tap unit to remove vm-net", lambda: host.run(
        "ip", "link", "show", "vm-net", check=False).returncode != 0, timeout=10)
    host.microvm("remove", "net")


def test_a_declared_network_on_a_host_without_nixos(host: Host) -> None:
    """`microvm host install`'s microvm-networks.service makes the networks of
    /etc/microvm/networks.json when a VM that joins one starts (its tap unit wants the unit and
    is ordered after it): the VM's tap is on the network's bridge and the host reaches the
    guest at its derived address through the bridge's gateway address. A changed declaration
    is applied by the unit's reload while the VM runs on. The unit's stop leaves no bridge;
    without the file it does nothing."""
    from microvm.netplan import derive

    decl: dict[str, Any] = {
        "hostName": "debian", "vms": {"dnet": [{"network": "lan"}]},
        "networks": {"lan": {"ipv4": "10.234.0.0/24", "domain": "vm.internal"}}}
    member = derive(decl).member("dnet", "lan")
    runner = make_vm(host, "dnet", params=(f"e2e.ip={member.ipv4}/24",),
                     interfaces=[{"type": "network", "network": "lan"}])
    networks = host.path("/etc/microvm/networks.json")
    networks.parent.mkdir(exist_ok=True)
    try:
        networks.write_text(json.dumps(decl))
        networks.chmod(0o644)
        host.microvm("create", "dnet", "--runner", runner)  # checked against the declaration
        start(host, "dnet")
        wait_ready(host, "dnet", 0)
        assert host.state("microvm-networks") == "active"
        assert "master mvb-lan" in host.run("ip", "link", "show", member.tap).stdout
        assert _tcp_hello(host, str(member.ipv4)) == "HELLO-A"
        # the unit as installed, with no drop-in: dnsmasq in its sandbox, as nobody
        assert "drop-in" not in host.systemctl("status", "microvm-networks",
                                               check=False).stdout.lower()
        assert host.run("ps", "-o", "user=", "-C", "dnsmasq").stdout.split() == ["nobody"]
        # a changed declaration, then a reload: applied while the VM runs on
        decl["networks"]["dmz"] = {"ipv4": "10.235.0.0/24"}
        networks.write_text(json.dumps(decl))
        pid = host.prop("microvm@dnet.service", "MainPID")
        host.systemctl("reload", "microvm-networks")
        assert host.run("ip", "link", "show", "mvb-dmz", check=False).returncode == 0
        assert host.prop("microvm@dnet.service", "MainPID") == pid
        assert "master mvb-lan" in host.run("ip", "link", "show", member.tap).stdout
        assert _tcp_hello(host, str(member.ipv4)) == "HELLO-A"
        host.systemctl("stop", "microvm@dnet", "microvm-networks")
        for bridge in ("mvb-lan", "mvb-dmz"):
            assert host.run("ip", "link", "show", bridge, check=False).returncode != 0
    finally:
        networks.unlink(missing_ok=True)
        host.microvm("remove", "dnet", check=False)
    # without a declaration the unit does nothing (its condition), and fails nothing
    host.systemctl("start", "microvm-networks")
    assert host.prop("microvm-networks.service", "ConditionResult") == "no"
    assert failed_units(host) == []


def _systemd_container_deb(h: Host) -> Path:
    """Debian's systemd-container (systemd-machined, machinectl) of the host root's systemd
    version, downloaded once with apt-get into the test cache (the root is debootstrapped
    without it)."""
    status = h.path("/var/lib/dpkg/status").read_text()
    found = re.search(r"^Package: systemd\n(?:[^\n]+\n)*?Version: (\S+)$", status, re.M)
    assert found, "no systemd in the host root"
    version = found.group(1)
    cache = vmtest.testguest.cache_dir()
    deb = cache / f"systemd-container_{version.replace(':', '%3a')}_amd64.deb"
    if not deb.is_file():
        with vmtest.locked(cache / ".systemd-container.lock"):
            r = subprocess.run(["apt-get", "download", f"systemd-container={version}"],
                               cwd=cache, capture_output=True, text=True, timeout=300)
        if r.returncode != 0 or not deb.is_file():
            pytest.skip(f"cannot download systemd-container {version}: {r.stderr.strip()}")
    return deb


def test_a_vm_that_asks_is_registered_with_systemd_machined(host: Host, tmp_path: Path) -> None:
    """microvm.registerWithMachined under a real systemd-machined (Debian's, unpacked into the
    container): the running VM is machine NAME of class vm with the machine id as its UUID,
    the hypervisor as leader and its tap as interface; a VM that does not ask is not
    registered; stopping the unit removes the machine."""
    unpacked = tmp_path / "systemd-container"
    subprocess.run(["dpkg", "-x", str(_systemd_container_deb(host)), str(unpacked)], check=True)
    # the root's /bin and /lib are links into /usr (merged /usr): copy file by file
    for f in sorted(unpacked.rglob("*")):
        if f.is_dir() and not f.is_symlink():
            continue
        rel = f.relative_to(unpacked).as_posix()
        to = host.path(("usr/" if rel.split("/")[0] in ("bin", "lib", "sbin") else "") + rel)
        to.parent.mkdir(parents=True, exist_ok=True)
        if f.is_symlink():
            to.unlink(missing_ok=True)
            to.symlink_to(f.readlink())
        else:
            shutil.copy2(f, to)
    host.systemctl("daemon-reload")
    host.systemctl("reload", "dbus")
    uuid = "8d3c0c64-0c5f-4a4e-9a6e-2f6f3c0e4b11"
    runner = make_vm(host, "mach", registerWithMachined=True, machineId=uuid,
                     interfaces=[{"type": "tap", "id": "vm-mach", "mac": "02:00:00:00:0a:02"}])
    host.microvm("create", "mach", "--runner", runner)
    host.microvm("create", "nomach", "--runner", make_vm(host, "nomach"))
    for name in ("mach", "nomach"):
        start(host, name)
        wait_ready(host, name, 0)
    show = dict(line.split("=", 1) for line in host.run(
        "machinectl", "show", "mach").stdout.splitlines() if "=" in line)
    assert {k: show.get(k) for k in ("Name", "Id", "Class", "Service", "Unit", "Leader")} == {
        "Name": "mach", "Id": uuid.replace("-", ""), "Class": "vm", "Service": "microvm.nix",
        "Unit": "microvm@mach.service", "Leader": host.prop("microvm@mach.service", "MainPID"),
    }, show
    # (machinectl show does not print the interfaces; the machine's D-Bus property holds them)
    ifindex = host.run("cat", "/sys/class/net/vm-mach/ifindex").stdout.strip()
    assert host.run("busctl", "get-property", "org.freedesktop.machine1",
                    "/org/freedesktop/machine1/machine/mach", "org.freedesktop.machine1.Machine",
                    "NetworkInterfaces").stdout.strip() == f"ai 1 {ifindex}"
    names = host.run("machinectl", "list", "--no-legend").stdout
    assert "mach" in names.split() and "nomach" not in names, names
    host.systemctl("stop", "microvm@mach")
    host.wait("machine mach to go", lambda: host.run(
        "machinectl", "show", "mach", check=False).returncode != 0, timeout=20)
    for u in all_units("mach"):  # the helpers stop a moment after the VM (PartOf=)
        host.wait(f"{u} to stop", lambda u=u: host.state(u) == "inactive",  # type: ignore[misc]
                  timeout=10)
    for name in ("mach", "nomach"):
        host.microvm("remove", name)
    assert failed_units(host) == []


def test_a_vm_that_cannot_start_gives_up_and_says_why(host: Host) -> None:
    """A runner whose hypervisor fails at once (no such kernel) is restarted every 5 s until
    the start limit, then left failed with the reason in its journal."""
    runner = make_vm(host, "broken")
    doc = json.loads(host.path("/srv/vms/broken/vm-A.json").read_text())
    doc["microvm"]["kernel"] = "/srv/assets/no-such-kernel"
    host.path("/srv/vms/broken/vm-A.json").write_text(json.dumps(doc))
    host.microvm("generate", "/srv/vms/broken/vm-A.json", "--out", runner, "--force")
    host.microvm("create", "broken", "--runner", runner)
    host.systemctl("start", "microvm@broken", check=False)
    t = time.monotonic()
    host.wait("microvm@broken to give up", lambda: "Start request repeated too quickly" in
              host.journal("-u", "microvm@broken.service"), timeout=180, interval=1.0)
    print(f"gave up after {time.monotonic() - t:.0f} s")
    assert host.state("microvm@broken") == "failed"
    # the first start and START_LIMIT_BURST - 1 automatic restarts, then one refused
    assert host.prop("microvm@broken.service", "NRestarts") == str(units.START_LIMIT_BURST)
    assert "no-such-kernel" in host.journal("-u", "microvm@broken.service")
    rows = {r["name"]: r for r in json.loads(host.microvm("list", "--json").stdout)}
    assert rows["broken"]["state"] == "failed"
    # removed, it leaves no failed unit behind
    host.microvm("remove", "broken")
    assert "microvm@broken.service" not in failed_units(host)


def test_autostart_across_a_reboot_and_clean_power_off_at_shutdown(host: Host) -> None:
    """VMs enabled with `microvm create --autostart` / `microvm enable` start at boot; at host
    shutdown each is powered off cleanly (its guest's power button), none is killed."""
    names = ("auto1", "auto2", "auto3")
    for n in names:
        host.microvm("create", n, "--runner", make_vm(host, n, "A"),
                     *(["--autostart"] if n != "auto3" else []))
    host.microvm("enable", "auto3")
    rows = {r["name"]: r for r in json.loads(host.microvm("list", "--json").stdout)}
    assert all(rows[n]["autostart"] for n in names)
    for n in names:
        start(host, n)
    for n in names:
        wait_ready(host, n, 0)
    t = time.monotonic()
    host.reboot()
    print(f"reboot: {time.monotonic() - t:.2f} s")
    # the previous boot's journal: each guest powered off, no unit killed
    before = host.journal("-b", "-1", *(f"--unit=microvm@{n}.service" for n in names))
    assert before.count("reboot: Power down") == len(names), before[-3000:]
    assert "SIGKILL" not in before and "Killing process" not in before
    t = time.monotonic()
    for n in names:
        host.wait(f"{n} ready after the reboot", lambda n=n: any(  # type: ignore[misc]
            "GUEST-READY" in line for line in hostsys.lines_with(
                host.journal("-b", "0", "-u", f"microvm@{n}.service"), "GUEST-READY")),
            timeout=120)
    print(f"all {len(names)} ready {time.monotonic() - t:.2f} s after the reboot")
    for n in names:
        assert host.state(f"microvm@{n}") == "active"
    host.microvm("disable", "auto1")
    assert host.systemctl("is-enabled", "microvm@auto1", check=False).stdout.strip() == \
        "disabled"
    for n in names:
        host.microvm("remove", n)
    assert failed_units(host) == []


def load_storm() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_storm", REPO / "bench" / "storm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eight_vms_started_together_are_all_ready_without_a_restart(host: Host) -> None:
    """A start storm (microvm.nix #317, #231): 8 VMs enabled and started by microvms.target at
    once all come up, none timed out or restarted (bench/storm.py measures the times)."""
    storm = load_storm()
    names = [f"storm{i}" for i in range(8)]
    storm.create(host, names)
    took, restarted = storm.storm(host, names)
    print(f"8 VMs ready {took:.1f} s after microvms.target started")
    assert restarted == 0
    for n in names:
        assert host.state(f"microvm@{n}") == "active", n
    assert failed_units(host) == []
    storm.stop_all(host, names)
    for n in names:
        host.microvm("remove", n)


def test_a_runner_the_vm_user_cannot_run_is_refused(host: Host) -> None:
    """Under /root (0700) the runner cannot be run by microvm: create refuses it (exit 2, the
    fix named, nothing written) instead of a unit failing with 203/EXEC; doctor checks the
    devices as microvm, not as root."""
    runner = make_vm(host, "hidden")
    host.run("cp", "-a", runner, "/root/hidden-runner")
    p = host.microvm("create", "hidden", "--runner", "/root/hidden-runner", check=False)
    assert p.returncode == 2, p.stderr
    assert "who cannot search /root" in p.stderr and "fix: chmod o+x /root" in p.stderr
    assert not host.path(f"{CONTROL}/hidden").exists()
    doctor = host.microvm("doctor", check=False).stdout
    assert "/dev/net/tun as microvm: usable by microvm" in doctor, doctor


def test_units_out_into_etc_systemd_system_keeps_what_is_there(host: Host) -> None:
    """The command that wiped /etc/systemd/system (38 entries became 2) now leaves every entry
    it did not write, and a second --force replaces only its own."""
    etc = "/etc/systemd/system"
    before = set(host.run("find", etc, "-mindepth", "1").stdout.split())
    assert len(before) > 10
    host.microvm("units", "--out", etc, "--force")
    host.microvm("units", "--out", etc, "--force")
    after = set(host.run("find", etc, "-mindepth", "1").stdout.split())
    assert before <= after
    assert f"{etc}/.microvm-units.json" in after
    # and they go again with their manifest: nothing of before is touched
    host.run("rm", "-r", f"{etc}/lib", f"{etc}/libexec", f"{etc}/.microvm-units.json")
    assert set(host.run("find", etc, "-mindepth", "1").stdout.split()) == before


def test_host_uninstall_removes_what_install_wrote(host: Host) -> None:
    """Last: `microvm host uninstall` removes exactly the installed files; VM data and the
    user stay; install brings it all back."""
    manifest = json.loads(host.path("/usr/local/lib/microvm/install.json").read_text())
    files = sorted(manifest["files"])
    host.path(f"{STATE}/keep").mkdir(parents=True, exist_ok=True)
    host.path(f"{STATE}/keep/data.img").write_text("user data\n")
    host.run(f"{hostsys.VENV}/bin/microvm", "host", "uninstall")
    for rel in files:
        assert not os.path.lexists(host.path(f"/usr/local/{rel}")), rel
    assert host.prop("microvm@x.service", "LoadState") == "not-found"
    assert host.path(f"{STATE}/keep/data.img").read_text() == "user data\n"
    assert host.run("id", "microvm", check=False).returncode == 0
    host.run(f"{hostsys.VENV}/bin/microvm", "host", "install")
    assert host.prop("microvm@x.service", "LoadState") == "loaded"


NIX_GUEST = r"""power_button
init=$(sed -n 's/.*init=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p /nix/store
mount -t erofs -o ro /dev/vda /nix/store
sh "$init"
while :; do sleep 1; done
"""


def _nixos_host(tmp_path: Path, script: str, network: bool = False) -> tuple[Host, str, Path]:
    """A host (not booted) with the host module's evaluation (NixOS stub,
    tests/nix/dropin/systemd-host.nix) installed as NixOS would: the unit directory NixOS makes
    of its units package (systemd.packages) and its systemd.services/targets definitions, with
    their wantedBy links, linked into /etc/systemd/system; its tmpfiles rules, user and
    environment.etc files; its guest runs `script`. The Nix-built runner and the declaration
    (network: the VM joins a declared network) are returned with it."""
    from support.nixeval import NIX_OPTS, NIXDIR, nix_problem

    if why := nix_problem():
        pytest.skip(why)
    assets = hostsys.guest_assets(tmp_path, script)
    expr = ("(import ./dropin/systemd-host.nix { " +
            f"python = {json.dumps(sys.executable)}; repo = {json.dumps(str(REPO))}; " +
            f'hostKernel = "{hostsys.ASSETS}/vmlinux"; ' +
            f'hostInitrd = "{hostsys.ASSETS}/initrd.gz"; network = {str(network).lower()}; }})')

    def nix(*args: str) -> str:
        p = subprocess.run([*args, *NIX_OPTS], cwd=NIXDIR, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        return p.stdout.strip().splitlines()[-1]

    units = nix("nix-build", "--no-out-link", "-E", f"{expr}.units")
    runner = nix("nix-build", "--no-out-link", "-E", f"{expr}.runner")
    settings = json.loads(json.loads(nix("nix-instantiate", "--eval", "--strict", "-E",
                                         f"{expr}.settings")))
    etc_files: dict[str, str] = json.loads(nix("nix-instantiate", "--eval", "--strict",
                                               "--json", "-E", f"{expr}.etc"))
    for name in etc_files:  # built (`network check` builds the declaration)
        nix("nix-build", "--no-out-link", "-E", f'{expr}.etc."{name}"')
    # the stand-in `microvm` a NixOS unit runs: this checkout's generator, by this Python
    binds = {hostsys.ASSETS: assets, "/nix/store": Path("/nix/store"), str(REPO): REPO}
    if not Path(sys.prefix).is_relative_to(REPO):
        binds[sys.prefix] = Path(sys.prefix)
    h = Host(tmp_path / "nixos", hostsys.root(), name="microvm-nixos", binds=binds)
    try:
        etc = h.path("/etc/systemd/system")
        for src in sorted(Path(units).rglob("*")):
            dst = etc / src.relative_to(units)
            if src.is_dir() and not src.is_symlink():
                dst.mkdir(parents=True, exist_ok=True)
            elif src.is_symlink():
                dst.symlink_to(os.readlink(src))  # the package's units; .wants links, relative
            else:
                dst.symlink_to(src)  # a unit NixOS wrote from definitions
        # microvm-networks runs the stand-in `microvm`, i.e. this checkout by this Python: where
        # those live in a place its sandbox hides (CI's clone under /tmp; a NixOS host's command
        # is in /nix/store), a drop-in shows it that place
        hidden = {"/tmp": "PrivateTmp=no", "/var/tmp": "PrivateTmp=no", "/home": "ProtectHome=no",
                  "/root": "ProtectHome=no", "/run/user": "ProtectHome=no"}
        relax = sorted({setting for place in (REPO, Path(sys.prefix))
                        for top, setting in hidden.items() if place.is_relative_to(top)})
        if relax:
            dropin = etc / "microvm-networks.service.d" / "50-test-checkout.conf"
            dropin.parent.mkdir(parents=True, exist_ok=True)
            dropin.write_text("[Service]\n" + "".join(f"{s}\n" for s in relax))
        for name, source in etc_files.items():  # NixOS links /etc files to the store
            h.path(f"/etc/{name}").parent.mkdir(parents=True, exist_ok=True)
            h.path(f"/etc/{name}").symlink_to(source)
        h.path("/etc/tmpfiles.d").mkdir(parents=True, exist_ok=True)
        h.path("/etc/tmpfiles.d/10-microvm.conf").write_text(settings["tmpfiles"])
        h.console_in_journal()
        # users.users / users.groups of the host module, made before boot as NixOS does
        for argv in (["groupadd", "--system", "-f", settings["group"]],
                     ["useradd", "--system", "--gid", settings["group"], "--home-dir", STATE,
                      "--no-create-home", settings["user"]]):
            subprocess.run([argv[0], "--root", str(h.merged), *argv[1:]], check=True)
    except BaseException:
        h.close()
        raise
    return h, runner, Path(etc_files.get("microvm/networks.json", "/nonexistent"))


def test_nixos_host_module_units_under_systemd(host: Host, tmp_path: Path) -> None:
    """The host module's evaluation (NixOS stub, tests/nix/dropin/systemd-host.nix), installed
    as NixOS would: the unit directory NixOS makes of its units package (systemd.packages) and
    its systemd.services/targets definitions, with their wantedBy links, linked into
    /etc/systemd/system; its tmpfiles rules and user. At boot
    install-microvm-nixvm installs the Nix-built runner, microvm@nixvm boots it (its store
    disk), a crash restarts it, a stop powers it off."""
    h, runner, _ = _nixos_host(tmp_path, NIX_GUEST)
    try:
        h.boot()  # microvms.target (wanted by multi-user.target) starts the declared VM
        h.wait("the Nix-built guest's toplevel", lambda: "MICROVM-NIX-TOPLEVEL nixvm" in
               h.journal("-u", "microvm@nixvm.service"), timeout=90)
        assert h.state("install-microvm-nixvm") == "active"
        assert os.readlink(h.path(f"{CONTROL}/nixvm/current")) == runner
        assert os.readlink(h.path(f"{CONTROL}/nixvm/booted")) == runner
        st = h.path(f"{STATE}/nixvm").stat()  # root's, for the VM's group, sticky
        assert (st.st_uid, oct(st.st_mode & 0o7777)) == (0, "0o1775")
        assert os.readlink(h.path(f"{STATE}/nixvm/current")) == "../.control/nixvm/current"
        # a unit of its own (NixOS definitions), the declared VM's drop-in on top; restarted
        # when the host changes its runner (restartIfChanged, NixOS writes nothing for it)
        cat = h.run("systemctl", "cat", "microvm@nixvm").stdout
        assert "# /etc/systemd/system/microvm@nixvm.service\n" in cat
        assert "/microvm@nixvm.service.d/50-declared.conf\n" in cat
        assert "X-RestartIfChanged" not in cat
        h.run("kill", "-9", h.prop("microvm@nixvm.service", "MainPID"))
        h.wait("the restart after the crash", lambda: h.journal(
            "-u", "microvm@nixvm.service").count("MICROVM-NIX-TOPLEVEL nixvm") >= 2, timeout=90)
        h.systemctl("stop", "microvm@nixvm")
        journal = h.journal("-u", "microvm@nixvm.service")
        assert "reboot: Power down" in journal and "SIGKILL" not in journal
        assert failed_units(h) == []
    finally:
        h.close()


NET_GUEST = "power_button\n" + GUEST_DHCP + r"""
for d in /sys/class/net/*; do [ "${d##*/}" = lo ] || dev=${d##*/}; done
ip link set "$dev" up
udhcpc -i "$dev" -s /udhcpc.sh -q -n -t 20 -T 2 || echo "E2E-NO-LEASE"
echo "E2E-NAME $(nslookup nixvm.vm.internal | tr '\n' ' ')"
while :; do sleep 1; done
"""


def test_nixos_host_networks_under_systemd(host: Host, tmp_path: Path) -> None:
    """A NixOS host with a declared network (microvm.host.networks) and a VM that joins it,
    installed as NixOS would (_nixos_host). At boot microvm-networks makes the network from
    /etc/microvm/networks.json before the VM starts (the VM requires it): its tap joins the
    bridge, the host's dnsmasq gives the VM its derived address and name. After a flush of
    the ruleset (another firewall's reload) the unit's reload puts the tables back; a stop of
    the unit stops the VM first, then leaves no bridge, table or dnsmasq behind."""
    from microvm.host import network
    from microvm.netplan import derive

    h, _, declaration = _nixos_host(tmp_path, NET_GUEST, network=True)
    try:
        h.boot()
        member = derive(json.loads(declaration.read_text())).member("nixvm", "lan")
        try:
            h.wait("the VM's lease", lambda: "E2E-LEASE" in h.journal("-u", "microvm@nixvm"),
                   timeout=120)
        except AssertionError as e:
            raise AssertionError(f"{e}; the journal of the units:\n" + h.journal(
                "-o", "short-precise", "-u", "microvm-networks", "-u", "microvm@nixvm",
                "-u", "microvm-tap-interfaces@nixvm")[-4000:]) from None
        journal = h.journal("-u", "microvm@nixvm")
        assert f"E2E-LEASE ip={member.ipv4} router=10.233.0.1 dns=10.233.0.1 " + \
            "domain=vm.internal" in journal, journal[-3000:]
        assert str(member.ipv4) in hostsys.lines_with(journal, "E2E-NAME")[0]
        assert h.state("microvm-networks") == "active"
        assert "master mvb-lan" in h.run("ip", "link", "show", member.tap).stdout
        # dnsmasq serves the VM from the unit's sandbox, as nobody
        assert h.run("ps", "-o", "user=", "-C", "dnsmasq").stdout.split() == ["nobody"]
        assert h.prop("microvm-networks.service", "ProtectSystem") == "strict"

        def tables() -> list[str]:
            return [t for t in h.run("nft", "list", "tables").stdout.splitlines()
                    if t.endswith(f" {network.TABLE}")]

        assert len(tables()) == len(network.FAMILIES)
        h.run("nft", "flush", "ruleset")
        assert tables() == []
        h.systemctl("reload", "microvm-networks")
        assert len(tables()) == len(network.FAMILIES)
        h.systemctl("stop", "microvm-networks")
        assert h.state("microvm@nixvm") == "inactive"
        journal = h.journal("-u", "microvm@nixvm")
        assert "reboot: Power down" in journal and "SIGKILL" not in journal, journal[-3000:]
        assert h.run("ip", "link", "show", "mvb-lan", check=False).returncode != 0
        assert tables() == []
        assert h.run("pgrep", "-x", "dnsmasq", check=False).returncode != 0
        assert failed_units(h) == []
    finally:
        h.close()


def _network_file(definition: dict[str, Any]) -> str:
    """A systemd.network.networks definition as NixOS writes its .network file (nixpkgs
    nixos/modules/system/boot/networkd.nix networkToUnit: [Match] of matchConfig, [Link] of
    linkConfig, [Network] of networkConfig with the domains joined, then Address=, Gateway=,
    DNS= lines; systemd-lib's attrsToSection writes booleans as true/false). Only what the
    host and guest modules set."""
    def section(attrs: dict[str, Any]) -> list[str]:
        return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in attrs.items()]

    network = dict(definition.get("networkConfig", {}))
    if definition.get("domains"):
        network["Domains"] = " ".join(definition["domains"])
    link = definition.get("linkConfig")
    return "\n".join(["[Match]", *section(definition["matchConfig"]), "",
                      *(["[Link]", *section(link), ""] if link else []), "[Network]",
                      *section(network),
                      *(f"{key}={v}" for key, option in (("Address", "address"),
                                                         ("Gateway", "gateway"), ("DNS", "dns"))
                        for v in definition.get(option, []))]) + "\n"


def test_the_nixos_guests_static_network_under_systemd_networkd(tmp_path: Path) -> None:
    """What the NixOS guest module writes for a VM the host declares on a network (static:
    IPv4 and IPv6 addresses, gateways, DNS, search domain; matched by MAC), as NixOS writes it
    into /etc/systemd/network, applied by a real systemd-networkd (Debian 12's, 252) in a
    container: the interface with the VM's MAC gets exactly that; another interface, of the
    same type, is left alone."""
    from support.nixeval import nix_json, nix_problem

    if why := nix_problem():
        pytest.skip(why)
    [(name, web)] = nix_json("(import ./host-network-eval.nix { inherit python repo; })"
                             )["networks"]["web"].items()
    mac = web["matchConfig"]["MACAddress"]
    h = Host(tmp_path / "networkd", hostsys.root(), name="microvm-networkd")
    try:
        h.path(f"/etc/systemd/network/{name}.network").parent.mkdir(parents=True, exist_ok=True)
        h.path(f"/etc/systemd/network/{name}.network").write_text(_network_file(web))
        h.boot()
        # the guest's NIC (its MAC) and another of the same kind, each with a peer up
        for nic, peer, address in (("eth0", "p0", mac), ("eth1", "p1", "02:00:00:00:77:01")):
            h.run("ip", "link", "add", nic, "address", address, "type", "veth", "peer", peer)
            h.run("ip", "link", "set", peer, "up")
        h.systemctl("start", "systemd-networkd")
        h.wait("networkd to configure eth0", lambda: "configured" in h.run(
            "networkctl", "list", "eth0", "--no-legend").stdout, timeout=60)
        v4, v6 = web["address"]
        addrs = h.run("ip", "-o", "addr", "show", "dev", "eth0").stdout
        assert f"inet {v4} " in addrs, addrs
        h.wait("the IPv6 address", lambda: f"inet6 {v6} " in h.run(
            "ip", "-o", "-6", "addr", "show", "dev", "eth0").stdout, timeout=30)
        gw4, gw6 = web["gateway"]
        assert f"default via {gw4} dev eth0" in h.run("ip", "route").stdout
        assert f"default via {ipaddress.ip_address(gw6)} dev eth0" in h.run(
            "ip", "-6", "route").stdout
        status = h.run("networkctl", "status", "eth0").stdout
        assert re.search(rf"DNS: {re.escape(web['dns'][0])}\b", status), status
        assert "Search Domains: vm.internal" in status, status
        assert "unmanaged" in h.run("networkctl", "list", "eth1", "--no-legend").stdout
        assert "inet " not in h.run("ip", "-o", "addr", "show", "dev", "eth1").stdout
    finally:
        h.close()


def test_the_nixos_hosts_networkd_leaves_the_bridges_and_taps_alone(tmp_path: Path) -> None:
    """A NixOS host with declared networks tells systemd-networkd to leave the bridges and taps
    alone (its 05-microvm-networks .network, as NixOS writes it): with a catch-all .network
    beside it, a real systemd-networkd configures another interface (the control) and leaves
    a network's bridge and a member's tap unmanaged."""
    from microvm import netplan
    from support.nixeval import nix_json, nix_problem

    if why := nix_problem():
        pytest.skip(why)
    unmanaged = nix_json("(import ./host-network-eval.nix { inherit python repo; })"
                         )["unmanaged"]["networkd"]
    h = Host(tmp_path / "networkd-host", hostsys.root(), name="microvm-networkd-host")
    try:
        conf = h.path("/etc/systemd/network")
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "05-microvm-networks.network").write_text(_network_file(unmanaged))
        (conf / "99-catch-all.network").write_text(
            "[Match]\nName=*\n\n[Network]\nAddress=192.0.2.9/24\n")
        h.boot()
        bridge, tap = f"{netplan.BRIDGE_PREFIX}lan", f"{netplan.TAP_PREFIX}0123456789a"
        h.run("ip", "link", "add", bridge, "type", "bridge")
        for nic, peer in ((tap, "p0"), ("eth7", "p1")):
            h.run("ip", "link", "add", nic, "type", "veth", "peer", peer)
            h.run("ip", "link", "set", peer, "up")
        h.systemctl("start", "systemd-networkd")
        h.wait("the catch-all to configure eth7", lambda: "inet 192.0.2.9/24" in h.run(
            "ip", "-o", "addr", "show", "dev", "eth7").stdout, timeout=60)
        for name in (bridge, tap):
            assert "unmanaged" in h.run("networkctl", "list", name, "--no-legend").stdout, name
            assert "192.0.2.9" not in h.run("ip", "-o", "addr", "show", "dev", name).stdout
    finally:
        h.close()
