# The VM document's JSON Schema (generator/microvm/schema/vm.schema.json, the one declaration of
# every option) read by Nix: its keywords checked on a document as the generator's jsonschema
# does (for documents written by hand or by other tools; the modules' option types come from
# the same schema), its defaults filled in, and the defaults that depend on other options.
# Problems are { path, message } with the generator's option paths (options.option_path).
{ lib, mlib }:

let
  inherit (lib) concatLists imap0 optional optionals elem length concatStringsSep
    mapAttrsToList filter head;

  inherit (import ./data.nix) schema;

  # the generator's MAX_DEPTH: lists and objects nested deeper are refused before the schema
  maxDepth = 32;
  topLevelOption = {
    hostName = "networking.hostName";
    system = "nixpkgs.hostPlatform.system";
    toplevel = "system.build.toplevel";
  };

  # ["microvm" "volumes" 1 "size"] -> "microvm.volumes[1].size"
  optionPath = parts: lib.foldl'
    (acc: part:
      if builtins.isInt part then "${acc}[${toString part}]"
      else if acc == "" then topLevelOption.${part} or part
      else "${acc}.${part}") "" parts;

  problem = parts: message: { path = optionPath parts; inherit message; };

  isType = {
    string = builtins.isString;
    integer = builtins.isInt;
    boolean = builtins.isBool;
    object = builtins.isAttrs;
    array = builtins.isList;
    null = v: v == null;
    number = v: builtins.isInt v || builtins.isFloat v;
  };

  # a JSON Schema pattern (an ECMA regex searched for) as a POSIX regex matched whole
  posix = p:
    let
      anchoredStart = lib.hasPrefix "^" p;
      anchoredEnd = lib.hasSuffix "$" p;
      core = lib.removeSuffix "$" (lib.removePrefix "^" p);
    in
    (if anchoredStart then "" else ".*") + "(${core})" + (if anchoredEnd then "" else ".*");

  # containers nested maxDepth deep: where the generator stops before the schema
  tooDeep = value: parts:
    if (builtins.isAttrs value || builtins.isList value) && length parts >= maxDepth
    then [ (problem parts "lists and objects are nested more than ${toString maxDepth} deep") ]
    else if builtins.isAttrs value then concatLists (mapAttrsToList (k: v: tooDeep v (parts ++ [ k ])) value)
    else if builtins.isList value then concatLists (imap0 (i: v: tooDeep v (parts ++ [ i ])) value)
    else [ ];

  check = sch: value: parts:
    let
      types = lib.toList (sch.type or [ ]);
      typeOk = types == [ ] || lib.any (t: isType.${t} value) types;
      number = isType.number value;
      props = sch.properties or { };
      extra = sch.additionalProperties or true;
    in
    optional (!typeOk) (problem parts "must be ${concatStringsSep " or " types}")
    ++ optional (sch ? enum && !(elem value sch.enum)) (problem parts "must be one of the listed values")
    ++ optional (sch ? const && value != sch.const) (problem parts "must be ${builtins.toJSON sch.const}")
    ++ optional (sch ? minimum && number && value < sch.minimum) (problem parts "must be at least ${toString sch.minimum}")
    ++ optional (sch ? maximum && number && value > sch.maximum) (problem parts "must be at most ${toString sch.maximum}")
    ++ optional (sch ? minLength && builtins.isString value && builtins.stringLength value < sch.minLength)
      (problem parts "must not be empty")
    ++ optional (sch ? pattern && builtins.isString value && builtins.match (posix sch.pattern) value == null)
      (problem parts "must match ${sch.pattern}")
    ++ optionals (builtins.isAttrs value) (
      (let missing = filter (k: !(value ? ${k})) (sch.required or [ ]); in
       optional (missing != [ ]) (problem (parts ++ [ (head missing) ]) "must be set (it has no default)"))
      ++ concatLists (mapAttrsToList (k: v:
        if props ? ${k} then check props.${k} v (parts ++ [ k ])
        else if extra == false then [ (problem (parts ++ [ k ]) "unknown option") ]
        else if builtins.isAttrs extra then check extra v (parts ++ [ k ])
        else [ ]) value))
    ++ optionals (builtins.isList value && builtins.isAttrs (sch.items or null))
      (concatLists (imap0 (i: v: check sch.items v (parts ++ [ i ])) value));

  # the schema's defaults, recursively (the generator's options.apply_defaults)
  withDefaults = sch: value:
    if builtins.isAttrs value && sch ? properties then
      value // lib.mapAttrs (k: sub: withDefaults sub (value.${k} or sub.default))
        (lib.filterAttrs (k: sub: value ? ${k} || sub ? default) sch.properties)
    else if builtins.isList value && builtins.isAttrs (sch.items or null) then
      map (withDefaults sch.items) value
    else value;
in
{
  inherit schema optionPath;

  # What the generator's schema stage refuses in a parsed document (before any other rule).
  problems = doc:
    if !(builtins.isAttrs doc) then [ { path = ""; message = "a VM document must be a JSON object"; } ]
    else let deep = tooDeep doc [ ]; in if deep != [ ] then deep else check schema doc [ ];

  # A schema-valid document with every default filled in, and the defaults that depend on other
  # options resolved as the generator's model does (the control socket, storeOnDisk, the
  # virtiofs sockets): the shape the modules' document has.
  resolve = doc:
    let
      d = withDefaults schema doc;
      m = d.microvm;
      host = d.hostName;
      shares = map (s: s // {
        socket = if (s.socket or null) == null
          then mlib.defaultShareSocket { hostName = host; inherit (s) proto tag; } else s.socket;
      }) m.shares;
    in
    d // {
      microvm = m // {
        inherit shares;
        socket = if m ? socket then m.socket
          else mlib.defaultSocket { inherit (m) hypervisor; hostName = host; };
        storeOnDisk = if (m.storeOnDisk or null) == null
          then mlib.defaultStoreOnDisk shares else m.storeOnDisk;
        machineId = m.machineId or null;
      };
    };
}
