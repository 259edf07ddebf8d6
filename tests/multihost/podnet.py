"""Pods on one machine: one Linux network namespace per process of the
stack, each with its own address on a private bridge, and a name for every
pod resolved through a per-namespace /etc/hosts.

    net = PodNet(("postgres", "redis", "token", ...))
    net.up()                  # namespaces, bridge, addresses, hosts files
    net.enter_client()        # this thread now lives in the client pod
    fixture.Stack(net=net)    # the fixture places each process with net
    net.remove_pod("account") # the pod and its link are gone
    net.add_pod("account")    # back with the same name and address
    net.move_pod("account", net.spare_ip())   # (while removed) or another
    net.down()                # everything removed (idempotent)

Layout: the bridge lives in a namespace of its own ("<tag>-net"), so this
machine's own interfaces, routes and firewall are never touched and the
addresses cannot clash with anything outside. Every pod namespace
("<tag>-<name>") holds one end of a veth pair as eth0 with 10.213.0.N/24;
the other end is a port of the bridge. The test process reaches the pods
from the client namespace. `ip netns exec` bind-mounts
/etc/netns/<namespace>/hosts over /etc/hosts, which is how the pods find
each other by name; the test process itself uses addresses.

The tag holds our PID, so parallel runs never share a name; namespaces
left behind by a run that was killed (its PID gone) are removed by the
next run's up().
"""

import atexit
import ctypes
import os
import re
import shutil
import subprocess

SUBNET = "10.213.0"
PREFIX = "estore-mh"
NETNS_DIR = "/etc/netns"
CLIENT = "client"
_CLONE_NEWNET = 0x40000000
_TAG_RE = re.compile(r"^%s(\d+)-" % PREFIX)
# iproute2's ip, also when /usr/sbin is not on PATH.
IP = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip")
                                 if os.access(p, os.X_OK)), None)


class NetError(RuntimeError):
    pass


def _ip(*args, check=True):
    """One `ip` command, bounded in time."""
    r = subprocess.run([IP] + list(args), capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise NetError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


def _namespaces():
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def unavailable():
    """Why network namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, a bridge)"
    if IP is None:
        return "no `ip` command (Debian: iproute2)"
    probe = "%s%d-probe" % (PREFIX, os.getpid())
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return "`ip netns add` fails here: %s" % r.stderr.strip()
    try:
        r = _ip("-n", probe, "link", "add", "br0", "type", "bridge", check=False)
        if r.returncode != 0:
            return "cannot create a bridge: %s" % r.stderr.strip()
        r = _ip("-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
                check=False)
        if r.returncode != 0:
            return "cannot create a veth pair: %s" % r.stderr.strip()
        # It mounts a new /sys and the /etc/netns files: containers may refuse.
        r = _ip("netns", "exec", probe, "true", check=False)
        if r.returncode != 0:
            return "`ip netns exec` fails here: %s" % r.stderr.strip()
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def sweep_stale():
    """Removes namespaces and hosts files of earlier runs whose process is
    gone (a run killed before its cleanup). Returns what was removed."""
    gone = []
    for ns in _namespaces():
        m = _TAG_RE.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            _ip("netns", "del", ns, check=False)
            gone.append(ns)
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        names = []
    for ns in names:
        m = _TAG_RE.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(NETNS_DIR, ns), True)
            gone.append(NETNS_DIR + "/" + ns)
    if gone:
        try:
            os.rmdir(NETNS_DIR)    # when nothing else is in it
        except OSError:
            pass
    return gone


class PodNet:
    """A fixture placement (see fixture.Loopback): process `name` runs in
    namespace ns(name), listens on ip(name), is named `name` by the
    others, and is reached by the test on ip(name)."""

    peer_cidr = SUBNET + ".0/24"

    def __init__(self, names):
        self.tag = "%s%d" % (PREFIX, os.getpid())
        self.names = list(names)
        # .1 stays free (a gateway, were there one); the client is .2.
        self.ips = {CLIENT: SUBNET + ".2"}
        for i, n in enumerate(self.names):
            self.ips[n] = "%s.%d" % (SUBNET, 10 + i)
        self._made = []          # namespaces we created, in order
        self._made_netns_dir = False
        self._home = None        # fd of the namespace we came from
        self._up = False

    # -- the placement fixture.Stack asks --

    def ns(self, name):
        return "%s-%s" % (self.tag, name)

    def wrap(self, name, argv):
        # ip netns exec execs the command (no fork): the PID is argv's.
        return [IP, "netns", "exec", self.ns(name)] + list(argv)

    def listen(self, name):
        return self.ips[name]

    def host(self, name):
        return name

    def addr(self, name):
        return self.ips[name]

    # -- life cycle --

    def up(self):
        """Creates the bridge namespace, every pod and the client, and
        writes the hosts files. On error, removes what it made."""
        # Also when the run ends on an exception outside the test's own
        # cleanup (idempotent).
        atexit.register(self._down_at_exit)
        try:
            sweep_stale()
            bridge = self.ns("net")
            self._add_ns(bridge)
            _ip("-n", bridge, "link", "add", "br0", "type", "bridge")
            _ip("-n", bridge, "link", "set", "br0", "up")
            for n in self.names + [CLIENT]:
                self._write_hosts(n)
                self.add_pod(n)
            self._up = True
        except BaseException:
            self.down()
            raise
        return self

    def _add_ns(self, ns):
        _ip("netns", "add", ns)
        self._made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def add_pod(self, name):
        """The pod's namespace, its link to the bridge and its address
        (again, after remove_pod: same name, same address)."""
        ns, bridge, port = self.ns(name), self.ns("net"), "v-" + name
        if ns in self._made:
            self._made.remove(ns)
        self._add_ns(ns)
        _ip("-n", bridge, "link", "add", port, "type", "veth",
            "peer", "name", "eth0", "netns", ns)
        _ip("-n", bridge, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", self.ips[name] + "/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")

    def remove_pod(self, name):
        """Deletes the pod's namespace; its veth pair (and so its port on
        the bridge and its address) goes with it once no process holds
        the namespace: stop the pod's process first."""
        ns = self.ns(name)
        _ip("netns", "del", ns)
        if ns in self._made:
            self._made.remove(ns)

    def spare_ip(self):
        """An address of the subnet no pod uses."""
        used = set(self.ips.values())
        for i in range(10, 255):
            ip = "%s.%d" % (SUBNET, i)
            if ip not in used:
                return ip
        raise NetError("no free address in %s.0/24" % SUBNET)

    def move_pod(self, name, ip):
        """Gives pod `name` (removed, not yet added again) another address,
        and every pod's hosts file the new one for its name. The files
        are rewritten in place: `ip netns exec` bind-mounted them, so the
        running processes see the change at their next lookup."""
        self.ips[name] = ip
        for n in self.names + [CLIENT]:
            self._write_hosts(n)

    def _write_hosts(self, name):
        if not os.path.isdir(NETNS_DIR):
            os.makedirs(NETNS_DIR, exist_ok=True)
            self._made_netns_dir = True
        d = os.path.join(NETNS_DIR, self.ns(name))
        os.makedirs(d, exist_ok=True)
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost"]
        lines += ["%s\t%s" % (self.ips[n], n) for n in self.names]
        with open(os.path.join(d, "hosts"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def enter_client(self):
        """Moves the calling thread into the client pod. Threads it starts
        afterwards (gRPC's among them) and its child processes follow:
        call it before the first gRPC channel."""
        if self._home is None:
            self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open("/run/netns/" + self.ns(CLIENT), os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    def leave_client(self):
        if self._home is not None:
            _setns(self._home)
            os.close(self._home)
            self._home = None

    def _down_at_exit(self):
        try:
            self.down()
        except NetError as e:
            print("podnet: %s" % e)

    def down(self):
        """Removes every namespace and hosts file of this run; errors are
        collected and raised after everything was tried. Idempotent."""
        errors = []
        try:
            self.leave_client()
        except OSError as e:
            errors.append(str(e))
        for ns in reversed(self._made):
            r = _ip("netns", "del", ns, check=False)
            if r.returncode != 0 and ns in _namespaces():
                errors.append("ip netns del %s: %s" % (ns, r.stderr.strip()))
        self._made = []
        for n in self.names + [CLIENT]:
            shutil.rmtree(os.path.join(NETNS_DIR, self.ns(n)), True)
        if self._made_netns_dir:
            try:
                os.rmdir(NETNS_DIR)
            except OSError:
                pass          # someone else's files are there too
            self._made_netns_dir = False
        self._up = False
        left = [ns for ns in _namespaces() if ns.startswith(self.tag + "-")]
        if left:
            errors.append("namespaces left: " + ", ".join(left))
        if errors:
            raise NetError("; ".join(errors))
