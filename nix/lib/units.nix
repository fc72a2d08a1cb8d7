# Build the host's systemd units with the generator (`microvm units`): the template units every
# VM uses, plus one install-microvm-<name>.service and a drop-in per declared VM.
{ lib }:

{ pkgs
, generator
, stateDir ? "/var/lib/microvms"
, user ? "microvm"
, group ? "kvm"
, declared ? [ ]                 # [ { name, runner, restartIfChanged, autostart } ]
}:

let
  args = [ "--state-dir" stateDir "--user" user "--group" group ]
    ++ lib.concatMap (vm: [ "--declare" "${vm.name}=${vm.runner}" ]) declared
    ++ lib.concatMap (vm: lib.optionals (!vm.restartIfChanged) [ "--no-restart-if-changed" vm.name ]) declared
    ++ lib.concatMap (vm: lib.optionals (!vm.autostart) [ "--no-autostart" vm.name ]) declared;
in
pkgs.runCommand "microvm-units" { nativeBuildInputs = [ generator ]; } ''
  microvm units --out "$out" ${lib.escapeShellArgs args}
  if [ -d "$out/libexec" ]; then patchShebangs "$out/libexec"; fi
''
