#!/usr/bin/python3
"""estore-edge over real HTTP in front of the real token, account and auth
services (PostgreSQL and Redis started by fixture.py): the account journey
in JSON over HTTP/1.1 and h2c, the error mapping, headers, limits, a
backend that goes away and comes back, and bearer tokens checked at the
edge (forged ones refused without a call, revocation within 1 s, fail
closed when the token service is away)."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import subprocess
import time
import unittest
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import fixture

ORIGIN = "https://shop.example"


class EdgeCase(fixture.StackTestCase):
    EDGE_ENV = {
        "EDGE_CORS_ORIGINS": ORIGIN + ", https://admin.example",
        "EDGE_MAX_BODY_BYTES": "65536",
        # The journeys register and log in more than the default 10 a
        # minute from one address; EdgeRateLimitTest tests the limits.
        "EDGE_RATE_LOGIN_PER_MIN": "1000",
    }

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.stack.start_service(fixture.EDGE, extra_env=cls.EDGE_ENV)
        except BaseException:
            cls.stack.failed = True
            cls.stack.close()
            raise

    def call(self, method, path, body=None, token=None, headers=None, raw=None,
             timeout=15, source=None):
        """One request on a fresh connection: (status, headers, parsed JSON
        or None, raw body). source: the client's address (any 127/8
        address reaches the edge's loopback port on Linux)."""
        c = http.client.HTTPConnection("127.0.0.1", self.stack.ports[fixture.EDGE],
                                       timeout=timeout,
                                       source_address=(source, 0) if source else None)
        h = {"Content-Type": "application/json"} if body is not None or raw is not None else {}
        if token:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return r.status, hdrs, parsed, payload

    def register(self, password="correct horse battery staple"):
        email = "edge-%s@example.com" % uuid.uuid4().hex[:12]
        st, _, pair, raw = self.call("POST", "/v1/auth/register",
                                     {"email": email, "password": password,
                                      "displayName": "Edge User"})
        self.assertEqual(st, 200, raw)
        return email, password, pair

    def bring_back(self, name, timeout=30):
        """Starts a stopped service and waits for /readyz: the other
        services reconnect to it on their own backoff, so SERVING alone
        does not mean the next test's calls get through."""
        self.stack.start_service(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call("GET", "/readyz")[0] == 200:
                return
            time.sleep(0.2)
        self.fail("/readyz stayed 503 after %s came back" % name)

    def assertError(self, got, status, code, message=None):
        st, hdrs, body, raw = got
        self.assertEqual(st, status, raw)
        self.assertEqual(hdrs.get("content-type"), "application/json")
        self.assertEqual(set(body), {"code", "message", "details"}, raw)
        self.assertEqual(body["code"], code, raw)
        if message:
            self.assertRegex(body["message"], message)


class JourneyTest(EdgeCase):
    def test_journey_over_http1(self):
        email, pw, pair = self.register()
        self.assertEqual(pair["tokenType"], "Bearer")
        self.assertTrue(pair["accessToken"] and pair["refreshToken"])
        self.assertIsInstance(pair["expiresIn"], str)   # int64 → string

        st, _, pair, raw = self.call("POST", "/v1/auth/login",
                                     {"email": email, "password": pw})
        self.assertEqual(st, 200, raw)
        access, refresh = pair["accessToken"], pair["refreshToken"]

        st, hdrs, me, raw = self.call("GET", "/v1/accounts/me", token=access)
        self.assertEqual(st, 200, raw)
        self.assertEqual(me["email"], email)
        self.assertEqual(me["roles"], ["ROLE_CUSTOMER"])
        self.assertNotIn("passwordHash", me)
        self.assertEqual(hdrs["cache-control"], "no-store")

        st, _, me, raw = self.call("PATCH", "/v1/accounts/me?updateMask=displayName",
                                   {"displayName": "Ada L."}, token=access)
        self.assertEqual(st, 200, raw)
        self.assertEqual(me["displayName"], "Ada L.")

        st, _, pair2, raw = self.call("POST", "/v1/auth/refresh", {"refreshToken": refresh})
        self.assertEqual(st, 200, raw)

        st, _, body, raw = self.call("POST", "/v1/auth/logout",
                                     {"refreshToken": pair2["refreshToken"]},
                                     token=pair2["accessToken"])
        self.assertEqual(st, 200, raw)
        self.assertEqual(body, {})

        got = self.call("GET", "/v1/accounts/me", token=pair2["accessToken"])
        self.assertError(got, 401, 16)
        self.assertEqual(got[1].get("www-authenticate"), "Bearer")
        self.assertError(self.call("POST", "/v1/auth/refresh",
                                   {"refreshToken": pair2["refreshToken"]}), 401, 16)
        # The first refresh token was spent by the rotation.
        self.assertError(self.call("POST", "/v1/auth/refresh", {"refreshToken": refresh}),
                         401, 16)

    def test_refresh_reuse_ends_the_session(self):
        _, _, pair = self.register()
        st, _, pair2, raw = self.call("POST", "/v1/auth/refresh",
                                      {"refreshToken": pair["refreshToken"]})
        self.assertEqual(st, 200, raw)
        # Presenting the rotated token again looks like theft: the whole
        # session goes, the new pair with it.
        self.assertError(self.call("POST", "/v1/auth/refresh",
                                   {"refreshToken": pair["refreshToken"]}), 401, 16)
        self.assertError(self.call("GET", "/v1/accounts/me", token=pair2["accessToken"]),
                         401, 16)

    def test_h2c(self):
        self.assertTrue(shutil.which("curl"), "curl (Debian package curl) is needed for h2c")
        email, pw, _ = self.register()
        out = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_version} %{http_code}",
             "-H", "Content-Type: application/json",
             "-d", json.dumps({"email": email, "password": pw}),
             self.stack.edge_url("/v1/auth/login")],
            capture_output=True, text=True, timeout=30, check=True).stdout
        body, _, tail = out.rpartition("\n")
        self.assertEqual(tail, "2 200", out)
        self.assertIn("accessToken", json.loads(body))

    def test_jwks_and_openapi(self):
        st, _, jwks, raw = self.call("GET", "/.well-known/jwks.json")
        self.assertEqual(st, 200, raw)
        self.assertTrue(jwks["keys"])
        self.assertEqual(jwks["keys"][0]["kty"], "EC")
        # A public route checks a token that is presented: the check calls
        # the token service from the same channel the route then uses.
        _, _, pair = self.register()
        st, _, jwks2, raw = self.call("GET", "/.well-known/jwks.json",
                                      token=pair["accessToken"])
        self.assertEqual(st, 200, raw)
        self.assertEqual(jwks2, jwks)
        self.assertError(self.call("GET", "/.well-known/jwks.json", token="x.y.z"), 401, 16)
        st, _, doc, raw = self.call("GET", "/openapi.json")
        self.assertEqual(st, 200)
        self.assertEqual(doc["openapi"], "3.0.3")
        self.assertIn("/v1/auth/login", doc["paths"])


class ErrorsTest(EdgeCase):
    def test_routing_errors(self):
        self.assertError(self.call("GET", "/v1/nothing"), 404, 5)
        got = self.call("PUT", "/v1/auth/login", {})
        self.assertError(got, 405, 12)
        self.assertEqual(got[1]["allow"], "POST")
        # Internal RPCs have no route: CreateAccount is not reachable.
        got = self.call("POST", "/v1/accounts", {"email": "x@example.com"})
        self.assertEqual(got[0], 405)
        self.assertError(self.call("GET", "/v1/accounts/a%zz"), 400, 3)

    def test_bad_json(self):
        for raw, message in ((b'{"email": ', "line 1"),
                             (b'{"email": 5, "password": "x"}', "email"),
                             (b'[1, 2]', ""),
                             (b'{"email": "a@example.com", "email": "b@example.com"}', ""),
                             (b'{"email": "\xff"}', "")):
            self.assertError(self.call("POST", "/v1/auth/login", raw=raw), 400, 3, message)

    def test_service_errors_pass_through(self):
        email, pw, _ = self.register()
        self.assertError(self.call("POST", "/v1/auth/register",
                                   {"email": email, "password": pw, "displayName": "Again"}),
                         409, 6)
        self.assertError(self.call("POST", "/v1/auth/login",
                                   {"email": email, "password": "wrong password!"}),
                         401, 16)
        self.assertError(self.call("POST", "/v1/auth/register",
                                   {"email": "short@example.com", "password": "short",
                                    "displayName": "S"}),
                         400, 3, "password")
        self.assertError(self.call("GET", "/v1/accounts/me"), 401, 16)
        got = self.call("GET", "/v1/accounts/me", token="not.a.jwt")
        self.assertError(got, 401, 16)
        self.assertError(self.call("GET", "/v1/accounts", token=self.login_token(email, pw)),
                         403, 7)

    def login_token(self, email, pw):
        st, _, pair, raw = self.call("POST", "/v1/auth/login", {"email": email, "password": pw})
        self.assertEqual(st, 200, raw)
        return pair["accessToken"]

    def test_content_type_and_body_limit(self):
        got = self.call("POST", "/v1/auth/login", raw=b'{}',
                        headers={"Content-Type": "text/plain"})
        self.assertEqual(got[0], 415, got[3])
        big = {"email": "a@example.com", "password": "x" * (70 * 1024)}
        self.assertEqual(self.call("POST", "/v1/auth/login", big)[0], 413)

    def test_query_errors(self):
        email, pw, _ = self.register()
        token = self.login_token(email, pw)
        self.assertError(self.call("PATCH", "/v1/accounts/me?noSuchField=1",
                                   {"displayName": "X"}, token=token), 400, 3, "noSuchField")
        self.assertError(self.call("PATCH", "/v1/accounts/me?updateMask=%zz",
                                   {"displayName": "X"}, token=token), 400, 3, "percent")
        # '+' in a query is a space: "display name" is no field path.
        self.assertError(self.call("PATCH", "/v1/accounts/me?updateMask=display+name",
                                   {"displayName": "X"}, token=token), 400, 3)


class HeadersTest(EdgeCase):
    def test_request_id_and_security_headers(self):
        st, hdrs, _, _ = self.call("GET", "/healthz", headers={"X-Request-Id": "abc-123"})
        self.assertEqual(st, 200)
        self.assertEqual(hdrs["x-request-id"], "abc-123")
        self.assertEqual(hdrs["x-content-type-options"], "nosniff")
        self.assertIn("default-src 'none'", hdrs["content-security-policy"])
        st, hdrs, _, _ = self.call("GET", "/healthz", headers={"X-Request-Id": "not {sane} at all"})
        self.assertRegex(hdrs["x-request-id"], r"^[0-9a-f]{32}$")

    def test_cors(self):
        st, hdrs, _, _ = self.call("OPTIONS", "/v1/auth/login",
                                   headers={"Origin": ORIGIN,
                                            "Access-Control-Request-Method": "POST"})
        self.assertEqual(st, 204)
        self.assertEqual(hdrs["access-control-allow-origin"], ORIGIN)
        self.assertIn("authorization", hdrs["access-control-allow-headers"])
        st, hdrs, _, _ = self.call("OPTIONS", "/v1/auth/login",
                                   headers={"Origin": "https://evil.example",
                                            "Access-Control-Request-Method": "POST"})
        self.assertEqual(st, 403)
        self.assertNotIn("access-control-allow-origin", hdrs)
        st, hdrs, _, _ = self.call("GET", "/healthz", headers={"Origin": ORIGIN})
        self.assertEqual(hdrs["access-control-allow-origin"], ORIGIN)


def prometheus(text):
    """{(name, frozenset(labels.items())): value} of a text exposition;
    fails on any line that is not a comment, blank or a sample."""
    import re
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = sample.match(line)
        if not m:
            raise AssertionError("not a Prometheus sample: %r" % line)
        labels = dict(label.findall(m.group(2) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


class ObservabilityTest(EdgeCase):
    METRICS = True
    def metrics(self):
        st, hdrs, _, raw = self.call("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(hdrs["content-type"].startswith("text/plain; version=0.0.4"))
        return prometheus(raw.decode())

    @staticmethod
    def value(m, name, **labels):
        return m.get((name, frozenset(labels.items())), 0.0)

    def test_metrics_count_requests_by_route_and_status(self):
        _, _, pair = self.register()
        route = "GET /v1/accounts/{id}"  # "me" is an id
        before = self.metrics()
        for _ in range(3):
            self.assertEqual(self.call("GET", "/v1/accounts/me", token=pair["accessToken"])[0], 200)
        self.assertEqual(self.call("GET", "/v1/accounts/me")[0], 401)
        self.assertEqual(self.call("GET", "/no/such/route")[0], 404)
        after = self.metrics()
        delta = lambda name, **l: self.value(after, name, **l) - self.value(before, name, **l)
        self.assertEqual(delta("edge_http_requests_total", route=route, code="200"), 3)
        self.assertEqual(delta("edge_http_requests_total", route=route, code="401"), 1)
        self.assertEqual(delta("edge_http_requests_total", route="unrouted", code="404"), 1)
        self.assertEqual(delta("edge_http_request_duration_seconds_count", route=route), 4)
        self.assertEqual(delta("edge_http_request_duration_seconds_bucket", route=route, le="+Inf"), 4)
        # Buckets are cumulative and end at the count.
        bounds = sorted((float(dict(k[1])["le"]), v) for k, v in after.items()
                        if k[0] == "edge_http_request_duration_seconds_bucket"
                        and dict(k[1])["route"] == route)
        counts = [v for _, v in bounds]
        self.assertEqual(counts, sorted(counts))
        self.assertEqual(counts[-1], self.value(after, "edge_http_request_duration_seconds_count", route=route))
        self.assertEqual(delta("edge_upstream_responses_total",
                               service="estore.account.v1.AccountService", code="OK"), 3)
        # This very request is the one in flight.
        self.assertEqual(self.value(after, "edge_http_requests_in_flight"), 1)
        self.assertGreaterEqual(self.value(after, "edge_http_connections_open"), 1)
        self.assertIn(("edge_upstream_errors_total",
                       frozenset({"service": "estore.account.v1.AccountService"}.items())), after)

    def test_services_serve_their_own_metrics(self):
        def scrape(name, path="/metrics", method="GET"):
            c = http.client.HTTPConnection("127.0.0.1", self.stack.metrics_ports[name], timeout=10)
            c.request(method, path)
            r = c.getresponse()
            body = r.read().decode()
            c.close()
            return r.status, r.getheader("content-type"), body

        _, _, pair = self.register()
        labels = dict(grpc_type="unary", grpc_service="estore.account.v1.AccountService",
                      grpc_method="GetAccount", grpc_code="OK")
        st, ctype, text = scrape("account")
        self.assertEqual(st, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"))
        before = self.value(prometheus(text), "grpc_server_handled_total", **labels)
        for _ in range(2):
            self.assertEqual(self.call("GET", "/v1/accounts/me", token=pair["accessToken"])[0], 200)
        after = prometheus(scrape("account")[2])
        self.assertEqual(self.value(after, "grpc_server_handled_total", **labels) - before, 2)
        hist = dict(grpc_type="unary", grpc_service="estore.account.v1.AccountService",
                    grpc_method="GetAccount")
        self.assertGreaterEqual(self.value(after, "grpc_server_handling_seconds_count", **hist), 2)
        self.assertGreater(self.value(after, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(self.value(after, "process_open_fds"), 3)
        # Login went through auth, which called account and token.
        auth = prometheus(scrape("auth")[2])
        self.assertGreaterEqual(self.value(auth, "grpc_server_handled_total", grpc_type="unary",
                                           grpc_service="estore.auth.v1.AuthService",
                                           grpc_method="Register", grpc_code="OK"), 1)
        self.assertIn(("grpc_server_connections_open", frozenset()), prometheus(scrape("token")[2]))
        self.assertEqual(scrape("account", "/other")[0], 404)
        self.assertEqual(scrape("account", method="POST")[0], 501)  # evhttp: GET/HEAD only

    def test_access_log_line(self):
        rid = "access-" + uuid.uuid4().hex[:16]
        st, _, _, _ = self.call("GET", "/v1/accounts/me", headers={"X-Request-Id": rid,
                                                                     "User-Agent": "estore-test/1"})
        self.assertEqual(st, 401)
        deadline = time.monotonic() + 5
        line = None
        while line is None and time.monotonic() < deadline:
            for text in self.stack.log(fixture.EDGE).splitlines():
                if rid in text and '"component":"access"' in text:
                    line = json.loads(text)
            time.sleep(0.05)
        self.assertIsNotNone(line, "no access-log line for %s" % rid)
        self.assertEqual(line["request_id"], rid)
        self.assertEqual(line["method"], "GET")
        self.assertEqual(line["path"], "/v1/accounts/me")
        self.assertEqual(line["status"], 401)
        self.assertEqual(line["protocol"], "HTTP/1.1")
        self.assertEqual(line["scheme"], "http")
        self.assertEqual(line["user_agent"], "estore-test/1")
        self.assertTrue(line["peer"].startswith("127.0.0.1:"))
        self.assertIsInstance(line["duration_us"], int)
        self.assertGreater(line["bytes"], 0)
        self.assertEqual(line["level"], "info")


class BackendDownTest(EdgeCase):
    def test_backend_down_then_back(self):
        email, pw, pair = self.register()
        st, _, body, _ = self.call("GET", "/readyz")
        self.assertEqual(st, 200, body)
        self.stack.stop_service("account")
        try:
            t0 = time.monotonic()
            got = self.call("GET", "/v1/accounts/me", token=pair["accessToken"])
            self.assertError(got, 503, 14)
            self.assertNotIn("127.0.0.1", got[2]["message"])   # no plumbing leaks
            self.assertLess(time.monotonic() - t0, 10)
            st, _, body, _ = self.call("GET", "/readyz")
            self.assertEqual(st, 503)
            self.assertIn("AccountService", body["message"])
        finally:
            self.stack.start_service("account")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.call("GET", "/v1/accounts/me", token=pair["accessToken"])[0] == 200:
                break
            time.sleep(0.2)
        else:
            self.fail("the edge did not recover after the account service came back")
        # auth depends on account too: its health follows at its watcher's
        # next round.
        while time.monotonic() < deadline + 10:
            if self.call("GET", "/readyz")[0] == 200:
                break
            time.sleep(0.2)
        else:
            self.fail("/readyz stayed 503 after the account service came back")


# ---- JOSE helpers (see test_token.py) -------------------------------------------

def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def craft(key, header, claims):
    """A compact JWS signed ES256 with `key`, whatever the header says."""
    si = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(si.encode(), ec.ECDSA(hashes.SHA256())))
    return si + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


class EdgeAuthTest(EdgeCase):
    """The edge's own verdict on bearer tokens. A 401 while the account
    service is stopped can only come from the edge; a 503 then means the
    edge let the token through."""

    def signing_key(self):
        with open(os.path.join(self.stack.key_dir, "test-1.pem"), "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)

    def forged(self, access):
        """Tokens each wrong in one way, and a control built the same way
        that must pass (or the refusals would prove nothing)."""
        h64, p64, _ = access.split(".")
        header, claims = json.loads(unb64u(h64)), json.loads(unb64u(p64))
        key = self.signing_key()
        rogue = ec.generate_private_key(ec.SECP256R1())
        now = int(time.time())
        tampered = dict(claims, roles=["ROLE_ADMIN"])
        hs_input = b64u(json.dumps(dict(header, alg="HS256")).encode()) + "." + p64
        hs_sig = hmac.new(b"secret", hs_input.encode(), hashlib.sha256).digest()
        return craft(key, header, claims), {
            "tampered payload": h64 + "." + b64u(json.dumps(tampered).encode())
                                + "." + access.split(".")[2],
            "alg none": b64u(json.dumps(dict(header, alg="none")).encode())
                        + "." + p64 + ".",
            "HS256": hs_input + "." + b64u(hs_sig),
            "expired": craft(key, header, dict(claims, iat=now - 7200, nbf=now - 7200,
                                               exp=now - 3600)),
            "unknown kid": craft(rogue, dict(header, kid="rogue-1"), claims),
            "wrong issuer": craft(key, header, dict(claims, iss="someone-else")),
        }

    def assertUnauthenticated(self, got, what=""):
        self.assertError(got, 401, 16)
        self.assertEqual(got[1].get("www-authenticate"), "Bearer", what)

    def test_forged_tokens_refused_at_the_edge(self):
        _, _, pair = self.register()
        control, forged = self.forged(pair["accessToken"])
        self.stack.stop_service("account")
        try:
            for what, token in forged.items():
                with self.subTest(what):
                    self.assertUnauthenticated(
                        self.call("GET", "/v1/accounts/me", token=token), what)
            # No token, or not a bearer one: refused before any call.
            self.assertUnauthenticated(self.call("GET", "/v1/accounts/me"))
            for header in ("Basic dXNlcjpwdw==", "Bearer", "Bearer a b", pair["accessToken"]):
                with self.subTest(header):
                    self.assertUnauthenticated(self.call(
                        "GET", "/v1/accounts/me", headers={"Authorization": header}))
            # A public route is open, but a token presented to it must hold.
            self.assertUnauthenticated(self.call("POST", "/v1/auth/login",
                                                 {"email": "x@example.com", "password": "x"},
                                                 token=forged["expired"]))
            # The control and the real token pass the edge: the account
            # service being away is what answers.
            self.assertError(self.call("GET", "/v1/accounts/me", token=control), 503, 14)
            self.assertError(self.call("GET", "/v1/accounts/me", token=pair["accessToken"]),
                             503, 14)
        finally:
            self.bring_back("account")

    def test_revoked_token_refused_within_one_second(self):
        _, _, pair = self.register()
        access = pair["accessToken"]
        st, _, _, raw = self.call("GET", "/v1/accounts/me", token=access)
        self.assertEqual(st, 200, raw)          # the edge now caches "not revoked"
        st, _, _, raw = self.call("POST", "/v1/auth/logout",
                                  {"refreshToken": pair["refreshToken"]}, token=access)
        self.assertEqual(st, 200, raw)
        revoked_at = time.monotonic()
        self.stack.stop_service("account")
        try:
            wait = revoked_at + 1.1 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            got = self.call("GET", "/v1/accounts/me", token=access)
            self.assertUnauthenticated(got)
            self.assertRegex(got[2]["message"], "revoked|session")
        finally:
            self.bring_back("account")


class EdgeAuthTokenDownTest(EdgeCase):
    def test_token_service_down_fails_closed(self):
        _, _, pair = self.register()
        # The edge holds the JWKS (a malformed token is judged locally);
        # the registered token was never shown to the edge, so nothing
        # is cached for it.
        self.assertError(self.call("GET", "/v1/accounts/me", token="x.y.z"), 401, 16)
        self.stack.stop_service("token")
        try:
            got = self.call("GET", "/v1/accounts/me", token=pair["accessToken"])
            self.assertError(got, 503, 14)
            self.assertNotIn("www-authenticate", got[1])
        finally:
            self.bring_back("token")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.call("GET", "/v1/accounts/me", token=pair["accessToken"])[0] == 200:
                break
            time.sleep(0.2)
        else:
            self.fail("the edge did not accept the token after the token service came back")


class EdgeRateLimitTest(EdgeCase):
    """Token buckets in Redis at the edge: per client address for Login and
    Register, per account with a token, per address without one. Each
    test uses its own client address or accounts, so buckets never
    overlap between tests."""

    EDGE_ENV = dict(EdgeCase.EDGE_ENV,
                    EDGE_RATE_LOGIN_PER_MIN="3",
                    EDGE_RATE_ACCOUNT_PER_MIN="5",
                    EDGE_RATE_ANON_PER_MIN="120")

    def login(self, source):
        return self.call("POST", "/v1/auth/login",
                         {"email": "rl-%s@example.com" % uuid.uuid4().hex[:12],
                          "password": "not the password"}, source=source)

    def assertLimited(self, got):
        self.assertError(got, 429, 8, "rate limit exceeded")
        self.assertGreaterEqual(int(got[1]["retry-after"]), 1)

    def drain_anonymous(self, source):
        """Spends the address's anonymous bucket (120 a minute, burst 120):
        the 429 that ends it."""
        for _ in range(400):
            got = self.call("GET", "/.well-known/jwks.json", source=source)
            if got[0] != 200:
                self.assertLimited(got)
                return got
        self.fail("no 429 after 400 anonymous requests")

    def test_browsing_spends_no_login_budget(self):
        # One address, two buckets: a shopper who browsed a few pages can
        # still sign in, and a login flood does not stop browsing.
        for i in range(6):
            got = self.call("GET", "/.well-known/jwks.json", source="127.0.0.12")
            self.assertEqual(got[0], 200, "request %d" % (i + 1))
        for i in range(3):
            st, _, _, raw = self.login("127.0.0.12")
            self.assertEqual(st, 401, "login %d: %r" % (i + 1, raw))
        self.assertLimited(self.login("127.0.0.12"))
        self.assertEqual(self.call("GET", "/.well-known/jwks.json", source="127.0.0.12")[0], 200)

    def test_login_limited_per_address(self):
        for i in range(3):
            st, _, _, raw = self.login("127.0.0.2")
            self.assertEqual(st, 401, "login %d: %r" % (i + 1, raw))
        got = self.login("127.0.0.2")
        self.assertLimited(got)
        self.assertIn("retry-after", got[1])
        # Register shares the bucket; another address has its own.
        self.assertLimited(self.call("POST", "/v1/auth/register",
                                     {"email": "rl-x@example.com", "password": "x" * 20},
                                     source="127.0.0.2"))
        self.assertEqual(self.login("127.0.0.3")[0], 401)
        # The bucket lives in Redis, and expires after two refills (3 a
        # minute: 2 * 60 s) of idleness.
        ttl = int(self.stack.redis("PTTL", "edge:rl:login:127.0.0.2"))
        self.assertGreater(ttl, 0)
        self.assertLessEqual(ttl, 120000)

    def test_account_limited_per_account(self):
        pair, _, _ = self.stack.register()
        other, _, _ = self.stack.register()
        for i in range(5):
            st, _, _, raw = self.call("GET", "/v1/accounts/me", token=pair.access_token)
            self.assertEqual(st, 200, "request %d: %r" % (i + 1, raw))
        self.assertLimited(self.call("GET", "/v1/accounts/me", token=pair.access_token))
        st, _, _, raw = self.call("GET", "/v1/accounts/me", token=other.access_token)
        self.assertEqual(st, 200, raw)

    def test_bucket_refills(self):
        got = self.drain_anonymous("127.0.0.4")
        # 120 a minute: a token every 0.5 s.
        self.assertEqual(got[1]["retry-after"], "1")
        deadline = time.monotonic() + 3
        time.sleep(0.5)
        while True:
            st = self.call("GET", "/.well-known/jwks.json", source="127.0.0.4")[0]
            if st == 200:
                break
            self.assertLess(time.monotonic(), deadline, "no token after 3 s")
            time.sleep(0.1)
        # The token is taken: the next one waits again.
        self.assertLimited(self.call("GET", "/.well-known/jwks.json", source="127.0.0.4"))

    def test_unlimited_endpoints(self):
        self.drain_anonymous("127.0.0.5")
        for path in ("/healthz", "/readyz", "/openapi.json"):
            with self.subTest(path):
                # /readyz may say 503 while the services reconnect to
                # Redis (test_redis_down_fails_open): not limited is the
                # point.
                st = self.call("GET", path, source="127.0.0.5")[0]
                self.assertNotEqual(st, 429)
                if path != "/readyz":
                    self.assertEqual(st, 200)
        st, _, _, _ = self.call("OPTIONS", "/v1/auth/login", source="127.0.0.5",
                                headers={"Origin": ORIGIN,
                                         "Access-Control-Request-Method": "POST"})
        self.assertEqual(st, 204)

    def test_redis_down_fails_open(self):
        self.drain_anonymous("127.0.0.6")
        self.stack.stop_redis()
        try:
            for i in range(5):
                st, _, _, raw = self.call("GET", "/.well-known/jwks.json",
                                          source="127.0.0.6")
                self.assertEqual(st, 200, "request %d: %r" % (i + 1, raw))
        finally:
            self.stack.start_redis()
            # The services reconnect on their own backoff.
            deadline = time.monotonic() + 30
            while self.call("GET", "/readyz")[0] != 200:
                if time.monotonic() > deadline:
                    self.fail("/readyz stayed 503 after Redis came back")
                time.sleep(0.2)
        self.assertRegex(self.stack.log_tail(fixture.EDGE, 5000),
                         "rate limits not enforced")
        # Back: the bucket (saved with Redis) is still spent.
        deadline = time.monotonic() + 10
        while self.call("GET", "/.well-known/jwks.json", source="127.0.0.6")[0] != 429:
            self.assertLess(time.monotonic(), deadline, "limits not back after Redis")
            time.sleep(0.05)


class EdgeTrustedProxyTest(EdgeCase):
    """Behind a proxy, X-Forwarded-For names the client: from trusted
    peers only (EDGE_TRUSTED_PROXIES), and it keys the address limits."""

    EDGE_ENV = dict(EdgeCase.EDGE_ENV,
                    EDGE_RATE_LOGIN_PER_MIN="2",
                    EDGE_TRUSTED_PROXIES="127.0.0.1/32, 10.0.0.0/8")

    def login(self, source, xff=None):
        return self.call("POST", "/v1/auth/login",
                         {"email": "xff-%s@example.com" % uuid.uuid4().hex[:12],
                          "password": "not the password"}, source=source,
                         headers={"X-Forwarded-For": xff} if xff else None)

    def test_forwarded_client_gets_its_own_bucket(self):
        for _ in range(2):
            self.assertEqual(self.login("127.0.0.1", "203.0.113.7")[0], 401)
        self.assertEqual(self.login("127.0.0.1", "203.0.113.7")[0], 429)
        # Another client behind the same proxy, and a trusted hop after it.
        self.assertEqual(self.login("127.0.0.1", "203.0.113.8")[0], 401)
        self.assertEqual(self.login("127.0.0.1", "203.0.113.7, 10.1.2.3")[0], 429)
        # What the client itself wrote first does not count.
        self.assertEqual(self.login("127.0.0.1", "198.51.100.1, 203.0.113.7")[0], 429)

    def test_bad_proxy_lists_stop_the_start(self):
        for name, var in ((fixture.EDGE, "EDGE_TRUSTED_PROXIES"),
                          ("auth", "AUTH_TRUSTED_PROXIES")):
            env = self.stack.env(name, {var: "10.0.0.0/8, not-a-network"})
            p = subprocess.run([fixture.binary_path(name)], env=env,
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 2, (name, p.stdout[-500:]))
            self.assertIn(var.encode(), p.stdout + p.stderr)
            self.assertIn(b"not-a-network", p.stdout + p.stderr)

    def test_header_from_an_untrusted_peer_is_ignored(self):
        for i in range(2):
            self.assertEqual(self.login("127.0.0.21", "203.0.113.%d" % (50 + i))[0], 401)
        self.assertEqual(self.login("127.0.0.21", "203.0.113.99")[0], 429)

    def test_access_log_names_the_client(self):
        rid = "xff-" + uuid.uuid4().hex[:16]
        self.call("GET", "/healthz", headers={"X-Request-Id": rid,
                                              "X-Forwarded-For": "192.0.2.55"})
        deadline, line = time.monotonic() + 5, None
        while line is None and time.monotonic() < deadline:
            for text in self.stack.log(fixture.EDGE).splitlines():
                if rid in text and '"component":"access"' in text:
                    line = json.loads(text)
            time.sleep(0.05)
        self.assertIsNotNone(line)
        self.assertEqual(line["client"], "192.0.2.55")
        self.assertTrue(line["peer"].startswith("127.0.0.1:"))


class AuthBehindEdgeTest(EdgeCase):
    """estore-auth's per-address login throttle behind the edge: the edge
    names the client (x-forwarded-for), auth believes its trusted callers
    only (AUTH_TRUSTED_PROXIES), so one client's failures do not lock out
    everyone who comes through the same edge."""

    SERVICE_ENV = {"auth": {"AUTH_LOGIN_IP_MAX_FAILURES": "3",
                            "AUTH_TRUSTED_PROXIES": "127.0.0.0/8"}}

    def failed_login(self, source):
        return self.call("POST", "/v1/auth/login",
                         {"email": "nobody-%s@example.com" % uuid.uuid4().hex[:12],
                          "password": "not the password"}, source=source)

    def test_throttle_counts_the_client_not_the_edge(self):
        for i in range(3):
            st, _, _, raw = self.failed_login("127.0.0.31")
            self.assertEqual(st, 401, "attempt %d: %r" % (i + 1, raw))
        got = self.failed_login("127.0.0.31")
        self.assertEqual(got[0], 429, got[3])
        self.assertIn("retry-after", got[1])
        # Another client through the same edge is not locked out.
        self.assertEqual(self.failed_login("127.0.0.32")[0], 401)


class EdgeRateLeaseTest(EdgeCase):
    """Busy keys take tokens from Redis a few at a time (ratelimit.c's
    leases): fewer round trips, never more than the limit."""

    EDGE_ENV = dict(EdgeCase.EDGE_ENV, EDGE_RATE_ANON_PER_MIN="600")

    def evalsha_calls(self):
        for line in self.stack.redis("INFO", "commandstats").decode().splitlines():
            if line.startswith("cmdstat_evalsha:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def test_leases_save_round_trips_and_keep_the_limit(self):
        before, t0 = self.evalsha_calls(), time.monotonic()
        for i in range(160):
            st, _, _, raw = self.call("GET", "/.well-known/jwks.json", source="127.0.0.9")
            self.assertEqual(st, 200, "request %d: %r" % (i + 1, raw))
        calls = self.evalsha_calls() - before
        # 600 a minute leases 16 tokens a take: 10 takes for 160 requests
        # (a few more if a lease lapsed while the machine was slow).
        self.assertLessEqual(calls, 40)
        self.assertGreaterEqual(calls, 10)
        tokens = float(self.stack.redis("HGET", "edge:rl:anon:127.0.0.9", "tokens").decode())
        # Every request's token came out of the bucket (which refills 10 a
        # second meanwhile).
        self.assertLessEqual(tokens, 600 - 160 + 10 * (time.monotonic() - t0))

    def test_concurrent_requests_share_one_fetch(self):
        from concurrent.futures import ThreadPoolExecutor
        before = self.evalsha_calls()
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(
                lambda _: self.call("GET", "/.well-known/jwks.json", source="127.0.0.11")[0],
                range(320)))
        self.assertEqual(codes, [200] * 320)
        # Requests arriving while a fetch is under way wait for it rather
        # than each asking Redis: about one call per 16 requests.
        self.assertLessEqual(self.evalsha_calls() - before, 80)

    def test_the_limit_holds_with_leases(self):
        allowed, t0 = 0, time.monotonic()
        for _ in range(700):
            st = self.call("GET", "/.well-known/jwks.json", source="127.0.0.10")[0]
            if st == 200:
                allowed += 1
            else:
                self.assertEqual(st, 429)
        elapsed = time.monotonic() - t0
        # The burst, plus what refilled meanwhile (10 a second), never more.
        self.assertGreaterEqual(allowed, 600)
        self.assertLessEqual(allowed, 600 + 10 * elapsed + 1)


class EdgeDeadlineTest(EdgeCase):
    EDGE_ENV = dict(EdgeCase.EDGE_ENV, EDGE_REQUEST_TIMEOUT_MS="1000")

    def test_backend_that_hangs_gets_504(self):
        import os
        import signal
        _, _, pair = self.register()
        self.assertEqual(self.call("GET", "/v1/accounts/me", token=pair["accessToken"])[0], 200)
        # A paused account service accepts the call and never answers: the
        # edge's deadline ends it (and was sent on as grpc-timeout).
        pid = self.stack.pid("account")
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            got = self.call("GET", "/v1/accounts/me", token=pair["accessToken"])
            elapsed = time.monotonic() - t0
        finally:
            os.kill(pid, signal.SIGCONT)
        self.assertError(got, 504, 4)
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 5)
        deadline = time.monotonic() + 10
        while self.call("GET", "/v1/accounts/me", token=pair["accessToken"])[0] != 200:
            self.assertLess(time.monotonic(), deadline, "no recovery after SIGCONT")
            time.sleep(0.1)

    def test_client_deadline_is_honoured(self):
        import signal
        _, _, pair = self.register()
        token = pair["accessToken"]
        self.assertError(self.call("GET", "/v1/accounts/me", token=token,
                                   headers={"grpc-timeout": "soon"}), 400, 3, "grpc-timeout")
        self.assertError(self.call("GET", "/v1/accounts/me", token=token,
                                   headers={"grpc-timeout": "123456789m"}), 400, 3)
        # A longer wish than the edge allows is cut to the edge's limit.
        self.assertEqual(self.call("GET", "/v1/accounts/me", token=token,
                                   headers={"grpc-timeout": "1H"})[0], 200)
        pid = self.stack.pid("account")
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            got = self.call("GET", "/v1/accounts/me", token=token,
                            headers={"grpc-timeout": "200m"})
            elapsed = time.monotonic() - t0
        finally:
            os.kill(pid, signal.SIGCONT)
        self.assertError(got, 504, 4)
        self.assertGreaterEqual(elapsed, 0.15)
        self.assertLess(elapsed, 0.9, "the client's 200 ms were not honoured")


class EdgeDeadlinePropagationTest(EdgeCase):
    """What the service is given, seen by a third-party gRPC server (Python
    grpcio) standing in for the account service: the deadline as
    grpc-timeout, the client's Authorization and the request id."""
    EDGE_ENV = dict(EdgeCase.EDGE_ENV, EDGE_REQUEST_TIMEOUT_MS="7000")

    @classmethod
    def setUpClass(cls):
        from concurrent import futures
        import grpc
        fixture.load_stubs()
        acc, acc_grpc = fixture.pb2("account"), fixture.pb2_grpc("account")

        class Standin(acc_grpc.AccountServiceServicer):
            def GetAccount(self, request, context):
                md = dict(context.invocation_metadata())
                # display_name: the seconds left; email: what came along.
                return acc.Account(id=request.id,
                                   display_name="%.3f" % context.time_remaining(),
                                   email="%s|%s" % (md.get("x-request-id", ""),
                                                    md.get("authorization", "")))

        cls.standin = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        acc_grpc.add_AccountServiceServicer_to_server(Standin(), cls.standin)
        port = cls.standin.add_insecure_port("127.0.0.1:0")
        cls.standin.start()
        cls.EDGE_ENV = dict(cls.EDGE_ENV, ACCOUNT_API_PORT=str(port))
        try:
            super().setUpClass()
        except BaseException:
            cls.standin.stop(0)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.standin.stop(0)

    def test_deadline_token_and_request_id_reach_the_service(self):
        _, _, pair = self.register()
        token = pair["accessToken"]
        st, _, body, raw = self.call("GET", "/v1/accounts/me", token=token,
                                     headers={"X-Request-Id": "deadline-check-1"})
        self.assertEqual(st, 200, raw)
        left = float(body["displayName"])
        self.assertGreater(left, 5.0)
        self.assertLessEqual(left, 7.0)
        self.assertEqual(body["email"], "deadline-check-1|Bearer " + token)
        st, _, body, raw = self.call("GET", "/v1/accounts/me", token=token,
                                     headers={"grpc-timeout": "2S"})
        self.assertEqual(st, 200, raw)
        left = float(body["displayName"])
        self.assertGreater(left, 0.5)
        self.assertLessEqual(left, 2.0)


if __name__ == "__main__":
    fixture.main()
