"""Debian's python3-grpcio (grpc core, a stock gRPC stack) against
estore-echo: every call kind, statuses, deadlines, limits, metadata,
compression, health and reflection (v1 and v1alpha), and a grpcurl-style
call built from reflection alone.

Run by ctest (see CMakeLists.txt); by hand:
    /usr/bin/python3 test_python_client.py --echo BUILD/tests/estore-echo \
        --proto-path proto --proto-path /usr/share/grpc-proto [-k name]
"""

import json
import queue
import time
import unittest

import harness

if __name__ == "__main__":
    _argv = harness.parse_args()
    harness.load_stubs()

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory  # noqa: E402

from estore.testing.v1 import echo_pb2, echo_pb2_grpc  # noqa: E402
from grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc.reflection.v1 import reflection_pb2 as refl_v1, reflection_pb2_grpc as refl_v1_grpc  # noqa: E402
from grpc.reflection.v1alpha import reflection_pb2 as refl_v1a, reflection_pb2_grpc as refl_v1a_grpc  # noqa: E402

MiB = 1024 * 1024
ECHO = "estore.testing.v1.Echo"
ECHO_FILE = "estore/testing/v1/echo.proto"
# Per-call bound: every call in this file finishes (or fails) within it.
TIMEOUT = 20


def pattern(n):
    """The reply_bytes payload: byte i is i % 251 (echo_service.h)."""
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def md_pairs(md):
    return [(m.key, m.value) for m in (md or ())]


class EchoTestCase(harness.ServerTestCase):
    def setUp(self):
        self.channel = grpc.insecure_channel(self.server.target)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.stub = echo_pb2_grpc.EchoStub(self.channel)

    def tearDown(self):
        self.channel.close()

    def assertStatus(self, err_ctx, code, details=None):
        err = err_ctx.exception
        self.assertEqual(err.code(), code, "details: %r" % err.details())
        if details is not None:
            self.assertEqual(err.details(), details)


class CallKindsTest(EchoTestCase):
    def test_unary_echoes_message_and_payload(self):
        payload = bytes(range(256)) * 4
        reply = self.stub.UnaryEcho(
            echo_pb2.EchoRequest(message="héllo", payload=payload), timeout=TIMEOUT)
        self.assertEqual(reply.message, "héllo")
        self.assertEqual(reply.payload, payload)
        self.assertEqual(reply.index, 0)

    def test_unary_empty_request(self):
        reply = self.stub.UnaryEcho(echo_pb2.EchoRequest(), timeout=TIMEOUT)
        self.assertEqual(reply, echo_pb2.EchoReply())

    def test_unary_reply_bytes_large_reply(self):
        # Larger than any HTTP/2 window and frame: the server has to split
        # it into many DATA frames and follow flow control.
        n = 3 * MiB
        reply = self.stub.UnaryEcho(
            echo_pb2.EchoRequest(message="big", reply_bytes=n), timeout=TIMEOUT)
        self.assertEqual(reply.message, "big")
        self.assertEqual(len(reply.payload), n)
        self.assertEqual(reply.payload, pattern(n))

    def test_server_stream(self):
        t0 = time.monotonic()
        replies = list(self.stub.ServerStream(
            echo_pb2.StreamRequest(message="s", count=5, reply_bytes=10, interval_ms=30),
            timeout=TIMEOUT))
        elapsed = time.monotonic() - t0
        self.assertEqual([r.index for r in replies], [0, 1, 2, 3, 4])
        for r in replies:
            self.assertEqual(r.message, "s")
            self.assertEqual(r.payload, pattern(10))
        # Four intervals of 30 ms between five replies.
        self.assertGreaterEqual(elapsed, 0.11)

    def test_server_stream_zero_count(self):
        self.assertEqual(list(self.stub.ServerStream(
            echo_pb2.StreamRequest(count=0), timeout=TIMEOUT)), [])

    def test_server_stream_ends_with_requested_status(self):
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for r in self.stub.ServerStream(
                    echo_pb2.StreamRequest(message="x", count=3, status_code=10,
                                           status_message="stopped here"),
                    timeout=TIMEOUT):
                got.append(r.index)
        self.assertEqual(got, [0, 1, 2])
        self.assertStatus(cm, grpc.StatusCode.ABORTED, "stopped here")

    def test_server_stream_many_messages(self):
        n = 2000
        replies = self.stub.ServerStream(
            echo_pb2.StreamRequest(message="m", count=n, reply_bytes=100), timeout=TIMEOUT)
        self.assertEqual([r.index for r in replies], list(range(n)))

    def test_client_stream(self):
        reqs = [echo_pb2.EchoRequest(message="a", payload=b"\x00"),
                echo_pb2.EchoRequest(message="bc", payload=b"\x01\x02"),
                echo_pb2.EchoRequest(message="d")]
        reply = self.stub.ClientStream(iter(reqs), timeout=TIMEOUT)
        self.assertEqual(reply.message, "abcd")
        self.assertEqual(reply.payload, b"\x00\x01\x02")
        self.assertEqual(reply.index, 3)

    def test_client_stream_no_messages(self):
        reply = self.stub.ClientStream(iter([]), timeout=TIMEOUT)
        self.assertEqual(reply.message, "")
        self.assertEqual(reply.index, 0)

    def test_client_stream_many_messages(self):
        n = 1000
        reply = self.stub.ClientStream(
            (echo_pb2.EchoRequest(message="x", payload=bytes([i % 256])) for i in range(n)),
            timeout=TIMEOUT)
        self.assertEqual(reply.index, n)
        self.assertEqual(reply.message, "x" * n)
        self.assertEqual(reply.payload, bytes(i % 256 for i in range(n)))

    def test_bidi_replies_in_order(self):
        n = 50
        replies = list(self.stub.BidiStream(
            (echo_pb2.EchoRequest(message="m%d" % i) for i in range(n)), timeout=TIMEOUT))
        self.assertEqual([r.message for r in replies], ["m%d" % i for i in range(n)])
        self.assertEqual([r.index for r in replies], list(range(n)))

    def test_bidi_is_interleaved(self):
        # Each reply must arrive before the next request is even written:
        # a server that buffers until the client half-closes times out here.
        requests = queue.Queue()

        def gen():
            while True:
                item = requests.get(timeout=TIMEOUT)
                if item is None:
                    return
                yield item

        call = self.stub.BidiStream(gen(), timeout=10)
        try:
            for i in range(5):
                requests.put(echo_pb2.EchoRequest(message="ping%d" % i, reply_bytes=i))
                reply = next(call)
                self.assertEqual(reply.message, "ping%d" % i)
                self.assertEqual(reply.payload, pattern(i))
            requests.put(None)
            self.assertEqual(list(call), [])
            self.assertEqual(call.code(), grpc.StatusCode.OK)
        finally:
            requests.put(None)
            call.cancel()

    def test_bidi_request_status_ends_the_call(self):
        reqs = [echo_pb2.EchoRequest(message="one"),
                echo_pb2.EchoRequest(status_code=5, status_message="gone"),
                echo_pb2.EchoRequest(message="never")]
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for r in self.stub.BidiStream(iter(reqs), timeout=TIMEOUT):
                got.append(r.message)
        self.assertEqual(got, ["one"])
        self.assertStatus(cm, grpc.StatusCode.NOT_FOUND, "gone")


class StatusTest(EchoTestCase):
    def test_non_ascii_status_message_round_trip(self):
        msg = "débit refusé — 拒否"
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.UnaryEcho(echo_pb2.EchoRequest(status_code=9, status_message=msg),
                                timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.FAILED_PRECONDITION, msg)

    def test_status_message_needing_percent_encoding(self):
        msg = "100% sure: a,b;c\nsecond line\t%41"
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.UnaryEcho(echo_pb2.EchoRequest(status_code=3, status_message=msg),
                                timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.INVALID_ARGUMENT, msg)

    def test_every_status_code(self):
        for code in grpc.StatusCode:
            if code == grpc.StatusCode.OK:
                continue
            with self.subTest(code=code):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.stub.UnaryEcho(echo_pb2.EchoRequest(
                        status_code=code.value[0], status_message="code %d" % code.value[0]),
                        timeout=TIMEOUT)
                self.assertStatus(cm, code, "code %d" % code.value[0])

    def test_invalid_control_fields(self):
        cases = [
            (echo_pb2.EchoRequest(reply_bytes=-1), "reply_bytes"),
            (echo_pb2.EchoRequest(reply_bytes=16 * MiB + 1), "reply_bytes"),
            (echo_pb2.EchoRequest(sleep_ms=-5), "sleep_ms"),
            (echo_pb2.EchoRequest(status_code=99), "status_code"),
        ]
        for req, word in cases:
            with self.subTest(req=str(req)):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.stub.UnaryEcho(req, timeout=TIMEOUT)
                self.assertStatus(cm, grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(word, cm.exception.details())

    def test_invalid_stream_count(self):
        for req, word in [(echo_pb2.StreamRequest(count=-1), "count"),
                          (echo_pb2.StreamRequest(count=1, reply_bytes=-1), "reply_bytes")]:
            with self.subTest(req=str(req)):
                with self.assertRaises(grpc.RpcError) as cm:
                    list(self.stub.ServerStream(req, timeout=TIMEOUT))
                self.assertStatus(cm, grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(word, cm.exception.details())

    def test_reply_over_send_limit(self):
        # Under echo's own 16 MiB cap but over the server's 4 MiB send limit.
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.UnaryEcho(echo_pb2.EchoRequest(reply_bytes=5 * MiB), timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(self.stub.UnaryEcho(echo_pb2.EchoRequest(message="after"),
                                             timeout=TIMEOUT).message, "after")

    def test_malformed_request_message(self):
        # Field 1 (string) announcing more bytes than follow.
        raw = self.channel.unary_unary("/%s/UnaryEcho" % ECHO)
        with self.assertRaises(grpc.RpcError) as cm:
            raw(b"\x0a\x7fshort", timeout=TIMEOUT)
        self.assertIn(cm.exception.code(),
                      (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL))
        self.assertEqual(self.stub.UnaryEcho(echo_pb2.EchoRequest(message="ok"),
                                             timeout=TIMEOUT).message, "ok")

    def test_malformed_stream_message(self):
        raw = self.channel.stream_stream("/%s/BidiStream" % ECHO)
        good = echo_pb2.EchoRequest(message="fine").SerializeToString()
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for reply in raw(iter([good, b"\x0a\x7fshort"]), timeout=TIMEOUT):
                got.append(echo_pb2.EchoReply.FromString(reply).message)
        self.assertEqual(got, ["fine"])
        self.assertStatus(cm, grpc.StatusCode.INVALID_ARGUMENT)

    def test_strings_that_c_would_cut_or_misread(self):
        # A NUL would end the string the handler sees; invalid UTF-8 is not
        # a proto3 string. Both are refused, naming the field, before the
        # handler runs, in unary and in streamed messages.
        raw = self.channel.unary_unary("/%s/UnaryEcho" % ECHO)
        for body, why in ((b"\x0a\x05ab\x00cd", "message: contains a NUL byte"),
                          (b"\x0a\x02\xc3\x28", "message: not valid UTF-8")):
            with self.assertRaises(grpc.RpcError) as cm:
                raw(body, timeout=TIMEOUT)
            self.assertStatus(cm, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertEqual(cm.exception.details(), why)
        self.assertEqual(self.stub.UnaryEcho(echo_pb2.EchoRequest(message="caf\u00e9 \u2713"),
                                             timeout=TIMEOUT).message, "caf\u00e9 \u2713")
        bidi = self.channel.stream_stream("/%s/BidiStream" % ECHO)
        good = echo_pb2.EchoRequest(message="fine").SerializeToString()
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for reply in bidi(iter([good, b"\x0a\x03a\x00b"]), timeout=TIMEOUT):
                got.append(echo_pb2.EchoReply.FromString(reply).message)
        self.assertEqual(got, ["fine"])
        self.assertStatus(cm, grpc.StatusCode.INVALID_ARGUMENT)

    def test_client_stream_join_limit(self):
        # Each message is under the receive limit; the joined reply would
        # pass echo's 16 MiB cap.
        chunk = echo_pb2.EchoRequest(payload=b"\x07" * (3 * MiB + MiB // 2))
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.ClientStream(iter([chunk] * 5), timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_unknown_method(self):
        nope = self.channel.unary_unary("/%s/Nope" % ECHO)
        with self.assertRaises(grpc.RpcError) as cm:
            nope(b"", timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.UNIMPLEMENTED)

    def test_unknown_service(self):
        nope = self.channel.unary_unary("/estore.testing.v1.NoSuchService/UnaryEcho")
        with self.assertRaises(grpc.RpcError) as cm:
            nope(b"", timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.UNIMPLEMENTED)


class LimitsTest(EchoTestCase):
    def test_1000_concurrent_unary_calls(self):
        n = 1000
        t0 = time.monotonic()
        futures = [self.stub.UnaryEcho.future(echo_pb2.EchoRequest(message="c%d" % i),
                                              timeout=60)
                   for i in range(n)]
        for i, f in enumerate(futures):
            self.assertEqual(f.result(timeout=60).message, "c%d" % i)
        self.assertLess(time.monotonic() - t0, 30.0)

    def test_deadline_exceeded(self):
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.UnaryEcho(echo_pb2.EchoRequest(sleep_ms=10000), timeout=0.3)
        self.assertStatus(cm, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - t0, 5.0)

    def test_sleep_is_honoured(self):
        t0 = time.monotonic()
        self.stub.UnaryEcho(echo_pb2.EchoRequest(sleep_ms=200), timeout=TIMEOUT)
        self.assertGreaterEqual(time.monotonic() - t0, 0.19)

    def test_max_receive_message(self):
        def request_of_size(size):
            # reply_bytes=1 costs 2 bytes, the payload field 1 tag byte and
            # a 4-byte length varint (for sizes of a few MiB).
            req = echo_pb2.EchoRequest(payload=b"\x01" * (size - 7), reply_bytes=1)
            self.assertEqual(req.ByteSize(), size)
            return req

        ok = self.stub.UnaryEcho(request_of_size(4 * MiB), timeout=TIMEOUT)
        self.assertEqual(ok.payload, b"\x00")
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.UnaryEcho(request_of_size(4 * MiB + 1), timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.RESOURCE_EXHAUSTED)
        # The same channel (same connection) keeps working.
        self.assertEqual(self.stub.UnaryEcho(echo_pb2.EchoRequest(message="next"),
                                             timeout=TIMEOUT).message, "next")


class MetadataTest(EchoTestCase):
    SENT = [("echo-ascii", "hello world"),
            ("echo-data-bin", b"\x00\x01\xfe\xff binary"),
            ("not-echoed", "x")]

    def check_echoed(self, md, where):
        pairs = md_pairs(md)
        self.assertIn(("echo-ascii", "hello world"), pairs, where)
        self.assertIn(("echo-data-bin", b"\x00\x01\xfe\xff binary"), pairs, where)
        self.assertNotIn("not-echoed", [k for k, _ in pairs], where)

    def test_unary_metadata_in_headers_and_trailers(self):
        reply, call = self.stub.UnaryEcho.with_call(
            echo_pb2.EchoRequest(message="md"), metadata=self.SENT, timeout=TIMEOUT)
        self.assertEqual(reply.message, "md")
        self.check_echoed(call.initial_metadata(), "initial metadata")
        self.check_echoed(call.trailing_metadata(), "trailing metadata")

    def test_server_stream_metadata(self):
        call = self.stub.ServerStream(echo_pb2.StreamRequest(count=2),
                                      metadata=self.SENT, timeout=TIMEOUT)
        self.check_echoed(call.initial_metadata(), "initial metadata")
        self.assertEqual(len(list(call)), 2)
        self.check_echoed(call.trailing_metadata(), "trailing metadata")

    def test_metadata_on_error(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.UnaryEcho(echo_pb2.EchoRequest(status_code=5, status_message="no"),
                                metadata=self.SENT, timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.NOT_FOUND, "no")
        # Trailers-only response: everything arrives as trailing metadata.
        self.check_echoed(cm.exception.trailing_metadata(), "trailing metadata")


class CompressionTest(EchoTestCase):
    def test_gzip_request_is_unimplemented(self):
        # Compressible on purpose, so grpc core really sets the compressed
        # flag instead of falling back to an identity message.
        req = echo_pb2.EchoRequest(message="gz", payload=b"\x00" * 65536)
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.UnaryEcho(req, compression=grpc.Compression.Gzip, timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.UNIMPLEMENTED)
        # Uncompressed calls still work, though grpc core advertises gzip
        # in grpc-accept-encoding on every call.
        self.assertEqual(self.stub.UnaryEcho(req, timeout=TIMEOUT).payload, req.payload)


class HealthTest(EchoTestCase):
    def setUp(self):
        super().setUp()
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def test_check(self):
        for name in ("", ECHO):
            with self.subTest(service=name):
                resp = self.health.Check(health_pb2.HealthCheckRequest(service=name),
                                         timeout=TIMEOUT)
                self.assertEqual(resp.status, health_pb2.HealthCheckResponse.SERVING)

    def test_check_unknown_service(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"),
                              timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.NOT_FOUND)

    def test_watch_sends_serving_first(self):
        for name in ("", ECHO):
            with self.subTest(service=name):
                call = self.health.Watch(health_pb2.HealthCheckRequest(service=name),
                                         timeout=TIMEOUT)
                try:
                    self.assertEqual(next(call).status,
                                     health_pb2.HealthCheckResponse.SERVING)
                finally:
                    call.cancel()

    def test_watch_unknown_service(self):
        call = self.health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"),
                                 timeout=TIMEOUT)
        try:
            self.assertEqual(next(call).status,
                             health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        finally:
            call.cancel()


REFLECTION = {
    "v1": (refl_v1, refl_v1_grpc),
    "v1alpha": (refl_v1a, refl_v1a_grpc),
}


class ReflectionTest(EchoTestCase):
    def reflect(self, version, *requests):
        pb, pb_grpc = REFLECTION[version]
        stub = pb_grpc.ServerReflectionStub(self.channel)
        replies = list(stub.ServerReflectionInfo(iter(requests), timeout=TIMEOUT))
        self.assertEqual(len(replies), len(requests))
        return replies

    @staticmethod
    def files(reply):
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in reply.file_descriptor_response.file_descriptor_proto]

    def check_echo_file(self, files):
        echo = [f for f in files if f.name == ECHO_FILE]
        self.assertEqual(len(echo), 1, [f.name for f in files])
        fd = echo[0]
        self.assertEqual(fd.package, "estore.testing.v1")
        self.assertEqual([s.name for s in fd.service], ["Echo"])
        methods = {m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
                   for m in fd.service[0].method}
        p = ".estore.testing.v1."
        self.assertEqual(methods, {
            "UnaryEcho": (p + "EchoRequest", p + "EchoReply", False, False),
            "ServerStream": (p + "StreamRequest", p + "EchoReply", False, True),
            "ClientStream": (p + "EchoRequest", p + "EchoReply", True, False),
            "BidiStream": (p + "EchoRequest", p + "EchoReply", True, True),
            **{name: (p + "WhoAmIRequest", p + "WhoAmIReply", False, False)
               for name in ("WhoAmI", "PublicWhoAmI", "VendorWhoAmI", "AdminWhoAmI",
                            "InternalWhoAmI")},
        })
        self.assertEqual(sorted(m.name for m in fd.message_type),
                         ["EchoReply", "EchoRequest", "StreamRequest", "WhoAmIReply",
                          "WhoAmIRequest"])
        # The access rule travels in the descriptor as a custom option.
        self.assertEqual(list(fd.dependency), ["estore/api/v1/options.proto"])

    def test_list_services(self):
        for version, (pb, _) in REFLECTION.items():
            with self.subTest(version=version):
                reply, = self.reflect(version, pb.ServerReflectionRequest(list_services=""))
                names = [s.name for s in reply.list_services_response.service]
                for want in (ECHO, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"):
                    self.assertIn(want, names)
                self.assertEqual(len(names), len(set(names)), names)

    def test_file_containing_symbol(self):
        for version, (pb, _) in REFLECTION.items():
            for symbol in (ECHO, "estore.testing.v1.EchoRequest",
                           "estore.testing.v1.Echo.UnaryEcho"):
                with self.subTest(version=version, symbol=symbol):
                    reply, = self.reflect(version, pb.ServerReflectionRequest(
                        file_containing_symbol=symbol))
                    self.assertFalse(reply.HasField("error_response"),
                                     reply.error_response.error_message)
                    self.check_echo_file(self.files(reply))

    def test_file_by_filename(self):
        for version, (pb, _) in REFLECTION.items():
            with self.subTest(version=version):
                reply, = self.reflect(version, pb.ServerReflectionRequest(
                    file_by_filename=ECHO_FILE))
                self.check_echo_file(self.files(reply))

    def test_health_is_described(self):
        reply, = self.reflect("v1", refl_v1.ServerReflectionRequest(
            file_containing_symbol="grpc.health.v1.Health"))
        names = [f.name for f in self.files(reply)]
        self.assertIn("grpc/health/v1/health.proto", names)

    def test_unknown_names_are_not_found(self):
        for version, (pb, _) in REFLECTION.items():
            for req in (pb.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
                        pb.ServerReflectionRequest(file_by_filename="no/such/file.proto")):
                with self.subTest(version=version, req=str(req)):
                    reply, = self.reflect(version, req)
                    self.assertTrue(reply.HasField("error_response"))
                    self.assertEqual(reply.error_response.error_code,
                                     grpc.StatusCode.NOT_FOUND.value[0])

    def test_several_requests_on_one_stream(self):
        # grpcurl asks everything over one ServerReflectionInfo stream.
        pb = refl_v1
        reqs = [pb.ServerReflectionRequest(list_services=""),
                pb.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
                pb.ServerReflectionRequest(file_containing_symbol=ECHO)]
        a, b, c = self.reflect("v1", *reqs)
        self.assertTrue(a.HasField("list_services_response"))
        self.assertTrue(b.HasField("error_response"))
        self.check_echo_file(self.files(c))

    def test_original_request_is_echoed(self):
        req = refl_v1.ServerReflectionRequest(host="h", file_by_filename=ECHO_FILE)
        reply, = self.reflect("v1", req)
        self.assertEqual(reply.original_request, req)

    def test_grpcurl_like_call_from_reflection_only(self):
        # What `grpcurl -plaintext HOST list`, `describe` and a JSON call do:
        # no .proto file, no generated code, only reflection.
        pb = refl_v1
        reply, = self.reflect("v1", pb.ServerReflectionRequest(list_services=""))
        services = [s.name for s in reply.list_services_response.service]
        self.assertIn(ECHO, services)

        reply, = self.reflect("v1", pb.ServerReflectionRequest(file_containing_symbol=ECHO))
        fetched = {f.name: f for f in self.files(reply)}
        pool = descriptor_pool.DescriptorPool()
        added = set()

        def add(name, depth=0):
            self.assertLess(depth, 32, "import cycle at " + name)
            if name in added:
                return
            if name not in fetched:
                # As grpcurl does for an import the answer left out.
                r, = self.reflect("v1", pb.ServerReflectionRequest(file_by_filename=name))
                for f in self.files(r):
                    fetched.setdefault(f.name, f)
            for dep in fetched[name].dependency:
                add(dep, depth + 1)
            pool.AddSerializedFile(fetched[name].SerializeToString())
            added.add(name)

        add(ECHO_FILE)
        service = pool.FindServiceByName(ECHO)
        self.assertEqual([m.name for m in service.methods],
                         ["UnaryEcho", "ServerStream", "ClientStream", "BidiStream",
                          "WhoAmI", "PublicWhoAmI", "VendorWhoAmI", "AdminWhoAmI",
                          "InternalWhoAmI"])
        method = service.methods_by_name["UnaryEcho"]
        if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
            request_class = message_factory.GetMessageClass(method.input_type)
            reply_class = message_factory.GetMessageClass(method.output_type)
        else:
            factory = message_factory.MessageFactory(pool)
            request_class = factory.GetPrototype(method.input_type)
            reply_class = factory.GetPrototype(method.output_type)

        request = json_format.Parse('{"message": "from json", "replyBytes": 3}',
                                    request_class())
        call = self.channel.unary_unary("/%s/%s" % (service.full_name, method.name))
        raw = call(request.SerializeToString(), timeout=TIMEOUT)
        reply = json.loads(json_format.MessageToJson(reply_class.FromString(raw)))
        self.assertEqual(reply, {"message": "from json", "payload": "AAEC"})


class CancellationTest(EchoTestCase):
    """Two workers only: a handler that kept sleeping after its caller gave
    up would hold a worker, and the last call here would time out."""

    SERVER_ARGS = ("--workers", "2")

    def check_workers_free(self):
        t0 = time.monotonic()
        reply = self.stub.UnaryEcho(echo_pb2.EchoRequest(message="free"), timeout=5)
        self.assertEqual(reply.message, "free")
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_deadline_wakes_sleeping_handlers(self):
        futures = [self.stub.UnaryEcho.future(echo_pb2.EchoRequest(sleep_ms=20000),
                                              timeout=0.3)
                   for _ in range(4)]
        for f in futures:
            with self.assertRaises(grpc.RpcError) as cm:
                f.result(timeout=10)
            self.assertStatus(cm, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.check_workers_free()

    def test_cancelled_stream_stops(self):
        calls = [self.stub.ServerStream(echo_pb2.StreamRequest(count=1000, interval_ms=50),
                                        timeout=TIMEOUT)
                 for _ in range(2)]
        for call in calls:
            self.assertEqual(next(call).index, 0)
            call.cancel()
        self.check_workers_free()


class AccessRulesTest(EchoTestCase):
    """The (estore.api.v1.access) option of each WhoAmI variant, enforced by
    the server before the handler runs; estore-echo --test-tokens stands in
    for the token service."""

    SERVER_ARGS = ("--test-tokens",)

    def call(self, method, token=None):
        md = [("authorization", "Bearer " + token)] if token else None
        return getattr(self.stub, method)(echo_pb2.WhoAmIRequest(), metadata=md,
                                          timeout=TIMEOUT)

    def assertRefused(self, method, token, code):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call(method, token)
        self.assertStatus(cm, code)
        self.assertTrue(cm.exception.details())

    def test_account_rule(self):
        self.assertRefused("WhoAmI", None, grpc.StatusCode.UNAUTHENTICATED)
        self.assertRefused("WhoAmI", "garbage", grpc.StatusCode.UNAUTHENTICATED)
        reply = self.call("WhoAmI", "test:alice:customer")
        self.assertEqual(reply.subject, "alice")
        self.assertEqual(list(reply.roles), ["customer"])
        self.assertFalse(reply.is_service)
        reply = self.call("WhoAmI", "test:service:auth:")
        self.assertTrue(reply.is_service)

    def test_public_rule(self):
        self.assertEqual(self.call("PublicWhoAmI").subject, "")
        self.assertEqual(self.call("PublicWhoAmI", "test:bob:").subject, "bob")
        # A token that is presented must be valid even where none is needed.
        self.assertRefused("PublicWhoAmI", "garbage", grpc.StatusCode.UNAUTHENTICATED)

    def test_role_rules(self):
        self.assertRefused("VendorWhoAmI", "test:c:customer", grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(self.call("VendorWhoAmI", "test:v:vendor").subject, "v")
        self.assertEqual(self.call("VendorWhoAmI", "test:a:admin").subject, "a")
        self.assertRefused("AdminWhoAmI", "test:v:customer,vendor",
                           grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(list(self.call("AdminWhoAmI", "test:a:customer,admin").roles),
                         ["customer", "admin"])
        self.assertRefused("AdminWhoAmI", None, grpc.StatusCode.UNAUTHENTICATED)

    def test_internal_rule(self):
        self.assertRefused("InternalWhoAmI", "test:a:admin", grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(self.call("InternalWhoAmI", "test:service:auth:").subject,
                         "service:auth")

    def test_verification_unavailable_is_never_valid(self):
        self.assertRefused("WhoAmI", "test:unavailable", grpc.StatusCode.UNAVAILABLE)
        self.assertRefused("PublicWhoAmI", "test:unavailable", grpc.StatusCode.UNAVAILABLE)

    def test_methods_without_rule_ignore_tokens(self):
        reply = self.stub.UnaryEcho(echo_pb2.EchoRequest(message="m"),
                                    metadata=[("authorization", "Bearer garbage")],
                                    timeout=TIMEOUT)
        self.assertEqual(reply.message, "m")


class AccessWithoutAuthenticatorTest(EchoTestCase):
    """A server with no way to verify tokens refuses every rule that needs one."""

    def test_refused(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.WhoAmI(echo_pb2.WhoAmIRequest(),
                             metadata=[("authorization", "Bearer test:a:admin")],
                             timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(self.stub.PublicWhoAmI(echo_pb2.WhoAmIRequest(),
                                                timeout=TIMEOUT).subject, "")


# UnaryEcho runs inline on the I/O threads by default; the same tests with
# every handler on the workers.
class CallKindsNoInlineTest(CallKindsTest):
    SERVER_ARGS = ("--no-inline",)


class StatusNoInlineTest(StatusTest):
    SERVER_ARGS = ("--no-inline",)


class LimitsNoInlineTest(LimitsTest):
    SERVER_ARGS = ("--no-inline",)


class MetadataNoInlineTest(MetadataTest):
    SERVER_ARGS = ("--no-inline",)


class CommandLineTest(unittest.TestCase):
    def run_echo(self, *args):
        return harness.subprocess.run([harness.ARGS.echo] + list(args), timeout=10,
                                      stdin=harness.subprocess.DEVNULL,
                                      capture_output=True, text=True)

    def test_usage_errors_exit_2(self):
        for args in ([], ["--listen"], ["--listen", "127.0.0.1:0", "--workers", "many"],
                     ["--listen", "127.0.0.1:0", "--io-threads", "0"],
                     ["--listen", "127.0.0.1:0", "--no-such-flag", "1"],
                     ["--listen", "not an address"]):
            with self.subTest(args=args):
                r = self.run_echo(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("estore-echo", r.stderr)
                self.assertNotIn("listening on", r.stdout)

    def test_help(self):
        r = self.run_echo("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--listen", r.stdout)


if __name__ == "__main__":
    unittest.main(argv=_argv, verbosity=2)
