from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'microvm-run.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_pre_start = resolve('pre_start')
    l_0_taps = resolve('taps')
    l_0_macvtaps = resolve('macvtaps')
    l_0_virtiofs = resolve('virtiofs')
    l_0_meta = resolve('meta')
    l_0_volumes = resolve('volumes')
    l_0_bin = resolve('bin')
    l_0_probe = resolve('probe')
    l_0_kvm_modules = resolve('kvm_modules')
    l_0_default_accel = resolve('default_accel')
    l_0_variants = resolve('variants')
    l_0_extra_args_script = resolve('extra_args_script')
    l_0_env = resolve('env')
    l_0_sockets = resolve('sockets')
    l_0_console_socket = resolve('console_socket')
    l_0_hypervisor = resolve('hypervisor')
    l_0_fallbacks = resolve('fallbacks')
    l_0_process_name = resolve('process_name')
    l_0_need_runner_dir = missing
    try:
        t_1 = environment.filters['q']
    except KeyError:
        @internalcode
        def t_1(*unused):
            raise TemplateRuntimeError("No filter named 'q' found.")
    try:
        t_2 = environment.filters['qa']
    except KeyError:
        @internalcode
        def t_2(*unused):
            raise TemplateRuntimeError("No filter named 'qa' found.")
    try:
        t_3 = environment.filters['qe']
    except KeyError:
        @internalcode
        def t_3(*unused):
            raise TemplateRuntimeError("No filter named 'qe' found.")
    pass
    l_0_need_runner_dir = ((((undefined(name='pre_start') if l_0_pre_start is missing else l_0_pre_start) or (undefined(name='taps') if l_0_taps is missing else l_0_taps)) or (undefined(name='macvtaps') if l_0_macvtaps is missing else l_0_macvtaps)) or (undefined(name='virtiofs') if l_0_virtiofs is missing else l_0_virtiofs))
    context.vars['need_runner_dir'] = l_0_need_runner_dir
    context.exported_vars.add('need_runner_dir')
    template = environment.get_template('_header.sh.j2', 'microvm-run.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {'need_runner_dir': l_0_need_runner_dir}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield "# Starts the VM in the foreground from the current directory (the VM's state directory under\n# systemd). Environment: MICROVM_ACCEL=kvm|tcg forces the acceleration;\n# MICROVM_VIRTIOFSD=external leaves starting virtiofsd to the caller (systemd units).\n"
    if (undefined(name='pre_start') if l_0_pre_start is missing else l_0_pre_start):
        pass
        yield '\n# microvm.preStart\n# shellcheck source=/dev/null\n. "$runner_dir/'
        yield str(environment.getattr((undefined(name='meta') if l_0_meta is missing else l_0_meta), 'pre_start'))
        yield '"\n'
    if (undefined(name='volumes') if l_0_volumes is missing else l_0_volumes):
        pass
        yield '\n# Volumes: created only when missing, through a temporary file linked into place, so an\n# existing image is never touched and an interrupted run leaves no half-made image.\ncreate_volume() {\n  local image=$1 size=$2 fstype=$3\n  shift 3\n  if [ -e "$image" ] || [ -L "$image" ]; then\n    return 0\n  fi\n  mkdir -p -- "$(dirname -- "$image")"\n  local tmp\n  tmp=$(mktemp -- "$image.microvm-new.XXXXXX")\n  # mkfs takes a name starting with \'-\' for an option\n  case $tmp in -*) tmp=./$tmp ;; esac\n  if ! { truncate -s "${size}M" -- "$tmp" && "mkfs.$fstype" "$@" "$tmp" >&2; }; then\n    rm -f -- "$tmp"\n    echo "microvm: cannot create volume $image" >&2\n    return 1\n  fi\n  if ! ln -- "$tmp" "$image" 2>/dev/null; then\n    rm -f -- "$tmp"\n    [ -e "$image" ] || { echo "microvm: cannot create volume $image" >&2; return 1; }\n    return 0\n  fi\n  rm -f -- "$tmp"\n}\n'
        for l_1_v in (undefined(name='volumes') if l_0_volumes is missing else l_0_volumes):
            _loop_vars = {}
            pass
            yield 'create_volume '
            yield str(t_1(environment.getattr(l_1_v, 'image')))
            yield ' '
            yield str(environment.getattr(l_1_v, 'size'))
            yield ' '
            yield str(t_1(environment.getattr(l_1_v, 'fs_type')))
            for l_2_a in environment.getattr(l_1_v, 'mkfs_args'):
                _loop_vars = {}
                pass
                yield ' '
                yield str(t_1(l_2_a))
            l_2_a = missing
            yield '\n'
        l_1_v = missing
    if (((undefined(name='taps') if l_0_taps is missing else l_0_taps) or (undefined(name='macvtaps') if l_0_macvtaps is missing else l_0_macvtaps)) or (undefined(name='virtiofs') if l_0_virtiofs is missing else l_0_virtiofs)):
        pass
        yield '\n# (stop on exit) What this run starts is stopped when it ends: by the EXIT trap if this script\n# fails, else by a watcher once the hypervisor (which exec gives this pid) has exited.\nstarted_pids=()\nstarted_links=()\nstop_started() {\n  if [ "${#started_pids[@]}" -gt 0 ]; then kill "${started_pids[@]}" 2>/dev/null || true; fi\n  local link\n  for link in "${started_links[@]}"; do ip link delete dev "$link" 2>/dev/null || true; done\n}\ntrap stop_started EXIT\n'
    if (undefined(name='taps') if l_0_taps is missing else l_0_taps):
        pass
        yield '\n# tap interfaces: made here when missing and we may (otherwise the host\'s units make them)\nif [ "$(id -u)" = 0 ]; then\n'
        for l_1_t in (undefined(name='taps') if l_0_taps is missing else l_0_taps):
            _loop_vars = {}
            pass
            yield '  [ -e '
            yield str(t_1(str_join(('/sys/class/net/', environment.getattr(l_1_t, 'id'), ))))
            yield ' ] || started_links+=('
            yield str(t_3(environment.getattr(l_1_t, 'id')))
            yield ')  # (stop on exit)\n'
        l_1_t = missing
        yield '  "$runner_dir/'
        yield str(environment.getattr((undefined(name='bin') if l_0_bin is missing else l_0_bin), 'tap_up'))
        yield '"\nfi\n'
    if (undefined(name='macvtaps') if l_0_macvtaps is missing else l_0_macvtaps):
        pass
        yield '\n# macvtap interfaces: made when missing and we may, then opened; the hypervisor inherits the fds\nif [ "$(id -u)" = 0 ]; then\n'
        for l_1_m in (undefined(name='macvtaps') if l_0_macvtaps is missing else l_0_macvtaps):
            _loop_vars = {}
            pass
            yield '  [ -e '
            yield str(t_1(str_join(('/sys/class/net/', environment.getattr(l_1_m, 'id'), ))))
            yield ' ] || started_links+=('
            yield str(t_3(environment.getattr(l_1_m, 'id')))
            yield ')  # (stop on exit)\n'
        l_1_m = missing
        yield '  "$runner_dir/'
        yield str(environment.getattr((undefined(name='bin') if l_0_bin is missing else l_0_bin), 'macvtap_up'))
        yield '"\nfi\n'
        for l_1_m in (undefined(name='macvtaps') if l_0_macvtaps is missing else l_0_macvtaps):
            _loop_vars = {}
            pass
            yield 'ifindex=$(cat -- '
            yield str(t_1(str_join(('/sys/class/net/', environment.getattr(l_1_m, 'id'), '/ifindex', ))))
            yield ')\n'
            for l_2_fd in environment.getattr(l_1_m, 'fds'):
                _loop_vars = {}
                pass
                yield 'exec '
                yield str(l_2_fd)
                yield '<>"/dev/tap$ifindex"\n'
            l_2_fd = missing
        l_1_m = missing
    if (undefined(name='virtiofs') if l_0_virtiofs is missing else l_0_virtiofs):
        pass
        yield '\n# virtiofsd: one per virtiofs share; each exits by itself when the hypervisor disconnects.\nif [ "${MICROVM_VIRTIOFSD:-}" != external ]; then\n'
        for l_1_s in (undefined(name='virtiofs') if l_0_virtiofs is missing else l_0_virtiofs):
            _loop_vars = {}
            pass
            yield '  if [ -S '
            yield str(t_1(environment.getattr(l_1_s, 'socket')))
            yield ' ]; then rm -f -- '
            yield str(t_1(environment.getattr(l_1_s, 'socket')))
            yield '; fi\n'
        l_1_s = missing
        yield '  "$runner_dir/'
        yield str(environment.getattr((undefined(name='bin') if l_0_bin is missing else l_0_bin), 'virtiofsd_run'))
        yield '" &\n  started_pids+=("$!")  # (stop on exit)\nfi\nfor _ in $(seq 100); do\n  ready=1\n'
        for l_1_s in (undefined(name='virtiofs') if l_0_virtiofs is missing else l_0_virtiofs):
            _loop_vars = {}
            pass
            yield '  [ -S '
            yield str(t_1(environment.getattr(l_1_s, 'socket')))
            yield ' ] || ready=0\n'
        l_1_s = missing
        yield '  if [ "$ready" = 1 ]; then break; fi\n  sleep 0.1\ndone\nif [ "$ready" != 1 ]; then\n  echo "microvm: virtiofsd sockets did not appear within 10 s" >&2\n  exit 1\nfi\n'
    yield '\naccel=${MICROVM_ACCEL:-}\n'
    if ((undefined(name='probe') if l_0_probe is missing else l_0_probe) == 'kvm'):
        pass
        yield 'if [ -z "$accel" ]; then\n  # KVM when /dev/kvm is usable'
        if (undefined(name='kvm_modules') if l_0_kvm_modules is missing else l_0_kvm_modules):
            pass
            yield ' and backed by VT-x/AMD-V (not, say, kvm_pvm,\n  # which runs only PVM guest kernels)'
        yield '; otherwise QEMU emulates (TCG).\n  if [ -r /dev/kvm ] && [ -w /dev/kvm ]'
        if (undefined(name='kvm_modules') if l_0_kvm_modules is missing else l_0_kvm_modules):
            pass
            yield ' && { '
            l_1_loop = missing
            for l_1_m, l_1_loop in LoopContext((undefined(name='kvm_modules') if l_0_kvm_modules is missing else l_0_kvm_modules), undefined):
                _loop_vars = {}
                pass
                yield '[ -d '
                yield str(t_1(l_1_m))
                yield ' ]'
                yield str((' || ' if (not environment.getattr(l_1_loop, 'last')) else cond_expr_undefined("the inline if-expression on line 113 in 'microvm-run.sh.j2' evaluated to false and no else section was defined.")))
            l_1_loop = l_1_m = missing
            yield '; }'
        yield '; then\n    accel=kvm\n  else\n    accel=tcg\n    echo "microvm: KVM is not usable here; emulating the CPU (TCG), which is slower" >&2\n  fi\nfi\n'
    elif ((undefined(name='probe') if l_0_probe is missing else l_0_probe) == 'hvf'):
        pass
        yield 'if [ -z "$accel" ]; then\n  # Hypervisor.framework when the macOS kernel offers it; otherwise QEMU emulates (TCG).\n  if [ "$(sysctl -n kern.hv_support 2>/dev/null)" = 1 ]; then\n    accel=hvf\n  else\n    accel=tcg\n    echo "microvm: Hypervisor.framework is not usable here; emulating the CPU (TCG), which is slower" >&2\n  fi\nfi\n'
    else:
        pass
        yield 'accel=${accel:-'
        yield str((undefined(name='default_accel') if l_0_default_accel is missing else l_0_default_accel))
        yield '}\n'
    yield 'case "$accel" in\n'
    for (l_1_name, l_1_argv) in (undefined(name='variants') if l_0_variants is missing else l_0_variants):
        _loop_vars = {}
        pass
        yield '  '
        yield str(l_1_name)
        yield ')\n    # shellcheck disable=SC2054 # commas are QEMU-style option syntax, not separators\n    args=(\n'
        for l_2_a in l_1_argv:
            _loop_vars = {}
            pass
            yield '      '
            yield str(t_1(l_2_a))
            yield '\n'
        l_2_a = missing
        yield '    )\n    ;;\n'
    l_1_name = l_1_argv = missing
    yield '  *)\n    echo "microvm: MICROVM_ACCEL must be one of:'
    for (l_1_name, l_1__) in (undefined(name='variants') if l_0_variants is missing else l_0_variants):
        _loop_vars = {}
        pass
        yield ' '
        yield str(l_1_name)
    l_1_name = l_1__ = missing
    yield '; got \'$accel\'" >&2\n    exit 2\n    ;;\nesac\n'
    if (undefined(name='extra_args_script') if l_0_extra_args_script is missing else l_0_extra_args_script):
        pass
        yield '\n# microvm.extraArgsScript: one extra argument per line of its output\nmapfile -t extra < <('
        yield str(t_1((undefined(name='extra_args_script') if l_0_extra_args_script is missing else l_0_extra_args_script)))
        yield ')\nargs+=("${extra[@]}")\n'
    for (l_1_k, l_1_v) in (undefined(name='env') if l_0_env is missing else l_0_env):
        _loop_vars = {}
        pass
        yield 'export '
        yield str(l_1_k)
        yield '='
        yield str(t_1(l_1_v))
        yield '\n'
    l_1_k = l_1_v = missing
    for l_1_s in (undefined(name='sockets') if l_0_sockets is missing else l_0_sockets):
        _loop_vars = {}
        pass
        yield '# the hypervisor will not bind over a socket left by an earlier run\nif [ -S '
        yield str(t_1(l_1_s))
        yield ' ]; then rm -f -- '
        yield str(t_1(l_1_s))
        yield '; fi\n'
    l_1_s = missing
    if (undefined(name='console_socket') if l_0_console_socket is missing else l_0_console_socket):
        pass
        yield '\n# (console socket) MICROVM_CONSOLE=socket (microvm@.service sets it): serve the serial console on\n# console.sock in the working directory instead of stdio; `microvm console NAME` attaches.\nif [ "${MICROVM_CONSOLE:-}" = socket ]; then\n  for i in "${!args[@]}"; do\n    if [ "${args[$i]}" = '
        yield str(t_1(environment.getitem((undefined(name='console_socket') if l_0_console_socket is missing else l_0_console_socket), 0)))
        yield ' ]; then\n      args[i]='
        yield str(t_1(environment.getitem((undefined(name='console_socket') if l_0_console_socket is missing else l_0_console_socket), 1)))
        yield '\n    fi\n  done\nfi\n'
    else:
        pass
        yield '\n# (console socket) this runner has none: the console stays on stdout\nif [ "${MICROVM_CONSOLE:-}" = socket ]; then\n  echo "microvm: '
        yield str((undefined(name='hypervisor') if l_0_hypervisor is missing else l_0_hypervisor))
        yield ' cannot serve its console on a socket; it stays on stdout" >&2\nfi\n'
    l_1_loop = missing
    for l_1_fb, l_1_loop in LoopContext((undefined(name='fallbacks') if l_0_fallbacks is missing else l_0_fallbacks), undefined):
        _loop_vars = {}
        pass
        yield '\n# '
        yield str(environment.getattr(l_1_fb, 'why'))
        yield '\nif ! '
        yield str(t_2(environment.getattr(l_1_fb, 'probe')))
        yield ' >/dev/null 2>&1; then\n  for i in "${!args[@]}"; do\n    if [ "${args[$i]}" = '
        yield str(t_1(environment.getitem(environment.getattr(l_1_fb, 'new'), 0)))
        l_2_loop = missing
        for l_2_w, l_2_loop in LoopContext(environment.getattr(l_1_fb, 'new')[1:], undefined):
            _loop_vars = {}
            pass
            yield ' ] && [ "${args[$((i + '
            yield str(environment.getattr(l_2_loop, 'index'))
            yield '))]:-}" = '
            yield str(t_1(l_2_w))
        l_2_loop = l_2_w = missing
        yield ' ]; then\n'
        l_2_loop = missing
        for l_2_w, l_2_loop in LoopContext(environment.getattr(l_1_fb, 'old'), undefined):
            _loop_vars = {}
            pass
            yield '      args['
            yield str(('i' if environment.getattr(l_2_loop, 'first') else str_join(('i + ', environment.getattr(l_2_loop, 'index0'), ))))
            yield ']='
            yield str(t_1(l_2_w))
            yield '\n'
        l_2_loop = l_2_w = missing
        yield '    fi\n  done\nfi\n'
    l_1_loop = l_1_fb = missing
    if (((undefined(name='taps') if l_0_taps is missing else l_0_taps) or (undefined(name='macvtaps') if l_0_macvtaps is missing else l_0_macvtaps)) or (undefined(name='virtiofs') if l_0_virtiofs is missing else l_0_virtiofs)):
        pass
        yield '\n# (stop on exit) exec keeps this pid for the hypervisor. The watcher reads a pipe whose write\n# end only the hypervisor holds; at EOF (the hypervisor exited) it stops what was started here.\ntrap - EXIT\nif [ "${#started_pids[@]}" -gt 0 ] || [ "${#started_links[@]}" -gt 0 ]; then\n  # shellcheck disable=SC2034 # the fd is inherited by the hypervisor, never used here\n  exec {watch_fd}> >(cat >/dev/null; stop_started)\nfi\n'
    yield '\n'
    if (undefined(name='process_name') if l_0_process_name is missing else l_0_process_name):
        pass
        yield 'exec -a '
        yield str(t_1((undefined(name='process_name') if l_0_process_name is missing else l_0_process_name)))
        yield ' "${args[@]}"\n'
    else:
        pass
        yield 'exec "${args[@]}"\n'

blocks = {}
debug_info = '2=48&3=51&7=58&11=61&13=63&40=66&41=70&45=83&58=86&62=89&63=93&65=99&68=101&72=104&73=108&75=114&77=116&78=120&79=122&80=126&84=130&88=133&89=137&91=143&96=145&97=149&109=154&111=157&113=161&120=175&131=181&134=184&135=188&138=190&139=194&145=200&149=207&152=210&155=212&156=216&158=221&160=225&162=230&168=233&169=235&177=240&180=243&182=247&183=249&185=251&186=263&187=267&193=274&204=278&205=281'