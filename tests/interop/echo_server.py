"""A python3-grpcio implementation of estore.testing.v1.Echo, the peer of
tests/interop/client_vs_python.c (our client channel against a stock
server).

    /usr/bin/python3 echo_server.py --proto-path REPO/proto [--port N]
        [--protoc protoc] [--grpc-python-plugin /usr/bin/grpc_python_plugin]

Generates the Python modules for echo.proto into a temporary folder (with
grpc_tools when installed, else protoc + grpc_python_plugin), listens on
127.0.0.1 (port 0 = the kernel picks), prints the bound port alone on a
line on stdout, and serves until SIGTERM/SIGINT or until killed.

Besides the behaviour echo.proto documents, it echoes request metadata
whose key starts with "x-": each entry comes back in the response headers
unchanged and in the trailers as "trailer-<key>", so a client can check
both directions of metadata, text and -bin alike.

Request metadata "x-want-deadline" adds a response header
"x-deadline-ms" with the time the server has left (from grpc-timeout), or
"none". The server allows 16 concurrent streams per connection, so a client
must queue calls beyond that (it sends SETTINGS_MAX_CONCURRENT_STREAMS and
refuses extra streams).

SIGUSR1 stops gracefully (GOAWAY, running calls get 5 s to finish, new
ones are refused), then exits.
"""

import argparse
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

ECHO_PROTO = "estore/testing/v1/echo.proto"
CODES = {c.value[0]: c for c in grpc.StatusCode}


def generate(args, out):
    """Writes the echo (and options) modules under out."""
    try:
        from grpc_tools import protoc as gt  # noqa: F401

        cmd = [sys.executable, "-m", "grpc_tools.protoc"]
    except ImportError:
        cmd = [
            args.protoc,
            "--plugin=protoc-gen-grpc_python=" + args.grpc_python_plugin,
        ]
    # The echo contract imports the access-rule option: generate that too.
    cmd += ["-I" + args.proto_path, "--python_out=" + out,
            "--grpc_python_out=" + out, ECHO_PROTO, "estore/api/v1/options.proto"]
    subprocess.run(cmd, check=True)


def sleep_unless_cancelled(context, ms):
    """Sleeps ms milliseconds, waking early when the call ends."""
    end = time.monotonic() + ms / 1000.0
    while context.is_active() and time.monotonic() < end:
        time.sleep(min(0.01, max(0.0, end - time.monotonic())))


def echo_metadata(context):
    md = [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-")]
    if any(k == "x-want-deadline" for k, _ in md):
        left = context.time_remaining()
        md.append(("x-deadline-ms", "none" if left is None else str(int(left * 1000))))
    if md:
        context.send_initial_metadata(md)
        context.set_trailing_metadata([("trailer-" + k, v) for k, v in md])


def finish(context, code, message):
    """Ends the call with a non-OK status when code is non-zero."""
    if code:
        context.set_code(CODES.get(code, grpc.StatusCode.UNKNOWN))
        context.set_details(message)
        return True
    return False


def make_servicer(pb2, pb2_grpc):
    class Echo(pb2_grpc.EchoServicer):
        def _reply(self, req, context, index=0):
            payload = b"x" * req.reply_bytes if req.reply_bytes > 0 else req.payload
            return pb2.EchoReply(message=req.message, payload=payload, index=index)

        def UnaryEcho(self, req, context):
            echo_metadata(context)
            if req.sleep_ms > 0:
                sleep_unless_cancelled(context, req.sleep_ms)
            if finish(context, req.status_code, req.status_message):
                return pb2.EchoReply()
            return self._reply(req, context)

        def ServerStream(self, req, context):
            echo_metadata(context)
            for i in range(req.count):
                if i and req.interval_ms > 0:
                    sleep_unless_cancelled(context, req.interval_ms)
                if not context.is_active():
                    return
                payload = b"x" * req.reply_bytes if req.reply_bytes > 0 else b""
                yield pb2.EchoReply(message=req.message, payload=payload, index=i)
            finish(context, req.status_code, req.status_message)

        def ClientStream(self, it, context):
            echo_metadata(context)
            parts = [r.message for r in it]
            return pb2.EchoReply(message="".join(parts), index=len(parts))

        def BidiStream(self, it, context):
            echo_metadata(context)
            for i, req in enumerate(it):
                if req.sleep_ms > 0:
                    sleep_unless_cancelled(context, req.sleep_ms)
                if finish(context, req.status_code, req.status_message):
                    return
                yield self._reply(req, context, i)

    return Echo()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--proto-path", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--protoc", default="protoc")
    p.add_argument("--grpc-python-plugin", default="/usr/bin/grpc_python_plugin")
    args = p.parse_args()

    gen = tempfile.mkdtemp(prefix="estore-echo-py-")
    try:
        generate(args, gen)
        sys.path.insert(0, gen)
        pb2 = importlib.import_module("estore.testing.v1.echo_pb2")
        pb2_grpc = importlib.import_module("estore.testing.v1.echo_pb2_grpc")
    finally:
        # Imported modules live in memory; the folder is no longer needed.
        shutil.rmtree(gen, ignore_errors=True)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64),
                         options=[("grpc.max_concurrent_streams", 16)])
    pb2_grpc.add_EchoServicer_to_server(make_servicer(pb2, pb2_grpc), server)
    port = server.add_insecure_port("127.0.0.1:%d" % args.port)
    if port == 0:
        sys.exit("echo_server: cannot bind 127.0.0.1:%d" % args.port)
    server.start()

    stop = threading.Event()
    grace = [0]

    def graceful(*_):
        grace[0] = 5
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, graceful)
    print(port, flush=True)
    # A timed wait lets the signal handler run promptly.
    while not stop.wait(0.1):
        pass
    server.stop(grace[0]).wait()


if __name__ == "__main__":
    main()
