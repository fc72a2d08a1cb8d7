from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'microvm-shutdown.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_method = resolve('method')
    l_0_control = resolve('control')
    l_0_host_name = resolve('host_name')
    l_0_hypervisor = resolve('hypervisor')
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    try:
        t_2 = environment.filters['replace']
    except KeyError:
        @internalcode
        def t_2(*unused):
            raise TemplateRuntimeError("No filter named 'replace' found.")
    pass
    template = environment.get_template('_header.sh.j2', 'microvm-shutdown.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield '# Asks the guest to power off ('
    yield str(t_2(context.eval_ctx, (undefined(name='method') if l_0_method is missing else l_0_method), '\n', ' '))
    yield ') and waits until the hypervisor is gone.\n# Run from the VM\'s working directory. MICROVM_SHUTDOWN_TIMEOUT: seconds to wait (default 60).\ntimeout=${MICROVM_SHUTDOWN_TIMEOUT:-60}\ncase "$timeout" in\n  \'\'|*[!0-9]*) echo "microvm: MICROVM_SHUTDOWN_TIMEOUT must be a whole number of seconds" >&2; exit 2 ;;\nesac\n'
    if (undefined(name='control') if l_0_control is missing else l_0_control):
        pass
        template = environment.get_template('_control.sh.j2', 'microvm-shutdown.sh.j2')
        gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
        try:
            for event in gen:
                yield event
        finally: gen.close()
        yield '\nsocket='
        yield str(t_1(environment.getattr((undefined(name='control') if l_0_control is missing else l_0_control), 'socket')))
        yield '\nname='
        yield str(t_1((undefined(name='host_name') if l_0_host_name is missing else l_0_host_name)))
        yield '\nif ! alive "$socket"; then\n  echo "microvm: $name is not running (no answer on $socket)" >&2\n  exit 0\nfi\n'
        l_1_wait_exit = True
        pass
        template = environment.get_template('_request.sh.j2', 'microvm-shutdown.sh.j2')
        gen = template.root_render_func(template.new_context(context.get_all(), True, {'wait_exit': l_1_wait_exit}))
        try:
            for event in gen:
                yield event
        finally: gen.close()
        l_1_wait_exit = missing
        yield '\ndeadline=$((SECONDS + timeout))\nwhile alive "$socket"; do\n  if [ "$SECONDS" -ge "$deadline" ]; then\n    echo "microvm: guest did not power off within $timeout s" >&2\n    exit 1\n  fi\n  sleep 0.05\ndone\n'
    else:
        pass
        yield 'echo '
        yield str(t_1(str_join(('microvm: ', (undefined(name='hypervisor') if l_0_hypervisor is missing else l_0_hypervisor), ' has no way to ask the guest to power off (', (undefined(name='method') if l_0_method is missing else l_0_method), ');', ))))
        yield ' >&2\necho "microvm: stop the hypervisor process instead (systemd does this after the timeout)" >&2\nexit 1\n'

blocks = {}
debug_info = '1=27&2=34&8=36&9=38&11=45&12=47&17=51&28=62'