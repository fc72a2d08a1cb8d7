from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'virtiofsd-run.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_threads_per_cpu = resolve('threads_per_cpu')
    l_0_shares = resolve('shares')
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    try:
        t_2 = environment.filters['qa']
    except KeyError:
        @internalcode
        def t_2(*unused):
            raise TemplateRuntimeError("No filter named 'qa' found.")
    try:
        t_3 = environment.filters['tojson']
    except KeyError:
        @internalcode
        def t_3(*unused):
            raise TemplateRuntimeError("No filter named 'tojson' found.")
    pass
    template = environment.get_template('_header.sh.j2', 'virtiofsd-run.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield '# Runs one virtiofsd per virtiofs share of this VM in the foreground; when one exits, stops the\n# others. Works with the Rust virtiofsd and with the C one QEMU used to ship.\nif virtiofsd --help 2>&1 | grep -q -- \'--shared-dir\'; then\n  flavour=rust\nelse\n  flavour=c\nfi\npids=()\n# shellcheck disable=SC2317 # called by the trap\nstop_all() {\n  if [ "${#pids[@]}" -gt 0 ]; then kill "${pids[@]}" 2>/dev/null || true; fi\n}\ntrap stop_all EXIT INT TERM\n'
    if (undefined(name='threads_per_cpu') if l_0_threads_per_cpu is missing else l_0_threads_per_cpu):
        pass
        yield '# virtiofsd.threadPoolSize = "`nproc`": one worker thread per host CPU\nthreads=(--thread-pool-size="$(nproc)")\n'
    else:
        pass
        yield 'threads=()\n'
    for l_1_s in (undefined(name='shares') if l_0_shares is missing else l_0_shares):
        _loop_vars = {}
        pass
        yield '\n# share '
        yield str(t_3(environment.getattr(l_1_s, 'tag')))
        yield '\nif [ -S '
        yield str(t_1(environment.getattr(l_1_s, 'socket')))
        yield ' ]; then rm -f -- '
        yield str(t_1(environment.getattr(l_1_s, 'socket')))
        yield '; fi\nif [ "$flavour" = rust ]; then\n  '
        yield str(t_2(environment.getattr(l_1_s, 'rust')))
        yield ' "${threads[@]}" &\nelse\n  '
        yield str(t_2(environment.getattr(l_1_s, 'c')))
        yield ' "${threads[@]}" &\nfi\npids+=("$!")\n'
    l_1_s = missing
    yield '# the first daemon to exit (its VM disconnected, or it failed) ends the group\nstatus=0\nwait -n || status=$?\nexit "$status"\n'

blocks = {}
debug_info = '1=31&15=38&21=44&23=48&24=50&26=54&28=56'