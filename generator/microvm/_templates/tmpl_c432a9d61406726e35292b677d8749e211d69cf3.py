from jinja2.runtime import LoopContext, Macro, Markup, Namespace, TemplateNotFound, TemplateReference, TemplateRuntimeError, Undefined, escape, identity, internalcode, markup_join, missing, str_join
name = 'units/libexec/notify-relay.sh.j2'

def root(context, missing=missing):
    resolve = context.resolve_or_missing
    undefined = environment.undefined
    concat = environment.concat
    cond_expr_undefined = Undefined
    if 0: yield None
    l_0_notify_port_base = resolve('notify_port_base')
    l_0_meta = resolve('meta')
    pass
    template = environment.get_template('units/libexec/_head.sh.j2', 'units/libexec/notify-relay.sh.j2')
    gen = template.root_render_func(template.new_context(context.get_all(), True, {}))
    try:
        for event in gen:
            yield event
    finally: gen.close()
    yield '# notify-relay RUNNER/bin/microvm-run...: run under a Type=notify unit. Relays the\n# sd_notify messages the guest sends to the host over vsock (guest credential\n# vmm.notify_socket=vsock-stream:2:PORT, PORT = '
    yield str((undefined(name='notify_port_base') if l_0_notify_port_base is missing else l_0_notify_port_base))
    yield ' + the VM\'s vsock CID, or\n# $MICROVM_NOTIFY_VSOCK_PORT) to systemd\'s $NOTIFY_SOCKET, then runs COMMAND.\nif [ -z "${NOTIFY_SOCKET:-}" ]; then\n  exec "$@"\nfi\nrunner=$(dirname -- "$(dirname -- "$1")")\nif ! cid=$(cat -- "$runner/'
    yield str(environment.getattr((undefined(name='meta') if l_0_meta is missing else l_0_meta), 'vsock_cid'))
    yield '" 2>/dev/null); then\n  echo "notify-relay: this VM has no vsock (microvm.vsock.cid); reporting ready at start" >&2\n  systemd-notify --ready || true\n  exec "$@"\nfi\nport=${MICROVM_NOTIFY_VSOCK_PORT:-$(('
    yield str((undefined(name='notify_port_base') if l_0_notify_port_base is missing else l_0_notify_port_base))
    yield ' + cid))}\ncase "$NOTIFY_SOCKET" in\n  @*) target="ABSTRACT-SENDTO:${NOTIFY_SOCKET#@}" ;;\n  *) target="UNIX-SENDTO:$NOTIFY_SOCKET" ;;\nesac\n# cloud-hypervisor and firecracker (hybrid vsock) hand a guest\'s connection to host port P to\n# the Unix socket SOCKET_P beside their vsock socket, SOCKET named in '
    yield str(environment.getattr((undefined(name='meta') if l_0_meta is missing else l_0_meta), 'hybrid_vsock'))
    yield '\nif hybrid=$(cat -- "$runner/'
    yield str(environment.getattr((undefined(name='meta') if l_0_meta is missing else l_0_meta), 'hybrid_vsock'))
    yield '" 2>/dev/null); then\n  case "$hybrid" in\n    \'\'|*[!A-Za-z0-9._/-]*)\n      echo "notify-relay: unusable hybrid vsock socket name \'$hybrid\'; reporting ready at start" >&2\n      systemd-notify --ready || true\n      exec "$@" ;;\n  esac\n  listen="UNIX-LISTEN:${hybrid}_$port,fork,unlink-early"\nelse\n  listen="VSOCK-LISTEN:$port,fork"\nfi\n# short timeouts: every message is one connection (systemd >= 256 sends several)\nsocat -t0 -T0.2 "$listen" "$target" &\nexec "$@"\n'

blocks = {}
debug_info = '1=13&4=20&10=22&15=24&21=26&22=28'