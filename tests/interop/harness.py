"""Shared fixture of the interop tests: command line, generated stubs, and
an estore-echo process per test class on a port the kernel picks.

Each test program is run by ctest as

    /usr/bin/python3 test_X.py --echo PATH/estore-echo --protoc protoc \
        --grpc-python-plugin grpc_python_plugin \
        --proto-path REPO/proto --proto-path /usr/share/grpc-proto [unittest args]

Servers are stopped by their PID only (SIGTERM, then the exit status is
checked), never by name, and listen on 127.0.0.1 only.
"""

import argparse
import atexit
import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

# Filled by parse_args().
ARGS = None

# Files generated for the tests, beyond what their imports pull in.
_ECHO_PROTO = "estore/testing/v1/echo.proto"
_GRPC_PROTOS = [
    "grpc/health/v1/health.proto",
    "grpc/reflection/v1/reflection.proto",
    "grpc/reflection/v1alpha/reflection.proto",
]


def parse_args():
    """Takes our options off sys.argv; returns the rest for unittest.main."""
    global ARGS
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--echo", required=True, help="path of estore-echo")
    p.add_argument("--protoc", default="protoc")
    p.add_argument("--grpc-python-plugin", default="/usr/bin/grpc_python_plugin")
    p.add_argument("--proto-path", action="append", default=[])
    ARGS, rest = p.parse_known_args()
    if not os.access(ARGS.echo, os.X_OK):
        sys.exit("harness: --echo %s is not an executable" % ARGS.echo)
    if not ARGS.proto_path:
        ARGS.proto_path = ["proto", "/usr/share/grpc-proto"]
    return [sys.argv[0]] + rest


def main():
    """unittest.main with our options removed from the command line."""
    argv = parse_args()
    unittest.main(argv=argv, verbosity=2)


# ---- generated Python stubs ---------------------------------------------

_stub_dir = None


def _needed_files():
    """echo.proto and grpc's health/reflection protos plus everything they
    import, minus google/protobuf/* (shipped with python3-protobuf). Asking
    protoc for the import closure keeps this right when echo.proto grows
    imports."""
    from google.protobuf import descriptor_pb2

    out = os.path.join(_stub_dir, "closure.pb")
    cmd = [ARGS.protoc, "--include_imports", "--descriptor_set_out=" + out]
    cmd += ["-I" + d for d in ARGS.proto_path]
    cmd += [_ECHO_PROTO] + _GRPC_PROTOS
    subprocess.run(cmd, check=True)
    with open(out, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    os.unlink(out)
    return [fd.name for fd in fds.file if not fd.name.startswith("google/protobuf/")]


def load_stubs():
    """Generates *_pb2 / *_pb2_grpc modules into a temporary directory (once
    per process) and makes them importable. Returns that directory."""
    global _stub_dir
    if _stub_dir is not None:
        return _stub_dir
    import google.protobuf

    major_minor = tuple(int(x) for x in google.protobuf.__version__.split(".")[:2])
    # protoc 3.21 emits code for the _builder API, which python protobuf has
    # had since 3.20 (4.21 is the same release line as protoc 3.21).
    if major_minor < (3, 20):
        sys.exit("harness: python protobuf %s is too old for protoc 3.21 output"
                 % google.protobuf.__version__)
    if not os.access(ARGS.grpc_python_plugin, os.X_OK):
        sys.exit("harness: %s missing (Debian package protobuf-compiler-grpc)"
                 % ARGS.grpc_python_plugin)

    _stub_dir = tempfile.mkdtemp(prefix="estore-interop-stubs-")
    atexit.register(shutil.rmtree, _stub_dir, True)
    files = _needed_files()
    cmd = [ARGS.protoc,
           "--python_out=" + _stub_dir,
           "--grpc_python_out=" + _stub_dir,
           "--plugin=protoc-gen-grpc_python=" + ARGS.grpc_python_plugin]
    cmd += ["-I" + d for d in ARGS.proto_path]
    cmd += files
    subprocess.run(cmd, check=True)

    sys.path.insert(0, _stub_dir)
    # grpc/health/... and grpc/reflection/... land in the package `grpc`,
    # which is the installed grpcio: extend its search path rather than
    # shadow it. Same for `google` (google/api/... if ever imported).
    for top in ("grpc", "google"):
        extra = os.path.join(_stub_dir, top)
        if os.path.isdir(extra):
            pkg = importlib.import_module(top)
            if extra not in list(pkg.__path__):
                pkg.__path__.append(extra)
    return _stub_dir


# ---- the server process ---------------------------------------------------

_LISTEN_RE = re.compile(r"^listening on 127\.0\.0\.1:(\d+)$", re.M)


class EchoServer:
    """One estore-echo process listening on 127.0.0.1:0.

        with EchoServer("--workers", "2") as srv:
            grpc.insecure_channel(srv.target)

    stdout (JSON log lines plus the "listening on" line) and stderr go to
    files, not pipes: a server that logs a lot must never block on a pipe
    nobody reads."""

    START_TIMEOUT = 15.0

    def __init__(self, *extra_args):
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self._dir = None

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        self._dir = tempfile.mkdtemp(prefix="estore-echo-")
        self.stdout_path = os.path.join(self._dir, "stdout")
        self.stderr_path = os.path.join(self._dir, "stderr")
        cmd = [ARGS.echo, "--listen", "127.0.0.1:0"] + self.extra_args
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            m = _LISTEN_RE.search(self.stdout())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                why = "exited with %d before listening" % self.proc.returncode
                break
            time.sleep(0.02)
        else:
            why = "printed no 'listening on' line in %.0f s" % self.START_TIMEOUT
        out = self.output()
        self.cleanup()
        raise RuntimeError("estore-echo %s:\n%s" % (why, out))

    def stdout(self):
        with open(self.stdout_path, "r", errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.stderr_path, "r", errors="replace") as f:
            return f.read()

    def output(self):
        """Both streams, tail only: for assertion messages."""
        return "--- stdout ---\n%s\n--- stderr ---\n%s" % (
            self.stdout()[-4000:], self.stderr()[-4000:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        """Resident set size from /proc/PID/status (VmRSS), in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS for pid %d" % self.proc.pid)

    def terminate(self):
        """Sends SIGTERM to our own process (by PID) without waiting."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout=20.0):
        """SIGTERM, wait; returns the exit status. A server that does not
        exit in time is killed (SIGKILL) and reported."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("estore-echo (pid %d) ignored SIGTERM for %.0f s"
                                     % (self.proc.pid, timeout))
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if self._dir:
            shutil.rmtree(self._dir, True)
            self._dir = None

    def stop_and_check(self, testcase):
        """Stops the server and asserts a clean exit (status 0)."""
        try:
            rc = self.stop()
            testcase.assertEqual(rc, 0, "estore-echo exited with %r\n%s" % (rc, self.output()))
        finally:
            self.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            rc = self.stop()
            out = self.output()
            self.cleanup()
            if rc != 0:
                raise AssertionError("estore-echo exited with %r\n%s" % (rc, out))
        else:
            self.cleanup()
        return False


class ServerTestCase(unittest.TestCase):
    """A test class sharing one server (started with SERVER_ARGS); its exit
    status is checked after the last test."""

    SERVER_ARGS = ()

    @classmethod
    def setUpClass(cls):
        load_stubs()
        cls.server = EchoServer(*cls.SERVER_ARGS).start()

    @classmethod
    def tearDownClass(cls):
        srv = cls.server
        try:
            rc = srv.stop()
            if rc != 0:
                raise AssertionError("estore-echo exited with %r\n%s" % (rc, srv.output()))
        finally:
            srv.cleanup()

    def assertServerAlive(self, srv=None):
        srv = srv or self.server
        self.assertTrue(srv.alive(), "estore-echo died:\n%s" % srv.output())
