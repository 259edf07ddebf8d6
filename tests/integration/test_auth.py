"""Integration tests of estore-auth against the real account and token
services, PostgreSQL 15 and Redis, all started by fixture.py.

Run by ctest (see CMakeLists.txt here) or by hand:
    /usr/bin/python3 tests/integration/test_auth.py \
        --account BUILD/services/account/estore-account \
        --token BUILD/services/token/estore-token \
        --auth BUILD/services/auth/estore-auth [-k pattern]

The throttle runs with small thresholds here (AUTH_LOGIN_MAX_FAILURES,
AUTH_LOGIN_IP_MAX_FAILURES, AUTH_LOGIN_BACKOFF_BASE_MS are ordinary
configuration), so waiting out a back-off takes a second, not minutes.
"""

import concurrent.futures
import secrets
import time
import unittest

import fixture

import grpc

AUTH = "/estore.auth.v1.AuthService/"
IP_KEY = "auth:fail:ip:127.0.0.1"


def A():
    return fixture.pb2("auth")


def ACC():
    return fixture.pb2("account")


def unique_email(prefix="user"):
    return "%s-%s@example.com" % (prefix, secrets.token_hex(6))


def strong_password():
    return "pw-" + secrets.token_urlsafe(18)


# ---- raw protobuf, for what the Python library refuses to build -------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(num, data):
    """A length-delimited field with raw bytes (e.g. invalid UTF-8)."""
    return _varint(num << 3 | 2) + _varint(len(data)) + data


class AuthCase(fixture.StackTestCase):
    SERVICES = ("token", "account", "auth")

    def setUp(self):
        # Failures from one test must not throttle the next by address
        # (every test calls from 127.0.0.1).
        self.stack.redis("DEL", IP_KEY)

    # -- helpers --

    def auth(self):
        return self.stack.stub("auth")

    def account(self):
        return self.stack.stub("account")

    def raw(self, method, body, metadata=None, timeout=10):
        """Calls an AuthService method with raw request bytes."""
        call = self.stack.channel("auth").unary_unary(AUTH + method)
        return call(body, metadata=metadata, timeout=timeout)

    def login(self, email, password, timeout=20):
        return self.auth().Login(A().LoginRequest(email=email, password=password),
                                 timeout=timeout)

    def me(self, access_token):
        return self.account().GetAccount(ACC().GetAccountRequest(id="me"),
                                         metadata=fixture.bearer(access_token),
                                         timeout=10)

    def assertAccessRevoked(self, access_token):
        """The token service refuses the token at once; services that ask it
        (through authn.c's one-second cache of positive answers) refuse it
        within that second."""
        T = fixture.pb2("token")
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.stack.stub("token").ValidateToken,
                        T.ValidateTokenRequest(access_token=access_token), timeout=10)

        def refused():
            try:
                self.me(access_token)
                return False
            except grpc.RpcError as e:
                return e.code() == grpc.StatusCode.UNAUTHENTICATED
        self.assertTrue(fixture.wait_until(refused, 3), "account service still accepts it")

    def assertCode(self, code, fn, *args, msg_contains=None, **kw):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        if msg_contains is not None:
            self.assertIn(msg_contains, cm.exception.details())
        return cm.exception


class AuthTest(AuthCase):
    SERVICE_ENV = {"auth": {
        "AUTH_LOGIN_MAX_FAILURES": "3",
        "AUTH_LOGIN_IP_MAX_FAILURES": "8",
        "AUTH_LOGIN_BACKOFF_BASE_MS": "1000",
    }}

    def test_journey(self):
        email, pw = unique_email(), strong_password()
        reg = self.auth().Register(A().RegisterRequest(
            email=email, password=pw, display_name="Journey"), timeout=20)
        self.assertEqual(reg.token_type, "Bearer")
        self.assertGreater(reg.expires_in, 0)
        self.assertTrue(reg.access_token and reg.refresh_token and reg.account_id)

        pair = self.login(email, pw)
        self.assertEqual(pair.account_id, reg.account_id)
        self.assertEqual(pair.token_type, "Bearer")

        acct = self.me(pair.access_token)
        self.assertEqual(acct.id, reg.account_id)
        self.assertEqual(acct.email, email)
        self.assertEqual(acct.display_name, "Journey")

        new = self.auth().Refresh(A().RefreshRequest(refresh_token=pair.refresh_token),
                                  timeout=10)
        self.assertEqual(new.account_id, reg.account_id)
        self.assertNotEqual(new.refresh_token, pair.refresh_token)
        self.assertEqual(self.me(new.access_token).id, reg.account_id)
        # Rotation: the old refresh token is spent.
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.auth().Refresh,
                        A().RefreshRequest(refresh_token=pair.refresh_token), timeout=10)
        # ... and presenting it again revoked the family (reuse detection).
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.auth().Refresh,
                        A().RefreshRequest(refresh_token=new.refresh_token), timeout=10)

        # A fresh session, then log it out.
        s = self.login(email, pw)
        self.me(s.access_token)
        self.auth().Logout(A().LogoutRequest(refresh_token=s.refresh_token),
                           metadata=fixture.bearer(s.access_token), timeout=10)
        self.assertAccessRevoked(s.access_token)
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.auth().Refresh,
                        A().RefreshRequest(refresh_token=s.refresh_token), timeout=10)
        # Logging out twice: the access token is gone, so is the call.
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.auth().Logout,
                        A().LogoutRequest(), metadata=fixture.bearer(s.access_token),
                        timeout=10)
        # The registration's session was never touched.
        self.me(reg.access_token)

    def test_logout_without_refresh_token_revokes_access_only(self):
        pair, email, pw = self.stack.register()
        self.auth().Logout(A().LogoutRequest(), metadata=fixture.bearer(pair.access_token),
                           timeout=10)
        self.assertAccessRevoked(pair.access_token)
        new = self.auth().Refresh(A().RefreshRequest(refresh_token=pair.refresh_token),
                                  timeout=10)
        self.me(new.access_token)

    def test_duplicate_register(self):
        pair, email, pw = self.stack.register()
        e = self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.auth().Register,
                            A().RegisterRequest(email=email, password=strong_password(),
                                                display_name="Again"), timeout=20)
        self.assertNotIn("SQL", e.details())
        # Case-insensitively the same email.
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.auth().Register,
                        A().RegisterRequest(email=email.upper(), password=strong_password(),
                                            display_name="Again"), timeout=20)

    def test_register_invalid_fields_pass_through(self):
        e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.auth().Register,
                            A().RegisterRequest(email="not-an-email", password=strong_password(),
                                                display_name="X"), timeout=20)
        self.assertTrue(e.details().startswith("email"), e.details())
        e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.auth().Register,
                            A().RegisterRequest(email=unique_email(), password=strong_password(),
                                                display_name="x" * 101), timeout=20)
        self.assertTrue(e.details().startswith("display_name"), e.details())

    def test_sql_metacharacters_are_data(self):
        name = "Robert'); DROP TABLE account.accounts;--"
        email = "o'brien-%s@example.com" % secrets.token_hex(4)
        pw = "x'; DROP TABLE x; --" + secrets.token_hex(4)
        reg = self.auth().Register(A().RegisterRequest(email=email, password=pw,
                                                       display_name=name), timeout=20)
        self.assertEqual(self.me(reg.access_token).display_name, name)
        self.login(email, pw)

    def test_password_policy(self):
        def reg(pw):
            return self.auth().Register(A().RegisterRequest(
                email=unique_email(), password=pw, display_name="P"), timeout=20)

        for pw in ("", "short", "1234567"):
            e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, reg, pw)
            self.assertEqual(e.details(), "password: must be 8 to 128 characters")
        for pw in ("password", "PassWord1", "12345678", "qwertyuiop", "QWERTYUIOP",
                   "iloveyou"):
            e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, reg, pw)
            self.assertEqual(e.details(), "password: too common; choose another")
        # 128 characters work, 129 do not.
        p128 = "A" + secrets.token_hex(64)[:127]
        self.assertEqual(len(p128), 128)
        r = reg(p128)
        self.assertTrue(r.access_token)
        e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, reg, p128 + "x")
        self.assertEqual(e.details(), "password: must be 8 to 128 characters")
        # Characters, not bytes: 8 emoji (32 bytes) pass, 7 do not; 128
        # three-byte characters (384 bytes) pass.
        self.assertTrue(reg("\U0001F600" * 8).access_token)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, reg, "\U0001F600" * 7)
        self.assertTrue(reg("\u20ac" * 127 + "x").access_token)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, reg, "\u20ac" * 129)
        # Spaces and anything else are allowed (no composition rules).
        self.assertTrue(reg("correct horse battery staple").access_token)

    def test_128_character_password_logs_in(self):
        pw = "\u00e9" + secrets.token_hex(64)[:127]
        pair, email, _ = self.stack.register(password=pw)
        self.login(email, pw)

    def test_passwords_not_truncated(self):
        prefix = "p" + secrets.token_hex(36)[:71]      # 72 bytes, bcrypt's limit
        self.assertEqual(len(prefix.encode()), 72)
        pw1, pw2 = prefix + "-one", prefix + "-two"
        pair, email, _ = self.stack.register(password=pw1)
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.login, email, pw2)
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.login, email, prefix)
        self.login(email, pw1)

    def test_stored_hash_is_argon2id(self):
        pair, email, pw = self.stack.register()
        h = self.stack.psql("SELECT password_hash FROM account.accounts WHERE id = '%s'"
                            % pair.account_id).strip()
        self.assertTrue(h.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), h)
        self.assertNotIn(pw, h)

    def test_unknown_email_and_wrong_password_alike(self):
        pair, email, pw = self.stack.register()
        pair2, email2, pw2 = self.stack.register()

        def timed(e, p):
            t0 = time.monotonic()
            err = self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.login, e, p)
            return time.monotonic() - t0, err

        wrong, unknown = [], []
        # Interleaved, so a busy spell of the machine hits both kinds
        # (six failures: under the per-address threshold of 8).
        for i in range(3):
            wrong.append(timed(email if i % 2 else email2,
                               (pw if i % 2 else pw2) + "x%d" % i))
            unknown.append(timed(unique_email("nobody"), pw))
        msgs = {e.details() for _, e in wrong + unknown}
        self.assertEqual(msgs, {"invalid email or password"})
        # Same work: an unknown email also costs an argon2 run (without the
        # dummy hash it would be a tenth of the time or less). The fastest
        # of each kind: what other processes add only ever slows a run.
        tw = min(t for t, _ in wrong)
        tu = min(t for t, _ in unknown)
        self.assertGreater(tu, tw * 0.5, "unknown %.4f s vs wrong %.4f s" % (tu, tw))
        # Account ok afterwards (3 failures on `email` would throttle; 2 do not).
        self.login(email, pw)
        self.login(email2, pw2)

    def test_throttle_per_account(self):
        pair, email, pw = self.stack.register()
        for _ in range(3):
            self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.login, email, "wrong-" + pw)
        # Throttled: even the right password is refused, before any hashing.
        e = self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, self.login, email, pw)
        self.assertEqual(e.details(), "too many failed logins; retry later")
        md = dict(e.trailing_metadata() or ())
        md.update(dict(e.initial_metadata() or ()))
        self.assertIn("retry-after", md)
        wait = int(md["retry-after"])
        self.assertGreaterEqual(wait, 1)
        self.assertLessEqual(wait, 2)
        # Another email from the same address is not affected by the
        # account's counter.
        other, oemail, opw = self.stack.register()
        self.login(oemail, opw)
        # Another case of the same email is the same account counter.
        self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, self.login, email.upper(), pw)

        # After the wait a new failure doubles the delay (exponential).
        time.sleep(wait + 0.2)
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.login, email, "wrong-" + pw)
        e = self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, self.login, email, pw)
        wait2 = int(dict(e.trailing_metadata() or ())["retry-after"])
        self.assertGreaterEqual(wait2, 2)
        self.assertLessEqual(wait2, 3)

        # Never a permanent lock: after the wait the right password works,
        # and success clears the counter.
        time.sleep(wait2 + 0.2)
        self.login(email, pw)
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.login, email, "wrong-" + pw)
        self.login(email, pw)

    def test_throttle_per_address(self):
        # 8 failures from one address on 8 different (unknown) emails.
        for _ in range(8):
            self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.login,
                            unique_email("spray"), "Spray-password-1")
        pair, email, pw = self.stack.register()
        e = self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, self.login, email, pw)
        self.assertIn("retry-after", dict(e.trailing_metadata() or ()))
        # The counter lives in Redis under the documented key.
        self.assertEqual(self.stack.redis("HGET", IP_KEY, "n"), b"8")
        self.stack.redis("DEL", IP_KEY)
        self.login(email, pw)

    def test_change_password(self):
        email, pw = unique_email(), strong_password()
        a = self.auth().Register(A().RegisterRequest(email=email, password=pw,
                                                     display_name="C"), timeout=20)
        b = self.login(email, pw)
        c = self.login(email, pw)
        for s in (a, b, c):     # in use (and in authn.c's cache) before the change
            self.me(s.access_token)
        new_pw = strong_password()

        # Wrong current password, weak new one, missing fields.
        req = A().ChangePasswordRequest
        e = self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.auth().ChangePassword,
                            req(current_password="nope-" + pw, new_password=new_pw),
                            metadata=fixture.bearer(a.access_token), timeout=20)
        e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.auth().ChangePassword,
                            req(current_password=pw, new_password="password1"),
                            metadata=fixture.bearer(a.access_token), timeout=20)
        self.assertEqual(e.details(), "new_password: too common; choose another")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.auth().ChangePassword,
                        req(current_password=pw, new_password="short"),
                        metadata=fixture.bearer(a.access_token), timeout=20)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.auth().ChangePassword,
                        req(new_password=new_pw),
                        metadata=fixture.bearer(a.access_token), timeout=20)
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.auth().ChangePassword,
                        req(current_password=pw, new_password=new_pw), timeout=20)

        d = self.auth().ChangePassword(req(current_password=pw, new_password=new_pw),
                                       metadata=fixture.bearer(a.access_token), timeout=20)
        self.assertEqual(d.account_id, a.account_id)
        self.assertEqual(d.token_type, "Bearer")
        # Other sessions are gone: access and refresh tokens.
        for s in (b, c):
            self.assertAccessRevoked(s.access_token)
            self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.auth().Refresh,
                            A().RefreshRequest(refresh_token=s.refresh_token), timeout=10)
        # The caller's session and the fresh pair work.
        self.me(a.access_token)
        self.me(d.access_token)
        self.me(self.auth().Refresh(A().RefreshRequest(refresh_token=a.refresh_token),
                                    timeout=10).access_token)
        self.me(self.auth().Refresh(A().RefreshRequest(refresh_token=d.refresh_token),
                                    timeout=10).access_token)
        # Old password out, new one in.
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.login, email, pw)
        self.login(email, new_pw)

    def test_change_password_refuses_service_tokens(self):
        tok = self.stack.service_token()
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.auth().ChangePassword,
                        A().ChangePasswordRequest(current_password="whatever-1",
                                                  new_password=strong_password()),
                        metadata=fixture.bearer(tok), timeout=10)

    def test_bad_input(self):
        U = grpc.StatusCode.UNAUTHENTICATED
        I = grpc.StatusCode.INVALID_ARGUMENT
        # Register: missing, oversized, invalid UTF-8.
        ok = dict(email=unique_email(), password=strong_password(), display_name="B")
        for field in ok:
            bad = dict(ok)
            bad[field] = ""
            e = self.assertCode(I, self.auth().Register, A().RegisterRequest(**bad), timeout=20)
            self.assertTrue(e.details().startswith(field), e.details())
        for field, value in (("email", "a" * 250 + "@example.com"),
                             ("display_name", "d" * 401),
                             ("password", "p" * 5000)):
            bad = dict(ok)
            bad[field] = value
            e = self.assertCode(I, self.auth().Register, A().RegisterRequest(**bad), timeout=20)
            self.assertTrue(e.details().startswith(field), e.details())
        for num, field in ((1, "email"), (2, "password"), (3, "display_name")):
            parts = {1: ok["email"].encode(), 2: ok["password"].encode(), 3: b"B"}
            parts[num] = b"abc\xff\xfe-defgh"
            body = b"".join(ld(n, parts[n]) for n in (1, 2, 3))
            e = self.assertCode(I, self.raw, "Register", body)
            self.assertEqual(e.details(), "%s: not valid UTF-8" % field)
        # Login.
        self.assertCode(I, self.login, "", "whatever-pw")
        self.assertCode(I, self.login, unique_email(), "")
        self.assertCode(I, self.login, "e" * 300 + "@x.com", "whatever-pw")
        self.assertCode(I, self.login, unique_email(), "p" * 2000)
        self.assertCode(I, self.raw, "Login", ld(1, b"x\xc0\xafy@example.com") + ld(2, b"pw"))
        self.assertCode(I, self.raw, "Login", ld(1, b"a@example.com") + ld(2, b"\xed\xa0\x80pass"))
        # Refresh.
        R = A().RefreshRequest
        self.assertCode(I, self.auth().Refresh, R(), timeout=10)
        self.assertCode(I, self.auth().Refresh, R(refresh_token="r" * 600), timeout=10)
        self.assertCode(I, self.auth().Refresh, R(refresh_token="has space"), timeout=10)
        self.assertCode(I, self.raw, "Refresh", ld(1, b"\xff\xfe"))
        self.assertCode(U, self.auth().Refresh, R(refresh_token="A" * 43), timeout=10)
        # Logout.
        pair, email, pw = self.stack.register()
        L = A().LogoutRequest
        self.assertCode(U, self.auth().Logout, L(), timeout=10)
        self.assertCode(U, self.auth().Logout, L(), metadata=fixture.bearer("not.a.jwt"),
                        timeout=10)
        self.assertCode(I, self.auth().Logout, L(refresh_token="x" * 600),
                        metadata=fixture.bearer(pair.access_token), timeout=10)
        self.assertCode(I, self.raw, "Logout", ld(1, b"\xc3("),
                        metadata=fixture.bearer(pair.access_token))
        # ChangePassword.
        C = A().ChangePasswordRequest
        md = fixture.bearer(pair.access_token)
        self.assertCode(I, self.auth().ChangePassword, C(new_password=strong_password()),
                        metadata=md, timeout=10)
        self.assertCode(I, self.auth().ChangePassword, C(current_password=pw),
                        metadata=md, timeout=10)
        self.assertCode(I, self.auth().ChangePassword,
                        C(current_password="c" * 2000, new_password=strong_password()),
                        metadata=md, timeout=10)
        self.assertCode(I, self.raw, "ChangePassword",
                        ld(1, pw.encode()) + ld(2, b"new\xffpassword"), metadata=md)
        # Malformed protobuf on every method.
        for m in ("Register", "Login", "Refresh", "Logout", "ChangePassword"):
            self.assertCode(I, self.raw, m, b"\x0a\xff\xff\xff\xff\x0f", metadata=md)
        # Nothing above hurt the account.
        self.login(email, pw)


class AuthOperationsTest(AuthCase):
    """Dependency faults, the hashing cap and parameter upgrades: each
    restarts or stresses part of the stack, so they get their own."""

    SERVICE_ENV = {"auth": {
        "AUTH_MAX_CONCURRENT_HASHES": "1",
        "AUTH_LOGIN_IP_MAX_FAILURES": "1000",
    }}

    def test_redis_down_then_back(self):
        st = self.stack
        pair, email, pw = st.register()
        st.stop_redis()
        try:
            t0 = time.monotonic()
            e = self.assertCode(grpc.StatusCode.UNAVAILABLE, self.login, email, pw,
                                timeout=10)
            self.assertLess(time.monotonic() - t0, 3.0)
            self.assertNotIn("redis", e.details().lower())
            self.assertEqual(fixture.wait_until(
                lambda: st.health("auth") == "NOT_SERVING", 15), True,
                "auth health: %s" % st.health("auth"))
        finally:
            st.start_redis()
        st.wait_health("auth", "SERVING", timeout=30)
        fixture.wait_until(lambda: self._login_ok(email, pw), 15)
        self.login(email, pw)

    def _login_ok(self, email, pw):
        try:
            self.login(email, pw, timeout=5)
            return True
        except grpc.RpcError:
            return False

    def test_account_service_down(self):
        st = self.stack
        pair, email, pw = st.register()
        st.stop_service("account")
        try:
            self.assertCode(grpc.StatusCode.UNAVAILABLE, self.login, email, pw, timeout=10)
            self.assertCode(grpc.StatusCode.UNAVAILABLE, self.auth().Register,
                            A().RegisterRequest(email=unique_email(), password=strong_password(),
                                                display_name="X"), timeout=10)
            self.assertTrue(fixture.wait_until(
                lambda: st.health("auth") == "NOT_SERVING", 15))
        finally:
            st.start_service("account")
        st.wait_health("auth", "SERVING", timeout=30)
        self.assertTrue(fixture.wait_until(lambda: self._login_ok(email, pw), 15))

    def test_hashing_is_capped(self):
        pair, email, pw = self.stack.register()
        n = 40

        def one(_):
            try:
                self.login(email, pw, timeout=0.6)
                return "OK", ""
            except grpc.RpcError as e:
                return e.code().name, e.details()

        with concurrent.futures.ThreadPoolExecutor(n) as ex:
            results = list(ex.map(one, range(n)))
        codes = [c for c, _ in results]
        self.assertTrue(set(codes) <= {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"},
                        results)
        self.assertIn("OK", codes)
        busy = [d for c, d in results if c == "RESOURCE_EXHAUSTED"]
        self.assertTrue(busy, results)
        self.assertEqual(set(busy), {"server busy"})
        # And the service is fine afterwards.
        self.login(email, pw)

    def test_rehash_on_login_after_raising_parameters(self):
        st = self.stack
        pair, email, pw = st.register()
        q = "SELECT password_hash FROM account.accounts WHERE id = '%s'" % pair.account_id
        self.assertIn("$m=19456,t=2,p=1$", st.psql(q))
        st.restart_service("auth", extra_env=dict(self.SERVICE_ENV["auth"],
                                                  AUTH_ARGON2_ITERATIONS="3"))
        try:
            self.login(email, pw)
            self.assertIn("$m=19456,t=3,p=1$", st.psql(q))
            self.login(email, pw)
        finally:
            st.restart_service("auth", extra_env=self.SERVICE_ENV["auth"])
        # Lower configured parameters never downgrade a stronger hash.
        self.login(email, pw)
        self.assertIn("$m=19456,t=3,p=1$", st.psql(q))

    def test_bad_configuration_fails_fast(self):
        st = self.stack
        import subprocess
        for extra in ({"AUTH_ARGON2_MEMORY_KIB": "1024"},
                      {"AUTH_ARGON2_ITERATIONS": "1"},
                      {"AUTH_SERVICE_SECRET": None},
                      {"AUTH_PASSWORD_DENYLIST": st.dir + "/no-such-list.txt"}):
            env = st.env("auth", dict(extra, AUTH_SERVICE_PORT="0"))
            p = subprocess.run([fixture.binary_path("auth")], env=env, cwd=st.dir,
                               capture_output=True, timeout=20)
            self.assertNotEqual(p.returncode, 0, extra)
            self.assertNotIn(st.secret.encode(), p.stdout + p.stderr)


if __name__ == "__main__":
    fixture.main()
