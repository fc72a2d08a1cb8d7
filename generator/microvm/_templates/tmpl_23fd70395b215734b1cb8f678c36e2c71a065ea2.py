from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/microvm@.service.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_deps = resolve('deps')
    l_0_control = resolve('control')
    l_0_bin = resolve('bin')
    l_0_start_limit_burst = resolve('start_limit_burst')
    l_0_start_limit_interval = resolve('start_limit_interval')
    l_0_libexec = resolve('libexec')
    l_0_readiness = resolve('readiness')
    l_0_state = resolve('state')
    l_0_console = resolve('console')
    l_0_shutdown_timeout = resolve('shutdown_timeout')
    l_0_start_timeout = resolve('start_timeout')
    l_0_kill_grace = resolve('kill_grace')
    l_0_user = resolve('user')
    l_0_group = resolve('group')
    pass
    template = environment.get_template('units/_head.j2', 'units/microvm@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "[Unit]\nDescription=MicroVM '%i'\n"
    for l_1_u in (undefined(name='deps') if l_0_deps is missing else l_0_deps):
        _loop_vars = {}
        pass
        yield 'Requires='
        yield str(l_1_u)
        yield '@%i.service\n'
    l_1_u = missing
    yield 'After=network.target systemd-modules-load.service'
    for l_1_u in (undefined(name='deps') if l_0_deps is missing else l_0_deps):
        _loop_vars = {}
        pass
        yield ' '
        yield str(l_1_u)
        yield '@%i.service'
    l_1_u = missing
    yield '\nConditionPathExists='
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/current/'
    yield str(environment.getattr((undefined(name='bin') if l_0_bin is missing else l_0_bin), 'run'))
    yield '\n# a VM that keeps failing is given up after '
    yield str((undefined(name='start_limit_burst') if l_0_start_limit_burst is missing else l_0_start_limit_burst))
    yield ' starts in '
    yield str((undefined(name='start_limit_interval') if l_0_start_limit_interval is missing else l_0_start_limit_interval))
    yield ' s (its journal says why)\nStartLimitIntervalSec='
    yield str((undefined(name='start_limit_interval') if l_0_start_limit_interval is missing else l_0_start_limit_interval))
    yield '\nStartLimitBurst='
    yield str((undefined(name='start_limit_burst') if l_0_start_limit_burst is missing else l_0_start_limit_burst))
    yield '\n\n[Service]\n# (as root) the restart count this start saw: an automatic restart boots the same runner again\nExecStartPre=+'
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield '/mark-started %i\n'
    if ((undefined(name='readiness') if l_0_readiness is missing else l_0_readiness) == 'vsock'):
        pass
        yield "# ready when the guest's service manager says so (sd_notify relayed from vsock)\nType=notify\nNotifyAccess=all\nExecStart="
        yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
        yield '/notify-relay '
        yield str((undefined(name='control') if l_0_control is missing else l_0_control))
        yield '/%i/booted/'
        yield str(environment.getattr((undefined(name='bin') if l_0_bin is missing else l_0_bin), 'run'))
        yield '\n'
    else:
        pass
        yield '# ready when the hypervisor has been started\nType=exec\nExecStart='
        yield str((undefined(name='control') if l_0_control is missing else l_0_control))
        yield '/%i/booted/'
        yield str(environment.getattr((undefined(name='bin') if l_0_bin is missing else l_0_bin), 'run'))
        yield '\n'
    yield "# the runner microvm-set-booted@%i.service named `booted` (a restart after the guest powered\n# off reuses it, so it always matches the taps and virtiofsd around it). The links are root's\n# ("
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield "/%i); the VM's user writes only its data directory (volumes, sockets, console).\nWorkingDirectory="
    yield str((undefined(name='state') if l_0_state is missing else l_0_state))
    yield '/%i\n'
    if ((undefined(name='console') if l_0_console is missing else l_0_console) == 'socket'):
        pass
        yield 'Environment=MICROVM_CONSOLE=socket\n'
    yield 'Environment=MICROVM_VIRTIOFSD=external\nEnvironment=MICROVM_SHUTDOWN_TIMEOUT='
    yield str((undefined(name='shutdown_timeout') if l_0_shutdown_timeout is missing else l_0_shutdown_timeout))
    yield '\n# a guest that ignores the power-off request gets SIGTERM, then SIGKILL\nExecStop=-'
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/booted/'
    yield str(environment.getattr((undefined(name='bin') if l_0_bin is missing else l_0_bin), 'shutdown'))
    yield '\nKillMode=mixed\nTimeoutStartSec='
    yield str((undefined(name='start_timeout') if l_0_start_timeout is missing else l_0_start_timeout))
    yield '\nTimeoutStopSec='
    yield str(((undefined(name='shutdown_timeout') if l_0_shutdown_timeout is missing else l_0_shutdown_timeout) + (undefined(name='kill_grace') if l_0_kill_grace is missing else l_0_kill_grace)))
    yield '\nRestart=always\nRestartSec=5s\nUser='
    yield str((undefined(name='user') if l_0_user is missing else l_0_user))
    yield '\nGroup='
    yield str((undefined(name='group') if l_0_group is missing else l_0_group))
    yield "\nSyslogIdentifier=microvm@%i\nLimitMEMLOCK=infinity\nLimitNOFILE=1048576\nUMask=0077\n\n# Sandboxing. QEMU's TCG needs writable+executable memory (no MemoryDenyWriteExecute=), tap and\n# vhost devices (no PrivateDevices=/PrivateNetwork=), set_mempolicy for its memory backends\n# (@resources) and seccomp() for its own filter (-sandbox). Volumes or 9p shares outside the\n# state directory need ReadWritePaths= in a drop-in (declared VMs get one generated).\n"
    template = environment.get_template('units/_sandbox-common.j2', 'units/microvm@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'CapabilityBoundingSet=\nProtectSystem=strict\nReadWritePaths='
    yield str((undefined(name='state') if l_0_state is missing else l_0_state))
    yield "/%i\nProtectHome=read-only\nProtectKernelModules=yes\nProtectKernelTunables=yes\nRestrictNamespaces=yes\nRestrictSUIDSGID=yes\n# AF_NETLINK: libusb's uevent socket (USB passthrough); AF_INET*: user networking\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_VSOCK AF_NETLINK\nSystemCallFilter=@system-service seccomp\nSystemCallFilter=~@privileged @obsolete @debug @cpu-emulation @mount @module @raw-io @reboot\nSystemCallFilter=~@swap @clock\nSystemCallErrorNumber=EPERM\nDevicePolicy=closed\nDeviceAllow=/dev/kvm rw\nDeviceAllow=/dev/net/tun rw\nDeviceAllow=/dev/vhost-net rw\nDeviceAllow=/dev/vhost-vsock rw\nDeviceAllow=/dev/vfio/vfio rw\nDeviceAllow=char-vfio rw\nDeviceAllow=char-macvtap rw\nDeviceAllow=char-usb_device rw\n\n[Install]\n# `systemctl enable microvm@NAME` (or `microvm create --autostart`) starts NAME at boot\nWantedBy=microvms.target\n"

blocks = {}
debug_info = '1=25&4=32&5=36&7=40&9=48&10=52&11=56&12=58&16=60&17=62&21=65&25=74&29=79&30=81&31=83&35=87&37=89&39=93&40=95&43=97&44=99&54=101&57=108'