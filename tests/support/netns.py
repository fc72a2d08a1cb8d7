"""Network namespaces for tests that need a host, an uplink and guests without touching the
root namespace: `Lab` makes namespaces with a unique prefix, veth pairs between them, and
removes everything it made (killing what it started in them) on close. Small Python programs
run inside give a TCP echo of who connected (`serve`) and a client (`connect`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# a TCP and a UDP server on each port given (IPv4 and IPv6) answering "<tag> <peer address>\n"
SERVER = textwrap.dedent("""
    import selectors, socket, sys
    tag, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    sel = selectors.DefaultSelector()
    for port in ports:
        s = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        sel.register(s, selectors.EVENT_READ, "tcp")
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        u.bind(("", port))
        sel.register(u, selectors.EVENT_READ, "udp")
    print("listening", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "udp":
                _, peer = key.fileobj.recvfrom(100)
                addr = peer[0].removeprefix("::ffff:")
                key.fileobj.sendto(f"{tag} {addr}\\n".encode(), peer)
                continue
            conn, peer = key.fileobj.accept()
            with conn:
                addr = peer[0].removeprefix("::ffff:")
                conn.sendall(f"{tag} {addr}\\n".encode())
""")
# connect to HOST PORT (optionally from SOURCE; "udp" as the last argument: one datagram and
# its answer); print the answer or "FAIL <error>"
CLIENT = textwrap.dedent("""
    import socket, sys
    udp = sys.argv[-1] == "udp"
    args = sys.argv[1:-1] if udp else sys.argv[1:]
    host, port = args[0], int(args[1])
    source = (args[2], 0) if len(args) > 2 else None
    if udp:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            if source:
                s.bind(source)
            try:
                s.sendto(b"hello", (host, port))
                print(s.recv(200).decode().strip())
            except OSError as e:
                print(f"FAIL {e}")
        sys.exit(0)
    try:
        with socket.create_connection((host, port), timeout=3, source_address=source) as s:
            print(s.recv(200).decode().strip())
    except OSError as e:
        print(f"FAIL {e}")
""")

# a DHCPv6 SOLICIT on IFACE (busybox has no udhcpc6): print the address the server's ADVERTISE
# offers in its IA_NA, or "FAIL ...". The client identifies itself by a DUID-EN, which holds no
# MAC: the server has to find the MAC itself, as with most real clients.
DHCPV6_CLIENT = textwrap.dedent("""
    import os, socket, struct, sys
    iface = sys.argv[1]
    def opt(code, data): return struct.pack("!HH", code, len(data)) + data
    xid = os.urandom(3)
    duid = struct.pack("!HI", 2, 32473) + os.urandom(8)           # DUID-EN
    msg = (bytes([1]) + xid + opt(1, duid) + opt(8, b"\\0\\0")
           + opt(3, struct.pack("!III", 1, 0, 0)) + opt(6, struct.pack("!H", 23)))
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.bind(("::", 546))
    s.settimeout(3)
    idx = socket.if_nametoindex(iface)
    for _ in range(3):
        s.sendto(msg, ("ff02::1:2", 547, 0, idx))
        try:
            data = s.recv(2000)
        except TimeoutError:
            continue
        if data[0] != 2 or data[1:4] != xid:
            continue
        i = 4
        while i + 4 <= len(data):
            code, length = struct.unpack("!HH", data[i:i + 4])
            body = data[i + 4:i + 4 + length]
            if code == 3:                                         # IA_NA
                j = 12
                while j + 4 <= len(body):
                    c, n = struct.unpack("!HH", body[j:j + 4])
                    if c == 5:                                    # IAADDR
                        print(socket.inet_ntop(socket.AF_INET6, body[j + 4:j + 20]))
                        sys.exit(0)
                    j += 4 + n
            i += 4 + length
        print("FAIL an ADVERTISE without an address")
        sys.exit(0)
    print("FAIL no ADVERTISE")
""")


class Lab:
    def __init__(self) -> None:
        self.prefix = f"mvn{uuid.uuid4().hex[:5]}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []

    def ns(self, name: str) -> str:
        """A new namespace PREFIX-NAME with its loopback up."""
        full = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True)
        self.namespaces.append(full)
        self.run(full, "ip", "link", "set", "lo", "up", check=True)
        return full

    def run(self, ns: str, *argv: str, check: bool = False, timeout: float = 60,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, **(env or {})})
        if check:
            assert p.returncode == 0, f"{ns}: {' '.join(argv)}: {p.returncode}\n{p.stderr}"
        return p

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        """A veth pair: name_a in ns_a, name_b in ns_b, both down."""
        subprocess.run(["ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer",
                        "name", name_b, "netns", ns_b], check=True)

    def host_and_uplink(self, host4: str, uplink4: str, *,
                        default_route: bool = False) -> tuple[str, str]:
        """Namespaces `host` and `uplink` joined by a veth (up0 in host, eth0 in uplink) with
        these /24 addresses, up; with default_route, the host's default route is the uplink."""
        host, uplink = self.ns("host"), self.ns("uplink")
        self.veth(host, "up0", uplink, "eth0")
        for ns, dev, addr in ((host, "up0", host4), (uplink, "eth0", uplink4)):
            self.run(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev, check=True)
            self.run(ns, "ip", "link", "set", dev, "up", check=True)
        if default_route:
            self.run(host, "ip", "route", "add", "default", "via", uplink4, check=True)
        return host, uplink

    def spawn(self, ns: str, *argv: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def serve(self, ns: str, tag: str, ports: Sequence[int]) -> None:
        p = self.spawn(ns, sys.executable, "-c", SERVER, tag, *map(str, ports))
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "listening", p.stderr.read() if p.stderr else ""

    def connect(self, ns: str, host: str, port: int, source: str | None = None, *,
                udp: bool = False) -> str:
        """What a TCP (or UDP) client in `ns` got from host:port ("FAIL ..." for nothing)."""
        return self.run(ns, sys.executable, "-c", CLIENT, host, str(port),
                        *([source] if source else []), *(["udp"] if udp else [])).stdout.strip()

    def dhcpv6(self, ns: str, iface: str) -> str:
        """The address a DHCPv6 server on iface's link offers ("FAIL ..." for none)."""
        return self.run(ns, sys.executable, "-c", DHCPV6_CLIENT, iface).stdout.strip()

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in reversed(self.namespaces):
            # whatever still runs in it (a daemon the test under way started) ends with it
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.2) -> bool:
    """Poll predicate() until it is true (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


# The test guest's side of DHCP (a busybox init script fragment): writes /udhcpc.sh, which
# on a lease sets the address, the default route and /etc/resolv.conf and prints an
# E2E-LEASE line; the guests of tests/test_network_e2e.py and bench/network.py start with
# it.
GUEST_DHCP = r"""
ip link set lo up
cat > /udhcpc.sh <<'EOF'
#!/bin/sh
case "$1" in bound|renew) ;; *) exit 0 ;; esac
ip addr add "$ip/$mask" dev "$interface"
ip route replace default via "$router" dev "$interface"
mkdir -p /etc && echo "nameserver $dns" > /etc/resolv.conf
echo "E2E-LEASE ip=$ip router=$router dns=$dns domain=$domain"
EOF
chmod +x /udhcpc.sh
"""


def udhcpc_script(path: Path) -> Path:
    """A udhcpc script: on a lease, set the address and default route and write what the server
    said (ip, mask, router, dns, domain) to $LEASE_FILE."""
    path.write_text(textwrap.dedent("""\
        #!/bin/sh
        case "$1" in bound|renew) ;; *) exit 0 ;; esac
        ip addr add "$ip/$mask" dev "$interface"
        ip route replace default via "$router" dev "$interface"
        printf '%s\\n' "ip=$ip" "mask=$mask" "router=$router" "dns=$dns" "domain=$domain" \\
            > "$LEASE_FILE"
        """))
    path.chmod(0o755)
    return path
