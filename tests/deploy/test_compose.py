#!/usr/bin/python3
"""compose.yaml, checked without a Docker engine.

Debian's docker-compose validates the file (`config -q`) with
.env.example as its env file plus the four secrets .env must add; then
the resolved configuration is checked for what the README promises:
healthchecks everywhere, start order by health, the edge on 8080, named
volumes for the data, secrets only from .env or compose secrets.

  test_compose.py --repo ROOT [--docker-compose PATH]
"""

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml  # Debian's python3-yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sources  # noqa: E402

REPO = None
COMPOSE = "docker-compose"

# What .env must add to .env.example (README, "Running with Docker Compose").
SECRETS = ("DB_PASSWORD", "REDIS_PASSWORD", "AUTH_SERVICE_SECRET",
           "RABBITMQ_PASSWORD")
PLACEHOLDERS = {k: "test-%s-value" % k.lower().replace("_", "-")
                for k in SECRETS}


def run_config(project_dir, extra_env, *args):
    """docker-compose config in project_dir with .env.example as the env
    file; only PATH and extra_env in the environment, so a variable of the
    machine running the test cannot hide a problem."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(extra_env)
    cmd = [COMPOSE, "--project-directory", project_dir,
           "-f", os.path.join(project_dir, "compose.yaml"),
           "--env-file", os.path.join(project_dir, ".env.example"),
           "config"] + list(args)
    return subprocess.run(cmd, env=env, cwd=project_dir, timeout=60,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


class ComposeConfig(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        r = run_config(REPO, PLACEHOLDERS)
        if r.returncode != 0:
            raise AssertionError("docker-compose config failed:\n" + r.stderr)
        cls.cfg = yaml.safe_load(r.stdout)
        cls.services = cls.cfg["services"]
        cls.raw = sources.load_compose(REPO)

    def test_valid(self):
        r = run_config(REPO, PLACEHOLDERS, "-q")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_missing_secret_is_refused(self):
        # One run shows compose enforces ${VAR:?}; test_secrets_not_in_the_file
        # checks that every secret is written that way. (docker-compose
        # names only the first missing variable.)
        r = run_config(REPO, {}, "-q")
        self.assertNotEqual(r.returncode, 0, "compose.yaml starts without "
                            "any of " + ", ".join(SECRETS))
        self.assertTrue(any(name in r.stderr for name in SECRETS), r.stderr)

    def test_broken_file_fails(self):
        # The validator must notice a broken file, or test_valid proves
        # nothing: a misspelt key, a bad condition, a dangling dependency.
        with open(os.path.join(REPO, "compose.yaml"), encoding="utf-8") as f:
            good = f.read()
        breakages = {
            "misspelt key": ("    healthcheck:\n", "    healthchek:\n"),
            "bad condition": ("condition: service_healthy",
                              "condition: service_happy"),
            "unknown dependency": ("      redis:\n        condition",
                                   "      rediss:\n        condition"),
            # The same file unbroken passes: the failures come from the
            # breakages, not from the copy.
            "nothing": ("", ""),
        }
        with tempfile.TemporaryDirectory(prefix="estore-compose-") as tmp:
            def check(item):
                what, (old, new) = item
                d = os.path.join(tmp, what.replace(" ", "-"))
                os.mkdir(d)
                shutil.copy(os.path.join(REPO, ".env.example"), d)
                with open(os.path.join(d, "compose.yaml"), "w",
                          encoding="utf-8") as f:
                    f.write(good.replace(old, new, 1))
                return what, old in good, run_config(d, PLACEHOLDERS, "-q")
            # docker-compose takes most of a second to start: in parallel.
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                results = list(pool.map(check, breakages.items()))
        for what, found, r in results:
            with self.subTest(breakage=what):
                self.assertTrue(found)
                if what == "nothing":
                    self.assertEqual(r.returncode, 0, r.stderr)
                else:
                    self.assertNotEqual(r.returncode, 0,
                                        "accepted with a " + what)

    def test_datastores(self):
        want = {"postgres": "postgres:15", "redis": "redis:7",
                "rabbitmq": "rabbitmq:3-management"}
        for name, image in want.items():
            with self.subTest(service=name):
                self.assertIn(name, self.services)
                self.assertEqual(self.services[name].get("image"), image)
                # Data lives in a named volume, not in the container.
                # docker-compose 1 prints "name:/path:rw", compose 2 a map.
                sources_ = []
                for v in self.services[name].get("volumes", []):
                    if isinstance(v, str):
                        sources_.append(v.split(":")[0])
                    elif v.get("type") == "volume":
                        sources_.append(v.get("source"))
                named = [v for v in sources_
                         if v in (self.cfg.get("volumes") or {})]
                self.assertTrue(named, name + " keeps its data in no named "
                                "volume: %r" % sources_)

    def test_every_service_has_a_healthcheck(self):
        for name, svc in self.services.items():
            with self.subTest(service=name):
                if svc.get("profiles"):
                    # A one-shot tool (`docker compose run --rm seed`):
                    # nothing to probe, and never restarted.
                    self.assertIn(str(svc.get("restart")), ("no", "False"), name)
                    continue
                hc = svc.get("healthcheck") or {}
                self.assertTrue(hc.get("test"), name + " has no healthcheck")
                self.assertFalse(hc.get("disable"), name)

    def test_start_order_waits_for_health(self):
        deps = 0
        for name, svc in self.services.items():
            for dep, how in (svc.get("depends_on") or {}).items():
                deps += 1
                with self.subTest(service=name, dependency=dep):
                    self.assertIn(dep, self.services)
                    self.assertEqual(how.get("condition"), "service_healthy")
        self.assertGreater(deps, 0)

    def test_grpc_healthchecks_probe_the_service_port(self):
        # estore-health ADDR: the address must be where the service listens
        # (its *_PORT in the same container), or the check never passes.
        progs = sources.programs(REPO)
        common = sources.common_vars(REPO)
        checked = 0
        for name, svc in self.services.items():
            if not sources.is_estore_service(self.raw["services"][name]) \
                    or svc.get("profiles"):
                continue
            test = svc["healthcheck"]["test"]
            if "estore-health" not in test:
                continue
            addr = test[test.index("estore-health") + 1]
            port = addr.rsplit(":", 1)[1]
            env = svc.get("environment") or {}
            prog = svc["command"][0]
            reads = sources.program_vars(REPO, progs[prog], common)
            # The one *_PORT it reads that its own address is made of:
            # listen ports have no matching *_HOST read by the same program.
            # (METRICS_PORT is the service's other listener.)
            own = [v for v in reads if v.endswith("_PORT")
                   and v[:-5] + "_HOST" not in reads and v != "METRICS_PORT"]
            with self.subTest(service=name):
                self.assertEqual(len(own), 1, own)
                self.assertEqual(str(env.get(own[0])), port)
                self.assertEqual(test[0], "CMD")
                checked += 1
        self.assertGreaterEqual(checked, 3)

    def test_edge_published_on_8080(self):
        edge = self.services["edge"]
        ports = [(str(p.get("published")), p.get("target"))
                 for p in edge.get("ports", [])]
        self.assertIn(("8080", 8080), ports)
        self.assertEqual(str(edge["environment"]["EDGE_PORT"]), "8080")

    def test_estore_services_use_one_image(self):
        images = set()
        for name, svc in self.raw["services"].items():
            if sources.is_estore_service(svc):
                self.assertEqual(os.path.normpath(self.services[name]["build"]
                                                  ["context"]), REPO)
                images.add(svc.get("image"))
        self.assertEqual(len(images), 1, images)

    def test_secrets_not_in_the_file(self):
        # Secrets come only from .env (${VAR:?...}) or compose secrets.
        code = sources.code_vars(REPO)
        secret_vars = {n for n, v in code.items() if v.secret} | set(SECRETS)
        for name, svc in self.raw["services"].items():
            for var, value in sources.environment(svc).items():
                if var in secret_vars or var.endswith(("_PASSWORD", "_PASS")):
                    with self.subTest(service=name, variable=var):
                        interp = sources.interpolations(value)
                        self.assertTrue(interp and all(
                            op == ":?" for _, op, _ in interp), value)
        for name, sec in (self.raw.get("secrets") or {}).items():
            with self.subTest(secret=name):
                path = os.path.normpath(os.path.join(REPO, sec["file"]))
                rel = os.path.relpath(path, REPO)
                # Its folder is git-ignored and kept out of the image's
                # build context (read from the files: a checkout need not
                # be a git repository).
                top = rel.split("/")[0]
                self.assertNotEqual(top, rel, "a secret file at the top of "
                                    "the repository: put it in a folder")
                for ignore_file, forms in (
                        (".gitignore", ("/%s/" % top, "%s/" % top,
                                        "/" + top, top)),
                        (".dockerignore", (top, top + "/"))):
                    with open(os.path.join(REPO, ignore_file),
                              encoding="utf-8") as f:
                        lines = {l.strip() for l in f}
                    self.assertTrue(lines & set(forms), "%s does not ignore "
                                    "%s/" % (ignore_file, top))


def main():
    global REPO, COMPOSE
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--docker-compose", default="docker-compose")
    args, rest = ap.parse_known_args()
    REPO = os.path.abspath(args.repo)
    COMPOSE = args.docker_compose
    if shutil.which(COMPOSE) is None:
        print("%s not found (Debian: docker-compose; ./estore deps installs "
              "it)" % COMPOSE, file=sys.stderr)
        return 1
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
