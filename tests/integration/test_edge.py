#!/usr/bin/python3
"""estore-edge over real HTTP in front of the real token, account and auth
services (PostgreSQL and Redis started by fixture.py): the account journey
in JSON over HTTP/1.1 and h2c, the error mapping, headers, limits, and a
backend that goes away and comes back."""

import http.client
import json
import shutil
import subprocess
import time
import unittest
import uuid

import fixture

ORIGIN = "https://shop.example"


class EdgeCase(fixture.StackTestCase):
    EDGE_ENV = {
        "EDGE_CORS_ORIGINS": ORIGIN + ", https://admin.example",
        "EDGE_MAX_BODY_BYTES": "65536",
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
             timeout=15):
        """One request on a fresh connection: (status, headers, parsed JSON
        or None, raw body)."""
        c = http.client.HTTPConnection("127.0.0.1", self.stack.ports[fixture.EDGE],
                                       timeout=timeout)
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


if __name__ == "__main__":
    fixture.main()
