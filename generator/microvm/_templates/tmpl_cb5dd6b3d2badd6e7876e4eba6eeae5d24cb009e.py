from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/microvms.target.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_autostart = resolve('autostart')
    pass
    template = environment.get_template('units/_head.j2', 'units/microvms.target.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield '[Unit]\nDescription=MicroVMs\n'
    if (undefined(name='autostart') if l_0_autostart is missing else l_0_autostart):
        pass
        yield '# declared VMs started at boot (also linked from microvms.target.wants/)\nWants='
        l_1_loop = missing
        for l_1_n, l_1_loop in LoopContext((undefined(name='autostart') if l_0_autostart is missing else l_0_autostart), undefined):
            _loop_vars = {}
            pass
            yield str(('' if environment.getattr(l_1_loop, 'first') else ' '))
            yield 'microvm@'
            yield str(l_1_n)
            yield '.service'
        l_1_loop = l_1_n = missing
        yield '\n'
    yield '\n[Install]\nWantedBy=multi-user.target\n'

blocks = {}
debug_info = '1=12&4=19&6=23'