"""Outbound HTTP through the host table (libcurl multi on gtmd's loop),
against local servers: concurrency, timeouts, refusals, size caps, reuse."""
import socket
import threading
import time
import unittest
import urllib.parse

from harness import Server, request
from upstream import Upstream


def fetch_path(url, **kw):
    q = {"url": url}
    q.update({k: str(v) for k, v in kw.items()})
    return "/fx/fetch?" + urllib.parse.urlencode(q)


class OutboundTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = Upstream().__enter__()
        cls.srv = Server().start()

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0
        cls.up.__exit__(None, None, None)

    def test_simple_call_with_headers(self):
        r = request(self.srv, "GET", fetch_path(self.up.url("/ok?i=1")))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"error": 0, "status": 200, "body": "ok:1", "error_text": None,
                                    "x_echo": "fx_echo"})

    def test_many_concurrent_calls(self):
        n = 200
        results = [None] * n

        def one(i):
            results[i] = request(self.srv, "GET", fetch_path(self.up.url("/ok?i=%d" % i)))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, r in enumerate(results):
            self.assertIsNotNone(r, i)
            self.assertEqual(r.json()["body"], "ok:%d" % i)

    def test_timeout(self):
        t0 = time.monotonic()
        r = request(self.srv, "GET", fetch_path(self.up.url("/slow?ms=3000"), timeout_ms=300))
        took = time.monotonic() - t0
        self.assertEqual(r.json()["error"], -110)
        self.assertGreaterEqual(took, 0.25)
        self.assertLess(took, 2.5)

    def test_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        r = request(self.srv, "GET", fetch_path("http://127.0.0.1:%d/" % port))
        self.assertEqual(r.json()["error"], -111)

    def test_oversized_answer(self):
        r = request(self.srv, "GET", fetch_path(self.up.url("/big?n=2000000"), max=100000))
        self.assertEqual(r.json()["error"], -27)
        r = request(self.srv, "GET", fetch_path(self.up.url("/big?n=2000000&chunked=1"), max=100000))
        self.assertEqual(r.json()["error"], -27)
        r = request(self.srv, "GET", fetch_path(self.up.url("/big?n=50000"), max=100000))
        self.assertEqual((r.json()["error"], len(r.json()["body"])), (0, 50000))

    def test_loop_is_not_blocked_by_a_slow_call(self):
        done = {}

        def slow():
            done["r"] = request(self.srv, "GET", fetch_path(self.up.url("/slow?ms=1500")))

        t = threading.Thread(target=slow)
        before = len(self.up.requests)
        t.start()
        self.assertTrue(self.up.wait_requests(before + 1))
        t0 = time.monotonic()
        self.assertEqual(request(self.srv, "GET", "/health").status, 200)
        self.assertLess(time.monotonic() - t0, 0.5)
        t.join(10)
        self.assertEqual(done["r"].json()["status"], 200)

    def test_connection_reuse(self):
        with Upstream() as up:
            for i in range(20):
                self.assertEqual(request(self.srv, "GET", fetch_path(up.url("/ok?i=%d" % i))).json()["status"], 200)
            self.assertEqual(up.connections, 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
