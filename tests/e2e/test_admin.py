"""The operator routes: /ready on the public listener; /health/detailed and
/metrics only on GTM_ADMIN_LISTEN, in the Prometheus text format, with
requests counted by route pattern."""
import os
import re
import subprocess
import unittest
import uuid

import pgutil
from harness import GTMD, Server, request
from stackauth import FakeStack
from test_companies import overview

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def parse_metrics(text):
    """{(name, labels-text): value}; fails on any line outside the format."""
    out = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, "not a Prometheus sample line: %r" % line
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, "sample without TYPE: %r" % line
        out[(name, m.group(2) or "")] = float(m.group(4))
    return out


class AdminTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pgutil.require()
        cls.db = pgutil.MigratedDatabase().__enter__()
        cls.stack = FakeStack()
        env = dict(cls.stack.env(), DATABASE_URL=cls.db.url)
        cls.srv = Server(env=env, module_dir=os.environ["MODULE_DIR"]).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        cls.stack.close()
        cls.db.__exit__(None, None, None)
        assert code == 0, code

    def test_admin_routes_only_on_the_admin_listener(self):
        for path in ("/metrics", "/health/detailed"):
            self.assertEqual(request(self.srv, "GET", path).status, 404, path)
            self.assertEqual(request(self.srv, "GET", path, admin=True).status, 200, path)
        # the public API is not served on the admin listener
        self.assertEqual(request(self.srv, "GET", "/api/companies", admin=True).status, 404)
        self.assertEqual(request(self.srv, "GET", "/health", admin=True).body, b'{"status":"ok"}')

    def test_ready(self):
        r = request(self.srv, "GET", "/ready")
        self.assertEqual((r.status, r.json()), (200, {"status": "ready"}))

    def test_health_detailed(self):
        # /ready answers once a pooled connection has run its query: the pool is up
        self.assertEqual(request(self.srv, "GET", "/ready").status, 200)
        d = request(self.srv, "GET", "/health/detailed", admin=True).json()
        self.assertEqual(d["status"], "ok")
        self.assertEqual(d["database"]["configured"], True)
        self.assertEqual(d["database"]["up"], True)
        self.assertEqual(sorted(m["name"] for m in d["modules"]),
                         ["account", "auth", "campaign", "company", "persona", "ratelimit"])
        for m in d["modules"]:
            self.assertEqual(m["generation"], 1)
            self.assertTrue(m["version"])
        self.assertEqual(d["abi"]["major"], 1)
        self.assertGreater(d["uptime_s"], 0)
        self.assertEqual(d["workers"], 1)
        self.assertEqual(d["providers"], [])    # no key configured in this run

    def test_metrics_count_by_route_pattern(self):
        auth = {"Authorization": "Bearer " + self.stack.token(str(uuid.uuid4()))}
        before = parse_metrics(request(self.srv, "GET", "/metrics", admin=True).body.decode())
        cid = request(self.srv, "POST", "/api/companies", body=overview(), headers=auth).json()["id"]
        for _ in range(3):
            self.assertEqual(request(self.srv, "GET", "/api/companies/" + cid, headers=auth).status, 200)
        request(self.srv, "GET", "/api/companies/" + str(uuid.uuid4()), headers=auth)
        request(self.srv, "GET", "/no/such/thing")
        text = request(self.srv, "GET", "/metrics", admin=True).body.decode()
        after = parse_metrics(text)
        key = lambda status: ("gtm_http_requests_total",
                              '{route="/api/companies/{company_id}",method="GET",status="%d"}' % status)
        self.assertEqual(after[key(200)] - before.get(key(200), 0), 3)
        self.assertEqual(after[key(404)] - before.get(key(404), 0), 1)
        self.assertGreaterEqual(after[("gtm_http_requests_total", '{route="(unmatched)",method="GET",status="404"}')], 1)
        count = ("gtm_http_request_duration_seconds_count", '{route="/api/companies/{company_id}"}')
        inf = ("gtm_http_request_duration_seconds_bucket", '{route="/api/companies/{company_id}",le="+Inf"}')
        self.assertEqual(after[count], after[inf])
        self.assertEqual(after[("gtm_pg_up", "")], 1)
        self.assertGreater(after[("gtm_pg_ops_total", '{outcome="done"}')], 0)
        self.assertEqual(after[("gtm_module_info", '{name="company",version="0.1.0",generation="1"}')], 1)
        for name in ("gtm_uptime_seconds", "gtm_connections_open", "gtm_generations_in_flight",
                     "gtm_outbound_calls_total", "gtm_connections_refused_total"):
            self.assertIn((name, ""), after)
        self.assertNotIn(cid, text)    # ids never become labels


class ReadinessTest(unittest.TestCase):
    def test_no_database_is_not_ready(self):
        with Server() as srv:
            r = request(srv, "GET", "/ready")
            self.assertEqual(r.status, 503)
            self.assertIn("DATABASE_URL", r.json()["detail"])

    def test_database_down_then_schema_behind(self):
        pgutil.require(self)
        with Server(env={"DATABASE_URL": "postgresql://nobody:pw@127.0.0.1:1/none"}) as srv:
            r = request(srv, "GET", "/ready")
            self.assertEqual(r.status, 503)
            self.assertIsNotNone(r.header("retry-after"))
        with pgutil.MigratedDatabase() as db:
            with Server(env={"DATABASE_URL": db.url}) as srv:
                self.assertEqual(request(srv, "GET", "/ready").status, 200)
                latest = db.sql("SELECT max(version) FROM gtm_schema_migrations")
                db.sql("DELETE FROM gtm_schema_migrations WHERE version = %s" % latest)
                r = request(srv, "GET", "/ready")
                self.assertEqual(r.status, 503)
                self.assertIn("run gtmd migrate", r.json()["detail"])

    def test_admin_listener_settings(self):
        with Server(env={"GTM_ADMIN_LISTEN": "off"}) as srv:
            self.assertEqual(request(srv, "GET", "/health").status, 200)
            self.assertFalse(any("(admin)" in l for l in srv.lines))
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["GTM_ADMIN_LISTEN"] = "everywhere"
        r = subprocess.run([GTMD, "serve"], env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("GTM_ADMIN_LISTEN", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
