#!/usr/bin/env python3
"""The edge's HTTP server (edge-proxy/http.h) from the outside.

Starts edge-http-echo on a port the kernel picks and talks to it with
http.client, raw sockets (pipelining, chunking, slow clients, malformed
requests), curl --http2-prior-knowledge and, when installed, python3-h2.
Every server must exit 0 at the end, so a sanitizer report fails the test.

    test_http.py --server PATH/edge-http-echo [unittest args]
"""
import argparse
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    HAVE_H2 = True
except ImportError:
    HAVE_H2 = False

SERVER = None
LIMITS = ["--max-body", "1024", "--max-header", "1024",
          "--header-timeout-ms", "300", "--body-timeout-ms", "300",
          "--idle-timeout-ms", "500"]
IO_TIMEOUT = 5


def curl_version():
    """(major, minor) and whether it speaks HTTP/2; (0, 0), False without curl."""
    curl = shutil.which("curl")
    if not curl:
        return (0, 0), False
    out = subprocess.run([curl, "-V"], capture_output=True, text=True,
                         timeout=10).stdout
    try:
        major, minor = out.split()[1].split(".")[:2]
        version = (int(major), int(minor))
    except (IndexError, ValueError):
        version = (0, 0)
    return version, "HTTP2" in out


CURL_VERSION, HAVE_CURL_H2 = curl_version()


class Echo:
    """One edge-http-echo process; stop() returns its exit status."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen([SERVER, *flags], stdout=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening on 127.0.0.1:"):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("edge-http-echo did not start: %r" % line)
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "hung"
        finally:
            self.proc.stdout.close()

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT)
        s.settimeout(IO_TIMEOUT)
        return s


def read_response(f, head=False):
    """(status, headers, body) of one HTTP/1.1 response from a binary file
    object, or None at EOF."""
    line = f.readline()
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        h = f.readline().decode("latin-1").rstrip("\r\n")
        if not h:
            break
        name, _, value = h.partition(":")
        headers[name.strip().lower()] = value.strip()
    n = 0 if head or status in (100, 204, 304) else int(headers.get("content-length", 0))
    body = f.read(n) if n else b""
    return status, headers, body


def closed(sock, within=IO_TIMEOUT):
    """True when the peer closes within `within` seconds (data is drained)."""
    sock.settimeout(within)
    end = time.monotonic() + within
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def request_bytes(method="GET", path="/", headers=(), body=b"", version="1.1"):
    lines = ["%s %s HTTP/%s" % (method, path, version), "Host: test"]
    lines += ["%s: %s" % h for h in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Http1(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.echo = Echo(*LIMITS)

    @classmethod
    def tearDownClass(cls):
        rc = cls.echo.stop()
        if rc != 0:
            raise AssertionError("edge-http-echo exited with %r" % rc)

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.echo.port,
                                          timeout=IO_TIMEOUT)

    def exchange(self, data, head=False):
        with self.echo.connect() as s:
            s.sendall(data)
            return read_response(s.makefile("rb"), head)

    def test_get(self):
        c = self.conn()
        c.request("GET", "/a/b%20c?x=1&y", headers={"X-Test": "hi"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.reason, "OK")
        self.assertTrue(r.getheader("date"))
        j = json.loads(r.read())
        self.assertEqual(j["method"], "GET")
        self.assertEqual(j["path"], "/a/b%20c")
        self.assertEqual(j["query"], "x=1&y")
        self.assertEqual(j["version"], 11)
        self.assertEqual(j["headers"]["x-test"], "hi")
        self.assertTrue(j["peer"].startswith("127.0.0.1:"))
        c.close()

    def test_post_body(self):
        c = self.conn()
        c.request("POST", "/p", body=b'{"a":1}',
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        j = json.loads(r.read())
        self.assertEqual(r.status, 200)
        self.assertEqual(j["body"], '{"a":1}')
        self.assertIsNone(j["query"])
        c.close()

    def test_status(self):
        c = self.conn()
        c.request("GET", "/status/404")
        r = c.getresponse()
        r.read()
        self.assertEqual((r.status, r.reason), (404, "Not Found"))
        c.close()

    def test_keep_alive_reuses_the_connection(self):
        c = self.conn()
        peers = set()
        for i in range(4):
            c.request("GET", "/n%d" % i)
            r = c.getresponse()
            j = json.loads(r.read())
            self.assertEqual(j["path"], "/n%d" % i)
            peers.add(j["peer"])
        self.assertEqual(len(peers), 1)
        c.close()

    def test_pipelining_answers_in_order(self):
        with self.echo.connect() as s:
            # The slow one is answered last by its handler, first on the wire.
            s.sendall(request_bytes(path="/slow?ms=200") +
                      request_bytes(path="/fast") +
                      request_bytes(method="POST", path="/third",
                                    headers=[("Content-Length", "3")], body=b"abc"))
            f = s.makefile("rb")
            paths = [json.loads(read_response(f)[2])["path"] for _ in range(3)]
        self.assertEqual(paths, ["/slow", "/fast", "/third"])

    def test_chunked_body(self):
        body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        status, _, b = self.exchange(request_bytes(
            "POST", "/c", [("Transfer-Encoding", "chunked")], body))
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(b)["body"], "hello world")

    def test_expect_100_continue(self):
        with self.echo.connect() as s:
            s.sendall(request_bytes("POST", "/e", [("Content-Length", "5"),
                                                   ("Expect", "100-continue")]))
            f = s.makefile("rb")
            status, _, _ = read_response(f)
            self.assertEqual(status, 100)
            s.sendall(b"hello")
            status, _, b = read_response(f)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(b)["body"], "hello")

    def test_expect_with_body_too_large_gets_413_first(self):
        with self.echo.connect() as s:
            s.sendall(request_bytes("POST", "/e", [("Content-Length", "5000"),
                                                   ("Expect", "100-continue")]))
            status, h, _ = read_response(s.makefile("rb"))
            self.assertEqual(status, 413)
            self.assertEqual(h.get("connection"), "close")

    def test_head_has_no_body(self):
        with self.echo.connect() as s:
            s.sendall(request_bytes("HEAD", "/h") + request_bytes("GET", "/after"))
            f = s.makefile("rb")
            status, h, body = read_response(f, head=True)
            self.assertEqual(status, 200)
            self.assertGreater(int(h["content-length"]), 0)
            self.assertEqual(body, b"")
            # Had a body been sent, this would read it as a status line.
            status, _, b = read_response(f)
            self.assertEqual(json.loads(b)["path"], "/after")

    def test_connection_close(self):
        with self.echo.connect() as s:
            s.sendall(request_bytes(headers=[("Connection", "close")]))
            status, h, _ = read_response(s.makefile("rb"))
            self.assertEqual(status, 200)
            self.assertEqual(h.get("connection"), "close")
            self.assertTrue(closed(s))

    def test_http10(self):
        with self.echo.connect() as s:
            s.sendall(request_bytes(version="1.0"))
            status, h, b = read_response(s.makefile("rb"))
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(b)["version"], 11)
            self.assertTrue(closed(s))
        with self.echo.connect() as s:
            f = s.makefile("rb")
            for _ in range(2):
                s.sendall(request_bytes(version="1.0",
                                        headers=[("Connection", "keep-alive")]))
                status, h, _ = read_response(f)
                self.assertEqual(status, 200)
                self.assertEqual(h.get("connection"), "keep-alive")

    def test_431_header_too_large(self):
        with self.echo.connect() as s:
            s.sendall(request_bytes(headers=[("X-Big", "a" * 2000)]))
            status, h, b = read_response(s.makefile("rb"))
            self.assertEqual(status, 431)
            self.assertEqual(json.loads(b)["code"], 8)
            self.assertEqual(h.get("connection"), "close")
            self.assertTrue(closed(s))

    def test_413_by_content_length(self):
        status, _, b = self.exchange(request_bytes(
            "POST", "/", [("Content-Length", "2000")], b"x" * 2000))
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(b)["message"], "request body too large")

    def test_413_chunked_growing(self):
        chunk = b"258\r\n" + b"x" * 600 + b"\r\n"
        status, _, _ = self.exchange(request_bytes(
            "POST", "/", [("Transfer-Encoding", "chunked")], chunk * 2))
        self.assertEqual(status, 413)

    def test_body_at_the_limit_is_accepted(self):
        status, _, b = self.exchange(request_bytes(
            "POST", "/", [("Content-Length", "1024")], b"y" * 1024))
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(b)["body_len"], 1024)

    def test_408_slow_headers(self):
        with self.echo.connect() as s:
            s.sendall(b"GET /sl")
            t0 = time.monotonic()
            status, h, _ = read_response(s.makefile("rb"))
            self.assertEqual(status, 408)
            self.assertLess(time.monotonic() - t0, 3)
            self.assertTrue(closed(s))

    def test_408_slow_body(self):
        with self.echo.connect() as s:
            s.sendall(request_bytes("POST", "/", [("Content-Length", "10")], b"abc"))
            status, _, _ = read_response(s.makefile("rb"))
            self.assertEqual(status, 408)
            self.assertTrue(closed(s))

    def test_400_malformed(self):
        for bad in (b"GARBAGE\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
                    request_bytes("POST", "/", [("Content-Length", "3"),
                                                ("Content-Length", "4")], b"abcd"),
                    request_bytes("POST", "/", [("Content-Length", "3"),
                                                ("Transfer-Encoding", "chunked")],
                                  b"0\r\n\r\n"),
                    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
                    b"\r\n\r\nzz\r\n"):
            with self.subTest(bad=bad[:40]), self.echo.connect() as s:
                s.sendall(bad)
                status, h, _ = read_response(s.makefile("rb"))
                self.assertEqual(status, 400)
                self.assertEqual(h.get("connection"), "close")
                self.assertTrue(closed(s))

    def test_idle_keep_alive_closes(self):
        with self.echo.connect() as s:
            s.sendall(request_bytes())
            self.assertEqual(read_response(s.makefile("rb"))[0], 200)
            t0 = time.monotonic()
            self.assertTrue(closed(s, within=3))
            self.assertGreater(time.monotonic() - t0, 0.3)

    def test_respond_after_client_left(self):
        for _ in range(3):
            with self.echo.connect() as s:
                s.sendall(request_bytes(path="/slow?ms=150"))
        time.sleep(0.4)  # the handlers answer a connection that is gone
        c = self.conn()
        c.request("GET", "/still-here")
        self.assertEqual(c.getresponse().status, 200)
        c.close()


class Limits(unittest.TestCase):
    """Servers of their own: counts and shutdown."""

    def test_max_connections(self):
        echo = Echo("--max-connections", "2")
        try:
            held = [echo.connect() for _ in range(2)]
            for s in held:  # attached and counted
                s.sendall(request_bytes())
                self.assertEqual(read_response(s.makefile("rb"))[0], 200)
            with echo.connect() as s:
                r = read_response(s.makefile("rb"))
                self.assertTrue(r is None or r[0] == 503, r)
            held.pop().close()
            ok = False
            for _ in range(50):  # the close is counted asynchronously
                with echo.connect() as s:
                    s.sendall(request_bytes())
                    try:
                        r = read_response(s.makefile("rb"))
                    except ConnectionResetError:
                        r = None
                    if r and r[0] == 200:
                        ok = True
                        break
                time.sleep(0.05)
            self.assertTrue(ok)
            for s in held:
                s.close()
        finally:
            self.assertEqual(echo.stop(), 0)

    def test_sigterm_drains_in_flight(self):
        echo = Echo("--drain-ms", "5000")
        result = {}

        def slow():
            c = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=10)
            c.request("GET", "/slow?ms=600")
            r = c.getresponse()
            result["status"] = r.status
            result["body"] = json.loads(r.read())
            result["connection"] = r.getheader("connection")

        idle = echo.connect()
        idle.sendall(request_bytes())
        self.assertEqual(read_response(idle.makefile("rb"))[0], 200)
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        echo.proc.send_signal(signal.SIGTERM)
        # The idle keep-alive connection is closed at once.
        self.assertTrue(closed(idle, within=2))
        idle.close()
        t.join(10)
        self.assertEqual(result.get("status"), 200)
        self.assertFalse(result["body"]["cancelled"])
        self.assertEqual(result["connection"], "close")
        self.assertEqual(echo.stop(), 0)
        self.assertLess(time.monotonic() - t0, 5)


class Tls(unittest.TestCase):
    """TLS on the same port as cleartext: HTTP/1.1 and h2 (ALPN) through
    Python's ssl, python3-h2 and curl; a broken handshake costs only its
    connection; tls_required closes cleartext ones."""

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.dir = tempfile.mkdtemp(prefix="estore-tls-")
        cls.cert = os.path.join(cls.dir, "cert.pem")
        cls.key = os.path.join(cls.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", cls.key, "-out", cls.cert, "-days", "2",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=30)
        cls.echo = Echo("--tls-cert", cls.cert, "--tls-key", cls.key,
                        "--max-body", str(4 << 20))

    @classmethod
    def tearDownClass(cls):
        rc = cls.echo.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        if rc != 0:
            raise AssertionError("edge-http-echo exited with %r" % rc)

    def context(self, alpn):
        import ssl
        ctx = ssl.create_default_context(cafile=self.cert)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def https(self, alpn=("http/1.1",), port=None):
        return http.client.HTTPSConnection("127.0.0.1", port or self.echo.port,
                                           timeout=IO_TIMEOUT,
                                           context=self.context(list(alpn) if alpn else None))

    def test_http1_keep_alive_over_tls(self):
        c = self.https()
        for i in range(3):
            c.request("GET", "/t?i=%d" % i)
            r = c.getresponse()
            j = json.loads(r.read())
            self.assertEqual(r.status, 200)
            self.assertEqual((j["query"], j["version"], j["tls"]), ("i=%d" % i, 11, True))
        self.assertEqual(c.sock.selected_alpn_protocol(), "http/1.1")
        c.close()

    def test_without_alpn(self):
        c = self.https(alpn=None)
        c.request("GET", "/plain-tls")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIsNone(c.sock.selected_alpn_protocol())
        c.close()

    def test_big_bodies_cross_many_records(self):
        body = os.urandom(1 << 20).hex().encode()[: 3 << 20]
        c = self.https()
        c.request("POST", "/big", body=body)
        r = c.getresponse()
        j = json.loads(r.read())
        self.assertEqual(r.status, 200)
        self.assertEqual(j["body_len"], len(body))
        self.assertEqual(j["body"], body.decode())
        c.close()

    def test_cleartext_beside_tls(self):
        c = http.client.HTTPConnection("127.0.0.1", self.echo.port, timeout=IO_TIMEOUT)
        c.request("GET", "/clear")
        j = json.loads(c.getresponse().read())
        self.assertEqual((j["version"], j["tls"]), (11, False))
        c.close()

    @unittest.skipUnless(HAVE_H2, "python3-h2 not installed")
    def test_h2_by_alpn(self):
        sock = self.context(["h2", "http/1.1"]).wrap_socket(
            socket.create_connection(("127.0.0.1", self.echo.port), timeout=IO_TIMEOUT),
            server_hostname="localhost")
        self.assertEqual(sock.selected_alpn_protocol(), "h2")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        streams = {}
        for i in range(4):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":path", "/s%d" % i),
                                    (":scheme", "https"), (":authority", "localhost")],
                              end_stream=True)
            streams[sid] = b""
        sock.sendall(conn.data_to_send())
        done, status = set(), {}
        deadline = time.monotonic() + IO_TIMEOUT
        while len(done) < len(streams) and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status[ev.stream_id] = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    done.add(ev.stream_id)
            sock.sendall(conn.data_to_send())
        sock.close()
        self.assertEqual(len(done), 4)
        for sid, body in streams.items():
            j = json.loads(body)
            self.assertEqual(status[sid], b"200")
            self.assertEqual((j["version"], j["tls"]), (20, True))

    @unittest.skipUnless(HAVE_CURL_H2, "curl with HTTP/2 is needed")
    def test_curl_negotiates_h2(self):
        p = subprocess.run(["curl", "-s", "--cacert", self.cert, "--http2",
                            "-w", "\n%{http_code} %{http_version}",
                            "https://127.0.0.1:%d/curl" % self.echo.port],
                           capture_output=True, timeout=20)
        body, _, tail = p.stdout.rpartition(b"\n")
        self.assertEqual(tail.decode(), "200 2")
        self.assertTrue(json.loads(body)["tls"])

    def test_broken_handshake_costs_only_its_connection(self):
        s = socket.create_connection(("127.0.0.1", self.echo.port), timeout=IO_TIMEOUT)
        # A handshake record header, then nonsense.
        s.sendall(b"\x16\x03\x01\x00\x20" + b"\x00" * 32)
        self.assertTrue(closed(s))
        s.close()
        s = socket.create_connection(("127.0.0.1", self.echo.port), timeout=IO_TIMEOUT)
        s.sendall(b"\x16\x03")     # and a client that stops mid-record
        s.close()
        c = self.https()
        c.request("GET", "/after")
        self.assertEqual(c.getresponse().status, 200)
        c.close()

    def test_tls_required_closes_cleartext(self):
        echo = Echo("--tls-cert", self.cert, "--tls-key", self.key, "--tls-required", "1")
        try:
            s = socket.create_connection(("127.0.0.1", echo.port), timeout=IO_TIMEOUT)
            s.sendall(request_bytes("GET", "/clear"))
            self.assertTrue(closed(s))
            s.close()
            c = self.https(port=echo.port)
            c.request("GET", "/secure")
            self.assertEqual(c.getresponse().status, 200)
            c.close()
        finally:
            self.assertEqual(echo.stop(), 0)

    def test_bad_certificate_configuration_is_refused(self):
        for flags, want in (
                (["--tls-cert", self.cert], b"certificate needs its key"),
                (["--tls-cert", self.cert, "--tls-key", self.cert], b"cannot use the key"),
                (["--tls-cert", os.path.join(self.dir, "none.pem"), "--tls-key", self.key],
                 b"cannot use the certificate"),
                (["--tls-required", "1"], b"TLS required without a certificate")):
            p = subprocess.run([SERVER, *flags], capture_output=True, timeout=20)
            self.assertEqual(p.returncode, 1, flags)
            self.assertIn(want, p.stderr, flags)


def curl(*args, timeout=20):
    p = subprocess.run(["curl", "-s", "--http2-prior-knowledge", *args],
                       capture_output=True, timeout=timeout)
    return p.stdout


class Http2Curl(unittest.TestCase):
    # Concurrent streams on one connection are Http2Raw's: Debian 12's curl
    # (7.88) cannot reuse a prior-knowledge connection (curl issue 10634).
    @classmethod
    def setUpClass(cls):
        if not HAVE_CURL_H2:
            raise RuntimeError("curl with HTTP/2 is needed (Debian package curl)")
        cls.echo = Echo(*LIMITS)
        cls.base = "http://127.0.0.1:%d" % cls.echo.port

    @classmethod
    def tearDownClass(cls):
        rc = cls.echo.stop()
        if rc != 0:
            raise AssertionError("edge-http-echo exited with %r" % rc)

    def fetch(self, *args):
        out = curl("-w", "\n%{http_code} %{http_version}", *args)
        body, _, tail = out.rpartition(b"\n")
        code, version = tail.decode().split()
        return int(code), version, body

    def test_get(self):
        code, version, body = self.fetch(self.base + "/g?x=1", "-H", "X-Test: yes")
        self.assertEqual((code, version), (200, "2"))
        j = json.loads(body)
        self.assertEqual((j["method"], j["path"], j["query"], j["version"]),
                         ("GET", "/g", "x=1", 20))
        self.assertEqual(j["headers"]["x-test"], "yes")
        self.assertEqual(j["headers"]["host"], "127.0.0.1:%d" % self.echo.port)

    def test_post(self):
        code, _, body = self.fetch(self.base + "/p", "--data-binary", "h2 body")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["body"], "h2 body")

    def test_head(self):
        out = curl("-I", self.base + "/h")
        self.assertTrue(out.startswith(b"HTTP/2 200"), out)
        self.assertIn(b"content-length:", out)

    def test_status(self):
        code, _, _ = self.fetch(self.base + "/status/503")
        self.assertEqual(code, 503)

    def test_413_body_too_large(self):
        code, _, body = self.fetch(self.base + "/p", "--data-binary", "z" * 3000)
        self.assertEqual(code, 413)
        self.assertEqual(json.loads(body)["code"], 8)

    def test_431_header_too_large(self):
        code, _, _ = self.fetch(self.base + "/", "-H", "X-Big: " + "b" * 2000)
        self.assertEqual(code, 431)
        # The connection-level state is fine: the next request works.
        self.assertEqual(self.fetch(self.base + "/ok")[0], 200)


class Http2Raw(unittest.TestCase):
    def setUp(self):
        if not HAVE_H2:
            raise RuntimeError("python3-h2 is needed (Debian package python3-h2)")
        # Idle longer than the pauses below: those are not idle tests.
        self.echo = Echo(*LIMITS, "--idle-timeout-ms", "5000")

    def tearDown(self):
        self.assertEqual(self.echo.stop(), 0)

    def h2conn(self):
        s = self.echo.connect()
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        s.sendall(conn.data_to_send())
        return s, conn

    def request(self, conn, sid, path, end=True):
        conn.send_headers(sid, [(":method", "GET"), (":path", path),
                                (":scheme", "http"), (":authority", "test")],
                          end_stream=end)

    def wait_for(self, s, conn, sid):
        """Status and body of stream sid; other streams' events are kept
        for later calls."""
        got = self.__dict__.setdefault("streams", {})
        deadline = time.monotonic() + IO_TIMEOUT
        while not got.get(sid, {}).get("ended") and time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                st = got.setdefault(getattr(ev, "stream_id", 0),
                                    {"status": None, "body": b""})
                if isinstance(ev, h2.events.ResponseReceived):
                    st["status"] = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length,
                                                   ev.stream_id)
                    st["body"] += ev.data
                elif isinstance(ev, h2.events.StreamEnded):
                    st["ended"] = True
            s.sendall(conn.data_to_send())
        st = got.get(sid, {})
        if not st.get("ended"):
            self.fail("no response on stream %d" % sid)
        return st["status"], st["body"]

    def test_settings(self):
        s, conn = self.h2conn()
        with s:
            deadline = time.monotonic() + IO_TIMEOUT
            while time.monotonic() < deadline:
                evs = conn.receive_data(s.recv(65536))
                got = [e for e in evs if isinstance(e, h2.events.RemoteSettingsChanged)]
                if got:
                    ch = got[0].changed_settings
                    self.assertEqual(ch[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]
                                     .new_value, 100)
                    self.assertGreaterEqual(
                        ch[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE].new_value, 1024)
                    return
            self.fail("no SETTINGS")

    def test_concurrent_streams(self):
        s, conn = self.h2conn()
        with s:
            t0 = time.monotonic()
            for sid in (1, 3, 5, 7, 9):
                self.request(conn, sid, "/slow?ms=400&s=%d" % sid)
            s.sendall(conn.data_to_send())
            for sid in (9, 7, 5, 3, 1):
                status, body = self.wait_for(s, conn, sid)
                self.assertEqual(status, 200)
                self.assertEqual(json.loads(body)["query"], "ms=400&s=%d" % sid)
            self.assertLess(time.monotonic() - t0, 1.9)

    def test_client_reset_while_slow(self):
        s, conn = self.h2conn()
        with s:
            self.request(conn, 1, "/slow?ms=300")
            s.sendall(conn.data_to_send())
            time.sleep(0.05)
            conn.reset_stream(1)
            s.sendall(conn.data_to_send())
            time.sleep(0.5)  # the handler answers a reset stream
            self.request(conn, 3, "/after")
            s.sendall(conn.data_to_send())
            status, body = self.wait_for(s, conn, 3)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["path"], "/after")

    def test_disconnect_while_slow(self):
        s, conn = self.h2conn()
        self.request(conn, 1, "/slow?ms=200")
        s.sendall(conn.data_to_send())
        time.sleep(0.05)
        s.close()
        time.sleep(0.4)
        s, conn = self.h2conn()
        with s:
            self.request(conn, 1, "/again")
            s.sendall(conn.data_to_send())
            self.assertEqual(self.wait_for(s, conn, 1)[0], 200)

    def test_408_slow_body(self):
        s, conn = self.h2conn()
        with s:
            conn.send_headers(1, [(":method", "POST"), (":path", "/"),
                                  (":scheme", "http"), (":authority", "t")])
            conn.send_data(1, b"abc")
            s.sendall(conn.data_to_send())
            self.assertEqual(self.wait_for(s, conn, 1)[0], 408)


def main():
    global SERVER
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    args, rest = ap.parse_known_args()
    SERVER = os.path.abspath(args.server)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
