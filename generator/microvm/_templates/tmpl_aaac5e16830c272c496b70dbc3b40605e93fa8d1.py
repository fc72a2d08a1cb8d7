from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'tap-down.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_taps = resolve('taps')
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    pass
    template = environment.get_template('_header.sh.j2', 'tap-down.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "# Removes this VM's tap devices. Needs CAP_NET_ADMIN. Missing devices are skipped.\n"
    for l_1_t in (undefined(name='taps') if l_0_taps is missing else l_0_taps):
        _loop_vars = {}
        pass
        yield 'if [ -e '
        yield str(t_1(str_join(('/sys/class/net/', environment.getattr(l_1_t, 'id'), ))))
        yield ' ]; then\n  ip link delete dev '
        yield str(t_1(environment.getattr(l_1_t, 'id')))
        yield '\nfi\n'
    l_1_t = missing

blocks = {}
debug_info = '1=18&3=25&4=29&5=31'