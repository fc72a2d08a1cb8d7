from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/microvm-set-booted@.service.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_control = resolve('control')
    l_0_libexec = resolve('libexec')
    pass
    template = environment.get_template('units/_head.j2', 'units/microvm-set-booted@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "[Unit]\nDescription=Mark the runner MicroVM '%i' boots\nBefore=microvm@%i.service\nPartOf=microvm@%i.service\n# started again with every start and restart of the VM, whose own start limit applies\nStartLimitIntervalSec=0\nConditionPathExists="
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/current\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n# `booted` := `current`, by renaming a new symlink over it (atomic); removed again on stop.\n# An automatic restart of the VM (Restart=, which restarts this unit too) keeps `booted`.\nExecStart='
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield '/set-booted %i\nExecStop='
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield "/set-booted --clear %i\n# root's directory: the VM's user cannot change what root later follows and runs\nWorkingDirectory="
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i\nSyslogIdentifier=microvm-set-booted@%i\nUMask=0022\n\n'
    template = environment.get_template('units/_sandbox-common.j2', 'units/microvm-set-booted@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    template = environment.get_template('units/_sandbox-tight.j2', 'units/microvm-set-booted@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'ReadWritePaths='
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield "/%i\n# systemctl show (the VM's restart count) talks to systemd over its AF_UNIX socket\nPrivateNetwork=yes\nIPAddressDeny=any\nRestrictAddressFamilies=AF_UNIX\nCapabilityBoundingSet=\n"

blocks = {}
debug_info = '1=13&8=20&15=22&16=24&18=26&22=28&23=34&24=41'