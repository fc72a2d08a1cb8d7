from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/_name.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_helper = resolve('helper')
    pass
    yield '# check_vm_name NAME: exit 2 unless NAME can be a VM\'s name (no path, option or dot file)\ncheck_vm_name() {\n  case "$1" in\n    \'\'|.*|-*|*/*) echo "'
    yield str((undefined(name='helper') if l_0_helper is missing else l_0_helper))
    yield ': bad VM name \'$1\'" >&2; exit 2 ;;\n  esac\n}\n'

blocks = {}
debug_info = '4=13'