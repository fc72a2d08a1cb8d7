"""Firecracker: the whole VM is a JSON file (`--config-file`), the REST API is the control socket.

Checked against firecracker-microvm/firecracker: src/firecracker/swagger/firecracker.yaml (the
section bodies), src/vmm/src/resources.rs (`VmmConfig`: the file's top-level keys; `cpu-config`
is a path or an inline template), src/firecracker/src/main.rs (flags), docs/api_requests/
actions.md (SendCtrlAltDel), docs/ballooning.md, docs/memory-hotplug.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..capabilities import Hypervisor
from ..config import MicroVM
from .base import (
    Accel,
    Backend,
    Control,
    ControlKind,
    Encoder,
    Launch,
    RunContext,
    created_sockets,
    disks,
    hybrid_vsock_files,
    hybrid_vsock_socket,
    kernel_cmdline,
    notify_kernel_params,
)

CONFIG_FILE = "firecracker.json"
CPU_CONFIG_FILE = "cpu-config.json"
# the i8042 probe costs boot time; the device only serves SendCtrlAltDel (actions.md)
I8042_PARAMS = ("i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd")


def cmdline(vm: MicroVM, enc: Encoder) -> str:
    # no SMBIOS or fw_cfg: the readiness credential goes on the command line
    i8042 = I8042_PARAMS if vm.arch == "x86_64" else ()
    return kernel_cmdline(vm, *i8042, *notify_kernel_params(vm), enc=enc)


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge: objects merge key by key, anything else in `extra` replaces."""
    out = dict(base)
    for key, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], v)
        else:
            out[key] = v
    return out


def config(vm: MicroVM, ctx: RunContext, enc: Encoder) -> dict[str, Any]:
    """The `--config-file` document, with microvm.firecracker.extraConfig merged in; `enc`
    records what its values cannot carry."""
    boot: dict[str, Any] = {"kernel_image_path": vm.kernel, "boot_args": cmdline(vm, enc)}
    if vm.initrd is not None:
        boot["initrd_path"] = vm.initrd
    machine: dict[str, Any] = {"vcpu_count": vm.vcpu, "mem_size_mib": vm.mem}
    if vm.hugepage_mem:
        machine["huge_pages"] = "2M"
    engine = vm.firecracker_drive_io_engine
    drives = [{"drive_id": d.id, "path_on_host": d.path, "is_root_device": False,
               "is_read_only": d.read_only, "io_engine": engine} for d in disks(vm)]
    doc: dict[str, Any] = {
        "boot-source": boot,
        "machine-config": machine,
        "drives": drives,
        "network-interfaces": [
            {"iface_id": f"net{i}", "host_dev_name": iface.id, "guest_mac": iface.mac}
            for i, iface in enumerate(vm.interfaces)],
        "entropy": {},
    }
    if vm.vsock_cid is not None:
        doc["vsock"] = {"guest_cid": vm.vsock_cid, "uds_path": hybrid_vsock_socket(vm)}
    if vm.balloon:
        doc["balloon"] = {"amount_mib": vm.initial_balloon_mem,
                          "deflate_on_oom": vm.deflate_on_oom}
    if vm.hotplug_mem:
        doc["memory-hotplug"] = {"total_size_mib": vm.hotplug_mem}
    if vm.firecracker_cpu is not None:
        # a path works with every release; inline templates only with recent ones
        doc["cpu-config"] = f"{ctx.share_dir}/{CPU_CONFIG_FILE}"
    return merge(doc, vm.firecracker_extra_config)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class Firecracker(Backend):
    hypervisor = Hypervisor.FIRECRACKER

    def argv(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> list[str]:
        del accel, enc  # KVM only; the VM is in the config file
        argv = ["firecracker", "--config-file", f"{ctx.share_dir}/{CONFIG_FILE}"]
        if vm.socket is not None:
            argv += ["--api-sock", vm.socket]
        else:
            argv.append("--no-api")
        return argv + list(vm.hypervisor_extra_args)

    def encode(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> None:
        # the kernel command line is in the config file
        self.argv(vm, ctx, accel, enc)
        config(vm, ctx, enc)

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        files = {CONFIG_FILE: _json(config(vm, ctx, self.encoder()))}
        if vm.firecracker_cpu is not None:
            files[CPU_CONFIG_FILE] = _json(vm.firecracker_cpu)
        return Launch(variants={Accel.KVM: self.command(vm, ctx)},
                      files=files | hybrid_vsock_files(vm),
                      sockets=created_sockets(vm, hybrid_vsock=True))

    def shutdown(self, vm: MicroVM) -> Control | None:
        # SendCtrlAltDel needs the emulated i8042, which exists on x86_64 only
        if vm.socket is None or vm.arch != "x86_64":
            return None
        return Control(kind=ControlKind.HTTP, socket=vm.socket, method="PUT", path="/actions",
                       payload='{"action_type":"SendCtrlAltDel"}')

    def balloon(self, vm: MicroVM) -> Control | None:
        if vm.socket is None or not vm.balloon:
            return None
        # BalloonUpdate.amount_mib: the balloon's target size
        return Control(kind=ControlKind.HTTP, socket=vm.socket, method="PATCH", path="/balloon",
                       payload='{"amount_mib":@BALLOON_MIB@}')
