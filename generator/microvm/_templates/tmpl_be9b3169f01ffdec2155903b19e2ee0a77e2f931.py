from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/set-booted.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    pass
    template = environment.get_template('units/libexec/_head.sh.j2', 'units/libexec/set-booted.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "# set-booted NAME / set-booted --clear NAME: in VM NAME's control directory (root's, the working\n# directory), point `booted` at the runner `current` names, by renaming a new symlink over\n# `booted` (a crash leaves the old or the new link, never none); --clear removes `booted` (the VM\n# stopped). During an automatic restart (the hypervisor exited or crashed and systemd restarts\n# it) neither happens: the VM boots the runner it was running, not a pending update.\n"
    template = environment.get_template('units/libexec/_restart.sh.j2', 'units/libexec/set-booted.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'clear=no\nif [ "${1:-}" = --clear ]; then\n  clear=yes\n  shift\nfi\nname=${1:?usage: set-booted [--clear] NAME}\nif automatic_restart "$name" && [ -L booted ]; then\n  if [ "$clear" = no ]; then\n    echo "set-booted: automatic restart of $name: booting the runner it ran ($(readlink -- booted))"\n  fi\n  exit 0\nfi\nif [ "$clear" = yes ]; then\n  rm -f -- booted\n  exit 0\nfi\ntarget=$(readlink -- current) || {\n  echo "set-booted: $(pwd)/current is not a symlink to a runner" >&2\n  exit 1\n}\ntmp=.booted.new.$$\nln -sfn -- "$target" "$tmp"\nmv -Tf -- "$tmp" booted\n'

blocks = {}
debug_info = '1=11&7=18'