"""estore-seed against real PostgreSQL 15 with the token, account, auth and
catalog services running: the generated catalog lands in one transaction,
running catalog replicas rebuild their search from the single reload
notice, seeded vendors sign in and own their stores, the same seed gives
the same rows, and bad input changes nothing.

Run by ctest (see CMakeLists.txt here) or by hand:
    /usr/bin/python3 tests/integration/test_seed.py --seed-bin BUILD/services/catalog/seed/estore-seed \\
        [fixture options] [-k pattern]
"""

import os
import re
import subprocess
import time

import fixture

import grpc



SEED_BIN = fixture.take_option("--seed-bin") or os.path.join(
    os.environ.get("ESTORE_BUILD_DIR", "build"), "services", "catalog", "seed", "estore-seed")

PRODUCTS = 3000


def C():
    return fixture.pb2("catalog")


# Every seeded row but what the database stamps itself (store and account
# times, the password hash with its random salt).
FINGERPRINT_SQL = """
SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
  SELECT concat_ws(',', id, store_id, title, description, category_id,
         price_minor, currency, attributes, image_urls, status, stock,
         rating_average, rating_count, sales_count, create_time) AS t
    FROM catalog.products
  UNION ALL
  SELECT concat_ws(',', id, owner_id, name, slug, description, status)
    FROM catalog.stores
  UNION ALL
  SELECT concat_ws(',', id, parent_id, slug, name) FROM catalog.categories
  UNION ALL
  SELECT concat_ws(',', id, email, display_name, roles) FROM account.accounts
) rows
"""


class SeedTest(fixture.StackTestCase):
    SERVICES = ("token", "account", "auth", "catalog")

    @classmethod
    def setUpClass(cls):
        if not os.access(SEED_BIN, os.X_OK):
            raise RuntimeError("not built: " + SEED_BIN)
        super().setUpClass()

    def seed(self, *args, db="estore", port=None):
        env = self.stack.env("catalog", {"DB_NAME": db})
        if port is not None:
            env["DB_PORT"] = str(port)
        return subprocess.run([SEED_BIN] + [str(a) for a in args], env=env,
                              capture_output=True, text=True, timeout=120)

    def count(self, sql, db="estore"):
        return int(self.stack.psql(sql, db=db).strip())

    def searchable(self):
        return self.count("SELECT count(*) FROM catalog.products p JOIN catalog.stores s "
                          "ON s.id = p.store_id WHERE p.status = 'active' "
                          "AND s.status = 'active'")

    def search_total(self):
        """Every searchable product the catalog's index holds; -1 while
        it has no index yet (UNAVAILABLE)."""
        try:
            r = self.stack.stub("catalog").SearchProducts(
                C().SearchProductsRequest(page_size=1), timeout=10)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                return -1
            raise
        return r.total_size

    def test_a_seeded_catalog_is_searchable_and_owned(self):
        self.assertTrue(fixture.wait_until(lambda: self.search_total() == 0, 30, 0.1))
        r = self.seed("--products", PRODUCTS, "--seed", 11)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"seeded (\d+) products \((\d+) active\) in (\d+) stores", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertEqual(int(m.group(1)), PRODUCTS)
        self.assertEqual(self.count("SELECT count(*) FROM catalog.products"), PRODUCTS)
        self.assertEqual(self.count("SELECT count(*) FROM catalog.stores"), int(m.group(3)))
        self.assertEqual(self.count("SELECT count(*) FROM catalog.products "
                                    "WHERE status = 'active'"), int(m.group(2)))
        password = re.search(r"with the password (\S+)", r.stdout).group(1)

        # One reload notice, one rebuild: search sees every searchable row.
        want = self.searchable()
        self.assertGreater(want, PRODUCTS // 2)
        self.assertTrue(fixture.wait_until(lambda: self.search_total() == want, 30, 0.2),
                        "search has %d of %d products" % (self.search_total(), want))
        self.assertIn("catalog reloaded in bulk", self.stack.log("catalog"))
        # A row's own words find it.
        pid, title = self.stack.psql(
            "SELECT p.id, p.title FROM catalog.products p JOIN catalog.stores s "
            "ON s.id = p.store_id WHERE p.status = 'active' AND s.status = 'active' "
            "ORDER BY p.id LIMIT 1").strip().split("|")
        r2 = self.stack.stub("catalog").SearchProducts(
            C().SearchProductsRequest(q=title, page_size=100), timeout=10)
        self.assertIn(pid, [p.id for p in r2.products], title)

        # Vendor 0 signs in with the printed password and edits its own
        # product, and nobody else's.
        pair = self.stack.stub("auth").Login(
            fixture.pb2("auth").LoginRequest(email="vendor0.seed11@example.com",
                                             password=password), timeout=30)
        md = fixture.bearer(pair.access_token)
        owner = self.stack.psql("SELECT id FROM account.accounts "
                                "WHERE email = 'vendor0.seed11@example.com'").strip()
        mine, theirs = [self.stack.psql(
            "SELECT p.id FROM catalog.products p JOIN catalog.stores s ON s.id = p.store_id "
            "WHERE s.owner_id %s '%s' ORDER BY p.id LIMIT 1" % (op, owner)).strip()
            for op in ("=", "<>")]
        from google.protobuf import field_mask_pb2
        got = self.stack.stub("catalog").UpdateProduct(C().UpdateProductRequest(
            product=C().Product(id=mine, title="Renamed by its vendor"),
            update_mask=field_mask_pb2.FieldMask(paths=["title"])), metadata=md, timeout=10)
        self.assertEqual(got.title, "Renamed by its vendor")
        with self.assertRaises(grpc.RpcError) as cm:
            self.stack.stub("catalog").UpdateProduct(C().UpdateProductRequest(
                product=C().Product(id=theirs, title="Not mine"),
                update_mask=field_mask_pb2.FieldMask(paths=["title"])), metadata=md, timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

        # The same seed again is refused, and adds nothing.
        r = self.seed("--products", 10, "--seed", 11)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("seed 11 is in this database already", r.stderr)
        self.assertEqual(self.count("SELECT count(*) FROM catalog.products"), PRODUCTS)

    def test_a_replica_serves_once_its_index_is_built(self):
        # Hold the index build back: a lock on the products table stops
        # the new replica's snapshot read, while PostgreSQL itself answers.
        st = self.stack
        locker = subprocess.Popen(
            [os.path.join(fixture.PG_BIN, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-h", st.net.addr("postgres"), "-p", str(st.db_port), "-U", "estore", "-d", "estore"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: locker.poll() is None and locker.kill())
        locker.stdin.write("BEGIN;\nLOCK TABLE catalog.products IN ACCESS EXCLUSIVE MODE;\n"
                           "SELECT 'locked';\n")
        locker.stdin.flush()
        self.assertEqual(locker.stdout.readline().strip(), "locked")
        st.ports["catalog-r"] = fixture.free_port()
        st.start_service("catalog-r", binary=fixture.binary_path("catalog"), wait="listening",
                         extra_env={"CATALOG_SERVICE_PORT": st.ports["catalog-r"]})
        self.addCleanup(st.assert_clean_exit, self, "catalog-r")
        service = "estore.catalog.v1.CatalogService"
        for _ in range(10):
            self.assertEqual(st.health("catalog-r", service=service), "NOT_SERVING")
            self.assertEqual(st.health("catalog-r", service="liveness"), "SERVING")
            time.sleep(0.1)
        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        self.assertEqual(locker.wait(timeout=10), 0)
        locker.stdout.close()
        locker.stderr.close()
        self.assertTrue(fixture.wait_until(
            lambda: st.health("catalog-r", service=service) == "SERVING", 15, 0.1),
            "the replica never turned SERVING once its index could be built")

    def test_estore_seed_runs_the_built_tool(self):
        # `./estore seed` (scripts/stack.sh) must name where the build puts
        # estore-seed, or the command fails on every machine.
        stack_sh = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "stack.sh")
        with open(stack_sh, encoding="utf-8") as f:
            m = re.search(r"\$_stack_build/(\S+/estore-seed)\b", f.read())
        self.assertIsNotNone(m, "scripts/stack.sh names no estore-seed")
        self.assertTrue(SEED_BIN.endswith(os.sep + m.group(1)),
                        "stack.sh runs %s, the build makes %s" % (m.group(1), SEED_BIN))

    def test_the_same_seed_gives_the_same_rows(self):
        prints = []
        for db in ("seed_a", "seed_b"):
            self.stack.psql("CREATE DATABASE %s" % db, db="postgres")
            r = self.seed("--products", 700, "--seed", 5, db=db)
            self.assertEqual(r.returncode, 0, r.stderr)
            prints.append(self.stack.psql(FINGERPRINT_SQL, db=db).strip())
        self.assertEqual(prints[0], prints[1])
        self.stack.psql("CREATE DATABASE seed_c", db="postgres")
        r = self.seed("--products", 700, "--seed", 6, db="seed_c")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotEqual(self.stack.psql(FINGERPRINT_SQL, db="seed_c").strip(), prints[0])

    def test_bad_arguments_change_nothing(self):
        self.stack.psql("CREATE DATABASE seed_bad", db="postgres")
        for args in ([], ["--products"], ["--products", "0"], ["--products", "ten"],
                     ["--products", "10", "--seed", "-1"], ["--products", "99999999999"],
                     ["--products", "10", "--colour", "red"]):
            with self.subTest(args=args):
                r = self.seed(*args, db="seed_bad")
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("usage: estore-seed", r.stderr)
        # Nothing was even migrated.
        self.assertEqual(self.count("SELECT count(*) FROM pg_namespace WHERE nspname "
                                    "IN ('catalog', 'account')", db="seed_bad"), 0)

    def test_database_down_is_a_clear_error(self):
        r = self.seed("--products", 10, port=fixture.free_port())
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"(?i)connect|refused")


if __name__ == "__main__":
    fixture.main()
