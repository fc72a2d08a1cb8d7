from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/macvtap-owner.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_user = resolve('user')
    l_0_group = resolve('group')
    l_0_meta = resolve('meta')
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    pass
    template = environment.get_template('units/libexec/_head.sh.j2', 'units/libexec/macvtap-owner.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield '# macvtap-owner LINK: give '
    yield str((undefined(name='user') if l_0_user is missing else l_0_user))
    yield ':'
    yield str((undefined(name='group') if l_0_group is missing else l_0_group))
    yield ' the /dev/tapN of every macvtap interface in\n# share/microvm/macvtap-interfaces of the runner LINK points at (after trusted_runner). The\n# hypervisor runs as '
    yield str((undefined(name='user') if l_0_user is missing else l_0_user))
    yield " and opens /dev/tapN itself; macvtap-up leaves it root's 0600\n# unless microvm.user is set. MICROVM_SYSFS and MICROVM_DEVFS replace /sys and /dev (tests).\nsys=${MICROVM_SYSFS:-/sys}\ndev=${MICROVM_DEVFS:-/dev}\n"
    template = environment.get_template('units/libexec/_trust.sh.j2', 'units/libexec/macvtap-owner.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'runner=$(trusted_runner "$1")\nwhile read -r id _ || [ -n "${id:-}" ]; do\n  [ -n "$id" ] || continue\n  case "$id" in\n    */*|.*) echo "macvtap-owner: bad interface name \'$id\'" >&2; exit 1 ;;\n  esac\n  index=$(cat -- "$sys/class/net/$id/ifindex")\n  chown -- '
    yield str(t_1(str_join(((undefined(name='user') if l_0_user is missing else l_0_user), ':', (undefined(name='group') if l_0_group is missing else l_0_group), ))))
    yield ' "$dev/tap$index"\ndone < "$runner/'
    yield str(environment.getattr((undefined(name='meta') if l_0_meta is missing else l_0_meta), 'macvtap_interfaces'))
    yield '"\n'

blocks = {}
debug_info = '1=20&2=27&4=31&8=33&16=40&17=42'