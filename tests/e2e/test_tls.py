"""HTTPS on mbedTLS: the same routes on both listeners, TLS 1.2 with AEAD
suites and ALPN http/1.1 only, keep-alive and pipelining over TLS, and start-up
errors that name the bad file."""
import os
import socket
import ssl
import tempfile
import unittest

from harness import Conn, Server, raw_request, request

CERTS = os.environ["TLS_CERT_DIR"]
EC = (os.path.join(CERTS, "ec-chain.pem"), os.path.join(CERTS, "ec-key.pem"))
RSA = (os.path.join(CERTS, "rsa-chain.pem"), os.path.join(CERTS, "rsa-key.pem"))


def client_ctx(**kw):
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca-cert.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(tls=EC).start()

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def test_same_routes_on_both_listeners(self):
        ctx = client_ctx()
        for path, status in (("/health", 200), ("/nope", 404), ("/fx/items/bad", 422)):
            a = request(self.srv, "GET", path)
            b = request(self.srv, "GET", path, tls_context=ctx)
            self.assertEqual(a.status, status)
            self.assertEqual(b.status, status)
            self.assertEqual(a.body, b.body)

    def test_negotiated_parameters(self):
        s = self.srv.connect(client_ctx())
        self.assertEqual(s.version(), "TLSv1.2")
        self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
        name, _, bits = s.cipher()
        self.assertTrue("GCM" in name or "CHACHA20" in name, name)
        s.close()

    def test_keep_alive_and_pipelining_over_tls(self):
        c = Conn(self.srv.connect(client_ctx()))
        c.send(b"".join(raw_request("GET", "/health", headers={"X-Request-Id": "t%d" % i}) for i in range(100)))
        for i in range(100):
            r = c.read_response()
            self.assertEqual(r.header("x-request-id"), "t%d" % i)
        big = {"blob": "b" * 200000}
        c.send(raw_request("POST", "/fx/items", body=big))
        r = c.read_response()
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json()["received"], big)
        c.close()

    def test_tls11_refused(self):
        ctx = client_ctx()
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        with self.assertRaises((ssl.SSLError, ConnectionResetError, OSError)):
            self.srv.connect(ctx)

    def test_cbc_suites_refused(self):
        ctx = client_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256")
        with self.assertRaises((ssl.SSLError, ConnectionResetError, OSError)):
            self.srv.connect(ctx)

    def test_garbage_on_tls_port_then_still_serving(self):
        s = socket.create_connection(("127.0.0.1", self.srv.tls_port), 5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(3000))
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        # a handshake that stops midway
        s = socket.create_connection(("127.0.0.1", self.srv.tls_port), 5)
        s.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
        s.close()
        r = request(self.srv, "GET", "/health", tls_context=client_ctx())
        self.assertEqual(r.status, 200)

    def test_rsa_certificate(self):
        with Server(tls=RSA) as srv:
            s = srv.connect(client_ctx())
            self.assertIn("RSA", s.cipher()[0])
            c = Conn(s)
            c.send(raw_request("GET", "/health"))
            self.assertEqual(c.read_response().body, b'{"status":"ok"}')
            c.close()


class TlsConfigErrorsTest(unittest.TestCase):
    def start_fails(self, cert, key, needle):
        srv = Server(tls=(cert, key))
        srv.start(expect_ready=False)
        self.assertEqual(srv.wait_exit(), 2)
        out = "\n".join(srv.lines)
        self.assertIn(needle, out)
        return out

    def test_missing_cert_names_file(self):
        self.start_fails("/nonexistent/cert.pem", EC[1], "/nonexistent/cert.pem")

    def test_garbage_cert_names_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
            f.write("not a certificate\n")
            f.flush()
            self.start_fails(f.name, EC[1], f.name)

    def test_mismatched_key_names_both(self):
        out = self.start_fails(EC[0], RSA[1], EC[0])
        self.assertIn(RSA[1], out)

    def test_tls_listen_without_cert_names_variable(self):
        srv = Server(env={"GTM_TLS_LISTEN": "127.0.0.1:1"})
        srv.start(expect_ready=False)
        self.assertEqual(srv.wait_exit(), 2)
        self.assertIn("GTM_TLS_CERT", "\n".join(srv.lines))


if __name__ == "__main__":
    unittest.main(verbosity=2)
