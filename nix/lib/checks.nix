# The generator's rules after the schema (generator/microvm/validate.py and the backends'
# problems()) run on a VM document at evaluation time, so `nixos-rebuild` fails with the same
# option paths as `microvm validate`; tests/test_parity.py runs every bad document of the tests
# through both. The per-field rules are the schema's x- keywords, read from the schema by both
# sides; the rules between options are written here and in validate.py.
# { doc, part } -> [ { path, message } ]. doc: the modules' document, or a schema-valid one
# passed through schema.resolve. part: "all"; or "assertions", everything but the values made
# from the system's toplevel (the command line, the store disk), as NixOS checks assertions
# before it builds the toplevel; or "toplevel", only those values ("assertions" ++ "toplevel"
# finds what "all" finds, so a guest's runner adds the second to the first, computed once).
{ lib, mlib }:

let
  # the options whose values are made from the toplevel: the field walk leaves them to `late`
  fromToplevel = [ "kernelParams" "storeDisk" ];
  rules = (import ./data.nix).rules;
  # (the values made from the toplevel are not even looked at there)
  rulesBeforeToplevel = rules // {
    properties = removeAttrs rules.properties fromToplevel;
    propertyNames = builtins.filter (name: !(builtins.elem name fromToplevel)) rules.propertyNames;
  };
in
{ doc, part ? "all" }:

let
  inherit (lib) concatLists imap0 optionalString elem length
    stringLength concatStringsSep hasInfix hasPrefix toLower filter any;

  cfg = doc.microvm;
  hv = cfg.hypervisor;
  system = doc.system;
  arch = builtins.head (lib.splitString "-" system);
  caps = mlib.capabilities.capabilities.${hv};
  limits = mlib.capabilities.limits;
  phrase = feature: mlib.capabilities.features.${feature};

  problem = path: message: { inherit path message; };

  # Python's repr() of a string, as the generator quotes values in its messages.
  repr = s:
    if hasInfix "'" s && !(hasInfix "\"" s) then "\"${s}\""
    else "'" + lib.replaceStrings [ "\\" "'" "\n" "\t" ] [ "\\\\" "\\'" "\\n" "\\t" ] s + "'";

  # A bracket expression of the C0 control characters and DEL (Nix strings cannot spell them).
  controlClass = builtins.fromJSON ''"[\u0001-\u001f\u007f]"'';
  hasControl = s: length (builtins.split controlClass s) > 1;
  matches = re: s: builtins.match re s != null;

  # the features the hypervisor supports on this platform (the same answer as mlib.supportsOn)
  here = (import ./data.nix).supportedOn.${hv}.${system} or null;

  need = feature: path: what:
    if here != null && here ? ${feature} then [ ] else
    let
      others = filter (h: h != hv) (mlib.supporting feature);
      alt = optionalString (others != [ ]) "; hypervisors that support it: ${concatStringsSep ", " others}";
      where = optionalString (mlib.supports hv feature)
        " on ${system} (only on ${concatStringsSep ", " caps.featurePlatforms.${feature}})";
      ignored = caps.ignored.${feature} or null;
    in
    # accepted although the hypervisor ignores it: a warning, as the generator prints
    if !(mlib.supportsOn hv feature system) && ignored != null
    then lib.warn "${path}: ${if what == null then phrase feature else what} not supported by ${hv}, ignored: ${ignored}" [ ]
    else (if (!(mlib.supportsOn hv feature system)) then [ (problem path "${if what == null then phrase feature else what} not supported by ${hv}${where}${alt}") ] else [ ]);

  # Every later occurrence of a value, pointing at the first one.
  unique = what: items:
    let
      step = acc: item:
        if acc.seen ? ${item.value}
        then acc // { found = acc.found ++ [ (problem item.path "duplicate ${what} ${repr item.value} (also used by ${acc.seen.${item.value}})") ]; }
        else acc // { seen = acc.seen // { ${item.value} = item.path; }; };
    in
    (builtins.foldl' step { seen = { }; found = [ ]; } items).found;

  # -- the per-field rules: the schema's x- keywords (validate._field_rules) ------------------

  # the x- rules of one option on its value: { stop; problems }; stop when it needs a feature
  # the hypervisor lacks (nothing below it is checked then)
  fieldRules = { sch, value, path }:
    let
      req = sch."x-requires" or null;
      needs = if req != null && !(elem value [ null false 0 "" [ ] { } ])
        then (if builtins.isString req then need req path null else need req.feature path req.what)
        else [ ];
      match = sch."x-match" or null;
      most = sch."x-maxBytes" or null;
    in
    if needs != [ ] then { stop = true; problems = needs; }
    else {
      stop = false;
      problems = if !(builtins.isString value) then [ ] else
        (if sch."x-noControl" or false && builtins.length (builtins.split controlClass value) > 1
         then [ (problem path "must not contain control characters (newline, tab...)") ] else [ ])
        ++ (if sch."x-absolute" or false && builtins.substring 0 1 value != "/"
          then [ (problem path "must be an absolute guest path, got ${repr value}") ] else [ ])
        ++ (if most != null && stringLength value > most
          then [ (problem path "must be at most ${toString most} bytes, got ${toString (stringLength value)}") ] else [ ])
        ++ (if match != null && builtins.match match.regex value == null
          then [ (problem path "must be ${match.what}, got ${repr value}") ] else [ ]);
    };
  noRules = { stop = false; problems = [ ]; };

  # the schema cut down to the branches that carry a rule (./data.nix `rules`): only those are
  # visited; `own` says whether a node has rules of its own. Two shortcuts, each giving what
  # the walk would: a list of strings whose only rule is x-noControl (kernelParams, extraArgs)
  # is looked at as one string while none holds a control character, and x-unique is not
  # looked for in a list of fewer than two items
  walk = { sch, value, path } @ at:
    if value == null then [ ]
    else
      let own = if sch.own then fieldRules at else noRules; in
      own.problems ++ (if own.stop then [ ] else
        if builtins.isAttrs value then
          builtins.concatMap (k: if value ? ${k}
            then walk { sch = sch.properties.${k}; value = value.${k}; path = "${path}.${k}"; } else [ ])
            (sch.propertyNames or [ ])
          ++ (if sch ? additionalProperties then builtins.concatMap (k:
            if sch.properties or { } ? ${k} then [ ]
            else walk { sch = sch.additionalProperties; value = value.${k}; path = "${path}.${k}"; })
            (builtins.attrNames value)
          else [ ])
        else if builtins.isList value && sch ? items then
          (if sch.items.onlyNoControl && builtins.all builtins.isString value
              && !(hasControl (builtins.concatStringsSep "" value))
           then [ ]
           else concatLists (imap0 (i: v: walk { sch = sch.items; value = v; path = "${path}[${toString i}]"; }) value))
          ++ (if length value < 2 then [ ] else builtins.concatMap (k: let what = sch.items.properties.${k}."x-unique" or null; in
            if what == null then [ ] else unique what (filter (x: x.value != null)
              (imap0 (i: v: { path = "${path}[${toString i}].${k}"; value = v.${k} or null; }) value)))
            (sch.items.propertyNames or [ ]))
        else [ ]);

  fields = walk { sch = rulesBeforeToplevel; value = cfg; path = "microvm"; };
  fieldsFromToplevel = builtins.concatMap (name:
    if rules.properties ? ${name} && cfg ? ${name}
    then walk { sch = rules.properties.${name}; value = cfg.${name}; path = "microvm.${name}"; }
    else [ ]) fromToplevel;

  # -- rules between options (validate._check_*) ----------------------------------------------
  hostnameProblem = name:
    if hasControl name then "must not contain control characters (newline, tab, NUL...)"
    else if matches ".*/.*" name || elem name [ "." ".." ] then "must not contain '/' or be '.' or '..' (it names files and sockets)"
    else if stringLength name > 253 then "must be at most 253 bytes"
    else null;

  # what Python's str.isspace() calls whitespace beyond ASCII's
  # '/', ':' or what Python's str.isspace() calls whitespace (ASCII's and Unicode's), in one
  # regular expression (the fast path: one builtin call)
  badInIfname = builtins.fromJSON
    ''".*([/:[:space:]]|\u001c|\u001d|\u001e|\u001f|\u0085|\u00a0|\u1680|\u2000|\u2001|\u2002|\u2003|\u2004|\u2005|\u2006|\u2007|\u2008|\u2009|\u200a|\u2028|\u2029|\u202f|\u205f|\u3000).*"'';

  ifnameProblem = name:
    if stringLength name >= 16 then "interface names are at most 15 bytes (IFNAMSIZ), got ${repr name}"
    else if elem name [ "." ".." ] || matches badInIfname name
    then "not a valid interface name: ${repr name} (no '/', ':' or whitespace)"
    else if hasControl name then "must not contain control characters"
    else null;
  ifname = path: name: let p = ifnameProblem name; in (if (p != null) then [ (problem path p) ] else [ ]);

  isIPv4 = s:
    let
      octets = builtins.match "([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})" s;
      ok = o: lib.toInt o <= 255 && (o == "0" || !(hasPrefix "0" o));
    in
    octets != null && lib.all ok octets;

  hotplugged = if cfg.hotpluggedMem == null then cfg.hotplugMem else cfg.hotpluggedMem;
  # the store disk's path where it is looked at; in the toplevel's assertions it is not known
  # yet (the store disk is built from the toplevel), only that there is a store disk
  storeDiskPath = if cfg.storeOnDisk then cfg.storeDisk else null;
  storeDisks = if (if part == "assertions" then cfg.storeOnDisk else storeDiskPath != null) then 1 else 0;

  machine =
    (if (!(elem system caps.platforms)) then [ (problem "microvm.hypervisor" "${hv} does not run on ${system} (it runs on ${concatStringsSep ", " caps.platforms})") ] else [ ])
    ++ (let p = hostnameProblem doc.hostName; in (if (p != null) then [ (problem "networking.hostName" p) ] else [ ]))
    ++ concatLists (map (name: (if (name == "" || matches ".*/.*" name || hasControl name) then [ (problem "microvm.credentialFiles.${name}" "not a valid credential name") ] else [ ])) (builtins.attrNames cfg.credentialFiles))
    # (a module's document has the qemu settings only for a QEMU VM: ./data.nix `document`)
    ++ (let opts = cfg.qemu.machineOpts or null; in if opts != null then (concatLists (map (key:
      (if (matches ".*[,=].*" key) then [ (problem "microvm.qemu.machineOpts.${key}" "a property name has no ',' or '='") ] else [ ]))
      (builtins.attrNames opts))) else [ ]);

  memory =
    (if (cfg.initialBalloonMem != 0 && !cfg.balloon) then [ (problem "microvm.initialBalloonMem" "needs microvm.balloon = true") ] else [ ])
    ++ (if cfg.balloon then (
      let n = need "BALLOON" "microvm.balloon" null;
      in if n != [ ] then n
      else (if (cfg.initialBalloonMem != 0) then (need "INITIAL_BALLOON" "microvm.initialBalloonMem" null) else [ ])) else [ ])
    ++ (if (cfg.initialBalloonMem != 0 && cfg.initialBalloonMem >= cfg.mem + hotplugged) then [ (problem "microvm.initialBalloonMem" "must be less than the guest's memory (${toString (cfg.mem + hotplugged)} MiB), got ${toString cfg.initialBalloonMem}") ] else [ ])
    ++ (if (hotplugged > cfg.hotplugMem) then [ (problem "microvm.hotpluggedMem" "must be at most microvm.hotplugMem (${toString cfg.hotplugMem}), got ${toString hotplugged}") ] else [ ])
    ++ (if (cfg.hotplugMem != 0) then (
      let n = need "HOTPLUG_MEM" "microvm.hotplugMem" null;
      in if n != [ ] then n
      else (if (hv == "qemu" && cfg.qemu.machine == "microvm") then [ (problem "microvm.hotplugMem"
        "virtio-mem needs PCI; the QEMU microvm machine has none (leave microvm.qemu.machine unset, or use q35)") ] else [ ])) else [ ])
    ++ (if (cfg.hotplugMem != 0 && hotplugged != 0 && mlib.supports hv "HOTPLUG_MEM") then (need "HOTPLUGGED_MEM" "microvm.hotpluggedMem" null) else [ ]);

  volumes =
    concatLists (imap0 (i: v:
      let p = "microvm.volumes[${toString i}]"; in
      (if (v.autoCreate && (v.size or null) == null) then [ (problem "${p}.size" "must be set when autoCreate is true (size in MiB)") ] else [ ])
      ++ (if !(elem v.imageType caps.imageTypes)
          then [ (problem "${p}.imageType" "${hv} reads only ${concatStringsSep ", " caps.imageTypes} images, got ${repr v.imageType}") ]
          else (if (v.autoCreate && v.imageType != "raw") then [ (problem "${p}.imageType" "autoCreate makes raw images; set imageType = \"raw\" or autoCreate = false") ] else [ ]))
    ) cfg.volumes);

  mountKey = mlib.mountPoint;

  shares =
    concatLists (imap0 (i: s:
      let p = "microvm.shares[${toString i}]"; in
      (if s.proto == "9p" then
        (let n = need "SHARE_9P" "${p}.proto" null;
         in if n != [ ] then n else (if s.readOnly then (need "SHARE_9P_READONLY" "${p}.readOnly" null) else [ ]))
      else
        (let n = need "SHARE_VIRTIOFS" "${p}.proto" null;
         in if n != [ ] then n else (if s.readOnly then (need "SHARE_VIRTIOFS_READONLY" "${p}.readOnly" null) else [ ]))
        ++ (if (stringLength s.tag > 36) then [ (problem "${p}.tag" "virtiofs tags are at most 36 bytes, got ${toString (stringLength s.tag)}") ] else [ ]))
      ++ (if (hasControl s.tag || matches ".*[,/].*" s.tag || elem s.tag [ "." ".." ]) then [ (problem "${p}.tag" "must not contain ',', '/' or control characters, got ${repr s.tag}") ] else [ ])
    ) cfg.shares)
    ++ unique "mount point" (
      imap0 (i: s: { path = "microvm.shares[${toString i}].mountPoint"; value = mountKey s.mountPoint; }) cfg.shares
      ++ filter (x: x.value != null) (imap0 (i: v: {
        path = "microvm.volumes[${toString i}].mountPoint";
        value = if v.mountPoint == null then null else mountKey v.mountPoint;
      }) cfg.volumes));

  featureOfInterface = { user = "NET_USER"; tap = "NET_TAP"; macvtap = "NET_MACVTAP"; bridge = "NET_BRIDGE"; };
  users = filter (x: x.type == "user") cfg.interfaces;

  interfaces =
    concatLists (imap0 (i: x:
      let p = "microvm.interfaces[${toString i}]"; in
      need featureOfInterface.${x.type} "${p}.type" null
      ++ (if (matches "[0-9a-fA-F][13579bdfBDF](:[0-9a-fA-F]{2}){5}" x.mac) then [ (problem "${p}.mac" "must be a unicast address (first octet even), got ${repr x.mac}") ] else [ ])
      ++ (if x.type != "user" then ifname "${p}.id" x.id
          else (if (hasControl x.id) then [ (problem "${p}.id" "must not contain control characters") ] else [ ]))
      ++ (if (x.type == "macvtap") then (
        (if x.macvtap.link == null || x.macvtap.link == ""
         then [ (problem "${p}.macvtap.link" "must be set for a macvtap interface") ]
         else ifname "${p}.macvtap.link" x.macvtap.link)
        ++ (if (x.macvtap.mode == null || x.macvtap.mode == "") then [ (problem "${p}.macvtap.mode" "must be set for a macvtap interface") ] else [ ])) else [ ])
      ++ (if (x.type == "bridge") then (
        if x.bridge == null || x.bridge == ""
        then [ (problem "${p}.bridge" "must be set for a bridge interface") ]
        else ifname "${p}.bridge" x.bridge) else [ ])
      ++ (if x.tap.vhost then (
        if x.type == "user" then [ (problem "${p}.tap.vhost" "vhost-net applies to tap, bridge and macvtap only") ]
        else need "VHOST_NET" "${p}.tap.vhost" null) else [ ])
    ) cfg.interfaces)
    ++ unique "MAC" (imap0 (i: x: { path = "microvm.interfaces[${toString i}].mac"; value = toLower x.mac; }) cfg.interfaces)
    ++ (if (length users > 1 && hv == "kvmtool") then [ (problem "microvm.interfaces" "kvmtool has one user-mode network per VM") ] else [ ])
    ++ concatLists (imap0 (i: f:
      let p = "microvm.forwardPorts[${toString i}]"; in
      (if (users == [ ]) then [ (problem p "port forwarding needs an interface with type = \"user\"") ] else [ ])
      ++ need "FORWARD_PORTS" p null
      ++ concatLists (map (side:
        let addr = f.${side}.address; in
        (if (addr != "" && !(isIPv4 addr)) then [ (problem "${p}.${side}.address" "must be an IPv4 address or empty, got ${repr addr}") ] else [ ])) [ "host" "guest" ])
    ) cfg.forwardPorts)
    ++ unique "host port" (filter (x: x != null) (imap0 (i: f:
      if f.from == "host"
      then { path = "microvm.forwardPorts[${toString i}].host.port"; value = "${f.proto}/${toString f.host.port}"; }
      else null) cfg.forwardPorts))
    ++ (if (cfg.vsock.cid != null) then (
      let n = need "VSOCK" "microvm.vsock.cid" null;
      in if n != [ ] then n
      else (if (cfg.vsock.cid < 3 || cfg.vsock.cid > 4294967294) then [ (problem "microvm.vsock.cid"
        "must be between 3 and 4294967294 (0-2 are reserved), got ${toString cfg.vsock.cid}") ] else [ ])) else [ ]);

  devices =
    concatLists (imap0 (i: d:
      let p = "microvm.devices[${toString i}]"; in
      if d.bus == "pci" then
        need "PCI_PASSTHROUGH" "${p}.bus" null
        ++ (if (!(matches "[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]" d.path)) then [ (problem "${p}.path" "must be a PCI address like 0000:01:00.0, got ${repr d.path}") ] else [ ])
      else
        need "USB_PASSTHROUGH" "${p}.bus" null
        ++ (if (hasControl d.path) then [ (problem "${p}.path" "must not contain control characters") ] else [ ])
    ) cfg.devices)
    ++ unique "device" (imap0 (i: d: { path = "microvm.devices[${toString i}].path"; value = "${d.bus}:${d.path}"; }) cfg.devices);

  # -- what each backend cannot express (hypervisors/<name>.py problems()) --------------------
  # a problem when `value` holds one of `chars` (base.unencodable)
  unencodable = path: value: chars: where:
    let bad = filter (c: hasInfix c value) (lib.stringToCharacters chars); in
    (if (value != null && bad != [ ]) then [ (problem path "${hv} cannot take ${concatStringsSep " or " (map repr bad)} in ${where}, got ${repr value}") ] else [ ]);
  each = f: list: concatLists (imap0 f list);
  ninep = filter (s: s.proto == "9p") cfg.shares;
  indexed = list: imap0 (i: x: x // { index = i; }) list;
  disks = imap0 (i: v: { path = "microvm.volumes[${toString i}].image"; inherit (v) image; }) cfg.volumes;

  backend = {
    crosvm = let l = limits.crosvm; in
      (if (cfg.balloon && !cfg.deflateOnOOM) then [ (problem "microvm.deflateOnOOM"
        "crosvm's balloon always lets the guest deflate it on OOM; set deflateOnOOM = true") ] else [ ])
      ++ concatLists (map (s: let p = "microvm.shares[${toString s.index}]"; in
        unencodable "${p}.source" s.source l.sharedDirUnsafe "--shared-dir paths"
        ++ unencodable "${p}.tag" s.tag l.sharedDirUnsafe "--shared-dir tags")
        (filter (s: s.proto == "9p") (indexed cfg.shares)));
    firecracker = let l = limits.firecracker; in
      (if (cfg.vcpu > l.maxVcpus) then [ (problem "microvm.vcpu" "firecracker runs at most ${toString l.maxVcpus} vCPUs, got ${toString cfg.vcpu}") ] else [ ])
      ++ (if (cfg.hugepageMem && lib.mod cfg.mem 2 != 0) then [ (problem "microvm.mem"
        "with 2 MiB huge pages the memory must be a multiple of 2 MiB, got ${toString cfg.mem}") ] else [ ])
      ++ (if (lib.mod cfg.hotplugMem l.hotplugSlotMiB != 0) then [ (problem "microvm.hotplugMem"
        "firecracker's hotplug memory is a multiple of its ${toString l.hotplugSlotMiB} MiB slot size, got ${toString cfg.hotplugMem}") ] else [ ]);
    kvmtool = let l = limits.kvmtool; in
      (let count = storeDisks + length cfg.volumes; in if (count > l.maxDisks) then [ (problem "microvm.volumes"
        "kvmtool attaches at most ${toString l.maxDisks} disks (the store disk counts), got ${toString count}") ] else [ ])
      ++ concatLists (map (d: unencodable d.path d.image "," "disk paths") disks)
      ++ concatLists (map (s: unencodable "microvm.shares[${toString s.index}].source" s.source "," "9p directories")
        (filter (s: s.proto == "9p") (indexed cfg.shares)))
      ++ concatLists (map (x: unencodable "microvm.interfaces[${toString x.index}].id" x.id "," "interface names")
        (filter (x: x.type != "user") (indexed cfg.interfaces)))
      ++ (if (cfg.graphics.enable && !(elem cfg.graphics.backend l.ui)) then [ (problem "microvm.graphics.backend"
        "kvmtool offers ${concatStringsSep " or " l.ui}, got ${repr cfg.graphics.backend}") ] else [ ]);
    stratovirt = let l = limits.stratovirt;
      limit = l.maxDevices.${arch} or null;
      n = 1 + storeDisks + length cfg.volumes + length (filter (s: s.proto == "virtiofs") cfg.shares) + length cfg.interfaces
        + (if cfg.vsock.cid != null then 1 else 0) + (if cfg.balloon then 1 else 0);
      values = [ { path = "microvm.socket"; value = cfg.socket; } ]
        ++ imap0 (i: v: { path = "microvm.volumes[${toString i}].image"; value = v.image; }) cfg.volumes
        ++ imap0 (i: v: { path = "microvm.volumes[${toString i}].serial"; value = v.serial; }) cfg.volumes
        ++ imap0 (i: s: { path = "microvm.shares[${toString i}].socket"; value = s.socket; }) cfg.shares
        ++ imap0 (i: s: { path = "microvm.shares[${toString i}].tag"; value = s.tag; }) cfg.shares
        ++ imap0 (i: x: { path = "microvm.interfaces[${toString i}].id"; value = x.id; }) cfg.interfaces;
    in
      (if (cfg.mem < l.memMinMiB || cfg.mem > l.memMaxMiB) then [ (problem "microvm.mem"
        "stratovirt takes ${toString l.memMinMiB} MiB to ${toString l.memMaxMiB} MiB of memory, got ${toString cfg.mem}") ] else [ ])
      ++ (if (limit != null && n > limit) then [ (problem "microvm"
        "stratovirt's microvm machine has at most ${toString limit} devices on ${arch}, this VM needs ${toString n} (entropy, disks, shares, interfaces, vsock, balloon)") ] else [ ])
      ++ concatLists (map (x: unencodable x.path x.value l.unsafe "option values") values);
    vfkit = let l = limits.vfkit;
      values = imap0 (i: v: { path = "microvm.volumes[${toString i}].image"; value = v.image; }) cfg.volumes
        ++ imap0 (i: v: { path = "microvm.volumes[${toString i}].serial"; value = v.serial; }) cfg.volumes
        ++ imap0 (i: s: { path = "microvm.shares[${toString i}].source"; value = s.source; }) cfg.shares;
    in
      unencodable "microvm.kernel" cfg.kernel l.bootUnsafe "--bootloader paths"
      ++ unencodable "microvm.initrdPath" cfg.initrdPath l.bootUnsafe "--bootloader paths"
      ++ concatLists (map (x: unencodable x.path x.value l.deviceUnsafe "--device values") values);
  }.${hv} or [ ];

  # -- what needs the values made from the toplevel ----------------------------------------
  late =
    fieldsFromToplevel
    ++ (if (cfg.storeOnDisk && (cfg.storeDisk == null || cfg.storeDisk == "")) then [ (problem "microvm.storeDisk" "must be set when microvm.storeOnDisk is true (Nix builds it; or share /nix/store)") ] else [ ])
    ++ {
      kvmtool = unencodable "microvm.storeDisk" storeDiskPath "," "disk paths";
      stratovirt = unencodable "microvm.storeDisk" storeDiskPath limits.stratovirt.unsafe "option values";
      vfkit = unencodable "microvm.storeDisk" storeDiskPath limits.vfkit.deviceUnsafe "--device values"
        ++ each (i: w: unencodable "microvm.kernelParams[${toString i}]" w limits.vfkit.bootUnsafe "the kernel command line") cfg.kernelParams;
    }.${hv} or [ ];
in
(if part != "toplevel" then fields ++ machine ++ memory ++ volumes ++ shares ++ interfaces ++ devices ++ backend else [ ])
++ (if part != "assertions" then late else [ ])
