from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/runner-exec.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_bin_dir = resolve('bin_dir')
    pass
    template = environment.get_template('units/libexec/_head.sh.j2', 'units/libexec/runner-exec.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "# runner-exec [--unless-restarting NAME] LINK PROGRAM [ARG...]: run bin/PROGRAM of the runner\n# LINK points at (as root, from a unit), after trusted_runner has checked that no user but root\n# could have changed the link or the runner. The runner's real path is resolved once, so a later\n# change of the link cannot swap the program. --unless-restarting NAME: do nothing while\n# microvm@NAME restarts by itself (an ExecStop= that would take down what the restarted VM\n# uses again, such as its taps).\n"
    template = environment.get_template('units/libexec/_restart.sh.j2', 'units/libexec/runner-exec.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'if [ "${1:-}" = --unless-restarting ]; then\n  if automatic_restart "${2:?usage: runner-exec --unless-restarting NAME LINK PROGRAM}"; then\n    echo "runner-exec: automatic restart of $2: leaving ${4:-} undone"\n    exit 0\n  fi\n  shift 2\nfi\nif [ "$#" -lt 2 ]; then\n  echo "usage: runner-exec [--unless-restarting NAME] LINK PROGRAM [ARG...]" >&2\n  exit 2\nfi\n'
    template = environment.get_template('units/libexec/_trust.sh.j2', 'units/libexec/runner-exec.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'runner=$(trusted_runner "$1")\nprogram=$2\nshift 2\ncase "$program" in\n  */*|.*|\'\') echo "runner-exec: bad program name \'$program\'" >&2; exit 2 ;;\nesac\nexec "$runner/'
    yield str((undefined(name='bin_dir') if l_0_bin_dir is missing else l_0_bin_dir))
    yield '/$program" "$@"\n'

blocks = {}
debug_info = '1=12&8=19&20=26&27=33'