from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'tap-up.sh.j2'

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
    template = environment.get_template('_header.sh.j2', 'tap-up.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "# Creates this VM's tap devices (and attaches bridge interfaces to their bridge).\n# Needs CAP_NET_ADMIN. Existing devices are left as they are, except that they are brought up.\n"
    for l_1_t in (undefined(name='taps') if l_0_taps is missing else l_0_taps):
        l_1_user = resolve('user')
        _loop_vars = {}
        pass
        yield 'if [ ! -e '
        yield str(t_1(str_join(('/sys/class/net/', environment.getattr(l_1_t, 'id'), ))))
        yield ' ]; then\n  ip tuntap add name '
        yield str(t_1(environment.getattr(l_1_t, 'id')))
        yield ' mode tap'
        if (undefined(name='user') if l_1_user is missing else l_1_user):
            pass
            yield ' user '
            yield str(t_1((undefined(name='user') if l_1_user is missing else l_1_user)))
        yield ' vnet_hdr'
        if environment.getattr(l_1_t, 'multi_queue'):
            pass
            yield ' multi_queue'
        yield '\nfi\n'
        if environment.getattr(l_1_t, 'bridge'):
            pass
            yield 'ip link set dev '
            yield str(t_1(environment.getattr(l_1_t, 'id')))
            yield ' master '
            yield str(t_1(environment.getattr(l_1_t, 'bridge')))
            yield '\n'
        yield 'ip link set dev '
        yield str(t_1(environment.getattr(l_1_t, 'id')))
        yield ' up\n'
    l_1_t = l_1_user = missing

blocks = {}
debug_info = '1=18&4=25&5=30&6=32&9=43&10=46&12=51'