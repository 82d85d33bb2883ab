"""The command line, start-up errors, and graceful shutdown."""
import os
import signal
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse

from harness import GTMD, Conn, Server, abi_version, raw_request, request
from upstream import Upstream


class CommandLineTest(unittest.TestCase):
    def run_gtmd(self, *args, env=None):
        e = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        e.update(env or {})
        return subprocess.run([GTMD] + list(args), env=e, capture_output=True, text=True, timeout=30)

    def test_version_and_help(self):
        r = self.run_gtmd("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^gtmd \d+\.\d+\.\d+ \(module ABI %d\.%d, " % abi_version())
        r = self.run_gtmd("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("gtmd [serve]", r.stdout)

    def test_unknown_command(self):
        r = self.run_gtmd("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'frobnicate'", r.stderr)

    def test_bad_settings_exit_2_naming_the_variable(self):
        for var, value in (("GTM_MAX_BODY", "lots"), ("GTM_LISTEN", "nowhere"), ("GTM_WORKERS", "-1"),
                           ("GTM_IDLE_TIMEOUT", "soon"), ("CORS_ORIGINS", "not an origin"),
                           ("GTM_DRAIN_DELAY", "-1"), ("GTM_DRAIN_DELAY", "301")):
            r = self.run_gtmd("serve", env={var: value})
            self.assertEqual(r.returncode, 2, var)
            lines = r.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertIn(var, lines[0])

    def test_port_in_use(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            r = self.run_gtmd("serve", env={"GTM_LISTEN": "127.0.0.1:%d" % port,
                                            "GTM_MODULE_DIR": os.environ["FX_MODULE_DIR"]})
            self.assertEqual(r.returncode, 2)
            self.assertIn("GTM_LISTEN", r.stderr)
            self.assertIn("address already in use", r.stderr)
        finally:
            s.close()


class ShutdownTest(unittest.TestCase):
    def fetch(self, srv, url, out):
        out["r"] = request(srv, "GET", "/fx/fetch?" + urllib.parse.urlencode({"url": url}))

    def test_sigterm_finishes_in_flight_then_exits_0(self):
        with Upstream() as up:
            srv = Server(env={"GTM_SHUTDOWN_TIMEOUT": "10"}).start()
            idle = Conn(srv.connect())
            idle.send(raw_request("GET", "/health"))
            self.assertEqual(idle.read_response().status, 200)
            out = {}
            t = threading.Thread(target=self.fetch, args=(srv, up.url("/slow?ms=800"), out))
            t.start()
            self.assertTrue(up.wait_requests(1))       # the request is in flight
            srv.proc.send_signal(signal.SIGTERM)
            self.assertTrue(srv.wait_log(lambda rec: "shutting down" in rec.get("msg", "")))
            self.assertTrue(idle.at_eof(timeout=5))    # idle keep-alive closed at once
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", srv.port), 2)
            t.join(10)
            self.assertEqual(out["r"].status, 200)
            self.assertEqual(out["r"].json()["body"], "ok:")
            self.assertEqual(out["r"].header("connection"), "close")
            self.assertEqual(srv.wait_exit(), 0)

    def test_shutdown_timeout_bounds_the_wait(self):
        with Upstream() as up:
            srv = Server(env={"GTM_SHUTDOWN_TIMEOUT": "0.5"}).start()
            out = {}
            t = threading.Thread(target=lambda: out.setdefault("e", self._fetch_expect_close(srv, up)))
            t.start()
            self.assertTrue(up.wait_requests(1))
            t0 = time.monotonic()
            srv.proc.send_signal(signal.SIGINT)
            self.assertEqual(srv.wait_exit(), 0)
            took = time.monotonic() - t0
            self.assertGreaterEqual(took, 0.4)
            self.assertLess(took, 5)
            t.join(10)
            self.assertTrue(out["e"])

    def test_drain_delay_fails_ready_then_stops(self):
        with Server(env={"GTM_DRAIN_DELAY": "0.6"}) as srv:
            before = request(srv, "GET", "/ready")
            self.assertEqual(before.status, 503)
            self.assertIn(b"DATABASE_URL", before.body)
            t0 = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            self.assertTrue(srv.wait_log(lambda rec: "/ready answers 503" in rec.get("msg", "")))
            # still serving, but telling load balancers to go elsewhere
            r = request(srv, "GET", "/ready")
            self.assertEqual(r.status, 503)
            self.assertIn(b"shutting down", r.body)
            self.assertEqual(request(srv, "GET", "/health").status, 200)
            self.assertEqual(srv.wait_exit(), 0)
            self.assertGreaterEqual(time.monotonic() - t0, 0.6)
            self.assertTrue(any("drain delay over" in rec.get("msg", "") for rec in srv.records()))

    def test_a_second_signal_skips_the_drain_delay(self):
        with Server(env={"GTM_DRAIN_DELAY": "120"}) as srv:
            srv.proc.send_signal(signal.SIGTERM)
            self.assertTrue(srv.wait_log(lambda rec: "/ready answers 503" in rec.get("msg", "")))
            t0 = time.monotonic()
            srv.proc.send_signal(signal.SIGINT)
            self.assertEqual(srv.wait_exit(), 0)
            self.assertLess(time.monotonic() - t0, 10)

    def _fetch_expect_close(self, srv, up):
        c = Conn(srv.connect())
        c.send(raw_request("GET", "/fx/fetch?" + urllib.parse.urlencode({"url": up.url("/hold")})))
        try:
            c.read_response()
            return False
        except (EOFError, ConnectionResetError):
            return True


if __name__ == "__main__":
    unittest.main(verbosity=2)
