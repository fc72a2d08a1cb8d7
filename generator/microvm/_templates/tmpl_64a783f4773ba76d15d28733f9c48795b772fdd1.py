from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/mark-started.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_run_dir = resolve('run_dir')
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    pass
    template = environment.get_template('units/libexec/_head.sh.j2', 'units/libexec/mark-started.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "# mark-started NAME: run by microvm@NAME.service before each start (as root, ExecStartPre=+):\n# record systemd's count of its automatic restarts as this start saw it (see automatic_restart\n# in the helpers), in "
    yield str((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir))
    yield ' (a tmpfs: a new boot starts with no record).\n'
    template = environment.get_template('units/libexec/_name.sh.j2', 'units/libexec/mark-started.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'name=${1:?usage: mark-started NAME}\ncheck_vm_name "$name"\nmkdir -p -- '
    yield str(t_1((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir)))
    yield '\nif ! count=$(systemctl show -P NRestarts "microvm@$name.service") || [ -z "$count" ]; then\n  # no count, no record: every start of the helpers then counts as requested (as microvm.nix\n  # does: a restart boots `current`); the VM starts all the same\n  echo "mark-started: cannot read the restart count of microvm@$name" >&2\n  rm -f -- '
    yield str(t_1((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir)))
    yield '/"$name.restarts"\n  exit 0\nfi\nprintf \'%s\\n\' "$count" > '
    yield str(t_1((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir)))
    yield '/"$name.restarts.new"\nmv -f -- '
    yield str(t_1((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir)))
    yield '/"$name.restarts.new" '
    yield str(t_1((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir)))
    yield '/"$name.restarts"\n'

blocks = {}
debug_info = '1=18&4=25&5=27&8=34&13=36&16=38&17=40'