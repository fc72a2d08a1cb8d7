# Build a VM's runner: run the generator on its vm.json inside a derivation (no import from
# derivation: the document is a build input, the tree is the output).
{ lib }:

{ pkgs
, document                       # the vm.json attribute set (nix/lib/document.nix)
, generator                      # a package with bin/microvm
, binScripts ? { }               # extra bin/<name> scripts: name -> shell text
}:

let
  scripts = lib.imap0 (i: name: { inherit name; var = "binScript${toString i}"; })
    (builtins.attrNames binScripts);
  name = lib.strings.sanitizeDerivationName
    "microvm-${document.microvm.hypervisor}-${document.hostName}";
in
pkgs.runCommand name
  ({
    nativeBuildInputs = [ generator ];
    document = builtins.toJSON document;
    passAsFile = [ "document" ] ++ map (s: s.var) scripts;
    passthru = { inherit document; };
    meta.mainProgram = "microvm-run";
  } // lib.listToAttrs (map (s: lib.nameValuePair s.var binScripts.${s.name}) scripts))
  (''
    microvm generate "$documentPath" --out "$out"
  ''
  + lib.concatMapStrings (s: ''
    { printf '#!/usr/bin/env bash\nset -euo pipefail\n'; cat "''$${s.var}Path"; } > "$out/bin/"${lib.escapeShellArg s.name}
    chmod 0755 "$out/bin/"${lib.escapeShellArg s.name}
  '') scripts
  + ''
    patchShebangs "$out/bin"
  '')
