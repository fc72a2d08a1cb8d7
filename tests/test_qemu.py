"""QEMU argv: the choices the backend makes (machine, acceleration, devices), asserted exactly."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
from microvm.document import from_document
from microvm.errors import ValidationError
from microvm.hypervisors import Accel, RunContext
from microvm.hypervisors.qemu import Qemu

CTX = RunContext(runner_dir="/runner")


def argv(accel: Accel = Accel.KVM, system: str = "x86_64-linux", **microvm: Any) -> list[str]:
    doc = {"hostName": "q", "system": system,
           "microvm": {"kernel": "/k", "storeOnDisk": False, **microvm}}
    return Qemu().command(from_document(doc), CTX, accel)


def value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_microvm_machine_under_kvm_and_tcg() -> None:
    kvm = argv(Accel.KVM)
    tcg = argv(Accel.TCG)
    assert value(kvm, "-machine") == ("microvm,accel=kvm,acpi=on,pcie=off,pic=off,pit=off," +
                                      "rtc=on,usb=off,mem-merge=on")
    assert value(tcg, "-machine") == ("microvm,accel=tcg,acpi=on,pcie=off,pic=on,pit=on," +
                                      "rtc=on,usb=off")
    assert value(kvm, "-cpu") == "host,+x2apic,-sgx"
    assert value(tcg, "-cpu") == "max"
    assert value(kvm, "-append") == "console=ttyS0 reboot=t panic=-1"
    assert value(tcg, "-append") == "console=ttyS0 reboot=t panic=-1 tsc_early_khz=2000000"
    for a in (kvm, tcg):
        assert a[0] == "qemu-system-x86_64"
        assert {"-nodefaults", "-no-user-config", "-no-reboot"} <= set(a)
        assert value(a, "-qmp") == "unix:q.sock,server=on,wait=off"
        assert value(a, "-global") == "virtio-mmio.force-legacy=false"
        assert "virtio-rng-device" in values(a, "-device")


def test_user_kernel_params_come_last_and_tsc_is_not_doubled() -> None:
    tcg = argv(Accel.TCG, kernelParams=["init=/init", "tsc_early_khz=1000000"])
    assert value(tcg, "-append") == ("console=ttyS0 reboot=t panic=-1 init=/init " +
                                     "tsc_early_khz=1000000")


def test_cpu_model_means_emulation_only() -> None:
    doc = {"hostName": "q", "microvm": {"kernel": "/k", "storeOnDisk": False, "cpu": "qemu64"}}
    launch = Qemu().launch(from_document(doc), CTX)
    assert list(launch.variants) == [Accel.TCG]
    assert launch.probe is None
    assert value(launch.variants[Accel.TCG], "-cpu") == "qemu64"


def test_kvm_check_is_offered_otherwise() -> None:
    launch = Qemu().launch(from_document({"hostName": "q", "microvm": {
        "kernel": "/k", "storeOnDisk": False}}), CTX)
    assert list(launch.variants) == [Accel.KVM, Accel.TCG]
    assert launch.kvm_modules == ("/sys/module/kvm_intel", "/sys/module/kvm_amd")
    arm = Qemu().launch(from_document({"hostName": "q", "system": "aarch64-linux", "microvm": {
        "kernel": "/k", "storeOnDisk": False}}), CTX)
    assert arm.kvm_modules == ()


def test_pci_passthrough_and_hotplug_pick_q35() -> None:
    a = argv(devices=[{"bus": "pci", "path": "0000:01:00.0", "qemu": {"id": "gpu"}}],
             hotplugMem=512, hotpluggedMem=128, mem=1024)
    assert value(a, "-machine") == "q35,accel=kvm,mem-merge=on"
    assert value(a, "-m") == "1024M,slots=1,maxmem=1536M"
    devs = values(a, "-device")
    assert "vfio-pci,host=0000:01:00.0,multifunction=on,id=gpu" in devs
    assert "virtio-mem-pci,id=hotmem0,memdev=hotmem,requested-size=128M" in devs
    assert "virtio-rng-pci" in devs


def test_aarch64_uses_virt() -> None:
    a = argv(Accel.TCG, system="aarch64-linux")
    assert a[0] == "qemu-system-aarch64"
    assert value(a, "-machine") == "virt,accel=tcg,gic-version=max"
    assert value(a, "-append").startswith("console=ttyAMA0 ")


def test_virtiofs_needs_shared_memory() -> None:
    a = argv(mem=300, shares=[{"tag": "t", "source": "/s", "mountPoint": "/m",
                               "proto": "virtiofs"}])
    assert value(a, "-machine").endswith(",memory-backend=mem")
    assert value(a, "-object") == "memory-backend-memfd,id=mem,size=300M,share=on"
    assert value(a, "-chardev").startswith("stdio")
    assert "socket,id=fs0,path=q-virtiofs-t.sock" in values(a, "-chardev")
    assert "vhost-user-fs-device,chardev=fs0,tag=t" in values(a, "-device")


def test_networking() -> None:
    a = argv(vcpu=2, interfaces=[
        {"type": "user", "id": "u", "mac": "02:00:00:00:00:01"},
        {"type": "tap", "id": "vm-a", "mac": "02:00:00:00:00:02", "tap": {"vhost": True}},
        {"type": "macvtap", "id": "mvt", "mac": "02:00:00:00:00:03",
         "macvtap": {"link": "eth0", "mode": "bridge"}},
        {"type": "bridge", "id": "vm-b", "mac": "02:00:00:00:00:04", "bridge": "br0"},
    ], forwardPorts=[{"host": {"port": 2222}, "guest": {"port": 22}},
                     {"from": "guest", "host": {"address": "10.0.0.1", "port": 80},
                      "guest": {"address": "10.0.2.100", "port": 8080}}])
    assert values(a, "-netdev") == [
        ("user,id=net0,hostfwd=tcp::2222-:22," +
         "guestfwd=tcp:10.0.2.100:8080-cmd:socat - TCP:10.0.0.1:80"),
        "tap,id=net1,ifname=vm-a,script=no,downscript=no,vhost=on,queues=2",
        "tap,id=net2,fds=3:4",
        "bridge,id=net3,br=br0,helper=/run/wrappers/bin/qemu-bridge-helper",
    ]
    nets = [d for d in values(a, "-device") if d.startswith("virtio-net")]
    assert nets == [
        "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01",
        "virtio-net-device,netdev=net1,mac=02:00:00:00:00:02,mq=on",
        "virtio-net-device,netdev=net2,mac=02:00:00:00:00:03,mq=on",
        "virtio-net-device,netdev=net3,mac=02:00:00:00:00:04",
    ]
    # QEMU spawns the bridge helper, so the seccomp sandbox stays off with a bridge
    assert "-sandbox" not in a


def test_sandbox_on_without_bridges() -> None:
    assert value(argv(), "-sandbox") == ("on,obsolete=deny,elevateprivileges=deny,spawn=deny," +
                                         "resourcecontrol=deny")


def test_commas_are_escaped_once() -> None:
    a = argv(volumes=[{"image": "a,b.img", "size": 1, "serial": "s"}],
             shares=[{"tag": "t", "source": "/x,y", "mountPoint": "/m"}])
    assert "id=vol0,format=raw,file=a,,b.img,if=none,discard=unmap" in values(a, "-drive")
    assert "local,id=fs0,path=/x,,y,security_model=none" in values(a, "-fsdev")


def test_store_disk_first_read_only_with_serial() -> None:
    doc = {"hostName": "q", "microvm": {"kernel": "/k", "storeDisk": "/s.erofs",
                                        "volumes": [{"image": "v.img", "size": 1}]}}
    a = Qemu().command(from_document(doc), CTX, Accel.KVM)
    assert values(a, "-drive") == ["id=store,format=raw,file=/s.erofs,if=none,read-only=on",
                                   "id=vol0,format=raw,file=v.img,if=none,discard=unmap"]
    assert values(a, "-device")[1:3] == ["virtio-blk-device,drive=store,serial=store",
                                         "virtio-blk-device,drive=vol0"]


def test_balloon_vsock_credentials_machine_id() -> None:
    a = argv(balloon=True, deflateOnOOM=False, vsock={"cid": 5},
             credentialFiles={"tok": "/run/tok"},
             machineId="a67472e5-570e-5c8a-b18c-ae3c77701050")
    devs = values(a, "-device")
    assert "vhost-vsock-device,guest-cid=5" in devs
    assert ("virtio-balloon-device,id=balloon0,deflate-on-oom=off,free-page-reporting=on"
            in devs)
    assert value(a, "-fw_cfg") == "name=opt/io.systemd.credentials/tok,file=/run/tok"
    assert values(a, "-smbios") == [
        "type=1,uuid=a67472e5-570e-5c8a-b18c-ae3c77701050",
        # a systemd guest reports readiness over vsock to the host's relay (port 8888 + CID)
        "type=11,value=io.systemd.credential:vmm.notify_socket=vsock-stream:2:8893",
    ]


def test_machine_opts_override_and_extra_args_last() -> None:
    a = argv(qemu={"machine": "microvm", "machineOpts": {"x-option-roms": "off"},
                   "extraArgs": ["-no-hpet"]})
    assert value(a, "-machine") == "microvm,x-option-roms=off,accel=kvm"
    assert a[-1] == "-no-hpet"


def test_darwin_uses_hvf_and_no_seccomp() -> None:
    """A macOS QEMU has Hypervisor.framework (hvf), not KVM, and no seccomp (-sandbox)."""
    doc = {"hostName": "q", "system": "aarch64-darwin",
           "microvm": {"kernel": "/k", "storeOnDisk": False}}
    launch = Qemu().launch(from_document(doc), CTX)
    assert list(launch.variants) == [Accel.HVF, Accel.TCG]
    assert launch.probe is Accel.HVF and launch.kvm_modules == ()
    hvf = launch.variants[Accel.HVF]
    assert value(hvf, "-machine").startswith("virt,accel=hvf")
    assert value(hvf, "-cpu") == "host"
    assert "-sandbox" not in hvf and "-sandbox" not in launch.variants[Accel.TCG]
    assert hvf[0] == "qemu-system-aarch64"


def test_sandbox_allows_the_privilege_drop_of_microvm_user() -> None:
    """The seccomp filter is installed before QEMU switches to microvm.user: set*uid must be
    allowed then, and only then (the boot test checks the uid of a real QEMU)."""
    assert "elevateprivileges=deny" in value(argv(), "-sandbox")
    dropped = argv(user="microvm")
    assert "elevateprivileges=allow" in value(dropped, "-sandbox")
    assert value(dropped, "-run-with") == "user=microvm"
    launch = Qemu().launch(from_document({"hostName": "q", "microvm": {
        "kernel": "/k", "storeOnDisk": False, "user": "microvm"}}), CTX)
    (fallback,) = launch.fallbacks
    assert fallback.new == ("-run-with", "user=microvm")
    assert fallback.old == ("-runas", "microvm")
    assert fallback.probe == ("qemu-system-x86_64", "-run-with", "user=microvm", "-version")


def test_pci_devices_are_modern_and_romless_volumes_discard() -> None:
    """On PCI machines: no legacy virtio I/O ports, no iPXE ROM (direct kernel boot); writable
    volumes pass the guest's TRIM to the image file, read-only ones and the store do not.
    (QEMU 7.2 accepts these on q35: tests/test_e2e_qemu.py boots the microvm machine.)"""
    a = argv(qemu={"machine": "q35"}, volumes=[
        {"image": "rw.img", "size": 8}, {"image": "ro.img", "size": 8, "readOnly": True}],
        interfaces=[{"type": "user", "id": "u", "mac": "02:00:00:00:00:01"}])
    drives = values(a, "-drive")
    assert drives[0].endswith(",discard=unmap") and "discard" not in drives[1]
    devices = values(a, "-device")
    assert [d for d in devices if d.startswith("virtio-blk-pci")] == [
        "virtio-blk-pci,drive=vol0,disable-legacy=on",
        "virtio-blk-pci,drive=vol1,disable-legacy=on"]
    assert "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01,romfile=" in devices
    mmio = values(argv(interfaces=[{"type": "user", "id": "u", "mac": "02:00:00:00:00:01"}]),
                  "-device")
    assert "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01" in mmio


# -- PCIe root ports (microvm.qemu.pcieRootPorts) ---------------------------------------------

PORTS = [{"id": "pci_hotplug_1", "bus": "pcie.0", "chassis": 1},
         {"id": "pci_port_2", "chassis": 2, "slot": "2", "addr": "1d.0"}]
CARD = {"bus": "pci", "path": "0000:01:00.0", "qemu": {"bus": "pci_hotplug_1"}}


def problems(**microvm: Any) -> list[str]:
    try:
        from_document({"hostName": "q", "microvm": {"kernel": "/k", "storeOnDisk": False,
                                                    **microvm}})
    except ValidationError as e:
        return [str(p) for p in e.problems]
    return []


def test_root_ports_come_before_the_devices_that_sit_on_them() -> None:
    args = argv(qemu={"pcieRootPorts": PORTS}, devices=[CARD])
    assert value(args, "-machine").startswith("q35,")  # the default machine with ports
    devices = values(args, "-device")
    assert devices[-3:] == ["pcie-root-port,id=pci_hotplug_1,bus=pcie.0,chassis=1",
                            "pcie-root-port,id=pci_port_2,chassis=2,slot=2,addr=1d.0",
                            "vfio-pci,host=0000:01:00.0,multifunction=on,bus=pci_hotplug_1"]


def test_a_device_bus_that_names_no_port_is_refused() -> None:
    assert problems(qemu={"pcieRootPorts": PORTS}, devices=[CARD]) == []
    lost = {**CARD, "qemu": {"bus": "pci_hotplug_2"}}
    found = problems(qemu={"pcieRootPorts": PORTS}, devices=[lost])
    assert found == ["microvm.devices[0].qemu.bus: names no bus: 'pci_hotplug_2' is neither a " +
                     "root port of microvm.qemu.pcieRootPorts (declared: pci_hotplug_1, " +
                     "pci_port_2) nor pcie.0 or pci.0"]
    # the machine's own bus, and a port made with qemu.extraArgs, are buses too
    assert problems(devices=[{**CARD, "qemu": {"bus": "pcie.0"}}]) == []
    made = ["-device", "pcie-root-port,id=pci_hotplug_2,chassis=9"]
    assert problems(qemu={"extraArgs": made}, devices=[lost]) == []


def test_root_ports_need_a_pcie_machine_and_unique_well_formed_ids() -> None:
    found = problems(qemu={"pcieRootPorts": PORTS[:1], "machine": "microvm"})
    assert [p.split(":")[0] for p in found] == ["microvm.qemu.pcieRootPorts"]
    assert problems(qemu={"pcieRootPorts": PORTS[:1], "machine": "microvm",
                          "machineOpts": {"pcie": "on"}}) == []
    twice = problems(qemu={"pcieRootPorts": [PORTS[0], PORTS[0]]})
    assert twice == ["microvm.qemu.pcieRootPorts[1].id: duplicate PCIe root port id " +
                     "'pci_hotplug_1' (also used by microvm.qemu.pcieRootPorts[0].id)"]
    bad = problems(qemu={"pcieRootPorts": [{"id": "p,x=1", "addr": "zz", "slot": "two"}]})
    assert sorted(p.split(":")[0] for p in bad) == [
        "microvm.qemu.pcieRootPorts[0].addr", "microvm.qemu.pcieRootPorts[0].id",
        "microvm.qemu.pcieRootPorts[0].slot"]


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                    reason="qemu-system-x86_64 is not installed")
def test_qemu_creates_the_root_ports_and_a_device_sits_on_one() -> None:
    """QEMU 7.2 itself takes the machine and the ports the backend writes, and a PCI device on
    a declared port (virtio-rng-pci standing in for a passed-through card): it starts paused
    and runs until stopped; a bus that does not exist makes it exit at once."""
    args = argv(Accel.TCG, qemu={"pcieRootPorts": PORTS})
    ports = [w for w in values(args, "-device") if w.startswith("pcie-root-port,")]
    base = ["qemu-system-x86_64", "-machine", value(args, "-machine"), "-nodefaults",
            "-display", "none", "-S", *(x for p in ports for x in ("-device", p))]
    for bus, runs in (("pci_port_2", True), ("pci_port_3", False)):
        proc = subprocess.Popen([*base, "-device", f"virtio-rng-pci,bus={bus}"],
                                stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=10)
            assert runs, bus
        else:
            assert not runs and proc.stderr is not None, bus
            assert f"Bus '{bus}' not found" in proc.stderr.read()


def test_graphics_display_and_gpu_per_backend() -> None:
    """As microvm.nix means them: a GL GPU on gtk and egl-headless, virtio-gpu on cocoa, USB
    keyboard and tablet on an xHCI controller."""
    usb = ["qemu-xhci", "usb-tablet", "usb-kbd"]
    for backend, display, gpu in (("gtk", "gtk,gl=on", "virtio-vga-gl"),
                                  ("cocoa", "cocoa", "virtio-gpu"),
                                  ("headless", "egl-headless", "virtio-gpu-gl")):
        args = argv(graphics={"enable": True, "backend": backend})
        assert value(args, "-machine").startswith("q35,"), backend
        assert value(args, "-display") == display
        assert [d for d in values(args, "-device") if "gpu" in d or "vga" in d or d in usb] == [
            gpu, *usb]
    # virtio-mmio (the microvm machine without PCIe): the GL device's mmio form, virtio input
    args = argv(graphics={"enable": True, "backend": "headless"}, qemu={"machine": "microvm"})
    assert "virtio-gpu-gl-device" in values(args, "-device")
    assert "virtio-tablet-device" in values(args, "-device")
    assert value(argv(), "-display") == "none"


def test_graphics_vulkan_adds_blob_hostmem_and_the_protocol() -> None:
    for backend, gpu in (("gtk", "virtio-vga-gl"), ("headless", "virtio-gpu-gl")):
        args = argv(graphics={"enable": True, "backend": backend, "vulkan": "venus"})
        assert f"{gpu},blob=true,hostmem=256M,venus=on" in values(args, "-device")
        args = argv(graphics={"enable": True, "backend": backend, "hostmem": "8G",
                              "vulkan": "drm_native_context"})
        assert f"{gpu},blob=true,hostmem=8G,drm_native_context=on" in values(args, "-device")
    # hostmem alone changes nothing: it sizes the window Vulkan maps into
    assert "virtio-gpu-gl" in values(argv(graphics={"enable": True, "backend": "headless",
                                                    "hostmem": "1G"}), "-device")


def test_graphics_vulkan_and_hostmem_are_checked() -> None:
    assert problems(graphics={"enable": True, "backend": "cocoa", "vulkan": "venus"}) == [
        'microvm.graphics.vulkan: the cocoa display has no GL, so its GPU (virtio-gpu) has no ' +
        'Vulkan: use graphics.backend "gtk" or "headless", or graphics.vulkan = null']
    bad = problems(graphics={"enable": True, "hostmem": "256"})
    assert [p.split(":")[0] for p in bad] == ["microvm.graphics.hostmem"]
    assert [p.split(":")[0] for p in problems(graphics={"vulkan": "virgl"})] == [
        "microvm.graphics.vulkan"]
    assert problems(graphics={"enable": True, "hostmem": "1.5G", "vulkan": "venus"}) == []


def _qemu_says(*args: str) -> str:
    """What QEMU 7.2 prints starting paused with these arguments: '' if it keeps running."""
    proc = subprocess.Popen(["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-nodefaults",
                             "-S", *args], stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=10)
        return ""
    assert proc.stderr is not None
    return proc.stderr.read()


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                    reason="qemu-system-x86_64 is not installed")
def test_qemu_takes_the_graphics_devices() -> None:
    """QEMU itself parses what the backend writes: the input devices start; the GPU device and
    each of its properties exist, and only realizing it needs GL (this machine has no render
    node, /dev/dri: egl-headless cannot start here, and QEMU says exactly that). Vulkan's
    properties (hostmem, venus: QEMU 9.2) are checked where this QEMU has them; QEMU 7.2 has
    blob only and names the first one it lacks."""
    has_dri = any(os.path.exists(f"/dev/dri/renderD{n}") for n in range(128, 136))
    for backend in ("gtk", "headless"):
        for vulkan in (None, "venus"):
            args = argv(Accel.TCG, graphics={"enable": True, "backend": backend,
                                             "vulkan": vulkan})
            gpu, *inputs = [d for d in values(args, "-device")
                            if "gpu" in d or "vga" in d or "usb" in d or "xhci" in d]
            started = _qemu_says("-display", "none",
                                 *(x for d in inputs for x in ("-device", d)))
            assert started == "", inputs
            props = subprocess.run(["qemu-system-x86_64", "-device",
                                    f"{gpu.split(',')[0]},help"], capture_output=True,
                                   text=True, check=True).stdout
            have = {line.split("=")[0].strip() for line in props.splitlines()}
            lacking = [k.split("=")[0] for k in gpu.split(",")[1:]
                       if k.split("=")[0] not in have]
            said = _qemu_says("-display", "none", "-device", gpu)
            if lacking:
                assert f"Property '{gpu.split(',')[0]}" in said and lacking[0] in said, said
                assert set(lacking) <= {"hostmem", "venus"}, lacking
            else:
                assert said == "" or "opengl is not available" in said, said
        displays = subprocess.run(["qemu-system-x86_64", "-display", "help"],
                                  capture_output=True, text=True, check=True).stdout.split()
        assert value(args, "-display").split(",")[0] in displays
    # egl-headless needs no window, only a render node
    said = _qemu_says("-display", "egl-headless")
    assert said == "" if has_dri else "no drm render node available" in said, said


def test_forwarded_host_port_zero_is_passed_on_and_guest_port_zero_refused() -> None:
    """microvm.nix's forwardPorts ports are types.port (0 to 65535): host port 0 is accepted,
    more than once, and written as it is; guest port 0 is an error naming the option."""
    users = [{"type": "user", "id": "u", "mac": "02:00:00:00:00:01"}]
    a = argv(interfaces=users, forwardPorts=[{"host": {"port": 0}, "guest": {"port": 22}},
                                             {"host": {"port": 0}, "guest": {"port": 80}}])
    assert values(a, "-netdev") == ["user,id=net0,hostfwd=tcp::0-:22,hostfwd=tcp::0-:80"]
    for direction in ("host", "guest"):
        with pytest.raises(ValidationError) as e:
            argv(interfaces=users, forwardPorts=[
                {"from": direction, "host": {"port": 2222}, "guest": {"port": 0}}])
        assert [str(p) for p in e.value.problems] == [
            "microvm.forwardPorts[0].guest.port: must be between 1 and 65535: QEMU refuses a " +
            "forwarding rule with guest port 0 (microvm.nix passes it on and QEMU fails to " +
            "start)"]


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                    reason="qemu-system-x86_64 is not installed")
def test_qemu_listens_on_a_free_port_for_host_port_zero_and_refuses_guest_port_zero() -> None:
    """The oracle of the rule above, QEMU 7.2 itself: with hostfwd host port 0 it starts and
    listens on a port the kernel picked (`info usernet`); a rule with guest port 0, either
    direction, makes it exit at once."""
    base = ["qemu-system-x86_64", "-machine", "microvm", "-nodefaults", "-display", "none",
            "-S", "-monitor", "stdio", "-netdev"]
    r = subprocess.run([*base, "user,id=n0,hostfwd=tcp::0-:22"], input="info usernet\nquit\n",
                       capture_output=True, text=True, timeout=30)
    listening = [ln.split() for ln in r.stdout.splitlines() if "HOST_FORWARD" in ln]
    assert r.returncode == 0 and len(listening) == 1, r
    assert int(listening[0][3]) > 0 and listening[0][-4:-2] == ["10.0.2.15", "22"], listening
    for rule in ("hostfwd=tcp::2222-:0", "guestfwd=tcp:10.0.2.100:0-cmd:true"):
        r = subprocess.run([*base, f"user,id=n0,{rule}"], input="quit\n", capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0 and "forwarding rule" in r.stderr, (rule, r)
