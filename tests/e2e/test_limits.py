"""Limits and timers: 431, 413, 408, idle keep-alive close, the connection cap."""
import select
import time
import unittest

from harness import Conn, Server, raw_request, request

LIMIT_ENV = {
    "GTM_MAX_BODY": "4096",
    "GTM_HEADER_TIMEOUT": "0.6",
    "GTM_BODY_TIMEOUT": "0.6",
    "GTM_IDLE_TIMEOUT": "0.8",
    "GTM_MAX_CONNECTIONS": "8",
}


class LimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(env=LIMIT_ENV).start()

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def conn(self):
        return Conn(self.srv.connect())

    def test_headers_over_16k_are_431(self):
        c = self.conn()
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 431)
        self.assertEqual(r.json(), {"detail": "Request header fields too large"})
        self.assertTrue(c.at_eof())

    def test_headers_just_under_16k_pass(self):
        c = self.conn()
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 16000 + b"\r\n\r\n")
        self.assertEqual(c.read_response().status, 200)
        c.close()

    def test_too_many_headers_are_431(self):
        c = self.conn()
        c.send(b"GET /health HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n")
        self.assertEqual(c.read_response().status, 431)

    def test_body_over_max_is_413_by_length(self):
        c = self.conn()
        c.send(b"POST /fx/items HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json(), {"detail": "Request body too large"})
        self.assertTrue(c.at_eof())

    def test_body_over_max_is_413_chunked(self):
        c = self.conn()
        c.send(b"POST /fx/items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            c.send(b"400\r\n" + b"z" * 1024 + b"\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 413)

    def test_expect_with_too_large_body_gets_413_not_100(self):
        c = self.conn()
        c.send(b"POST /fx/items HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\nExpect: 100-continue\r\n\r\n")
        self.assertEqual(c.read_response().status, 413)

    def test_body_at_max_is_accepted(self):
        body = b'{"a":"' + b"q" * (4096 - 8) + b'"}'
        self.assertEqual(len(body), 4096)
        r = request(self.srv, "POST", "/fx/items", body=body, headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 201)

    def test_slow_headers_are_408(self):
        c = self.conn()
        t0 = time.monotonic()
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")   # never finished
        r = c.read_response()
        took = time.monotonic() - t0
        self.assertEqual(r.status, 408)
        self.assertEqual(r.json(), {"detail": "Request timeout"})
        self.assertGreaterEqual(took, 0.5)
        self.assertLess(took, 5)
        self.assertTrue(c.at_eof())

    def test_slowloris_trickle_still_408(self):
        c = self.conn()
        t0 = time.monotonic()
        c.send(b"GET /health HTTP/1.1\r\n")
        # one byte every 0.1 s must not push the deadline back
        while time.monotonic() - t0 < 4:
            readable, _, _ = select.select([c.sock], [], [], 0.1)
            if readable:
                break
            c.send(b"X")
        r = c.read_response()
        self.assertEqual(r.status, 408)
        self.assertLess(time.monotonic() - t0, 3)

    def test_slow_body_is_408(self):
        c = self.conn()
        c.send(b"POST /fx/items HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":")
        r = c.read_response()
        self.assertEqual(r.status, 408)

    def test_idle_keep_alive_is_closed(self):
        c = self.conn()
        c.send(raw_request("GET", "/health"))
        self.assertEqual(c.read_response().status, 200)
        t0 = time.monotonic()
        self.assertTrue(c.at_eof(timeout=5))
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 0.6)
        self.assertLess(took, 4)

    def test_connection_cap_refuses_politely(self):
        # a server of its own: other tests' connections may still be lingering here
        with Server(env=LIMIT_ENV) as srv:
            self.check_cap(srv)

    def check_cap(self, srv):
        held = [Conn(srv.connect()) for _ in range(8)]
        for c in held:     # make sure each is accepted and counted
            c.send(raw_request("GET", "/health"))
            self.assertEqual(c.read_response().status, 200)
        extra = Conn(srv.connect())
        r = extra.read_response()
        self.assertEqual(r.status, 503)
        self.assertEqual(r.header("retry-after"), "1")
        self.assertIn("connection limit", r.json()["detail"])
        extra.close()
        for c in held:
            c.close()
        # once they are gone, service resumes
        deadline = time.monotonic() + 5
        while True:
            r = request(srv, "GET", "/health")
            if r.status == 200 or time.monotonic() > deadline:
                break
        self.assertEqual(r.status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
