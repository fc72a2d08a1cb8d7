from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/pci-setup.sh.j2'

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
    template = environment.get_template('units/libexec/_head.sh.j2', 'units/libexec/pci-setup.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield '# pci-setup LINK: bind every PCI device named in share/microvm/pci-devices of the runner LINK\n# points at (one address per line, e.g. 0000:01:00.0) to vfio-pci and let '
    yield str((undefined(name='user') if l_0_user is missing else l_0_user))
    yield ':'
    yield str((undefined(name='group') if l_0_group is missing else l_0_group))
    yield "\n# open its /dev/vfio group. The runner must pass trusted_runner: the list decides which host\n# devices the VM's user gets. MICROVM_SYSFS and MICROVM_DEVFS replace /sys and /dev (tests).\n"
    template = environment.get_template('units/libexec/_trust.sh.j2', 'units/libexec/pci-setup.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield 'runner=$(trusted_runner "$1")\nlist=$runner/'
    yield str(environment.getattr((undefined(name='meta') if l_0_meta is missing else l_0_meta), 'pci_devices'))
    yield '\nsys=${MICROVM_SYSFS:-/sys}\ndev=${MICROVM_DEVFS:-/dev}\nif [ ! -d "$sys/bus/pci/drivers/vfio-pci" ]; then\n  modprobe vfio-pci\nfi\nwhile IFS= read -r address || [ -n "$address" ]; do\n  [ -n "$address" ] || continue\n  case "$address" in\n    */*|.*) echo "pci-setup: bad PCI address \'$address\'" >&2; exit 1 ;;\n  esac\n  device=$sys/bus/pci/devices/$address\n  if [ ! -e "$device" ]; then\n    echo "pci-setup: no PCI device $address" >&2\n    exit 1\n  fi\n  current=\n  if [ -e "$device/driver" ]; then\n    current=$(basename -- "$(readlink -- "$device/driver")")\n  fi\n  if [ "$current" != vfio-pci ]; then\n    if [ -n "$current" ]; then\n      printf \'%s\\n\' "$address" > "$device/driver/unbind"\n    fi\n    printf \'%s\\n\' vfio-pci > "$device/driver_override"\n    printf \'%s\\n\' "$address" > "$sys/bus/pci/drivers_probe"\n  fi\n  if [ ! -e "$device/iommu_group" ]; then\n    echo "pci-setup: $address has no IOMMU group (is the IOMMU enabled?)" >&2\n    exit 1\n  fi\n  iommu=$(basename -- "$(readlink -- "$device/iommu_group")")\n  chown -- '
    yield str(t_1(str_join(((undefined(name='user') if l_0_user is missing else l_0_user), ':', (undefined(name='group') if l_0_group is missing else l_0_group), ))))
    yield ' "$dev/vfio/$iommu"\n  echo "pci-setup: $address -> vfio-pci, $dev/vfio/$iommu for '
    yield str((undefined(name='user') if l_0_user is missing else l_0_user))
    yield '"\ndone < "$list"\n'

blocks = {}
debug_info = '1=20&3=27&6=31&8=38&40=40&41=42'