from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/microvm-virtiofsd@.service.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_control = resolve('control')
    l_0_bin = resolve('bin')
    l_0_virtiofsd_notify = resolve('virtiofsd_notify')
    l_0_libexec = resolve('libexec')
    l_0_program = resolve('program')
    l_0_start_timeout = resolve('start_timeout')
    l_0_state = resolve('state')
    pass
    template = environment.get_template('units/_head.j2', 'units/microvm-virtiofsd@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "[Unit]\nDescription=virtiofsd for MicroVM '%i'\nBefore=microvm@%i.service\nAfter=local-fs.target microvm-set-booted@%i.service\nPartOf=microvm@%i.service\n# started again with every start and restart of the VM, whose own start limit applies\nStartLimitIntervalSec=0\nConditionPathExists="
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/booted/'
    yield str(environment.getattr((undefined(name='bin') if l_0_bin is missing else l_0_bin), 'virtiofsd_run'))
    yield '\n\n[Service]\n'
    if (undefined(name='virtiofsd_notify') if l_0_virtiofsd_notify is missing else l_0_virtiofsd_notify):
        pass
        yield '# the virtiofsd in use sends sd_notify READY=1 (the Rust one does)\nType=notify\nNotifyAccess=all\n'
    else:
        pass
        yield "# ready once every share's socket exists (works with the C and the Rust virtiofsd)\nType=simple\n"
    yield "# runner-exec refuses a link or runner tree anyone but root could have changed\n# a socket left by the virtiofsd of an earlier start is not taken for the new one's\nExecStartPre="
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield '/wait-virtiofsd --mark %i\nExecStart='
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield '/runner-exec '
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/booted '
    yield str(environment.getattr((undefined(name='program') if l_0_program is missing else l_0_program), 'virtiofsd_run'))
    yield '\nExecStartPost='
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield '/wait-virtiofsd '
    yield str((undefined(name='start_timeout') if l_0_start_timeout is missing else l_0_start_timeout))
    yield ' '
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/%i/booted %i\nWorkingDirectory='
    yield str((undefined(name='state') if l_0_state is missing else l_0_state))
    yield '/%i\nKillMode=mixed\nRestart=always\nRestartSec=1s\nTimeoutStartSec='
    yield str((undefined(name='start_timeout') if l_0_start_timeout is missing else l_0_start_timeout))
    yield '\nLimitNOFILE=1048576\nSyslogIdentifier=microvm-virtiofsd@%i\n\n# virtiofsd runs as root, builds its own namespace sandbox and serves files of any owner\n'
    template = environment.get_template('units/_sandbox-common.j2', 'units/microvm-virtiofsd@.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "ProtectSystem=full\nProtectKernelModules=yes\nProtectKernelTunables=yes\nPrivateNetwork=yes\nIPAddressDeny=any\nDevicePolicy=closed\nMemoryDenyWriteExecute=yes\nRestrictAddressFamilies=AF_UNIX\n# virtiofsd (the Rust one and QEMU 7.2's C one alike) sandboxes itself: it unshares mount, pid\n# and net namespaces, mounts a procfs and pivot_roots into the shared directory (the Rust one\n# after 1.13.3 with open_tree/move_mount), installs its own seccomp filter through libseccomp\n# (the seccomp() syscall, in no systemd group) and drops its bounding set with libcap-ng\n# (CAP_SETPCAP); the Rust one opens inodes by file handle (open_by_handle_at,\n# CAP_DAC_READ_SEARCH). While serving it switches to each caller's ids (@setuid) and keeps\n# CHOWN DAC_OVERRIDE FOWNER FSETID SETGID SETUID MKNOD SETFCAP. LimitNOFILE= above 10^6 spares\n# it raising the limit itself (no CAP_SYS_RESOURCE).\nRestrictNamespaces=mnt pid net\nSystemCallFilter=@system-service seccomp open_by_handle_at mount umount2 pivot_root\nSystemCallFilter=open_tree move_mount\nSystemCallErrorNumber=EPERM\nCapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID\nCapabilityBoundingSet=CAP_SETGID CAP_SETUID CAP_MKNOD CAP_SETFCAP CAP_SYS_ADMIN CAP_SETPCAP\n# the socket must be connectable by the VM user's group (virtiofsd --socket-group)\nUMask=0007\n"

blocks = {}
debug_info = '1=18&9=25&12=29&22=36&23=38&24=44&25=50&29=52&34=54'