from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'microvm-balloon.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_guest_mib = resolve('guest_mib')
    l_0_control = resolve('control')
    l_0_reason = resolve('reason')
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    pass
    template = environment.get_template('_header.sh.j2', 'microvm-balloon.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield '# microvm-balloon SIZE: inflate the balloon to SIZE MiB, taking that much memory from the guest\n# (0 gives it all back). The guest has '
    yield str((undefined(name='guest_mib') if l_0_guest_mib is missing else l_0_guest_mib))
    yield ' MiB without a balloon.\nif [ "$#" -ne 1 ]; then\n  echo "usage: microvm-balloon SIZE   (MiB to take from the guest, 0 to '
    yield str(((undefined(name='guest_mib') if l_0_guest_mib is missing else l_0_guest_mib) - 1))
    yield ')" >&2\n  exit 2\nfi\ncase "$1" in\n  \'\'|*[!0-9]*) echo "microvm-balloon: SIZE must be a whole number of MiB, got \'$1\'" >&2; exit 2 ;;\nesac\nballoon_mib=$((10#$1))\nif [ "$balloon_mib" -ge '
    yield str((undefined(name='guest_mib') if l_0_guest_mib is missing else l_0_guest_mib))
    yield ' ]; then\n  echo "microvm-balloon: SIZE must be less than the guest\'s '
    yield str((undefined(name='guest_mib') if l_0_guest_mib is missing else l_0_guest_mib))
    yield ' MiB, got $balloon_mib" >&2\n  exit 2\nfi\n'
    if (undefined(name='control') if l_0_control is missing else l_0_control):
        pass
        yield 'guest_mib=$(('
        yield str((undefined(name='guest_mib') if l_0_guest_mib is missing else l_0_guest_mib))
        yield ' - balloon_mib))\nfill() {\n  local s=$1\n  s=${s//@BALLOON_MIB@/$balloon_mib}\n  s=${s//@BALLOON_BYTES@/$((balloon_mib * 1048576))}\n  s=${s//@GUEST_MIB@/$guest_mib}\n  s=${s//@GUEST_BYTES@/$((guest_mib * 1048576))}\n  printf \'%s\' "$s"\n}\n'
        template = environment.get_template('_control.sh.j2', 'microvm-balloon.sh.j2')
        gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
        try:
            for event in gen:
                yield event
        finally: gen.close()
        yield '\n'
        if (environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'kind') != 'argv'):
            pass
            yield 'socket='
            yield str(t_1(environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'socket')))
            yield '\n'
        l_1_fill = True
        pass
        template = environment.get_template('_request.sh.j2', 'microvm-balloon.sh.j2')
        gen = template.root_render_func(template.new_context(context.get_all(), True, {'fill': l_1_fill}))
        try:
            for event in gen:
                yield event
        finally: gen.close()
        l_1_fill = missing
    else:
        pass
        yield 'echo '
        yield str(t_1(str_join(('microvm-balloon: ', (undefined(name='reason') if l_0_reason is missing else l_0_reason), ))))
        yield ' >&2\nexit 1\n'

blocks = {}
debug_info = '1=20&3=27&5=29&12=31&13=33&16=35&17=38&26=40&28=47&29=50&31=54&33=64'