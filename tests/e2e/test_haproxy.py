"""Scale-out: two gtmd instances on one database behind HAProxy
(deploy/haproxy.cfg with its ports replaced). Under a load of authenticated
creates and reads, one instance is stopped gracefully (SIGTERM): no client
request fails, every acknowledged create reads back through the proxy, and
everything after the stop is answered by the other instance."""
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import pgutil
from harness import Server, free_port
from stackauth import FakeStack

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
THREADS = 4
BEFORE, AFTER = 150, 150   # operations to complete before the stop, and started after it
DEADLINE = 90              # seconds for the whole load


class HAProxy:
    def __init__(self, frontend, backends):
        with open(os.path.join(ROOT, "deploy", "haproxy.cfg"), encoding="utf-8") as f:
            cfg = f.read()
        subs = {"bind 127.0.0.1:8000": "bind 127.0.0.1:%d" % frontend,
                "server gtmd1 127.0.0.1:8001 ": "server gtmd1 127.0.0.1:%d " % backends[0],
                "server gtmd2 127.0.0.1:8002 ": "server gtmd2 127.0.0.1:%d " % backends[1]}
        for old, new in subs.items():
            assert cfg.count(old) == 1, "deploy/haproxy.cfg: expected %r once" % old
            cfg = cfg.replace(old, new)
        self.dir = tempfile.mkdtemp(prefix="gtmd-haproxy-")
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w", encoding="utf-8") as f:
            f.write(cfg)
        self.log = open(os.path.join(self.dir, "haproxy.log"), "w+b")
        self.port = frontend
        self.proc = None

    def check(self):
        r = subprocess.run(["haproxy", "-c", "-f", self.cfg], capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    def start(self):
        self.proc = subprocess.Popen(["haproxy", "-f", self.cfg, "-db"], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def company(name):
    return {"company_name": name, "company_url": "https://acme.example", "description": "Anvils.",
            "capabilities": ["Anvils: heavy"], "objections": [], "metadata": {}}


class HAProxyTest(unittest.TestCase):
    def setUp(self):
        if not shutil.which("haproxy"):
            raise AssertionError("haproxy is not installed (deploy/lib.sh TEST_PKGS; apt-get install haproxy)")
        pgutil.require(self)
        self.db = pgutil.MigratedDatabase().__enter__()
        self.addCleanup(self.db.__exit__, None, None, None)
        self.stack = FakeStack()
        self.addCleanup(self.stack.close)
        # the drain delay outlasts the health check's inter*fall (deploy/haproxy.cfg)
        env = dict(self.stack.env(), DATABASE_URL=self.db.url, GTM_DRAIN_DELAY="1.5")
        self.gtmd = []
        for _ in range(2):
            srv = Server(env=env, module_dir=os.environ["MODULE_DIR"])
            srv.start()
            self.addCleanup(srv.__exit__, None, None, None)
            self.gtmd.append(srv)
        self.proxy = HAProxy(free_port(), [s.port for s in self.gtmd])
        rc, out = self.proxy.check()
        self.assertEqual(rc, 0, "haproxy -c:\n" + out)
        self.proxy.start()
        self.addCleanup(self.proxy.stop)

    def call(self, conn, method, path, body=None, headers=None):
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, r.getheader("X-Served-By"), r.read()

    def wait_both_up(self):
        """Until HAProxy has sent a request to each instance (bounded)."""
        seen = set()
        deadline = time.monotonic() + 15
        while seen != {"gtmd1", "gtmd2"}:
            self.assertLess(time.monotonic(), deadline, "haproxy never used both servers:\n" + self.proxy.output())
            if self.proxy.proc.poll() is not None:
                self.fail("haproxy exited:\n" + self.proxy.output())
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=5)
                status, by, _ = self.call(c, "GET", "/health")
                c.close()
                if status == 200:
                    seen.add(by)
            except OSError:
                time.sleep(0.05)  # the proxy's listener is not up yet: nothing to wait on but time

    def test_graceful_stop_under_load(self):
        self.wait_both_up()
        lock = threading.Condition()
        ops = []           # (t_start, t_end, kind, status, served_by, req_id)
        failures = []
        created = []       # (auth, id)
        stop = threading.Event()

        def worker(n):
            auth = {"Authorization": "Bearer " + self.stack.token(str(uuid.uuid4()))}
            conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=20)
            i = 0
            while not stop.is_set():
                i += 1
                for kind in ("create", "read"):
                    rid = "t%d-%d-%s" % (n, i, kind)
                    h = dict(auth, **{"X-Request-Id": rid})
                    t0 = time.monotonic()
                    try:
                        if kind == "create":
                            status, by, body = self.call(conn, "POST", "/api/companies", company(rid), h)
                            ok = status == 201
                            if ok:
                                cid = json.loads(body)["id"]
                                with lock:
                                    created.append((auth, cid))
                        else:
                            status, by, body = self.call(conn, "GET", "/api/companies/" + cid, None, h)
                            ok = status == 200 and json.loads(body)["id"] == cid
                    except (OSError, http.client.HTTPException, ValueError) as e:
                        status, by, body, ok = None, None, repr(e).encode(), False
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=20)
                    t1 = time.monotonic()
                    with lock:
                        ops.append((t0, t1, kind, status, by, rid))
                        lock.notify_all()
                        if not ok:
                            failures.append((rid, status, by, body[:300]))
                    if not ok:
                        break  # no read of a create that failed
            conn.close()

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
        for t in threads:
            t.start()
        start = time.monotonic()

        def count(pred):
            with lock:   # re-entrant: wait_until calls it holding the lock
                return sum(1 for o in ops if pred(o))

        def wait_until(pred, what):
            with lock:
                done = lock.wait_for(lambda: pred() or len(failures) > 20,
                                     max(0.0, DEADLINE - (time.monotonic() - start)))
            if not done:
                stop.set()
                self.fail("timed out waiting for %s; failures so far: %r" % (what, failures[:5]))

        try:
            wait_until(lambda: count(lambda o: True) >= BEFORE, "%d operations before the stop" % BEFORE)
            victim, survivor = self.gtmd
            t_signal = time.monotonic()
            victim.proc.send_signal(signal.SIGTERM)
            code = victim.wait_exit(30)
            t_exit = time.monotonic()
            self.assertEqual(code, 0, "\n".join(victim.lines[-20:]))
            wait_until(lambda: count(lambda o: o[0] > t_exit) >= AFTER, "%d operations after the stop" % AFTER)
        finally:
            stop.set()
            for t in threads:
                t.join(30)

        if failures:
            odd = [l for l in self.proxy.output().splitlines() if " ---- " not in l]
            self.fail("client requests failed through haproxy: %r\nhaproxy's unusual lines:\n%s\n"
                      "stopped gtmd's last lines:\n%s" % (failures, "\n".join(odd[-40:]), "\n".join(victim.lines[-15:])))
        with lock:
            done = list(ops)
        before = [o for o in done if o[1] < t_signal]
        after = [o for o in done if o[0] > t_exit]
        self.assertEqual({o[4] for o in before}, {"gtmd1", "gtmd2"}, "round robin before the stop")
        self.assertGreaterEqual(len(after), AFTER)
        self.assertEqual({o[4] for o in after}, {"gtmd2"}, "after the stop only the survivor answers")
        # gtmd's own logs agree with the header: the survivor logged every one of them.
        # (a log line may reach the pipe just after its response reaches the client)
        want = {o[5] for o in after}
        survivor.wait_for(lambda: want <= {r.get("req_id") for r in survivor.records()}, 10)
        survivor_ids = {r.get("req_id") for r in survivor.records()}
        victim_ids = {r.get("req_id") for r in victim.records()}
        self.assertEqual([o[5] for o in after if o[5] not in survivor_ids], [])
        self.assertEqual([o[5] for o in after if o[5] in victim_ids], [])
        self.assertTrue(any(o[5] in victim_ids for o in before), "the stopped instance served nothing")

        # Every acknowledged create reads back through the proxy.
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=20)
        missing = []
        for auth, cid in created:
            status, by, body = self.call(conn, "GET", "/api/companies/" + cid, None, auth)
            if status != 200:
                missing.append((cid, status, body[:200]))
        conn.close()
        self.assertEqual(missing, [])
        self.assertEqual(int(self.db.sql("SELECT count(*) FROM companies")), len(created))


if __name__ == "__main__":
    unittest.main(verbosity=2)
