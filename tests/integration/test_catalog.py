"""Integration tests of estore-catalog against real PostgreSQL 15, with the
real token service validating access tokens (and, for the REST journey,
the real edge proxy in front).

Tokens: a service token comes from TokenService.IssueServiceToken("auth",
secret); account tokens from TokenService.IssueTokenPair with that service
token, for a random account id and the roles the test needs (customer,
vendor, admin): the catalog only reads the token's subject and roles, so no
account service is needed.

Run by ctest (see CMakeLists.txt here) or by hand:
    /usr/bin/python3 tests/integration/test_catalog.py \
        --catalog BUILD/services/catalog/estore-catalog \
        --token BUILD/services/token/estore-token \
        --edge BUILD/edge-proxy/estore-edge [-k pattern]
"""

import concurrent.futures
import http.client
import json
import secrets
import time
import uuid

import fixture

import grpc


def C():
    return fixture.pb2("catalog")


def FieldMask(paths):
    from google.protobuf import field_mask_pb2
    return field_mask_pb2.FieldMask(paths=list(paths))


def slug(prefix="s"):
    return "%s-%s" % (prefix, secrets.token_hex(5))


class CatalogCase(fixture.StackTestCase):
    """Token service + catalog service; shortcuts for callers of each kind."""

    SERVICES = ("token", "catalog")
    SERVICE_ENV = {"catalog": {"GRPC_WORKERS": "32", "DB_POOL_SIZE": "8"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._svc = None

    def cat(self):
        return self.stack.stub("catalog")

    def user(self, *roles):
        """(account id, metadata) of a fresh account holding `roles`."""
        acc = str(uuid.uuid4())
        pair = self.stack.token_pair(acc, roles=roles)
        return acc, fixture.bearer(pair.access_token)

    def svc(self):
        if self._svc is None:
            type(self)._svc = fixture.bearer(self.stack.service_token("auth"))
        return self._svc

    def assertCode(self, code, fn, *args, msg_contains=None, **kw):
        # Stubs get a deadline here; the shortcuts below set their own.
        if isinstance(fn, grpc.UnaryUnaryMultiCallable):
            kw.setdefault("timeout", 10)
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        err = cm.exception
        self.assertEqual(err.code(), code, "details: %r" % err.details())
        if msg_contains is not None:
            self.assertIn(msg_contains, err.details() or "")
        return err

    def new_store(self, md, timeout=10, **kw):
        s = C().Store(name=kw.pop("name", "Test Store"), slug=kw.pop("slug", slug()), **kw)
        return self.cat().CreateStore(C().CreateStoreRequest(store=s), metadata=md,
                                      timeout=timeout)

    def product_msg(self, **kw):
        p = C().Product(title=kw.pop("title", "Wireless Headphones"),
                        description=kw.pop("description", "Over-ear, 30 h battery."),
                        price=kw.pop("price", C().Money(amount_minor=4999, currency="EUR")),
                        **kw)
        return p

    def new_product(self, md, store_id, timeout=10, **kw):
        return self.cat().CreateProduct(
            C().CreateProductRequest(store_id=store_id, product=self.product_msg(**kw)),
            metadata=md, timeout=timeout)

    def get(self, pid, md=None, timeout=10):
        return self.cat().GetProduct(C().GetProductRequest(id=pid), metadata=md, timeout=timeout)

    def row(self, pid):
        """(stock, reserved, sales_count) straight from PostgreSQL."""
        out = self.stack.psql("SELECT stock, reserved, sales_count FROM catalog.products "
                              "WHERE id = '%s'" % pid).strip()
        return tuple(int(x) for x in out.split("|"))


class StoreTests:

    def test_create_get_update_and_suspend(self):
        vendor, vmd = self.user("vendor")
        other, omd = self.user("vendor")
        admin, amd = self.user("admin")
        _, cmd = self.user("customer")
        st = self.new_store(vmd, name="Ada's Audio", description="Headphones and more")
        self.assertEqual(st.owner_id, vendor)
        self.assertEqual(st.status, C().STORE_STATUS_ACTIVE)
        self.assertEqual(st.name, "Ada's Audio")
        self.assertEqual(st.create_time, st.update_time)

        # Anyone reads an active store, by slug or by id (any case).
        for key in (st.slug, st.id, st.id.upper()):
            self.assertEqual(self.cat().GetStore(C().GetStoreRequest(slug=key), timeout=10), st)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.cat().GetStore,
                        C().GetStoreRequest(slug="no-such-store"))
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.new_store, omd, slug=st.slug,
                        msg_contains="store.slug")

        # Edits: owner and admin; not another vendor, a customer or a service.
        upd = C().UpdateStoreRequest(store=C().Store(id=st.id, name="Ada's Audio Shop"),
                                     update_mask=FieldMask(["name"]))
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.cat().UpdateStore, upd, metadata=omd)
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.cat().UpdateStore, upd, metadata=cmd)
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.cat().UpdateStore, upd,
                        metadata=self.svc())
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.cat().UpdateStore, upd)
        got = self.cat().UpdateStore(upd, metadata=vmd, timeout=10)
        self.assertEqual(got.name, "Ada's Audio Shop")
        self.assertEqual(got.description, st.description, "unmasked fields stay")
        got = self.cat().UpdateStore(
            C().UpdateStoreRequest(store=C().Store(id=st.id, description=""),
                                   update_mask=FieldMask(["description"])),
            metadata=amd, timeout=10)
        self.assertEqual(got.description, "", "an admin edits any store; a mask clears")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().UpdateStore,
                        C().UpdateStoreRequest(store=C().Store(id=st.id, name="x"),
                                               update_mask=FieldMask(["owner_id"])),
                        metadata=vmd, msg_contains="update_mask: unknown path 'owner_id'")

        # Status: admins only.
        suspend = C().UpdateStoreRequest(
            store=C().Store(id=st.id, status=C().STORE_STATUS_SUSPENDED),
            update_mask=FieldMask(["status"]))
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.cat().UpdateStore, suspend,
                        metadata=vmd, msg_contains="store.status")
        p = self.new_product(vmd, st.id, status=C().PRODUCT_STATUS_ACTIVE)
        self.assertEqual(self.get(p.id).title, p.title, "public sees an active product")
        got = self.cat().UpdateStore(suspend, metadata=amd, timeout=10)
        self.assertEqual(got.status, C().STORE_STATUS_SUSPENDED)

        # A suspended store and its products: owner, admins, services only.
        req = C().GetStoreRequest(slug=st.slug)
        for md in (None, omd, cmd):
            self.assertCode(grpc.StatusCode.NOT_FOUND, self.cat().GetStore, req, metadata=md)
            self.assertCode(grpc.StatusCode.NOT_FOUND, self.get, p.id, md)
        for md in (vmd, amd, self.svc()):
            self.assertEqual(self.cat().GetStore(req, metadata=md, timeout=10).id, st.id)
            self.assertEqual(self.get(p.id, md).id, p.id)

        # Back to active: public again.
        self.cat().UpdateStore(C().UpdateStoreRequest(
            store=C().Store(id=st.id, status=C().STORE_STATUS_ACTIVE),
            update_mask=FieldMask(["status"])), metadata=amd, timeout=10)
        self.assertEqual(self.cat().GetStore(req, timeout=10).id, st.id)
        self.assertEqual(self.get(p.id).id, p.id)

    def test_who_may_create(self):
        vendor, vmd = self.user("vendor")
        _, cmd = self.user("customer")
        admin, amd = self.user("admin")
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.new_store, cmd)
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.new_store, self.svc())
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.new_store, None)
        other = str(uuid.uuid4())
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.new_store, vmd, owner_id=other,
                        msg_contains="store.owner_id")
        self.assertEqual(self.new_store(vmd, owner_id=vendor.upper()).owner_id, vendor)
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.new_store, vmd,
                        status=C().STORE_STATUS_SUSPENDED, msg_contains="store.status")
        got = self.new_store(amd, owner_id=other)
        self.assertEqual(got.owner_id, other, "admins open stores for others")
        self.assertEqual(self.new_store(amd).owner_id, admin)
        got = self.new_store(amd, status=C().STORE_STATUS_SUSPENDED)
        self.assertEqual(got.status, C().STORE_STATUS_SUSPENDED)

    def test_store_bad_input(self):
        _, vmd = self.user("vendor")
        cases = [
            ({"name": ""}, "store.name"),
            ({"name": "   "}, "store.name"),
            ({"name": "x" * 101}, "store.name"),
            ({"name": "tab\there"}, "store.name"),
            ({"slug": ""}, "store.slug"),
            ({"slug": "ab"}, "store.slug"),
            ({"slug": "Upper"}, "store.slug"),
            ({"slug": "-lead"}, "store.slug"),
            ({"slug": "trail-"}, "store.slug"),
            ({"slug": "under_score"}, "store.slug"),
            ({"slug": "a" * 64}, "store.slug"),
            ({"slug": str(uuid.uuid4())}, "store.slug"),
            ({"slug": "x'; DROP TABLE catalog.stores; --"}, "store.slug"),
            ({"description": "d" * 2001}, "store.description"),
            ({"description": "bell\x07"}, "store.description"),
            ({"owner_id": "not-a-uuid"}, "store.owner_id"),
            ({"status": 7}, "store.status"),
        ]
        for fields, field in cases:
            with self.subTest(fields=fields):
                self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.new_store, vmd,
                                msg_contains=field + ":", **fields)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().CreateStore,
                        C().CreateStoreRequest(), metadata=vmd, msg_contains="store:")
        for key in ("", "NOT A SLUG", "a" * 64):
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().GetStore,
                            C().GetStoreRequest(slug=key), msg_contains="slug:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().UpdateStore,
                        C().UpdateStoreRequest(store=C().Store(id="nope", name="x")),
                        metadata=vmd, msg_contains="store.id:")
        st = self.new_store(vmd)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().UpdateStore,
                        C().UpdateStoreRequest(store=C().Store(id=st.id, name=""),
                                               update_mask=FieldMask(["name"])),
                        metadata=vmd, msg_contains="store.name:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().UpdateStore,
                        C().UpdateStoreRequest(store=C().Store(id=st.id)),
                        metadata=vmd, msg_contains="update_mask:")
        # Non-ASCII names are fine; stored and returned as given.
        self.assertEqual(self.new_store(vmd, name="Zoë's Café ☕").name, "Zoë's Café ☕")


class CategoryTests:

    def create_category(self, md, slug_, name="Category", parent=""):
        return self.cat().CreateCategory(C().CreateCategoryRequest(
            category=C().Category(slug=slug_, name=name, parent_id=parent)),
            metadata=md, timeout=10)

    def test_tree(self):
        _, amd = self.user("admin")
        _, vmd = self.user("vendor")
        root = self.create_category(amd, slug("electronics"), "Electronics")
        self.assertEqual(root.parent_id, "")
        audio = self.create_category(amd, "audio", "Audio", root.id)
        phones = self.create_category(amd, "headphones", "Headphones", audio.id.upper())
        self.assertEqual(phones.parent_id, audio.id)
        books = self.create_category(amd, slug("books"), "Books")
        # Unique among siblings only.
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.create_category, amd, "audio",
                        parent=root.id, msg_contains="category.slug")
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.create_category, amd, root.slug,
                        msg_contains="category.slug")
        self.create_category(amd, "audio", "Audio books", books.id)

        listed = self.cat().ListCategories(C().ListCategoriesRequest(), timeout=10).categories
        pos = {c.id: i for i, c in enumerate(listed)}
        by_id = {c.id: c for c in listed}
        for c in listed:
            if c.parent_id:
                self.assertLess(pos[c.parent_id], pos[c.id], "parents before children")
        self.assertEqual(by_id[phones.id], phones)
        self.assertIn(books.id, pos)

        # Who: admins only.
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.create_category, vmd, slug("x"))
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.create_category, self.svc(), slug("x"))
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, self.create_category, None, slug("x"))

    def test_category_bad_input(self):
        _, amd = self.user("admin")
        for kw, field in (({"slug_": ""}, "category.slug"),
                          ({"slug_": "Has Space"}, "category.slug"),
                          ({"slug_": "-x"}, "category.slug"),
                          ({"slug_": "ok", "name": ""}, "category.name"),
                          ({"slug_": "ok", "name": "n" * 101}, "category.name"),
                          ({"slug_": "ok", "parent": "zzz"}, "category.parent_id")):
            with self.subTest(kw=kw):
                self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.create_category, amd,
                                msg_contains=field + ":", **kw)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.create_category, amd, slug("x"),
                        parent=str(uuid.uuid4()), msg_contains="category.parent_id: no such")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().CreateCategory,
                        C().CreateCategoryRequest(), metadata=amd, msg_contains="category:")


class ProductTests:

    def test_life_cycle(self):
        vendor, vmd = self.user("vendor")
        _, amd = self.user("admin")
        _, cmd = self.user("customer")
        st = self.new_store(vmd)
        cat = self.cat().CreateCategory(C().CreateCategoryRequest(
            category=C().Category(slug=slug("c"), name="Audio")), metadata=amd, timeout=10)
        p = self.new_product(vmd, st.id, category_id=cat.id, stock_quantity=7,
                             attributes={"color": "black", "size": "M"},
                             image_urls=["https://img.example/a.jpg", "http://img.example/b.png"])
        self.assertEqual(p.status, C().PRODUCT_STATUS_DRAFT, "draft by default")
        self.assertEqual(p.store_id, st.id)
        self.assertEqual(p.category_id, cat.id)
        self.assertEqual(dict(p.attributes), {"color": "black", "size": "M"})
        self.assertEqual(list(p.image_urls), ["https://img.example/a.jpg",
                                              "http://img.example/b.png"])
        self.assertEqual(p.price.amount_minor, 4999)
        self.assertEqual(p.price.currency, "EUR")
        self.assertEqual(p.stock_quantity, 7)
        self.assertEqual(p.rating_count, 0)

        # A draft: owner, admin and services only.
        self.assertEqual(self.get(p.id, vmd), p)
        self.assertEqual(self.get(p.id, amd), p)
        self.assertEqual(self.get(p.id, self.svc()), p)
        for md in (None, cmd, self.user("vendor")[1]):
            self.assertCode(grpc.StatusCode.NOT_FOUND, self.get, p.id, md)

        # Publish: everyone.
        up = self.cat().UpdateProduct(C().UpdateProductRequest(
            product=C().Product(id=p.id, status=C().PRODUCT_STATUS_ACTIVE),
            update_mask=FieldMask(["status"])), metadata=vmd, timeout=10)
        self.assertEqual(up.status, C().PRODUCT_STATUS_ACTIVE)
        self.assertEqual(self.get(p.id), up)
        self.assertEqual(self.get(p.id.upper(), cmd), up)

        # Masked update: only the named fields change.
        up2 = self.cat().UpdateProduct(C().UpdateProductRequest(
            product=C().Product(id=p.id, title="Studio Headphones", description="ignored",
                                price=C().Money(amount_minor=0, currency="USD")),
            update_mask=FieldMask(["title", "price"])), metadata=vmd, timeout=10)
        self.assertEqual(up2.title, "Studio Headphones")
        self.assertEqual(up2.description, p.description)
        self.assertEqual((up2.price.amount_minor, up2.price.currency), (0, "USD"))
        self.assertEqual(self.get(p.id).title, "Studio Headphones", "read sees the update at once")
        # No mask: the fields that are set.
        up3 = self.cat().UpdateProduct(C().UpdateProductRequest(
            product=C().Product(id=p.id, attributes={"color": "white"})),
            metadata=amd, timeout=10)
        self.assertEqual(dict(up3.attributes), {"color": "white"})
        self.assertEqual(up3.title, "Studio Headphones")
        # Clearing takes a mask.
        up4 = self.cat().UpdateProduct(C().UpdateProductRequest(
            product=C().Product(id=p.id),
            update_mask=FieldMask(["image_urls", "category_id", "attributes", "description"])),
            metadata=vmd, timeout=10)
        self.assertEqual(list(up4.image_urls), [])
        self.assertEqual(up4.category_id, "")
        self.assertEqual(dict(up4.attributes), {})
        self.assertEqual(up4.description, "")
        self.assertGreaterEqual(
            (up4.update_time.seconds, up4.update_time.nanos),
            (p.update_time.seconds, p.update_time.nanos))

        # Archive: idempotent, hidden from the public.
        a1 = self.cat().ArchiveProduct(C().ArchiveProductRequest(id=p.id), metadata=vmd, timeout=10)
        self.assertEqual(a1.status, C().PRODUCT_STATUS_ARCHIVED)
        a2 = self.cat().ArchiveProduct(C().ArchiveProductRequest(id=p.id), metadata=vmd, timeout=10)
        self.assertEqual(a2, a1, "a repeated archive changes nothing")
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.get, p.id)
        self.assertEqual(self.get(p.id, vmd).status, C().PRODUCT_STATUS_ARCHIVED)

    def test_authorization_of_every_write(self):
        vendor, vmd = self.user("vendor")
        _, omd = self.user("vendor")
        _, amd = self.user("admin")
        _, cmd = self.user("customer")
        st = self.new_store(vmd)
        p = self.new_product(vmd, st.id)
        writes = {
            "create": lambda md: self.new_product(md, st.id),
            "update": lambda md: self.cat().UpdateProduct(C().UpdateProductRequest(
                product=C().Product(id=p.id, title="Changed"),
                update_mask=FieldMask(["title"])), metadata=md, timeout=10),
            "archive": lambda md: self.cat().ArchiveProduct(
                C().ArchiveProductRequest(id=p.id), metadata=md, timeout=10),
            "adjust": lambda md: self.cat().AdjustStock(
                C().AdjustStockRequest(product_id=p.id, delta=1), metadata=md, timeout=10),
        }
        for name, fn in writes.items():
            with self.subTest(write=name):
                self.assertCode(grpc.StatusCode.UNAUTHENTICATED, fn, None)
                self.assertCode(grpc.StatusCode.PERMISSION_DENIED, fn, cmd)
                self.assertCode(grpc.StatusCode.PERMISSION_DENIED, fn, omd)
                self.assertCode(grpc.StatusCode.PERMISSION_DENIED, fn, self.svc())
        # Nothing changed by the refused calls.
        got = self.get(p.id, vmd)
        self.assertEqual(got, p)
        for name, fn in writes.items():
            with self.subTest(write=name):
                fn(vmd)
                fn(amd)
        self.assertEqual(self.get(p.id, vmd).stock_quantity, 2)
        # A missing product, for its would-be owner: NOT_FOUND.
        ghost = str(uuid.uuid4())
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.cat().ArchiveProduct,
                        C().ArchiveProductRequest(id=ghost), metadata=vmd)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.new_product, vmd, ghost)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.get, ghost, amd)

    def test_product_bad_input(self):
        _, vmd = self.user("vendor")
        st = self.new_store(vmd)
        M = C().Money
        cases = [
            ({"title": ""}, "product.title"),
            ({"title": " "}, "product.title"),
            ({"title": "t" * 201}, "product.title"),
            ({"title": "nul\x01"}, "product.title"),
            ({"description": "d" * 5001}, "product.description"),
            ({"description": "esc\x1b"}, "product.description"),
            ({"category_id": "abc"}, "product.category_id"),
            ({"category_id": str(uuid.uuid4())}, "product.category_id"),
            ({"price": M(amount_minor=-1, currency="EUR")}, "product.price.amount_minor"),
            ({"price": M(amount_minor=10**15 + 1, currency="EUR")}, "product.price.amount_minor"),
            ({"price": M(amount_minor=1, currency="eur")}, "product.price.currency"),
            ({"price": M(amount_minor=1, currency="EURO")}, "product.price.currency"),
            ({"price": M(amount_minor=1, currency="")}, "product.price.currency"),
            ({"attributes": {"Color": "x"}}, "product.attributes"),
            ({"attributes": {"a:b": "x"}}, "product.attributes"),
            ({"attributes": {"": "x"}}, "product.attributes"),
            ({"attributes": {"k" * 65: "x"}}, "product.attributes"),
            ({"attributes": {"color": ""}}, "product.attributes"),
            ({"attributes": {"color": "v" * 201}}, "product.attributes"),
            ({"attributes": {"k%d" % i: "v" for i in range(51)}}, "product.attributes"),
            ({"image_urls": ["ftp://x.example/a"]}, "product.image_urls[0]"),
            ({"image_urls": ["https://ok.example/a", "https://"]}, "product.image_urls[1]"),
            ({"image_urls": ["https://a b.example/"]}, "product.image_urls[0]"),
            ({"image_urls": ["https://x.example/" + "a" * 2040]}, "product.image_urls[0]"),
            ({"image_urls": ["https://x.example/%d" % i for i in range(21)]}, "product.image_urls"),
            ({"status": C().PRODUCT_STATUS_ARCHIVED}, "product.status"),
            ({"status": 9}, "product.status"),
            ({"stock_quantity": -1}, "product.stock_quantity"),
        ]
        for fields, field in cases:
            with self.subTest(fields=fields):
                self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.new_product, vmd, st.id,
                                msg_contains=field + ":", **fields)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().CreateProduct,
                        C().CreateProductRequest(store_id=st.id,
                                                 product=C().Product(title="No price")),
                        metadata=vmd, msg_contains="product.price:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().CreateProduct,
                        C().CreateProductRequest(store_id=st.id), metadata=vmd,
                        msg_contains="product:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.new_product, vmd, "x",
                        msg_contains="store_id:")
        for bad in ("", "nope", str(uuid.uuid4()) + "' OR '1'='1"):
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.get, bad, msg_contains="id:")
        p = self.new_product(vmd, st.id)
        upd = self.cat().UpdateProduct
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, upd, C().UpdateProductRequest(
            product=C().Product(id=p.id, title="x"), update_mask=FieldMask(["store_id"])),
            metadata=vmd, msg_contains="update_mask: unknown path 'store_id'")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, upd, C().UpdateProductRequest(
            product=C().Product(id=p.id), update_mask=FieldMask(["price"])),
            metadata=vmd, msg_contains="product.price:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, upd, C().UpdateProductRequest(
            product=C().Product(id=p.id), update_mask=FieldMask(["status"])),
            metadata=vmd, msg_contains="product.status:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, upd, C().UpdateProductRequest(
            product=C().Product(id=p.id)), metadata=vmd, msg_contains="update_mask:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, upd, C().UpdateProductRequest(
            product=C().Product(id="zz", title="x")), metadata=vmd, msg_contains="product.id:")
        # SQL metacharacters are data.
        odd = "Robert'); DROP TABLE catalog.products; --"
        got = self.new_product(vmd, st.id, title=odd, attributes={"note": odd})
        self.assertEqual(self.get(got.id, vmd).title, odd)

    def test_adjust_stock_never_below_zero(self):
        _, vmd = self.user("vendor")
        st = self.new_store(vmd)
        p = self.new_product(vmd, st.id, status=C().PRODUCT_STATUS_ACTIVE)
        adj = lambda d: self.cat().AdjustStock(  # noqa: E731
            C().AdjustStockRequest(product_id=p.id, delta=d), metadata=vmd, timeout=10)
        lvl = adj(10)
        self.assertEqual((lvl.product_id, lvl.available, lvl.reserved), (p.id, 10, 0))
        self.assertEqual(adj(-4).available, 6)
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, adj, -7, msg_contains="delta:")
        self.assertEqual(self.get(p.id).stock_quantity, 6, "nothing changed")
        self.assertEqual(adj(-6).available, 0)
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, adj, -1)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, adj, 10**9 + 1, msg_contains="delta:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, adj, -(2**63), msg_contains="delta:")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().AdjustStock,
                        C().AdjustStockRequest(product_id="x", delta=1), metadata=vmd,
                        msg_contains="product_id:")
        self.assertEqual(self.row(p.id), (0, 0, 0))


class ReservationTests:

    def setUp(self):
        _, self.vmd = self.user("vendor")
        self.store = self.new_store(self.vmd)

    def stocked(self, stock, status=None):
        return self.new_product(self.vmd, self.store.id, stock_quantity=stock,
                                status=status or C().PRODUCT_STATUS_ACTIVE)

    def reserve(self, order, lines, md=None, timeout=10):
        req = C().ReserveStockRequest(order_id=order, lines=[
            C().ReservationLine(product_id=p, quantity=q) for p, q in lines])
        return self.cat().ReserveStock(req, metadata=md or self.svc(), timeout=timeout)

    def release(self, order, md=None):
        return self.cat().ReleaseStock(C().ReservationRef(order_id=order),
                                       metadata=md or self.svc(), timeout=10)

    def commit(self, order, md=None):
        return self.cat().CommitReservation(C().ReservationRef(order_id=order),
                                            metadata=md or self.svc(), timeout=10)

    def test_reserve_release_commit_idempotent(self):
        a, b = self.stocked(5), self.stocked(3)
        o1 = str(uuid.uuid4())
        r = self.reserve(o1, [(b.id, 1), (a.id, 2)])
        self.assertEqual(r.order_id, o1)
        self.assertEqual(r.status, C().RESERVATION_STATUS_HELD)
        self.assertEqual(sorted((l.product_id, l.quantity) for l in r.lines),
                         sorted([(a.id, 2), (b.id, 1)]))
        self.assertEqual(self.row(a.id), (3, 2, 0))
        self.assertEqual(self.row(b.id), (2, 1, 0))
        self.assertEqual(self.get(a.id).stock_quantity, 3, "reads see the hold")
        # The same request again (lines in any order, ids in any case):
        # the first outcome, nothing taken twice.
        again = self.reserve(o1.upper(), [(a.id.upper(), 2), (b.id, 1)])
        self.assertEqual(again, r)
        self.assertEqual(self.row(a.id), (3, 2, 0))
        # Other lines under the same order id.
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.reserve, o1, [(a.id, 1)],
                        msg_contains="order_id:")
        # All or nothing: b is short, so a is not held either.
        o2 = str(uuid.uuid4())
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, self.reserve, o2,
                        [(a.id, 1), (b.id, 5)], msg_contains="quantity")
        self.assertEqual(self.row(a.id), (3, 2, 0))
        self.assertEqual(self.row(b.id), (2, 1, 0))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.release, o2)

        rel = self.release(o1)
        self.assertEqual(rel.status, C().RESERVATION_STATUS_RELEASED)
        self.assertEqual(self.row(a.id), (5, 0, 0))
        self.assertEqual(self.row(b.id), (3, 0, 0))
        self.assertEqual(self.release(o1), rel, "release is idempotent")
        self.assertEqual(self.row(a.id), (5, 0, 0))
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, self.commit, o1)
        self.assertEqual(self.reserve(o1, [(a.id, 2), (b.id, 1)]).status,
                         C().RESERVATION_STATUS_RELEASED, "a settled order stays settled")

        o3 = str(uuid.uuid4())
        self.reserve(o3, [(a.id, 2)])
        com = self.commit(o3)
        self.assertEqual(com.status, C().RESERVATION_STATUS_COMMITTED)
        self.assertEqual(self.row(a.id), (3, 0, 2))
        self.assertEqual(self.commit(o3), com, "commit is idempotent")
        self.assertEqual(self.row(a.id), (3, 0, 2))
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, self.release, o3)

    def test_what_cannot_be_reserved(self):
        a = self.stocked(5)
        draft = self.stocked(5, C().PRODUCT_STATUS_DRAFT)
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, self.reserve, str(uuid.uuid4()),
                        [(a.id, 1), (draft.id, 1)], msg_contains="not for sale")
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.reserve, str(uuid.uuid4()),
                        [(a.id, 1), (str(uuid.uuid4()), 1)])
        self.assertEqual(self.row(a.id), (5, 0, 0))

    def test_services_only_and_bad_input(self):
        a = self.stocked(5)
        o = str(uuid.uuid4())
        for md in (self.vmd, self.user("admin")[1], self.user("customer")[1]):
            self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.reserve, o, [(a.id, 1)], md=md)
            self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.release, o, md=md)
            self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.commit, o, md=md)
        with self.assertRaises(grpc.RpcError) as cm:
            self.cat().ReserveStock(C().ReserveStockRequest(order_id=o), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        for order, lines, field in (
                ("nope", [(a.id, 1)], "order_id:"),
                (o, [], "lines:"),
                (o, [(a.id, 0)], "lines[0].quantity:"),
                (o, [(a.id, 1), (a.id, -1)], "lines[1].quantity:"),
                (o, [(a.id, 10**6 + 1)], "lines[0].quantity:"),
                (o, [(a.id, 1), ("x", 1)], "lines[1].product_id:"),
                (o, [(a.id, 1), (a.id.upper(), 1)], "appears twice"),
                (o, [(str(uuid.uuid4()), 1) for _ in range(101)], "lines:")):
            with self.subTest(field=field, n=len(lines)):
                self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.reserve, order, lines,
                                msg_contains=field)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.release, "x", msg_contains="order_id:")
        self.assertEqual(self.row(a.id), (5, 0, 0))

    def test_no_oversell_under_concurrency(self):
        p = self.stocked(50)
        svc = self.svc()

        def one(_):
            try:
                self.reserve(str(uuid.uuid4()), [(p.id, 1)], md=svc, timeout=60)
                return "ok"
            except grpc.RpcError as e:
                return e.code()

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as ex:
            results = list(ex.map(one, range(200)))
        self.assertEqual(results.count("ok"), 50, results)
        self.assertEqual(results.count(grpc.StatusCode.FAILED_PRECONDITION), 150, results)
        self.assertEqual(self.row(p.id), (0, 50, 0))
        self.assertEqual(self.stack.psql(
            "SELECT count(*), sum(quantity) FROM catalog.reservation_lines "
            "WHERE product_id = '%s'" % p.id).strip(), "50|50")


class CacheTests:
    """The product cache answers reads and follows changes from anywhere."""

    def silent_update(self, pid, title):
        """Changes a row without firing triggers (so no NOTIFY): what only
        a reader that really goes to the cache will miss."""
        self.stack.psql("SET session_replication_role = replica; "
                        "UPDATE catalog.products SET title = '%s' WHERE id = '%s'" % (title, pid))

    def wait_cache_on(self, probe):
        """Waits until reads are served from memory, on a probe product of
        its own (silent changes leave the cache stale on purpose)."""
        def cached():
            before = self.get(probe.id).title
            self.get(probe.id)
            self.silent_update(probe.id, "probe %s" % secrets.token_hex(4))
            return self.get(probe.id).title == before
        self.assertTrue(fixture.wait_until(cached, 10, 0.1), "the cache never served a read")

    def settle_notices(self, probe):
        """Waits until every notice sent so far has reached the service:
        notices arrive in commit order, so once one sent now by hand is
        seen, all earlier ones (e.g. of an INSERT) were handled too."""
        title = "probe %s" % secrets.token_hex(4)
        self.silent_update(probe.id, title)
        self.stack.psql("NOTIFY catalog_products, '%s'" % probe.id)
        self.assertTrue(fixture.wait_until(lambda: self.get(probe.id).title == title, 2, 0.02))

    def test_cached_and_invalidated_by_notify(self):
        _, vmd = self.user("vendor")
        st = self.new_store(vmd)
        probe = self.new_product(vmd, st.id, status=C().PRODUCT_STATUS_ACTIVE)
        self.wait_cache_on(probe)
        p = self.new_product(vmd, st.id, title="Cached Lamp", status=C().PRODUCT_STATUS_ACTIVE)
        self.settle_notices(probe)
        self.assertEqual(self.get(p.id).title, "Cached Lamp")
        # Served from memory: a change that sends no notice is not seen.
        self.silent_update(p.id, "Silent Lamp")
        self.assertEqual(self.get(p.id).title, "Cached Lamp")
        # A change by anyone else (another replica, SQL by hand) notifies:
        # seen within a second.
        self.stack.psql("UPDATE catalog.products SET title = 'Notified Lamp' "
                        "WHERE id = '%s'" % p.id)
        t0 = time.monotonic()
        seen = fixture.wait_until(lambda: self.get(p.id).title == "Notified Lamp", 1.0, 0.02)
        self.assertTrue(seen, "update not seen within 1 s")
        self.assertLess(time.monotonic() - t0, 1.0)
        # A change through this service: seen at once.
        self.cat().UpdateProduct(C().UpdateProductRequest(
            product=C().Product(id=p.id, title="Updated Lamp"),
            update_mask=FieldMask(["title"])), metadata=vmd, timeout=10)
        self.assertEqual(self.get(p.id).title, "Updated Lamp")
        # Visibility is decided on cached entries too: archived → 404, and a
        # store suspended by SQL (notified on catalog_stores) hides it.
        q = self.new_product(vmd, st.id, title="Other", status=C().PRODUCT_STATUS_ACTIVE)
        self.get(q.id)
        self.get(q.id)
        self.stack.psql("UPDATE catalog.stores SET status = 'suspended' WHERE id = '%s'" % st.id)
        gone = fixture.wait_until(lambda: self._code(q.id) == grpc.StatusCode.NOT_FOUND, 1.0, 0.02)
        self.assertTrue(gone, "store suspension not seen within 1 s")
        self.assertEqual(self.get(q.id, vmd).id, q.id, "the owner still sees it")

    def _code(self, pid):
        try:
            self.get(pid)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    def test_another_replica_sees_changes_within_a_second(self):
        st = self.stack
        st.ports["catalog-2"] = fixture.free_port()
        st.start_service("catalog-2", binary=fixture.binary_path("catalog"),
                         extra_env={"CATALOG_SERVICE_PORT": st.ports["catalog-2"]})
        self.addCleanup(st.assert_clean_exit, self, "catalog-2")
        ch = grpc.insecure_channel(st.target("catalog-2"))
        self.addCleanup(ch.close)
        other = fixture.pb2_grpc("catalog").CatalogServiceStub(ch)
        read = lambda pid: other.GetProduct(C().GetProductRequest(id=pid), timeout=10)  # noqa: E731

        _, vmd = self.user("vendor")
        store = self.new_store(vmd)
        p = self.new_product(vmd, store.id, title="Replica Mug", stock_quantity=4,
                             status=C().PRODUCT_STATUS_ACTIVE)
        for _ in range(3):
            self.assertEqual(read(p.id).title, "Replica Mug")

        def within_a_second(pred, what):
            t0 = time.monotonic()
            ok = fixture.wait_until(pred, 1.0, 0.02)
            self.assertTrue(ok, "%s not seen on the other replica within 1 s" % what)
            self.assertLess(time.monotonic() - t0, 1.0, what)

        self.cat().UpdateProduct(C().UpdateProductRequest(
            product=C().Product(id=p.id, title="Replica Cup"),
            update_mask=FieldMask(["title"])), metadata=vmd, timeout=10)
        within_a_second(lambda: read(p.id).title == "Replica Cup", "an edit")
        self.cat().AdjustStock(C().AdjustStockRequest(product_id=p.id, delta=5), metadata=vmd,
                               timeout=10)
        within_a_second(lambda: read(p.id).stock_quantity == 9, "a restock")
        self.cat().ArchiveProduct(C().ArchiveProductRequest(id=p.id), metadata=vmd, timeout=10)

        def gone():
            try:
                read(p.id)
                return False
            except grpc.RpcError as e:
                return e.code() == grpc.StatusCode.NOT_FOUND
        within_a_second(gone, "an archive")

    def test_stock_changes_reach_reads(self):
        _, vmd = self.user("vendor")
        st = self.new_store(vmd)
        p = self.new_product(vmd, st.id, stock_quantity=5, status=C().PRODUCT_STATUS_ACTIVE)
        self.assertEqual(self.get(p.id).stock_quantity, 5)
        self.cat().AdjustStock(C().AdjustStockRequest(product_id=p.id, delta=3), metadata=vmd,
                               timeout=10)
        self.assertEqual(self.get(p.id).stock_quantity, 8)
        self.cat().ReserveStock(C().ReserveStockRequest(
            order_id=str(uuid.uuid4()), lines=[C().ReservationLine(product_id=p.id, quantity=2)]),
            metadata=self.svc(), timeout=10)
        self.assertEqual(self.get(p.id).stock_quantity, 6)


class OutageTest(CatalogCase):
    """PostgreSQL stopped and restarted under the running service."""

    def test_postgres_stop_and_restart(self):
        st = self.stack
        _, vmd = self.user("vendor")
        store = self.new_store(vmd)
        w = "w" + secrets.token_hex(4)
        p = self.new_product(vmd, store.id, title="Before " + w,
                             status=C().PRODUCT_STATUS_ACTIVE)
        q = self.new_product(vmd, store.id, title="Archived " + w,
                             status=C().PRODUCT_STATUS_ACTIVE)
        pid = st.pid("catalog")
        self.get(p.id)
        self.get(p.id)
        def found(text):
            try:
                return {x.id for x in self.cat().SearchProducts(
                    C().SearchProductsRequest(q=text, store=[store.id]), timeout=3).products}
            except grpc.RpcError as e:
                # The index of a service just started may still be loading.
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                return None
        self.assertTrue(fixture.wait_until(lambda: found(w) == {p.id, q.id}, 10, 0.05))
        # Not notified: only a cache flushed and an index rebuilt on
        # reconnect will show it.
        st.psql("SET session_replication_role = replica; "
                "UPDATE catalog.products SET title = 'While away' WHERE id = '%s'; "
                "UPDATE catalog.products SET status = 'archived' WHERE id = '%s'" % (p.id, q.id))
        st.psql("CHECKPOINT")
        st.stop_postgres("fast")
        try:
            # No stale answer while the database is away: the cache turns
            # off as soon as its listener loses the connection.
            def unavailable():
                try:
                    self.get(p.id, timeout=3)
                    return False
                except grpc.RpcError as e:
                    return e.code() == grpc.StatusCode.UNAVAILABLE
            self.assertTrue(fixture.wait_until(unavailable, 2, 0.05))
            t0 = time.monotonic()
            self.assertCode(grpc.StatusCode.UNAVAILABLE, self.new_store, vmd, timeout=3)
            self.assertLess(time.monotonic() - t0, 3.0, "answered within the deadline")
            st.wait_health("catalog", "NOT_SERVING", timeout=15)
        finally:
            st.start_postgres()
        st.wait_health("catalog", "SERVING", timeout=20)
        self.assertTrue(fixture.wait_until(lambda: self._title(p.id) == "While away", 10, 0.1),
                        "the cache was not flushed on reconnect")
        self.assertTrue(fixture.wait_until(lambda: found("away") >= {p.id}, 10, 0.1),
                        "the search index was not rebuilt on reconnect")
        self.assertEqual(found(w), set(), "an index rebuilt from the database")
        self.new_store(vmd)
        # Notices flow again after the reconnect.
        st.psql("UPDATE catalog.products SET title = 'After' WHERE id = '%s'" % p.id)
        self.assertTrue(fixture.wait_until(lambda: self._title(p.id) == "After", 3, 0.05))
        self.assertEqual(st.pid("catalog"), pid, "no restart of the service")

    def _title(self, pid):
        try:
            return self.get(pid, timeout=3).title
        except grpc.RpcError:
            return None


class RestJourneyTests:
    """The contract's REST routes through estore-edge, as curl would."""

    def call(self, method, path, body=None, token=None):
        c = http.client.HTTPConnection("127.0.0.1", self.stack.ports[fixture.EDGE], timeout=15)
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

    def test_vendor_journey(self):
        vendor = str(uuid.uuid4())
        tok = self.stack.token_pair(vendor, roles=("vendor",)).access_token
        cust = self.stack.token_pair(str(uuid.uuid4()), roles=("customer",)).access_token
        s = slug("rest")
        st, store, raw = self.call("POST", "/v1/stores",
                                   {"name": "REST Store", "slug": s}, tok)
        self.assertEqual(st, 200, raw)
        self.assertEqual((store["slug"], store["ownerId"]), (s, vendor))
        self.assertEqual(self.call("POST", "/v1/stores", {"name": "X", "slug": slug()},
                                   cust)[0], 403)
        self.assertEqual(self.call("POST", "/v1/stores", {"name": "X", "slug": slug()})[0], 401)
        st, got, raw = self.call("GET", "/v1/stores/" + s)
        self.assertEqual(st, 200, raw)
        self.assertEqual(got["id"], store["id"])

        st, prod, raw = self.call("POST", "/v1/stores/%s/products" % store["id"], {
            "title": "Trail Shoes", "description": "Light.",
            "price": {"amountMinor": "8900", "currency": "EUR"},
            "attributes": {"size": "42", "color": "red"},
            "imageUrls": ["https://img.example/shoe.jpg"],
            "status": "PRODUCT_STATUS_ACTIVE", "stockQuantity": "12"}, tok)
        self.assertEqual(st, 200, raw)
        self.assertEqual(prod["title"], "Trail Shoes")
        self.assertEqual(prod["attributes"], {"size": "42", "color": "red"})
        st, bad, raw = self.call("POST", "/v1/stores/%s/products" % store["id"], {
            "title": "", "price": {"amountMinor": "1", "currency": "EUR"}}, tok)
        self.assertEqual(st, 400, raw)
        self.assertIn("product.title", bad["message"])

        st, got, raw = self.call("GET", "/v1/products/" + prod["id"])
        self.assertEqual(st, 200, raw)
        self.assertEqual((got["title"], got["price"]["currency"]), ("Trail Shoes", "EUR"))
        self.assertEqual(str(got["stockQuantity"]), "12")

        st, got, raw = self.call("PATCH", "/v1/products/%s?updateMask=title" % prod["id"],
                                 {"title": "Trail Runners", "description": "not masked"}, tok)
        self.assertEqual(st, 200, raw)
        self.assertEqual((got["title"], got["description"]), ("Trail Runners", "Light."))
        self.assertEqual(self.call("GET", "/v1/products/" + prod["id"])[1]["title"],
                         "Trail Runners")
        self.assertEqual(self.call("PATCH", "/v1/products/%s?updateMask=title" % prod["id"],
                                   {"title": "Mine now"}, cust)[0], 403)

        st, got, raw = self.call("POST", "/v1/products/%s:adjustStock" % prod["id"],
                                 {"delta": "-20"}, tok)
        self.assertEqual(st, 400, raw)
        self.assertEqual(got["code"], grpc.StatusCode.FAILED_PRECONDITION.value[0], raw)

        st, got, raw = self.call("DELETE", "/v1/products/" + prod["id"], token=tok)
        self.assertEqual(st, 200, raw)
        self.assertEqual(got["status"], "PRODUCT_STATUS_ARCHIVED")
        st, got, raw = self.call("GET", "/v1/products/" + prod["id"])
        self.assertEqual(st, 404, raw)
        self.assertEqual(self.call("GET", "/v1/products/" + prod["id"], token=tok)[0], 200)

        st, got, raw = self.call("GET", "/v1/categories")
        self.assertEqual(st, 200, raw)


class SearchTests:
    """SearchProducts and Suggest over the index the service keeps from
    PostgreSQL's change feed. Each test's products carry a word of their
    own and live in stores of their own, so other tests' rows never match."""

    def search(self, timeout=10, **kw):
        return self.cat().SearchProducts(C().SearchProductsRequest(**kw), timeout=timeout)

    def ids(self, **kw):
        return [p.id for p in self.search(**kw).products]

    def wait_ids(self, want, secs=1.0, **kw):
        """True once the search returns exactly `want` (a set) within secs."""
        return fixture.wait_until(lambda: set(self.ids(**kw)) == want, secs, 0.02)

    def ids_or_loading(self, **kw):
        """The ids found, or None while the index is still being built (the
        first test may run right after the service started)."""
        try:
            return self.ids(**kw)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            self.assertEqual(e.details(), "search index is loading")
            return None

    def seed(self):
        _, amd = self.user("admin")
        _, vmd = self.user("vendor")
        w = "w" + secrets.token_hex(4)
        root = self.create_category(amd, slug("gear"), "Gear")
        child = self.create_category(amd, "audio", "Audio", root.id)
        other = self.create_category(amd, slug("home"), "Home")
        a = self.new_store(vmd)
        b = self.new_store(vmd)
        act = C().PRODUCT_STATUS_ACTIVE

        def mk(store, title, cat, price, attrs, stock, status=act):
            return self.new_product(vmd, store.id, title="%s %s" % (title, w),
                                    category_id=cat.id, status=status, stock_quantity=stock,
                                    price=C().Money(amount_minor=price, currency="EUR"),
                                    attributes=attrs)
        p = {
            "p1": mk(a, "Studio Headphones", child, 4999, {"color": "black"}, 5),
            "p2": mk(a, "Travel Headset", child, 12999, {"color": "white"}, 0),
            "p3": mk(a, "Desk Lamp", other, 2500, {"color": "black"}, 3),
            "p4": mk(b, "Headphones Stand", root, 1500, {}, 1),
        }
        mk(a, "Headphones Draft", child, 100, {}, 1, status=C().PRODUCT_STATUS_DRAFT)
        for i, (k, rating) in enumerate((("p1", 4.5), ("p2", 3.0), ("p3", 5.0), ("p4", 1.0))):
            self.stack.psql("UPDATE catalog.products SET rating_average = %s, rating_count = 1, "
                            "create_time = now() - interval '%d days' WHERE id = '%s'"
                            % (rating, 10 - i, p[k].id))
        ids = {k: v.id for k, v in p.items()}
        stores = [a.id, b.id]
        self.assertTrue(fixture.wait_until(
            lambda: len(self.ids_or_loading(q=w, store=stores) or ()) == 4, 10, 0.05),
            "index never had the products")
        return w, ids, a, b, root, child, other, vmd, amd

    def test_search_words_filters_sorts_facets(self):
        w, p, a, b, root, child, other, vmd, _ = self.seed()
        stores = [a.id, b.id]
        ids = lambda **kw: set(self.ids(store=stores, **kw))
        self.assertEqual(ids(q=w), set(p.values()), "the draft is not listed")
        self.assertEqual(ids(q="studio " + w), {p["p1"]})
        self.assertEqual(ids(q=w + " headph"), {p["p1"], p["p4"]}, "prefix of the last word")
        r = self.search(q="hedphones " + w, store=stores)
        self.assertEqual({x.id for x in r.products}, {p["p1"], p["p4"]})
        self.assertIn("headphones", r.corrected_query)
        self.assertEqual(self.search(q="studio " + w, store=stores).corrected_query, "")
        # Filters.
        self.assertEqual(ids(q=w, category=root.id), {p["p1"], p["p2"], p["p4"]}, "subtree")
        self.assertEqual(ids(q=w, category=child.id), {p["p1"], p["p2"]})
        self.assertEqual(set(self.ids(q=w, store=[b.id])), {p["p4"]})
        self.assertEqual(ids(q=w, min_price=2000, max_price=4999), {p["p1"], p["p3"]})
        self.assertEqual(ids(q=w, attribute=["color:black"]), {p["p1"], p["p3"]})
        self.assertEqual(ids(q=w, attribute=["color:black", "color:white"]),
                         {p["p1"], p["p2"], p["p3"]})
        self.assertEqual(ids(q=w, in_stock=True), {p["p1"], p["p3"], p["p4"]})
        # Sorts.
        order = lambda sort: self.ids(q=w, store=stores, sort=sort)
        self.assertEqual(order("price"), [p["p4"], p["p3"], p["p1"], p["p2"]])
        self.assertEqual(order("-price"), [p["p2"], p["p1"], p["p3"], p["p4"]])
        self.assertEqual(order("rating"), [p["p3"], p["p1"], p["p2"], p["p4"]])
        self.assertEqual(order("newest"), [p["p4"], p["p3"], p["p2"], p["p1"]])
        self.assertEqual(set(order("relevance")), set(p.values()))
        self.assertEqual(order(""), order("relevance"))
        # Full products in page order.
        r = self.search(q=w, store=stores, sort="price")
        self.assertEqual(r.products[0].title, "Headphones Stand " + w)
        self.assertEqual(r.products[3].price.amount_minor, 12999)
        self.assertEqual(dict(r.products[2].attributes), {"color": "black"})
        # Facets add up to the total.
        f, total = r.facets, r.total_size
        self.assertEqual(total, 4)
        self.assertEqual(sum(c.count for c in f.stores), total)
        self.assertEqual({c.value: c.count for c in f.stores}, {a.id: 3, b.id: 1})
        self.assertEqual(sum(c.count for c in f.prices), total)
        cats = {c.value: c.count for c in f.categories}
        self.assertEqual((cats[root.id], cats[child.id], cats[other.id]), (3, 2, 1))
        self.assertEqual({v.value: v.count for v in f.attributes["color"].values},
                         {"black": 2, "white": 1})

    def test_search_paging_and_arguments(self):
        w, p, a, b, *_ = self.seed()
        for sort in ("relevance", "price", "-price", "newest", "rating"):
            seen, token = [], ""
            for _ in range(10):
                r = self.search(q=w, store=[a.id, b.id], sort=sort, page_size=1, page_token=token)
                self.assertEqual(r.total_size, 4)
                seen += [x.id for x in r.products]
                token = r.next_page_token
                if not token:
                    break
            self.assertEqual(sorted(seen), sorted(p.values()), sort)
        r = self.search(q=w, store=[a.id, b.id], page_size=3)
        self.assertEqual(len(r.products), 3)
        self.assertTrue(r.next_page_token)
        bad = [
            ({"page_token": "!!"}, "page_token"),
            ({"page_token": "AAAAAAAAAAAA"}, "page_token"),
            ({"page_token": r.next_page_token, "sort": "price"}, "page_token"),
            ({"page_size": 101}, "page_size"),
            ({"page_size": -1}, "page_size"),
            ({"sort": "cheap"}, "sort"),
            ({"category": "nope"}, "category"),
            ({"store": ["nope"]}, "store"),
            ({"attribute": ["color"]}, "attribute"),
            ({"min_price": -1}, "min_price"),
            ({"min_price": 10, "max_price": 5}, "max_price"),
            ({"q": "x" * 300}, "q"),
        ]
        for kw, field in bad:
            kw.setdefault("q", w)
            kw.setdefault("store", [a.id, b.id])
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.search, msg_contains=field, **kw)

    def test_search_follows_changes_within_a_second(self):
        w, p, a, b, root, child, other, vmd, amd = self.seed()
        stores = [a.id, b.id]
        self.cat().ArchiveProduct(C().ArchiveProductRequest(id=p["p3"]), metadata=vmd, timeout=10)
        self.assertTrue(self.wait_ids({p["p1"], p["p2"], p["p4"]}, q=w, store=stores),
                        "archived product still found after 1 s")
        self.cat().UpdateStore(C().UpdateStoreRequest(
            store=C().Store(id=b.id, status=C().STORE_STATUS_SUSPENDED),
            update_mask=FieldMask(["status"])), metadata=amd, timeout=10)
        self.assertTrue(self.wait_ids({p["p1"], p["p2"]}, q=w, store=stores),
                        "suspended store's product still found after 1 s")
        n = self.new_product(vmd, a.id, title="Fresh Speaker " + w,
                             status=C().PRODUCT_STATUS_ACTIVE)
        self.assertTrue(self.wait_ids({p["p1"], p["p2"], n.id}, q=w, store=stores),
                        "created product not found within 1 s")
        self.cat().UpdateProduct(C().UpdateProductRequest(
            product=C().Product(id=n.id, title="Renamed Speaker " + w),
            update_mask=FieldMask(["title"])), metadata=vmd, timeout=10)
        self.assertTrue(self.wait_ids({n.id}, q="renamed " + w, store=stores))
        self.assertEqual(self.ids(q="fresh " + w, store=stores), [])

    def test_every_replica_searches_changes_within_a_second(self):
        """A second replica on the same database: a product created,
        edited, restocked or archived through the first is searchable as
        such on both within a second (each follows PostgreSQL's feed)."""
        st = self.stack
        st.ports["catalog-s2"] = fixture.free_port()
        st.start_service("catalog-s2", binary=fixture.binary_path("catalog"),
                         extra_env={"CATALOG_SERVICE_PORT": st.ports["catalog-s2"]})
        self.addCleanup(st.assert_clean_exit, self, "catalog-s2")
        ch = grpc.insecure_channel(st.target("catalog-s2"))
        self.addCleanup(ch.close)
        other = fixture.pb2_grpc("catalog").CatalogServiceStub(ch)

        def found(stub, **kw):
            try:
                r = stub.SearchProducts(C().SearchProductsRequest(**kw), timeout=10)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    return None  # the new replica's first build
                raise
            return {p.id for p in r.products}

        self.assertTrue(fixture.wait_until(lambda: found(other) is not None, 20, 0.05))
        _, vmd = self.user("vendor")
        store = self.new_store(vmd)
        w = "r" + secrets.token_hex(4)

        def everywhere(want, what, **kw):
            for name, stub in (("this replica", self.cat()), ("the other replica", other)):
                ok = fixture.wait_until(lambda: found(stub, store=[store.id], **kw) == want,
                                        1.0, 0.02)
                self.assertTrue(ok, "%s: %s not searchable within 1 s (found %r)"
                                % (name, what, found(stub, store=[store.id], **kw)))

        p = self.new_product(vmd, store.id, title="Harbour Lantern " + w, stock_quantity=0,
                             status=C().PRODUCT_STATUS_ACTIVE)
        everywhere({p.id}, "a created product", q=w)
        everywhere(set(), "an out-of-stock product (in stock only)", q=w, in_stock=True)
        self.cat().UpdateProduct(C().UpdateProductRequest(
            product=C().Product(id=p.id, title="Harbour Beacon " + w),
            update_mask=FieldMask(["title"])), metadata=vmd, timeout=10)
        everywhere({p.id}, "an edit", q="beacon " + w)
        everywhere(set(), "an edit (old title)", q="lantern " + w)
        self.cat().AdjustStock(C().AdjustStockRequest(product_id=p.id, delta=4), metadata=vmd,
                               timeout=10)
        everywhere({p.id}, "a restock", q=w, in_stock=True)
        self.cat().ArchiveProduct(C().ArchiveProductRequest(id=p.id), metadata=vmd, timeout=10)
        everywhere(set(), "an archive", q=w)

    def test_many_changes_rebuild_the_index(self):
        """Products changed since the last build are scored in full; once
        they are many (64 here, and 5% of the index) the index is built
        again from PostgreSQL, and search answers the same."""
        _, vmd = self.user("vendor")
        st = self.new_store(vmd)
        w = "w" + secrets.token_hex(4)
        builds = lambda: self.stack.log("catalog").count("search index built")
        self.assertTrue(fixture.wait_until(lambda: self.ids_or_loading(q=w) is not None, 10, 0.05))
        before = builds()
        self.stack.psql("INSERT INTO catalog.products (store_id, title, price_minor, currency, "
                        "status, stock) SELECT '%s', 'Bulk %s ' || g, g, 'EUR', 'active', 1 "
                        "FROM generate_series(1, 70) g" % (st.id, w))
        self.assertTrue(fixture.wait_until(
            lambda: self.search(q=w, store=[st.id], page_size=100).total_size == 70, 5, 0.05))
        self.assertTrue(fixture.wait_until(lambda: builds() > before, 5, 0.05), "no rebuild")
        r = self.search(q=w, store=[st.id], page_size=100, sort="price")
        self.assertEqual([p.price.amount_minor for p in r.products], list(range(1, 71)))
        self.stack.psql("UPDATE catalog.products SET status = 'archived' WHERE store_id = '%s'"
                        % st.id)
        self.assertTrue(self.wait_ids(set(), 5, q=w, store=[st.id]))

    def test_suggest(self):
        w, p, *_ = self.seed()
        r = self.cat().Suggest(C().SuggestRequest(prefix=w), timeout=10)
        self.assertEqual({s.title for s in r.suggestions},
                         {t + " " + w for t in ("Studio Headphones", "Travel Headset",
                                                "Desk Lamp", "Headphones Stand")})
        self.assertEqual({s.product_id for s in r.suggestions}, set(p.values()))
        r = self.cat().Suggest(C().SuggestRequest(prefix="desk " + w[:-2]), timeout=10)
        self.assertEqual([s.product_id for s in r.suggestions], [p["p3"]])
        self.assertEqual(len(self.cat().Suggest(C().SuggestRequest(prefix=w, limit=2),
                                                timeout=10).suggestions), 2)
        for kw, field in (({"prefix": ""}, "prefix"), ({"prefix": "x" * 65}, "prefix"),
                          ({"prefix": w, "limit": 11}, "limit")):
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.cat().Suggest,
                            C().SuggestRequest(**kw), msg_contains=field)

    def test_search_through_the_edge(self):
        w, p, a, b, *_ = self.seed()
        st, got, raw = self.call("GET", "/v1/products:search?q=%s&store=%s&store=%s&pageSize=3"
                                 % (w, a.id, b.id))
        self.assertEqual(st, 200, raw)
        self.assertEqual(got["totalSize"], 4, raw)
        self.assertEqual(len(got["products"]), 3)
        self.assertTrue(got["nextPageToken"])
        self.assertEqual(sum(c["count"] for c in got["facets"]["stores"]), 4)
        st, got2, raw = self.call("GET", "/v1/products:search?q=%s&store=%s&store=%s&pageSize=3"
                                  "&pageToken=%s" % (w, a.id, b.id, got["nextPageToken"]))
        self.assertEqual(st, 200, raw)
        self.assertEqual({x["id"] for x in got["products"] + got2["products"]}, set(p.values()))
        st, got, raw = self.call("GET", "/v1/products:search?pageToken=!!")
        self.assertEqual(st, 400, raw)
        st, got, raw = self.call("GET", "/v1/products:suggest?prefix=" + w)
        self.assertEqual(st, 200, raw)
        self.assertEqual(len(got["suggestions"]), 4)


class CatalogTest(StoreTests, CategoryTests, ProductTests, ReservationTests, CacheTests,
                  RestJourneyTests, SearchTests, CatalogCase):
    """Everything that leaves the stack as it found it, on one stack (each
    stack costs a PostgreSQL initdb): ids and slugs are fresh per test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.stack.start_service(fixture.EDGE)
        except BaseException:
            cls.stack.failed = True
            cls.stack.close()
            raise


if __name__ == "__main__":
    fixture.main()
