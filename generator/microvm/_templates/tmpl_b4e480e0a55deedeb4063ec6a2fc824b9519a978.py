from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/microvm-pci-devices@.service.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_control = resolve('control')
    l_0_meta = resolve('meta')
    l_0_libexec = resolve('libexec')
    pass
    template = environment.get_template('units/_head.j2', 'units/microvm-pci-devices@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "[Unit]\nDescription=PCI passthrough devices of MicroVM '%i' (vfio-pci)\nBefore=microvm@%i.service\nAfter=microvm-set-booted@%i.service\nPartOf=microvm@%i.service\n# started again with every start and restart of the VM, whose own start limit applies\nStartLimitIntervalSec=0\nConditionFileNotEmpty="
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/booted/'
    yield str(environment.getattr((undefined(name='meta') if l_0_meta is missing else l_0_meta), 'pci_devices'))
    yield "\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n# binds every device of share/microvm/pci-devices to vfio-pci and gives the VM's user its\n# /dev/vfio group (only from a runner root alone could have changed); writes sysfs and may load vfio-pci, so kernel tunables/modules stay open\nExecStart="
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield '/pci-setup '
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/booted\nSyslogIdentifier=microvm-pci-devices@%i\n\n'
    template = environment.get_template('units/_sandbox-common.j2', 'units/microvm-pci-devices@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'ProtectSystem=strict\nProtectHome=yes\nPrivateNetwork=yes\nIPAddressDeny=any\nRestrictAddressFamilies=AF_UNIX\nRestrictNamespaces=yes\nRestrictSUIDSGID=yes\nMemoryDenyWriteExecute=yes\nSystemCallFilter=@system-service @module\nSystemCallFilter=~@resources @mount @swap @reboot @raw-io @clock @cpu-emulation @debug @obsolete\nSystemCallErrorNumber=EPERM\nCapabilityBoundingSet=CAP_SYS_MODULE CAP_CHOWN\nUMask=0077\n'

blocks = {}
debug_info = '1=14&9=21&16=25&19=29'