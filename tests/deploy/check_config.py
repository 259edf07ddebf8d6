#!/usr/bin/python3
"""Every configuration variable is wired and documented, both ways.

The variables come from the sources: each cfg_var table and getenv call
under rpc/, services/ and edge-proxy/, and the ESTORE_* knobs of
scripts/stack.sh. Then:

  - every variable a program reads is listed in .env.example and
    documented in README.md's "Configuration" section;
  - in compose.yaml, every estore container sets every variable its own
    program reads (or the image sets it), and nothing its program ignores;
    a ${VAR:-default} there carries the program's own default;
  - the other way: every variable .env.example sets, the README's
    configuration documents, or compose.yaml interpolates is read by a
    program -- or by a datastore container of compose.yaml
    (RABBITMQ_PASSWORD feeds the broker, not our code);
  - the defaults .env.example shows are the programs' defaults.

Each problem is printed as one line naming the variable and the file to
fix; the exit status is 1 when there is any.

  check_config.py --repo ROOT
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sources  # noqa: E402

# Read by the code but not a setting to put in .env or compose.yaml:
# it names the .env file itself (documented in the README's Configuration).
NOT_IN_ENV_FILES = {"ESTORE_ENV_FILE"}


def stack_vars(repo):
    """ESTORE_* variables scripts/stack.sh reads (./estore up's knobs)."""
    text = sources.read(repo, os.path.join("scripts", "stack.sh"))
    text = re.sub(r"(?m)^\s*#.*$", "", text)
    return set(re.findall(r"\$\{?(ESTORE_[A-Z0-9_]+)", text))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    repo = os.path.abspath(ap.parse_args().repo)

    problems = []

    def bad(msg):
        problems.append(msg)

    code = sources.code_vars(repo)
    common = sources.common_vars(repo)
    progs = sources.programs(repo)
    example = sources.env_example(repo)
    compose = sources.load_compose(repo)
    services = compose.get("services") or {}
    config_text = sources.readme_section(repo, "Configuration")
    if config_text is None:
        bad("README.md: no \"Configuration\" section")
        config_text = ""
    documented = sources.documented_names(config_text)
    readme_all = sources.read(repo, "README.md")
    scripts = stack_vars(repo)

    if len(code) < 10:
        bad("found only %d variables in the sources: is the cfg_var "
            "parser still right?" % len(code))

    # Variables compose.yaml interpolates, and by which containers.
    interp_by = {}
    for name, svc in services.items():
        for s in sources.walk_strings(svc):
            for var, _, _ in sources.interpolations(s):
                interp_by.setdefault(var, set()).add(name)
    for key in ("volumes", "secrets", "networks"):
        for s in sources.walk_strings(compose.get(key) or {}):
            for var, _, _ in sources.interpolations(s):
                interp_by.setdefault(var, set()).add(key)
    datastores = {n for n, s in services.items()
                  if not sources.is_estore_service(s)}
    for_datastores = {v for v, users in interp_by.items() if users & datastores}

    # The image's own ENV (e.g. ACCOUNT_MIGRATIONS_DIR).
    image_env = set()
    stages = sources.dockerfile_stages(repo)
    if stages:
        for env in stages[-1].args("ENV"):
            image_env |= set(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", env))

    # ---- forward: what the code reads ---------------------------------------
    for name in sorted(code):
        v = code[name]
        where = ", ".join(sorted(v.where))
        # The README promises .env.example lists every variable; compose
        # is checked per container below.
        if name not in NOT_IN_ENV_FILES and name not in example:
            bad("%s (read by %s): not listed in .env.example" % (name, where))
        if name not in documented:
            bad("%s (read by %s): not documented in README.md's "
                "Configuration section" % (name, where))
        shown = example.get(name)
        if shown and v.default is not None and shown != v.default:
            bad("%s: .env.example shows %r, the code's default is %r (%s)"
                % (name, shown, v.default, where))
    for name in sorted(scripts):
        if not re.search(r"\b%s\b" % name, readme_all):
            bad("%s (read by scripts/stack.sh): not documented in README.md"
                % name)

    # ---- compose: each estore container, against its own program ----------
    run_by_compose = set()
    for sname, svc in sorted(services.items()):
        if not sources.is_estore_service(svc):
            continue
        cmd = svc.get("command")
        prog = cmd[0] if isinstance(cmd, list) and cmd else \
            (cmd.split()[0] if isinstance(cmd, str) and cmd else None)
        if prog not in progs:
            bad("compose.yaml: service %s runs %r, not a program of the "
                "build (%s)" % (sname, prog, ", ".join(sorted(progs))))
            continue
        run_by_compose.add(prog)
        reads = sources.program_vars(repo, progs[prog], common)
        env = sources.environment(svc)
        for var in sorted(reads):
            if var in NOT_IN_ENV_FILES or var in env or var in image_env:
                continue
            bad("compose.yaml: service %s: %s (read by %s) is not set" %
                (sname, var, prog))
        for var in sorted(env):
            if var not in reads:
                bad("compose.yaml: service %s sets %s, which %s does not "
                    "read" % (sname, var, prog))
                continue
            v = reads[var]
            for ivar, op, arg in sources.interpolations(env[var]):
                if ivar != var:
                    continue
                if op in ("-", ":-") and v.default is not None \
                        and arg != v.default:
                    bad("compose.yaml: service %s: %s defaults to %r, %s's "
                        "default is %r" % (sname, var, arg, prog, v.default))
                if op in ("-", ":-") and v.secret:
                    bad("compose.yaml: service %s: secret %s has a default; "
                        "use ${%s:?...}" % (sname, var, var))
    # Every service program (the probe is a tool, not a service) runs.
    for prog in sorted(progs):
        if prog != "estore-health" and prog not in run_by_compose:
            bad("compose.yaml: no service runs %s (built in %s)"
                % (prog, progs[prog]))

    # ---- reverse: nothing set or documented that nothing reads -------------
    consumed = set(code) | for_datastores
    for name in sorted(example):
        if name not in consumed:
            bad("%s: set in .env.example, but no program (nor a datastore in "
                "compose.yaml) reads it" % name)
    for name in sorted(documented):
        if name not in consumed and name not in scripts:
            bad("%s: documented in README.md's Configuration section, but "
                "nothing reads it" % name)
        if name in for_datastores and name not in code \
                and name not in example:
            bad("%s: compose.yaml needs it from .env; list it in "
                ".env.example" % name)
    for name in sorted(interp_by):
        if name not in consumed:
            bad("%s: compose.yaml interpolates it, but no program reads it"
                % name)
        elif name not in documented:
            bad("%s: compose.yaml takes it from .env; document it in "
                "README.md's Configuration section" % name)

    for p in problems:
        print("config-coverage: " + p)
    print("config-coverage: %d variables read by the code, %d in "
          ".env.example, %d interpolated by compose.yaml, %d documented; "
          "%d problem(s)" % (len(code), len(example), len(interp_by),
                             len(documented), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
