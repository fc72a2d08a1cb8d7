from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/wait-virtiofsd.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_run_dir = resolve('run_dir')
    l_0_meta_dir = resolve('meta_dir')
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    pass
    template = environment.get_template('units/libexec/_head.sh.j2', 'units/libexec/wait-virtiofsd.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield '# wait-virtiofsd --mark NAME: before virtiofsd starts, note the time (in '
    yield str((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir))
    yield ").\n# wait-virtiofsd SECONDS RUNNER NAME: in a VM's data directory, wait until every virtiofs share\n# (RUNNER/share/microvm/virtiofs/TAG/socket) has a socket made after that mark: a socket an\n# earlier virtiofsd left behind (killed on stop) does not count, since the hypervisor would\n# connect to it before the new virtiofsd listens. Fail after SECONDS.\n"
    template = environment.get_template('units/libexec/_name.sh.j2', 'units/libexec/wait-virtiofsd.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'if [ "${1:-}" = --mark ]; then\n  name=${2:?usage: wait-virtiofsd --mark NAME}\n  check_vm_name "$name"\n  mkdir -p -- '
    yield str(t_1((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir)))
    yield '\n  : > '
    yield str(t_1((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir)))
    yield '/"$name.virtiofsd"\n  exit 0\nfi\nlimit=${1:-60}\nrunner=${2:-booted}\nmark='
    yield str(t_1((undefined(name='run_dir') if l_0_run_dir is missing else l_0_run_dir)))
    yield '/"${3:?usage: wait-virtiofsd SECONDS RUNNER NAME}.virtiofsd"\nwaited=0\nwhile :; do\n  missing=\n  for f in "$runner"/'
    yield str((undefined(name='meta_dir') if l_0_meta_dir is missing else l_0_meta_dir))
    yield '/virtiofs/*/socket; do\n    [ -e "$f" ] || continue\n    socket=$(cat -- "$f")\n    if [ ! -S "$socket" ] || [ -z "$(find "$socket" -prune -newer "$mark" 2>/dev/null)" ]; then\n      missing="$missing $socket"\n    fi\n  done\n  [ -z "$missing" ] && exit 0\n  if [ "$waited" -ge $((limit * 10)) ]; then\n    echo "wait-virtiofsd: no new virtiofsd socket after $limit s:$missing" >&2\n    exit 1\n  fi\n  sleep 0.1\n  waited=$((waited + 1))\ndone\n'

blocks = {}
debug_info = '1=19&2=26&7=28&11=35&12=37&17=39&21=41'