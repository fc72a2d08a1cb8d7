from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/_sandbox-tight.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    pass
    yield 'ProtectSystem=strict\nProtectHome=yes\nProtectKernelModules=yes\nProtectKernelTunables=yes\nPrivateDevices=yes\nPrivateUsers=yes\nRestrictNamespaces=yes\nRestrictSUIDSGID=yes\nMemoryDenyWriteExecute=yes\nProcSubset=pid\nSystemCallFilter=@system-service\nSystemCallFilter=~@privileged @resources\nSystemCallErrorNumber=EPERM\n'

blocks = {}
debug_info = ''