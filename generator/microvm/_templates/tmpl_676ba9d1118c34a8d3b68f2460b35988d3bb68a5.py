from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = '_request.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_control = resolve('control')
    l_0_wait_exit = resolve('wait_exit')
    l_0_fill = resolve('fill')
    l_0_value = missing
    try:
        t_1 = environment.filters['default']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'default' found.")
    try:
        t_2 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_2(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    try:
        t_3 = environment.filters['qa']
    except KeyError:
        @internalcode
        def t_3(*unused):
            raise TemplateRuntimeError("No filter named 'qa' found.")
    pass
    def macro(l_1_v):
        t_4 = []
        if l_1_v is missing:
            l_1_v = undefined("parameter 'v' was not provided", name='v')
        pass
        if t_1((undefined(name='fill') if l_0_fill is missing else l_0_fill), False):
            pass
            t_4.extend((
                '"$(fill ',
                str(t_2(l_1_v)),
                ')"',
            ))
        else:
            pass
            t_4.append(
                str(t_2(l_1_v)),
            )
        return concat(t_4)
    context.exported_vars.add('value')
    context.vars['value'] = l_0_value = Macro(environment, macro, 'value', ('v',), False, False, False, context.eval_ctx.autoescape)
    if (environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'kind') == 'qmp'):
        pass
        yield 'qmp "$socket" '
        yield str(context.call((undefined(name='value') if l_0_value is missing else l_0_value), environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'payload')))
        yield str((' "$timeout"' if t_1((undefined(name='wait_exit') if l_0_wait_exit is missing else l_0_wait_exit), False) else ''))
        yield '\n'
    elif (environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'kind') == 'http'):
        pass
        yield 'http "$socket" '
        yield str(t_2(environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'method')))
        yield ' '
        yield str(t_2(environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'path')))
        yield ' '
        yield str(context.call((undefined(name='value') if l_0_value is missing else l_0_value), (environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'payload') or '')))
        yield '\n'
    elif t_1((undefined(name='fill') if l_0_fill is missing else l_0_fill), False):
        pass
        yield 'cmd=()\nfor a in '
        yield str(t_3(environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'argv')))
        yield '; do cmd+=("$(fill "$a")"); done\n"${cmd[@]}"\n'
    else:
        pass
        yield str(t_3(environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'argv')))
        yield '\n'

blocks = {}
debug_info = '5=33&6=53&7=56&8=59&9=62&10=68&12=71&15=75'