#!/usr/bin/python3
"""The README's curl walkthrough, run as it stands (bash, curl, jq)
against a real stack: services, edge, PostgreSQL and Redis from
fixture.py. If the README and the API part ways, this fails."""

import os
import re
import subprocess
import unittest

import fixture

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
MARKER = "<!-- readme-test: curl walkthrough -->"


def walkthrough():
    """The ```sh block right after the marker."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    at = text.find(MARKER)
    if at < 0:
        raise AssertionError("README.md has no %r block" % MARKER)
    m = re.compile(r"```sh\n(.*?)```", re.S).search(text, at)
    if m is None:
        raise AssertionError("no ```sh block after %r" % MARKER)
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

    def test_curl_walkthrough(self):
        script = walkthrough()
        env = dict(os.environ, EDGE=self.stack.edge_url())
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                           capture_output=True, text=True, timeout=120)
        out = r.stdout
        self.assertEqual(r.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (out, r.stderr))
        # Register's pair, the account before and after the edit, the
        # logout's {}, then the 401 with its JSON error.
        self.assertIn('"tokenType":"Bearer"', out)
        self.assertIn('"email":"ada@example.com"', out)
        self.assertIn('"displayName":"Ada Lovelace"', out)
        self.assertIn("{}", out)
        self.assertRegex(out, r"HTTP/1\.1 401 Unauthorized")
        self.assertRegex(out, r"(?i)www-authenticate: Bearer")
        self.assertRegex(out, r'\{"code":16,"message":"[^"]+","details":\[\]\}\s*$')


if __name__ == "__main__":
    fixture.main()
