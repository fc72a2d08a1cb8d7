# The microvm.* options of the VM document, declared from its JSON Schema
# (generator/microvm/schema/vm.schema.json): every property becomes an option with the type,
# default and description the schema gives it, so a property added to the schema is an option
# here without another line. ./data.nix reads the schema once per evaluation into a `kind` per
# option; this file makes the Nix types. What JSON cannot say comes from `x-nixType` in the
# schema ("path": a Nix path or store path; "lines": text merged line by line;
# "packageOrPath") and from `overrides`: the defaults computed from other options
# (x-computedDefault), keyed by the option's path below microvm ("socket", "shares.*.socket"),
# each a function of the enclosing submodule's config (or of the whole config at the top) to
# mkOption arguments. tests/test_nix.py compares the evaluated options with the schema.
{ lib }:

{ overrides ? { } }:

let
  inherit (lib) mkOption types;
  data = import ./data.nix;

  nonEmptyStr = types.addCheck types.str (s: s != "") // {
    name = "nonEmptyString";
    description = "non-empty string";
  };

  # the types of the kinds that take no data, made once
  simple = {
    bool = types.bool;
    int = types.int;
    unsigned = types.ints.unsigned;
    positive = types.ints.positive;
    str = types.str;
    inherit nonEmptyStr;
    path = types.path;
    lines = types.lines;
    packageOrPath = types.either types.package types.path;
    anythingAttrs = types.attrsOf types.anything;
  };
  # one maker for each kind that does (./data.nix)
  makers = {
    intBetween = k: types.ints.between k.minimum k.maximum;
    strMatching = k: types.strMatching k.pattern;
    enum = k: types.enum k.values;
    nullOr = k: types.nullOr (typeOf k.item);
    listOf = k: types.listOf (typeOf k.item);
    attrsOf = k: types.attrsOf (typeOf k.item);
    oneOf = k: types.oneOf (map typeOf k.members);
    submodule = k: types.submodule ({ config, ... }: { options = declare k.options config; });
  };
  typeOf = k: simple.${k.kind} or (makers.${k.kind} k);

  declare = specs: config: builtins.mapAttrs (_: s:
    if s ? group then declare s.group config
    else if overrides ? ${s.option.where} then
      mkOption (s.option.args // { type = typeOf s.option.type; } // overrides.${s.option.where} config)
    else
      assert !s.option.computed
        || throw "nix/lib/options.nix: microvm.${s.option.where} has x-computedDefault but no override";
      mkOption (s.option.args // { type = typeOf s.option.type; })) specs;
in
{
  # options.microvm's declarations of the document's options; `config` is the whole config
  # (given to the top-level overrides)
  declare = config: declare data.options config;
}
