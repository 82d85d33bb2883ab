"""GTM_WORKERS > 1: a master binds the listeners and supervises worker
processes that share them; a worker that dies is replaced while the others
keep serving; SIGTERM on the master drains every worker and exits 0; a worker
that refuses its settings stops the whole server with status 2."""
import os
import re
import signal
import socket
import threading
import unittest

from harness import Server, request

STARTED = re.compile(r"^worker (\d+) started$")


def worker_pids(srv):
    return [int(m.group(1)) for m in (STARTED.match(r.get("msg", "")) for r in srv.records()) if m]


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def start_workers(n, env=None):
    srv = Server(env=dict(env or {}, GTM_WORKERS=str(n)))
    srv.start(expect_ready=False)
    # the master announces every worker, and every worker both of its listeners
    def ready():
        recs = srv.records()
        listening = {}
        for r in recs:
            if "listening on" in r.get("msg", ""):
                listening[r.get("worker")] = listening.get(r.get("worker"), 0) + 1
        pids = worker_pids(srv)
        return len(pids) == n and all(listening.get(p) == 2 for p in pids)
    ok = srv.wait_for(lambda: ready() or srv.proc.poll() is not None, 20)
    assert ok and srv.proc.poll() is None, "workers did not start:\n" + "\n".join(srv.lines)
    return srv


def serving_pid(srv):
    r = request(srv, "GET", "/health/detailed", admin=True)
    assert r.status == 200, r.status
    return r.json()["pid"], r.json()["workers"]


class WorkersTest(unittest.TestCase):
    def test_workers_share_the_listeners(self):
        srv = start_workers(3)
        try:
            pids = worker_pids(srv)
            self.assertEqual(len(pids), 3, srv.lines)
            self.assertNotIn(srv.proc.pid, pids)
            seen = set()
            for _ in range(600):
                pid, workers = serving_pid(srv)
                self.assertEqual(workers, 3)
                seen.add(pid)
                if len(seen) == 3:
                    break
            self.assertEqual(seen, set(pids))
            self.assertEqual(request(srv, "GET", "/health").status, 200)
        finally:
            self.assertEqual(srv.stop(), 0)
        for pid in pids:
            self.assertFalse(alive(pid), pid)

    def test_a_killed_worker_is_replaced_while_the_others_serve(self):
        srv = start_workers(2)
        try:
            before = worker_pids(srv)
            counts = {"ok": 0, "failed": 0, "ok_after_kill": 0}
            killed = threading.Event()
            stop = threading.Event()

            def load():
                while not stop.is_set():
                    try:
                        ok = request(srv, "GET", "/health").status == 200
                    except (ConnectionError, EOFError, socket.timeout):
                        ok = False
                    counts["ok" if ok else "failed"] += 1
                    if ok and killed.is_set():
                        counts["ok_after_kill"] += 1

            threads = [threading.Thread(target=load) for _ in range(4)]
            for t in threads:
                t.start()
            try:
                self.assertTrue(srv.wait_for(lambda: counts["ok"] >= 50, 10))
                victim = before[0]
                os.kill(victim, signal.SIGKILL)
                killed.set()
                self.assertTrue(srv.wait_log(
                    lambda r: r.get("msg", "").startswith("worker %d killed by signal 9" % victim)))
                self.assertTrue(srv.wait_for(lambda: len(worker_pids(srv)) == 3, 10), srv.lines)
                replacement = worker_pids(srv)[2]
                self.assertNotIn(replacement, before)
                # the survivor kept answering; the few requests the victim held were all that failed
                self.assertTrue(srv.wait_for(lambda: counts["ok_after_kill"] >= 50, 10))
            finally:
                stop.set()
                for t in threads:
                    t.join(10)
            self.assertLessEqual(counts["failed"], len(threads), counts)
            self.assertFalse(alive(victim))
            self.assertTrue(alive(replacement))
            seen = set()
            for _ in range(600):
                seen.add(serving_pid(srv)[0])
                if replacement in seen:
                    break
            self.assertIn(replacement, seen)
        finally:
            self.assertEqual(srv.stop(), 0)
        self.assertTrue(any("master stopped" in r.get("msg", "") for r in srv.records()))
        for pid in worker_pids(srv):
            self.assertFalse(alive(pid), pid)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), 2)

    def test_a_worker_that_refuses_its_settings_stops_the_server(self):
        srv = Server(env={"GTM_WORKERS": "2", "GTM_PROMPT_DIR": "/nonexistent/prompts"})
        srv.start(expect_ready=False)
        self.assertEqual(srv.wait_exit(), 2, srv.lines)
        text = "\n".join(srv.lines)
        self.assertIn("GTM_PROMPT_DIR", text)
        self.assertIn("could not start", text)
        for pid in worker_pids(srv):
            self.assertFalse(alive(pid), pid)

    def test_the_master_reports_a_port_in_use(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            srv = Server(env={"GTM_WORKERS": "2", "GTM_LISTEN": "127.0.0.1:%d" % taken.getsockname()[1]})
            srv.start(expect_ready=False)
            self.assertEqual(srv.wait_exit(), 2)
            self.assertIn("GTM_LISTEN: cannot listen on", "\n".join(srv.lines))
            self.assertEqual(worker_pids(srv), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
