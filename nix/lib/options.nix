# The microvm.* options of the VM document, declared from its JSON Schema
# (generator/microvm/schema/vm.schema.json): every property becomes an option with the type,
# default and description the schema gives it, so a property added to the schema is an option
# here without another line. What JSON cannot say comes from `x-nixType` in the schema ("path":
# a Nix path or store path; "lines": text merged line by line; "packageOrPath") and from
# `overrides`: defaults computed from other options, keyed by the option's path below microvm
# ("socket", "shares.*.socket"), each a function of the enclosing submodule's config (or of the
# whole config at the top) to mkOption arguments.
# tests/test_nix.py compares the evaluated options with the schema.
{ lib }:

{ overrides ? { } }:

let
  inherit (lib) mkOption types length;

  nonEmptyStr = types.addCheck types.str (s: s != "") // {
    name = "nonEmptyString";
    description = "non-empty string";
  };

  nixType = {
    path = types.path;
    lines = types.lines;
    packageOrPath = types.either types.package types.path;
  };

  typesOf = sch: lib.toList (sch.type or [ ]);
  nullable = sch: lib.elem "null" (typesOf sch);

  # the Nix type of a schema, without null; `where`: the path for overrides inside submodules
  baseType = sch: where:
    let t = lib.remove "null" (typesOf sch); in
    if sch ? "x-nixType" then nixType.${sch."x-nixType"}
    # one of several JSON types: each with the keywords that apply to it
    else if length t > 1 then types.oneOf (map (one: baseType (sch // { type = one; }) where) t)
    else if sch ? enum then types.enum (lib.remove null sch.enum)
    else if t == [ "boolean" ] then types.bool
    else if t == [ "integer" ] then
      (if sch ? minimum && sch ? maximum then types.ints.between sch.minimum sch.maximum
       else if (sch.minimum or null) == 0 then types.ints.unsigned
       else if (sch.minimum or null) == 1 then types.ints.positive
       else types.int)
    else if t == [ "string" ] then
      (if sch ? pattern then types.strMatching (lib.removeSuffix "$" (lib.removePrefix "^" sch.pattern))
       else if (sch.minLength or 0) > 0 then nonEmptyStr
       else types.str)
    else if t == [ "array" ] then types.listOf (baseTypeOrNull sch.items "${where}.*")
    else if t == [ "object" ] && sch ? properties then
      types.submodule ({ config, ... }: { options = optionsOf sch where config; })
    else if t == [ "object" ] && builtins.isAttrs (sch.additionalProperties or null) then
      types.attrsOf (baseTypeOrNull sch.additionalProperties "${where}.*")
    else if t == [ "object" ] then types.attrsOf types.anything
    else throw "nix/lib/options.nix: no Nix type for the schema of microvm.${where}";

  baseTypeOrNull = sch: where: if nullable sch then types.nullOr (baseType sch where) else baseType sch where;

  # an option group (an object of options) rather than one option holding an object
  isGroup = sch: typesOf sch == [ "object" ] && sch ? properties;

  optionsOf = sch: prefix: config:
    lib.mapAttrs (name: sub:
      let
        where = if prefix == "" then name else "${prefix}.${name}";
        required = lib.elem name (sch.required or [ ]);
      in
      if isGroup sub then optionsOf sub where config
      else
        let
          extra = if overrides ? ${where} then overrides.${where} config else { };
          # neither required nor defaulted nor computed: absent from the document unless set
          computed = sub."x-computedDefault" or false;
          absent = !required && !(sub ? default) && !computed;
          type = if nullable sub || absent then types.nullOr (baseType sub where) else baseType sub where;
        in
        assert computed -> extra ? default
          || throw "nix/lib/options.nix: microvm.${where} has x-computedDefault but no override";
        mkOption ({ inherit type; description = sub.description; }
          // lib.optionalAttrs (sub ? default) { inherit (sub) default; }
          // lib.optionalAttrs absent { default = null; }
          // extra))
      sch.properties;
in
{
  # options.microvm's declarations of the document's options; `config` is the whole config
  # (given to the top-level overrides)
  declare = schema: config: optionsOf schema.properties.microvm "" config;
}
