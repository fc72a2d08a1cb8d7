# A stand-in for NixOS's nftables module (nixos/modules/services/networking/nftables.nix, read
# at nixpkgs 2025: not available here), with what the host module's tables meet: the options
# networking.nftables.{enable,flushRuleset,tables,ruleset} and the script nftables.service runs
# at start and at every reload, composed as that module composes it: the deletions (`flush
# ruleset` or, per enabled table, `table F N` + `delete table F N`), then each enabled table as
# `table F N { CONTENT }`, then the ruleset. system.build.nftablesRules is that script.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types;
  cfg = config.networking.nftables;
  enabled = lib.filterAttrs (_: t: t.enable) cfg.tables;
  deletions = if cfg.flushRuleset then "flush ruleset\n" else lib.concatStrings (lib.mapAttrsToList
    (_: t: "table ${t.family} ${t.name}\ndelete table ${t.family} ${t.name}\n") enabled);
  tables = lib.concatStrings (lib.mapAttrsToList
    (_: t: "table ${t.family} ${t.name} {\n${t.content}\n}\n") enabled);
in
{
  options.networking = mkOption {
    type = types.submodule {
      options.nftables = {
        enable = mkOption { type = types.bool; default = false; };
        flushRuleset = mkOption { type = types.bool; default = false; };
        ruleset = mkOption { type = types.lines; default = ""; };
        tables = mkOption {
          type = types.attrsOf (types.submodule ({ name, ... }: {
            options = {
              enable = mkOption { type = types.bool; default = true; };
              name = mkOption { type = types.str; default = name; };
              family = mkOption { type = types.enum [ "ip" "ip6" "inet" "arp" "bridge" "netdev" ]; };
              content = mkOption { type = types.lines; };
            };
          }));
          default = { };
        };
      };
    };
  };

  config.system.build.nftablesRules = lib.mkIf cfg.enable (pkgs.runCommand "nftables-rules" {
    text = "#!/usr/sbin/nft -f\n" + deletions + tables + cfg.ruleset;
    passAsFile = [ "text" ];
  } ''cp "$textPath" "$out"'');
}
