"""Postgres goes away under load and comes back: no crash, no hung request,
only 200 or 503 (+Retry-After) meanwhile, and service back within 5 s of the
database's return.  The database is a cluster of this test's own, so stopping
it disturbs no other test."""
import os
import subprocess
import threading
import time
import unittest
import uuid

import pgutil
from harness import Server, free_port, request
from stackauth import FakeStack
from test_companies import overview
from test_migrate import migrate


def ctl(*args):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("%s failed: %s" % (" ".join(args), r.stderr))


class DatabaseRestartTest(unittest.TestCase):
    def setUp(self):
        pgutil.require(self)
        self.version = os.environ.get("PGVERSION", "15")
        self.cluster = "gtm" + uuid.uuid4().hex[:8]
        self.port = free_port()
        ctl("pg_createcluster", self.version, self.cluster, "-p", str(self.port), "--start", "--",
            "--auth-host=trust", "--auth-local=trust")
        self.url = "postgresql://postgres@127.0.0.1:%d/postgres" % self.port

    def tearDown(self):
        subprocess.run(["pg_dropcluster", "--stop", self.version, self.cluster], capture_output=True, timeout=120)

    def test_restart_under_load(self):
        self.assertEqual(migrate(self.url).returncode, 0)
        stack = FakeStack()
        self.addCleanup(stack.close)
        env = dict(stack.env(), DATABASE_URL=self.url)
        srv = Server(env=env, module_dir=os.environ["MODULE_DIR"]).start()
        self.addCleanup(srv.__exit__, None, None, None)   # also when an assertion fails
        auth = {"Authorization": "Bearer " + stack.token(str(uuid.uuid4()))}
        cid = request(srv, "POST", "/api/companies", body=overview(), headers=auth).json()["id"]

        results = []            # (time sent, time answered, status, retry-after)
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        def client():
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = request(srv, "GET", "/api/companies/" + cid, headers=auth)
                except Exception as e:       # a hang shows up as the socket timeout
                    errors.append(repr(e))
                    return
                with lock:
                    results.append((t0, time.monotonic(), r.status, r.header("retry-after"), r.body))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)   # load before the failure; nothing to await, the load just runs
            ctl("pg_ctlcluster", self.version, self.cluster, "stop", "-m", "fast")
            down_at = time.monotonic()
            time.sleep(2.0)   # load while the database is down
            start_at = time.monotonic()
            ctl("pg_ctlcluster", self.version, self.cluster, "start")
            up_at = time.monotonic()
            deadline = up_at + 10
            recovered_at = None
            while time.monotonic() < deadline and recovered_at is None:
                with lock:
                    ok = [a for (s, a, st, _, _) in results if s >= up_at and st == 200]
                if ok:
                    recovered_at = min(ok)
                else:
                    time.sleep(0.05)
            time.sleep(1.0)   # load after recovery
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(errors, [])
        self.assertIsNone(srv.proc.poll(), "gtmd died")
        statuses = {st for (_, _, st, _, _) in results}
        self.assertTrue(statuses <= {200, 503}, statuses)
        during = [(st, ra, body) for (s, a, st, ra, body) in results if down_at + 0.5 < s and a < start_at]
        self.assertTrue(during, "no request was made while the database was down")
        self.assertTrue(all(st == 503 for st, _, _ in during), {st for st, _, _ in during})
        self.assertTrue(all(ra and int(ra) > 0 for _, ra, _ in during))
        self.assertTrue(all(b.startswith(b'{"detail":') for _, _, b in during))
        slowest = max(a - s for (s, a, _, _, _) in results)
        self.assertLess(slowest, 5.0, "a request hung for %.1f s" % slowest)
        self.assertIsNotNone(recovered_at, "no 200 within 10 s of the database's return")
        self.assertLess(recovered_at - up_at, 5.0)
        after = [st for (s, a, st, _, _) in results if s > recovered_at + 0.5]
        self.assertTrue(after and all(st == 200 for st in after))
        print("\nrequests: %d; while down: %d (all 503); recovered %.2f s after the database's return; "
              "slowest answer %.3f s" % (len(results), len(during), recovered_at - up_at, slowest))
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
