"""Hostile and broken peers against estore-echo, over raw sockets: bad
prefaces, truncated frames, rapid reset, CONTINUATION / SETTINGS / PING
floods, oversized header lists, wrong content-type, slow clients, and
SIGTERM with a call in flight. The server must answer as HTTP/2 says, keep
its memory bounded, keep serving other clients, and exit 0.

Frames are built by hand (a dozen lines below) so the test can send what
no well-behaved HTTP/2 library would; header blocks use python3-hpack.
"""

import base64
import os
import socket
import struct
import threading
import time
import unittest

import harness

if __name__ == "__main__":
    _argv = harness.parse_args()
    harness.load_stubs()

import grpc  # noqa: E402
import hpack  # noqa: E402

from estore.testing.v1 import echo_pb2, echo_pb2_grpc  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT = 0, 1, 2, 3, 4
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 6, 7, 8, 9
ENHANCE_YOUR_CALM = 0xB

MiB = 1024 * 1024
UNARY = "/estore.testing.v1.Echo/UnaryEcho"


def frame(ftype, flags, stream_id, payload=b""):
    return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags])
            + struct.pack(">I", stream_id & 0x7FFFFFFF) + payload)


def grpc_message(msg):
    body = msg.SerializeToString()
    return b"\x00" + struct.pack(">I", len(body)) + body


class Closed(Exception):
    """The server closed (or reset) the connection."""


class RawConn:
    """A hand-driven HTTP/2 client connection."""

    def __init__(self, port=None, timeout=10.0, rcvbuf=None, sock=None):
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:
                # Set before connect so the window is small from the start.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", port))
        self.sock = sock
        self.send_timeout = timeout
        self.buf = b""
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.next_stream = 1
        self.goaway = None  # error code of the first GOAWAY seen

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.settimeout(self.send_timeout)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(str(e))

    def handshake(self):
        """Preface, empty SETTINGS, and an ACK of the server's SETTINGS."""
        self.send(PREFACE + frame(SETTINGS, 0, 0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            f = self.read_frame(deadline - time.monotonic())
            if f[0] == SETTINGS and not f[1] & ACK:
                self.send(frame(SETTINGS, ACK, 0))
                return f
        raise AssertionError("no SETTINGS from the server")

    def _fill(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no frame within %.1f s" % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise Closed(str(e))
            if not chunk:
                raise Closed("EOF")
            self.buf += chunk

    def read_frame(self, timeout=5.0):
        """(type, flags, stream, payload); raises Closed or socket.timeout."""
        self._fill(9, timeout)
        length = int.from_bytes(self.buf[:3], "big")
        self._fill(9 + length, timeout)
        ftype, flags = self.buf[3], self.buf[4]
        sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload = self.buf[9:9 + length]
        self.buf = self.buf[9 + length:]
        if ftype == GOAWAY and self.goaway is None:
            self.goaway = int.from_bytes(payload[4:8], "big")
        return ftype, flags, sid, payload

    def decode_headers(self, payload, flags):
        """Header list of a HEADERS payload (no CONTINUATION from us)."""
        if flags & 0x8:  # PADDED
            pad = payload[0]
            payload = payload[1:len(payload) - pad]
        if flags & 0x20:  # PRIORITY
            payload = payload[5:]
        return dict(self.decoder.decode(payload))

    def request_headers(self, path=UNARY, content_type="application/grpc", extra=()):
        return self.encoder.encode(
            [(":method", "POST"), (":scheme", "http"), (":path", path),
             (":authority", "localhost"), ("content-type", content_type),
             ("te", "trailers")] + list(extra))

    def new_stream(self):
        sid = self.next_stream
        self.next_stream += 2
        return sid

    def unary(self, msg, timeout=10.0, **kw):
        """A whole unary call; returns (response headers, trailers or None,
        rst error code or None) for the stream."""
        sid = self.new_stream()
        self.send(frame(HEADERS, END_HEADERS, sid, self.request_headers(**kw))
                  + frame(DATA, END_STREAM, sid, grpc_message(msg)))
        return self.wait_stream(sid, timeout)

    def wait_stream(self, sid, timeout=10.0):
        headers = trailers = rst = None
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise socket.timeout("stream %d not finished within %.1f s" % (sid, timeout))
            ftype, flags, fsid, payload = self.read_frame(deadline - time.monotonic())
            if ftype == SETTINGS and not flags & ACK:
                self.send(frame(SETTINGS, ACK, 0))
            elif ftype == PING and not flags & ACK:
                self.send(frame(PING, ACK, 0, payload))
            elif ftype == GOAWAY:
                raise Closed("GOAWAY %d" % self.goaway)
            elif fsid == sid and ftype == HEADERS:
                h = self.decode_headers(payload, flags)
                if headers is None:
                    headers = h
                else:
                    trailers = h
                if flags & END_STREAM:
                    if trailers is None:
                        trailers = h  # trailers-only response
                    return headers, trailers, rst
            elif fsid == sid and ftype == DATA and flags & END_STREAM:
                return headers, trailers, rst
            elif fsid == sid and ftype == RST_STREAM:
                rst = int.from_bytes(payload[:4], "big")
                return headers, trailers, rst

    def wait_closed(self, timeout):
        """Reads (and discards) until the server closes; returns the seconds
        it took. Raises AssertionError if still open after `timeout`."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("connection still open after %.1f s" % timeout)
                try:
                    self.read_frame(left)
                except socket.timeout:
                    raise AssertionError("connection still open after %.1f s" % timeout)
        except Closed:
            return time.monotonic() - t0


class Sampler(threading.Thread):
    """Samples the server's RSS every 50 ms; .peak in KiB."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.peak = server.rss_kib()
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.wait(0.05):
            try:
                self.peak = max(self.peak, self.server.rss_kib())
            except (OSError, RuntimeError):
                return

    def stop(self):
        self.stop_event.set()
        self.join(5)
        try:
            self.peak = max(self.peak, self.server.rss_kib())
        except (OSError, RuntimeError):
            pass  # the server died: the caller's liveness check says so
        return self.peak


class Bystander(threading.Thread):
    """A normal grpc client calling the server while it is under attack:
    every call must succeed, promptly."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target = target
        self.stop_event = threading.Event()
        self.ok = 0
        self.errors = []

    def run(self):
        with grpc.insecure_channel(self.target) as ch:
            stub = echo_pb2_grpc.EchoStub(ch)
            while not self.stop_event.is_set() and len(self.errors) < 5:
                try:
                    r = stub.UnaryEcho(echo_pb2.EchoRequest(message="bystander"), timeout=5)
                    assert r.message == "bystander"
                    self.ok += 1
                except Exception as e:  # noqa: BLE001 - reported below
                    self.errors.append(repr(e))
                self.stop_event.wait(0.02)

    def stop(self):
        self.stop_event.set()
        self.join(15)


def grpc_call_works(target, message="still here"):
    with grpc.insecure_channel(target) as ch:
        reply = echo_pb2_grpc.EchoStub(ch).UnaryEcho(echo_pb2.EchoRequest(message=message),
                                                     timeout=10)
        return reply.message == message


class RobustnessTestCase(harness.ServerTestCase):
    # RSS growth allowed during one attack (the server idles at a few MiB;
    # AddressSanitizer's quarantine needs headroom). It catches gross
    # buffering; the main check is that the server cuts the flood off.
    RSS_SLACK_KIB = 64 * 1024

    def tearDown(self):
        self.assertServerAlive()
        self.assertTrue(grpc_call_works(self.server.target))

    def connect(self, **kw):
        c = RawConn(self.server.port, **kw)
        self.addCleanup(c.close)
        return c


class BadBytesTest(RobustnessTestCase):
    def test_garbage_instead_of_preface(self):
        c = self.connect()
        try:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4)
        except Closed:
            pass  # closed before we finished writing: fine
        c.wait_closed(5)
        if c.goaway is not None:
            self.assertEqual(c.goaway, PROTOCOL_ERROR)

    def test_truncated_frame_then_close(self):
        c = self.connect()
        c.handshake()
        # A HEADERS frame announcing 200 bytes, 20 of them sent.
        c.send(frame(HEADERS, END_HEADERS, 1, b"\x00" * 200)[:29])
        c.close()
        time.sleep(0.2)

    def test_truncated_grpc_message(self):
        c = self.connect()
        c.handshake()
        sid = c.new_stream()
        body = grpc_message(echo_pb2.EchoRequest(message="x" * 100))
        c.send(frame(HEADERS, END_HEADERS, sid, c.request_headers())
               + frame(DATA, END_STREAM, sid, body[:40]))
        headers, trailers, rst = c.wait_stream(sid)
        if rst is None:
            self.assertIsNotNone(trailers)
            self.assertNotEqual(trailers.get("grpc-status"), "0", trailers)
            self.assertIn("grpc-status", trailers)

    def test_frame_on_stream_zero_with_bad_size(self):
        # PING must be 8 bytes: FRAME_SIZE_ERROR for the connection.
        c = self.connect()
        c.handshake()
        c.send(frame(PING, 0, 0, b"\x00" * 7))
        c.wait_closed(5)
        self.assertEqual(c.goaway, FRAME_SIZE_ERROR)


class HeaderTest(RobustnessTestCase):
    def test_valid_raw_call(self):
        # The raw client itself is right: a proper call succeeds.
        c = self.connect()
        c.handshake()
        headers, trailers, rst = c.unary(echo_pb2.EchoRequest(message="raw"))
        self.assertIsNone(rst)
        self.assertEqual(headers[":status"], "200")
        self.assertEqual(trailers["grpc-status"], "0")

    def test_wrong_content_type_is_415(self):
        c = self.connect()
        c.handshake()
        headers, _, rst = c.unary(echo_pb2.EchoRequest(), content_type="text/plain")
        self.assertIsNone(rst)
        self.assertEqual(headers[":status"], "415")

    def test_header_list_over_16k_refused(self):
        c = self.connect()
        c.handshake()
        sid = c.new_stream()
        # Random base64 does not shrink much under Huffman coding.
        big = ("x-big", base64.b64encode(os.urandom(24 * 1024)).decode())
        block = c.request_headers(extra=[big])
        self.assertGreater(len(block), 16 * 1024)
        chunks = [block[i:i + 16000] for i in range(0, len(block), 16000)]
        data = frame(HEADERS, 0, sid, chunks[0])
        for i, chunk in enumerate(chunks[1:], 1):
            data += frame(CONTINUATION, END_HEADERS if i == len(chunks) - 1 else 0, sid, chunk)
        c.send(data + frame(DATA, END_STREAM, sid, grpc_message(echo_pb2.EchoRequest())))
        try:
            headers, trailers, rst = c.wait_stream(sid)
        except Closed:
            self.assertIsNotNone(c.goaway, "closed without GOAWAY")
            self.assertNotEqual(c.goaway, NO_ERROR)
            return  # refused at connection level; tearDown checks a new one
        refused = rst is not None or (headers or {}).get(":status") == "431"
        self.assertTrue(refused, "oversized header list accepted: %r %r" % (headers, trailers))
        # The same connection still serves calls.
        headers, trailers, rst = c.unary(echo_pb2.EchoRequest(message="after"))
        self.assertIsNone(rst)
        self.assertEqual(trailers["grpc-status"], "0")

    def test_continuation_flood(self):
        c = self.connect()
        c.handshake()
        base = self.server.rss_kib()
        sampler = Sampler(self.server)
        sampler.start()
        sid = c.new_stream()
        headers = c.request_headers()
        c.send(frame(HEADERS, 0, sid, headers))
        # Each CONTINUATION carries 20 more literal headers; never END_HEADERS.
        enc = hpack.Encoder()
        closed = False
        t0 = time.monotonic()
        try:
            for i in range(20000):
                if time.monotonic() - t0 > 15:
                    break
                block = enc.encode([("x-flood-%d" % (i * 20 + j), "v" * 40) for j in range(20)],
                                   huffman=False)
                c.send(frame(CONTINUATION, 0, sid, block))
        except Closed:
            closed = True
        except socket.timeout:
            pass  # server stopped reading: must still close, below
        if not closed:
            c.wait_closed(10)
        peak = sampler.stop()
        self.assertLess(peak - base, self.RSS_SLACK_KIB, "RSS grew by %d KiB" % (peak - base))
        if c.goaway is not None:
            self.assertNotEqual(c.goaway, NO_ERROR)


class FloodTest(RobustnessTestCase):
    def flood(self, unit, count, rcvbuf=4096):
        """Sends `count` copies of `unit` (in batches) without reading, then
        expects the server to close the connection. Returns the RSS growth
        in KiB."""
        base = self.server.rss_kib()
        sampler = Sampler(self.server)
        sampler.start()
        c = self.connect(rcvbuf=rcvbuf)
        c.send(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0))
        batch = unit * 500
        closed = False
        t0 = time.monotonic()
        try:
            for _ in range(count // 500):
                if time.monotonic() - t0 > 20:
                    break
                c.send(batch)
        except Closed:
            closed = True
        except socket.timeout:
            self.fail("server stopped reading without closing the connection")
        if not closed:
            c.wait_closed(10)
        peak = sampler.stop()
        if c.goaway is not None:
            self.assertIn(c.goaway, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR),
                          "GOAWAY error code %d" % c.goaway)
        growth = peak - base
        self.assertLess(growth, self.RSS_SLACK_KIB, "RSS grew by %d KiB" % growth)
        return growth

    def test_settings_flood(self):
        # SETTINGS_MAX_CONCURRENT_STREAMS=100, over and over; every one
        # obliges the server to queue an ACK we never read.
        unit = frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100))
        self.flood(unit, 200000)

    def test_ping_flood(self):
        unit = frame(PING, 0, 0, b"12345678")
        self.flood(unit, 200000)

    def test_rapid_reset(self):
        self.rapid_reset(with_request=False)

    def test_rapid_reset_with_requests(self):
        # Each stream carries a whole request, so calls reach the handler
        # stage before they are reset.
        self.rapid_reset(with_request=True)

    def rapid_reset(self, with_request):
        # CVE-2023-44487: open a stream, reset it at once, repeat. The server
        # may GOAWAY (ENHANCE_YOUR_CALM) or keep up, but must survive, stay
        # small and keep serving others.
        c = self.connect()
        c.handshake()
        reader_stop = threading.Event()
        # A second socket object on the same connection: its own timeout and
        # buffer, so reading never disturbs the writer's blocking sends.
        rd = RawConn(sock=c.sock.dup())
        self.addCleanup(rd.close)

        def drain():
            while not reader_stop.is_set():
                try:
                    rd.read_frame(0.5)
                except socket.timeout:
                    continue
                except (Closed, OSError, ValueError):
                    return

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        bystander = Bystander(self.server.target)
        bystander.start()
        base = self.server.rss_kib()
        sampler = Sampler(self.server)
        sampler.start()

        body = grpc_message(echo_pb2.EchoRequest(message="reset me"))
        sent = 0
        t0 = time.monotonic()
        try:
            while sent < 20000 and time.monotonic() - t0 < 20 and rd.goaway is None:
                data = b""
                for _ in range(100):
                    sid = c.new_stream()
                    data += frame(HEADERS, END_HEADERS, sid, c.request_headers())
                    if with_request:
                        data += frame(DATA, END_STREAM, sid, body)
                    data += frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
                    sent += 1
                c.send(data)
        except (Closed, socket.timeout):
            pass
        time.sleep(0.5)  # let the bystander see the aftermath
        peak = sampler.stop()
        reader_stop.set()
        bystander.stop()
        reader.join(5)

        self.assertServerAlive()
        if rd.goaway is not None:
            # nghttp2's own rapid-reset limit (1.57, backported by Debian)
            # says INTERNAL_ERROR; ENHANCE_YOUR_CALM is the usual choice.
            self.assertIn(rd.goaway, (ENHANCE_YOUR_CALM, INTERNAL_ERROR, NO_ERROR, PROTOCOL_ERROR),
                          "GOAWAY error code %d" % rd.goaway)
        self.assertLess(peak - base, self.RSS_SLACK_KIB, "RSS grew by %d KiB" % (peak - base))
        self.assertEqual(bystander.errors, [])
        self.assertGreater(bystander.ok, 0)


class TimeoutTest(unittest.TestCase):
    """Each test runs its own server with one short timeout."""

    @classmethod
    def setUpClass(cls):
        harness.load_stubs()

    def test_incomplete_preface_closed_by_header_timeout(self):
        with harness.EchoServer("--header-timeout-ms", "400") as srv:
            c = RawConn(srv.port)
            self.addCleanup(c.close)
            c.send(PREFACE[:10])
            took = c.wait_closed(5)
            self.assertGreater(took, 0.2)

    def test_incomplete_headers_closed_by_header_timeout(self):
        with harness.EchoServer("--header-timeout-ms", "400") as srv:
            c = RawConn(srv.port)
            self.addCleanup(c.close)
            c.handshake()
            c.send(frame(HEADERS, 0, 1, c.request_headers()))  # no END_HEADERS, ever
            took = c.wait_closed(5)
            self.assertGreater(took, 0.2)
            self.assertTrue(grpc_call_works(srv.target))

    def test_default_header_timeout_is_not_short(self):
        # The same slow client survives a second against the default (10 s):
        # the test above measures the flag, not some other limit.
        with harness.EchoServer() as srv:
            c = RawConn(srv.port)
            self.addCleanup(c.close)
            c.handshake()
            c.send(frame(HEADERS, 0, 1, c.request_headers()))
            with self.assertRaises(AssertionError):
                c.wait_closed(1.0)
            c.close()  # before SIGTERM: see ShutdownTest for a stuck header block

    def test_idle_connection_closed(self):
        with harness.EchoServer("--idle-timeout-ms", "400") as srv:
            c = RawConn(srv.port)
            self.addCleanup(c.close)
            c.handshake()
            _, trailers, _ = c.unary(echo_pb2.EchoRequest(message="then idle"))
            self.assertEqual(trailers["grpc-status"], "0")
            took = c.wait_closed(5)
            self.assertGreater(took, 0.2)
            self.assertEqual(c.goaway, NO_ERROR)

    def test_unacknowledged_settings(self):
        with harness.EchoServer("--settings-timeout-ms", "400") as srv:
            c = RawConn(srv.port)
            self.addCleanup(c.close)
            c.send(PREFACE + frame(SETTINGS, 0, 0))  # and never ACK theirs
            took = c.wait_closed(5)
            self.assertGreater(took, 0.2)
            self.assertEqual(c.goaway, SETTINGS_TIMEOUT)


class ShutdownTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.load_stubs()

    def test_sigterm_lets_in_flight_call_finish(self):
        srv = harness.EchoServer().start()
        try:
            with grpc.insecure_channel(srv.target) as ch:
                stub = echo_pb2_grpc.EchoStub(ch)
                grpc.channel_ready_future(ch).result(timeout=10)
                fut = stub.UnaryEcho.future(
                    echo_pb2.EchoRequest(message="slow", sleep_ms=1000), timeout=20)
                time.sleep(0.3)  # the call is in its handler by now
                t0 = time.monotonic()
                srv.terminate()
                self.assertEqual(fut.result(timeout=20).message, "slow")
                self.assertGreater(time.monotonic() - t0, 0.4)
            srv.proc.wait(20)
            self.assertEqual(srv.proc.returncode, 0, srv.output())
        finally:
            srv.cleanup()

    def test_sigterm_with_incomplete_header_block(self):
        # A peer stuck in the middle of a header block has no call in
        # flight: it must not hold the shutdown past the header timeout.
        srv = harness.EchoServer("--header-timeout-ms", "1000").start()
        try:
            c = RawConn(srv.port)
            self.addCleanup(c.close)
            c.handshake()
            c.send(frame(HEADERS, 0, 1, c.request_headers()))  # no END_HEADERS
            time.sleep(0.2)
            t0 = time.monotonic()
            srv.terminate()
            try:
                srv.proc.wait(8)
            except harness.subprocess.TimeoutExpired:
                self.fail("still running %.0f s after SIGTERM" % (time.monotonic() - t0))
            self.assertEqual(srv.proc.returncode, 0, srv.output())
        finally:
            srv.cleanup()

    def test_sigterm_refuses_new_connections(self):
        srv = harness.EchoServer().start()
        try:
            with grpc.insecure_channel(srv.target) as ch:
                fut = echo_pb2_grpc.EchoStub(ch).UnaryEcho.future(
                    echo_pb2.EchoRequest(sleep_ms=1500), timeout=20)
                time.sleep(0.3)
                srv.terminate()
                time.sleep(0.3)
                # Draining: the listener is closed.
                with self.assertRaises(OSError):
                    socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
                fut.result(timeout=20)
            srv.proc.wait(20)
            self.assertEqual(srv.proc.returncode, 0, srv.output())
        finally:
            srv.cleanup()


if __name__ == "__main__":
    unittest.main(argv=_argv, verbosity=2)
