from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'macvtap-up.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_macvtaps = resolve('macvtaps')
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    pass
    template = environment.get_template('_header.sh.j2', 'macvtap-up.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "# Creates this VM's macvtap devices and lets the VM's user open them. Needs CAP_NET_ADMIN.\n"
    for l_1_m in (undefined(name='macvtaps') if l_0_macvtaps is missing else l_0_macvtaps):
        l_1_user = resolve('user')
        _loop_vars = {}
        pass
        yield 'if [ ! -e '
        yield str(t_1(str_join(('/sys/class/net/', environment.getattr(l_1_m, 'id'), ))))
        yield ' ]; then\n  ip link add link '
        yield str(t_1(environment.getattr(l_1_m, 'link')))
        yield ' name '
        yield str(t_1(environment.getattr(l_1_m, 'id')))
        yield ' address '
        yield str(t_1(environment.getattr(l_1_m, 'mac')))
        yield ' type macvtap mode '
        yield str(t_1(environment.getattr(l_1_m, 'mode')))
        yield '\nfi\nip link set dev '
        yield str(t_1(environment.getattr(l_1_m, 'id')))
        yield ' allmulticast on\nip link set dev '
        yield str(t_1(environment.getattr(l_1_m, 'id')))
        yield ' up\n'
        if (undefined(name='user') if l_1_user is missing else l_1_user):
            pass
            yield 'chown -- '
            yield str(t_1((undefined(name='user') if l_1_user is missing else l_1_user)))
            yield ' "/dev/tap$(cat -- '
            yield str(t_1(str_join(('/sys/class/net/', environment.getattr(l_1_m, 'id'), '/ifindex', ))))
            yield ')"\n'
    l_1_m = l_1_user = missing

blocks = {}
debug_info = '1=18&3=25&4=30&5=32&7=40&8=42&9=44&10=47'