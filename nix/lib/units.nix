# Build the host's systemd units with the generator (`microvm units`): the template units every
# VM uses, plus one install-microvm-<name>.service and a drop-in per declared VM. With
# `nixos = true` (the NixOS host module, which declares the units every VM uses itself, from
# ./units.json) only what is per declared VM, the tmpfiles file and the helpers.
{ lib }:

let
  hostDefaults = import ./host-defaults.nix;
in
{ pkgs
, generator
, stateDir ? hostDefaults.stateDir
, user ? hostDefaults.user
, group ? hostDefaults.group
, startupTimeout ? 150           # seconds (TimeoutStartSec of microvm@)
, useNotifySockets ? false       # started = the guest said READY=1 over vsock
, declared ? [ ]                 # [ { name, runner, restartIfChanged, autostart, updateFlake ? null } ]
, nixos ? false                  # for the NixOS host module (`microvm units --for-nixos`)
}:

let
  args = [ "--state-dir" stateDir "--user" user "--group" group
      "--start-timeout" (toString startupTimeout)
      "--readiness" (if useNotifySockets then "vsock" else "started") ]
    # the `microvm` command microvm-networks.service runs (NixOS: from ./units.json)
    ++ (if nixos then [ "--for-nixos" ] else [ "--command" "${generator}/bin/microvm" ])
    ++ lib.concatMap (vm: [ "--declare" "${vm.name}=${vm.runner}" ]) declared
    ++ lib.concatMap (vm: lib.optionals (!vm.restartIfChanged) [ "--no-restart-if-changed" vm.name ]) declared
    ++ lib.concatMap (vm: lib.optionals (!vm.autostart) [ "--no-autostart" vm.name ]) declared
    ++ lib.concatMap (vm: lib.optionals ((vm.updateFlake or null) != null)
      [ "--update-flake" "${vm.name}=${vm.updateFlake}" ]) declared;
in
pkgs.runCommand "microvm-units" {
  nativeBuildInputs = [ generator ];
  # what the units are made of (tests/test_upstream_corpus.py renders them from it)
  passthru.unitArgs = { inherit stateDir user group startupTimeout useNotifySockets declared; };
} (lib.optionalString (lib.length declared > 1) ''
  # the declared VMs together: no two may share a tap name, MAC, vsock CID, forwarded port,
  # socket, written image or device (each error names both VMs and both option paths)
  microvm validate-host --state-dir ${lib.escapeShellArg stateDir} ${lib.escapeShellArgs
    (map (vm: "${vm.runner}/share/microvm/vm.json") declared)}
'' + ''
  microvm units --out "$out" ${lib.escapeShellArgs args}
  # the record `--force` runs use to replace only their own files: a store path is never rewritten
  rm "$out/.microvm-units.json"
  if [ -d "$out/libexec" ]; then patchShebangs "$out/libexec"; fi
'')
