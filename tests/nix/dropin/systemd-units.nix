# NixOS's systemd.services / systemd.targets, as far as the host module and its users use them:
# the options with NixOS's types and merging (nixpkgs nixos/lib/systemd-unit-options.nix: a
# setting of unitConfig/serviceConfig is a "systemd option", whose list definitions are
# concatenated), the [Unit] settings NixOS derives from `after`, `requires`, ... and
# `description`, and (`tree`) the unit directory NixOS links into /etc/systemd/system
# (nixpkgs nixos/lib/systemd-lib.nix generateUnits): the units of systemd.packages, then each
# definition as a unit file, or as NAME.d/overrides.conf when a package has the unit and the
# definition is "asDropinIfExists" (the default) or always with "asDropin"; and the wantedBy links.
{ lib }:

let
  inherit (lib) mkOption types;

  # NixOS's unitOption: lists are concatenated, other values must be equal
  unitOption = lib.mkOptionType {
    name = "systemd option";
    check = _: true;
    merge = loc: defs:
      let defs' = lib.filterOverrides defs; in
      if lib.any (d: lib.isList d.value) defs' then lib.concatMap (d: lib.toList d.value) defs'
      else lib.mergeEqualOption loc defs';
  };
  names = mkOption { type = types.listOf types.str; default = [ ]; };
  # option -> the [Unit] setting NixOS writes it as
  unitLists = { requires = "Requires"; wants = "Wants"; after = "After"; before = "Before";
    bindsTo = "BindsTo"; partOf = "PartOf"; conflicts = "Conflicts"; requisite = "Requisite"; };

  common = { config, ... }: {
    freeformType = types.attrsOf types.anything;
    options = lib.mapAttrs (_: _: names) unitLists // {
      enable = mkOption { type = types.bool; default = true; };
      description = mkOption { type = types.str; default = ""; };
      wantedBy = names;
      requiredBy = names;
      overrideStrategy = mkOption {
        type = types.enum [ "asDropinIfExists" "asDropin" ];
        default = "asDropinIfExists";
      };
      unitConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
    };
    config.unitConfig = lib.mkMerge (lib.mapAttrsToList (o: key:
      lib.mkIf (config.${o} != [ ]) { ${key} = toString config.${o}; }) unitLists
      ++ [ (lib.mkIf (config.description != "") { Description = config.description; }) ]);
  };
  service = { config, ... }: {
    imports = [ common ];
    # as NixOS's service module: `path` becomes the unit's PATH, each package's bin and sbin
    # (NixOS adds coreutils, findutils, grep, sed and systemd to it: not here, where every
    # command the host module's units run is an absolute path or in `path`)
    config.environment.PATH = lib.mkIf (config.path != [ ])
      "${lib.makeBinPath config.path}:${lib.makeSearchPathOutput "bin" "sbin" config.path}";
    options = {
      path = mkOption { type = types.listOf (types.either types.package types.str); default = [ ]; };
      serviceConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
        default = { };
      };
      restartIfChanged = mkOption { type = types.bool; default = true; };
      stopIfChanged = mkOption { type = types.bool; default = true; };
      restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    };
  };

  # nixos/lib/systemd-lib.nix: toOption and attrsToSection
  toOption = x: if x == true then "true" else if x == false then "false" else toString x;
  attrsToSection = as: lib.concatStrings (lib.concatLists (lib.mapAttrsToList (name: value:
    map (x: "${name}=${toOption x}\n") (lib.toList value)) as));

  # as NixOS's commonUnitText: [Install] only names what wantedBy links anyway
  install = def: lib.optionalString (def.wantedBy != [ ]) "\n[Install]\nWantedBy=${toString def.wantedBy}\n";
  serviceText = def: ''
    [Unit]
    ${attrsToSection def.unitConfig}
    [Service]
    ${lib.concatStrings (lib.mapAttrsToList (n: v: lib.optionalString (v != null)
      "Environment=${builtins.toJSON "${n}=${toString v}"}\n") def.environment)}${
      lib.optionalString (!def.restartIfChanged) "X-RestartIfChanged=false\n"}${
      lib.optionalString (!def.stopIfChanged) "X-StopIfChanged=false\n"}${
      attrsToSection def.serviceConfig}${install def}'';
  targetText = def: ''
    [Unit]
    ${attrsToSection def.unitConfig}'';
in
{
  options = {
    services = mkOption { type = types.attrsOf (types.submodule service); default = { }; };
    targets = mkOption { type = types.attrsOf (types.submodule common); default = { }; };
  };

  # systemd: config.systemd -> every unit text by file name
  texts = systemd:
    lib.mapAttrs' (n: d: lib.nameValuePair "${n}.service" { inherit (d) overrideStrategy wantedBy; text = serviceText d; })
      (lib.filterAttrs (_: d: d.enable) systemd.services)
    // lib.mapAttrs' (n: d: lib.nameValuePair "${n}.target" { inherit (d) overrideStrategy wantedBy; text = targetText d; })
      (lib.filterAttrs (_: d: d.enable) systemd.targets);

  # the unit directory NixOS makes of config.systemd (`units` of this file's texts), built
  tree = pkgs: systemd: units: pkgs.runCommand "nixos-units" { } (''
    mkdir -p "$out"
    for p in ${lib.escapeShellArgs systemd.packages}; do
      for f in "$p"/lib/systemd/system/*; do
        case "$f" in *.wants) continue ;; esac
        if [ -d "$f" ]; then
          mkdir -p "$out/''${f##*/}"
          for g in "$f"/*; do ln -s "$g" "$out/''${f##*/}/"; done
        else
          ln -s "$f" "$out/"
        fi
      done
    done
  '' + lib.concatStrings (lib.mapAttrsToList (name: u: ''
    unit=${lib.escapeShellArg name}
    ${if u.overrideStrategy == "asDropin" then ''
      dropin=1
    '' else ''
      if [ -e "$out/$unit" ]; then dropin=1; else dropin=; fi
    ''}
    if [ -n "$dropin" ]; then
      mkdir -p "$out/$unit.d"
      printf '%s' ${lib.escapeShellArg u.text} > "$out/$unit.d/overrides.conf"
    else
      printf '%s' ${lib.escapeShellArg u.text} > "$out/$unit"
    fi
  '' + lib.concatMapStrings (target: ''
    mkdir -p "$out/${target}.wants"
    ln -sfn "../$unit" "$out/${target}.wants/$unit"
  '') u.wantedBy) units));
}
