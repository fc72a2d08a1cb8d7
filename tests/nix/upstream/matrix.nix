# The differential matrix: one microvm.* configuration per (hypervisor, case), evaluated both by
# upstream microvm.nix's runner code and by this project (tests/test_upstream.py). Every case is
# an ordinary guest module with microvm.nix's option names; the same module goes to both sides.
# Result: name -> { hypervisor, system, module }.
let
  hypervisors = [ "qemu" "cloud-hypervisor" "firecracker" "crosvm" "kvmtool" "stratovirt" "alioth" "vfkit" ];

  # the network interface each hypervisor takes in upstream's runner without refusing it
  nic = hv: n:
    if hv == "vfkit" then { type = "user"; id = "usernet${toString n}"; mac = "02:00:00:00:00:0${toString n}"; }
    else { type = "tap"; id = "vm-tap${toString n}"; mac = "02:00:00:00:00:0${toString n}"; };

  cases = hv: {
    # defaults only: store disk (upstream's default), control socket, 1 vCPU, 512 MiB
    minimal = { };
    no-store-disk = { microvm.storeOnDisk = false; };
    cpu-mem = { microvm = { vcpu = 4; mem = 3072; }; };
    kernel-params = {
      boot.kernelParams = [ "quiet" ];
      microvm.kernelParams = [ "loglevel=4" "systemd.log_level=debug" ];
    };
    volumes = {
      microvm.volumes = [
        { image = "var.img"; mountPoint = "/var"; size = 256; }
        { image = "/srv/data.img"; mountPoint = "/data"; size = 64; readOnly = true; }
      ];
    };
    volume-options = {
      microvm.volumes = [
        { image = "direct.img"; mountPoint = "/direct"; size = 64; direct = true; serial = "data0"; }
      ];
    };
    share-9p = {
      microvm.shares = [{ tag = "ro-store"; source = "/nix/store"; mountPoint = "/nix/.ro-store"; }];
    };
    share-virtiofs = {
      microvm.shares = [{ tag = "home"; source = "/home/alice"; mountPoint = "/home/alice"; proto = "virtiofs"; }];
    };
    tap = { microvm.interfaces = [ (nic hv 1) ]; };
    tap-multiqueue = { microvm = { vcpu = 2; interfaces = [ (nic hv 1) (nic hv 2) ]; }; };
    macvtap = {
      microvm.interfaces = [{
        type = "macvtap"; id = "vm-mvt1"; mac = "02:00:00:00:01:01";
        macvtap = { link = "eth0"; mode = "bridge"; };
      }];
    };
    user-forward = {
      microvm.interfaces = [{ type = "user"; id = "usernet"; mac = "02:00:00:00:02:01"; }];
      microvm.forwardPorts = [{ host.port = 2222; guest.port = 22; }];
    };
    vsock = { microvm.vsock.cid = 42; };
    balloon = { microvm.balloon = true; };
    machine-id = { microvm.machineId = "a67472e5-570e-5c8a-b18c-ae3c77701050"; };
    credentials = { microvm.credentialFiles.token = "/run/secrets/token"; };
    no-socket = { microvm.socket = null; };
  };

  # cases of one hypervisor's own options: hypervisor -> cases
  ownCases = {
    qemu = {
      # a passed-through card on a root port of its own (q35)
      pcie-root-ports = {
        microvm.qemu.machine = "q35";
        microvm.qemu.pcieRootPorts = [
          { id = "pci_hotplug_1"; bus = "pcie.0"; chassis = 1; }
          { id = "pci_port_2"; chassis = 2; slot = "2"; addr = "1d.0"; }
        ];
        microvm.devices = [{ bus = "pci"; path = "0000:01:00.0"; qemu.bus = "pci_hotplug_1"; }];
      };
      # a display without a window (egl-headless), GL and Vulkan (venus) in the guest
      graphics-headless = {
        microvm.graphics = { enable = true; backend = "headless"; vulkan = "venus"; hostmem = "1G"; };
      };
      graphics-gtk = { microvm.graphics = { enable = true; backend = "gtk"; }; };
      # host port 0 (types.port takes it): a port the kernel picks when QEMU starts
      user-forward-any-port = {
        microvm.interfaces = [{ type = "user"; id = "usernet"; mac = "02:00:00:00:02:01"; }];
        microvm.forwardPorts = [{ host.port = 0; guest.port = 22; }];
      };
      # a qcow2 volume the runner creates when it is missing (autoCreate defaults to true)
      volume-qcow2 = {
        microvm.volumes = [{ image = "data.qcow2"; mountPoint = "/data"; size = 64; imageType = "qcow2"; }];
      };
      # guest port 0: upstream writes the rule, QEMU refuses it when it starts
      user-forward-guest-port-zero = {
        microvm.interfaces = [{ type = "user"; id = "usernet"; mac = "02:00:00:00:02:01"; }];
        microvm.forwardPorts = [{ host.port = 2222; guest.port = 0; }];
      };
    };
    # crosvm's own GPU device on a vhost-user socket, started by the runner
    crosvm.graphics = { microvm.graphics = { enable = true; socket = "gpu.sock"; }; };
    cloud-hypervisor = {
      # the same device for cloud-hypervisor's GPU build (--gpu)
      graphics = { microvm.graphics.enable = true; };
      # SMBIOS OEM strings (a credential for the guest's systemd)
      oem-strings = {
        microvm.cloud-hypervisor.platformOEMStrings = [ "io.systemd.credential:greeting=hello world" "tag:x=1" ];
      };
      # extraArgs of flags the runner also gives: merged into one, or replacing the runner's
      extra-args = {
        microvm.cloud-hypervisor.extraArgs = [
          "--cpus" "max=4" "--platform" "serial_number=vm7" "--serial" "off" "--console" "tty"
        ];
      };
      # a --vsock of extraArgs merged with microvm.vsock.cid
      vsock-extra-args = {
        microvm.vsock.cid = 42;
        microvm.cloud-hypervisor.extraArgs = [ "--vsock" "socket=my.vsock" ];
      };
      # virtio-mem: the boot memory is hotplugMem
      hotplug = { microvm = { mem = 2048; hotplugMem = 1024; hotpluggedMem = 512; }; };
      # a qcow2 volume the runner creates when it is missing (autoCreate defaults to true)
      volume-qcow2 = {
        microvm.volumes = [{ image = "data.qcow2"; mountPoint = "/data"; size = 64; imageType = "qcow2"; }];
      };
    };
    # Rosetta shared with the guest
    vfkit.rosetta = {
      microvm.vfkit.rosetta = { enable = true; install = true; ignoreIfMissing = true; };
    };
  };

  entry = hv: case: module: {
    name = "${hv}.${case}";
    value = {
      hypervisor = hv;
      system = if hv == "vfkit" then "aarch64-linux" else "x86_64-linux";
      module = { pkgs, lib, ... }: {
        imports = [ module ];
        networking.hostName = "vm-${hv}";
        microvm.hypervisor = hv;
        microvm.vmHostPackages = lib.mkIf (hv == "vfkit") (pkgs.forSystem "aarch64-darwin");
      };
    };
  };
in
builtins.listToAttrs (builtins.concatMap
  (hv: builtins.attrValues (builtins.mapAttrs (entry hv) (cases hv // ownCases.${hv} or { })))
  hypervisors)
