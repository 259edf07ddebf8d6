#!/usr/bin/python3
"""The stack as separate hosts on one machine: PostgreSQL, Redis,
estore-token, estore-account, estore-auth and estore-edge each in its own
network namespace with its own address (tests/multihost/podnet.py), and
the services finding each other by name through the *_HOST / *_PORT
variables a deployment sets. The test drives it from a client namespace.

It proves that nothing depends on localhost (every server listens on its
pod's address only; the account journey works across the pods), that a pod
that goes away (process killed, namespace and link deleted) leaves the
others answering while callers get 503 / UNAVAILABLE promptly, and that
everything recovers when the pod is back with the same name and address,
or with the same name at another address (a rescheduled pod).

Needs root and `ip netns`; exits 77 (ctest: skipped) without them.
"""

import http.client
import json
import os
import signal
import socket
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import fixture  # noqa: E402
import podnet   # noqa: E402

SKIP = 77
SERVICES = ("token", "account", "auth", "catalog", fixture.EDGE)
PODS = ("postgres", "redis") + SERVICES

# Bounds of the outage checks. A gone pod's address answers nothing (no
# RST, no ICMP): the first call after it vanished waits for one connect
# timeout of the caller's channel (5 s), then fails with UNAVAILABLE after
# the retries' backoff; later calls fail at once (the channel stays in
# transient failure) or after the retries' backoff (about 1 s). Both are
# below the edge's own deadline (EDGE_REQUEST_TIMEOUT_MS, 15 s: 504
# after), so a 503 within them is a prompt UNAVAILABLE, not a timeout. The
# first bound leaves room for a sanitizer build on a loaded machine (11 s
# seen); the 503 itself already tells it from the deadline's 504.
FIRST_UNAVAILABLE_WITHIN_S = 14.0
UNAVAILABLE_WITHIN_S = 4.0
EDGE_IO_THREADS = 2     # estore-edge's default
RECOVER_WITHIN_S = 30.0        # the edge answers 200 again after the pod is back
EDGE_ENV = {
    # The journeys register and log in more than 10 times a minute.
    "EDGE_RATE_LOGIN_PER_MIN": "1000",
}


def listening(pid):
    """(address, port) of every listening TCP socket in the network
    namespace of process `pid`."""
    out = set()
    for name, fam in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A":          # TCP_LISTEN
                continue
            hexip, hexport = cols[1].split(":")
            raw = bytes.fromhex(hexip)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out.add((socket.inet_ntop(fam, raw), int(hexport, 16)))
    return out


class MultiHostTest(unittest.TestCase):
    net = None
    stack = None

    @classmethod
    def setUpClass(cls):
        missing = [n for n in SERVICES if not fixture.have_binary(n)]
        if missing:
            raise RuntimeError("not built: " + ", ".join(fixture.binary_path(n) for n in missing))
        cls.net = podnet.PodNet(PODS).up()
        try:
            # Before any gRPC channel: gRPC's threads must start in the
            # client pod, where the other pods' addresses are reachable.
            cls.net.enter_client()
            fixture.load_stubs()
            cls.stack = fixture.Stack(net=cls.net).start()
            for n in SERVICES:
                cls.stack.start_service(n, extra_env=EDGE_ENV if n == fixture.EDGE else None)
        except BaseException:
            cls._teardown(failed=True)
            raise

    @classmethod
    def _teardown(cls, failed=False):
        errors = []
        if cls.stack is not None:
            if failed:
                cls.stack.failed = True
            try:
                cls.stack.close()
            except Exception as e:       # the network must go even so
                errors.append("stack: %s" % e)
            cls.stack = None
        if cls.net is not None:
            try:
                cls.net.down()
            except podnet.NetError as e:
                errors.append(str(e))
            cls.net = None
        if errors:
            raise RuntimeError("; ".join(errors))

    @classmethod
    def tearDownClass(cls):
        st = cls.stack
        bad = []
        if st is not None:
            for n in reversed(st.order):
                if st.service_alive(n):
                    try:
                        rc = st.stop_service(n)
                    except AssertionError as e:
                        bad.append(str(e))
                        continue
                    if rc != 0:
                        bad.append("estore-%s exited with %r:\n%s" % (n, rc, st.log_tail(n)))
        cls._teardown(failed=bool(bad))
        if bad:
            raise AssertionError("\n".join(bad))

    def run(self, result=None):
        r = super().run(result)
        res = result or r
        if res is not None and self.stack is not None and not res.wasSuccessful():
            self.stack.failed = True
        return r

    # -- requests to the edge pod --

    def call(self, method, path, body=None, token=None, timeout=20):
        """One HTTP/1.1 request to the edge pod: (status, parsed JSON or
        None, raw body)."""
        c = http.client.HTTPConnection(self.net.addr(fixture.EDGE),
                                       self.stack.ports[fixture.EDGE], timeout=timeout)
        h = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            h["Authorization"] = "Bearer " + token
        c.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                  headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return r.status, parsed, raw

    def register(self):
        email = "pod-%s@example.com" % uuid.uuid4().hex[:12]
        pw = "correct horse battery staple"
        st, pair, raw = self.call("POST", "/v1/auth/register",
                                  {"email": email, "password": pw, "displayName": "Pod User"})
        self.assertEqual(st, 200, raw)
        return email, pw, pair

    def wait_status(self, want, method, path, timeout, **kw):
        """Bounded: repeats the request until it answers `want`; returns
        (seconds it took, last answer)."""
        t0 = time.monotonic()
        got = None
        while True:
            try:
                got = self.call(method, path, **kw)
            except OSError as e:
                got = (None, None, repr(e))
            if got[0] == want or time.monotonic() - t0 > timeout:
                return time.monotonic() - t0, got
            time.sleep(0.2)

    # -- the tests --

    def test_every_server_listens_on_its_own_address_only(self):
        st = self.stack
        pids = {n: st.pid(n) for n in SERVICES}
        pids["postgres"] = st.postgres_pid()
        pids["redis"] = st.redis_pid()
        ports = dict(st.ports, postgres=st.db_port, redis=st.redis_port)
        for n, pid in pids.items():
            got = listening(pid)
            self.assertIn((self.net.addr(n), ports[n]), got, n)
            self.assertEqual({a for a, _ in got}, {self.net.addr(n)},
                             "%s listens elsewhere than its pod address: %s" % (n, got))
        # And the services are told their peers by name, not address.
        env = st.env("auth")
        for var, name in (("DB_HOST", "postgres"), ("REDIS_HOST", "redis"),
                          ("ACCOUNT_API_HOST", "account"), ("TOKEN_SERVICE_HOST", "token")):
            self.assertEqual(env[var], name)

    def test_journey_across_pods(self):
        email, pw, pair = self.register()
        st, pair, raw = self.call("POST", "/v1/auth/login", {"email": email, "password": pw})
        self.assertEqual(st, 200, raw)
        st, me, raw = self.call("GET", "/v1/accounts/me", token=pair["accessToken"])
        self.assertEqual(st, 200, raw)
        self.assertEqual(me["email"], email)
        self.assertEqual(me["id"], pair["accountId"])
        st, me, raw = self.call("PATCH", "/v1/accounts/me?updateMask=displayName",
                                {"displayName": "Moved Around"}, token=pair["accessToken"])
        self.assertEqual(st, 200, raw)
        self.assertEqual(me["displayName"], "Moved Around")
        # The same over gRPC, straight to the account pod.
        a = fixture.pb2("account")
        got = self.stack.stub("account").GetAccount(
            a.GetAccountRequest(id="me"), metadata=fixture.bearer(pair["accessToken"]),
            timeout=10)
        self.assertEqual(got.email, email)
        for n in ("token", "account", "auth", "catalog"):
            self.assertEqual(self.stack.health(n), "SERVING", n)
        self.assertEqual(self.call("GET", "/readyz")[0], 200)

    def test_pod_gone_then_back(self):
        import grpc     # here, not at the top: after enter_client (see setUpClass)
        st = self.stack
        email, pw, pair = self.register()
        access = pair["accessToken"]
        self.assertEqual(self.call("GET", "/v1/accounts/me", token=access)[0], 200)

        st.kill_service("account")
        self.net.remove_pod("account")
        try:
            # Each of the edge's HTTP threads (EDGE_IO_THREADS, 2) calls
            # the services over a channel of its own, and each channel
            # notices the lost pod on its own: the first request through
            # each thread may wait for that (new connections take the
            # threads in turn), the ones after fail fast.
            for _ in range(EDGE_IO_THREADS):
                t0 = time.monotonic()
                code, body, raw = self.call("GET", "/v1/accounts/me", token=access)
                took = time.monotonic() - t0
                self.assertEqual(code, 503, raw)
                self.assertEqual(body["code"], 14, raw)
                self.assertNotIn(self.net.addr("account"), body["message"])  # no plumbing leaks
                self.assertLess(took, FIRST_UNAVAILABLE_WITHIN_S, "first 503 took %.1f s" % took)
            for _ in range(2):
                t0 = time.monotonic()
                code, body, raw = self.call("GET", "/v1/accounts/me", token=access)
                took = time.monotonic() - t0
                self.assertEqual(code, 503, raw)
                self.assertLess(took, UNAVAILABLE_WITHIN_S, "503 took %.1f s" % took)

            # The others answer: token SERVING; auth answers too, and says
            # NOT_SERVING while a dependency of its own is gone.
            self.assertEqual(st.health("token"), "SERVING")
            self.assertEqual(st.wait_health("auth", "NOT_SERVING", timeout=15), "NOT_SERVING")
            self.assertEqual(self.call("GET", "/healthz")[0], 200)
            code, body, raw = self.call("GET", "/.well-known/jwks.json")
            self.assertEqual(code, 200, raw)
            self.assertTrue(body["keys"], raw)
            # What needs only auth and token still works end to end.
            code, pair2, raw = self.call("POST", "/v1/auth/refresh",
                                         {"refreshToken": pair["refreshToken"]})
            self.assertEqual(code, 200, raw)
            access = pair2["accessToken"]
            # What needs account fails fast, over gRPC too.
            au = fixture.pb2("auth")
            t0 = time.monotonic()
            with self.assertRaises(grpc.RpcError) as cm:
                st.stub("auth").Login(au.LoginRequest(email=email, password=pw), timeout=20)
            took = time.monotonic() - t0
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertLess(took, FIRST_UNAVAILABLE_WITHIN_S, "UNAVAILABLE took %.1f s" % took)
            took, got = self.wait_status(503, "GET", "/readyz", 10)
            self.assertEqual(got[0], 503, got[2])
            self.assertIn("AccountService", got[1]["message"])
        finally:
            self.net.add_pod("account")
            st.start_service("account")

        took, got = self.wait_status(200, "GET", "/v1/accounts/me", RECOVER_WITHIN_S,
                                     token=access)
        self.assertEqual(got[0], 200, got[2])
        self.assertEqual(got[1]["email"], email)
        took, got = self.wait_status(200, "GET", "/readyz", RECOVER_WITHIN_S)
        self.assertEqual(got[0], 200, got[2])
        self.assertEqual(st.wait_health("auth", "SERVING", timeout=RECOVER_WITHIN_S), "SERVING")
        code, _, raw = self.call("POST", "/v1/auth/login", {"email": email, "password": pw})
        self.assertEqual(code, 200, raw)


    def test_pod_back_at_another_address(self):
        """What a rescheduled pod does: same name, new address. The
        callers' channels re-resolve the name when the old address stops
        answering."""
        st = self.stack
        email, pw, pair = self.register()
        # The edge is connected to the old address (auth is too: it
        # watches account's health).
        self.assertEqual(self.call("GET", "/v1/accounts/me", token=pair["accessToken"])[0], 200)
        old = self.net.addr("account")
        st.kill_service("account")
        self.net.remove_pod("account")
        try:
            self.net.move_pod("account", self.net.spare_ip())
        finally:
            self.net.add_pod("account")
            st.start_service("account")
        new = self.net.addr("account")
        self.assertNotEqual(new, old)
        self.assertIn((new, st.ports["account"]), listening(st.pid("account")))
        # The edge's channel to account, and auth's (login reads the
        # account by email).
        took, got = self.wait_status(200, "GET", "/v1/accounts/me", RECOVER_WITHIN_S,
                                     token=pair["accessToken"])
        self.assertEqual(got[0], 200, got[2])
        self.assertEqual(got[1]["email"], email)
        took, got = self.wait_status(200, "POST", "/v1/auth/login", RECOVER_WITHIN_S,
                                     body={"email": email, "password": pw})
        self.assertEqual(got[0], 200, got[2])
        took, got = self.wait_status(200, "GET", "/readyz", RECOVER_WITHIN_S)
        self.assertEqual(got[0], 200, got[2])


def main():
    why = podnet.unavailable()
    if why:
        print("multihost: SKIPPED: %s" % why)
        sys.exit(SKIP)
    # SIGTERM ends the run like Ctrl-C: through the cleanups (a SIGKILL
    # leaves namespaces that the next run removes, see podnet.sweep_stale).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    fixture.main()


if __name__ == "__main__":
    main()
