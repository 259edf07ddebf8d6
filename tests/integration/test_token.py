"""Integration tests of estore-token against a real Redis (fixture.py).

What a user of the token service would notice: tokens that verify, every
kind of forged or stale token refused, refresh rotation with reuse
detection (also under 50 concurrent refreshes), revocation of a token, a
session and an account (but the caller's session), service identity, the
JWKS, startup refusals for bad keys, and Redis going away and coming back.

Forged tokens are built here with python3-cryptography using the test
stack's own signing key, so that each one is wrong in exactly one way; a
control token built the same way must be accepted, or the negative tests
would prove nothing.
"""

import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402

import grpc  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: E402
    decode_dss_signature, encode_dss_signature)

TOKEN = "/estore.token.v1.TokenService/"
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


# ---- JOSE helpers -----------------------------------------------------------

def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jose_parts(token):
    h, p, s = token.split(".")
    return json.loads(unb64u(h)), json.loads(unb64u(p)), unb64u(s)


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def es256_sign(key, data):
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def craft(key, header, claims):
    """A compact JWS signed ES256 with `key`, whatever the header says."""
    si = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())
    return si + "." + b64u(es256_sign(key, si.encode()))


def new_account():
    return str(uuid.uuid4())


# ---- test bases -----------------------------------------------------------------

class TokenStackCase(fixture.StackTestCase):
    """A stack with Redis and estore-token only (no PostgreSQL needed)."""

    SERVICES = ("token",)

    @classmethod
    def setUpClass(cls):
        if not fixture.have_binary("token"):
            raise RuntimeError("not built: %s" % fixture.binary_path("token"))
        fixture.load_stubs()
        cls.stack = fixture.Stack().start(postgres=False)
        try:
            cls.stack.start_service("token", extra_env=cls.SERVICE_ENV.get("token"))
        except BaseException:
            cls.stack.failed = True
            cls.stack.close()
            raise

    # -- helpers --

    @property
    def st(self):
        return self.stack

    @property
    def pb(self):
        return fixture.pb2("token")

    def token(self):
        return self.st.stub("token")

    def svc_md(self):
        return fixture.bearer(self.st.service_token())

    def assertCode(self, code, fn, *args, message=None, **kw):
        """Calls fn and asserts it fails with `code` (and a message
        matching the regex `message`). Returns the RpcError."""
        if isinstance(fn, grpc.UnaryUnaryMultiCallable):
            kw.setdefault("timeout", 10)
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        e = cm.exception
        self.assertEqual(e.code(), code, "details: %r" % e.details())
        if message is not None:
            self.assertRegex(e.details() or "", message)
        return e

    def pair(self, account=None, roles=("customer",)):
        return self.st.token_pair(account or new_account(), roles=roles)

    def validate(self, access, **kw):
        kw.setdefault("timeout", 10)
        return self.token().ValidateToken(
            self.pb.ValidateTokenRequest(access_token=access), **kw)

    def refresh(self, rt, roles=("customer",), **kw):
        kw.setdefault("timeout", 10)
        return self.token().RefreshTokenPair(
            self.pb.RefreshTokenPairRequest(refresh_token=rt, roles=list(roles)),
            metadata=self.svc_md(), **kw)

    def revoke(self, timeout=10, **fields):
        return self.token().RevokeTokens(self.pb.RevokeTokensRequest(**fields),
                                         metadata=self.svc_md(), timeout=timeout)

    def raw_call(self, method, body, metadata=None, timeout=10):
        """Sends `body` bytes as the request of `method` (for payloads the
        Python protobuf library refuses to build, like invalid UTF-8)."""
        call = self.st.channel("token").unary_unary(TOKEN + method)
        return call(body, metadata=metadata, timeout=timeout)

    def signing_key(self, kid="test-1"):
        return load_key(os.path.join(self.st.key_dir, kid + ".pem"))


# ---- the main suite -----------------------------------------------------------

class TokenTest(TokenStackCase):

    # -- issuing and validating --

    def test_issue_and_validate(self):
        acct = new_account()
        pair = self.pair(acct, roles=("customer", "vendor"))
        self.assertEqual(pair.token_type, "Bearer")
        self.assertEqual(pair.expires_in, 900)
        self.assertEqual(pair.account_id, acct)

        c = self.validate(pair.access_token)
        self.assertEqual(c.subject, acct)
        self.assertEqual(list(c.roles), ["customer", "vendor"])
        self.assertFalse(c.is_service)
        self.assertRegex(c.token_id, r"^[0-9a-f]{32}$")
        self.assertRegex(c.session_id, r"^[0-9a-f]{32}$")
        self.assertEqual(c.expires_at - c.issued_at, 900)
        self.assertLessEqual(abs(c.issued_at - time.time()), 5)

        h, p, sig = jose_parts(pair.access_token)
        self.assertEqual(h["alg"], "ES256")
        self.assertEqual(h["kid"], "test-1")
        self.assertEqual(len(sig), 64)
        self.assertEqual(p["iss"], "estore")
        self.assertEqual(p["aud"], "estore")
        self.assertEqual(p["sub"], acct)
        self.assertEqual(p["nbf"], p["iat"])
        self.assertEqual(p["exp"], p["iat"] + 900)
        self.assertEqual(p["jti"], c.token_id)
        self.assertEqual(p["sid"], c.session_id)
        self.assertEqual(p["roles"], ["customer", "vendor"])

        # Two pairs never share ids.
        other = self.validate(self.pair(acct).access_token)
        self.assertNotEqual(other.token_id, c.token_id)
        self.assertNotEqual(other.session_id, c.session_id)

    def test_signature_verifies_with_published_jwk(self):
        """A third party holding only the JWKS can verify our tokens."""
        pair = self.pair()
        jwks = self.token().GetJwks(self.pb.GetJwksRequest(), timeout=10)
        h, _, sig = jose_parts(pair.access_token)
        jwk = [k for k in jwks.keys if k.kid == h["kid"]][0]
        pub = ec.EllipticCurvePublicNumbers(
            int.from_bytes(unb64u(jwk.x), "big"), int.from_bytes(unb64u(jwk.y), "big"),
            ec.SECP256R1()).public_key()
        si = pair.access_token.rsplit(".", 1)[0].encode()
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                   int.from_bytes(sig[32:], "big"))
        pub.verify(der, si, ec.ECDSA(hashes.SHA256()))  # raises when wrong

    def test_uppercase_account_id_is_normalised(self):
        acct = new_account()
        pair = self.pair(acct.upper())
        self.assertEqual(pair.account_id, acct)
        self.assertEqual(self.validate(pair.access_token).subject, acct)

    def test_refresh_token_is_opaque_and_stored_hashed(self):
        pair = self.pair()
        rt = pair.refresh_token
        self.assertRegex(rt, r"^[A-Za-z0-9_-]{43}$")
        self.assertEqual(len(unb64u(rt)), 32)
        digest = hashlib.sha256(rt.encode()).hexdigest()
        key = "token:rt:" + digest
        self.assertEqual(self.st.redis("EXISTS", key), 1)
        ttl = self.st.redis("TTL", key)
        self.assertGreater(ttl, 30 * 86400 - 60)
        self.assertLessEqual(ttl, 30 * 86400)
        # Nothing in Redis holds the token text itself.
        for k in self.st.redis("KEYS", "*"):
            self.assertNotIn(rt.encode(), k)
            self.assertTrue(k.startswith(b"token:"), k)
            if self.st.redis("TYPE", k) == "hash":
                for v in self.st.redis("HGETALL", k):
                    self.assertNotIn(rt.encode(), v)
            self.assertGreater(self.st.redis("TTL", k), 0, k)

    # -- bad tokens --

    def test_crafted_control_token_is_accepted(self):
        """Re-signing real claims with our key must work, otherwise the
        forged-token tests below would pass for the wrong reason."""
        h, p, _ = jose_parts(self.pair().access_token)
        tok = craft(self.signing_key(), h, p)
        self.assertEqual(self.validate(tok).subject, p["sub"])
        # aud as an array holding ours is fine too (RFC 7519 §4.1.3).
        tok = craft(self.signing_key(), h, dict(p, aud=["other", "estore"]))
        self.validate(tok)
        # Within the 60 s skew.
        now = int(time.time())
        tok = craft(self.signing_key(), h, dict(p, iat=now - 930, nbf=now - 930, exp=now - 30))
        self.validate(tok)

    def bad_tokens(self):
        """(name, token, expected message regex) for one fresh real token."""
        real = self.pair().access_token
        h, p, sig = jose_parts(real)
        hs, ps, ss = real.split(".")
        key = self.signing_key()
        other = ec.generate_private_key(ec.SECP256R1())
        now = int(time.time())
        pub_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

        tampered = dict(p, roles=["admin"])
        hs256_head = b64u(json.dumps(dict(h, alg="HS256")).encode())
        hs256_si = hs256_head + "." + ps
        hs256 = hs256_si + "." + b64u(hmac.new(pub_pem, hs256_si.encode(), hashlib.sha256).digest())
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rs256_si = b64u(json.dumps(dict(h, alg="RS256")).encode()) + "." + ps
        rs256 = rs256_si + "." + b64u(rsa_key.sign(rs256_si.encode(), padding.PKCS1v15(),
                                                   hashes.SHA256()))
        none_head = b64u(json.dumps({"alg": "none", "typ": "JWT", "kid": "test-1"}).encode())

        return [
            ("tampered payload", hs + "." + b64u(json.dumps(tampered).encode()) + "." + ss,
             "signature"),
            ("wrong signature (other key, same kid)", craft(other, h, p), "signature"),
            ("alg none, no signature", none_head + "." + ps + ".", "algorithm"),
            ("alg none, original signature", none_head + "." + ps + "." + ss, "algorithm"),
            ("alg None", b64u(json.dumps(dict(h, alg="None")).encode()) + "." + ps + ".",
             "algorithm"),
            ("HS256 with the public key as secret", hs256, "algorithm"),
            ("RS256", rs256, "algorithm"),
            ("ES384 claimed", craft(key, dict(h, alg="ES384"), p), "algorithm"),
            ("unknown kid", craft(key, dict(h, kid="nope"), p), "key"),
            ("no kid", craft(key, {"alg": "ES256", "typ": "JWT"}, p), "key"),
            ("crit header", craft(key, dict(h, crit=["exp"]), p), "critical"),
            ("expired", craft(key, h, dict(p, iat=now - 1000, nbf=now - 1000, exp=now - 120)),
             "expired"),
            ("not yet valid", craft(key, h, dict(p, iat=now, nbf=now + 300, exp=now + 900)),
             "not valid yet"),
            ("issued in the future", craft(key, h, dict(p, iat=now + 300, nbf=now, exp=now + 900)),
             "future"),
            ("wrong aud", craft(key, h, dict(p, aud="someone-else")), "audience"),
            ("aud array without ours", craft(key, h, dict(p, aud=["a", "b"])), "audience"),
            ("no aud", craft(key, h, {k: v for k, v in p.items() if k != "aud"}), "audience"),
            ("wrong iss", craft(key, h, dict(p, iss="evil")), "issuer"),
            ("exp as a string", craft(key, h, dict(p, exp=str(now + 900))), "times"),
            ("account token without sid", craft(key, h, {k: v for k, v in p.items() if k != "sid"}),
             "session"),
            ("unknown session", craft(key, h, dict(p, sid="0" * 32)), "session revoked"),
            ("signature too short", hs + "." + ps + "." + b64u(sig[:63]), "signature"),
            ("signature DER-encoded", hs + "." + ps + "." + b64u(key.sign(
                (hs + "." + ps).encode(), ec.ECDSA(hashes.SHA256()))), "signature"),
            ("padding in signature", real + "=", "signature"),
            ("two parts", hs + "." + ps, "malformed"),
            ("four parts", real + ".x", "malformed"),
            ("header not JSON", b64u(b"{alg") + "." + ps + "." + ss, "header"),
            ("header not base64url", "%%%." + ps + "." + ss, "header"),
            ("header JSON array", b64u(b"[1]") + "." + ps + "." + ss, "header"),
            ("duplicate alg", b64u(b'{"alg":"none","alg":"ES256","kid":"test-1"}') + "." + ps + "."
             + ss, "header"),
            ("garbage", "not-a-token", "malformed"),
        ]

    def test_bad_tokens_are_unauthenticated(self):
        for name, tok, msg in self.bad_tokens():
            with self.subTest(name):
                self.assertCode(UNAUTH, self.validate, tok, message=msg)

    def test_bad_tokens_refused_as_bearer(self):
        """The server's own authenticator runs the same checks: a forged
        service-looking token cannot call internal RPCs."""
        svc = self.st.service_token()
        h, p, _ = jose_parts(svc)
        forged = craft(ec.generate_private_key(ec.SECP256R1()), h, p)
        none = b64u(json.dumps({"alg": "none", "kid": "test-1"}).encode()) + "." + svc.split(".")[1] + "."
        for tok in (forged, none, "garbage"):
            with self.subTest(tok[:20]):
                self.assertCode(UNAUTH, self.token().IssueTokenPair,
                                self.pb.IssueTokenPairRequest(account_id=new_account(),
                                                              roles=["customer"]),
                                metadata=fixture.bearer(tok))

    def test_revoked_access_token(self):
        pair = self.pair()
        self.validate(pair.access_token)
        self.revoke(access_token=pair.access_token)
        self.assertCode(UNAUTH, self.validate, pair.access_token, message="revoked")
        jti = jose_parts(pair.access_token)[1]["jti"]
        ttl = self.st.redis("TTL", "token:deny:" + jti)
        self.assertGreater(ttl, 900 - 10)
        self.assertLessEqual(ttl, 900 + 61)
        # Idempotent; the session itself lives on.
        self.revoke(access_token=pair.access_token)
        self.refresh(pair.refresh_token)

    def test_revoking_expired_or_forged_access_token(self):
        """Revocation validates the token: an expired one is already
        refused everywhere (OK, nothing stored); a forged one is
        UNAUTHENTICATED and leaves no deny-list entry."""
        real = self.pair().access_token
        h, p, _ = jose_parts(real)
        now = int(time.time())
        expired = craft(self.signing_key(), h, dict(p, iat=now - 2000, nbf=now - 2000,
                                                    exp=now - 1000, jti="e" * 32))
        self.revoke(access_token=expired)
        self.assertEqual(self.st.redis("EXISTS", "token:deny:" + "e" * 32), 0)
        forged = craft(ec.generate_private_key(ec.SECP256R1()), h, dict(p, jti="f" * 32))
        self.assertCode(UNAUTH, self.revoke, access_token=forged)
        self.assertEqual(self.st.redis("EXISTS", "token:deny:" + "f" * 32), 0)
        self.validate(real)

    # -- refresh rotation --

    def test_refresh_rotates(self):
        acct = new_account()
        p1 = self.pair(acct, roles=("customer", "admin"))
        s1 = self.validate(p1.access_token).session_id
        p2 = self.refresh(p1.refresh_token, roles=("customer",))
        self.assertEqual(p2.account_id, acct)
        self.assertEqual(p2.token_type, "Bearer")
        self.assertEqual(p2.expires_in, 900)
        self.assertNotEqual(p2.refresh_token, p1.refresh_token)
        c2 = self.validate(p2.access_token)
        self.assertEqual(c2.subject, acct)
        self.assertEqual(c2.session_id, s1)             # same session
        self.assertEqual(list(c2.roles), ["customer"])  # roles as requested now
        # The new one rotates again; with no roles named, the session's
        # last roles are kept.
        p3 = self.refresh(p2.refresh_token, roles=())
        self.assertEqual(list(self.validate(p3.access_token).roles), ["customer"])
        # The old access tokens stay valid until they expire.
        self.validate(p1.access_token)

    def test_refresh_without_roles_keeps_issued_roles(self):
        p1 = self.pair(roles=("vendor", "customer"))
        p2 = self.refresh(p1.refresh_token, roles=())
        self.assertEqual(list(self.validate(p2.access_token).roles), ["vendor", "customer"])

    def test_reuse_revokes_the_family(self):
        p1 = self.pair()
        p2 = self.refresh(p1.refresh_token)
        p3 = self.refresh(p2.refresh_token)
        # p1's refresh token was rotated: presenting it again is reuse.
        self.assertCode(UNAUTH, self.refresh, p1.refresh_token,
                        message="reuse detected; session revoked")
        # ...which ended the whole session: the newest refresh token and
        # every access token of the family.
        self.assertCode(UNAUTH, self.refresh, p3.refresh_token, message="revoked")
        for acc in (p1.access_token, p2.access_token, p3.access_token):
            self.assertCode(UNAUTH, self.validate, acc, message="session revoked")
        # Another session of the same account is unaffected.
        other = self.pair(jose_parts(p1.access_token)[1]["sub"])
        self.validate(other.access_token)
        self.refresh(other.refresh_token)

    def test_unknown_refresh_token(self):
        self.assertCode(UNAUTH, self.refresh, b64u(os.urandom(32)),
                        message="invalid refresh token")
        self.assertCode(UNAUTH, self.refresh, "short", message="invalid refresh token")

    def test_concurrent_refresh_exactly_one_wins(self):
        rt = self.pair().refresh_token
        md = self.svc_md()
        stub = self.token()
        req = self.pb.RefreshTokenPairRequest(refresh_token=rt, roles=["customer"])
        n = 50
        barrier = threading.Barrier(n)

        def one(_):
            barrier.wait(timeout=20)
            try:
                return stub.RefreshTokenPair(req, metadata=md, timeout=20), None
            except grpc.RpcError as e:
                return None, e

        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
            results = list(ex.map(one, range(n), timeout=60))
        wins = [r for r, e in results if r is not None]
        errors = [e for r, e in results if e is not None]
        self.assertEqual(len(wins), 1, [e.details() for e in errors][:5])
        self.assertEqual(len(errors), n - 1)
        for e in errors:
            self.assertEqual(e.code(), UNAUTH, e.details())
        # Strict reuse detection: the losers presented a rotated token,
        # so the session is revoked, the winner's new tokens included.
        self.assertCode(UNAUTH, self.refresh, wins[0].refresh_token)
        self.assertCode(UNAUTH, self.validate, wins[0].access_token)

    # -- revocation of sessions and accounts --

    def test_revoke_refresh_token_ends_session(self):
        p1 = self.pair()
        self.revoke(refresh_token=p1.refresh_token)
        self.assertCode(UNAUTH, self.refresh, p1.refresh_token, message="revoked")
        self.assertCode(UNAUTH, self.validate, p1.access_token, message="session revoked")
        # Logging out twice, or with an unknown token, is fine.
        self.revoke(refresh_token=p1.refresh_token)
        self.revoke(refresh_token=b64u(os.urandom(32)))
        self.revoke(refresh_token="not-even-a-token")

    def test_revoke_account_keeps_except_session(self):
        acct = new_account()
        pairs = [self.pair(acct) for _ in range(3)]
        keep = self.validate(pairs[1].access_token).session_id
        bystander = self.pair()   # another account
        self.revoke(account_id=acct, except_session_id=keep)

        for i in (0, 2):
            self.assertCode(UNAUTH, self.validate, pairs[i].access_token)
            self.assertCode(UNAUTH, self.refresh, pairs[i].refresh_token)
        self.validate(pairs[1].access_token)
        kept = self.refresh(pairs[1].refresh_token)
        self.validate(kept.access_token)
        self.validate(bystander.access_token)
        # A login after the revocation works.
        fresh = self.pair(acct)
        self.validate(fresh.access_token)
        self.refresh(fresh.refresh_token)

    def test_revoke_account_refuses_tokens_issued_before(self):
        """The account-wide not-before refuses earlier access tokens even
        when their session is not in the account's set any more."""
        acct = new_account()
        pair = self.pair(acct)
        sid = self.validate(pair.access_token).session_id
        # Simulate a session the account set no longer lists.
        self.st.redis("SREM", "token:acct:%s:families" % acct, sid)
        # The not-before has one-second resolution (iat is in seconds):
        # tokens of the same second are left to session revocation.
        time.sleep(1.1)
        self.revoke(account_id=acct)
        self.assertEqual(self.st.redis("GET", "token:fam:" + sid), b"active")
        self.assertCode(UNAUTH, self.validate, pair.access_token, message="account")
        nbf_ttl = self.st.redis("TTL", "token:acct:%s:nbf" % acct)
        self.assertGreater(nbf_ttl, 900)
        self.assertLessEqual(nbf_ttl, 961)

    # -- service identity --

    def test_service_token(self):
        r = self.token().IssueServiceToken(
            self.pb.IssueServiceTokenRequest(service="auth", secret=self.st.secret), timeout=10)
        self.assertEqual(r.expires_in, 3600)
        c = self.validate(r.access_token)
        self.assertEqual(c.subject, "service:auth")
        self.assertTrue(c.is_service)
        self.assertEqual(list(c.roles), ["service"])
        self.assertEqual(c.session_id, "")
        self.assertEqual(c.expires_at - c.issued_at, 3600)
        self.assertNotIn("sid", jose_parts(r.access_token)[1])

    def test_service_token_refused(self):
        bad = [("auth", self.st.secret + "x"), ("auth", self.st.secret[:-1]),
               ("auth", "wrong"), ("order", self.st.secret)]
        for service, secret in bad:
            with self.subTest(service=service, secret_len=len(secret)):
                # The same answer for an unknown service and a wrong secret.
                self.assertCode(UNAUTH, self.token().IssueServiceToken,
                                self.pb.IssueServiceTokenRequest(service=service, secret=secret),
                                message="^unknown service or wrong secret$")

    def test_internal_rpcs_need_a_service_token(self):
        account_tok = self.pair(roles=("admin",)).access_token
        rt = self.pair().refresh_token
        calls = [
            (self.token().IssueTokenPair,
             self.pb.IssueTokenPairRequest(account_id=new_account(), roles=["customer"])),
            (self.token().RefreshTokenPair, self.pb.RefreshTokenPairRequest(refresh_token=rt)),
            (self.token().RevokeTokens, self.pb.RevokeTokensRequest(account_id=new_account())),
        ]
        for i, (fn, req) in enumerate(calls):
            with self.subTest(i):
                self.assertCode(grpc.StatusCode.PERMISSION_DENIED, fn, req,
                                metadata=fixture.bearer(account_tok))
                self.assertCode(UNAUTH, fn, req)
        # The refresh token was not consumed by the refused call.
        self.refresh(rt)

    # -- JWKS --

    def test_jwks(self):
        jwks = self.token().GetJwks(self.pb.GetJwksRequest(), timeout=10)
        self.assertEqual(len(jwks.keys), 1)
        k = jwks.keys[0]
        self.assertEqual((k.kty, k.crv, k.alg, k.use, k.kid), ("EC", "P-256", "ES256", "sig", "test-1"))
        self.assertRegex(k.x, r"^[A-Za-z0-9_-]{43}$")
        self.assertRegex(k.y, r"^[A-Za-z0-9_-]{43}$")
        nums = self.signing_key().public_key().public_numbers()
        self.assertEqual(int.from_bytes(unb64u(k.x), "big"), nums.x)
        self.assertEqual(int.from_bytes(unb64u(k.y), "big"), nums.y)

    # -- bad input --

    def test_issue_bad_input(self):
        md = self.svc_md()
        cases = [
            (dict(account_id=""), "account_id"),
            (dict(account_id="not-a-uuid"), "account_id"),
            (dict(account_id="'; DROP TABLE x; --"), "account_id"),
            (dict(account_id=new_account() + "0"), "account_id"),
            (dict(account_id="g" * 36), "account_id"),
            (dict(account_id=new_account(), roles=["root"]), r"roles\[0\]"),
            (dict(account_id=new_account(), roles=["customer", "Admin"]), r"roles\[1\]"),
            (dict(account_id=new_account(), roles=["customer"] * 9), "roles"),
        ]
        for fields, msg in cases:
            with self.subTest(**{k: str(v)[:40] for k, v in fields.items()}):
                self.assertCode(INVALID, self.token().IssueTokenPair,
                                self.pb.IssueTokenPairRequest(**fields), metadata=md, message=msg)
        # Duplicates collapse; no roles is allowed.
        pair = self.pair(roles=("customer", "customer"))
        self.assertEqual(list(self.validate(pair.access_token).roles), ["customer"])
        self.assertEqual(list(self.validate(self.pair(roles=()).access_token).roles), [])

    def test_invalid_utf8_and_malformed_protobuf(self):
        md = self.svc_md()
        acct = new_account().encode()
        # field 1 account_id, field 2 roles: a role of invalid UTF-8.
        body = b"\x0a" + bytes([len(acct)]) + acct + b"\x12\x04\xff\xfe\xc3\x28"
        self.assertCode(INVALID, self.raw_call, "IssueTokenPair", body, metadata=md,
                        message=r"roles\[0\]")
        body = b"\x0a\x04\xff\xfe\xfd\xfc"
        self.assertCode(INVALID, self.raw_call, "IssueTokenPair", body, metadata=md,
                        message="account_id")
        # service "\xff" (field 1), secret (field 2).
        self.assertCode(INVALID, self.raw_call, "IssueServiceToken", b"\x0a\x01\xff\x12\x01x",
                        message="service")
        # An access token of invalid UTF-8 is not even a proto3 string: the
        # server refuses the request before the service sees it.
        self.assertCode(INVALID, self.raw_call, "ValidateToken", b"\x0a\x05\xff.\xfe.\xfd",
                        message="access_token: not valid UTF-8")
        # Nor is a string with a NUL byte, which C would see cut short.
        self.assertCode(INVALID, self.raw_call, "ValidateToken", b"\x0a\x05abc\x00d",
                        message="access_token: contains a NUL byte")
        # Truncated protobuf.
        self.assertCode(INVALID, self.raw_call, "ValidateToken", b"\x0a\x20abc")
        self.assertCode(INVALID, self.raw_call, "IssueServiceToken", b"\xff\xff\xff")

    def test_validate_bad_input(self):
        self.assertCode(INVALID, self.validate, "", message="access_token")
        self.assertCode(INVALID, self.validate, "a" * 9000, message="access_token")

    def test_refresh_bad_input(self):
        self.assertCode(INVALID, self.refresh, "", message="refresh_token")
        self.assertCode(INVALID, self.refresh, "a" * 600, message="refresh_token")
        rt = self.pair().refresh_token
        self.assertCode(INVALID, self.refresh, rt, roles=("superuser",), message="roles")
        self.refresh(rt)   # the refused call did not consume it

    def test_revoke_bad_input(self):
        acct = new_account()
        tok = self.pair().access_token
        cases = [
            (dict(), "target"),
            (dict(account_id=""), "account_id"),
            (dict(account_id="x"), "account_id"),
            (dict(account_id=acct, except_session_id="zz"), "except_session_id"),
            (dict(account_id=acct, except_session_id="A" * 32), "except_session_id"),
            (dict(access_token=tok, except_session_id="0" * 32), "except_session_id"),
            (dict(access_token=""), "access_token"),
            (dict(access_token="x" * 9000), "access_token"),
            (dict(refresh_token=""), "refresh_token"),
            (dict(refresh_token="x" * 600), "refresh_token"),
        ]
        for fields, msg in cases:
            with self.subTest(**{k: str(v)[:30] for k, v in fields.items()}):
                self.assertCode(INVALID, self.revoke, **fields, message=msg)
        self.validate(tok)

    def test_service_token_bad_input(self):
        cases = [
            (dict(service="", secret="x"), "service"),
            (dict(service="auth", secret=""), "secret"),
            (dict(service="auth", secret="x" * 2000), "secret"),
            (dict(service="a" * 65, secret="x"), "service"),
            (dict(service="au th", secret="x"), "service"),
        ]
        for fields, msg in cases:
            with self.subTest(**{k: v[:20] for k, v in fields.items()}):
                self.assertCode(INVALID, self.token().IssueServiceToken,
                                self.pb.IssueServiceTokenRequest(**fields), message=msg)

    # -- hygiene --

    def test_no_secrets_in_log(self):
        pair = self.pair()
        self.refresh(pair.refresh_token)
        self.st.service_token()
        log = self.st.log("token")
        self.assertNotIn(self.st.secret, log)
        self.assertNotIn(pair.refresh_token, log)
        self.assertNotIn(pair.access_token.split(".")[2], log)
        self.assertNotIn("PRIVATE KEY", log)
        with open(os.path.join(self.st.key_dir, "test-1.pem")) as f:
            body = "".join(f.read().splitlines()[1:-1])
        self.assertNotIn(body[10:40], log)


# ---- keys: rotation and refusals at start ----------------------------------------

class KeyTest(TokenStackCase):

    def start_token(self, **env):
        self.st.start_service("token", extra_env=env)

    def expect_exit(self, env, message):
        """estore-token refuses to start: exit status 1, message in its log."""
        self.st.stop_service("token")
        self.st.start_service("token", extra_env=env, wait=None)
        p = self.st.procs["token"].popen
        try:
            rc = p.wait(20)
        except Exception:
            self.st.kill_service("token")
            raise
        self.assertEqual(rc, 1, self.st.log_tail("token"))
        tail = self.st.log_tail("token", 5)
        self.assertIn(message, tail)
        self.assertNotIn("PRIVATE KEY", self.st.log("token"))

    def tearDown(self):
        # Leave a running token service with the default keys behind.
        for n in os.listdir(self.st.key_dir):
            if n != "test-1.pem":
                os.unlink(os.path.join(self.st.key_dir, n))
        if not self.st.service_alive("token"):
            self.start_token()

    def test_two_keys_published_and_rotation(self):
        old = self.pair()     # signed by test-1
        self.st.generate_key("test-2")
        self.st.restart_service("token")
        jwks = self.token().GetJwks(self.pb.GetJwksRequest(), timeout=10)
        self.assertEqual(sorted(k.kid for k in jwks.keys), ["test-1", "test-2"])
        # The last kid in sorted order signs by default...
        new = self.pair()
        self.assertEqual(jose_parts(new.access_token)[0]["kid"], "test-2")
        # ...and tokens of the older key still verify (rotation).
        self.validate(old.access_token)
        self.validate(new.access_token)
        self.refresh(old.refresh_token)
        # TOKEN_SIGNING_KID picks the signer explicitly.
        self.st.restart_service("token", extra_env={"TOKEN_SIGNING_KID": "test-1"})
        self.assertEqual(jose_parts(self.pair().access_token)[0]["kid"], "test-1")
        self.validate(new.access_token)
        # A token from a key that has been removed is refused.
        os.unlink(os.path.join(self.st.key_dir, "test-2.pem"))
        self.st.restart_service("token")
        self.assertCode(UNAUTH, self.validate, new.access_token, message="key")

    def test_refusals_at_start(self):
        d = self.st.key_dir
        self.expect_exit({"TOKEN_KEY_DIR": os.path.join(d, "missing")}, "TOKEN_KEY_DIR")
        self.expect_exit({"TOKEN_KEY_DIR": None}, "TOKEN_KEY_DIR is required")
        empty = os.path.join(self.st.dir, "empty-keys")
        os.makedirs(empty, exist_ok=True)
        self.expect_exit({"TOKEN_KEY_DIR": empty}, "no *.pem key")
        self.expect_exit({"TOKEN_SIGNING_KID": "nope"}, "TOKEN_SIGNING_KID")
        self.expect_exit({"AUTH_SERVICE_SECRET": None}, "AUTH_SERVICE_SECRET")
        with open(os.path.join(d, "junk.pem"), "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        self.expect_exit({}, "junk.pem")
        os.unlink(os.path.join(d, "junk.pem"))
        rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        with open(os.path.join(d, "rsa.pem"), "wb") as f:
            f.write(rsa_pem)
        self.expect_exit({}, "P-256")
        os.unlink(os.path.join(d, "rsa.pem"))
        p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        with open(os.path.join(d, "p384.pem"), "wb") as f:
            f.write(p384)
        self.expect_exit({}, "P-256")
        os.unlink(os.path.join(d, "p384.pem"))
        # Other files are ignored: a README next to the keys is fine.
        with open(os.path.join(d, "README"), "w") as f:
            f.write("keys\n")
        self.start_token()
        self.validate(self.pair().access_token)


# ---- Redis going away ----------------------------------------------------------------

class RedisFaultTest(TokenStackCase):

    def test_redis_down_and_back(self):
        pair = self.pair()
        svc_md = self.svc_md()
        pid = self.st.pid("token")
        self.st.stop_redis(save=True)
        try:
            for what, fn in [
                ("validate", lambda: self.validate(pair.access_token, timeout=5)),
                ("refresh", lambda: self.token().RefreshTokenPair(
                    self.pb.RefreshTokenPairRequest(refresh_token=pair.refresh_token),
                    metadata=svc_md, timeout=5)),
                ("issue", lambda: self.token().IssueTokenPair(
                    self.pb.IssueTokenPairRequest(account_id=new_account()),
                    metadata=svc_md, timeout=5)),
            ]:
                with self.subTest(what):
                    t0 = time.monotonic()
                    self.assertCode(grpc.StatusCode.UNAVAILABLE, fn)
                    self.assertLess(time.monotonic() - t0, 4.5)
            self.st.wait_health("token", "NOT_SERVING", timeout=10)
            self.assertEqual(self.st.health("token", service="estore.token.v1.TokenService"),
                             "NOT_SERVING")
            # What needs no Redis keeps working.
            self.assertEqual(len(self.token().GetJwks(self.pb.GetJwksRequest(), timeout=5).keys), 1)
        finally:
            self.st.start_redis()
        self.st.wait_health("token", "SERVING", timeout=20)
        self.assertEqual(self.st.pid("token"), pid)
        self.assertTrue(self.st.service_alive("token"))
        # Same data (saved and reloaded): the old session goes on.
        self.validate(pair.access_token)
        p2 = self.refresh(pair.refresh_token)
        self.validate(p2.access_token)
        self.validate(self.pair().access_token)


if __name__ == "__main__":
    fixture.main()
