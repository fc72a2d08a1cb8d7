"""VM documents shared by the model, runner and Nix drop-in tests: `FULL` sets nearly every
option, `DOCS` are the runner's cases (`HOSTILE` text where a string can go)."""

from __future__ import annotations

from typing import Any

FULL: dict[str, Any] = {
    "hostName": "full",
    "toplevel": "/nix/store/abc-nixos-system",
    "runtimePath": ["/nix/store/q/bin"],
    "microvm": {
        "kernel": "/k/bzImage", "initrdPath": "/k/initrd", "vcpu": 2, "mem": 1024,
        "balloon": True, "hotplugMem": 512, "hotpluggedMem": 256,
        "kernelParams": ["init=/init", "quiet"], "storeDisk": "/k/store.erofs",
        "volumes": [{"image": "var.img", "size": 256, "mountPoint": "/var", "serial": "var",
                     "label": "var", "mkfsExtraArgs": ["-E", "lazy_itable_init=1"]}],
        "shares": [{"tag": "ro-store", "source": "/nix/store", "mountPoint": "/nix/.ro-store",
                    "proto": "virtiofs"},
                   {"tag": "home", "source": "/home/u", "mountPoint": "/home",
                    "securityModel": "mapped"}],
        "interfaces": [{"type": "user", "id": "u1", "mac": "02:00:00:00:00:01"},
                       {"type": "tap", "id": "vm-full", "mac": "02:00:00:00:00:02",
                        "tap": {"vhost": True}},
                       {"type": "macvtap", "id": "mvt-full", "mac": "02:00:00:00:00:03",
                        "macvtap": {"link": "eth0", "mode": "bridge"}}],
        "forwardPorts": [{"host": {"port": 2222}, "guest": {"port": 22}}],
        "devices": [{"bus": "pci", "path": "0000:01:00.0"},
                    {"bus": "usb", "path": "vendorid=0x1234,productid=0x5678"}],
        "vsock": {"cid": 42}, "credentialFiles": {"token": "/run/secrets/token"},
        "machineId": "a67472e5-570e-5c8a-b18c-ae3c77701050",
        "qemu": {"extraArgs": ["-no-hpet"]},
    },
}


HOSTILE = "sp ace'q\"$(touch PWNED)`id`;ü,λ"


def doc(**microvm: Any) -> dict[str, Any]:
    return {"hostName": "t", "microvm": {"kernel": "/k/vmlinux", "storeOnDisk": False,
                                         **microvm}}


DOCS = {
    "minimal": doc(),
    "full": FULL,
    "no-socket": doc(socket=None, balloon=True),
    # the runner's run-time fallbacks: -runas for QEMU before 9.1, QEMU's own bridge helper
    "fallbacks": doc(user="nobody", interfaces=[
        {"type": "bridge", "id": "vm-b", "mac": "02:00:00:00:00:09", "bridge": "br0"}]),
    "hostile": {"hostName": HOSTILE, "runtimePath": [f"/opt/{HOSTILE}/bin"], "microvm": {
        "kernel": f"/k/{HOSTILE}", "storeOnDisk": False, "balloon": True,
        "preStart": "echo hi",
        "volumes": [{"image": f"v {HOSTILE}.img", "size": 8, "label": "l",
                     "mkfsExtraArgs": [HOSTILE]}, {"image": "-n.img", "size": 8}],
        "shares": [{"tag": "s", "source": f"/srv/{HOSTILE}", "mountPoint": "/s",
                    "proto": "virtiofs", "socket": f"{HOSTILE}.sock"}],
        "kernelParams": [f"x={HOSTILE}"], "extraArgsScript": f"/bin/{HOSTILE}",
        "qemu": {"extraArgs": [HOSTILE]}}},
    # interface names may hold commas: a one-line array of them must still pass (SC2054)
    "commas": {"hostName": "c", "microvm": {"kernel": "/k", "storeOnDisk": False, "interfaces": [
        {"type": "tap", "id": "t,a", "mac": "02:00:00:00:00:01"},
        {"type": "macvtap", "id": "m,v", "mac": "02:00:00:00:00:02",
         "macvtap": {"link": "e,th0", "mode": "bridge"}}]}},
}
