from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/microvm-tap-interfaces@.service.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_control = resolve('control')
    l_0_meta = resolve('meta')
    l_0_libexec = resolve('libexec')
    l_0_program = resolve('program')
    pass
    template = environment.get_template('units/_head.j2', 'units/microvm-tap-interfaces@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "[Unit]\nDescription=Tap interfaces of MicroVM '%i'\nBefore=microvm@%i.service\nAfter=network.target microvm-set-booted@%i.service\nPartOf=microvm@%i.service\n# started again with every start and restart of the VM, whose own start limit applies\nStartLimitIntervalSec=0\nConditionFileNotEmpty="
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/booted/'
    yield str(environment.getattr((undefined(name='meta') if l_0_meta is missing else l_0_meta), 'tap_interfaces'))
    yield '\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n# runner-exec refuses a link or runner tree anyone but root could have changed\nExecStart='
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield '/runner-exec '
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/booted '
    yield str(environment.getattr((undefined(name='program') if l_0_program is missing else l_0_program), 'tap_up'))
    yield '\n# an automatic restart of the VM (Restart=) keeps its taps (and what the host added to them)\nExecStop='
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield '/runner-exec --unless-restarting %i '
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/booted '
    yield str(environment.getattr((undefined(name='program') if l_0_program is missing else l_0_program), 'tap_down'))
    yield '\nSyslogIdentifier=microvm-tap-interfaces@%i\n\n'
    template = environment.get_template('units/_sandbox-common.j2', 'units/microvm-tap-interfaces@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    template = environment.get_template('units/_sandbox-net.j2', 'units/microvm-tap-interfaces@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'CapabilityBoundingSet=CAP_NET_ADMIN\n# ip(8) needs no chown/setuid here (macvtap-up does: it chowns /dev/tapN)\nSystemCallFilter=~@privileged\n'

blocks = {}
debug_info = '1=15&9=22&15=26&17=32&20=38&21=44'