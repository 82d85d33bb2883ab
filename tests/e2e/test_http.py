"""HTTP/1.1 on the real binary: keep-alive, pipelining, chunked bodies, HEAD,
Expect: 100-continue, routing errors, request ids and the access log."""
import json
import socket
import unittest

from harness import Conn, Server, raw_request, request


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server().start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        assert code == 0, "gtmd exited %r" % code

    def conn(self):
        return Conn(self.srv.connect())

    def test_health_exact(self):
        r = request(self.srv, "GET", "/health")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b'{"status":"ok"}')
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertRegex(r.header("x-request-id"), r"^[0-9a-f]{32}$")

    def test_client_request_id_is_kept_and_bad_one_replaced(self):
        r = request(self.srv, "GET", "/health", headers={"X-Request-Id": "abc-123.XYZ"})
        self.assertEqual(r.header("x-request-id"), "abc-123.XYZ")
        r = request(self.srv, "GET", "/health", headers={"X-Request-Id": "bad id with spaces"})
        self.assertRegex(r.header("x-request-id"), r"^[0-9a-f]{32}$")
        self.assertTrue(self.srv.wait_log(lambda rec: rec.get("req_id") == "abc-123.XYZ" and
                                          rec.get("status") == 200))

    def test_access_log_line(self):
        request(self.srv, "GET", "/health?probe=1", headers={"X-Request-Id": "log-probe-1"})
        self.assertTrue(self.srv.wait_log(lambda rec: rec.get("req_id") == "log-probe-1"))
        rec = [r for r in self.srv.records() if r.get("req_id") == "log-probe-1"][0]
        for key in ("time", "req_id", "method", "path", "status", "bytes", "duration_ms"):
            self.assertIn(key, rec)
        self.assertEqual(rec["method"], "GET")
        self.assertEqual(rec["path"], "/health")
        self.assertEqual(rec["bytes"], 15)
        self.assertRegex(rec["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_keep_alive_many_requests_one_connection(self):
        c = self.conn()
        for i in range(50):
            c.send(raw_request("GET", "/health", headers={"X-Request-Id": "ka-%d" % i}))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("x-request-id"), "ka-%d" % i)
            self.assertIsNone(r.header("connection"))
        c.close()

    def test_pipelined_requests_answered_in_order(self):
        c = self.conn()
        n = 5000
        batch = b"".join(raw_request("GET", "/health" if i % 3 else "/nope", headers={"X-Request-Id": "p-%d" % i})
                         for i in range(n))
        c.send(batch)
        for i in range(n):
            r = c.read_response()
            self.assertEqual(r.header("x-request-id"), "p-%d" % i)
            self.assertEqual(r.status, 200 if i % 3 else 404)
        c.close()

    def test_pipelined_mixed_with_bodies(self):
        c = self.conn()
        reqs = []
        for i in range(20):
            body = {"n": i, "pad": "x" * (i * 97)}
            reqs.append(raw_request("POST", "/fx/items", body=body, headers={"X-Request-Id": "b-%d" % i}))
        c.send(b"".join(reqs))
        for i in range(20):
            r = c.read_response()
            self.assertEqual(r.status, 201)
            self.assertEqual(r.json()["received"]["n"], i)
        c.close()

    def test_chunked_request_body(self):
        c = self.conn()
        body = json.dumps({"chunked": True, "text": "y" * 5000}).encode()
        chunks = [body[i:i + 777] for i in range(0, len(body), 777)]
        wire = b"".join(b"%x\r\n%s\r\n" % (len(ch), ch) for ch in chunks) + b"0\r\n\r\n"
        head = (b"POST /fx/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        c.send(head)
        for i in range(0, len(wire), 1000):   # dribbled across many reads
            c.send(wire[i:i + 1000])
        r = c.read_response()
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json()["received"]["text"], "y" * 5000)
        self.assertEqual(r.json()["bytes"], len(body))
        c.send(raw_request("GET", "/health"))
        self.assertEqual(c.read_response().status, 200)
        c.close()

    def test_head(self):
        c = self.conn()
        c.send(raw_request("HEAD", "/health"))
        r = c.read_response(head=True)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-length"), "15")
        # no body bytes: the next response starts right away
        c.send(raw_request("GET", "/health"))
        r2 = c.read_response()
        self.assertEqual(r2.body, b'{"status":"ok"}')
        c.close()

    def test_expect_100_continue(self):
        c = self.conn()
        body = b'{"expect": 1}'
        c.send(b"POST /fx/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
        r = c.read_response()
        self.assertEqual(r.status, 100)
        c.send(body)
        r = c.read_response()
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json()["received"], {"expect": 1})
        c.close()

    def test_not_found_and_method_not_allowed(self):
        r = request(self.srv, "GET", "/no/such/path")
        self.assertEqual((r.status, r.json()), (404, {"detail": "Not Found"}))
        r = request(self.srv, "POST", "/health", body="{}")
        self.assertEqual((r.status, r.json()), (405, {"detail": "Method Not Allowed"}))
        self.assertEqual(r.header("allow"), "GET, HEAD")
        r = request(self.srv, "PATCH", "/fx/items/0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e40")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD, DELETE")

    def test_trailing_slash_redirects(self):
        r = request(self.srv, "GET", "/fx/items/0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e40/?skip=2",
                    headers={"Host": "example.test:8000"})
        self.assertEqual(r.status, 307)
        self.assertEqual(r.header("location"),
                         "http://example.test:8000/fx/items/0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e40?skip=2")
        r = request(self.srv, "GET", "/nothing-here/")
        self.assertEqual(r.status, 404)

    def test_delete_204_has_no_body(self):
        c = self.conn()
        c.send(raw_request("DELETE", "/fx/items/0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e40"))
        r = c.read_response()
        self.assertEqual(r.status, 204)
        self.assertIsNone(r.header("content-length"))
        c.send(raw_request("GET", "/health"))
        self.assertEqual(c.read_response().status, 200)
        c.close()

    def test_garbage_is_400_json_and_close(self):
        c = self.conn()
        c.send(b"THIS IS NOT HTTP\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 400)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertIn("detail", r.json())
        self.assertEqual(r.header("connection"), "close")
        self.assertTrue(c.at_eof())
        c.close()

    def test_bad_header_syntax_is_400(self):
        c = self.conn()
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonInThisLine\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 400)
        self.assertTrue(c.at_eof())

    def test_http10_closes_unless_keep_alive(self):
        c = self.conn()
        c.send(b"GET /health HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(c.at_eof())
        c = self.conn()
        c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.header("connection"), "keep-alive")
        c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertEqual(c.read_response().status, 200)
        c.close()

    def test_connection_close_honoured(self):
        c = self.conn()
        c.send(raw_request("GET", "/health", close=True))
        r = c.read_response()
        self.assertEqual(r.header("connection"), "close")
        self.assertTrue(c.at_eof())

    def test_half_close_still_answered(self):
        s = self.srv.connect()
        c = Conn(s)
        c.send(raw_request("GET", "/health") + raw_request("GET", "/nope"))
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(c.read_response().status, 200)
        self.assertEqual(c.read_response().status, 404)
        self.assertTrue(c.at_eof())
        c.close()

    def test_header_injection_is_never_sent(self):
        r = request(self.srv, "GET", "/fx/bad-header")
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("x-injected"))
        self.assertIsNone(r.header("set-cookie"))

    def test_second_answer_is_ignored_and_logged(self):
        c = self.conn()
        c.send(raw_request("GET", "/fx/twice", headers={"X-Request-Id": "twice-1"}))
        r = c.read_response()
        self.assertEqual(r.json(), {"answer": 1})
        c.send(raw_request("GET", "/health"))
        self.assertEqual(c.read_response().status, 200)
        c.close()
        self.assertTrue(self.srv.wait_log(lambda rec: rec.get("req_id") == "twice-1" and
                                          "second answer" in rec.get("msg", "")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
