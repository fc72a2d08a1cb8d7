# The addresses of VMs on a host's declared networks (microvm.host.networks), derived at
# evaluation as generator/microvm/netplan.py's derive() derives them without a record of
# addresses given before: the NixOS guest writes them into its own network configuration
# (addressing = "static") and the host passes them on as pins, so `microvm network up` gives
# every VM, by DHCP too, the address its configuration has. The parity with derive() is tested
# over random declarations (tests/test_nix_dropin.py).
#
#   IPv4: a slot of the network from SHA-256("ipv4\nHOST\nNETWORK\nVM") (its first 8 bytes,
#         big-endian, modulo the network's size), probing upward past the network, broadcast and
#         gateway addresses and the addresses taken before it; pins first, then VMs in name order.
#   IPv6: the /64 ("auto": fd, 5 bytes of SHA-256("ula\nHOST\nNETWORK"), subnet 0) and the first
#         8 bytes of SHA-256("ipv6\nHOST\nNETWORK\nVM") with bit 1 set.
#
# Refusals here are the ones evaluation meets on the way (a pin that clashes or lies outside,
# a full network, a malformed network); every other rule is `microvm network check`'s, which
# the host runs on the declaration when it builds it.
{ lib }:

let
  inherit (builtins) substring stringLength elemAt length;
  hexValue = lib.listToAttrs (lib.imap0 (i: c: lib.nameValuePair c i)
    (lib.stringToCharacters "0123456789abcdef"));
  hash = parts: builtins.hashString "sha256" (lib.concatStringsSep "\n" parts);
  fromHex = s: lib.foldl' (acc: c: acc * 16 + hexValue.${lib.toLower c}) 0 (lib.stringToCharacters s);
  # the first 8 bytes of a hex digest, big-endian, modulo m (without overflowing 64 bits)
  hashMod = h: m: lib.foldl' (acc: c: lib.mod (acc * 16 + hexValue.${c}) m) 0
    (lib.stringToCharacters (substring 0 16 h));
  pow2 = n: lib.foldl' (a: _: a * 2) 1 (lib.range 1 n);

  isDecimal = s: builtins.match "[0-9]{1,3}" s != null;
  parse4 = s:
    let octets = lib.splitString "." s; in
    if length octets == 4 && lib.all isDecimal octets
      && lib.all (o: lib.toInt o <= 255) octets
    then lib.foldl' (acc: o: acc * 256 + lib.toInt o) 0 octets else null;
  format4 = n: lib.concatMapStringsSep "." (shift: toString (lib.mod (n / pow2 shift) 256))
    [ 24 16 8 0 ];

  parseNet4 = path: s:
    let
      parts = lib.splitString "/" s;
      base = parse4 (elemAt parts 0);
      len = lib.toInt (elemAt parts 1);
      size = pow2 (32 - len);
    in
    if length parts != 2 || base == null || builtins.match "[0-9]{1,2}" (elemAt parts 1) == null
      || len > 29 || lib.mod base size != 0
    then throw "${path}: must be an IPv4 network ADDRESS/PREFIX of a /29 or larger (host bits zero), got ${builtins.toJSON s}"
    else { inherit base len size; };

  # IPv6 as 8 groups of integers
  parse6 = s:
    let
      halves = lib.splitString "::" s;
      groups = h: if h == "" then [ ] else lib.splitString ":" h;
      left = groups (elemAt halves 0);
      right = if length halves == 2 then groups (elemAt halves 1) else [ ];
      fill = 8 - length left - length right;
      all = left ++ lib.genList (_: "0") fill ++ right;
      ok = length halves <= 2 && (length halves == 2 || fill == 0) && fill >= 0
        && lib.all (g: builtins.match "[0-9a-fA-F]{1,4}" g != null) all;
    in if ok then map fromHex all else null;
  format6 = groups: lib.toLower (lib.concatMapStringsSep ":" lib.toHexString groups);

  prefix6 = path: host: name: value:
    if value == "auto" then
      let h = hash [ "ula" host name ]; in
      map fromHex [ ("fd" + substring 0 2 h) (substring 2 4 h) (substring 6 4 h) "0" ]
    else
      let
        parts = lib.splitString "/" value;
        groups = parse6 (elemAt parts 0);
      in
      if length parts != 2 || elemAt parts 1 != "64" || groups == null
        || lib.any (g: g != 0) (lib.drop 4 groups)
      then throw "${path}: must be \"auto\" or an IPv6 /64, got ${builtins.toJSON value}"
      else lib.take 4 groups;

  interfaceId = host: name: vm:
    let h = hash [ "ipv6" host name vm ]; in
    map fromHex [ (substring 0 4 h) (substring 4 4 h) (substring 8 4 h) ]
    ++ [ (builtins.bitOr (fromHex (substring 12 4 h)) 2) ];

  # one network: { VM = { ipv4, ipv6 } } for its members [ { vm, at, ipv4 ? pin, ipv6 ? pin } ]
  # (`at`: the option path of the member's interface, for errors)
  assign = { host, name, path, net, members }:
    let
      n4 = if net.ipv4 or null == null then null else parseNet4 "${path}.ipv4" net.ipv4;
      p6 = if net.ipv6 or null == null then null else prefix6 "${path}.ipv6" host name net.ipv6;
      reserved = if n4 == null then { } else {
        "0" = "the network address";
        ${toString (n4.size - 1)} = "the broadcast address";
        "1" = "the gateway (the host's address on the bridge)";
      };
      pinIndex = m:
        let a = parse4 m.ipv4; idx = a - n4.base; in
        if n4 == null then throw "${m.at}.ipv4: ${path} has no ipv4"
        else if a == null then throw "${m.at}.ipv4: must be an IPv4 address, got ${builtins.toJSON m.ipv4}"
        else if idx < 0 || idx >= n4.size then throw "${m.at}.ipv4: ${m.ipv4} is outside ${path}.ipv4 (${net.ipv4})"
        else if reserved ? ${toString idx} then throw "${m.at}.ipv4: ${m.ipv4} is ${reserved.${toString idx}} of ${path}"
        else idx;
      pinned = lib.filter (m: m.ipv4 or null != null) members;
      takenByPins = lib.foldl' (taken: m:
        let idx = toString (pinIndex m); in
        if taken ? ${idx} then throw "${m.at}.ipv4: ${m.ipv4} is also pinned by ${taken.${idx}}"
        else taken // { ${idx} = m.at; }) { } pinned;
      probe = taken: start: step:
        let idx = lib.mod (start + step) n4.size; in
        if step >= n4.size then null
        else if taken ? ${toString idx} || reserved ? ${toString idx} then probe taken start (step + 1)
        else idx;
      derived = lib.foldl' (acc: m:
        let idx = probe acc.taken (hashMod (hash [ "ipv4" host name m.vm ]) n4.size) 0; in
        if idx == null then throw "${m.at}: ${path}.ipv4 (${net.ipv4}) is full: ${toString (n4.size - 3)} addresses, all given out; use a larger network"
        else { taken = acc.taken // { ${toString idx} = m.at; }; out = acc.out // { ${m.vm} = idx; }; })
        { taken = takenByPins; out = { }; }
        (lib.sort (a: b: a.vm < b.vm) (lib.filter (m: m.ipv4 or null == null) members));
      # (forcing every assignment first: a clash between pins is refused even where no VM
      # probes)
      ipv4Of = m: if n4 == null then null
        else builtins.seq derived.taken format4 (n4.base + (if m.ipv4 or null != null then pinIndex m else derived.out.${m.vm}));
      ipv6Of = m: if p6 == null then null
        else if m.ipv6 or null != null then m.ipv6
        else format6 (p6 ++ interfaceId host name m.vm);
    in
    lib.listToAttrs (map (m: lib.nameValuePair m.vm ({
      ipv4 = ipv4Of m;
      ipv6 = ipv6Of m;
    } // lib.optionalAttrs (n4 != null) {
      prefixLength4 = n4.len;
      gateway4 = format4 (n4.base + 1);
    } // lib.optionalAttrs (p6 != null) {
      gateway6 = format6 (p6 ++ [ 0 0 0 1 ]);
    } // {
      dns = if n4 != null then [ (format4 (n4.base + 1)) ] else [ (format6 (p6 ++ [ 0 0 0 1 ])) ];
      domain = net.domain or null;
    })) members);
in
{
  inherit parse4 format4;

  # { VM = { NETWORK = { ipv4, prefixLength4, gateway4, ipv6, gateway6, dns, domain }; }; }
  # host: the host's name; networks: { NAME = { ipv4 ? null; ipv6 ? null; domain ? null; }; };
  # vms: { VM = [ { network; at; ipv4 ? null; ipv6 ? null; } ]; } (VM: the guest's host name)
  plan = { host, networks, vms, path ? "microvm.host.networks" }:
    let
      membersOf = name: lib.concatLists (lib.mapAttrsToList (vm: joins:
        map (j: j // { inherit vm; }) (lib.filter (j: j.network == name) joins)) vms);
      byNetwork = lib.mapAttrs (name: net: assign {
        inherit host name net;
        path = "${path}.${name}";
        members = membersOf name;
      }) networks;
    in
    lib.mapAttrs (vm: joins: lib.listToAttrs (map (j:
      if !(networks ? ${j.network})
      then throw "${j.at}.network: the host declares no network ${builtins.toJSON j.network} (declared: ${lib.concatStringsSep ", " (lib.attrNames networks)})"
      else lib.nameValuePair j.network byNetwork.${j.network}.${vm}) joins)) vms;
}
