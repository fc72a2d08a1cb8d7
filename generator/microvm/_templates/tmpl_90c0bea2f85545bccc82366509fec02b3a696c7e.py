from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/_sandbox-net.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    pass
    yield 'ProtectSystem=strict\nProtectHome=yes\nProtectKernelModules=yes\nProtectKernelTunables=yes\nRestrictNamespaces=yes\nRestrictSUIDSGID=yes\nMemoryDenyWriteExecute=yes\nRestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6\nIPAddressDeny=any\nSystemCallFilter=@system-service\nSystemCallFilter=~@resources @mount @swap @reboot @raw-io @module @clock @cpu-emulation @debug @obsolete\nSystemCallErrorNumber=EPERM\nDevicePolicy=closed\nDeviceAllow=/dev/net/tun rw\nUMask=0077\n'

blocks = {}
debug_info = ''