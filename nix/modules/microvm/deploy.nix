# microvm.deploy.*: scripts that install this VM on a remote host and switch a running VM over
# SSH, with microvm.nix's names and arguments (`nix run .#nixosConfigurations.NAME.config.
# microvm.deploy.rebuild root@host root@vm switch`). On the host they use the `microvm`
# command of this project (create or update, atomically), not hand-made links.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types;
  hostDefaults = import ../../lib/host-defaults.nix;
  cfg = config.microvm;
  name = config.networking.hostName;
  runner = cfg.declaredRunner;
  toplevel = config.system.build.toplevel;
  # switching over SSH needs an sshd in the guest and the host's /nix/store in it
  canSwitch = (config.services.openssh.enable or false)
    && lib.any (s: s.source == "/nix/store") cfg.shares;
  script = pname: text: pkgs.writeShellScriptBin pname ''
    # shellcheck disable=SC2016 # the remote scripts are single-quoted on purpose
    set -euo pipefail
    ${text}
  '';
  # parses "TARGET [--use-remote-sudo]" into $target and $sudo, or prints the usage
  args = usage: ''
    usage() { echo "usage: $0 ${usage} [--use-remote-sudo]" >&2; exit 2; }
    if [ "$#" -lt 1 ] || [ -z "$1" ]; then usage; fi
    target=$1; shift
    sudo=()
    if [ "''${1:-}" = --use-remote-sudo ]; then sudo=(sudo); shift; fi
    # remote SCRIPT ARG...: run SCRIPT with sh on $target; ssh hands the remote shell one
    # command line, so every word is quoted here, once
    remote() {
      ssh "$target" -- "$(printf '%q ' "''${sudo[@]}" sh -euc "$1" sh "''${@:2}")"
    }
  '';
in
{
  options.microvm.deploy = {
    # Not read-only, and with microvm.nix's types: a configuration may replace a script, or
    # drop sshSwitch and rebuild with `lib.mkForce null`, as there. (A plain `= null` conflicts
    # with the module's own definition on both sides.)
    installOnHost = mkOption {
      type = types.package;
      description = ''
        `microvm-install-on-host root@HOST [--use-remote-sudo]`: copies this VM's runner to
        HOST and makes it the VM's current runner there (`microvm create` the first time,
        `microvm update --runner` after). The VM is not restarted.
      '';
    };
    sshSwitch = mkOption {
      type = types.nullOr types.package;
      default = null;
      defaultText = lib.literalMD "the script this module defines";
      description = ''
        `microvm-switch root@VM [--use-remote-sudo] [switch|boot|test]`: copies the system
        to the running VM and runs its switch-to-configuration there. Needs
        services.openssh in the guest and the host's /nix/store shared into it (else null).
      '';
    };
    rebuild = mkOption {
      type = types.nullOr types.package;
      default = null;
      defaultText = lib.literalMD "the script this module defines";
      description = ''
        `microvm-rebuild root@HOST root@VM [--use-remote-sudo]`: installOnHost, then
        sshSwitch where it is available, else a restart of `microvm@NAME` on HOST.
      '';
    };
  };

  config.microvm.deploy = {
    installOnHost = script "microvm-install-on-host" ''
      ${args "root@HOST"}
      [ "$#" -eq 0 ] || usage
      nix copy --to "ssh-ng://$target" ${runner}
      remote ${lib.escapeShellArg ''
        if [ -e "''${MICROVM_STATE_DIR:-${hostDefaults.stateDir}}/$1/current" ]; then
          microvm update "$1" --runner "$2"
        else
          microvm create "$1" --runner "$2"
        fi''} ${lib.escapeShellArgs [ name "${runner}" ]}
    '';
    sshSwitch = lib.mkIf canSwitch (script "microvm-switch" ''
      ${args "root@VM"}
      action=''${1:-switch}
      case "$action" in switch|boot|test|dry-activate) ;; *) usage ;; esac
      nix copy --to "ssh-ng://$target" ${toplevel}
      remote ${lib.escapeShellArg ''
        if [ "$(cat /etc/hostname)" != "$1" ]; then
          echo "$(cat /etc/hostname) is not $1" >&2
          exit 1
        fi
        nix-env -p /nix/var/nix/profiles/system --set "$2"
        "$2/bin/switch-to-configuration" "$3"''} ${lib.escapeShellArgs [ name "${toplevel}" ]} "$action"
    '');
    rebuild = script "microvm-rebuild" ''
      usage() { echo "usage: $0 root@HOST root@VM [--use-remote-sudo] [switch|boot|test]" >&2; exit 2; }
      [ "$#" -ge 2 ] || usage
      host=$1 vm=$2; shift 2
      sudo=()
      if [ "''${1:-}" = --use-remote-sudo ]; then sudo=(--use-remote-sudo); shift; fi
      [ "$#" -le 1 ] || usage
      ${lib.getExe cfg.deploy.installOnHost} "$host" "''${sudo[@]}"
      ${if cfg.deploy.sshSwitch != null
        then ''${lib.getExe cfg.deploy.sshSwitch} "$vm" "''${sudo[@]}" "$@"''
        else ''ssh "$host" -- systemctl restart ${lib.escapeShellArg (lib.escapeShellArg "microvm@${name}.service")}''}
    '';
  };
}
