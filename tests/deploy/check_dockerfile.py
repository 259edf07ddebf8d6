#!/usr/bin/python3
"""The Dockerfile, checked without a Docker engine.

On this Debian 12 machine the build tree holds the same programs the
image builds (same compiler, same libraries), so:

  - `cmake --install` of the build tree, into a temporary folder, must
    hold every program CMake builds under services/ and edge-proxy/, and
    the runtime stage must copy what the build stage installed;
  - the runtime stage installs exactly the Debian packages of the shared
    libraries those programs link directly (readelf NEEDED -> dpkg -S),
    besides what debian:12-slim already has, and no compiler or -dev
    package; the build stage installs the -dev package of every library
    CMake looks up;
  - files the programs read at run time are in the image: a default path
    of a configuration variable is copied in, and a default that points
    into the source tree (ACCOUNT_MIGRATIONS_DIR) is overridden by ENV
    to a copy that the install holds;
  - the last USER is not root; no ENV or ARG carries a secret; the build
    context leaves out .env, secrets and local state.

  check_dockerfile.py --repo ROOT --build-dir DIR
"""

import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sources  # noqa: E402

REPO = None
BUILD = None

# In debian:12-slim already (priority required): libc and libgcc.
BASE_PACKAGES = {"libc6", "libgcc-s1"}
COMPILER = re.compile(r"^(gcc|g\+\+|cpp|clang.*|cc|c\+\+|make|cmake|ninja.*|"
                      r"build-essential|binutils.*|pkg-config|pkgconf|"
                      r"libtool|autoconf|automake|.*-dev)(:.*)?$")


def dpkg_owners(paths):
    """{path: Debian package owning it} (usr-merge aware), in one dpkg -S
    call: dpkg reads its whole database each time."""
    cands = {}
    for path in paths:
        alts = [path, os.path.realpath(path)]
        for p in list(alts):
            alts.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
        cands[path] = alts
    every = sorted({a for alts in cands.values() for a in alts})
    r = subprocess.run(["dpkg", "-S"] + every, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, timeout=60)
    owner = {}
    for line in r.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        owner.setdefault(path.strip(), pkgs.split(",")[0].split(":")[0].strip())
    out = {}
    for path, alts in cands.items():
        out[path] = next((owner[a] for a in alts if a in owner), None)
    return out


def dpkg_owner(path):
    return dpkg_owners([path])[path]


def needed(binary):
    r = subprocess.run(["readelf", "-d", binary], stdout=subprocess.PIPE,
                       text=True, timeout=30, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


def library_paths():
    """{soname: path} of the native 64-bit libraries (x86-64, AArch64...),
    not of a 32-bit multiarch copy."""
    r = subprocess.run(["ldconfig", "-p"], stdout=subprocess.PIPE, text=True,
                       timeout=30, check=True)
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and "64" in m.group(2):
            out.setdefault(m.group(1), m.group(3))
    return out


class Dockerfile(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.stages = sources.dockerfile_stages(REPO)
        if len(cls.stages) < 2:
            raise AssertionError("Dockerfile: want a build and a runtime "
                                 "stage, found %d stage(s)" % len(cls.stages))
        cls.build, cls.runtime = cls.stages[0], cls.stages[-1]
        cls.tmp = tempfile.TemporaryDirectory(prefix="estore-install-")
        cls.prefix = cls.tmp.name
        subprocess.run(["cmake", "--install", BUILD, "--prefix", cls.prefix],
                       check=True, stdout=subprocess.DEVNULL, timeout=120)
        cls.progs = sources.programs(REPO)
        cls.code = sources.code_vars(REPO)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def build_runs(self):
        return " && ".join(self.build.args("RUN"))

    def image_prefix(self):
        m = re.search(r"cmake --install \S+ --prefix (\S+)", self.build_runs())
        self.assertTrue(m, "the build stage runs no `cmake --install DIR "
                        "--prefix PREFIX`")
        return m.group(1)

    def runtime_env(self):
        env = {}
        for arg in self.runtime.args("ENV"):
            for tok in shlex.split(arg):
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    env[k] = v
        return env

    def runtime_copies(self):
        """[(from-stage, sources, destination)] of the runtime stage."""
        out = []
        for arg in self.runtime.args("COPY"):
            words = arg.split()
            frm = None
            while words and words[0].startswith("--"):
                if words[0].startswith("--from="):
                    frm = words[0][len("--from="):]
                words = words[1:]
            out.append((frm, words[:-1], words[-1]))
        return out

    def test_bases(self):
        self.assertEqual(self.build.base, "debian:12")
        self.assertEqual(self.runtime.base, "debian:12-slim")
        self.assertTrue(self.build.name, "the build stage has no name")

    def test_release_build_of_the_programs_only(self):
        runs = self.build_runs()
        self.assertIn("-DCMAKE_BUILD_TYPE=Release", runs)
        self.assertIn("-DESTORE_TESTS=OFF", runs)

    def test_install_holds_every_program(self):
        self.assertGreaterEqual(len(self.progs), 5)
        for prog, folder in sorted(self.progs.items()):
            with self.subTest(program=prog):
                self.assertTrue(
                    os.access(os.path.join(self.prefix, "bin", prog), os.X_OK),
                    "%s (%s/CMakeLists.txt) has no install(TARGETS ...) rule"
                    % (prog, folder))

    def test_runtime_copies_the_install(self):
        prefix = self.image_prefix()
        copied = [(f, s, d) for f, s, d in self.runtime_copies()
                  if f == self.build.name and prefix in s]
        self.assertTrue(copied, "the runtime stage does not COPY --from=%s %s"
                        % (self.build.name, prefix))
        self.assertEqual(copied[0][2].rstrip("/"), prefix.rstrip("/"))
        path = self.runtime_env().get("PATH", "")
        self.assertIn(prefix.rstrip("/") + "/bin", path.split(":"))

    def test_runtime_libraries_are_what_the_programs_link(self):
        libs = library_paths()
        users = {}
        for prog in sorted(self.progs):
            for soname in needed(os.path.join(self.prefix, "bin", prog)):
                self.assertIn(soname, libs, "%s: %s not found by ldconfig"
                              % (prog, soname))
                users.setdefault(libs[soname], set()).add(prog)
        owners = dpkg_owners(users)
        want = {}
        for path, progs in users.items():
            self.assertTrue(owners[path], "%s: no Debian package owns %s"
                            % (", ".join(sorted(progs)), path))
            want.setdefault(owners[path], set()).update(progs)
        installed = set(sources.apt_installs(self.runtime))
        for pkg, progs in sorted(want.items()):
            if pkg in BASE_PACKAGES:
                continue
            with self.subTest(package=pkg):
                self.assertIn(pkg, installed, "%s links a library of %s; "
                              "the runtime stage does not install it"
                              % (", ".join(sorted(progs)), pkg))
        for pkg in sorted(installed):
            with self.subTest(package=pkg):
                self.assertIn(pkg, want, "the runtime stage installs %s, "
                              "which no program links" % pkg)

    def test_no_compiler_at_runtime(self):
        for pkg in sources.apt_installs(self.runtime):
            with self.subTest(package=pkg):
                self.assertIsNone(COMPILER.match(pkg), pkg)

    def test_build_stage_has_every_dev_package(self):
        # The libraries CMake looks up outside the tests-only block, by
        # pkg-config module and by header.
        text = sources.read(REPO, "CMakeLists.txt")
        text = re.sub(r"(?ms)^if\(ESTORE_TESTS\).*?^endif\(\)", "", text)
        text = re.sub(r"#[^\n]*", "", text)
        modules = []
        for m in re.finditer(r"pkg_check_modules\(\s*\w+((?:\s+[\w.+-]+)+)",
                             text):
            modules += [w for w in m.group(1).split()
                        if w not in ("REQUIRED", "IMPORTED_TARGET", "QUIET")]
        if re.search(r"find_package\(\s*OpenSSL", text):
            modules.append("openssl")
        self.assertIn("libnghttp2", modules)
        headers = []
        for folder in set(self.progs.values()) | {"rpc"}:
            cm = sources.read(REPO, os.path.join(folder, "CMakeLists.txt"))
            headers += re.findall(r"find_path\(\s*\w+\s+([\w./-]+\.h)\s*\)",
                                  cm)
        installed = set(sources.apt_installs(self.build))
        wanted = {}
        for mod in modules:
            r = subprocess.run(["pkg-config", "--path", mod],
                               stdout=subprocess.PIPE, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, "pkg-config: no " + mod)
            wanted[r.stdout.strip()] = "pkg-config " + mod
        for h in headers:
            wanted["/usr/include/" + h] = "header " + h
        owners = dpkg_owners(wanted)
        for path, what in sorted(wanted.items()):
            with self.subTest(needs=what):
                self.assertIn(owners[path], installed, "the build stage does "
                              "not install %s (%s)" % (owners[path], path))

    def test_runtime_files_are_in_the_image(self):
        env = self.runtime_env()
        prefix = self.image_prefix().rstrip("/")
        copied = {d.rstrip("/") for _, _, d in self.runtime_copies()}
        build_apt = set(sources.apt_installs(self.build))
        checked = 0
        for name, v in sorted(self.code.items()):
            if v.macro:
                # A compile-time default is a path of the build tree.
                with self.subTest(variable=name):
                    self.assertIn(name, env, "%s defaults to %s, a path of "
                                  "the build tree: set it with ENV" %
                                  (name, v.macro))
                    path = env[name]
                    self.assertTrue(path.startswith(prefix + "/"), path)
                    local = os.path.join(self.prefix, path[len(prefix) + 1:])
                    self.assertTrue(os.path.isdir(local) and os.listdir(local),
                                    "%s=%s: the install does not hold it"
                                    % (name, path))
                    checked += 1
            elif v.default and v.default.startswith("/") and name not in env:
                with self.subTest(variable=name):
                    self.assertIn(v.default, copied, "%s's default %s is "
                                  "not copied into the image" %
                                  (name, v.default))
                    owner = dpkg_owner(v.default)
                    self.assertIn(owner, build_apt, "%s comes from %s, "
                                  "which the build stage does not install"
                                  % (v.default, owner))
                    checked += 1
        self.assertGreaterEqual(checked, 2)

    def test_user_is_not_root(self):
        users = self.runtime.args("USER")
        self.assertTrue(users, "the runtime stage sets no USER")
        user = users[-1].split(":")[0]
        self.assertNotIn(user, ("root", "0", ""))
        if user.isdigit():
            # Numeric, so Kubernetes' runAsNonRoot can check it; created.
            self.assertRegex(" ".join(self.runtime.args("RUN")),
                             r"useradd\b[^&;]*--uid %s\b" % user)

    def test_no_secrets_in_the_image(self):
        secret = {n for n, v in self.code.items() if v.secret}
        self.assertIn("DB_PASSWORD", secret)
        for stage in self.stages:
            for kw in ("ENV", "ARG"):
                for arg in stage.args(kw):
                    for tok in shlex.split(arg):
                        name = tok.split("=", 1)[0]
                        with self.subTest(stage=stage.base, variable=name):
                            self.assertNotIn(name, secret)
                            self.assertNotRegex(name, r"PASSWORD|SECRET|_KEY$")
            for arg in stage.args("COPY") + stage.args("ADD"):
                self.assertNotRegex(arg, r"(^|\s)\S*(\.env|secrets|\.pem)\b")
        with open(os.path.join(REPO, ".dockerignore"), encoding="utf-8") as f:
            ignored = {l.strip() for l in f
                       if l.strip() and not l.startswith("#")}
        for entry in (".env", "secrets", ".estore", ".git", "build",
                      "build-*", "node_modules"):
            with self.subTest(dockerignore=entry):
                self.assertIn(entry, ignored)


def main():
    global REPO, BUILD
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--build-dir", required=True)
    args, rest = ap.parse_known_args()
    REPO = os.path.abspath(args.repo)
    BUILD = os.path.abspath(args.build_dir)
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
