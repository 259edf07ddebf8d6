"""Integration tests of estore-account against real PostgreSQL 15, with the
real token service validating access tokens.

Tokens: a service token comes from TokenService.IssueServiceToken("auth",
secret); account tokens from TokenService.IssueTokenPair with that service
token (the roles in a token are what the test asks for, as the auth service
would pass the account's roles).

Run by ctest (see CMakeLists.txt here) or by hand:
    /usr/bin/python3 tests/integration/test_account.py \
        --account BUILD/services/account/estore-account \
        --token BUILD/services/token/estore-token [-k pattern]
"""

import os
import secrets
import time
import unittest

import fixture

import grpc

SERVICE = "/estore.account.v1.AccountService/"
HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                          "services", "account", "migrations")


def A():
    return fixture.pb2("account")


def FieldMask(paths):
    from google.protobuf import field_mask_pb2
    return field_mask_pb2.FieldMask(paths=list(paths))


def unique_email(prefix="user"):
    return "%s-%s@example.com" % (prefix, secrets.token_hex(6))


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


def ld_field(num, data):
    """A length-delimited field (string, bytes, message) with raw bytes."""
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def varint_field(num, value):
    return _varint(num << 3) + _varint(value)


def top_level_fields(data):
    """Field numbers present at the top level of a serialized message."""
    nums, i = [], 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wt = key >> 3, key & 7
        nums.append(num)
        if wt == 0:
            _, i = _read_varint(data, i)
        elif wt == 2:
            n, i = _read_varint(data, i)
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise ValueError("wire type %d" % wt)
    return nums


def _read_varint(data, i):
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


class AccountStack(fixture.StackTestCase):
    """Token service + account service on one stack; helpers for tokens and
    accounts."""

    SERVICES = ("token", "account")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._svc_token = None

    def svc_md(self):
        if self._svc_token is None:
            type(self)._svc_token = self.stack.service_token("auth")
        return fixture.bearer(self._svc_token)

    def acct(self):
        return self.stack.stub("account")

    def create(self, email=None, name="Test User", roles=(), prefs=None, **kw):
        req = A().CreateAccountRequest(email=unique_email() if email is None else email,
                                       display_name=name,
                                       password_hash=kw.get("password_hash", HASH),
                                       roles=list(roles))
        if prefs is not None:
            req.preferences.CopyFrom(prefs)
        return self.acct().CreateAccount(req, metadata=self.svc_md(),
                                         timeout=kw.get("timeout", 10))

    def md_for(self, account, roles=("customer",)):
        pair = self.stack.token_pair(account.id, roles=roles)
        return fixture.bearer(pair.access_token)

    def new_user(self, roles=("customer",), **kw):
        """(Account, metadata) of a fresh account holding `roles`."""
        enum = {"customer": A().ROLE_CUSTOMER, "vendor": A().ROLE_VENDOR,
                "admin": A().ROLE_ADMIN}
        acc = self.create(roles=[enum[r] for r in roles], **kw)
        return acc, self.md_for(acc, roles)

    def assertCode(self, code, fn, *args, msg_contains=None, **kw):
        kw.setdefault("timeout", 10)
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        err = cm.exception
        self.assertEqual(err.code(), code, "details: %r" % err.details())
        if msg_contains is not None:
            self.assertIn(msg_contains, err.details() or "")
        return err

    def raw(self, method, body, md, timeout=10):
        """Calls a method with a hand-made request body; returns the raw
        reply bytes."""
        fn = self.stack.channel("account").unary_unary(SERVICE + method)
        return fn(body, metadata=md, timeout=timeout)


class AccountCrudTest(AccountStack):

    # -- create / get ----------------------------------------------------

    def test_create_and_get(self):
        email = unique_email("Mixed.Case")
        prefs = A().Preferences(locale="en-GB", currency="EUR", marketing_opt_in=True)
        acc = self.create(email=email, name="Zoë Example", prefs=prefs)
        self.assertRegex(acc.id, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        self.assertEqual(acc.email, email, "email is stored as given")
        self.assertEqual(acc.display_name, "Zoë Example")
        self.assertEqual(list(acc.roles), [A().ROLE_CUSTOMER], "default role")
        self.assertEqual(acc.preferences, prefs)
        now = time.time()
        self.assertLess(abs(acc.create_time.seconds - now), 300)
        self.assertEqual(acc.create_time, acc.update_time)

        md = self.md_for(acc)
        me = self.acct().GetAccount(A().GetAccountRequest(id="me"), metadata=md, timeout=10)
        self.assertEqual(me, acc)
        by_id = self.acct().GetAccount(A().GetAccountRequest(id=acc.id), metadata=md, timeout=10)
        self.assertEqual(by_id, acc)
        upper = self.acct().GetAccount(A().GetAccountRequest(id=acc.id.upper()), metadata=md,
                                       timeout=10)
        self.assertEqual(upper, acc, "UUIDs compare case-insensitively")
        # A service may read any account.
        svc = self.acct().GetAccount(A().GetAccountRequest(id=acc.id), metadata=self.svc_md(),
                                     timeout=10)
        self.assertEqual(svc, acc)

    def test_get_missing_and_malformed_ids(self):
        _, admin = self.new_user(("admin",))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.acct().GetAccount,
                        A().GetAccountRequest(id="00000000-0000-4000-8000-000000000000"),
                        metadata=admin)
        for bad in ("", "not-a-uuid", "00000000-0000-4000-8000-00000000000", "ME",
                    "00000000-0000-4000-8000-000000000000' OR '1'='1"):
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().GetAccount,
                            A().GetAccountRequest(id=bad), metadata=admin, msg_contains="id:")
        # "me" means nothing for a service.
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().GetAccount,
                        A().GetAccountRequest(id="me"), metadata=self.svc_md())

    def test_no_token_is_unauthenticated(self):
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.acct().GetAccount,
                        A().GetAccountRequest(id="me"))
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.acct().GetAccount,
                        A().GetAccountRequest(id="me"), metadata=fixture.bearer("garbage"))
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.acct().CreateAccount,
                        A().CreateAccountRequest(email=unique_email(), display_name="x",
                                                 password_hash=HASH))

    def test_duplicate_email_case_insensitive(self):
        email = unique_email("dup")
        self.create(email=email)
        for variant in (email, email.upper(), email.capitalize()):
            self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.create, email=variant,
                            msg_contains="email")
        # The same rule on update.
        other, md = self.new_user()
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(account=A().Account(id="me", email=email.upper()),
                                                 update_mask=FieldMask(["email"])),
                        metadata=md)

    # -- update ------------------------------------------------------------

    def test_update_with_field_mask(self):
        acc, md = self.new_user(prefs=A().Preferences(locale="de-DE", currency="EUR"))
        upd = self.acct().UpdateAccount(
            A().UpdateAccountRequest(
                account=A().Account(id="me", display_name="New Name", email="ignored@example.com",
                                    preferences=A().Preferences(currency="GBP")),
                update_mask=FieldMask(["display_name"])),
            metadata=md, timeout=10)
        self.assertEqual(upd.display_name, "New Name")
        self.assertEqual(upd.email, acc.email, "email was not in the mask")
        self.assertEqual(upd.preferences.currency, "EUR", "preferences were not in the mask")
        self.assertEqual(upd.create_time, acc.create_time)
        self.assertGreater((upd.update_time.seconds, upd.update_time.nanos),
                           (acc.update_time.seconds, acc.update_time.nanos))

        # One sub-field of preferences.
        upd = self.acct().UpdateAccount(
            A().UpdateAccountRequest(
                account=A().Account(id=acc.id, preferences=A().Preferences(
                    locale="fr-FR", currency="CHF", marketing_opt_in=True)),
                update_mask=FieldMask(["preferences.currency"])),
            metadata=md, timeout=10)
        self.assertEqual(upd.preferences, A().Preferences(locale="de-DE", currency="CHF"))

        # The whole preferences message (unset sub-fields are cleared).
        upd = self.acct().UpdateAccount(
            A().UpdateAccountRequest(
                account=A().Account(id="me", preferences=A().Preferences(marketing_opt_in=True)),
                update_mask=FieldMask(["preferences"])),
            metadata=md, timeout=10)
        self.assertEqual(upd.preferences, A().Preferences(marketing_opt_in=True))

        # Email, then the change is visible to Get.
        new_email = unique_email("changed")
        upd = self.acct().UpdateAccount(
            A().UpdateAccountRequest(account=A().Account(id="me", email=new_email),
                                     update_mask=FieldMask(["email", "preferences.locale"])),
            metadata=md, timeout=10)
        self.assertEqual(upd.email, new_email)
        self.assertEqual(upd.preferences.locale, "")
        got = self.acct().GetAccount(A().GetAccountRequest(id="me"), metadata=md, timeout=10)
        self.assertEqual(got, upd)

        # No mask: the fields that are set.
        upd = self.acct().UpdateAccount(
            A().UpdateAccountRequest(account=A().Account(id="me", display_name="Implied")),
            metadata=md, timeout=10)
        self.assertEqual(upd.display_name, "Implied")
        self.assertEqual(upd.email, new_email)

    def test_update_mask_errors(self):
        acc, md = self.new_user()
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(account=A().Account(id="me", display_name="x"),
                                                 update_mask=FieldMask(["display_name", "foo"])),
                        metadata=md, msg_contains="update_mask: unknown path 'foo'")
        for path in ("id", "create_time", "password_hash", "preferences.", "*", "Display_Name"):
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().UpdateAccount,
                            A().UpdateAccountRequest(account=A().Account(id="me"),
                                                     update_mask=FieldMask([path])),
                            metadata=md, msg_contains="update_mask: unknown path")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(update_mask=FieldMask(["display_name"])),
                        metadata=md, msg_contains="account:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(account=A().Account(id="me")),
                        metadata=md, msg_contains="update_mask")
        # Masked fields are validated; nothing changed.
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(account=A().Account(id="me", display_name=""),
                                                 update_mask=FieldMask(["display_name"])),
                        metadata=md, msg_contains="display_name: must be 1 to 100 characters")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(
                            account=A().Account(id="me", preferences=A().Preferences(currency="eur")),
                            update_mask=FieldMask(["preferences"])),
                        metadata=md, msg_contains="preferences.currency: must be a 3-letter ISO 4217 code")
        got = self.acct().GetAccount(A().GetAccountRequest(id="me"), metadata=md, timeout=10)
        self.assertEqual(got, acc)
        # Updating an account that is gone.
        _, admin = self.new_user(("admin",))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(
                            account=A().Account(id="00000000-0000-4000-8000-000000000001",
                                                display_name="x"),
                            update_mask=FieldMask(["display_name"])),
                        metadata=admin)

    # -- delete ------------------------------------------------------------

    def test_delete(self):
        acc, md = self.new_user()
        _, admin = self.new_user(("admin",))
        self.acct().DeleteAccount(A().DeleteAccountRequest(id="me"), metadata=md, timeout=10)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.acct().GetAccount,
                        A().GetAccountRequest(id=acc.id), metadata=admin)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.acct().DeleteAccount,
                        A().DeleteAccountRequest(id=acc.id), metadata=admin)
        # The email is free again.
        again = self.create(email=acc.email)
        self.assertNotEqual(again.id, acc.id)
        # An admin deletes another account.
        self.acct().DeleteAccount(A().DeleteAccountRequest(id=again.id), metadata=admin,
                                  timeout=10)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.acct().GetAccount,
                        A().GetAccountRequest(id=again.id), metadata=admin)

    # -- list --------------------------------------------------------------

    def list_all(self, md, page_size, role=0, limit_pages=1000):
        ids, times, token, pages = [], [], "", 0
        while True:
            r = self.acct().ListAccounts(A().ListAccountsRequest(page_size=page_size,
                                                                 page_token=token, role=role),
                                         metadata=md, timeout=10)
            pages += 1
            self.assertLessEqual(len(r.accounts), page_size or 20)
            ids += [a.id for a in r.accounts]
            times += [(a.create_time.seconds, a.create_time.nanos, a.id) for a in r.accounts]
            for a in r.accounts:
                if role:
                    self.assertIn(role, list(a.roles))
            token = r.next_page_token
            if not token:
                return ids, times, pages
            self.assertEqual(len(r.accounts), page_size or 20, "only the last page is short")
            self.assertLess(pages, limit_pages)

    def test_list_pages_cover_every_account_once(self):
        _, admin = self.new_user(("admin",))
        created = {self.create(name="Lister %d" % i).id for i in range(23)}
        ids, times, pages = self.list_all(admin, 7)
        self.assertEqual(len(ids), len(set(ids)), "no account twice")
        self.assertTrue(created <= set(ids))
        in_db = set(self.stack.psql("SELECT id FROM account.accounts").split())
        self.assertEqual(set(ids), in_db, "every account exactly once")
        self.assertEqual(times, sorted(times, reverse=True), "newest first")
        self.assertEqual(pages, (len(ids) + 6) // 7)
        # Default page size.
        r = self.acct().ListAccounts(A().ListAccountsRequest(), metadata=admin, timeout=10)
        self.assertEqual(len(r.accounts), min(20, len(ids)))
        self.assertEqual([a.id for a in r.accounts], ids[:len(r.accounts)])
        r = self.acct().ListAccounts(A().ListAccountsRequest(page_size=100), metadata=admin,
                                     timeout=10)
        self.assertEqual(len(r.accounts), min(100, len(ids)))

    def test_list_same_create_time_pages_by_id(self):
        """Accounts created in one transaction share create_time; the id
        breaks the tie so paging neither repeats nor skips them."""
        _, admin = self.new_user(("admin",))
        before = set(self.list_all(admin, 100)[0])
        self.stack.psql(
            "INSERT INTO account.accounts (email, display_name, password_hash, roles) "
            "SELECT 'tie-' || g || '-%s@example.com', 'Tie ' || g, 'x', '{vendor}' "
            "FROM generate_series(1, 9) g" % secrets.token_hex(4))
        ids, _, _ = self.list_all(admin, 2)
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(len(set(ids) - before), 9)

    def test_list_role_filter(self):
        _, admin = self.new_user(("admin",))
        vendors = {self.new_user(("vendor",))[0].id for _ in range(5)}
        both = self.new_user(("customer", "vendor"))[0]
        vendors.add(both.id)
        ids, _, _ = self.list_all(admin, 2, role=A().ROLE_VENDOR)
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue(vendors <= set(ids))
        in_db = set(self.stack.psql(
            "SELECT id FROM account.accounts WHERE 'vendor' = ANY(roles)").split())
        self.assertEqual(set(ids), in_db)
        admins, _, _ = self.list_all(admin, 50, role=A().ROLE_ADMIN)
        self.assertFalse(vendors & set(admins))
        # A token continues only the listing it came from.
        r = self.acct().ListAccounts(A().ListAccountsRequest(page_size=1, role=A().ROLE_VENDOR),
                                     metadata=admin, timeout=10)
        self.assertTrue(r.next_page_token)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().ListAccounts,
                        A().ListAccountsRequest(page_size=1, page_token=r.next_page_token),
                        metadata=admin, msg_contains="page_token")

    def test_list_bad_input(self):
        _, admin = self.new_user(("admin",))
        for size in (-1, 101, 2 ** 31 - 1):
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().ListAccounts,
                            A().ListAccountsRequest(page_size=size), metadata=admin,
                            msg_contains="page_size")
        for tok in ("garbage", "!!!!", "MS4x", "a" * 500, "MS4xNzAwMDAwMDAwMDAwMDAwLnh4eC4w",
                    "eyJhbGciOiJub25lIn0", "' OR 1=1 --"):
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().ListAccounts,
                            A().ListAccountsRequest(page_token=tok), metadata=admin,
                            msg_contains="page_token")
        # role 7 is not a role (sent raw: the enum is open in proto3).
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.raw, "ListAccounts",
                        varint_field(3, 7), admin, msg_contains="role")

    # -- validation ----------------------------------------------------------

    def test_create_validation(self):
        long_local = "a" * 65 + "@example.com"
        too_long = "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com"
        cases = [
            (dict(email=""), "email: is required"),
            (dict(email="no-at-sign.example.com"), "email:"),
            (dict(email="two@@example.com"), "email:"),
            (dict(email="a@b@example.com"), "email:"),
            (dict(email="nodot@localhost"), "email:"),
            (dict(email="space in@example.com"), "email:"),
            (dict(email="tab\t@example.com"), "email:"),
            (dict(email="ctl\x01@example.com"), "email:"),
            (dict(email="@example.com"), "email:"),
            (dict(email="a@.example.com"), "email:"),
            (dict(email="a@example..com"), "email:"),
            (dict(email=".a@example.com"), "email:"),
            (dict(email=long_local), "email:"),
            (dict(email=too_long), "email:"),
            (dict(display_name=""), "display_name: must be 1 to 100 characters of valid UTF-8"),
            (dict(display_name="x" * 101), "display_name: must be 1 to 100 characters of valid UTF-8"),
            (dict(display_name="é" * 101), "display_name: must be 1 to 100 characters of valid UTF-8"),
            (dict(display_name="bell\x07"), "display_name:"),
            (dict(display_name="new\nline"), "display_name:"),
            (dict(display_name="   "), "display_name:"),
            (dict(roles=[7]), "roles: unknown role 7"),
            (dict(roles=[0]), "roles: unknown role 0"),
            (dict(roles=[1, -1]), "roles: unknown role -1"),
            (dict(prefs=A().Preferences(currency="eur")), "preferences.currency: must be a 3-letter ISO 4217 code"),
            (dict(prefs=A().Preferences(currency="EURO")), "preferences.currency: must be a 3-letter ISO 4217 code"),
            (dict(prefs=A().Preferences(locale="en_GB")), "preferences.locale:"),
            (dict(prefs=A().Preferences(locale="e" * 36)), "preferences.locale:"),
            (dict(prefs=A().Preferences(locale="en--GB")), "preferences.locale:"),
            (dict(password_hash=""), "password_hash:"),
            (dict(password_hash="hunter2"), "password_hash:"),
            (dict(password_hash="$argon2id$" + "x" * 600), "password_hash:"),
        ]
        for kw, msg in cases:
            with self.subTest(kw=kw):
                args = dict(email=unique_email(), name="Valid Name")
                if "display_name" in kw:
                    args["name"] = kw.pop("display_name")
                args.update(kw)
                self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.create,
                                msg_contains=msg, **args)
        # The limits themselves are fine: 100 two-byte characters, 64-byte
        # local part, 254-byte address, 35-character tag.
        ok = self.create(name="é" * 100, email="b" * 64 + "@" + ("c" * 63 + ".") * 2 + "d" * 58 + ".io",
                         prefs=A().Preferences(locale="zh-Hant-TW-x-private1-abcdefgh", currency="JPY"))
        self.assertEqual(len(ok.email), 254)
        self.assertEqual(ok.display_name, "é" * 100)
        ok = self.create(name="🙂" * 100)
        self.assertEqual(ok.display_name, "🙂" * 100)
        ok = self.create(roles=[A().ROLE_VENDOR, A().ROLE_VENDOR, A().ROLE_CUSTOMER])
        self.assertEqual(sorted(ok.roles), [A().ROLE_CUSTOMER, A().ROLE_VENDOR])

    def test_invalid_utf8_is_refused(self):
        svc = self.svc_md()
        good = {1: unique_email().encode(), 2: b"Valid", 3: HASH.encode()}
        for field, bad in ((2, b"bad \xff\xfe name"), (2, b"\xc0\xaf"), (2, b"\xed\xa0\x80"),
                           (1, b"caf\xe9@example.com"), (2, b"trunc\xe2\x82")):
            with self.subTest(field=field, bad=bad):
                body = b"".join(ld_field(n, bad if n == field else v) for n, v in good.items())
                err = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.raw, "CreateAccount",
                                      body, svc)
                self.assertIn("email:" if field == 1 else "display_name:", err.details())
        # The same bytes in an update.
        acc, md = self.new_user()
        body = ld_field(1, ld_field(1, b"me") + ld_field(3, b"\xff")) + \
            ld_field(2, ld_field(1, b"display_name"))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.raw, "UpdateAccount", body, md,
                        msg_contains="display_name")
        # Malformed protobuf is refused before the handler.
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.raw, "CreateAccount",
                        b"\x0a\xff\xff\xff", svc)
        # Valid multi-byte UTF-8 round-trips.
        ok = self.create(name="Ünïcødé ✓ 日本語")
        self.assertEqual(ok.display_name, "Ünïcødé ✓ 日本語")

    def test_sql_metacharacters_are_data(self):
        evil = "'); DROP TABLE account.accounts;--"
        acc, md = self.new_user(name=evil, email="o'brien-%s@example.com" % secrets.token_hex(4))
        self.assertEqual(acc.display_name, evil)
        self.assertEqual(self.acct().GetAccount(A().GetAccountRequest(id="me"), metadata=md,
                                                timeout=10).display_name, evil)
        for name in ("Robert'); DELETE FROM account.accounts; --", "x\\' OR 1=1 --", "$1 %s %d {}"):
            upd = self.acct().UpdateAccount(
                A().UpdateAccountRequest(account=A().Account(id="me", display_name=name),
                                         update_mask=FieldMask(["display_name"])),
                metadata=md, timeout=10)
            self.assertEqual(upd.display_name, name)
        self.assertEqual(self.stack.psql(
            "SELECT display_name FROM account.accounts WHERE id = '%s'" % acc.id).strip(),
            "$1 %s %d {}")
        # The email with a quote is found by email, and an injection-shaped
        # email finds nothing.
        c = self.acct().GetAccountByEmail(A().GetAccountByEmailRequest(email=acc.email),
                                          metadata=self.svc_md(), timeout=10)
        self.assertEqual(c.account.id, acc.id)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.acct().GetAccountByEmail,
                        A().GetAccountByEmailRequest(email="x'or'1'='1@example.com"),
                        metadata=self.svc_md())
        self.assertGreater(int(self.stack.psql("SELECT count(*) FROM account.accounts")), 0)

    # -- the password hash -----------------------------------------------------

    def test_public_rpcs_never_return_password_hash(self):
        self.assertNotIn("password_hash", A().Account.DESCRIPTOR.fields_by_name)
        _, admin = self.new_user(("admin",))
        acc, md = self.new_user(name="Hash Holder")
        raws = [
            self.raw("GetAccount", A().GetAccountRequest(id="me").SerializeToString(), md),
            self.raw("GetAccount", A().GetAccountRequest(id=acc.id).SerializeToString(), admin),
            self.raw("UpdateAccount", A().UpdateAccountRequest(
                account=A().Account(id="me", display_name="Hash Holder 2"),
                update_mask=FieldMask(["display_name"])).SerializeToString(), md),
            self.raw("CreateAccount", A().CreateAccountRequest(
                email=unique_email(), display_name="x", password_hash=HASH).SerializeToString(),
                self.svc_md()),
        ]
        for body in raws:
            self.assertNotIn(HASH.encode(), body)
            self.assertNotIn(b"$argon2", body)
            self.assertTrue(set(top_level_fields(body)) <= {1, 2, 3, 4, 5, 6, 7},
                            "only Account's own fields")
        lst = self.raw("ListAccounts", A().ListAccountsRequest(page_size=100).SerializeToString(),
                       admin)
        self.assertNotIn(b"$argon2", lst)
        parsed = A().ListAccountsResponse.FromString(lst)
        self.assertTrue(parsed.accounts)

    def test_internal_rpcs(self):
        email = unique_email("Creds")
        acc = self.create(email=email)
        svc = self.svc_md()
        c = self.acct().GetAccountByEmail(A().GetAccountByEmailRequest(email=email.lower()),
                                          metadata=svc, timeout=10)
        self.assertEqual(c.account, acc)
        self.assertEqual(c.password_hash, HASH)
        new_hash = "$argon2id$v=19$m=65536,t=3,p=1$bmV3c2FsdA$bmV3aGFzaG5ld2hhc2g"
        self.acct().SetPasswordHash(A().SetPasswordHashRequest(id=acc.id, password_hash=new_hash),
                                    metadata=svc, timeout=10)
        c = self.acct().GetAccountByEmail(A().GetAccountByEmailRequest(email=email),
                                          metadata=svc, timeout=10)
        self.assertEqual(c.password_hash, new_hash)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.acct().GetAccountByEmail,
                        A().GetAccountByEmailRequest(email=unique_email("nobody")), metadata=svc)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.acct().SetPasswordHash,
                        A().SetPasswordHashRequest(id="00000000-0000-4000-8000-000000000000",
                                                   password_hash=new_hash), metadata=svc)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().SetPasswordHash,
                        A().SetPasswordHashRequest(id=acc.id, password_hash="plaintext"),
                        metadata=svc, msg_contains="password_hash:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().SetPasswordHash,
                        A().SetPasswordHashRequest(id="me", password_hash=new_hash),
                        metadata=svc, msg_contains="id:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().GetAccountByEmail,
                        A().GetAccountByEmailRequest(email=""), metadata=svc,
                        msg_contains="email:")

    # -- authorization -----------------------------------------------------------

    def test_customer_cannot_touch_other_accounts(self):
        alice, alice_md = self.new_user(name="Alice")
        bob, _ = self.new_user(name="Bob")
        PD = grpc.StatusCode.PERMISSION_DENIED
        self.assertCode(PD, self.acct().GetAccount, A().GetAccountRequest(id=bob.id),
                        metadata=alice_md)
        self.assertCode(PD, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(account=A().Account(id=bob.id, display_name="pwned"),
                                                 update_mask=FieldMask(["display_name"])),
                        metadata=alice_md)
        self.assertCode(PD, self.acct().DeleteAccount, A().DeleteAccountRequest(id=bob.id),
                        metadata=alice_md)
        self.assertCode(PD, self.acct().ListAccounts, A().ListAccountsRequest(),
                        metadata=alice_md)
        # Internal RPCs are for services only.
        self.assertCode(PD, self.acct().GetAccountByEmail,
                        A().GetAccountByEmailRequest(email=bob.email), metadata=alice_md)
        self.assertCode(PD, self.acct().SetPasswordHash,
                        A().SetPasswordHashRequest(id=alice.id, password_hash=HASH),
                        metadata=alice_md)
        self.assertCode(PD, self.acct().CreateAccount,
                        A().CreateAccountRequest(email=unique_email(), display_name="x",
                                                 password_hash=HASH), metadata=alice_md)
        # A vendor is no better.
        _, vendor_md = self.new_user(("vendor",))
        self.assertCode(PD, self.acct().GetAccount, A().GetAccountRequest(id=bob.id),
                        metadata=vendor_md)
        # Services read but do not change accounts.
        self.assertCode(PD, self.acct().DeleteAccount, A().DeleteAccountRequest(id=bob.id),
                        metadata=self.svc_md())
        # Bob is untouched.
        got = self.acct().GetAccount(A().GetAccountRequest(id=bob.id), metadata=self.svc_md(),
                                     timeout=10)
        self.assertEqual(got, bob)

    def test_only_admins_grant_roles(self):
        alice, alice_md = self.new_user()
        for roles in ([A().ROLE_ADMIN], [A().ROLE_CUSTOMER]):
            self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.acct().UpdateAccount,
                            A().UpdateAccountRequest(account=A().Account(id="me", roles=roles),
                                                     update_mask=FieldMask(["roles"])),
                            metadata=alice_md, msg_contains="roles: only admins can grant roles")
        # Not through an implied mask either.
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(account=A().Account(id="me", roles=[A().ROLE_ADMIN])),
                        metadata=alice_md, msg_contains="roles:")
        got = self.acct().GetAccount(A().GetAccountRequest(id="me"), metadata=alice_md, timeout=10)
        self.assertEqual(list(got.roles), [A().ROLE_CUSTOMER])

        _, admin = self.new_user(("admin",))
        upd = self.acct().UpdateAccount(
            A().UpdateAccountRequest(account=A().Account(id=alice.id,
                                                         roles=[A().ROLE_VENDOR, A().ROLE_CUSTOMER]),
                                     update_mask=FieldMask(["roles"])),
            metadata=admin, timeout=10)
        self.assertEqual(sorted(upd.roles), [A().ROLE_CUSTOMER, A().ROLE_VENDOR])
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(account=A().Account(id=alice.id, roles=[7]),
                                                 update_mask=FieldMask(["roles"])),
                        metadata=admin, msg_contains="roles: unknown role 7")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.acct().UpdateAccount,
                        A().UpdateAccountRequest(account=A().Account(id=alice.id),
                                                 update_mask=FieldMask(["roles"])),
                        metadata=admin, msg_contains="roles:")
        # Admins read and edit anyone.
        got = self.acct().GetAccount(A().GetAccountRequest(id=alice.id), metadata=admin, timeout=10)
        self.assertEqual(sorted(got.roles), [A().ROLE_CUSTOMER, A().ROLE_VENDOR])
        upd = self.acct().UpdateAccount(
            A().UpdateAccountRequest(account=A().Account(id=alice.id, display_name="By Admin"),
                                     update_mask=FieldMask(["display_name"])),
            metadata=admin, timeout=10)
        self.assertEqual(upd.display_name, "By Admin")


class AccountPostgresFaultTest(AccountStack):
    """PostgreSQL goes away under a running service and comes back."""

    def test_postgres_stop_and_restart(self):
        st = self.stack
        acc, md = self.new_user()
        pid = st.pid("account")
        st.stop_postgres("fast")
        try:
            t0 = time.monotonic()
            self.assertCode(grpc.StatusCode.UNAVAILABLE, self.acct().GetAccount,
                            A().GetAccountRequest(id="me"), metadata=md, timeout=3)
            self.assertLess(time.monotonic() - t0, 3.0, "answered within the deadline")
            self.assertCode(grpc.StatusCode.UNAVAILABLE, self.create, timeout=3)
            st.wait_health("account", "NOT_SERVING", timeout=15)
            self.assertEqual(st.health("account", service="estore.account.v1.AccountService"),
                             "NOT_SERVING")
            # The process itself is fine: a liveness probe must not kill it.
            self.assertEqual(st.health("account", service="liveness"), "SERVING")
        finally:
            st.start_postgres()
        st.wait_health("account", "SERVING", timeout=20)
        got = self.acct().GetAccount(A().GetAccountRequest(id="me"), metadata=md, timeout=10)
        self.assertEqual(got, acc)
        self.create()
        self.assertEqual(st.pid("account"), pid, "no restart of the service")

    def test_postgres_crash(self):
        st = self.stack
        acc, md = self.new_user()
        # The fixture runs PostgreSQL with synchronous_commit=off: without a
        # checkpoint a crash may lose the last commits, which is not what
        # this test is about.
        st.psql("CHECKPOINT")
        st.stop_postgres("immediate")
        try:
            self.assertCode(grpc.StatusCode.UNAVAILABLE, self.acct().GetAccount,
                            A().GetAccountRequest(id="me"), metadata=md, timeout=3)
        finally:
            st.start_postgres()
        st.wait_health("account", "SERVING", timeout=20)
        got = self.acct().GetAccount(A().GetAccountRequest(id="me"), metadata=md, timeout=10)
        self.assertEqual(got, acc)


class AccountStartupTest(unittest.TestCase):
    """Starting without a database, and several replicas at once."""

    @classmethod
    def setUpClass(cls):
        for n in ("token", "account"):
            if not fixture.have_binary(n):
                raise RuntimeError("not built: " + fixture.binary_path(n))
        fixture.load_stubs()

    def setUp(self):
        self.stack = fixture.Stack().start()
        self.addCleanup(self.stack.close)

    def run(self, result=None):
        r = super().run(result)
        res = result or r
        if res is not None and not res.wasSuccessful() and getattr(self, "stack", None):
            self.stack.failed = True
        return r

    def migration_files(self):
        return sorted(f for f in os.listdir(MIGRATIONS) if f.endswith(".sql"))

    def test_starts_without_postgres_and_migrates_later(self):
        st = self.stack
        st.start_service("token")
        st.stop_postgres("fast")
        st.start_service("account", wait="listening")
        try:
            self.assertEqual(st.wait_health("account", "NOT_SERVING", timeout=10), "NOT_SERVING")
            svc = fixture.bearer(st.service_token())
            with self.assertRaises(grpc.RpcError) as cm:
                st.stub("account").CreateAccount(
                    A().CreateAccountRequest(email=unique_email(), display_name="x",
                                             password_hash=HASH),
                    metadata=svc, timeout=3)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            # Still NOT_SERVING a while later: nothing to serve with.
            time.sleep(1)
            self.assertEqual(st.health("account"), "NOT_SERVING")
        finally:
            st.start_postgres()
        st.wait_health("account", "SERVING", timeout=20)
        acc = st.stub("account").CreateAccount(
            A().CreateAccountRequest(email=unique_email(), display_name="Late", password_hash=HASH),
            metadata=svc, timeout=10)
        self.assertEqual(acc.display_name, "Late")
        self.assertEqual(st.psql("SELECT count(*) FROM account.schema_migrations").strip(),
                         str(len(self.migration_files())))
        st.assert_clean_exit(self, "account")

    def test_replicas_starting_together_migrate_once(self):
        st = self.stack
        st.start_service("token")
        names = ["account", "account2", "account3"]
        for n in names[1:]:
            st.ports[n] = fixture.free_port()
        # All at once, then wait: they race for the migration lock.
        for n in names:
            st.start_service(n, binary=fixture.binary_path("account"),
                             extra_env={"ACCOUNT_API_PORT": st.ports[n]}, wait=None)
        for n in names:
            st.wait_health(n, "SERVING", timeout=30)
        files = self.migration_files()
        rows = st.psql("SELECT version, name FROM account.schema_migrations ORDER BY version")
        self.assertEqual([line.split("|")[1] for line in rows.split()], files)
        applied = sum(st.log(n).count('applied 001_init.sql') for n in names)
        self.assertEqual(applied, 1, "exactly one replica applied the migration")
        # Every replica serves the same data.
        svc = fixture.bearer(st.service_token())
        acc = st.stub("account").CreateAccount(
            A().CreateAccountRequest(email=unique_email(), display_name="Shared", password_hash=HASH),
            metadata=svc, timeout=10)
        for n in names[1:]:
            with grpc.insecure_channel(st.target(n)) as ch:
                stub = fixture.pb2_grpc("account").AccountServiceStub(ch)
                got = stub.GetAccount(A().GetAccountRequest(id=acc.id), metadata=svc, timeout=10)
                self.assertEqual(got, acc)
        for n in names:
            st.assert_clean_exit(self, n)


if __name__ == "__main__":
    fixture.main()
