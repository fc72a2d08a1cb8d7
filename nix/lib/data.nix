# The project's data, parsed once per Nix evaluation: `import ./data.nix` takes no argument,
# so Nix's import cache shares one value among every module and every VM of a host (a function
# of `lib` would be parsed again on each call). Only builtins here.
#   schema        generator/microvm/schema/vm.schema.json
#   capabilities  ./capabilities.json (exported from generator/microvm/capabilities.py)
#   supportedOn   hypervisor -> platform -> supported features, as attribute sets
#   options       microvm.*'s options as the schema declares them, flattened into what
#                 ./options.nix needs to make each one (a `kind` per type), computed once
#   document      hypervisor -> how the VM document of one of its VMs holds microvm.*'s
#                 options (./document.nix)
#   rules         the schema's microvm tree cut down to the parts that carry an x- rule (what
#                 ./checks.nix walks in a document)
let
  inherit (builtins) fromJSON readFile mapAttrs attrNames filter elem isAttrs isList length
    head listToAttrs substring stringLength any;

  schema = fromJSON (readFile ../../generator/microvm/schema/vm.schema.json);
  capabilities = fromJSON (readFile ./capabilities.json);

  typesOf = sch: let t = sch.type or [ ]; in if isList t then t else [ t ];
  nonNull = list: filter (x: x != null && x != "null") list;
  isGroup = sch: typesOf sch == [ "object" ] && sch ? properties;
  strip = p:
    let
      noStart = if substring 0 1 p == "^" then substring 1 (stringLength p) p else p;
      n = stringLength noStart;
    in
    if n > 0 && substring (n - 1) 1 noStart == "$" then substring 0 (n - 1) noStart else noStart;

  # the Nix type of a schema without null, as data
  kindOf = sch: where:
    let t = nonNull (typesOf sch); in
    if sch ? "x-nixType" then { kind = sch."x-nixType"; }
    else if length t > 1 then { kind = "oneOf"; members = map (one: kindOf (sch // { type = one; }) where) t; }
    else if sch ? enum then { kind = "enum"; values = nonNull sch.enum; }
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
    else if isGroup sch then { kind = "submodule"; options = optionsOf sch where; }
    else if t == [ "object" ] && isAttrs (sch.additionalProperties or null)
    then { kind = "attrsOf"; item = kindOrNull sch.additionalProperties "${where}.*"; }
    else if t == [ "object" ] then { kind = "anythingAttrs"; }
    else throw "nix/lib/data.nix: no Nix type for the schema of microvm.${where}";

  kindOrNull = sch: where:
    if elem "null" (typesOf sch) then { kind = "nullOr"; item = kindOf sch where; } else kindOf sch where;

  # name -> { group = options; } or { option = { where, type, description, default?, computed } }
  optionsOf = sch: prefix: mapAttrs (name: sub:
    let
      where = if prefix == "" then name else "${prefix}.${name}";
      required = elem name (sch.required or [ ]);
      computed = sub."x-computedDefault" or false;
      # neither required nor defaulted nor computed: absent from the document unless set
      absent = !required && !(sub ? default) && !computed;
    in
    if isGroup sub then { group = optionsOf sub where; }
    else {
      option = {
        inherit where computed;
        type = if absent && !(elem "null" (typesOf sub)) then { kind = "nullOr"; item = kindOf sub where; }
          else kindOrNull sub where;
        # mkOption's arguments other than the type, made once
        args = { inherit (sub) description; }
          // (if sub ? default then { inherit (sub) default; } else if absent then { default = null; } else { });
      };
    }) sch.properties;

  # how a document holds the options of an object: each one as it is (leaf), an object of
  # options (group) or a list of such objects (items); `omit`: the options left out while null
  # (neither required nor defaulted nor computed)
  documentOf = sch: {
    fields = mapAttrs (name: sub:
      if isGroup sub then { group = documentOf sub; }
      else if isGroup (sub.items or { }) then { items = documentOf sub.items; }
      else { leaf = true; }) sch.properties;
    omit = filter (name: let sub = sch.properties.${name}; in
      !(isGroup sub) && !(elem name (sch.required or [ ])) && !(sub ? default)
      && !(sub."x-computedDefault" or false))
      (attrNames sch.properties);
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
      value = plan // { fields = removeAttrs plan.fields (filter (other: other != hv) hypervisors); };
    }) hypervisors);

  ruleKeys = [ "x-requires" "x-noControl" "x-absolute" "x-maxBytes" "x-match" "x-unique" ];
  ownRules = sch: any (k: sch ? ${k}) ruleKeys;
  # the schema with only the branches that lead to a rule; null where none does
  prune = sch:
    let
      props = if sch ? properties
        then filterNull (mapAttrs (_: prune) sch.properties) else { };
      extra = if isAttrs (sch.additionalProperties or null) then prune sch.additionalProperties else null;
      items = if isAttrs (sch.items or null) then prune sch.items else null;
      rules = listToAttrs (map (k: { name = k; value = sch.${k}; }) (filter (k: sch ? ${k}) ruleKeys));
    in
    if !(ownRules sch) && props == { } && extra == null && items == null then null
    else rules // { own = ownRules sch; }
      // (if props != { } then { properties = props; propertyNames = attrNames props; } else { })
      // (if extra != null then { additionalProperties = extra; } else { })
      // (if items != null then { inherit items; } else { });
  filterNull = set: listToAttrs (map (n: { name = n; value = set.${n}; })
    (filter (n: set.${n} != null) (attrNames set)));
  # hypervisor -> platform -> the features it supports there (feature -> true), for a check
  # that costs one attribute lookup (./checks.nix)
  caps = capabilities.capabilities;
  platforms = attrNames (listToAttrs (builtins.concatMap
    (hv: map (p: { name = p; value = true; }) caps.${hv}.platforms) (attrNames caps)));
  # does the hypervisor support the feature on the platform? A feature limited to some
  # platforms is unsupported elsewhere; whether the hypervisor runs on the platform at all is
  # its `platforms`' business
  supportsOn = hv: f: system:
    let c = caps.${hv}; only = c.featurePlatforms.${f} or null; in
    elem f c.features && (only == null || elem system only);
  supportedOn = mapAttrs (hv: c: listToAttrs (map (system: {
    name = system;
    value = listToAttrs (map (f: { name = f; value = true; })
      (filter (f: supportsOn hv f system) c.features));
  }) platforms)) caps;
in
{
  inherit schema capabilities supportsOn supportedOn;
  options = optionsOf schema.properties.microvm "";
  rules = prune schema.properties.microvm;
  # hypervisor -> the plan of its VMs' documents
  document = documentFor;
}
