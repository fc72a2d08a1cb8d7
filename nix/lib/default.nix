# Pure helpers shared by the modules and the flake: the capability table, vm.json serialisation
# and the derivations that run the generator (which checks the document: ./runner.nix) and build
# the store disk.
# Everything that needs packages takes `pkgs` as an argument; this file needs only nixpkgs' lib.
{ lib }:

let
  # parsed once per evaluation, shared by every caller of this file (./data.nix)
  data = import ./data.nix;
  inherit (data) capabilities;

  self = {
    inherit capabilities;

    # Hypervisor names in the generator's declaration order (error hints list them in this order).
    hypervisors = capabilities.hypervisors;

    # supports "qemu" "SHARE_9P" -> true; feature names are those of capabilities.Feature.
    supports = hypervisor: feature: lib.elem feature capabilities.capabilities.${hypervisor}.features;

    # the same, on one platform (./data.nix)
    inherit (data) supportsOn;

    # The hypervisors that supports a feature, in declaration order.
    supporting = feature: lib.filter (hv: self.supports hv feature) self.hypervisors;

    # Does the hypervisor give disks the serial the generator sets ("store" for the store disk,
    # microvm.volumes.*.serial), so the guest finds them in /dev/disk/by-id? Without it the
    # guest sees the disks in attachment order: the store disk first, then the volumes.
    blockSerials = hypervisor: self.supports hypervisor "VOLUME_SERIAL";

    # The console device each hypervisor connects to microvm-run's stdio (the generator's table:
    # the backends put the same device on the kernel command line).
    consoleDevice = { hypervisor, system }:
      capabilities.capabilities.${hypervisor}.console.${builtins.head (lib.splitString "-" system)};

    # The defaults that depend on other options (x-computedDefault in the schema; the
    # generator's model computes the same for a document that leaves them out): the guest
    # module's option defaults (tests/test_nix_dropin.py compares them with the generator's).
    defaultSocket = { hypervisor, hostName }:
      if self.supports hypervisor "CONTROL_SOCKET" then "${hostName}.sock" else null;
    defaultStoreOnDisk = shares: !(lib.any (s: s.source == "/nix/store") shares);
    defaultShareSocket = { hostName, proto, tag }:
      if proto == "virtiofs" then "${hostName}-virtiofs-${tag}.sock" else null;

    # A type = "network" interface's tap name and MAC, derived from the network and the host
    # name as generator/microvm/netplan.py derives them (tap_name, mac_address; the parity is
    # tested over many names in tests/test_nix_dropin.py): SHA-256 of the newline-joined parts;
    # the MAC is 02 and its first five bytes, the tap name mvt- and 11 base32 digits of its
    # low 55 bits (lowest first).
    # the names of a declared network's bridge and of its members' taps begin so
    # (netplan.BRIDGE_PREFIX, TAP_PREFIX; tests/test_nix.py ties them)
    netPrefixes = { bridge = "mvb-"; tap = "mvt-"; };
    netMac = { network, hostName }:
      let h = builtins.hashString "sha256" "mac\n${network}\n${hostName}"; in
      lib.concatStringsSep ":" ([ "02" ] ++ map (i: builtins.substring (2 * i) 2 h) [ 0 1 2 3 4 ]);
    netTapName = { network, hostName }:
      let
        h = builtins.hashString "sha256" "tap\n${network}\n${hostName}";
        hex = lib.listToAttrs (lib.imap0 (i: c: lib.nameValuePair c i)
          (lib.stringToCharacters "0123456789abcdef"));
        # the low 56 bits (the last 14 hex digits) as an integer
        low = lib.foldl' (acc: c: acc * 16 + hex.${c}) 0
          (lib.stringToCharacters (builtins.substring 50 14 h));
        alphabet = lib.stringToCharacters "abcdefghijklmnopqrstuvwxyz234567";
        digits = n: k: if k == 0 then [ ]
          else [ (builtins.elemAt alphabet (lib.mod n 32)) ] ++ digits (builtins.div n 32) (k - 1);
      in self.netPrefixes.tap + lib.concatStrings (digits low 11);

    # A mount point as the guest mounts it: without trailing slashes ("/data/" is "/data"; "/"
    # stays). NixOS refuses a fileSystems mount point with a trailing slash; the generator
    # compares mount points the same way (`m.rstrip("/") or "/"`).
    mountPoint = m:
      let stripped = lib.removeSuffix "/" m; in
      if m == "/" || m == "" then "/" else if stripped != m then self.mountPoint stripped else m;

    # The serial of the store disk where blockSerials holds.
    storeDiskSerial = capabilities.storeDiskSerial;

    # Which file of a kernel package a hypervisor boots directly.
    kernelFile = { kernel, hypervisor, system }:
      if !(lib.isDerivation kernel) then "${kernel}"
      else if lib.hasPrefix "aarch64-" system then "${kernel}/Image"
      else if lib.elem hypervisor [ "cloud-hypervisor" "firecracker" "crosvm" ]
      then "${kernel.dev or kernel}/vmlinux"
      else "${kernel}/bzImage";

    # The vm.json document (an attribute set) of an evaluated guest configuration.
    document = import ./document.nix { inherit lib; mlib = self; };

    # Generated bin/ scripts that end by exec'ing or exiting (tests/test_nix_dropin.py checks
    # this against the templates): microvm.binScripts cannot extend them.
    closedScripts = [ "microvm-run" "virtiofsd-run" ];

    # What microvm.nix's runners tell about themselves (passthru of declaredRunner), from the
    # VM document and the capability table (tests/test_nix_dropin.py checks them against the
    # generator's backends).
    runnerFacts = document:
      let
        m = document.microvm;
        hv = m.hypervisor;
        caps = capabilities.capabilities.${hv};
      in
      {
        hypervisor = hv;
        # bin/microvm-shutdown can ask the guest to power off (through the control socket)
        canShutdown = self.supportsOn hv "GRACEFUL_SHUTDOWN" document.system
          && (m.socket or null) != null;
        # the guest is told where to report readiness (vmm.notify_socket over vsock)
        supportsNotifySocket = (m.vsock.cid or null) != null;
        tapMultiQueue = caps.multiqueueTap && m.vcpu > 1;
        machineId = m.machineId;
      };

    # -- helpers microvm.nix users call (same names and arguments) ------------------------

    # hypervisors that can give a VM a network interface of some kind (all of them)
    hypervisorsWithNetwork = lib.filter
      (hv: lib.any (self.supports hv) [ "NET_USER" "NET_TAP" "NET_MACVTAP" "NET_BRIDGE" ])
      self.hypervisors;

    # microvm.volumes.*.fsType's default
    defaultFsType = "ext4";

    # the volumes of a microvm config with the drive letter each gets in attachment order
    # (vda is the store disk when storeOnDisk)
    withDriveLetters = { volumes, storeOnDisk, ... }:
      let letters = lib.drop (if storeOnDisk then 1 else 0) lib.strings.lowerChars;
      in lib.zipListsWith (volume: letter: volume // { inherit letter; }) volumes letters;

    # extractOptValues FLAG(S) ARGS: every value following one of the flags, and ARGS without
    # those flags and values (order kept): { values; args; }
    extractOptValues = flag: args:
      let
        flags = lib.toList flag;
        step = acc: word:
          if acc.takeNext then acc // { takeNext = false; values = acc.values ++ [ word ]; }
          else if lib.elem word flags then acc // { takeNext = true; pending = word; }
          else acc // { args = acc.args ++ [ word ]; };
        done = lib.foldl' step { values = [ ]; args = [ ]; takeNext = false; pending = null; } args;
      in
      {
        inherit (done) values;
        # a flag at the very end has no value: it stays an argument
        args = done.args ++ lib.optional done.takeNext done.pending;
      };

    # extractParamValue KEY "a=1,KEY=v,b=2" -> "v" (the first), or null
    extractParamValue = key: text:
      if text == null then null
      else
        let
          pairs = map (kv: lib.splitString "=" kv) (lib.splitString "," text);
          hits = lib.filter (p: lib.length p >= 2 && lib.head p == key && lib.elemAt p 1 != "") pairs;
        in
        if hits == [ ] then null else lib.elemAt (lib.head hits) 1;

    # the runner of a VM document: { pkgs, document, generator, binScripts ? { } }
    buildRunnerFromDocument = import ./runner.nix { inherit lib; mlib = self; };

    # microvm.nix's lib.buildRunner: the runner of a guest from its microvm options (the
    # evaluated `config.microvm`, with `hostName` and `hypervisor` set, as microvm.nix's guest
    # module passes them) and its system's toplevel; what microvm.runner.<hypervisor> holds,
    # checked like it (its build fails first with every problem's option path: ./runner.nix)
    buildRunner = { pkgs, microvmConfig, toplevel }:
      let
        config = {
          microvm = removeAttrs microvmConfig [ "hostName" ];
          networking.hostName = microvmConfig.hostName;
          system.build.toplevel = toplevel;
        };
        hostPkgs = microvmConfig.vmHostPackages;
        document = self.document { inherit config pkgs; };
      in
      self.buildRunnerFromDocument {
        pkgs = hostPkgs;
        inherit document;
        generator = self.generatorFor hostPkgs.buildPackages;
        binScripts = microvmConfig.binScripts or { };
      } // { registerWithMachined = microvmConfig.registerWithMachined or false; };

    # microvm.nix's lib.makeMacvtap: the file descriptors a runner that opens macvtap devices
    # itself hands the hypervisor. Each macvtap interface of microvmConfig.interfaces, in
    # order, gets one descriptor per queue (vcpu queues when hypervisorConfig.tapMultiQueue,
    # else one), numbered from 3 on. Returns
    #   macvtapFds = { <interface id> = [ fd ... ]; nextFreeFd = <first unused fd>; }
    #   openMacvtapFds = shell lines opening each descriptor read-write on /dev/tapN, N being
    #                    the interface's ifindex
    makeMacvtap = { microvmConfig, hypervisorConfig }:
      let
        firstFd = 3;
        queues = if hypervisorConfig.tapMultiQueue or false then microvmConfig.vcpu else 1;
        macvtaps = lib.filter (i: i.type == "macvtap") microvmConfig.interfaces;
        assigned = lib.imap0 (n: i: {
          inherit (i) id;
          fds = lib.genList (q: firstFd + n * queues + q) queues;
        }) macvtaps;
        openOne = a: fd:
          "exec ${toString fd}<>/dev/tap$(< /sys/class/net/${lib.escapeShellArg a.id}/ifindex)\n";
      in
      {
        macvtapFds = lib.zipAttrsWith (_: lib.concatLists) (map (a: { ${a.id} = a.fds; }) assigned)
          // { nextFreeFd = firstFd + lib.length macvtaps * queues; };
        openMacvtapFds = "# macvtap devices, opened for the hypervisor\n"
          + lib.concatMapStrings (a: lib.concatMapStrings (openOne a) a.fds) assigned;
      };
    buildStoreDisk = import ./store-disk.nix { inherit lib; };
    # the addresses of VMs on a host's declared networks (as netplan.py's derive())
    netPlan = (import ./netplan.nix { inherit lib; }).plan;
    buildUnits = import ./units.nix { inherit lib; };

    # The units every VM uses (microvm@ and its helpers, microvms.target) as NixOS definitions:
    # { services.<name>; targets.<name>; } for systemd.services/targets. They come from
    # ./units.json, which scripts/regen renders from the same templates as `microvm units`
    # (placeholders for what the host module sets), so no derivation is read while evaluating.
    # Every value is a list ordered first (lib.mkBefore): a user's plain definition adds lines
    # after it (for a setting systemd takes once, the last line wins, as with a drop-in);
    # lib.mkForce replaces it.
    nixosUnits = { stateDir, user, group, startupTimeout, useNotifySockets, libexec, command }:
      let
        dir = if stateDir == "/" then "/" else lib.removeSuffix "/" stateDir;
        # as the generator spells it (units.state_specifier): %S is /var/lib for system units
        state = if lib.hasPrefix "/var/lib/" dir then "%S/${lib.removePrefix "/var/lib/" dir}" else dir;
        fill = lib.replaceStrings
          [ "@state@" "@stateDir@" "@libexec@" "@user@" "@group@" "@startupTimeout@" "@microvm@" ]
          [ state dir libexec user group (toString startupTimeout) command ];
        # [Unit] settings NixOS declares as options of their own (lists of unit names)
        lists = { After = "after"; Before = "before"; Requires = "requires"; Wants = "wants";
          PartOf = "partOf"; BindsTo = "bindsTo"; Conflicts = "conflicts"; Requisite = "requisite"; };
        words = values: lib.mkBefore
          (lib.concatMap (v: lib.filter (w: w != "") (lib.splitString " " (fill v))) values);
        lines = lib.mapAttrs (_: values: lib.mkBefore (map fill values));
        # NixOS writes `environment` as Environment= lines (quoted); a user's definition of a
        # variable replaces the module's (as does a later Environment= of a drop-in)
        environment = values: lib.listToAttrs (map (v:
          let kv = lib.splitString "=" (fill v); in
          lib.nameValuePair (lib.head kv) (lib.mkDefault (lib.concatStringsSep "=" (lib.tail kv))))
          values);
        definition = sections:
          let unit = sections.Unit or { }; service = sections.Service or null; in
          lib.mapAttrs' (k: v: lib.nameValuePair lists.${k} (words v))
            (lib.filterAttrs (k: _: lists ? ${k}) unit)
          // {
            description = lib.mkDefault (fill (lib.last unit.Description));
            unitConfig = lines (removeAttrs unit ([ "Description" ] ++ lib.attrNames lists));
          }
          # [Install] is left out: NixOS enables units with wantedBy links of its own
          // lib.optionalAttrs (service != null) {
            serviceConfig = lines (removeAttrs service [ "Environment" ]);
          }
          // lib.optionalAttrs (service != null && service ? Environment) {
            environment = environment service.Environment;
          };
        units = (lib.importJSON ./units.json).${if useNotifySockets then "vsock" else "started"};
        of = suffix: lib.mapAttrs' (n: s: lib.nameValuePair (lib.removeSuffix suffix n) (definition s))
          (lib.filterAttrs (n: _: lib.hasSuffix suffix n) units);
      in
      { services = of ".service"; targets = of ".target"; };

    # The generator as a package of `pkgs` (the overlay's, or built from this checkout).
    generatorFor = pkgs:
      pkgs.microvm-generator or (pkgs.python3Packages.callPackage ../pkgs/microvm-generator.nix { });
  };
in
self
