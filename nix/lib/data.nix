# The project's data, parsed once per Nix evaluation: `import ./data.nix` takes no argument,
# so Nix's import cache shares one value among every module and every VM of a host (a function
# of `lib` would be parsed again on each call). Only builtins here.
#   schema        generator/microvm/schema/vm.schema.json
#   capabilities  ./capabilities.json (exported from generator/microvm/capabilities.py)
#   options       microvm.*'s options as the schema declares them, flattened into what
#                 ./options.nix needs to make each one (a `kind` per type), computed once
#   document      hypervisor -> how the VM document of one of its VMs holds microvm.*'s
#                 options (./document.nix)
let
  inherit (builtins) fromJSON readFile mapAttrs attrNames filter elem isAttrs isList length
    listToAttrs substring stringLength;

  # (fromJSON: a Nix rendering of the same data allocates less but parses slower and makes a
  # larger process; bench/nix_eval.py measured both)
  schema = fromJSON (readFile ../../generator/microvm/schema/vm.schema.json);
  capabilities = fromJSON (readFile ./capabilities.json);

  # Evaluated once per Nix evaluation, ahead of the first VM: written to be cheap (builtins,
  # few function calls), as bench/nix_eval.py sees it in the cost of a host with one VM.

  # a schema's types without "null", and whether "null" is one of them
  typesOf = sch: let t = sch.type or [ ]; in if isList t then filter (x: x != "null") t else [ t ];
  nullable = sch: let t = sch.type or null; in isList t && elem "null" t;
  isGroup = sch: let t = sch.type or null; in (t == "object" || t == [ "object" ]) && sch ? properties;
  strip = p:
    let
      noStart = if substring 0 1 p == "^" then substring 1 (stringLength p) p else p;
      n = stringLength noStart;
    in
    if n > 0 && substring (n - 1) 1 noStart == "$" then substring 0 (n - 1) noStart else noStart;

  # the Nix type of a schema without null, as data; `t`: its types without "null"
  kindOf = sch: t: where:
    if sch ? "x-nixType" then { kind = sch."x-nixType"; }
    else if length t > 1 then { kind = "oneOf"; members = map (one: kindOf sch [ one ] where) t; }
    else if sch ? enum then { kind = "enum"; values = filter (x: x != null) sch.enum; }
    else if t == [ "boolean" ] then { kind = "bool"; }
    else if t == [ "integer" ] then
      (if sch ? minimum && sch ? maximum then { kind = "intBetween"; inherit (sch) minimum maximum; }
       else if (sch.minimum or null) == 0 then { kind = "unsigned"; }
       else if (sch.minimum or null) == 1 then { kind = "positive"; }
       else { kind = "int"; })
    else if t == [ "string" ] then
      (if sch ? pattern then { kind = "strMatching"; pattern = strip sch.pattern; }
       else if (sch.minLength or 0) > 0 then { kind = "nonEmptyStr"; }
       else { kind = "str"; })
    else if t == [ "array" ] then { kind = "listOf"; item = kindOrNull sch.items "${where}.*"; }
    else if t == [ "object" ] && sch ? properties then { kind = "submodule"; options = optionsOf sch where; }
    else if t == [ "object" ] && isAttrs (sch.additionalProperties or null)
    then { kind = "attrsOf"; item = kindOrNull sch.additionalProperties "${where}.*"; }
    else if t == [ "object" ] then { kind = "anythingAttrs"; }
    else throw "nix/lib/data.nix: no Nix type for the schema of microvm.${where}";

  # `orNull`: the option also takes null (the schema says so, or it has no default)
  kindWith = orNull: sch: where:
    if orNull then { kind = "nullOr"; item = kindOf sch (typesOf sch) where; }
    else kindOf sch (typesOf sch) where;
  kindOrNull = sch: kindWith (nullable sch) sch;

  # name -> { group = options; } or { option = { where, type, description, default?, computed } }
  optionsOf = sch: prefix:
    let required = sch.required or [ ]; in
    mapAttrs (name: sub:
      let where = if prefix == "" then name else "${prefix}.${name}"; in
      if isGroup sub then { group = optionsOf sub where; }
      else
        let
          computed = sub."x-computedDefault" or false;
          # neither required nor defaulted nor computed: absent from the document unless set
          absent = !(sub ? default) && !computed && !(elem name required);
        in
        {
          option = {
            inherit where computed;
            type = kindWith (absent || nullable sub) sub where;
            # mkOption's arguments other than the type, made once
            args = if sub ? default then { inherit (sub) description default; }
              else if absent then { inherit (sub) description; default = null; }
              else { inherit (sub) description; };
          };
        }) sch.properties;

  # how a document holds the options of an object: `leaves` taken as they are (their names are
  # what counts: name -> schema), `groups` (objects of options) and `items` (lists of such
  # objects) by their own plan; `omit`: the options left out while null (neither required nor
  # defaulted nor computed)
  documentOf = sch:
    let
      props = sch.properties;
      names = attrNames props;
      required = sch.required or [ ];
      groups = filter (name: isGroup props.${name}) names;
      items = filter (name: isGroup (props.${name}.items or null)) names;
    in
    {
      leaves = removeAttrs props (groups ++ items);
      groups = listToAttrs (map (name: { inherit name; value = documentOf props.${name}; }) groups);
      items = listToAttrs (map (name: { inherit name; value = documentOf props.${name}.items; }) items);
      omit = filter (name: let sub = props.${name}; in
        !(sub ? default) && !(sub."x-computedDefault" or false) && !(isGroup sub)
        && !(elem name required))
        names;
    };
  # microvm's properties named after a hypervisor hold that hypervisor's own settings
  # (microvm.firecracker.*, as the generator's model reads microvm.<hypervisor>.extraArgs): a
  # VM's document leaves out the other hypervisors' ones, which no runner of it reads (and
  # which would cost an option evaluation each); microvm.runner.<other> evaluates the guest
  # for that hypervisor, so its document has them
  hypervisors = schema.properties.microvm.properties.hypervisor.enum;
  documentFor = let plan = documentOf schema.properties.microvm; in
    listToAttrs (map (hv: {
      name = hv;
      value = plan // { groups = removeAttrs plan.groups (filter (other: other != hv) hypervisors); };
    }) hypervisors);

  caps = capabilities.capabilities;
  # does the hypervisor support the feature on the platform? A feature limited to some
  # platforms is unsupported elsewhere; whether the hypervisor runs on the platform at all is
  # its `platforms`' business
  supportsOn = hv: f: system:
    let c = caps.${hv}; only = c.featurePlatforms.${f} or null; in
    elem f c.features && (only == null || elem system only);
in
{
  inherit schema capabilities supportsOn;
  options = optionsOf schema.properties.microvm "";
  # hypervisor -> the plan of its VMs' documents
  document = documentFor;
}
