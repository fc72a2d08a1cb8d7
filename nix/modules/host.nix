# The MicroVM host module: declared VMs (microvm.vms.<name>), the state directory, the
# `microvm` user and command, and the systemd units. The units every VM uses are NixOS
# definitions (systemd.services."microvm@" and its helpers, systemd.targets.microvms) made from
# nix/lib/units.json, which scripts/regen renders from the generator's unit templates; each
# declared or autostarted VM gets a microvm@NAME unit of its own with the same definitions, so
# a user's override of it (lib.mkForce, extra `after`, ...) acts as on any NixOS service. What
# is per declared VM (install-microvm-NAME, a drop-in) and the helper scripts come from the
# generator (`microvm units --for-nixos`, built as one package).
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types literalExpression;
  mlib = import ../lib { inherit lib; };
  hostDefaults = import ../lib/host-defaults.nix;
  cfg = config.microvm;
  hostCfg = cfg.host;
  guestModule = ./microvm;

  vmOptions = { name, config, ... }: {
    options = {
      flake = mkOption {
        type = types.nullOr types.path;
        default = null;
        defaultText = literalExpression "inputs.my-vms";
        description = "A flake whose nixosConfigurations.<name> is this VM (built with the host).";
      };
      config = mkOption {
        # As in microvm.nix, the value is the evaluated NixOS system of the VM (so
        # `microvm.vms.NAME.config.config.networking.hostName` reads the guest's host name),
        # built from every definition of this option; each VM is evaluated once.
        type = types.nullOr (lib.mkOptionType {
          name = "microvm-guest";
          description = "NixOS module of the VM (its value: the evaluated VM system)";
          merge = _loc: defs: evalGuest name config (map (d: d.value) defs);
        });
        default = null;
        description = ''
          The VM's NixOS configuration as a module, evaluated with the host (no flake needed).
          Reading it gives the evaluated system, e.g. `.config.networking.hostName`.
        '';
      };
      evaluatedConfig = mkOption {
        type = types.nullOr types.unspecified;
        default = null;
        defaultText = literalExpression "nixpkgs.lib.nixosSystem { ... }";
        description = "An already evaluated NixOS system of the VM (it must import the guest module).";
      };
      pkgs = mkOption {
        type = types.nullOr types.unspecified;
        default = pkgs;
        defaultText = literalExpression "pkgs";
        description = "Package set the inline `config` is evaluated with; it decides the VM's system.";
      };
      nixpkgs = mkOption {
        type = types.path;
        default = if config.pkgs != null then config.pkgs.path else pkgs.path;
        defaultText = literalExpression "pkgs.path";
        description = "nixpkgs whose nixos/lib/eval-config.nix evaluates the inline `config`.";
      };
      specialArgs = mkOption {
        type = types.attrsOf types.unspecified;
        default = { };
        description = "Extra arguments for the modules of the inline `config`.";
      };
      extraModules = mkOption {
        type = types.listOf types.deferredModule;
        default = [ ];
        description = "More modules for the inline `config`.";
      };
      autostart = mkOption {
        type = types.bool;
        default = true;
        description = "Start the VM with the host (adds it to microvm.autostart).";
      };
      updateFlake = mkOption {
        type = types.nullOr types.str;
        default = null;
        defaultText = literalExpression ''"git+file:///home/user/my-vms"'';
        description = ''
          With `flake`: the host installs the VM once, and `microvm update NAME` rebuilds it
          from this flake reference after that (a host rebuild leaves it alone). Not for VMs
          declared with `config` or `evaluatedConfig`.
        '';
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = config.config != null;
        defaultText = literalExpression "config != null";
        description = "Restart the VM when a host rebuild changes its runner (as microvm.nix: on by default for an inline `config`).";
      };
    };
  };

  # the NixOS system of an inline `config` (the option's value)
  evalGuest = name: vm: modules: import (vm.nixpkgs + "/nixos/lib/eval-config.nix") {
    inherit (vm) pkgs specialArgs;
    system = (if vm.pkgs != null then vm.pkgs else pkgs).stdenv.hostPlatform.system;
    prefix = [ "microvm" "vms" name "config" ];
    modules = [
      guestModule
      { networking.hostName = lib.mkDefault name; }
      # the addresses this host derived for the VM on its declared networks
      ({ config, ... }: {
        microvm.networkAddresses = networkPlan.${config.networking.hostName} or { };
      })
    ] ++ modules ++ vm.extraModules;
  };

  # microvm.host.networks.NAME: the shape of generator/microvm/netplan.py's declaration
  networkOptions = {
    options = {
      ipv4 = mkOption { type = types.nullOr types.str; default = null; description = "IPv4 network ADDRESS/PREFIX (a /29 or larger, private)."; };
      ipv6 = mkOption { type = types.nullOr types.str; default = null; description = "\"auto\" (a ULA /64 derived from the host and network name) or an IPv6 /64."; };
      uplinks = mkOption { type = types.listOf types.str; default = [ ]; description = "Host interfaces the network is NATed to ([]: host-only)."; };
      domain = mkOption { type = types.nullOr types.str; default = null; description = "DNS domain of the VMs' names (VM.DOMAIN)."; };
      isolation = mkOption { type = types.enum [ "open" "isolated" "rules" ]; default = "open"; description = "Between VMs of the network: everything, nothing, or what `allow` lists."; };
      allow = mkOption {
        type = types.listOf (types.submodule { options = {
          from = mkOption { type = types.str; };
          to = mkOption { type = types.str; };
          tcp = mkOption { type = types.listOf types.port; default = [ ]; };
          udp = mkOption { type = types.listOf types.port; default = [ ]; };
        }; });
        default = [ ];
        description = "With isolation = \"rules\": what one VM may open to another.";
      };
      forwardPorts = mkOption {
        type = types.listOf (types.submodule { options = {
          vm = mkOption { type = types.str; };
          hostPort = mkOption { type = types.port; };
          port = mkOption { type = types.port; };
          proto = mkOption { type = types.enum [ "tcp" "udp" ]; default = "tcp"; };
        }; });
        default = [ ];
        description = "Host ports forwarded to a VM of the network (from outside and from the host).";
      };
    };
  };

  # what `microvm network` reads: the networks, and which declared VMs join them (by host
  # name, from which the VM's side derives its tap and MAC too)
  networkDeclaration = {
    hostName = config.networking.hostName;
    hostAddresses = hostCfg.addresses;
    networks = lib.mapAttrs (_: n: lib.filterAttrs (_: v: v != null) {
      inherit (n) ipv4 ipv6 uplinks domain isolation forwardPorts;
      allow = map (a: { inherit (a) from to tcp udp; }) n.allow;
    }) hostCfg.networks;
    # with the addresses derived here (the guest's static configuration has them): pins
    vms = lib.mapAttrs (vm: joins: map (j: lib.filterAttrs (_: v: v != null) {
      inherit (j) network mac;
      inherit (networkPlan.${vm}.${j.network}) ipv4 ipv6;
    }) joins) networkJoins;
  };
  # the declared VMs' network interfaces by guest host name, each with its option path
  networkJoins = lib.listToAttrs (lib.concatMap (vm:
    let
      joins = lib.concatLists (lib.imap0 (i: iface: lib.optional (iface.type == "network") {
        inherit (iface) network mac ipv4 ipv6;
        at = "microvm.vms.${vm.name}.config.microvm.interfaces[${toString i}]";
      }) vm.guest.microvm.interfaces);
    in
    lib.optional (joins != [ ]) (lib.nameValuePair vm.guest.networking.hostName joins)) declared);
  # what each VM is given on each network it joins (nix/lib/netplan.nix)
  networkPlan = mlib.netPlan {
    host = config.networking.hostName;
    networks = hostCfg.networks;
    vms = networkJoins;
  };
  # the declaration, checked by `microvm network check` when it is built: a conflict fails the
  # build with the generator's message, before anything runs
  networksJson = pkgs.runCommand "microvm-networks.json" {
    declaration = builtins.toJSON networkDeclaration;
    passAsFile = [ "declaration" ];
  } ''
    ${hostCfg.package}/bin/microvm network check "$declarationPath" --state-dir "$TMPDIR/state"
    cp "$declarationPath" "$out"
  '';
  networksFile = hostDefaults.networksFile;
  # the bodies of the project's nftables tables (`microvm network tables`: FAMILY.nft), from the
  # checked declaration, whose pins make them what `microvm network up` loads on this host
  networkTables = pkgs.runCommand "microvm-nftables" { } ''
    ${hostCfg.package}/bin/microvm network tables ${networksJson} --out "$out" --state-dir "$TMPDIR/state"
  '';
  networkUser = name: vm: lib.any (i: i.type == "network") vm.guest.microvm.interfaces;
  # what this module sets only where the host declares networks
  withNetworks = lib.mkIf (hostCfg.networks != { });
  # the names of the networks' bridges and taps, as globs
  netGlobs = map (p: "${p}*") (lib.attrValues mlib.netPrefixes);

  # the evaluated guest system of a declared VM
  guestOf = name: vm:
    if vm.flake != null then vm.flake.nixosConfigurations.${name}
    else if vm.evaluatedConfig != null then vm.evaluatedConfig
    else vm.config;

  declared = lib.mapAttrsToList (name: vm: let guest = (guestOf name vm).config; in {
    inherit name guest;
    inherit (vm) restartIfChanged updateFlake;
    autostart = lib.elem name cfg.autostart;
    runner = "${guest.microvm.declaredRunner}";
  }) cfg.vms;

  units = mlib.buildUnits {
    pkgs = pkgs;
    generator = hostCfg.package;
    inherit (cfg) stateDir;
    inherit (hostCfg) user group startupTimeout useNotifySockets;
    declared = map (vm: { inherit (vm) name runner restartIfChanged autostart updateFlake; }) declared;
    nixos = true;
  };

  shared = mlib.nixosUnits {
    inherit (cfg) stateDir;
    inherit (hostCfg) user group startupTimeout useNotifySockets;
    libexec = "${units}/libexec/microvm";
    command = "${hostCfg.package}/bin/microvm";
  };

  # microvm@NAME of a declared or autostarted VM: a unit of its own (not a drop-in on the
  # template), holding the final definitions of microvm@ (with what a user set there) first,
  # so a definition of microvm@NAME adds to them (a list; for a setting systemd takes once the
  # last line wins) and lib.mkForce replaces them. The [Unit] settings NixOS derives from its
  # own options (after, requires, description, ...) are taken as those options.
  template = config.systemd.services."microvm@";
  derivedUnitKeys = [ "Description" "Documentation" "Requires" "Wants" "Upholds" "After"
    "Before" "BindsTo" "PartOf" "Conflicts" "Requisite" "OnFailure" "OnSuccess"
    "PropagatesReloadTo" "ReloadPropagatedFrom" "X-Restart-Triggers" "X-Reload-Triggers" ];
  first = lib.mapAttrs (_: v: lib.mkBefore (lib.toList v));
  instance = {
    description = lib.mkDefault template.description;
    unitConfig = first (removeAttrs template.unitConfig derivedUnitKeys);
    serviceConfig = first template.serviceConfig;
    environment = lib.mapAttrs (_: lib.mkDefault) (removeAttrs template.environment [ "PATH" ]);
  } // lib.genAttrs [ "after" "before" "requires" "wants" "partOf" "bindsTo" "conflicts" "requisite" ]
    (o: lib.mkBefore template.${o});

  # After a switch: restart declared VMs whose runner changed (per restartIfChanged), stop
  # VMs no longer declared and remove their taps; state directories and volumes stay
  # (`microvm remove --purge NAME` deletes them). Reruns whenever the declared set changes.
  reconcile = {
    description = "Apply the host's declared MicroVMs";
    wantedBy = [ "multi-user.target" ];
    after = map (vm: "install-microvm-${vm.name}.service") declared;
    restartTriggers = map (vm: "${vm.name}=${vm.runner}") declared;
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = lib.escapeShellArgs ([ "${hostCfg.package}/bin/microvm" "reconcile"
        "--state-dir" cfg.stateDir ] ++ map (vm: "--declared=${vm.name}") declared);
    };
  };

  qemuBridges = lib.unique (lib.concatMap (vm:
    lib.optionals (vm.guest.microvm.hypervisor == "qemu")
      (map (i: i.bridge) (lib.filter (i: i.type == "bridge") vm.guest.microvm.interfaces)))
    declared);

  # a unit of the package, switched on by NixOS (it ignores the package's .wants links)
  enable = target: { wantedBy = [ target ]; overrideStrategy = "asDropin"; };
  vmNames = lib.unique (map (vm: vm.name) declared ++ cfg.autostart);

  shareDirs = vm: lib.concatMap (s:
    lib.optional (s.source != "/nix/store") (
      if lib.hasPrefix "/" s.source then s.source else "${cfg.stateDir}/${vm.name}/${s.source}"))
    vm.guest.microvm.shares;
in
{
  options.microvm = {
    host.enable = mkOption {
      type = types.bool;
      default = true;
      description = "Run MicroVMs on this machine: units, state directory, user and the `microvm` command.";
    };
    host.package = mkOption {
      type = types.package;
      default = mlib.generatorFor pkgs;
      defaultText = literalExpression "pkgs.microvm-generator";
      description = "The generator: the `microvm` command and the source of the host's units.";
    };
    # microvm.nix made installing its command optional (PR 591, default on); the name of its
    # option could not be read here (that change is newer than the stored upstream source)
    host.installCommand = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Put the `microvm` command on the system's PATH. The units use the generator from
        host.package whatever this says; turn it off where VMs are only declared here.
      '';
    };
    host.user = mkOption {
      type = types.str;
      default = hostDefaults.user;
      description = "User the hypervisors run as.";
    };
    host.group = mkOption {
      type = types.str;
      default = hostDefaults.group;
      description = "Group the hypervisors run as (it needs /dev/kvm).";
    };
    host.startupTimeout = mkOption {
      type = types.ints.positive;
      default = 150;
      description = "Seconds `microvm@NAME.service` may take to start (TimeoutStartSec).";
    };
    host.useNotifySockets = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Count a VM as started when its guest's service manager reports READY=1 over vsock
        (every VM needs microvm.vsock.cid and a systemd guest), instead of when the hypervisor
        has started. A VM that never reports fails to start after host.startupTimeout.
      '';
    };
    host.networks = mkOption {
      type = types.attrsOf (types.submodule networkOptions);
      default = { };
      example = lib.literalExpression ''{ lan = { ipv4 = "10.231.0.0/24"; ipv6 = "auto"; uplinks = [ "eth0" ]; domain = "vm.internal"; }; }'';
      description = ''
        Networks of this host that VMs join by name (`microvm.interfaces = [ { type = "network";
        network = "lan"; } ]`): a bridge each with the VMs' gateway, DHCP with a fixed lease and
        a DNS name per VM, router advertisements, NAT to the uplinks, port forwards, isolation
        and anti-spoofing, made by `microvm network up` (the unit microvm-networks) from
        /etc/microvm/networks.json, which this option writes. docs/networking.md.
      '';
    };
    host.addresses = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "192.168.1.10/24" ];
      description = "The host's own addresses (ADDRESS/PREFIX): a declared network that overlaps one is refused.";
    };
    vms = mkOption {
      type = types.attrsOf (types.submodule vmOptions);
      default = { };
      description = "MicroVMs built and installed with this host's configuration.";
    };
    autostart = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "VMs started at boot: declared ones (by default all of them) and ones made with the `microvm` command.";
    };
    stateDir = mkOption {
      type = types.path;
      default = hostDefaults.stateDir;
      description = "Directory holding one directory per VM (runner links, volumes, sockets).";
    };
  };

  config = lib.mkIf hostCfg.enable {
    assertions = lib.mapAttrsToList (name: vm: {
      assertion = lib.length (lib.filter (x: x != null) [ vm.flake vm.config vm.evaluatedConfig ]) == 1;
      message = "microvm.vms.${name}: set exactly one of flake, config and evaluatedConfig";
    }) cfg.vms
    ++ lib.mapAttrsToList (name: vm: {
      assertion = vm.updateFlake != null -> vm.flake != null;
      message = "microvm.vms.${name}.updateFlake: only a VM built from `flake` can be updated " +
        "from a flake; one declared with config or evaluatedConfig follows the host configuration";
    }) cfg.vms;

    microvm.autostart = lib.mapAttrsToList (name: _: name) (lib.filterAttrs (_: vm: vm.autostart) cfg.vms);

    boot.kernelModules = [ "tap" "vhost_net" ];

    users.users.${hostCfg.user} = {
      isSystemUser = true;
      inherit (hostCfg) group;
    };
    users.groups.${hostCfg.group} = { };

    environment.systemPackages = lib.mkIf hostCfg.installCommand [ hostCfg.package ];
    environment.etc.${lib.removePrefix "/etc/" networksFile} = withNetworks {
      source = networksJson;
    };
    # the tables are NixOS's own too: nftables.service loads them, and its reload (a flush of the
    # ruleset, or the deletion of its declared tables) puts them back (with nftables disabled,
    # microvm-networks' reload does after a flush); `include` keeps them built, not read at evaluation
    networking.nftables.tables = withNetworks (lib.listToAttrs (map
      (family: lib.nameValuePair "${hostDefaults.nftTable}-${family}" {
        name = hostDefaults.nftTable;
        inherit family;
        content = ''include "${networkTables}/${family}.nft"'';
      }) [ "inet" "bridge" ]));
    # the host's own network managers leave the networks' bridges and taps alone (NixOS's
    # dhcpcd would ask for a lease on each, and a catch-all .network would take them)
    networking.networkmanager.unmanaged = withNetworks (map (g: "interface-name:${g}") netGlobs);
    networking.dhcpcd.denyInterfaces = withNetworks netGlobs;
    systemd.network.networks."05-microvm-networks" = withNetworks {
      matchConfig.Name = lib.concatStringsSep " " netGlobs;
      linkConfig.Unmanaged = true;
    };
    # QEMU attaches `type = "bridge"` interfaces through qemu-bridge-helper, which only joins
    # bridges its ACL allows
    environment.etc."qemu/bridge.conf" = lib.mkIf (qemuBridges != [ ]) {
      text = lib.concatMapStrings (br: "allow ${br}\n") qemuBridges;
    };
    # the helper creates the tap, so it needs CAP_NET_ADMIN whoever runs QEMU; the runner uses
    # /run/wrappers/bin/qemu-bridge-helper when it exists (libvirtd brings its own wrapper)
    security.wrappers.qemu-bridge-helper = lib.mkIf
      (qemuBridges != [ ] && !(config.virtualisation.libvirtd.enable or false)) {
        source = "${pkgs.qemu-utils or pkgs.qemu}/libexec/qemu-bridge-helper";
        owner = "root";
        group = "root";
        capabilities = "cap_net_admin+ep";
      };

    systemd.packages = [ units ];
    systemd.targets = shared.targets // {
      microvms = shared.targets.microvms // { wantedBy = [ "multi-user.target" ]; };
    };
    systemd.services = lib.mkMerge (
      [ shared.services { microvm-reconcile = reconcile; } ]
      ++ map (vm: { "install-microvm-${vm.name}" = enable "microvms.target"; }) declared
      ++ map (name: { "microvm@${name}" = instance; }) vmNames
      ++ map (vm: { "microvm@${vm.name}".restartIfChanged = lib.mkDefault vm.restartIfChanged; }) declared
      ++ map (name: { "microvm@${name}".wantedBy = [ "microvms.target" ]; }) cfg.autostart
      # the declared networks (microvm-networks.service of ./units.json, which runs
      # `microvm network up` of /etc/microvm/networks.json), made before the VMs that join them
      # start; a changed declaration reloads it (`up` applies the change and joins the taps of
      # VMs already running: a restart would take the bridges from under them); NixOS's
      # iptables firewall leaves its tables alone, and
      # nftables.service loads them itself (networking.nftables.tables above)
      ++ lib.optional (hostCfg.networks != { }) {
        microvm-networks = {
          wantedBy = [ "microvms.target" ];
          reloadTriggers = [ (builtins.toJSON networkDeclaration) ];
          path = [ pkgs.iproute2 pkgs.nftables pkgs.dnsmasq ];
        };
      }
      ++ map (vm: { "microvm@${vm.name}" = {
        requires = [ "microvm-networks.service" ];
        after = [ "microvm-networks.service" ];
      }; }) (lib.filter (vm: networkUser vm.name vm) declared));

    systemd.tmpfiles.settings."10-microvm" = lib.mkMerge ([
      # root owns the state directory and .control (runner links, metadata: what root runs
      # and reads); install-microvm-NAME makes each VM's data directory (SECURITY.md)
      { ${cfg.stateDir}.d = { user = "root"; group = "root"; mode = "0755"; }; }
      { "${cfg.stateDir}/.control".d = { user = "root"; group = "root"; mode = "0755"; }; }
    ]
      # a shared directory is made when missing, and left alone when it exists
      ++ map (dir: { ${dir}.d = { user = ":${hostCfg.user}"; group = ":${hostCfg.group}"; mode = ":0775"; }; })
      (lib.unique (lib.concatMap shareDirs declared)));
  };
}
