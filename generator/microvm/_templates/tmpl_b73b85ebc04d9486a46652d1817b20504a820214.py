from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/install-runner.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_state_dir = resolve('state_dir')
    l_0_user = resolve('user')
    l_0_group = resolve('group')
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    pass
    template = environment.get_template('units/libexec/_head.sh.j2', 'units/libexec/install-runner.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "# install-runner NAME RUNNER true|false [FLAKE]: make RUNNER the `current` runner of declared\n# VM NAME in root's "
    yield str((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir))
    yield "/.control/NAME (a new symlink renamed over `current`:\n# atomic); record that NAME is declared, whether it restarts when changed and the flake\n# `microvm update NAME` rebuilds it from (microvm.vms.NAME.updateFlake); create the VM's data\n# directory "
    yield str((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir))
    yield '/NAME for '
    yield str((undefined(name='user') if l_0_user is missing else l_0_user))
    yield ':'
    yield str((undefined(name='group') if l_0_group is missing else l_0_group))
    yield ' (its volumes, sockets and console).\nif [ "$#" -ne 3 ] && [ "$#" -ne 4 ]; then\n  echo "usage: install-runner NAME RUNNER true|false [FLAKE]" >&2\n  exit 2\nfi\nname=$1 runner=$2 restart=$3 flake=${4-}\n'
    template = environment.get_template('units/libexec/_name.sh.j2', 'units/libexec/install-runner.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'check_vm_name "$name"\ncase "$restart" in\n  true|false) ;;\n  *) echo "install-runner: restartIfChanged must be true or false, got \'$restart\'" >&2; exit 2 ;;\nesac\n# written into JSON as it is: the characters the unit generator allows in a flake reference\ncase "$flake" in\n  *[!A-Za-z0-9._/+=@:,?\\&~#-]*) echo "install-runner: bad flake reference \'$flake\'" >&2; exit 2 ;;\nesac\ndata='
    yield str(t_1((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir)))
    yield '/$name\ncontrol='
    yield str(t_1((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir)))
    yield '/.control/$name\nmkdir -p -- '
    yield str(t_1((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir)))
    yield ' '
    yield str(t_1((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir)))
    yield '/.control "$control"\nchown -- 0:0 '
    yield str(t_1((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir)))
    yield ' '
    yield str(t_1((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir)))
    yield '/.control "$control"\nchmod -- 0755 '
    yield str(t_1((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir)))
    yield ' '
    yield str(t_1((undefined(name='state_dir') if l_0_state_dir is missing else l_0_state_dir)))
    yield '/.control "$control"\nif [ ! -d "$data" ]; then\n  mkdir -m 0755 -- "$data"\n  chown -- '
    yield str(t_1(str_join(((undefined(name='user') if l_0_user is missing else l_0_user), ':', (undefined(name='group') if l_0_group is missing else l_0_group), ))))
    yield ' "$data"\nfi\ncd -- "$control"\nif [ -n "$flake" ]; then\n  printf \'{"declared": true, "restartIfChanged": %s, "updateFlake": "%s"}\\n\' "$restart" "$flake" > .declared.json.new\nelse\n  printf \'{"declared": true, "restartIfChanged": %s}\\n\' "$restart" > .declared.json.new\nfi\nmv -f -- .declared.json.new declared.json\nln -sfn -- "$runner" .current.new\nmv -Tf -- .current.new current\n'

blocks = {}
debug_info = '1=20&3=27&6=29&12=35&22=42&23=44&24=46&25=50&26=54&29=58'