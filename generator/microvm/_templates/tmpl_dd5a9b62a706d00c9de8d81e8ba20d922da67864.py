from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/wait-virtiofsd.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_meta_dir = resolve('meta_dir')
    pass
    template = environment.get_template('units/libexec/_head.sh.j2', 'units/libexec/wait-virtiofsd.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield '# wait-virtiofsd SECONDS RUNNER: in a VM\'s data directory, wait until the socket of every\n# virtiofs share (RUNNER/share/microvm/virtiofs/TAG/socket) exists; fail after SECONDS.\nlimit=${1:-60}\nrunner=${2:-booted}\nwaited=0\nwhile :; do\n  missing=\n  for f in "$runner"/'
    yield str((undefined(name='meta_dir') if l_0_meta_dir is missing else l_0_meta_dir))
    yield '/virtiofs/*/socket; do\n    [ -e "$f" ] || continue\n    socket=$(cat -- "$f")\n    [ -S "$socket" ] || missing="$missing $socket"\n  done\n  [ -z "$missing" ] && exit 0\n  if [ "$waited" -ge $((limit * 10)) ]; then\n    echo "wait-virtiofsd: no virtiofsd socket after $limit s:$missing" >&2\n    exit 1\n  fi\n  sleep 0.1\n  waited=$((waited + 1))\ndone\n'

blocks = {}
debug_info = '1=12&9=19'