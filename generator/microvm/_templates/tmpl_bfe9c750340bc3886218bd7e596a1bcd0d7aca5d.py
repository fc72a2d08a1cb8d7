from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/_restart.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_run_dir = resolve('run_dir')
    pass
    yield '# automatic_restart NAME: true while systemd restarts microvm@NAME by itself (its Restart=, after\n# the hypervisor exited or crashed) rather than because it was asked to (start, restart, stop).\n# systemd counts the automatic restarts (NRestarts) and resets the count at every requested\n# start; mark-started records the count each start of the VM saw, so a count above it means an\n# automatic restart is under way. Such a restart boots the runner that was running (`booted`),\n# with the helpers\' taps and links left as they are.\nautomatic_restart() {\n  now=$(systemctl show -P NRestarts "microvm@$1.service" 2>/dev/null) || return 1\n  seen=$(cat -- "'
    yield str((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir))
    yield '/$1.restarts" 2>/dev/null) || return 1\n  case "$now$seen" in \'\'|*[!0-9]*) return 1 ;; esac\n  [ "$now" -gt "$seen" ]\n}\n'

blocks = {}
debug_info = '9=13'