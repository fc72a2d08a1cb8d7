from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/install-microvm.service.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_name = resolve('name')
    l_0_before = resolve('before')
    l_0_update_flake = resolve('update_flake')
    l_0_control = resolve('control')
    l_0_state = resolve('state')
    l_0_user = resolve('user')
    l_0_libexec = resolve('libexec')
    l_0_runner = resolve('runner')
    l_0_restart_if_changed = resolve('restart_if_changed')
    l_0_state_path = resolve('state_path')
    pass
    template = environment.get_template('units/_head.j2', 'units/install-microvm.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "[Unit]\nDescription=Install MicroVM '"
    yield str((undefined(name='name') if l_0_name is missing else l_0_name))
    yield "'\n"
    for l_1_u in (undefined(name='before') if l_0_before is missing else l_0_before):
        _loop_vars = {}
        pass
        yield 'Before='
        yield str(l_1_u)
        yield '@'
        yield str((undefined(name='name') if l_0_name is missing else l_0_name))
        yield '.service\n'
    l_1_u = missing
    yield 'PartOf=microvm@'
    yield str((undefined(name='name') if l_0_name is missing else l_0_name))
    yield '.service\n'
    if (undefined(name='update_flake') if l_0_update_flake is missing else l_0_update_flake):
        pass
        yield '# microvm.vms.'
        yield str((undefined(name='name') if l_0_name is missing else l_0_name))
        yield '.updateFlake: installed once; after that `microvm update '
        yield str((undefined(name='name') if l_0_name is missing else l_0_name))
        yield '`\n# rebuilds it from '
        yield str((undefined(name='update_flake') if l_0_update_flake is missing else l_0_update_flake))
        yield '\nConditionPathExists=!'
        yield str((undefined(name='control') if l_0_control is missing else l_0_control))
        yield '/'
        yield str((undefined(name='name') if l_0_name is missing else l_0_name))
        yield '/current\n'
    yield '\n[Service]\nType=oneshot\nRemainAfterExit=yes\n# points '
    yield str((undefined(name='control') if l_0_control is missing else l_0_control))
    yield '/'
    yield str((undefined(name='name') if l_0_name is missing else l_0_name))
    yield '/current at the declared runner (an atomic rename) and\n# creates the data directory '
    yield str((undefined(name='state') if l_0_state is missing else l_0_state))
    yield '/'
    yield str((undefined(name='name') if l_0_name is missing else l_0_name))
    yield ' for '
    yield str((undefined(name='user') if l_0_user is missing else l_0_user))
    yield '\nExecStart='
    yield str((undefined(name='libexec') if l_0_libexec is missing else l_0_libexec))
    yield '/install-runner '
    yield str((undefined(name='name') if l_0_name is missing else l_0_name))
    yield ' '
    yield str((undefined(name='runner') if l_0_runner is missing else l_0_runner))
    yield ' '
    yield str((undefined(name='restart_if_changed') if l_0_restart_if_changed is missing else l_0_restart_if_changed))
    yield str((str_join((' ', (undefined(name='update_flake') if l_0_update_flake is missing else l_0_update_flake), )) if (undefined(name='update_flake') if l_0_update_flake is missing else l_0_update_flake) else ''))
    yield '\nSyslogIdentifier=install-microvm-'
    yield str((undefined(name='name') if l_0_name is missing else l_0_name))
    yield '\n\n'
    template = environment.get_template('units/_sandbox-common.j2', 'units/install-microvm.service.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'ProtectSystem=strict\nReadWritePaths='
    yield str((undefined(name='state_path') if l_0_state_path is missing else l_0_state_path))
    yield "\nProtectHome=yes\nProtectKernelModules=yes\nProtectKernelTunables=yes\nPrivateDevices=yes\nPrivateNetwork=yes\nIPAddressDeny=any\nRestrictAddressFamilies=AF_UNIX\nRestrictNamespaces=yes\nRestrictSUIDSGID=yes\nMemoryDenyWriteExecute=yes\nProcSubset=pid\nSystemCallFilter=@system-service\nSystemCallFilter=~@resources\nSystemCallErrorNumber=EPERM\n# CAP_CHOWN: the data directory belongs to the VM's user; the control directory to root\nCapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE\nUMask=0022\n\n[Install]\nWantedBy=microvms.target\n"

blocks = {}
debug_info = '1=21&3=28&4=30&5=34&7=40&8=42&9=45&10=49&11=51&17=56&18=60&19=66&20=75&22=77&24=84'