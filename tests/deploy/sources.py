"""What the deployment tests read out of the repository itself: the
configuration variables each program reads (its cfg_var table and any
getenv call), the programs CMake builds, .env.example, compose.yaml, the
README's configuration section and the Dockerfile's stages.

Everything is discovered from the sources, so a new service or a new
variable is checked without anyone editing the tests.
"""

import os
import re

# A cfg_var entry: { "NAME", CFG_TYPE, F(field), DEFAULT, min, max, secret,
# where DEFAULT is a string literal, NULL (required) or a macro.
_CFG_ENTRY = re.compile(
    r'\{\s*"([A-Z][A-Z0-9_]*)"\s*,\s*CFG_[A-Z]+\s*,\s*F\(\w+\)\s*,\s*'
    r'((?:"(?:[^"\\]|\\.)*"\s*)+|NULL|[A-Za-z_]\w*)\s*,'
    r'[^,]*,[^,]*,\s*(true|false)\s*,', re.S)
_GETENV = re.compile(r'\bgetenv\s*\(\s*"([A-Z][A-Z0-9_]*)"\s*\)')
_ADD_EXECUTABLE = re.compile(r'add_executable\(\s*([\w-]+)\s+([^)]*)\)', re.S)

# Where the programs' sources are (tests/ and bench/ are not shipped).
PROGRAM_DIRS = ("rpc", "services", "edge-proxy")


class Var:
    """One variable a program reads."""

    def __init__(self, name):
        self.name = name
        self.default = None      # literal text, or None
        self.macro = None        # a compile-time default (e.g. a source path)
        self.required = False
        self.secret = False
        self.where = set()       # source files, relative to the repository

    def __repr__(self):
        return "Var(%s)" % self.name


def _c_string(lit):
    """The value of adjacent C string literals (simple escapes only)."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', lit)
    return "".join(bytes(p, "utf-8").decode("unicode_escape") for p in parts)


def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def read(repo, rel):
    with open(os.path.join(repo, rel), encoding="utf-8") as f:
        return f.read()


def c_files(repo, dirs=PROGRAM_DIRS):
    for top in dirs:
        for base, subdirs, files in os.walk(os.path.join(repo, top)):
            subdirs.sort()
            for name in sorted(files):
                if name.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(base, name), repo)


def vars_in_file(repo, rel):
    """{name: Var} read by one C file: cfg_var entries and getenv calls."""
    text = _strip_comments(read(repo, rel))
    found = {}
    for m in _CFG_ENTRY.finditer(text):
        v = found.setdefault(m.group(1), Var(m.group(1)))
        d = m.group(2).strip()
        if d == "NULL":
            v.required = True
        elif d.startswith('"'):
            v.default = _c_string(d)
        else:
            v.macro = d
        v.secret = m.group(3) == "true"
        v.where.add(rel)
    for m in _GETENV.finditer(text):
        # cfg_load's own getenv(v->env) has no literal; only named ones.
        v = found.setdefault(m.group(1), Var(m.group(1)))
        v.where.add(rel)
    return found


def code_vars(repo):
    """{name: Var} over every program source."""
    merged = {}
    for rel in c_files(repo):
        for name, v in vars_in_file(repo, rel).items():
            m = merged.setdefault(name, Var(name))
            m.where |= v.where
            m.required = m.required or v.required
            m.secret = m.secret or v.secret
            if v.default is not None:
                m.default = v.default
            if v.macro is not None:
                m.macro = v.macro
    return merged


def programs(repo):
    """{target: folder} of every executable under services/ and
    edge-proxy/ (the programs the image ships)."""
    out = {}
    for top in ("services", "edge-proxy"):
        for base, subdirs, files in os.walk(os.path.join(repo, top)):
            subdirs.sort()
            if "CMakeLists.txt" not in files:
                continue
            text = re.sub(r"#[^\n]*", "", read(repo, os.path.relpath(
                os.path.join(base, "CMakeLists.txt"), repo)))
            for m in _ADD_EXECUTABLE.finditer(text):
                out[m.group(1)] = os.path.relpath(base, repo)
    return out


def program_vars(repo, folder, common):
    """Variables one program reads: its own folder's files plus what every
    program reads through services/common and rpc/ (`common`). A subfolder
    that builds a program of its own (services/catalog/seed) is that
    program's, not this one's."""
    others = [f + os.sep for f in set(programs(repo).values())
              if f != folder and f.startswith(folder + os.sep)]
    own = {}
    for rel in c_files(repo, (folder,)):
        if any(rel.startswith(o) for o in others):
            continue
        for name, v in vars_in_file(repo, rel).items():
            own.setdefault(name, v)
    return {**common, **own}


def common_vars(repo):
    out = {}
    for rel in c_files(repo, ("rpc", os.path.join("services", "common"))):
        out.update(vars_in_file(repo, rel))
    return out


_ENV_LINE = re.compile(r"^#?\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example(repo):
    """{name: shown value} of .env.example, commented-out lines included
    (the file lists every setting commented out, with its default)."""
    out = {}
    for line in read(repo, ".env.example").splitlines():
        m = _ENV_LINE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolations(value):
    """[(name, op, arg)] of ${...} in a compose string ($$ is a literal $)."""
    if not isinstance(value, str):
        return []
    return [(m.group(1), m.group(2), m.group(3))
            for m in _INTERP.finditer(value.replace("$$", ""))]


def walk_strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(k)
            yield from walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v)


def load_compose(repo):
    import yaml  # Debian's python3-yaml
    with open(os.path.join(repo, "compose.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def is_estore_service(svc):
    """Built from this repository's Dockerfile (not a datastore image)."""
    return "build" in svc


def environment(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return env


def readme_section(repo, heading):
    """The text of the README section whose heading line contains
    `heading`, up to the next heading of the same or a higher level."""
    lines = read(repo, "README.md").splitlines()
    out, level = None, None
    for line in lines:
        m = re.match(r"^(#+)\s", line)
        if out is not None and m and len(m.group(1)) <= level:
            break
        if out is None and m and heading in line:
            out, level = [], len(m.group(1))
            continue
        if out is not None:
            out.append(line)
    return "\n".join(out) if out is not None else None


def documented_names(text):
    """Backquoted UPPER_CASE names in `text`. `A_HOST`/`_PORT` is the
    README's shorthand for A_HOST and A_PORT."""
    names = set()
    prev = None
    for m in re.finditer(r"`([A-Z][A-Z0-9_]*|_[A-Z0-9_]+)`(/?)", text):
        tok = m.group(1)
        if tok.startswith("_"):
            if prev and "_" in prev:
                names.add(prev.rsplit("_", 1)[0] + tok)
            continue
        if "_" in tok:
            names.add(tok)
        prev = tok if m.group(2) else None
    return names


class Stage:
    def __init__(self, base, name):
        self.base = base
        self.name = name
        self.instructions = []   # (KEYWORD, argument text)

    def args(self, keyword):
        return [a for k, a in self.instructions if k == keyword]


def dockerfile_stages(repo):
    """The Dockerfile as stages of (instruction, arguments), continuation
    lines joined and comments dropped."""
    logical, cur = [], ""
    for line in read(repo, "Dockerfile").splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        logical.append(cur + line)
        cur = ""
    if cur:
        logical.append(cur)
    stages = []
    for line in logical:
        kw, _, arg = line.strip().partition(" ")
        kw = kw.upper()
        arg = " ".join(arg.split())
        if kw == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$", arg, re.I)
            stages.append(Stage(m.group(1), m.group(2)))
        elif stages:
            stages[-1].instructions.append((kw, arg))
    return stages


def apt_installs(stage):
    """Packages of every `apt-get install` in a stage's RUN instructions."""
    pkgs = []
    for run in stage.args("RUN"):
        for cmd in re.split(r"&&|;|\|\|", run):
            words = cmd.split()
            if "apt-get" in words and "install" in words:
                rest = words[words.index("install") + 1:]
                pkgs += [w for w in rest if not w.startswith("-")]
    return pkgs
