# The generator's semantic checks (generator/microvm/validate.py) that Nix can run at evaluation
# time, so `nixos-rebuild` fails with the same option path and message as `microvm validate`.
# { config, inToplevel } -> [ { path, message } ], in the order the generator reports them.
# inToplevel leaves out the values that depend on the system's toplevel (the command line and the
# store disk): NixOS checks assertions while it builds that toplevel.
{ lib, mlib }:

{ config, inToplevel ? false }:

let
  inherit (lib) concatLists imap0 optional optionals optionalString elem length
    stringLength concatStringsSep hasInfix hasPrefix removeSuffix toLower;

  cfg = config.microvm;
  hv = cfg.hypervisor;
  caps = mlib.capabilities.capabilities.${hv};
  phrase = feature: mlib.capabilities.features.${feature};
  hostSystem = cfg.vmHostPackages.stdenv.hostPlatform.system;

  problem = path: message: { inherit path message; };

  # Python's repr() of a string, as the generator quotes values in its messages.
  repr = s:
    if hasInfix "'" s && !(hasInfix "\"" s) then "\"${s}\""
    else "'" + lib.replaceStrings [ "\\" "'" "\n" "\t" ] [ "\\\\" "\\'" "\\n" "\\t" ] s + "'";

  # A bracket expression of the C0 control characters and DEL (Nix strings cannot spell them).
  controlClass = builtins.fromJSON ''"[\u0001-\u001f\u007f]"'';
  hasControl = s: length (builtins.split controlClass s) > 1;
  matches = re: s: builtins.match re s != null;

  need = feature: path: what:
    let
      others = lib.filter (h: h != hv) (mlib.supporting feature);
      alt = optionalString (others != [ ]) "; hypervisors that support it: ${concatStringsSep ", " others}";
      where = optionalString (mlib.supports hv feature)
        " on ${hostSystem} (only on ${concatStringsSep ", " (caps.featurePlatforms.${feature} or caps.platforms)})";
      ignored = caps.ignored.${feature} or null;
    in
    # accepted although the hypervisor ignores it: a warning, as the generator prints
    if !(mlib.supportsOn hv feature hostSystem) && ignored != null
    then lib.warn "${path}: ${if what == null then phrase feature else what} not supported by ${hv}, ignored: ${ignored}" [ ]
    else optional (!(mlib.supportsOn hv feature hostSystem))
      (problem path "${if what == null then phrase feature else what} not supported by ${hv}${where}${alt}");

  # Every later occurrence of a value, pointing at the first one.
  unique = what: items:
    let
      step = acc: item:
        if acc.seen ? ${item.value}
        then acc // { found = acc.found ++ [ (problem item.path "duplicate ${what} ${repr item.value} (also used by ${acc.seen.${item.value}})") ]; }
        else acc // { seen = acc.seen // { ${item.value} = item.path; }; };
    in
    (builtins.foldl' step { seen = { }; found = [ ]; } items).found;

  absolute = path: value:
    optional (!(hasPrefix "/" value)) (problem path "must be an absolute guest path, got ${repr value}");

  controlFree = path: message: value: optional (hasControl value) (problem path message);
  noControlNewline = "must not contain control characters (newline...)";

  hostnameProblem = name:
    if hasControl name then "must not contain control characters (newline, tab, NUL...)"
    else if hasInfix "/" name || elem name [ "." ".." ] then "must not contain '/' or be '.' or '..' (it names files and sockets)"
    else if stringLength name > 253 then "must be at most 253 bytes"
    else null;

  ifnameProblem = name:
    if stringLength name >= 16 then "interface names are at most 15 bytes (IFNAMSIZ), got ${repr name}"
    else if elem name [ "." ".." ] || hasInfix "/" name || hasInfix ":" name || matches ".*[[:space:]].*" name
    then "not a valid interface name: ${repr name} (no '/', ':' or whitespace)"
    else if hasControl name then "must not contain control characters"
    else null;
  ifname = path: name: let p = ifnameProblem name; in optional (p != null) (problem path p);

  isIPv4 = s:
    let
      octets = builtins.match "([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})" s;
      ok = o: lib.toInt o <= 255 && (o == "0" || !(hasPrefix "0" o));
    in
    octets != null && lib.all ok octets;

  hotplugged = if cfg.hotpluggedMem == null then cfg.hotplugMem else cfg.hotpluggedMem;

  machine =
    optional (!(elem hostSystem caps.platforms))
      (problem "microvm.hypervisor" "${hv} does not run on ${hostSystem} (it runs on ${concatStringsSep ", " caps.platforms})")
    ++ (let p = hostnameProblem config.networking.hostName; in optional (p != null) (problem "networking.hostName" p))
    ++ optionals (cfg.cpu != null) (need "CPU_EMULATION" "microvm.cpu" null)
    ++ optionals cfg.hugepageMem (need "HUGEPAGES" "microvm.hugepageMem" null)
    ++ optionals (cfg.socket != null) (
      let n = need "CONTROL_SOCKET" "microvm.socket" "a control socket (set microvm.socket = null)";
      in if n != [ ] then n else controlFree "microvm.socket" "must not contain control characters" cfg.socket)
    # every hypervisor takes it (the guest's /etc/machine-id)
    ++ optionals (cfg.machineId != null && !(matches "[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}" cfg.machineId))
      [ (problem "microvm.machineId" "must be a UUID like 8-4-4-4-12 hex digits, got ${repr cfg.machineId}") ]
    ++ optionals (cfg.user != null) (need "CHANGE_USER" "microvm.user" null)
    ++ optionals (cfg.extraArgsScript != null) (controlFree "microvm.extraArgsScript" noControlNewline cfg.extraArgsScript)
    ++ optionals (!inToplevel) (concatLists (imap0 (i: w: controlFree "microvm.kernelParams[${toString i}]"
      "must not contain control characters (newline...)" w) cfg.kernelParams))
    ++ optional (!inToplevel && cfg.storeOnDisk && cfg.storeDisk == null)
      (problem "microvm.storeDisk" "must be set when microvm.storeOnDisk is true (Nix builds it; or share /nix/store)")
    ++ optionals (cfg.writableStoreOverlay != null) (absolute "microvm.writableStoreOverlay" cfg.writableStoreOverlay)
    ++ optionals cfg.graphics.enable (need "GRAPHICS" "microvm.graphics.enable" null)
    ++ optionals (cfg.credentialFiles != { }) (
      need "CREDENTIALS" "microvm.credentialFiles" null
      ++ concatLists (map (name: optional (name == "" || hasInfix "/" name || hasControl name)
        (problem "microvm.credentialFiles.${name}" "not a valid credential name")) (builtins.attrNames cfg.credentialFiles)))
    ++ optionals (cfg.qemu.machineOpts != null) (concatLists (lib.mapAttrsToList (key: value:
      optional (hasInfix "," key || hasInfix "=" key) (problem "microvm.qemu.machineOpts.${key}" "a property name has no ',' or '='")
      ++ controlFree "microvm.qemu.machineOpts.${key}" "must not contain control characters" value) cfg.qemu.machineOpts));

  memory =
    optional (cfg.initialBalloonMem != 0 && !cfg.balloon) (problem "microvm.initialBalloonMem" "needs microvm.balloon = true")
    ++ optionals cfg.balloon (
      let n = need "BALLOON" "microvm.balloon" null;
      in if n != [ ] then n
      else optionals (cfg.initialBalloonMem != 0) (need "INITIAL_BALLOON" "microvm.initialBalloonMem" null))
    ++ optional (cfg.initialBalloonMem != 0 && cfg.initialBalloonMem >= cfg.mem + hotplugged)
      (problem "microvm.initialBalloonMem" "must be less than the guest's memory (${toString (cfg.mem + hotplugged)} MiB), got ${toString cfg.initialBalloonMem}")
    ++ optional (hotplugged > cfg.hotplugMem)
      (problem "microvm.hotpluggedMem" "must be at most microvm.hotplugMem (${toString cfg.hotplugMem}), got ${toString hotplugged}")
    ++ optionals (cfg.hotplugMem != 0) (
      let n = need "HOTPLUG_MEM" "microvm.hotplugMem" null;
      in if n != [ ] then n
      else optional (hv == "qemu" && cfg.qemu.machine == "microvm") (problem "microvm.hotplugMem"
        "virtio-mem needs PCI; the QEMU microvm machine has none (leave microvm.qemu.machine unset, or use q35)"))
    ++ optionals (cfg.hotplugMem != 0 && hotplugged != 0 && mlib.supports hv "HOTPLUG_MEM")
      (need "HOTPLUGGED_MEM" "microvm.hotpluggedMem" null);

  volumes =
    concatLists (imap0 (i: v:
      let p = "microvm.volumes[${toString i}]"; in
      controlFree "${p}.image" noControlNewline v.image
      ++ optional (v.autoCreate && v.size == null) (problem "${p}.size" "must be set when autoCreate is true (size in MiB)")
      ++ (if !(elem v.imageType caps.imageTypes)
          then [ (problem "${p}.imageType" "${hv} reads only ${concatStringsSep ", " caps.imageTypes} images, got ${repr v.imageType}") ]
          else optional (v.autoCreate && v.imageType != "raw")
            (problem "${p}.imageType" "autoCreate makes raw images; set imageType = \"raw\" or autoCreate = false"))
      ++ optionals v.direct (need "VOLUME_DIRECT" "${p}.direct" null)
      ++ optionals (v.serial != null) (
        let n = need "VOLUME_SERIAL" "${p}.serial" null; in
        if n != [ ] then n else
        optional (stringLength v.serial > 20)
          (problem "${p}.serial" "at most 20 bytes (virtio-blk), got ${toString (stringLength v.serial)}")
        ++ optional (!(matches "[A-Za-z0-9._-]+" v.serial))
          (problem "${p}.serial" "only letters, digits, '.', '_' and '-', got ${repr v.serial}"))
      ++ optionals (v.mountPoint != null) (absolute "${p}.mountPoint" v.mountPoint)
      ++ concatLists (imap0 (j: a: controlFree "${p}.mkfsExtraArgs[${toString j}]" "must not contain control characters" a) v.mkfsExtraArgs)
    ) cfg.volumes)
    ++ unique "image" (imap0 (i: v: { path = "microvm.volumes[${toString i}].image"; value = v.image; }) cfg.volumes)
    ++ unique "serial" (lib.filter (x: x.value != null)
      (imap0 (i: v: { path = "microvm.volumes[${toString i}].serial"; value = v.serial; }) cfg.volumes));

  # Python's `m.rstrip("/") or "/"`.
  mountKey = m: let s = stripSlashes m; in if s == "" then "/" else s;
  stripSlashes = m: if m != "" && lib.hasSuffix "/" m then stripSlashes (removeSuffix "/" m) else m;

  shares =
    concatLists (imap0 (i: s:
      let p = "microvm.shares[${toString i}]"; in
      (if s.proto == "9p" then
        (let n = need "SHARE_9P" "${p}.proto" null;
         in if n != [ ] then n else optionals s.readOnly (need "SHARE_9P_READONLY" "${p}.readOnly" null))
      else
        (let n = need "SHARE_VIRTIOFS" "${p}.proto" null;
         in if n != [ ] then n else optionals s.readOnly (need "SHARE_VIRTIOFS_READONLY" "${p}.readOnly" null))
        ++ optional (stringLength s.tag > 36)
          (problem "${p}.tag" "virtiofs tags are at most 36 bytes, got ${toString (stringLength s.tag)}"))
      ++ optional (hasControl s.tag || hasInfix "," s.tag || hasInfix "/" s.tag || elem s.tag [ "." ".." ])
        (problem "${p}.tag" "must not contain ',', '/' or control characters, got ${repr s.tag}")
      ++ controlFree "${p}.source" noControlNewline s.source
      ++ optionals (s.socket != null) (controlFree "${p}.socket" noControlNewline s.socket)
      ++ absolute "${p}.mountPoint" s.mountPoint
      ++ concatLists (imap0 (j: a: controlFree "${p}.extraArgs[${toString j}]" "must not contain control characters" a) s.extraArgs)
    ) cfg.shares)
    ++ unique "tag" (imap0 (i: s: { path = "microvm.shares[${toString i}].tag"; value = s.tag; }) cfg.shares)
    ++ unique "socket" (lib.filter (x: x.value != null)
      (imap0 (i: s: { path = "microvm.shares[${toString i}].socket"; value = s.socket; }) cfg.shares))
    ++ unique "mount point" (
      imap0 (i: s: { path = "microvm.shares[${toString i}].mountPoint"; value = mountKey s.mountPoint; }) cfg.shares
      ++ lib.filter (x: x.value != null) (imap0 (i: v: {
        path = "microvm.volumes[${toString i}].mountPoint";
        value = if v.mountPoint == null then null else mountKey v.mountPoint;
      }) cfg.volumes));

  featureOfInterface = { user = "NET_USER"; tap = "NET_TAP"; macvtap = "NET_MACVTAP"; bridge = "NET_BRIDGE"; };
  users = lib.filter (x: x.type == "user") cfg.interfaces;

  interfaces =
    concatLists (imap0 (i: x:
      let p = "microvm.interfaces[${toString i}]"; in
      need featureOfInterface.${x.type} "${p}.type" null
      ++ (if !(matches "[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}" x.mac)
          then [ (problem "${p}.mac" "must look like 02:00:00:00:00:01, got ${repr x.mac}") ]
          else optional (elem (toLower (builtins.substring 1 1 x.mac)) [ "1" "3" "5" "7" "9" "b" "d" "f" ])
            (problem "${p}.mac" "must be a unicast address (first octet even), got ${repr x.mac}"))
      ++ (if x.type != "user" then ifname "${p}.id" x.id
          else controlFree "${p}.id" "must not contain control characters" x.id)
      ++ optionals (x.type == "macvtap") (
        (if x.macvtap.link == null || x.macvtap.link == ""
         then [ (problem "${p}.macvtap.link" "must be set for a macvtap interface") ]
         else ifname "${p}.macvtap.link" x.macvtap.link)
        ++ optional (x.macvtap.mode == null) (problem "${p}.macvtap.mode" "must be set for a macvtap interface"))
      ++ optionals (x.type == "bridge") (
        if x.bridge == null || x.bridge == ""
        then [ (problem "${p}.bridge" "must be set for a bridge interface") ]
        else ifname "${p}.bridge" x.bridge)
      ++ optionals x.tap.vhost (
        if x.type == "user" then [ (problem "${p}.tap.vhost" "vhost-net applies to tap, bridge and macvtap only") ]
        else need "VHOST_NET" "${p}.tap.vhost" null)
    ) cfg.interfaces)
    ++ unique "id" (imap0 (i: x: { path = "microvm.interfaces[${toString i}].id"; value = x.id; }) cfg.interfaces)
    ++ unique "MAC" (imap0 (i: x: { path = "microvm.interfaces[${toString i}].mac"; value = toLower x.mac; }) cfg.interfaces)
    ++ optional (length users > 1 && hv == "kvmtool") (problem "microvm.interfaces" "kvmtool has one user-mode network per VM")
    ++ concatLists (imap0 (i: f:
      let p = "microvm.forwardPorts[${toString i}]"; in
      optional (users == [ ]) (problem p "port forwarding needs an interface with type = \"user\"")
      ++ need "FORWARD_PORTS" p null
      ++ concatLists (map (side:
        let addr = f.${side}.address; in
        optional (addr != "" && !(isIPv4 addr))
          (problem "${p}.${side}.address" "must be an IPv4 address or empty, got ${repr addr}")) [ "host" "guest" ])
    ) cfg.forwardPorts)
    ++ unique "host port" (lib.filter (x: x != null) (imap0 (i: f:
      if f.from == "host"
      then { path = "microvm.forwardPorts[${toString i}].host.port"; value = "${f.proto}/${toString f.host.port}"; }
      else null) cfg.forwardPorts))
    ++ optionals (cfg.vsock.cid != null) (
      let n = need "VSOCK" "microvm.vsock.cid" null;
      in if n != [ ] then n
      else optional (cfg.vsock.cid < 3 || cfg.vsock.cid > 4294967294) (problem "microvm.vsock.cid"
        "must be between 3 and 4294967294 (0-2 are reserved), got ${toString cfg.vsock.cid}"));

  devices =
    concatLists (imap0 (i: d:
      let p = "microvm.devices[${toString i}]"; in
      if d.bus == "pci" then
        need "PCI_PASSTHROUGH" "${p}.bus" null
        ++ optional (!(matches "[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]" d.path))
          (problem "${p}.path" "must be a PCI address like 0000:01:00.0, got ${repr d.path}")
      else
        need "USB_PASSTHROUGH" "${p}.bus" null
        ++ controlFree "${p}.path" "must not contain control characters" d.path
    ) cfg.devices)
    ++ unique "device" (imap0 (i: d: { path = "microvm.devices[${toString i}].path"; value = "${d.bus}:${d.path}"; }) cfg.devices);
in
machine ++ memory ++ volumes ++ shares ++ interfaces ++ devices
