# Build a VM's runner: run the generator on its vm.json inside a derivation (no import from
# derivation: the document is a build input, the tree is the output).
#
# Every rule on a VM document is the generator's (generator/microvm/validate.py, the schema and
# the backends); Nix does not restate them. The runner depends on a check, `microvm validate`
# on the same document with its store paths as plain strings: the check needs nothing but the
# generator, so Nix builds it first and a bad configuration fails within seconds, with the
# generator's `error: microvm.<option>: ...` lines, before the guest's system is built.
{ lib, mlib }:

{ pkgs
, document                       # the vm.json attribute set (nix/lib/document.nix)
, generator                      # a package with bin/microvm
, binScripts ? { }               # bin/<name> scripts: name -> shell text, appended to
                                 # the generated script of that name if there is one
}:

let
  scripts = lib.imap0 (i: name: { inherit name; var = "binScript${toString i}"; })
    (builtins.attrNames binScripts);
  name = lib.strings.sanitizeDerivationName
    "microvm-${document.microvm.hypervisor}-${document.hostName}";
  json = builtins.toJSON document;

  check = pkgs.runCommand "${name}-check" {
    nativeBuildInputs = [ generator ];
    # the paths as text: validating reads no file of the guest (so nothing of it is built first)
    document = builtins.unsafeDiscardStringContext json;
    passAsFile = [ "document" ];
  } ''
    if ! microvm validate "$documentPath"; then
      echo "microvm: MicroVM "${lib.escapeShellArg (builtins.toJSON document.hostName)}" has the problems above (microvm.* options); its runner is not built" >&2
      exit 2
    fi
    touch "$out"
  '';
in
# runCommandLocal (preferLocalBuild, no substitution), as microvm.nix builds its runner: the
# runner only writes scripts, and a remote builder would first need its inputs, the store disk
# among them, copied to it
pkgs.runCommandLocal name
  ({
    nativeBuildInputs = [ generator ];
    document = json;
    inherit check;
    passAsFile = [ "document" ] ++ map (s: s.var) scripts;
    passthru = { inherit document check; } // mlib.runnerFacts document;
    meta.mainProgram = "microvm-run";
  } // lib.listToAttrs (map (s: lib.nameValuePair s.var binScripts.${s.name}) scripts))
  (''
    microvm generate "$documentPath" --out "$out"
  ''
  # a script the generator wrote (tap-up, ...) is extended: the configuration's lines run after
  # the generated ones, as microvm.nix's module-merged scripts do; others are new scripts
  + lib.concatMapStrings (s: let out = "$out/bin/" + lib.escapeShellArg s.name; in ''
    if [ -e ${out} ]; then
      { printf '\n# microvm.binScripts.%s (from the configuration)\n' ${lib.escapeShellArg s.name}; cat "''$${s.var}Path"; } >> ${out}
    else
      { printf '#!/usr/bin/env bash\nset -euo pipefail\n'; cat "''$${s.var}Path"; } > ${out}
      chmod 0755 ${out}
    fi
  '') scripts
  + ''
    patchShebangs "$out/bin"
  '')
