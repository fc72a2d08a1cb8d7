# Every microvm.* option of the guest module as JSON: its path, a JSON-Schema-like view of its
# type, its default (unless computed from other options, i.e. it has a defaultText), so that
# tests/test_nix.py can compare the options with generator/microvm/schema/vm.schema.json.
let
  lib = import <nixpkgs/lib>;
  evaluated = lib.evalModules {
    modules = [
      ./stub.nix
      ../../nix/modules/microvm
      { _module.args.pkgs = import ./pkgs-standin.nix { inherit lib; }; }
    ];
  };

  accepts = t: v: let r = builtins.tryEval (t.check v); in r.success && r.value;
  intNames = [ "int" "positiveInt" "unsignedInt" "intBetween" ];
  stringNames = [ "str" "lines" "separatedString" "nonEmptyString" "singleLineStr" ];

  view = t:
    let n = t.name; in
    if n == "nullOr" then
      let inner = view t.nestedTypes.elemType; in inner // { types = inner.types ++ [ "null" ]; }
    else if n == "bool" then { types = [ "boolean" ]; }
    else if lib.elem n intNames || lib.hasPrefix "unsignedInt" n || lib.hasPrefix "signedInt" n then {
      types = [ "integer" ];
      minimum = if !(accepts t (-1)) && accepts t 0 then 0 else if !(accepts t 0) && accepts t 1 then 1 else null;
      # ints.between says its bounds only in its description
      maximum =
        let m = builtins.match "integer between -?[0-9]+ and ([0-9]+) .*" (t.description or ""); in
        if m == null then null else lib.toInt (builtins.head m);
    }
    else if lib.elem n stringNames || lib.hasPrefix "strMatching" n then {
      types = [ "string" ];
      minLength = if !(accepts t "") && accepts t "x" then 1 else null;
      pattern = if lib.hasPrefix "strMatching" n then t.functor.payload.pattern else null;
    }
    else if n == "path" then { types = [ "string" ]; path = true; }
    else if n == "enum" then { types = [ "string" ]; enum = t.functor.payload.values or t.functor.payload; }
    else if n == "listOf" then { types = [ "array" ]; items = view t.nestedTypes.elemType; }
    else if n == "submodule" then { types = [ "object" ]; properties = walk (t.getSubOptions [ ]); }
    # a union (types.oneOf folds into nested eithers): the views of its members together
    else if n == "either" then
      let l = view t.nestedTypes.left; r = view t.nestedTypes.right; in
      l // r // { types = l.types ++ r.types; }
    else if n == "attrsOf" || n == "lazyAttrsOf" then
      let elem = t.nestedTypes.elemType; in
      if elem.name == "anything" then { types = [ "object" ]; }
      else { types = [ "object" ]; additionalProperties = view elem; }
    else { types = [ "nix:${n}" ]; };

  option = o: {
    type = view o.type;
    computed = o ? defaultText;
    hasDefault = o ? default;
    description = o.description or null;
  } // lib.optionalAttrs (o ? default && !(o ? defaultText)) { inherit (o) default; };

  walk = opts: lib.mapAttrs (_: o: if lib.isOption o then option o else { group = walk o; })
    (removeAttrs opts [ "_module" ]);
in
walk evaluated.options.microvm
