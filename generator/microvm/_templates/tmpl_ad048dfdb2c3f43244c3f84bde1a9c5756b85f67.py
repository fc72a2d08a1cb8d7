from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/_sandbox-common.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    pass
    yield 'NoNewPrivileges=yes\nPrivateTmp=yes\nPrivateMounts=yes\nProtectClock=yes\nProtectControlGroups=yes\nProtectHostname=yes\nProtectKernelLogs=yes\nProtectProc=invisible\nLockPersonality=yes\nRestrictRealtime=yes\nSystemCallArchitectures=native\nRemoveIPC=yes\n'

blocks = {}
debug_info = ''