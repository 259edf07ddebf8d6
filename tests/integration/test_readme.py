#!/usr/bin/python3
"""The README's curl walkthroughs, run as they stand (bash, curl, jq)
against a real stack: services, edge, PostgreSQL and Redis from
fixture.py, and a catalog from estore-seed. If the README and the API
part ways, this fails."""

import os
import re
import subprocess

import fixture

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
MARKER = "<!-- readme-test: %s walkthrough -->"



SEED_BIN = fixture.take_option("--seed-bin") or os.path.join(
    os.environ.get("ESTORE_BUILD_DIR", "build"), "services", "catalog", "seed", "estore-seed")


def walkthrough(name):
    """The ```sh block right after the marker of `name`."""
    marker = MARKER % name
    with open(README, encoding="utf-8") as f:
        text = f.read()
    at = text.find(marker)
    if at < 0:
        raise AssertionError("README.md has no %r block" % marker)
    m = re.compile(r"```sh\n(.*?)```", re.S).search(text, at)
    if m is None:
        raise AssertionError("no ```sh block after %r" % marker)
    return m.group(1)


class ReadmeTest(fixture.StackTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.stack.start_service(fixture.EDGE)
        except BaseException:
            cls.stack.failed = True
            cls.stack.close()
            raise

    def run_block(self, name, **env):
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough(name)],
                           env=dict(os.environ, EDGE=self.stack.edge_url(), **env),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (r.stdout, r.stderr))
        return r.stdout

    def test_curl_walkthrough(self):
        out = self.run_block("curl")
        # Register's pair, the account before and after the edit, the
        # logout's {}, then the 401 with its JSON error.
        self.assertIn('"tokenType":"Bearer"', out)
        self.assertIn('"email":"ada@example.com"', out)
        self.assertIn('"displayName":"Ada Lovelace"', out)
        self.assertIn("{}", out)
        self.assertRegex(out, r"HTTP/1\.1 401 Unauthorized")
        self.assertRegex(out, r"(?i)www-authenticate: Bearer")
        self.assertRegex(out, r'\{"code":16,"message":"[^"]+","details":\[\]\}\s*$')

    def test_catalog_walkthrough(self):
        # What `./estore seed` does, on the fixture's database.
        r = subprocess.run([SEED_BIN, "--products", "2000"], env=self.stack.env("catalog"),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("vendors sign in as vendor0.seed1@example.com", r.stdout)
        password = re.search(r"with the password (\S+)", r.stdout).group(1)
        # The catalog rebuilds its index from the seed's reload notice.
        cat = fixture.pb2("catalog")
        searchable = lambda: self.stack.stub("catalog").SearchProducts(  # noqa: E731
            cat.SearchProductsRequest(page_size=1), timeout=10).total_size > 1000
        self.assertTrue(fixture.wait_until(searchable, 30, 0.2))

        out = self.run_block("catalog", PASSWORD=password)
        self.assertIn('"slug":"ada-audio"', out)
        self.assertIn('"title":"Ada Studio Headphones"', out)
        self.assertIn('"amountMinor":"11900"', out)
        # The misspelt search in the store finds exactly the new product,
        # corrected, with its facets.
        m = re.search(r'\{"products":\[.*?"totalSize":1,.*?\}\n?', out, re.S)
        self.assertIsNotNone(m, out)
        self.assertIn('"correctedQuery":"headphones"', out)
        self.assertIn('"facets":', out)
        self.assertIn('"correctedQuery": "studio headphones"', out)
        self.assertRegex(out, r'"suggestions":\[\{"productId":"[0-9a-f-]+","title":"Ada Studio Headphones"')
        self.assertIn("PRODUCT_STATUS_ARCHIVED", out)
        self.assertTrue(out.rstrip().endswith("404"), out[-300:])


if __name__ == "__main__":
    fixture.main()
