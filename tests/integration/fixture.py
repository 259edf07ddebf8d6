"""Fixture of the integration tests: real PostgreSQL 15 and Redis on free
loopback ports in a temporary directory, an ES256 signing key, and our
service binaries started with the environment they read in production.

Command line (what tests/integration/CMakeLists.txt passes; every option is
optional when running by hand from the repository root, see _defaults()):

    /usr/bin/python3 tests/integration/test_X.py \
        --account build/services/account/estore-account \
        --token build/services/token/estore-token \
        --auth build/services/auth/estore-auth \
        --catalog build/services/catalog/estore-catalog \
        --protoc protoc --grpc-python-plugin /usr/bin/grpc_python_plugin \
        --proto-path proto --proto-path /usr/share/grpc-proto \
        --proto-path /usr/share/gocode/src/github.com/gogo/googleapis \
        [--keep] [unittest args, e.g. -k test_name]

    --keep (or ESTORE_TEST_KEEP=1) leaves the temp dir (logs, data) in place.

API
---
    import fixture
    fixture.main()                       # at the bottom of test_X.py

    fixture.load_stubs()                 # generate + import *_pb2 (idempotent)
    fixture.pb2("token")                 # module estore.token.v1.token_pb2
    fixture.pb2_grpc("token")            # module estore.token.v1.token_pb2_grpc
    fixture.health_pb2()                 # grpc.health.v1.health_pb2
    fixture.bearer(tok)                  # [("authorization", "Bearer " + tok)]
    fixture.wait_until(pred, timeout, step=0.05)   # bounded polling; last pred() value
    fixture.free_port(), free_ports(n)   # free loopback port(s) (e.g. "nothing listens here")
    fixture.have_binary("auth")          # does estore-auth exist (built)
    fixture.binary_path("auth")          # its path

    class MyTest(fixture.StackTestCase):
        SERVICES = ("token", "account", "auth")    # started in this order
                                                   # (default: all of SERVICE_ORDER)
        SERVICE_ENV = {"auth": {"AUTH_ARGON2_MEMORY_KIB": "19456"}}   # optional
        def test_x(self):
            st = self.stack
            auth = st.stub("auth")      # AuthServiceStub on a cached channel
            pair = st.register()         # Register a fresh user -> (TokenPair, email, password)
            ...
    (StackTestCase fails the class when a binary in SERVICES was not built.)

    with fixture.Stack() as st:          # or st = Stack().start() ... st.close()
        st.start_service("token")        # binary from the command line
        st.start_service("auth", extra_env={...}, wait="serving")
        # wait: "serving" (default: health Check("") == SERVING),
        #       "listening" (any health answer, e.g. NOT_SERVING while a
        #       dependency is down), or None (don't wait)

    fixture.Stack(net=placement)         # where each process runs, listens and
                                         # is reached (default Loopback(): all
                                         # on 127.0.0.1; tests/multihost puts
                                         # each in its own network namespace)

    Stack attributes / methods
      st.dir                      the temp dir (logs/, pg/, redis/, keys/)
      st.db_port, st.redis_port   the loopback ports
      st.ports[name]              gRPC port of "account", "token", "auth", "catalog"
                                  (allocated up front, so every service knows
                                  every other's address before it starts)
      st.net                      the placement (Loopback() unless given)
      st.target(name)             "ADDR:PORT" (ADDR: st.net.addr(name))
      st.secret                   AUTH_SERVICE_SECRET (random per stack)
      st.key_dir, st.generate_key(kid)   ES256 PEM keys (first kid: "test-1")
      st.env(name, extra)         the environment a service gets
      st.channel(name)            cached grpc.Channel (fast reconnect)
      st.stub(name)               the service's stub on that channel
      st.health(name, timeout=2, service="")   "SERVING" / "NOT_SERVING" / ...,
                                  None when nothing answers (fresh channel each time)
      st.wait_health(name, want="SERVING", timeout=20)   bounded; raises with log tail
      st.start_service(name, binary=None, extra_env=None, wait="serving")
      st.stop_service(name, timeout=20) -> exit status (SIGTERM, then SIGKILL + error)
      st.kill_service(name)       SIGKILL, by PID
      st.restart_service(name, ...)
      st.service_alive(name), st.pid(name), st.log(name), st.log_tail(name, n)
      st.rss_kib(name)            VmRSS of the service
      st.exit_codes[name]         exit status of its last stop/kill
      st.assert_clean_exit(testcase, name)   stop + assert exit status 0
      st.stop_postgres(mode="fast"|"immediate"), st.start_postgres()
      st.stop_redis(save=True|False), st.start_redis()      same ports, same data
      st.postgres_alive(), st.redis_alive()
      st.postgres_pid(), st.redis_pid()   PIDs of the servers (None when stopped)
      st.failed = True            keep the temp dir and print log tails at close
      st.psql(sql) -> stdout      runs psql against the test database
      st.redis(*args) -> reply    one Redis command over a socket (RESP)
      st.service_token(service="auth") -> str  (TokenService.IssueServiceToken)
      st.token_pair(account_id, roles=("customer",)) -> TokenPair (IssueTokenPair
                                  with the service token)
      st.register(email=None, password=None, display_name="Test User")
                                  -> (TokenPair, email, password) via AuthService
      st.close()                  stops services (reverse order), Redis,
                                  PostgreSQL; removes the temp dir unless a
                                  failure was recorded (st.failed = True) or
                                  --keep; prints log tails on failure

Rules kept here: never a fixed port; every wait bounded in time; processes
are signalled by the PID we started, never by name; every child gets
PR_SET_PDEATHSIG=SIGKILL (via setpriv) so a killed test run leaves nothing
behind -- start and stop processes from the MAIN thread (the death signal
follows the thread that forked). Services run with cwd = the temp dir and
ESTORE_ENV_FILE pointing to an empty file, so a developer's .env never
leaks into a test.
"""

import argparse
import atexit
import importlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None

SERVICE_ORDER = ("token", "account", "auth", "catalog")
# The edge proxy speaks HTTP, not gRPC: it starts after the services and
# is waited for on GET /healthz.
EDGE = "edge"

# Environment names per service (the contract in the brief / README).
_HOST_PORT_VARS = {
    "account": ("ACCOUNT_API_HOST", "ACCOUNT_API_PORT"),
    "token": ("TOKEN_SERVICE_HOST", "TOKEN_SERVICE_PORT"),
    "auth": ("AUTH_SERVICE_HOST", "AUTH_SERVICE_PORT"),
    "catalog": ("CATALOG_SERVICE_HOST", "CATALOG_SERVICE_PORT"),
}

# Variables of ours that must never come from the developer's shell.
_OUR_VARS = (
    "LOG_LEVEL", "LISTEN_HOST", "GRPC_IO_THREADS", "GRPC_WORKERS",
    "DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME", "DB_POOL_SIZE",
    "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD",
    "ACCOUNT_API_HOST", "ACCOUNT_API_PORT", "TOKEN_SERVICE_HOST",
    "TOKEN_SERVICE_PORT", "AUTH_SERVICE_HOST", "AUTH_SERVICE_PORT",
    "AUTH_SERVICE_SECRET", "TOKEN_KEY_DIR", "TOKEN_SIGNING_KID",
    "TOKEN_ISSUER", "TOKEN_AUDIENCE", "TOKEN_ACCESS_TTL_S",
    "TOKEN_REFRESH_TTL_S", "TOKEN_SERVICE_TTL_S", "AUTH_PASSWORD_DENYLIST",
    "AUTH_ARGON2_MEMORY_KIB", "AUTH_ARGON2_ITERATIONS",
    "AUTH_ARGON2_PARALLELISM", "AUTH_MAX_CONCURRENT_HASHES", "ESTORE_ENV_FILE",
    "EDGE_PORT", "EDGE_IO_THREADS", "EDGE_MAX_BODY_BYTES", "EDGE_MAX_HEADER_BYTES",
    "EDGE_HEADER_TIMEOUT_MS", "EDGE_BODY_TIMEOUT_MS", "EDGE_IDLE_TIMEOUT_MS",
    "EDGE_MAX_CONNECTIONS", "EDGE_REQUEST_TIMEOUT_MS", "EDGE_DRAIN_MS",
    "EDGE_CORS_ORIGINS", "EDGE_JWKS_REFRESH_MS", "EDGE_JWKS_MIN_REFRESH_MS",
    "EDGE_REVOCATION_CACHE_MS", "EDGE_RATE_LOGIN_PER_MIN",
    "EDGE_RATE_ACCOUNT_PER_MIN", "EDGE_RATE_ANON_PER_MIN",
    "CATALOG_SERVICE_HOST", "CATALOG_SERVICE_PORT", "CATALOG_MIGRATIONS_DIR",
    "CATALOG_CACHE_ENTRIES",
)

_STUB_MODULES = {
    "account": "estore.account.v1.account",
    "token": "estore.token.v1.token",
    "auth": "estore.auth.v1.auth",
    "catalog": "estore.catalog.v1.catalog",
}
_STUB_CLASSES = {
    "account": "AccountServiceStub",
    "token": "TokenServiceStub",
    "auth": "AuthServiceStub",
    "catalog": "CatalogServiceStub",
}

PG_BIN = "/usr/lib/postgresql/15/bin"
REDIS_SERVER = "/usr/bin/redis-server"

_REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ---- command line ----------------------------------------------------------

def _defaults():
    """Binary paths when not given: $ESTORE_BUILD_DIR or REPO/build."""
    build = os.environ.get("ESTORE_BUILD_DIR", os.path.join(_REPO, "build"))
    d = {n: os.path.join(build, "services", n, "estore-" + n) for n in SERVICE_ORDER}
    d[EDGE] = os.path.join(build, "edge-proxy", "estore-edge")
    return d


def parse_args(argv=None):
    """Takes our options off sys.argv; returns the rest for unittest.main."""
    global ARGS
    argv = sys.argv if argv is None else argv
    d = _defaults()
    p = argparse.ArgumentParser(add_help=False)
    for n in SERVICE_ORDER + (EDGE,):
        p.add_argument("--" + n, default=d[n], help="path of estore-" + n)
    p.add_argument("--protoc", default="protoc")
    p.add_argument("--grpc-python-plugin", default="/usr/bin/grpc_python_plugin")
    p.add_argument("--proto-path", action="append", default=[])
    p.add_argument("--keep", action="store_true",
                   default=os.environ.get("ESTORE_TEST_KEEP") == "1")
    ARGS, rest = p.parse_known_args(argv[1:])
    if not ARGS.proto_path:
        ARGS.proto_path = [os.path.join(_REPO, "proto"), "/usr/share/grpc-proto",
                           "/usr/share/gocode/src/github.com/gogo/googleapis"]
    return [argv[0]] + rest


def _args():
    if ARGS is None:
        parse_args([sys.argv[0]])
    return ARGS


def main():
    """unittest.main with our options removed from the command line."""
    argv = parse_args()
    unittest.main(argv=argv, verbosity=2)


def take_option(name):
    """Removes `name VALUE` or `name=VALUE` from sys.argv (an option of one
    test program that the fixture and unittest do not know) and returns
    VALUE, or None."""
    argv = sys.argv
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
            return value
        if a.startswith(name + "="):
            del argv[i]
            return a.split("=", 1)[1]
    return None


def binary_path(name):
    """The estore-<name> executable from the command line (or default)."""
    return getattr(_args(), name)


def have_binary(name):
    b = binary_path(name)
    return bool(b) and os.access(b, os.X_OK)


# ---- generated Python stubs -----------------------------------------------

_stub_dir = None


def _all_protos():
    """Every .proto under our proto dir (the first --proto-path that holds
    estore/), plus grpc health; relative to their include dir."""
    files = []
    for root in _args().proto_path:
        est = os.path.join(root, "estore")
        if not os.path.isdir(est):
            continue
        for d, _, names in os.walk(est):
            for n in sorted(names):
                if n.endswith(".proto"):
                    files.append(os.path.relpath(os.path.join(d, n), root))
        break
    return sorted(files) + ["grpc/health/v1/health.proto"]


def _closure(tmp):
    """The import closure minus google/protobuf/* (python3-protobuf ships
    those); asking protoc keeps this right when protos grow imports."""
    from google.protobuf import descriptor_pb2

    out = os.path.join(tmp, "closure.pb")
    cmd = [_args().protoc, "--include_imports", "--descriptor_set_out=" + out]
    cmd += ["-I" + d for d in _args().proto_path] + _all_protos()
    subprocess.run(cmd, check=True, timeout=60)
    with open(out, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    os.unlink(out)
    return [fd.name for fd in fds.file if not fd.name.startswith("google/protobuf/")]


def load_stubs():
    """Generates *_pb2 / *_pb2_grpc for every proto into a temp dir (once
    per process) and makes them importable. Returns that directory."""
    global _stub_dir
    if _stub_dir is not None:
        return _stub_dir
    import google.protobuf

    v = tuple(int(x) for x in google.protobuf.__version__.split(".")[:2])
    if v < (3, 20):
        sys.exit("fixture: python protobuf %s is too old for protoc 3.21 output"
                 % google.protobuf.__version__)
    plugin = _args().grpc_python_plugin
    if not os.access(plugin, os.X_OK):
        sys.exit("fixture: %s missing (Debian package protobuf-compiler-grpc)" % plugin)
    d = tempfile.mkdtemp(prefix="estore-it-stubs-")
    atexit.register(shutil.rmtree, d, True)
    cmd = [_args().protoc, "--python_out=" + d, "--grpc_python_out=" + d,
           "--plugin=protoc-gen-grpc_python=" + plugin]
    cmd += ["-I" + p for p in _args().proto_path] + _closure(d)
    subprocess.run(cmd, check=True, timeout=60)
    sys.path.insert(0, d)
    # grpc/health/... lands in the package `grpc`, which is the installed
    # grpcio: extend its search path rather than shadow it.
    for top in ("grpc", "google"):
        extra = os.path.join(d, top)
        if os.path.isdir(extra):
            pkg = importlib.import_module(top)
            if extra not in list(pkg.__path__):
                pkg.__path__.append(extra)
    _stub_dir = d
    return d


def pb2(name):
    load_stubs()
    return importlib.import_module(_STUB_MODULES.get(name, name) + "_pb2")


def pb2_grpc(name):
    load_stubs()
    return importlib.import_module(_STUB_MODULES.get(name, name) + "_pb2_grpc")


def health_pb2():
    load_stubs()
    return importlib.import_module("grpc.health.v1.health_pb2")


def health_pb2_grpc():
    load_stubs()
    return importlib.import_module("grpc.health.v1.health_pb2_grpc")


def bearer(token):
    return [("authorization", "Bearer " + token)]


# ---- small helpers ---------------------------------------------------------

def free_port():
    """A port the kernel considers free on 127.0.0.1 right now."""
    return free_ports(1)[0]


def free_ports(n, avoid=()):
    """n distinct free loopback ports: every probe socket stays bound until
    all are picked, so the kernel cannot hand out the same port twice."""
    socks, ports = [], []
    try:
        for _ in range(n + 20):
            if len(ports) == n:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in avoid:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    if len(ports) != n:
        raise RuntimeError("could not find %d free ports" % n)
    return ports


def _tail(path, n=60):
    try:
        with open(path, "r", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        return "(%s: %s)" % (path, e)
    return "".join(lines[-n:])


def wait_until(pred, timeout, step=0.05):
    """Polls pred() until it returns something true or `timeout` seconds
    pass; returns its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _port_open(port, timeout=0.2, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError("redis: " + rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError("redis: unexpected reply %r" % line)


# ---- where processes run -------------------------------------------------

class Loopback:
    """Where the stack's processes run and how they find each other: the
    default puts everything on 127.0.0.1 of this network namespace.
    Another placement (tests/multihost: one network namespace per
    process) provides the same methods; names are "postgres", "redis" and
    the services ("token", ..., "edge")."""

    # Addresses PostgreSQL must trust besides loopback (pg_hba CIDR).
    peer_cidr = None

    def wrap(self, name, argv):
        """The command line that runs argv as `name` (e.g. inside its
        network namespace); must exec, not fork, so the PID is argv's."""
        return list(argv)

    def listen(self, name):
        """The address `name` binds to."""
        return "127.0.0.1"

    def host(self, name):
        """What the other processes put in *_HOST to reach `name`."""
        return "127.0.0.1"

    def addr(self, name):
        """The address this test process connects to `name` on."""
        return "127.0.0.1"


# ---- the stack -------------------------------------------------------------

class _Proc:
    def __init__(self, popen, log):
        self.popen = popen
        self.log = log

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None


class Stack:
    SERVICE_START_TIMEOUT = 20.0
    STOP_TIMEOUT = 20.0
    PG_START_TIMEOUT = 60.0

    def __init__(self, keep=None, net=None):
        self.keep = _args().keep if keep is None else keep
        self.net = net or Loopback()
        self.failed = False
        self.dir = None
        self.procs = {}           # name -> _Proc (services)
        self.order = []           # start order of services, for reverse stop
        self.exit_codes = {}      # name -> exit status of the last stop
        self._channels = {}
        self._pg = None
        self._redis = None
        self._closed = False
        self.ports = {n: None for n in SERVICE_ORDER + (EDGE,)}
        self.metrics_ports = {}
        self.metrics = False
        self.db_port = None
        self.redis_port = None
        self.secret = secrets.token_hex(32)
        self._run_as = None       # (uid, gid) for PostgreSQL when root
        self._run_caps = False    # ... plus CAP_DAC_READ_SEARCH

    # -- life cycle --

    def start(self, postgres=True, redis=True):
        """Creates the temp dir, ports, key; starts PostgreSQL and Redis."""
        self.dir = tempfile.mkdtemp(prefix="estore-it-")
        # PostgreSQL may run as nobody: it must traverse (not list) our dir.
        os.chmod(self.dir, 0o711)
        atexit.register(self.close)
        try:
            for sub in ("logs", "redis", "keys"):
                os.mkdir(os.path.join(self.dir, sub))
            os.chmod(os.path.join(self.dir, "keys"), 0o700)
            self._empty_env = os.path.join(self.dir, "empty.env")
            open(self._empty_env, "w").close()
            self.key_dir = os.path.join(self.dir, "keys")
            self.generate_key("test-1")
            picked = free_ports(2 * len(SERVICE_ORDER) + 3)
            for n, port in zip(SERVICE_ORDER + (EDGE,), picked):
                self.ports[n] = port
            # Each service's Prometheus endpoint (METRICS_PORT).
            self.metrics_ports = dict(zip(SERVICE_ORDER, picked[len(SERVICE_ORDER) + 1:]))
            self.db_port, self.redis_port = picked[-2:]
            if postgres:
                self._init_postgres()
                self._first_start(self.start_postgres, "db_port")
                self._create_database()
            if redis:
                self._first_start(self.start_redis, "redis_port")
        except BaseException:
            self.failed = True
            self.close()
            raise
        return self

    def _first_start(self, fn, attr):
        """Another process may grab a port between our probe and the
        server's bind: retry with a new port a few times."""
        last = None
        for _ in range(3):
            try:
                fn()
                return
            except RuntimeError as e:
                last = e
            used = set(self.ports.values()) | {self.db_port, self.redis_port}
            setattr(self, attr, free_ports(1, avoid=used)[0])
        raise last

    def __enter__(self):
        return self.start() if self.dir is None else self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.failed = True
        self.close()
        return False

    def close(self):
        """Stops everything in reverse order; removes the temp dir unless a
        failure was recorded or keep is set. Idempotent."""
        if self._closed or self.dir is None:
            return
        self._closed = True
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
        for name in reversed(self.order):
            p = self.procs.get(name)
            if p is not None and p.alive():
                try:
                    rc = self.stop_service(name)
                    if rc != 0:
                        self.failed = True
                except AssertionError:
                    self.failed = True
        try:
            self.stop_redis(save=False)
        finally:
            self.stop_postgres("fast")
        if self.failed:
            self.dump_logs()
        if self.failed or self.keep:
            sys.stderr.write("fixture: kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, True)

    def dump_logs(self, n=40):
        out = sys.stderr
        logs = os.path.join(self.dir, "logs")
        for f in sorted(os.listdir(logs)):
            out.write("----- %s (last %d lines) -----\n%s\n" % (f, n, _tail(os.path.join(logs, f), n)))
        out.flush()

    def _logpath(self, name):
        return os.path.join(self.dir, "logs", name + ".log")

    def _spawn(self, argv, log, env=None, cwd=None, as_user=None, name=None):
        """Starts argv under setpriv with a parent-death signal (and another
        uid when asked), placed by self.net as `name` when given; output
        to the log file, never to a pipe."""
        pre = ["setpriv", "--pdeathsig", "SIGKILL"]
        if as_user:
            pre += ["--reuid", str(as_user[0]), "--regid", str(as_user[1]), "--clear-groups"]
            if self._run_caps:
                pre += ["--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search"]
        argv = pre + list(argv)
        if name is not None:
            argv = self.net.wrap(name, argv)
        with open(log, "ab") as f:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=f, stderr=subprocess.STDOUT,
                                    env=env, cwd=cwd or self.dir)

    # -- keys --

    def generate_key(self, kid):
        """A new ES256 private key (PKCS#8 PEM) as KEY_DIR/<kid>.pem."""
        ec = subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout"],
                            check=True, capture_output=True, timeout=30).stdout
        pem = subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt"], input=ec,
                             check=True, capture_output=True, timeout=30).stdout
        path = os.path.join(self.key_dir, kid + ".pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return path

    # -- PostgreSQL --

    def _init_postgres(self):
        pg = os.path.join(self.dir, "pg")
        os.mkdir(pg, 0o700)
        self._pg_data = os.path.join(pg, "data")
        self._pg_sock = os.path.join(pg, "sock")
        os.mkdir(self._pg_sock, 0o700)
        if os.geteuid() == 0:
            # initdb refuses to run as root.
            pw = pwd.getpwnam("nobody")
            self._run_as = (pw.pw_uid, pw.pw_gid)
            for d in (pg, self._pg_sock):
                os.chown(d, pw.pw_uid, pw.pw_gid)
            # A TMPDIR that nobody cannot traverse (under /root): give the
            # server read/search access instead of changing permissions.
            probe = ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
                     "--clear-groups", "stat", "--", pg]
            if subprocess.run(probe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=10).returncode != 0:
                self._run_caps = True
        log = self._logpath("initdb")
        p = self._spawn([os.path.join(PG_BIN, "initdb"), "-U", "estore", "--auth=trust",
                         "--no-sync", "-E", "UTF8", "--locale=C.UTF-8", "-D", self._pg_data],
                        log, cwd=pg, as_user=self._run_as)
        try:
            rc = p.wait(120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "timeout"
        if rc != 0:
            raise RuntimeError("initdb failed (%s):\n%s" % (rc, _tail(log)))
        if self.net.peer_cidr:
            # initdb trusts loopback only; the services connect from
            # their own addresses.
            with open(os.path.join(self._pg_data, "pg_hba.conf"), "a") as f:
                f.write("host all all %s trust\n" % self.net.peer_cidr)

    def _pg_ready(self):
        """postmaster.pid's status line says 'ready' (what pg_ctl -w checks)."""
        try:
            with open(os.path.join(self._pg_data, "postmaster.pid")) as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        return (len(lines) >= 8 and lines[7].strip() == "ready"
                and _port_open(self.db_port, host=self.net.addr("postgres")))

    def start_postgres(self):
        """Starts (or restarts) the postmaster on the same port and data."""
        if self._pg is not None and self._pg.alive():
            return
        log = self._logpath("postgres")
        argv = [os.path.join(PG_BIN, "postgres"), "-D", self._pg_data,
                "-p", str(self.db_port), "-k", self._pg_sock,
                "-c", "listen_addresses=" + self.net.listen("postgres"), "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200"]
        self._pg = _Proc(self._spawn(argv, log, cwd=os.path.dirname(self._pg_data),
                                     as_user=self._run_as, name="postgres"), log)
        ok = wait_until(lambda: not self._pg.alive() or self._pg_ready(), self.PG_START_TIMEOUT)
        if not self._pg.alive() or not ok:
            self._stop_proc(self._pg, signal.SIGQUIT, 10)
            self._pg = None
            raise RuntimeError("postgres did not start on port %d:\n%s" % (self.db_port, _tail(log)))

    def stop_postgres(self, mode="fast"):
        """mode "fast" (SIGINT: clean shutdown, clients disconnected) or
        "immediate" (SIGQUIT: like a crash; recovery on the next start)."""
        if self._pg is None:
            return
        sig = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "smart": signal.SIGTERM}[mode]
        self._stop_proc(self._pg, sig, 30)
        self._pg = None

    def postgres_alive(self):
        return self._pg is not None and self._pg.alive()

    def postgres_pid(self):
        return self._pg.pid if self._pg is not None else None

    def psql(self, sql, db="estore"):
        r = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            "-h", self.net.addr("postgres"), "-p", str(self.db_port), "-U", "estore",
                            "-d", db, "-c", sql],
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
        if r.returncode != 0:
            raise RuntimeError("psql: %s" % r.stderr.strip())
        return r.stdout

    def _create_database(self):
        self.psql("CREATE DATABASE estore", db="postgres")

    # -- Redis --

    def start_redis(self):
        """Starts (or restarts) Redis on the same port and directory; data
        saved by stop_redis(save=True) is loaded back."""
        if self._redis is not None and self._redis.alive():
            return
        log = self._logpath("redis")
        bind = self.net.listen("redis")
        # Protected mode (no password) answers loopback clients only.
        protected = "yes" if bind == "127.0.0.1" else "no"
        argv = [REDIS_SERVER, "--port", str(self.redis_port), "--bind", bind,
                "--save", "", "--appendonly", "no", "--dir", os.path.join(self.dir, "redis"),
                "--daemonize", "no", "--protected-mode", protected]
        self._redis = _Proc(self._spawn(argv, log, name="redis"), log)

        def ready():
            if not self._redis.alive():
                return True
            try:
                return self.redis("PING", timeout=0.5) == "PONG"
            except (OSError, RuntimeError):
                return False
        ok = wait_until(ready, 20)
        if not self._redis.alive() or not ok:
            self._stop_proc(self._redis, signal.SIGKILL, 5)
            self._redis = None
            raise RuntimeError("redis did not start on port %d:\n%s" % (self.redis_port, _tail(log)))

    def stop_redis(self, save=True):
        """save=True: SHUTDOWN SAVE (an RDB dump in our dir, reloaded by
        start_redis: same data). save=False: SIGKILL, data since the last
        save is lost."""
        if self._redis is None:
            return
        if save and self._redis.alive():
            try:
                self.redis("SHUTDOWN", "SAVE", timeout=5)
            except (OSError, RuntimeError, ConnectionError):
                pass  # the server closes the connection as it exits
            try:
                self._redis.popen.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self._stop_proc(self._redis, signal.SIGKILL, 5)
        self._redis = None

    def redis_alive(self):
        return self._redis is not None and self._redis.alive()

    def redis_pid(self):
        return self._redis.pid if self._redis is not None else None

    def redis(self, *args, timeout=5):
        """One command; returns the decoded reply (bytes for bulk strings)."""
        with socket.create_connection((self.net.addr("redis"), self.redis_port),
                                      timeout=timeout) as s:
            s.sendall(_resp_encode(args))
            with s.makefile("rb") as f:
                return _resp_read(f)

    # -- processes --

    def _stop_proc(self, proc, sig, timeout):
        """Signals our own child by PID; SIGKILL after timeout. Returns
        (exit status, whether it had to be killed)."""
        p = proc.popen
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
                return p.returncode, True
        return p.returncode, False

    # -- services --

    def target(self, name):
        return "%s:%d" % (self.net.addr(name), self.ports[name])

    def env(self, name, extra=None):
        """The environment service `name` starts with."""
        e = {k: v for k, v in os.environ.items() if k not in _OUR_VARS}
        e.update({
            "LOG_LEVEL": "debug",
            "LISTEN_HOST": self.net.listen(name),
            "DB_HOST": self.net.host("postgres"),
            "DB_PORT": str(self.db_port or 1),
            "DB_USER": "estore",
            "DB_PASSWORD": "",
            "DB_NAME": "estore",
            "DB_POOL_SIZE": "4",
            "REDIS_HOST": self.net.host("redis"),
            "REDIS_PORT": str(self.redis_port or 1),
            "REDIS_PASSWORD": "",
            "AUTH_SERVICE_SECRET": self.secret,
            "TOKEN_KEY_DIR": self.key_dir,
            # An empty file: a developer's .env is never read by a test
            # (a named file must exist, config.c refuses a missing one).
            "ESTORE_ENV_FILE": self._empty_env,
        })
        for n, (h, p) in _HOST_PORT_VARS.items():
            e[h] = self.net.host(n)
            e[p] = str(self.ports[n])
        e["EDGE_PORT"] = str(self.ports[EDGE])
        # Each service's /metrics listener only where a test asks for it
        # (Stack.metrics): a port picked early may be taken by a parallel
        # test by the time the service binds it, and that is fatal.
        if name in self.metrics_ports:
            e["METRICS_PORT"] = str(self.metrics_ports[name]) if self.metrics else "-1"
        if extra:
            for k, v in extra.items():
                if v is None:
                    e.pop(k, None)
                else:
                    e[k] = str(v)
        return e

    def start_service(self, name, binary=None, extra_env=None, wait="serving",
                      timeout=None):
        """Starts estore-<name>; waits per `wait` ("serving", "listening",
        None). Raises RuntimeError with the log tail on failure."""
        if name in self.procs and self.procs[name].alive():
            raise RuntimeError("%s already running (pid %d)" % (name, self.procs[name].pid))
        path = binary or binary_path(name)
        if not path or not os.access(path, os.X_OK):
            raise RuntimeError("estore-%s: no executable at %r (build it first)" % (name, path))
        log = self._logpath(name)
        with open(log, "ab") as f:
            f.write(b"===== start %s =====\n" % time.strftime("%H:%M:%S").encode())
        proc = _Proc(self._spawn([path], log, env=self.env(name, extra_env), name=name), log)
        self.procs[name] = proc
        self.exit_codes.pop(name, None)
        if name in self.order:
            self.order.remove(name)
        self.order.append(name)
        self._drop_channel(name)
        if wait and name == EDGE:
            self.wait_http_ok("/healthz", timeout or self.SERVICE_START_TIMEOUT)
        elif wait:
            want = "SERVING" if wait == "serving" else None
            self.wait_health(name, want, timeout or self.SERVICE_START_TIMEOUT)
        return proc

    def edge_url(self, path=""):
        return "http://%s:%d%s" % (self.net.addr(EDGE), self.ports[EDGE], path)

    def wait_http_ok(self, path, timeout=20.0):
        """Bounded wait until GET `path` on the edge answers 200."""
        import http.client
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            p = self.procs.get(EDGE)
            if p is not None and not p.alive():
                raise RuntimeError("estore-edge exited with %s while starting:\n%s"
                                   % (p.popen.returncode, self.log_tail(EDGE)))
            try:
                c = http.client.HTTPConnection(self.net.addr(EDGE), self.ports[EDGE],
                                               timeout=1)
                c.request("GET", path)
                last = c.getresponse().status
                c.close()
                if last == 200:
                    return
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("estore-edge: GET %s gave %s after %.0f s:\n%s"
                           % (path, last, timeout, self.log_tail(EDGE)))

    def wait_health(self, name, want="SERVING", timeout=20.0):
        """Bounded wait until Check("") answers `want` (any answer when
        want is None). Raises RuntimeError with the log tail."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            p = self.procs.get(name)
            if p is not None and not p.alive():
                raise RuntimeError("estore-%s exited with %s while starting:\n%s"
                                   % (name, p.popen.returncode, self.log_tail(name)))
            last = self.health(name, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
            if last is not None and (want is None or last == want):
                return last
            time.sleep(0.05)
        raise RuntimeError("estore-%s: health %s, wanted %s after %.0f s:\n%s"
                           % (name, last, want or "any answer", timeout, self.log_tail(name)))

    def health(self, name, timeout=2.0, service=""):
        """Health status name, or None when the server did not answer."""
        import grpc
        h, hg = health_pb2(), health_pb2_grpc()
        # A fresh channel per probe: a cached one may sit in reconnect
        # backoff after the process restarted.
        with grpc.insecure_channel(self.target(name)) as ch:
            try:
                r = hg.HealthStub(ch).Check(h.HealthCheckRequest(service=service),
                                            timeout=timeout)
            except grpc.RpcError:
                return None
        return h.HealthCheckResponse.ServingStatus.Name(r.status)

    def stop_service(self, name, timeout=None):
        """SIGTERM to the service's PID, wait; SIGKILL and AssertionError
        when it ignores SIGTERM. Returns the exit status."""
        p = self.procs.get(name)
        if p is None:
            return None
        self._drop_channel(name)
        rc, killed = self._stop_proc(p, signal.SIGTERM, timeout or self.STOP_TIMEOUT)
        self.exit_codes[name] = rc
        if killed:
            raise AssertionError("estore-%s (pid %d) ignored SIGTERM:\n%s"
                                 % (name, p.pid, self.log_tail(name)))
        return rc

    def kill_service(self, name):
        p = self.procs.get(name)
        if p is not None:
            self._drop_channel(name)
            rc, _ = self._stop_proc(p, signal.SIGKILL, 10)
            self.exit_codes[name] = rc

    def restart_service(self, name, **kw):
        self.stop_service(name)
        return self.start_service(name, **kw)

    def assert_clean_exit(self, testcase, name):
        rc = self.stop_service(name)
        testcase.assertEqual(rc, 0, "estore-%s exited with %r:\n%s" % (name, rc, self.log_tail(name)))

    def service_alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.alive()

    def pid(self, name):
        return self.procs[name].pid

    def log(self, name):
        with open(self._logpath(name), "r", errors="replace") as f:
            return f.read()

    def log_tail(self, name, n=60):
        return _tail(self._logpath(name), n)

    def rss_kib(self, name):
        with open("/proc/%d/status" % self.pid(name)) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS for %s" % name)

    # -- gRPC --

    def channel(self, name):
        import grpc
        ch = self._channels.get(name)
        if ch is None:
            ch = grpc.insecure_channel(self.target(name), options=[
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
                ("grpc.enable_retries", 0),
            ])
            self._channels[name] = ch
        return ch

    def _drop_channel(self, name):
        ch = self._channels.pop(name, None)
        if ch is not None:
            ch.close()

    def stub(self, name):
        return getattr(pb2_grpc(name), _STUB_CLASSES[name])(self.channel(name))

    def service_token(self, service="auth", secret=None, timeout=10):
        t = pb2("token")
        r = self.stub("token").IssueServiceToken(
            t.IssueServiceTokenRequest(service=service, secret=secret or self.secret),
            timeout=timeout)
        return r.access_token

    def token_pair(self, account_id, roles=("customer",), timeout=10):
        t = pb2("token")
        return self.stub("token").IssueTokenPair(
            t.IssueTokenPairRequest(account_id=account_id, roles=list(roles)),
            metadata=bearer(self.service_token()), timeout=timeout)

    def register(self, email=None, password=None, display_name="Test User", timeout=20):
        a = pb2("auth")
        email = email or "user-%s@example.com" % secrets.token_hex(6)
        password = password or "pw-" + secrets.token_urlsafe(18)
        pair = self.stub("auth").Register(
            a.RegisterRequest(email=email, password=password, display_name=display_name),
            timeout=timeout)
        return pair, email, password


class StackTestCase(unittest.TestCase):
    """One Stack per test class, with SERVICES started in order. The class
    fails when a listed binary does not exist (never skipped); a test
    failure keeps the temp dir and prints the log tails."""

    SERVICES = SERVICE_ORDER
    SERVICE_ENV = {}
    METRICS = False     # serve each service's /metrics (Stack.metrics_ports)
    stack = None

    @classmethod
    def setUpClass(cls):
        missing = [n for n in cls.SERVICES if not have_binary(n)]
        if missing:
            raise RuntimeError("not built: " + ", ".join(binary_path(n) for n in missing))
        load_stubs()
        cls.stack = Stack().start()
        cls.stack.metrics = cls.METRICS
        try:
            for n in cls.SERVICES:
                cls.stack.start_service(n, extra_env=cls.SERVICE_ENV.get(n))
        except BaseException:
            cls.stack.failed = True
            cls.stack.close()
            raise

    @classmethod
    def tearDownClass(cls):
        st = cls.stack
        if st is None:
            return
        bad = []
        for n in reversed(st.order):
            if st.service_alive(n):
                try:
                    rc = st.stop_service(n)
                except AssertionError as e:
                    bad.append(str(e))
                    continue
                if rc != 0:
                    bad.append("estore-%s exited with %r:\n%s" % (n, rc, st.log_tail(n)))
        if bad:
            st.failed = True
        st.close()
        if bad:
            raise AssertionError("\n".join(bad))

    def run(self, result=None):
        # Remember failures so close() keeps the logs.
        r = super().run(result)
        res = result or r
        if res is not None and self.stack is not None and not res.wasSuccessful():
            self.stack.failed = True
        return r
