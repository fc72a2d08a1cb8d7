# The generator and the `microvm` command, built from this repository's pyproject.toml.
{ lib, python3Packages }:

let
  root = ../..;
  project = (builtins.fromTOML (builtins.readFile (root + "/pyproject.toml"))).project;
in
python3Packages.buildPythonApplication {
  pname = project.name;
  inherit (project) version;
  pyproject = true;

  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/pyproject.toml")
      (root + "/setup.py")
      (root + "/tools/compile_templates.py")
      (root + "/generator")
      (lib.fileset.maybeMissing (root + "/README.md"))
    ];
  };

  # jinja2 at build time too: setup.py compiles the templates into the built package, for the
  # jinja2 the package runs with (a compiled template of another jinja2 is ignored, and
  # compiled again at every start)
  build-system = with python3Packages; [ setuptools jinja2 ];
  dependencies = with python3Packages; [ click jinja2 jsonschema ];

  # the generator's own tests run in this repository's CI; here, only check that it imports
  pythonImportsCheck = [ "microvm" "microvm.cli" "microvm._templates" ];

  # shell completion, from click (tests/test_cli_host.py checks that it completes)
  postInstall = ''
    mkdir -p $out/share/bash-completion/completions $out/share/zsh/site-functions \
      $out/share/fish/vendor_completions.d
    _MICROVM_COMPLETE=bash_source $out/bin/microvm > $out/share/bash-completion/completions/microvm
    _MICROVM_COMPLETE=zsh_source $out/bin/microvm > $out/share/zsh/site-functions/_microvm
    _MICROVM_COMPLETE=fish_source $out/bin/microvm > $out/share/fish/vendor_completions.d/microvm.fish
  '';

  meta = {
    inherit (project) description;
    license = lib.licenses.mit;
    mainProgram = "microvm";
  };
}
