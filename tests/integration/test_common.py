"""services/common against real PostgreSQL and Redis: migrations raced by
eight threads (each file applied once, failures roll back), SQLSTATE
mapping, pool bounds, and recovery when the servers stop and come back.

The checks themselves are C (common_check.c, linked with estore_svc); this
file starts the datastores with the fixture and stops/restarts them when
the program pauses and asks ("PAUSE stop-postgres" ...).

    /usr/bin/python3 tests/integration/test_common.py --common-check PATH [fixture options]
"""
import os
import select
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402



CHECK_BINARY = fixture.take_option("--common-check") or os.path.join(
    os.environ.get("ESTORE_BUILD_DIR", "build"), "tests", "integration", "common_check")


class CommonLibraryTest(unittest.TestCase):
    TIMEOUT = 120.0

    @classmethod
    def setUpClass(cls):
        if not os.access(CHECK_BINARY, os.X_OK):
            raise RuntimeError("not built: " + CHECK_BINARY)

    def test_pools_and_migrations(self):
        with fixture.Stack() as st:
            scratch = os.path.join(st.dir, "common")
            os.mkdir(scratch)
            actions = {
                "stop-postgres": lambda: st.stop_postgres("fast"),
                "start-postgres": st.start_postgres,
                "restart-postgres": lambda: (st.stop_postgres("immediate"), st.start_postgres()),
                "stop-redis": lambda: st.stop_redis(save=False),
                "start-redis": st.start_redis,
            }
            proc = subprocess.Popen([CHECK_BINARY, str(st.db_port), str(st.redis_port), scratch],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1)
            transcript, done = [], set()
            deadline = time.monotonic() + self.TIMEOUT
            try:
                while True:
                    left = deadline - time.monotonic()
                    self.assertGreater(left, 0, "common_check timed out:\n" + "".join(transcript))
                    ready, _, _ = select.select([proc.stdout], [], [], left)
                    if not ready:
                        continue
                    line = proc.stdout.readline()
                    if not line:
                        break
                    transcript.append(line)
                    if line.startswith("PAUSE "):
                        what = line.split()[1]
                        self.assertIn(what, actions, line)
                        actions[what]()
                        proc.stdin.write("go\n")
                        proc.stdin.flush()
                    elif line.startswith("ok "):
                        done.add(line.split()[1])
                rc = proc.wait(timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdin.close()
                proc.stdout.close()
            out = "".join(transcript)
            if rc != 0:
                st.failed = True
            self.assertEqual(rc, 0, out)
            self.assertEqual(done, {"migrate_race", "pg_errors", "pg_recovery", "redis"}, out)


if __name__ == "__main__":
    fixture.main()
