"""The ratelimit module: per-user limits (per endpoint per window, daily and
monthly totals, tiers, admin bypass), per-IP demo limits with trusted proxies,
the exact headers and 429 bodies, refused requests consuming nothing, limits
that hold across two gtmd instances on one database, the override file, and a
database that is down.  Routes come from the fx_limited fixture; identity from
the real auth module against a fake Stack Auth."""
import calendar
import datetime
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest
import uuid

import pgutil
from harness import Conn, Server, free_port, request
from stackauth import FakeStack

ENDPOINTS = ("company_generate", "account_generate", "persona_generate", "campaign_generate")
DEMO_DETAIL = "Rate limit exceeded for demo usage. Sign up for higher limits and API access."


def user_detail(tier):
    return "Rate limit exceeded for %s tier. Upgrade your plan for higher limits." % tier


def next_utc_midnight(now):
    d = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).date() + datetime.timedelta(days=1)
    return calendar.timegm(d.timetuple())


def next_utc_month(now):
    d = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).date()
    first = datetime.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return calendar.timegm(first.timetuple())


def module_dir(parent):
    """auth, ratelimit and the fixture routes, and nothing else."""
    d = os.path.join(parent, "modules")
    os.mkdir(d)
    for src in (os.path.join(os.environ["MODULE_DIR"], "auth.so"),
                os.path.join(os.environ["MODULE_DIR"], "ratelimit.so"),
                os.path.join(os.environ["FX_LIMITED_DIR"], "fx_limited.so")):
        os.symlink(src, os.path.join(d, os.path.basename(src)))
    return d


RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-tier",
                "x-ratelimit-scope", "x-ratelimit-bypass", "retry-after")


def rate_headers(r):
    return {k: r.header(k) for k in RATE_HEADERS if r.header(k) is not None}


class Case(unittest.TestCase):
    """Each test: its own database, fake Stack Auth and servers."""

    def setUp(self):
        pgutil.require(self)
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.modules = module_dir(self.tmp)
        self.stack = FakeStack()
        self.addCleanup(self.stack.close)
        self.db = pgutil.MigratedDatabase().__enter__()
        self.addCleanup(self.db.__exit__, None, None, None)
        self.tokens = {}

    def overrides_file(self, overrides):
        path = os.path.join(self.tmp, "limits-%s.json" % uuid.uuid4().hex[:8])
        with open(path, "w") as f:
            f.write(overrides if isinstance(overrides, str) else json.dumps(overrides))
        return path

    def server(self, overrides=None, environment="production", database_url=None, start=True, **env):
        e = dict(self.stack.env(), DATABASE_URL=database_url or self.db.url)
        if overrides is not None:
            e["GTM_RATE_LIMITS_FILE"] = self.overrides_file(overrides)
        e.update(env)
        srv = Server(env=e, module_dir=self.modules)
        srv.env.pop("ENVIRONMENT", None)
        if environment is not None:
            srv.env["ENVIRONMENT"] = environment
        if start:
            srv.start()
            self.addCleanup(self.stop, srv)
        return srv

    def stop(self, srv):
        code = srv.stop()
        self.assertEqual(code, 0, "gtmd exit status (sanitizer findings end it with 1)")

    def token(self, user):
        if user not in self.tokens:
            self.tokens[user] = self.stack.token(user)
        return self.tokens[user]

    def post(self, srv, path, user=None, headers=None):
        h = dict(headers or {})
        if user:
            h["Authorization"] = "Bearer " + self.token(user)
        return request(srv, "POST", path, body={}, headers=h)

    def user_post(self, srv, endpoint, user, headers=None):
        return self.post(srv, "/fx/limited/" + endpoint, user, headers)

    def demo_post(self, srv, endpoint, headers=None):
        return self.post(srv, "/fx/demo-limited/" + endpoint, headers=headers)

    def add_user(self, user, role="user", tier=None):
        self.db.sql("INSERT INTO users (id, created_at, role) VALUES ('%s', now(), '%s')" % (user, role))
        if tier:
            self.db.sql("INSERT INTO gtm_user_tiers (user_id, tier) VALUES ('%s', '%s')" % (user, tier))

    def count(self, bucket):
        v = self.db.sql("SELECT count FROM gtm_rate_counters WHERE bucket = '%s'" % bucket)
        return int(v) if v else None

    def buckets(self, prefix):
        v = self.db.sql("SELECT string_agg(bucket, ' ' ORDER BY bucket) FROM gtm_rate_counters "
                        "WHERE bucket LIKE '%s%%'" % prefix)
        return v.split() if v else []

    def assert_ok(self, r):
        self.assertEqual((r.status, r.json()), (200, {"ok": True}), r.body)

    def assert_refused(self, r, detail):
        self.assertEqual(r.status, 429, r.body)
        self.assertEqual(r.json(), {"detail": detail})


class UserLimitsTest(Case):
    def test_endpoint_limit_headers_and_429(self):
        srv = self.server({"user": {"free": {"account_generate": 3, "daily": 100, "monthly": 1000}}})
        alice = str(uuid.uuid4())
        t0 = time.time()
        resets = set()
        for n in range(1, 4):
            r = self.user_post(srv, "account_generate", alice)
            self.assert_ok(r)
            h = rate_headers(r)
            resets.add(h.pop("x-ratelimit-reset"))
            self.assertEqual(h, {"x-ratelimit-limit": "3", "x-ratelimit-remaining": str(3 - n),
                                 "x-ratelimit-tier": "free", "x-ratelimit-scope": "endpoint"})
        # the window is anchored at the first hit; Reset is the earliest of the counters
        self.assertEqual(len(resets), 1)
        reset = int(resets.pop())
        window_end = min(t0 + 3600, next_utc_midnight(t0))
        self.assertTrue(window_end - 1 <= reset <= window_end + 3, (reset, window_end))

        r = self.user_post(srv, "account_generate", alice)
        self.assert_refused(r, user_detail("free"))
        h = rate_headers(r)
        retry_after = int(h.pop("retry-after"))
        refused_reset = int(h.pop("x-ratelimit-reset"))
        self.assertEqual(h, {"x-ratelimit-limit": "3", "x-ratelimit-remaining": "0", "x-ratelimit-tier": "free"})
        self.assertTrue(t0 + 3600 - 1 <= refused_reset <= t0 + 3600 + 3, refused_reset)
        self.assertTrue(abs(retry_after - (refused_reset - time.time())) <= 2, (retry_after, refused_reset))

        # other endpoints and other users have their own hourly counters
        r = self.user_post(srv, "persona_generate", alice)
        self.assert_ok(r)
        self.assertEqual((r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")), ("20", "19"))
        r = self.user_post(srv, "account_generate", str(uuid.uuid4()))
        self.assert_ok(r)
        self.assertEqual(r.header("x-ratelimit-remaining"), "2")
        # the refused request counted nowhere
        self.assertEqual(self.count("u:%s:account_generate" % alice), 3)
        self.assertEqual(self.count("u:%s:day" % alice), 4)
        self.assertEqual(self.count("u:%s:month" % alice), 4)

    def test_daily_total_across_endpoints(self):
        srv = self.server({"user": {"free": {"account_generate": 3, "persona_generate": 3, "daily": 4}}})
        bob = str(uuid.uuid4())
        for _ in range(3):
            self.assert_ok(self.user_post(srv, "account_generate", bob))
        r = self.user_post(srv, "persona_generate", bob)
        self.assert_ok(r)
        self.assertEqual((r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")), ("3", "0"))
        t = time.time()
        r = self.user_post(srv, "persona_generate", bob)
        self.assert_refused(r, user_detail("free"))
        # refused by the day: Reset and Retry-After say when the day is over
        midnight = next_utc_midnight(t)
        self.assertEqual(int(r.header("x-ratelimit-reset")), midnight)
        self.assertTrue(abs(int(r.header("retry-after")) - (midnight - t)) <= 2)
        self.assertEqual(r.header("x-ratelimit-limit"), "3")
        self.assertEqual(r.header("x-ratelimit-remaining"), "0")
        self.assert_refused(self.user_post(srv, "campaign_generate", bob), user_detail("free"))
        self.assertEqual(self.count("u:%s:persona_generate" % bob), 1)

    def test_monthly_total(self):
        srv = self.server({"user": {"free": {"company_generate": 5, "daily": 10, "monthly": 2}}})
        carol = str(uuid.uuid4())
        self.assert_ok(self.user_post(srv, "company_generate", carol))
        self.assert_ok(self.user_post(srv, "company_generate", carol))
        t = time.time()
        r = self.user_post(srv, "company_generate", carol)
        self.assert_refused(r, user_detail("free"))
        self.assertEqual(int(r.header("x-ratelimit-reset")), next_utc_month(t))

    def test_refused_requests_consume_no_quota(self):
        srv = self.server({"window_seconds": 2, "user": {"free": {"account_generate": 3, "daily": 100}}})
        dave = str(uuid.uuid4())
        for _ in range(2):
            for n in range(3):
                r = self.user_post(srv, "account_generate", dave)
                self.assert_ok(r)
                self.assertEqual(r.header("x-ratelimit-remaining"), str(2 - n))
            for _ in range(3):
                r = self.user_post(srv, "account_generate", dave)
                self.assert_refused(r, user_detail("free"))
                self.assertLessEqual(int(r.header("retry-after")), 3)
            # the window is over at the Reset the 429 gave
            reset = int(r.header("x-ratelimit-reset"))
            time.sleep(max(0.0, reset - time.time()) + 0.05)
        self.assertEqual(self.count("u:%s:day" % dave), 6)
        self.assertEqual(self.count("u:%s:month" % dave), 6)

    def test_admin_bypass(self):
        srv = self.server({"user": {"free": {"account_generate": 1}}})
        admin, root = str(uuid.uuid4()), str(uuid.uuid4())
        self.add_user(admin, "admin")
        self.add_user(root, "super_admin")
        for user in (admin, root):
            for _ in range(3):
                r = self.user_post(srv, "account_generate", user)
                self.assert_ok(r)
                self.assertEqual(rate_headers(r), {"x-ratelimit-bypass": "admin"})
            self.assertEqual(self.buckets("u:" + user), [])
        # the role is read per request: a demoted admin is counted at once
        self.db.sql("UPDATE users SET role = 'user' WHERE id = '%s'" % admin)
        r = self.user_post(srv, "account_generate", admin)
        self.assert_ok(r)
        self.assertEqual(r.header("x-ratelimit-limit"), "1")
        self.assert_refused(self.user_post(srv, "account_generate", admin), user_detail("free"))

    def test_tiers(self):
        srv = self.server({"user": {"free": {"account_generate": 1}, "pro": {"account_generate": 2}}})
        pro, ent, free = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        self.add_user(pro, tier="pro")
        self.add_user(ent, tier="enterprise")
        self.add_user(free, tier="free")
        for n in range(2):
            r = self.user_post(srv, "account_generate", pro)
            self.assert_ok(r)
            self.assertEqual((r.header("x-ratelimit-tier"), r.header("x-ratelimit-limit"),
                              r.header("x-ratelimit-remaining")), ("pro", "2", str(1 - n)))
        r = self.user_post(srv, "account_generate", pro)
        self.assert_refused(r, user_detail("pro"))
        self.assertEqual(r.header("x-ratelimit-tier"), "pro")
        # enterprise keeps the production table's numbers (not overridden)
        r = self.user_post(srv, "campaign_generate", ent)
        self.assert_ok(r)
        self.assertEqual((r.header("x-ratelimit-tier"), r.header("x-ratelimit-limit"),
                          r.header("x-ratelimit-remaining")), ("enterprise", "500", "499"))
        # an explicit free row, and no row at all, are both free
        for user in (free, str(uuid.uuid4())):
            r = self.user_post(srv, "account_generate", user)
            self.assertEqual((r.status, r.header("x-ratelimit-tier"), r.header("x-ratelimit-limit")),
                             (200, "free", "1"))
        # a tier change applies to the next request; the count carries over
        self.db.sql("UPDATE gtm_user_tiers SET tier = 'enterprise' WHERE user_id = '%s'" % pro)
        r = self.user_post(srv, "account_generate", pro)
        self.assert_ok(r)
        self.assertEqual((r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")), ("2000", "1997"))

    def test_production_and_development_tables(self):
        srv = self.server()
        user = str(uuid.uuid4())
        for endpoint, limit in zip(ENDPOINTS, ("10", "20", "20", "5")):
            r = self.user_post(srv, endpoint, user)
            self.assertEqual((r.status, r.header("x-ratelimit-limit")), (200, limit), endpoint)
        for endpoint, limit in zip(ENDPOINTS, ("5", "20", "20", "5")):
            r = self.demo_post(srv, endpoint)
            self.assertEqual((r.status, r.header("x-ratelimit-limit")), (200, limit), endpoint)
        for _ in range(4):
            self.assert_ok(self.demo_post(srv, "company_generate"))
        self.assert_refused(self.demo_post(srv, "company_generate"), DEMO_DETAIL)
        # development: ENVIRONMENT unset or any case of "development"; any other value is production
        pro = str(uuid.uuid4())
        self.add_user(pro, tier="pro")
        for environment in (None, "Development"):
            with self.subTest(environment=environment):
                dev = self.server(environment=environment, overrides={"demo": {"persona_generate": 7}})
                for endpoint in ENDPOINTS:
                    r = self.user_post(dev, endpoint, str(uuid.uuid4()))
                    self.assertEqual((r.status, r.header("x-ratelimit-limit")), (200, "1000"))
                    r = self.demo_post(dev, endpoint)
                    self.assertEqual((r.status, r.header("x-ratelimit-limit")),
                                     (200, "7" if endpoint == "persona_generate" else "1000"))
                # a paid tier is never stricter than the relaxed table
                self.assertEqual(self.user_post(dev, "account_generate", pro).header("x-ratelimit-limit"), "1000")
                self.stop(dev)
                self.db.sql("DELETE FROM gtm_rate_counters")
        staging = self.server(environment="staging")
        self.assertEqual(self.user_post(staging, "campaign_generate", str(uuid.uuid4())).header("x-ratelimit-limit"),
                         "5")

    def test_misconfigured_routes_are_refused_not_waved_through(self):
        srv = self.server()
        r = self.user_post(srv, "no_such_endpoint", str(uuid.uuid4()))
        self.assertEqual((r.status, r.json()), (500, {"detail": "Internal server error"}))
        r = self.post(srv, "/fx/unauthenticated-user-key")
        self.assertEqual(r.status, 500)
        self.assertTrue(srv.wait_log(lambda rec: "limit key 'no_such_endpoint'" in rec.get("msg", "")))
        self.assertTrue(srv.wait_log(lambda rec: "the request has no user" in rec.get("msg", "")))


class DemoLimitsTest(Case):
    def test_per_peer_ip_when_no_proxy_is_trusted(self):
        srv = self.server({"demo": {"company_generate": 2}})
        t0 = time.time()
        for n, xff in enumerate(("1.1.1.1", "2.2.2.2")):
            r = self.demo_post(srv, "company_generate", {"X-Forwarded-For": xff})
            self.assert_ok(r)
            h = rate_headers(r)
            reset = int(h.pop("x-ratelimit-reset"))
            self.assertEqual(h, {"x-ratelimit-limit": "2", "x-ratelimit-remaining": str(1 - n)})
            self.assertTrue(t0 + 3600 - 1 <= reset <= t0 + 3600 + 3)
        # X-Forwarded-For from an untrusted peer changes nothing
        r = self.demo_post(srv, "company_generate", {"X-Forwarded-For": "5.6.7.8"})
        self.assert_refused(r, DEMO_DETAIL)
        h = rate_headers(r)
        retry_after = int(h.pop("retry-after"))
        self.assertEqual(int(h.pop("x-ratelimit-reset")), reset)
        self.assertEqual(h, {"x-ratelimit-limit": "2", "x-ratelimit-remaining": "0"})
        self.assertTrue(3597 <= retry_after <= 3601, retry_after)
        # each endpoint has its own counter
        self.assert_ok(self.demo_post(srv, "account_generate"))
        self.assertEqual(self.buckets("d:"), ["d:127.0.0.1:account_generate", "d:127.0.0.1:company_generate"])
        self.assertEqual(self.count("d:127.0.0.1:company_generate"), 2)

    def test_forwarded_for_believed_from_trusted_proxies(self):
        srv = self.server({"demo": {"company_generate": 2}},
                          GTM_TRUSTED_PROXIES=" 127.0.0.1, 10.0.0.0/8,fd00::/8 ,")
        xff = lambda v: self.demo_post(srv, "company_generate", {"X-Forwarded-For": v})
        self.assert_ok(xff("1.1.1.1"))
        self.assert_ok(xff("1.1.1.1"))
        # a spoofed left-most entry is not believed; trusted hops are skipped
        self.assert_refused(xff("9.9.9.9, 1.1.1.1"), DEMO_DETAIL)
        self.assert_refused(xff("1.1.1.1, 10.1.2.3"), DEMO_DETAIL)
        self.assert_ok(xff("2.2.2.2"))
        self.assert_ok(xff("not-an-ip, 3.3.3.3, 999.1.1.1, 10.0.0.7"))   # malformed entries skipped
        self.assert_ok(xff("10.0.0.5, 10.0.0.6"))                       # all trusted: the left-most
        self.assert_ok(xff("2001:DB8:0:0::1, fd00::1"))                  # canonical IPv6 text
        self.assert_ok(xff("[2001:db8::2]:443"))
        self.assert_ok(xff("4.4.4.4:5555"))
        self.assert_ok(xff("garbage"))                                   # nothing usable: the peer
        self.assert_ok(self.demo_post(srv, "company_generate"))          # no header: the peer
        self.assertEqual(sorted(self.buckets("d:")), sorted(
            "d:%s:company_generate" % ip for ip in
            ("1.1.1.1", "2.2.2.2", "3.3.3.3", "10.0.0.5", "2001:db8::1", "2001:db8::2", "4.4.4.4", "127.0.0.1")))
        self.assertEqual(self.count("d:127.0.0.1:company_generate"), 2)

    def test_repeated_forwarded_for_lines_are_one_list(self):
        srv = self.server({"demo": {"company_generate": 5}}, GTM_TRUSTED_PROXIES="127.0.0.1")
        c = Conn(srv.connect())
        c.send(b"POST /fx/demo-limited/company_generate HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 9.9.9.9\r\n"
               b"Content-Type: application/json\r\nX-Forwarded-For: 5.5.5.5\r\nContent-Length: 2\r\n\r\n{}")
        self.assert_ok(c.read_response())
        c.close()
        # the right-most entry of the joined list, not the first line's
        self.assertEqual(self.buckets("d:"), ["d:5.5.5.5:company_generate"])

    def test_a_trusted_peer_that_is_not_the_proxy_list(self):
        # the peer (127.0.0.1) is not trusted here, so its X-Forwarded-For is not either
        srv = self.server({"demo": {"company_generate": 1}}, GTM_TRUSTED_PROXIES="10.0.0.0/8")
        self.assert_ok(self.demo_post(srv, "company_generate", {"X-Forwarded-For": "1.1.1.1"}))
        self.assert_refused(self.demo_post(srv, "company_generate", {"X-Forwarded-For": "2.2.2.2"}), DEMO_DETAIL)

    def test_expired_counters_are_swept(self):
        srv = self.server({"window_seconds": 1, "sweep_seconds": 1})
        self.assert_ok(self.demo_post(srv, "company_generate"))
        self.assertEqual(self.buckets("d:"), ["d:127.0.0.1:company_generate"])
        time.sleep(2.1)   # past the window and the sweep interval, both set to 1 s
        self.assert_ok(self.demo_post(srv, "account_generate"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "d:127.0.0.1:company_generate" in self.buckets("d:"):
            time.sleep(0.1)
        self.assertEqual(self.buckets("d:"), ["d:127.0.0.1:account_generate"])


class TwoInstancesTest(Case):
    def burst(self, servers, per_server, send):
        """per_server concurrent requests against each server, all released at once."""
        barrier = threading.Barrier(per_server * len(servers))
        statuses, errors = [], []
        lock = threading.Lock()

        def one(srv, i):
            try:
                barrier.wait(30)
                r = send(srv, i)
                with lock:
                    statuses.append(r.status)
            except Exception as e:   # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=one, args=(srv, i)) for srv in servers for i in range(per_server)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        return statuses

    def test_the_limit_holds_across_two_instances(self):
        limits = {"user": {"free": {"account_generate": 10}}, "demo": {"campaign_generate": 10}}
        servers = [self.server(limits), self.server(limits)]
        user = str(uuid.uuid4())
        self.token(user)
        statuses = self.burst(servers, 20, lambda srv, i: self.user_post(srv, "account_generate", user))
        self.assertEqual((statuses.count(200), statuses.count(429), len(statuses)), (10, 30, 40), statuses)
        self.assertEqual(self.count("u:%s:account_generate" % user), 10)
        self.assertEqual(self.count("u:%s:day" % user), 10)
        statuses = self.burst(servers, 20, lambda srv, i: self.demo_post(srv, "campaign_generate"))
        self.assertEqual((statuses.count(200), statuses.count(429), len(statuses)), (10, 30, 40), statuses)
        self.assertEqual(self.count("d:127.0.0.1:campaign_generate"), 10)
        # users sharing the daily counter across endpoints in parallel: no deadlock, no error
        other = str(uuid.uuid4())
        self.token(other)
        statuses = self.burst(servers, 12, lambda srv, i: self.user_post(srv, ENDPOINTS[i % 4], other))
        self.assertEqual(set(statuses) - {200, 429}, set(), statuses)


class StartupAndFailureTest(Case):
    def refusal(self, srv, fragment):
        ok = srv.wait_log(lambda rec: rec.get("level") == "error" and fragment in rec.get("msg", ""))
        self.assertTrue(ok, "no error line with %r:\n%s" % (fragment, "\n".join(srv.lines)))
        ok = srv.wait_log(lambda rec: rec.get("msg", "").startswith("module ratelimit.so refused:"))
        self.assertTrue(ok, "\n".join(srv.lines))
        self.assertFalse(any("rate limits:" in rec.get("msg", "") for rec in srv.records()))

    def test_bad_override_file_refuses_the_module(self):
        cases = [
            ('{"user": {"gold": {"daily": 5}}}', "user.gold: unknown tier"),
            ('{"user": {"free": {"daily": -1}}}', "user.free.daily: expected a whole number from 0 to"),
            ('{"user": {"free": {"hourly": 5}}}', "user.free.hourly: unknown key"),
            ('{"user": {"pro": {"account_generate": 2.5}}}', "user.pro.account_generate: expected a whole number"),
            ('{"user": []}', "user: expected an object"),
            ('{"demo": {"company_generate": "5"}}', "demo.company_generate: expected a whole number"),
            ('{"demo": {"daily": 5}}', "demo.daily: unknown key"),
            ('{"window_seconds": 0}', "window_seconds: expected a whole number from 1 to 86400"),
            ('{"windows": 3}', "windows: unknown key"),
            ('{"demo": {}, "demo": {}}', "line 1 column 19: duplicate object key"),
            ('{"user": ', "line 1 column"),
            ('[1]', "expected a JSON object"),
        ]
        for text, fragment in cases:
            with self.subTest(file=text):
                srv = self.server(text)
                path = srv.env["GTM_RATE_LIMITS_FILE"]
                self.refusal(srv, "GTM_RATE_LIMITS_FILE %s: %s" % (path, fragment))
        srv = self.server(GTM_RATE_LIMITS_FILE="/nonexistent/limits.json")
        self.refusal(srv, "GTM_RATE_LIMITS_FILE /nonexistent/limits.json: ")

    def test_bad_trusted_proxies_refuse_the_module(self):
        for value in ("10.0.0.0/33", "10.0.0.1, example.com", "::1/129", "10.0.0.0/x"):
            with self.subTest(value=value):
                srv = self.server(GTM_TRUSTED_PROXIES=value)
                self.refusal(srv, "GTM_TRUSTED_PROXIES: '")

    def check_503(self, srv, limit_s):
        for send in (lambda: self.demo_post(srv, "company_generate"),
                     lambda: self.user_post(srv, "account_generate", str(uuid.uuid4()))):
            t = time.monotonic()
            r = send()
            self.assertEqual(r.status, 503, r.body)
            self.assertIsNotNone(r.header("retry-after"))
            self.assertNotIn("x-ratelimit-limit", dict(r.headers))
            self.assertLess(time.monotonic() - t, limit_s)

    def test_database_down_is_503_never_a_hang(self):
        srv = self.server(database_url="postgresql://nobody:pw@127.0.0.1:%d/none" % free_port())
        self.check_503(srv, 10)

    def test_database_that_never_answers_is_503(self):
        # accepts connections and says nothing: only a deadline ends the wait
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        self.addCleanup(hole.close)
        srv = self.server(database_url="postgresql://nobody:pw@127.0.0.1:%d/none" % hole.getsockname()[1])
        self.check_503(srv, 25)


if __name__ == "__main__":
    unittest.main(verbosity=2)
