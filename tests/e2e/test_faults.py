"""Faults, each with what the client sees (the CONTRACT section 2 error),
what happens to stored data, and how service comes back by itself:

- Postgres stopped (fast, then immediate: a crash) and started again under a
  load of creates, updates and cascade deletes from several users: every
  acknowledged write reads back exactly, nothing unacknowledged exists (a
  write whose COMMIT answer was lost in the crash is answered with what
  Postgres says became of it), no cascade is half done, clients see only 2xx
  or 503 + Retry-After, and service returns within a bound.
- LLM providers that hang, reset (before and in the middle of an answer),
  answer 500, 429 (Retry-After honoured), 529, a cut-off body, a 200 whose
  JSON is cut off, or a stream that never ends (slow, and fast): 502/504 in
  the deadline, failover to the next provider, the breaker opening and
  closing by itself, and every connection to the fake closed again.
- Firecrawl down (closed port, hanging): the built-in fetcher reads the site.
- DNS: a website that does not resolve (metadata says it was not read), a
  provider base URL that does not resolve (502, or failover).
- stderr on a full disk (/dev/full, and a tiny tmpfs filled then emptied):
  serving goes on, dropped lines are counted on /metrics, logging resumes.
- A worker SIGKILLed while it holds generations and keep-alive connections:
  those clients see a complete answer or a closed connection, never half an
  answer; the other worker keeps serving; the dead worker's provider calls
  are closed."""
import calendar
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))

import pgutil  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402
from harness import SLOW, Conn, Server, free_port, raw_request, request, sanitized  # noqa: E402
from stackauth import FakeStack  # noqa: E402
from test_companies import overview  # noqa: E402
from test_generate import OVERVIEW, Website  # noqa: E402
from test_migrate import migrate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FAKES = os.path.join(HERE, "..", "fakes")


def ctl(*args):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("%s failed: %s" % (" ".join(args), r.stderr))


def require_root(testcase, what):
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            raise AssertionError("needs root for " + what)
        testcase.skipTest("needs root for " + what)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(srv, name, labels=None):
    """The value of one sample on /metrics (the sum when labels is None and
    the name has several series)."""
    o = call(srv.admin_port, "GET", "/metrics")
    assert o.status == 200, (o.status, o.error)
    text = o.body.decode()
    total = None
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        if head != name and not head.startswith(name + "{"):
            continue
        if labels and not all('%s="%s"' % kv in head for kv in labels.items()):
            continue
        total = (total or 0) + float(value)
    return total


class Outcome:
    """One request as the client saw it."""

    def __init__(self, sent, answered, status=None, headers=None, body=b"", error=None, partial=False):
        self.sent, self.answered = sent, answered
        self.status, self.headers, self.body = status, headers or {}, body
        self.error, self.partial = error, partial

    def json(self):
        return json.loads(self.body)


class CountingConn(Conn):
    """A Conn that counts the bytes it received, so a failure can tell "no
    answer" from "part of an answer"."""

    received = 0

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.received += len(chunk)
        self.buf += chunk


def call(port, method, path, body=None, headers=None, timeout=15):
    """One request on a fresh connection; never raises: a failure is an Outcome
    with error set (partial when some of an answer had arrived)."""
    t0 = time.monotonic()
    c = None
    try:
        c = CountingConn(socket.create_connection(("127.0.0.1", port), timeout))
        c.send(raw_request(method, path, body, headers))
        r = c.read_response()
        return Outcome(t0, time.monotonic(), r.status, dict(r.headers), r.body)
    except Exception as e:   # noqa: BLE001 - every failure is data here
        return Outcome(t0, time.monotonic(), error=repr(e), partial=bool(c and c.received))
    finally:
        if c:
            c.close()


# ---------------------------------------------------------------------------
# Postgres stopped and started under a write load
# ---------------------------------------------------------------------------

TREES_PER_USER = 120


def seed_trees(url_db, user, n):
    """n companies for user, each with 2 accounts, each with 2 personas and a
    campaign per persona (11 rows a tree), straight into the database."""
    sql = """
    INSERT INTO users (id, created_at, role) VALUES ('{u}', timezone('utc', now()), 'user');
    WITH c AS (INSERT INTO companies (id, user_id, name, url, data, created_at, updated_at)
               SELECT gen_random_uuid(), '{u}', 'tree-' || g, 'https://tree.example', '{{}}'::jsonb,
                      timezone('utc', now()), timezone('utc', now()) FROM generate_series(1, {n}) g
               RETURNING id),
         a AS (INSERT INTO accounts (id, company_id, name, data, created_at, updated_at)
               SELECT gen_random_uuid(), c.id, 'acct', '{{}}'::jsonb, timezone('utc', now()),
                      timezone('utc', now()) FROM c, generate_series(1, 2) RETURNING id),
         p AS (INSERT INTO personas (id, account_id, name, data, created_at, updated_at)
               SELECT gen_random_uuid(), a.id, 'persona', '{{}}'::jsonb, timezone('utc', now()),
                      timezone('utc', now()) FROM a, generate_series(1, 2) RETURNING id, account_id)
    INSERT INTO campaigns (id, account_id, persona_id, name, type, data, created_at, updated_at)
    SELECT gen_random_uuid(), p.account_id, p.id, 'campaign', 'email', '{{}}'::jsonb,
           timezone('utc', now()), timezone('utc', now()) FROM p;
    SELECT id FROM companies WHERE user_id = '{u}' ORDER BY name;
    """.format(u=user, n=n)
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url_db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def psql_url(url, sql):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


class Write:
    """One write as the client saw it: kind, target, what it asked for."""

    def __init__(self, kind, o, target, name=None, data=None):
        self.kind, self.o, self.target, self.name, self.data = kind, o, target, name, data
        self.in_doubt = False     # set afterwards: in flight when the database crashed


class Writer(threading.Thread):
    """One user's sequential writes: creates, updates, account creates and
    cascade deletes of seeded trees, every outcome recorded."""

    PACE = 0.015   # between requests: a steady load, not a CPU burner

    def __init__(self, port, auth, trees, stop):
        super().__init__(daemon=True)
        self.port, self.auth, self.stop = port, auth, stop
        self.trees = list(trees)          # seeded companies not yet asked to be deleted
        self.log = []                     # Write, in order
        self.companies = {}               # acknowledged creates: id -> body as last acknowledged
        self.rng = random.Random()

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            kind = ("create", "update", "account", "delete")[i % 4]
            if kind in ("update", "account") and not self.companies:
                kind = "create"
            if kind == "delete" and not self.trees:
                kind = "create"
            getattr(self, kind)(i)
            self.stop.wait(self.PACE)

    def create(self, i):
        name = "w-%d-%s" % (i, uuid.uuid4().hex[:6])
        o = call(self.port, "POST", "/api/companies", overview(company_name=name, seq=i), self.auth)
        self.log.append(Write("create", o, None, name))
        if o.status == 201:
            self.companies[o.json()["id"]] = o.json()

    def update(self, i):
        cid = self.rng.choice(list(self.companies))
        o = call(self.port, "PUT", "/api/companies/" + cid, {"name": "u-%d" % i, "data": {"v": i}}, self.auth)
        self.log.append(Write("update", o, cid, "u-%d" % i, {"v": i}))
        if o.status == 200:
            self.companies[cid] = o.json()

    def account(self, i):
        cid = self.rng.choice(list(self.companies))
        o = call(self.port, "POST", "/api/accounts?company_id=" + cid, {"name": "a-%d" % i, "data": {"i": i}},
                 self.auth)
        self.log.append(Write("account", o, cid, "a-%d" % i))

    def delete(self, i):
        cid = self.trees.pop()
        o = call(self.port, "DELETE", "/api/companies/" + cid, None, self.auth)
        self.log.append(Write("delete", o, cid))


def ready_times(log_path):
    """Wall-clock times of the cluster log's "ready to accept connections" lines."""
    out = []
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                if "database system is ready to accept connections" in line:
                    day, clock = line.split()[:2]        # "2026-12-06 14:26:09.975 UTC ..."
                    whole, frac = clock.split(".")
                    out.append(calendar.timegm(time.strptime(day + " " + whole, "%Y-%m-%d %H:%M:%S"))
                               + float("0." + frac))
    except OSError:
        pass
    return out


class PostgresOutageTest(unittest.TestCase):
    USERS = 5

    def setUp(self):
        pgutil.require(self)
        require_root(self, "a Postgres cluster of its own (initdb and pg_ctl as postgres)")
        # a cluster of this test's own (stopping it disturbs no other test),
        # made with initdb: pg_createcluster and pg_dropcluster cost 8 s more
        version = os.environ.get("PGVERSION", "15")
        self.bindir = "/usr/lib/postgresql/%s/bin" % version
        self.tmp = tempfile.mkdtemp(prefix="gtm-faults-pg-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        owner = pwd.getpwnam("postgres")
        os.chown(self.tmp, owner.pw_uid, owner.pw_gid)
        self.datadir = os.path.join(self.tmp, "data")
        self.pglog = os.path.join(self.tmp, "postgres.log")
        self.pgport = free_port()
        ctl("runuser", "-u", "postgres", "--", self.bindir + "/initdb", "-D", self.datadir, "-A", "trust",
            "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.addCleanup(subprocess.run, ["runuser", "-u", "postgres", "--", self.bindir + "/pg_ctl", "-w", "-s",
                                         "-D", self.datadir, "stop", "-m", "immediate"], capture_output=True)
        self.pg_start()
        self.url = "postgresql://postgres@127.0.0.1:%d/postgres" % self.pgport

    def pg_ctl(self, *args):
        ctl("runuser", "-u", "postgres", "--", self.bindir + "/pg_ctl", "-w", "-s", "-D", self.datadir, *args)

    def pg_start(self):
        self.pg_ctl("start", "-l", self.pglog, "-o",
                    "-p %d -k %s -c listen_addresses=127.0.0.1" % (self.pgport, self.tmp))

    def outage(self, mode, writers, down_for=1.0):
        """Stops the database (pg_ctl mode) once the load runs, keeps it down
        for down_for s, starts it; returns the times the stop was asked for,
        the stop was done, and the database was started again."""
        def ok_since(t):
            return [w.o for wr in writers for w in list(wr.log) if w.o.sent >= t and w.o.status in (200, 201, 204)]

        start = time.monotonic()
        while len(ok_since(start)) < 20 and time.monotonic() < start + 10:
            time.sleep(0.02)        # load before the fault: awaited as answers, polled
        stopping = time.monotonic()
        self.pg_ctl("stop", "-m", mode)
        down_at = time.monotonic()
        time.sleep(down_for)        # the outage itself: a duration, not an event
        start_at = time.monotonic()
        self.pg_start()
        return stopping, down_at, start_at, time.monotonic()

    def test_writes_across_database_outages(self):
        self.assertEqual(migrate(self.url).returncode, 0)
        stack = FakeStack()
        self.addCleanup(stack.close)
        srv = Server(env=dict(stack.env(), DATABASE_URL=self.url, GTM_PG_POOL_SIZE="4"),
                     module_dir=os.environ["MODULE_DIR"]).start()
        self.addCleanup(srv.__exit__, None, None, None)
        users = [str(uuid.uuid4()) for _ in range(self.USERS)]
        trees = {u: seed_trees(self.url, u, TREES_PER_USER) for u in users}
        stop = threading.Event()
        writers = [Writer(srv.port, {"Authorization": "Bearer " + stack.token(u)}, trees[u], stop) for u in users]
        for w in writers:
            w.start()
        outages = []     # (mode, stop asked, stopped, ready, recovered)
        try:
            for mode in ("fast", "immediate"):
                stopping, down_at, start_at, up_at = self.outage(mode, writers)
                # when the database could answer, from its own log, on the monotonic clock
                ready = [t - (time.time() - time.monotonic()) for t in ready_times(self.pglog)]
                ready = [t for t in ready if t > start_at - 0.05]
                self.assertTrue(ready, "%s: no 'ready' line in %s" % (mode, self.pglog))
                ready_at = ready[-1]
                recovered = None
                while recovered is None and time.monotonic() < up_at + 15:
                    oks = [w.o.answered for wr in writers for w in list(wr.log)
                           if w.o.sent >= ready_at and w.o.status in (200, 201, 204)]
                    if oks:
                        recovered = min(oks)
                    else:
                        time.sleep(0.02)
                self.assertIsNotNone(recovered, "%s: no write succeeded within 15 s of the database's return" % mode)
                outages.append((mode, stopping, down_at, ready_at, recovered))
            t = time.monotonic()
            while time.monotonic() < t + 0.5:
                time.sleep(0.05)    # load after the last recovery
        finally:
            stop.set()
            for w in writers:
                w.join(30)
        self.assertIsNone(srv.proc.poll(), "gtmd died")

        # --- what the clients saw ---
        everything = [w for wr in writers for w in wr.log]
        broken = [(w.kind, w.o.error, w.o.partial) for w in everything if w.o.error]
        self.assertEqual(broken, [], "requests without a whole answer")
        statuses = {}
        for w in everything:
            statuses[(w.kind, w.o.status)] = statuses.get((w.kind, w.o.status), 0) + 1
        allowed = {("create", 201), ("create", 503), ("update", 200), ("update", 503), ("account", 201),
                   ("account", 503), ("delete", 204), ("delete", 503)}
        self.assertTrue(set(statuses) <= allowed, statuses)
        for w in everything:
            if w.o.status == 503:
                self.assertRegex(w.o.headers.get("retry-after", ""), r"^[1-9][0-9]*$")
                self.assertEqual(w.o.headers.get("content-type"), "application/json")
                self.assertIsInstance(w.o.json()["detail"], str)
        for mode, stopping, down_at, ready_at, recovered in outages:
            during = [w.o for w in everything if down_at + 0.3 < w.o.sent and w.o.answered < ready_at - 0.3]
            self.assertTrue(during, "%s: no request while the database was down" % mode)
            self.assertEqual({o.status for o in during}, {503}, mode)
            self.assertLess(recovered - ready_at, 5.0 * SLOW, "%s: service back only %.2f s after the database"
                            % (mode, recovered - ready_at))
        # An answer takes under 5 s, or (a write whose COMMIT answer was lost,
        # waiting for the database to say what became of it) comes within 3 s
        # of the database being ready again.
        slowest = max(w.o.answered - w.o.sent for w in everything)
        for w in everything:
            waited = w.o.answered - w.o.sent
            if waited >= 5.0 * SLOW:
                after = [w.o.answered - ready for _, _, _, ready, _ in outages if w.o.sent < ready <= w.o.answered]
                self.assertTrue(after and min(after) < 3.0 * SLOW, "%s answered %d after %.1f s, %s after the database "
                                "was ready" % (w.kind, w.o.status, waited, after))
        # When Postgres crashes (immediate stop) a write whose COMMIT was under
        # way may be durable though its answer never left.  gtmd asks the
        # database (txid_status) once it is back and answers with the real
        # outcome; only if it could not ask in time does it answer 503 saying
        # the write may or may not be stored.  Such a write is "in doubt": it
        # may be found either way, but whole.  Every other 503 is a write that
        # must not be found.  Down for ~1 s, the database is always back in
        # time here, so no answer may be in doubt at all.
        deaths = []
        for mode, stopping, down_at, _, _ in outages:
            first = min(w.o.answered for w in everything if w.o.status == 503 and w.o.answered >= stopping)
            deaths.append((stopping, first))
        for w in everything:
            w.in_doubt = w.o.status == 503 and "may or may not" in w.o.json()["detail"]
        self.assertEqual([(w.kind, w.o.json()["detail"]) for w in everything if w.in_doubt], [],
                         "writes answered 'outcome unknown' though the database came back within their deadline")
        metrics = request(srv, "GET", "/metrics", admin=True).body.decode()
        settled = {outcome: int(float(line.split()[-1])) for line in metrics.splitlines()
                   if line.startswith("gtm_pg_commits_in_doubt_total{")
                   for outcome in [line.split('"')[1]]}

        # --- what is stored ---
        def rows(sql):
            return set(psql_url(self.url, sql).split())

        for u, wr in zip(users, writers):
            acked = [w for w in wr.log if w.o.status in (200, 201, 204)]
            refused = [w for w in wr.log if w.o.status == 503]
            names = dict(line.split("|") for line in psql_url(
                self.url, "SELECT id, name FROM companies WHERE user_id = '%s'" % u).splitlines())
            got = set(names)
            # companies: the seeded ones not deleted, plus the acknowledged creates
            must = (set(trees[u]) - {w.target for w in acked if w.kind == "delete"}) | set(wr.companies)
            self.assertEqual(must - got, set(), "user %s: acknowledged companies missing, or refused deletes "
                             "applied" % u)
            self.assertEqual({names[c] for c in got - must}, set(),
                             "user %s: companies nobody was told were created" % u)
            self.assertFalse({w.name for w in refused if w.kind == "create"} & set(names.values()),
                             "user %s: a refused create is stored" % u)
            # every acknowledged write reads back exactly as acknowledged
            for cid, body in wr.companies.items():
                o = call(srv.port, "GET", "/api/companies/" + cid, None, wr.auth)
                self.assertEqual((o.status, o.json()), (200, body), "company %s" % cid)
            for w in refused:
                if w.kind == "update" and w.target in wr.companies:
                    self.assertNotEqual(call(srv.port, "GET", "/api/companies/" + w.target, None,
                                             wr.auth).json()["name"], w.name, "a refused update is stored")
            # accounts created through the API: exactly the acknowledged ones
            got_accounts = dict(line.split("|") for line in psql_url(self.url, """
                SELECT a.id, a.name FROM accounts a JOIN companies c ON c.id = a.company_id
                WHERE c.user_id = '%s' AND c.name NOT LIKE 'tree-%%'""" % u).splitlines())
            acked_accounts = {w.o.json()["id"]: w.o.json() for w in acked if w.kind == "account"}
            self.assertEqual(set(acked_accounts) - set(got_accounts), set(), "acknowledged accounts lost")
            unexpected = {got_accounts[a] for a in set(got_accounts) - set(acked_accounts)}
            self.assertEqual(unexpected, set(), "user %s: accounts nobody was told were created" % u)
            for aid, body in acked_accounts.items():
                o = call(srv.port, "GET", "/api/accounts/" + aid, None, wr.auth)
                self.assertEqual((o.status, o.json()), (200, body))
            # cascades: each seeded tree whole or gone, never in between
            per_tree = psql_url(self.url, """
                SELECT c.id, count(DISTINCT a.id), count(DISTINCT p.id), count(DISTINCT k.id)
                FROM companies c LEFT JOIN accounts a ON a.company_id = c.id
                LEFT JOIN personas p ON p.account_id = a.id LEFT JOIN campaigns k ON k.persona_id = p.id
                WHERE c.user_id = '{u}' AND c.name LIKE 'tree-%' GROUP BY c.id""".format(u=u))
            for line in per_tree.splitlines():
                cid, na, np_, nk = line.split("|")
                self.assertEqual((na, np_, nk), ("2", "4", "4"), "tree %s half deleted" % cid)
        orphans = psql_url(self.url, """
            SELECT (SELECT count(*) FROM accounts a WHERE NOT EXISTS (SELECT 1 FROM companies c WHERE c.id = a.company_id))
                 + (SELECT count(*) FROM personas p WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = p.account_id))
                 + (SELECT count(*) FROM campaigns k WHERE NOT EXISTS (SELECT 1 FROM personas p WHERE p.id = k.persona_id))""")
        self.assertEqual(orphans, "0")
        self.assertGreater(sum(1 for w in everything if w.kind == "delete" and w.o.status == 204), 0)
        def per_outage(ws):
            return ", ".join("%s stop %d" % (m, sum(1 for w in ws if w.o.sent < first and w.o.answered >= stopping))
                             for (m, _, _, _, _), (stopping, first) in zip(outages, deaths))
        print("\nwrites: %d (%s); %s" % (
            len(everything), ", ".join("%s %s: %d" % (k, s, n) for (k, s), n in sorted(statuses.items())),
            "; ".join("%s stop: service back %.3f s after the database was ready (down %.1f s)"
                      % (m, rec - ready, ready - down) for m, _, down, ready, rec in outages)))
        print("slowest answer %.3f s; refused writes in flight when the database died: %s; "
              "COMMITs whose answer was lost, settled by asking the database: %s" % (
                  slowest, per_outage([w for w in everything if w.o.status == 503]),
                  ", ".join("%s %d" % kv for kv in sorted(settled.items()))))
        self.assertEqual(srv.stop(), 0)


# ---------------------------------------------------------------------------
# LLM providers that fail in every way a network and a provider can
# ---------------------------------------------------------------------------

CUT_JSON = ('{"id":"chatcmpl-x","object":"chat.completion","choices":[{"index":0,"message":'
            '{"role":"assistant","content":"{\\"company_name\\": \\"Ac')

# (name, provider, step, status when it is the only provider)
FAULTS = [
    ("hang", "openai", {"hang": True}, 504),
    ("reset before answering", "openai", {"reset": True}, 502),
    ("reset mid-answer", "openai", {"reset_mid": True, "answer": OVERVIEW}, 502),
    ("500", "openai", {"error": "server"}, 502),
    ("429, Retry-After past the deadline", "openai", {"error": "rate_limit", "retry_after": 30}, 502),
    ("529 overloaded", "anthropic", {"error": "overloaded"}, 502),
    ("body cut off", "openai", {"truncated_body": True, "answer": OVERVIEW}, 502),
    ("200 with its JSON cut off", "openai",
     {"status": 200, "body": CUT_JSON, "headers": {"Content-Type": "application/json"}}, 502),
    ("endless stream, slow", "openai", {"stream": True, "interval_ms": 100}, 504),
    ("endless stream, fast", "openai", {"stream": True, "interval_ms": 0, "chunk_bytes": 65536}, 502),
]
DEADLINE = 1.5      # GTM_GENERATE_TIMEOUT for these servers
SLACK = 1.5 * SLOW  # a busy 2-core machine (or valgrind): answer within the deadline plus this


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class GenFixture(unittest.TestCase):
    """A database, the fake providers and a local website, shared by a class."""

    @classmethod
    def setUpClass(cls):
        pgutil.require()
        cls.db = pgutil.MigratedDatabase().__enter__()
        cls.fake = FakeLLM().start()
        cls.site = Website()

    @classmethod
    def tearDownClass(cls):
        cls.site.close()
        cls.fake.stop()
        cls.db.__exit__(None, None, None)

    def setUp(self):
        self.fake.reset()

    def server(self, providers, **env):
        e = dict(DATABASE_URL=self.db.url, GTM_FETCH_ALLOW="127.0.0.1:%d" % self.site.port,
                 LLM_PROVIDERS=",".join(providers), GTM_GENERATE_TIMEOUT=str(DEADLINE),
                 LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD="1000")
        for p in providers:
            e["%s_API_KEY" % p.upper()] = "test-key-" + p
            e["%s_BASE_URL" % p.upper()] = self.fake.url(p)
        e.update(env)
        srv = Server(env=e, module_dir=os.environ["MODULE_DIR"]).start()
        self.addCleanup(srv.__exit__, None, None, None)
        return srv

    def generate(self, srv, tag, url=None):
        return call(srv.port, "POST", "/demo/companies/generate-ai",
                    {"website_url": url or self.site.url(), "user_inputted_context": tag + " " + uuid.uuid4().hex})

    def settle(self, what):
        """gtmd has let go of every call to the fake: nothing in flight there,
        and no more open connections than idle keep-alive ones."""
        ok = self.fake.wait_stats(lambda st: st["in_flight"] == 0 and st["open_connections"] <= 2, 5)
        self.assertTrue(ok, "%s: connections to the provider left open: %s" % (what, self.fake.stats()))

    def check_error(self, o, status, what):
        self.assertIsNone(o.error, what)
        self.assertEqual(o.status, status, (what, o.body))
        self.assertEqual(o.headers.get("content-type"), "application/json", what)
        self.assertIsInstance(o.json()["detail"], str, what)
        self.assertLess(o.answered - o.sent, DEADLINE + SLACK, "%s: answered after %.2f s" % (what, o.answered - o.sent))


class ProviderFaultTest(GenFixture):
    def test_each_fault_with_one_provider(self):
        times = {}
        for provider in ("openai", "anthropic"):
            cases = [c for c in FAULTS if c[1] == provider]
            srv = self.server((provider,))
            self.fake.set_default(provider, {"answer": OVERVIEW})
            self.assertEqual(self.generate(srv, "warm").status, 200)
            self.settle("warm-up")
            fds = open_fds(srv.proc.pid)
            rss = rss_kib(srv.proc.pid)
            for name, _, step, status in cases:
                self.fake.set_default(provider, step)
                o = self.generate(srv, name)
                self.check_error(o, status, name)
                times[name] = o.answered - o.sent
                self.settle(name)             # gtmd hung up by itself (a release would hide it)
            self.fake.set_default(provider, {"answer": OVERVIEW})
            o = self.generate(srv, "after")
            self.assertEqual(o.status, 200, o.body)   # nothing broken: the next call works
            self.settle("after")
            self.assertLessEqual(open_fds(srv.proc.pid), fds + 2, "file descriptors leaked")
            if not sanitized(srv.proc.pid):
                grew = rss_kib(srv.proc.pid) - rss
                self.assertLess(grew, 32 * 1024, "RSS grew by %d KiB over the faults" % grew)
            self.assertEqual(srv.stop(), 0)
        print("\n" + "; ".join("%s: %.2f s" % kv for kv in times.items()))

    def test_retry_after_is_honoured(self):
        srv = self.server(("openai",))
        self.fake.script("openai", [{"error": "rate_limit", "retry_after": 0.6}, {"answer": OVERVIEW}])
        o = self.generate(srv, "429")
        self.assertEqual(o.status, 200, o.body)
        first, second = self.fake.requests("openai")[:2]
        self.assertGreaterEqual(second["t"] - first["t"], 0.6)
        self.assertEqual(srv.stop(), 0)

    def test_failover_on_each_fault(self):
        srv = self.server(("openai", "anthropic"))
        self.fake.set_default("anthropic", {"answer": OVERVIEW})
        times = {}
        for name, provider, step, _ in FAULTS:
            if provider != "openai":
                continue
            self.fake.set_default("openai", step)
            before = len(self.fake.requests("anthropic"))
            tried = len(self.fake.requests("openai"))
            o = self.generate(srv, "failover " + name)
            self.assertIsNone(o.error, name)
            self.assertEqual(o.status, 200, (name, o.body))
            self.assertLess(o.answered - o.sent, DEADLINE + SLACK, name)
            self.assertEqual(len(self.fake.requests("anthropic")), before + 1, name)
            self.assertGreater(len(self.fake.requests("openai")), tried, name)
            times[name] = o.answered - o.sent
            self.settle(name)
        print("\n" + "; ".join("%s: %.2f s" % kv for kv in times.items()))
        self.assertEqual(srv.stop(), 0)

    def test_breaker_opens_then_closes_by_itself(self):
        srv = self.server(("openai",), LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD="2",
                          LLM_CIRCUIT_BREAKER_RECOVERY_TIMEOUT="2")

        def breaker():
            st = request(srv, "GET", "/health/detailed", admin=True).json()
            return [p["breaker"] for p in st["providers"] if p["name"] == "openai"][0]

        self.fake.set_default("openai", {"error": "server"})
        self.assertEqual(self.generate(srv, "b1").status, 502)
        self.assertEqual(breaker(), "closed")
        o = self.generate(srv, "b2")
        self.assertEqual(o.status, 502)
        opened, told = o.sent, o.answered    # the failure that opened it came between these
        self.assertEqual(breaker(), "open")
        self.assertEqual(metric(srv, "gtm_llm_breaker_state", {"provider": "openai"}), 1)
        calls = len(self.fake.requests("openai"))
        o = self.generate(srv, "b3")
        self.check_error(o, 503, "open circuit")
        self.assertIn(o.headers.get("retry-after"), ("1", "2"))
        self.assertLess(o.answered - o.sent, 1.0 * SLOW)  # refused at once, no provider call
        self.assertEqual(len(self.fake.requests("openai")), calls)
        # the provider heals; the breaker half-opens by itself after the recovery time
        self.fake.set_default("openai", {"answer": OVERVIEW})
        state = breaker()
        while state == "open" and time.monotonic() < opened + 10:
            time.sleep(0.05)       # the breaker has no event to wait on: poll its state
            state = breaker()
        half_open = time.monotonic()
        self.assertEqual(state, "half_open")
        self.assertGreaterEqual(half_open - opened, 1.95)
        o = self.generate(srv, "b4")
        self.assertEqual(o.status, 200, o.body)
        self.assertEqual(breaker(), "closed")
        self.assertEqual(metric(srv, "gtm_llm_breaker_state", {"provider": "openai"}), 0)
        print("\nbreaker half-open %.2f s after the 502 that opened it (recovery timeout 2 s), closed by the "
              "first good answer" % (half_open - told))
        self.assertEqual(srv.stop(), 0)


# ---------------------------------------------------------------------------
# Firecrawl down, names that do not resolve
# ---------------------------------------------------------------------------

class FakeFirecrawl:
    """tests/fakes/fake_firecrawl.py as a process of this test, stopped by pid."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(FAKES, "fake_firecrawl.py"), "--port", "0",
                                      "--key", "fc-test"] + list(args),
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.close()
            raise AssertionError("fake Firecrawl did not start: %r" % line)
        self.port = int(line.split()[1])

    def requests(self):
        s = socket.create_connection(("127.0.0.1", self.port), 5)
        c = Conn(s)
        c.send(raw_request("GET", "/_fake/requests"))
        r = c.read_response()
        c.close()
        return r.json()["requests"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


class SiteFaultTest(GenFixture):
    # resolver timeouts bounded, should the name server be slow rather than
    # say "no such name" (glibc reads RES_OPTIONS)
    DNS_ENV = {"RES_OPTIONS": "timeout:1 attempts:1"}

    def test_firecrawl_down_the_built_in_fetcher_reads_the_site(self):
        closed = free_port()
        srv = self.server(("openai",), FIRECRAWL_API_KEY="fc-test",
                          FIRECRAWL_BASE_URL="http://127.0.0.1:%d" % closed, WEB_CACHE_TTL_HOURS="0")
        self.fake.set_default("openai", {"answer": OVERVIEW})
        hits = self.site.hits
        o = self.generate(srv, "firecrawl refused", self.site.url("/firecrawl-refused"))
        self.assertEqual(o.status, 200, o.body)
        self.assertIs(o.json()["metadata"]["website_read"], True)
        self.assertEqual(self.site.hits, hits + 1)          # read by the built-in fetcher
        self.assertIn("Automated bank reconciliation", self.fake.requests("openai")[-1]["body"]["messages"][1]["content"])
        self.assertLess(o.answered - o.sent, DEADLINE + SLACK)
        self.assertTrue(srv.wait_log(lambda r: "firecrawl failed for" in r.get("msg", "")), srv.lines[-5:])
        self.assertEqual(srv.stop(), 0)
        refused = o.answered - o.sent

        # Firecrawl that never answers: it gets part of the website's time, the fetcher the rest
        fc = FakeFirecrawl("--mode", "timeout", "--hang-ms", "30000")
        self.addCleanup(fc.close)
        srv = self.server(("openai",), FIRECRAWL_API_KEY="fc-test", FIRECRAWL_BASE_URL="http://127.0.0.1:%d" % fc.port,
                          WEB_CACHE_TTL_HOURS="0", GTM_GENERATE_TIMEOUT="4")
        o = self.generate(srv, "firecrawl hangs", self.site.url("/firecrawl-hangs"))
        self.assertEqual(o.status, 200, o.body)
        self.assertIs(o.json()["metadata"]["website_read"], True)
        self.assertEqual(self.site.hits, hits + 2)
        self.assertEqual(len(fc.requests()), 1)
        self.assertLess(o.answered - o.sent, 4 + SLACK)
        self.assertEqual(srv.stop(), 0)
        print("\nFirecrawl refused: %.2f s; Firecrawl hanging: %.2f s (deadline 4 s)" % (refused, o.answered - o.sent))

    def test_website_that_does_not_resolve(self):
        srv = self.server(("openai",), WEB_CACHE_TTL_HOURS="0", **self.DNS_ENV)
        self.fake.set_default("openai", {"answer": OVERVIEW})
        o = self.generate(srv, "dns", "http://gtm-faults-%s.invalid/" % uuid.uuid4().hex[:8])
        self.assertEqual(o.status, 200, o.body)
        meta = o.json()["metadata"]
        self.assertIs(meta["website_read"], False)
        self.assertRegex(meta["website_error"], "(?i)resolve")
        self.assertLess(o.answered - o.sent, DEADLINE + SLACK)
        self.assertEqual(srv.stop(), 0)

    def test_provider_that_does_not_resolve(self):
        bad = "http://api.gtm-faults-%s.invalid/v1" % uuid.uuid4().hex[:8]
        srv = self.server(("openai",), OPENAI_BASE_URL=bad, GTM_GENERATE_TIMEOUT="4", **self.DNS_ENV)
        o = self.generate(srv, "provider dns")
        self.check_error(o, 502, "provider name does not resolve")
        self.assertRegex(o.json()["detail"], "(?i)resolve")
        self.assertEqual(srv.stop(), 0)
        # with a second provider, it answers
        srv = self.server(("openai", "anthropic"), OPENAI_BASE_URL=bad, GTM_GENERATE_TIMEOUT="4", **self.DNS_ENV)
        self.fake.set_default("anthropic", {"answer": OVERVIEW})
        o = self.generate(srv, "provider dns failover")
        self.assertEqual(o.status, 200, o.body)
        self.assertLess(o.answered - o.sent, 4 + SLACK)
        self.assertEqual(srv.stop(), 0)


# ---------------------------------------------------------------------------
# stderr on a full disk
# ---------------------------------------------------------------------------

class DetachedServer:
    """gtmd with stderr going to a file of the test's choosing (Server reads a
    pipe); ready when /health answers; stopped by pid."""

    def __init__(self, stderr_path, env=None):
        self.cfg = Server(env=env)                # for its ports and environment
        self.port = self.cfg.port
        self.admin_port = self.cfg.admin_port
        self.err = open(stderr_path, "ab")
        self.proc = subprocess.Popen([os.environ["GTMD"]], env=self.cfg.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 15
        while True:
            o = call(self.port, "GET", "/health", timeout=2)
            if o.status == 200 or self.proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)       # nothing to read the start-up from: poll the listener
        if o.status != 200:
            self.close()
            raise AssertionError("gtmd did not start (%s)" % o.error)

    def dropped(self):
        return metric(self, "gtm_log_lines_dropped_total")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self.err.close()
        return code

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def fill(directory):
    """Fills the file system of directory; returns the filler's path."""
    path = os.path.join(directory, "filler")
    with open(path, "wb", buffering=0) as f:
        chunk = b"x" * 4096
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:
            while True:
                f.write(b"x")
        except OSError:
            pass
    return path


class LogDiskFullTest(unittest.TestCase):
    def hammer(self, srv, n):
        statuses = [call(srv.port, "GET", "/health").status for _ in range(n)]
        self.assertEqual(statuses, [200] * n)

    def test_stderr_is_dev_full(self):
        srv = DetachedServer("/dev/full", env={"GTM_MODULE_DIR": os.environ["FX_MODULE_DIR"]})
        self.addCleanup(srv.close)
        before = srv.dropped()
        self.assertGreater(before, 0)          # the start-up lines already
        self.hammer(srv, 100)
        self.assertGreaterEqual(srv.dropped() - before, 100)
        self.assertEqual(srv.stop(), 0)

    def test_disk_fills_then_frees(self):
        mnt = tempfile.mkdtemp(prefix="gtm-logfs-")
        self.addCleanup(os.rmdir, mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt], capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here (%s): the /dev/full test covers the full disk"
                          % r.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", mnt], capture_output=True)
        log = os.path.join(mnt, "gtmd.log")
        srv = DetachedServer(log, env={"GTM_MODULE_DIR": os.environ["FX_MODULE_DIR"]})
        self.addCleanup(srv.close)
        self.hammer(srv, 20)
        self.assertEqual(srv.dropped(), 0)
        filler = fill(mnt)
        size_full = os.path.getsize(log)
        # full: serving goes on, lines are counted as dropped
        t0 = time.monotonic()
        self.hammer(srv, 200)
        full_rate = 200 / (time.monotonic() - t0)
        dropped = srv.dropped()
        with open(log, "rb") as f:
            squeezed = f.read()[size_full:]
        self.assertLessEqual(len(squeezed), 4096)       # at most the file's last page filled up
        self.assertGreaterEqual(dropped + squeezed.count(b"\n"), 200)
        self.assertGreaterEqual(dropped, 150)
        # space again: logging resumes, nothing more is dropped
        os.unlink(filler)
        self.hammer(srv, 50)
        resumed = srv.dropped()
        self.hammer(srv, 50)
        self.assertEqual(srv.dropped(), resumed)
        self.assertEqual(srv.stop(), 0)
        with open(log, "rb") as f:
            tail = f.read()[size_full:]
        lines = tail.split(b"\n")
        self.assertEqual(lines[-1], b"")       # ends with a whole line
        parsed, torn = [], []
        for line in lines[1:-1]:              # lines[0] may end a line written before the disk filled
            try:
                parsed.append(json.loads(line))
            except ValueError:
                torn.append(line)
        # the write that filled the disk may have left a fragment of one line:
        # it stays on a line of its own, never glued to the next record
        self.assertLessEqual(len(torn), 1, torn)
        for line in torn:
            self.assertEqual(line.count(b'{"time"'), 1, line)
        health = [p for p in parsed if p.get("path") == "/health"]
        self.assertGreaterEqual(len(health), 99)
        self.assertTrue(any("stopped" in p.get("msg", "") or "shut" in p.get("msg", "") for p in parsed[-5:]),
                        parsed[-5:])
        print("\nwith the disk full: %.0f req/s, %d lines dropped; after: %d lines written, none dropped"
              % (full_rate, dropped, len(parsed)))


# ---------------------------------------------------------------------------
# A worker killed while it holds work
# ---------------------------------------------------------------------------

def socket_owners(pids, server_port):
    """{client port: pid} for the connections to server_port each pid holds."""
    inode_pid = {}
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inode_pid[target[8:-1]] = pid
        except OSError:
            pass
    owners = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for row in f:
            cols = row.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if int(local.split(":")[1], 16) == server_port and inode in inode_pid:
                owners[int(remote.split(":")[1], 16)] = inode_pid[inode]
    return owners


class KeepAliveClient(threading.Thread):
    """Generations and health checks on one keep-alive connection; on a
    failure it records whether any byte of the answer had come, and opens a
    new connection."""

    def __init__(self, port, n, stop):
        super().__init__(daemon=True)
        self.port, self.n, self.stop = port, n, stop
        self.ok, self.errors, self.statuses = [], [], {}
        self.lock = threading.Lock()
        self.conn = None
        self.local_port = None

    def connect(self):
        self.conn = CountingConn(socket.create_connection(("127.0.0.1", self.port), 15))
        self.local_port = self.conn.sock.getsockname()[1]

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            if self.conn is None:
                self.connect()
            port_then = self.local_port
            if i % 2:
                req = raw_request("POST", "/demo/companies/generate-ai",
                                  {"website_url": "http://127.0.0.1:9/",   # refused by the SSRF guard, at once
                                   "user_inputted_context": "c%d-%d-%s" % (self.n, i, uuid.uuid4().hex)})
            else:
                req = raw_request("GET", "/health")
            t0 = time.monotonic()
            self.conn.received = 0
            try:
                self.conn.send(req)
                r = self.conn.read_response()
                with self.lock:
                    self.ok.append(time.monotonic())
                    self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            except (OSError, EOFError) as e:
                with self.lock:
                    self.errors.append((t0, time.monotonic(), port_then, repr(e), self.conn.received > 0))
                self.conn.close()
                self.conn = None
        if self.conn:
            self.conn.close()


class WorkerKilledTest(unittest.TestCase):
    CLIENTS = 6

    def test_killed_worker_loses_only_its_own_connections(self):
        pgutil.require(self)
        from test_workers import worker_pids
        db = pgutil.MigratedDatabase().__enter__()
        self.addCleanup(db.__exit__, None, None, None)
        fake = FakeLLM().start()
        self.addCleanup(fake.stop)
        fake.set_default("openai", {"answer": OVERVIEW, "delay_ms": 250})
        srv = Server(env={"GTM_WORKERS": "2", "GTM_MODULE_DIR": os.environ["MODULE_DIR"], "DATABASE_URL": db.url,
                          "OPENAI_API_KEY": "k", "OPENAI_BASE_URL": fake.url("openai"), "LLM_PROVIDERS": "openai",
                          "GTM_GENERATE_TIMEOUT": "10", "WEB_CACHE_TTL_HOURS": "0"})
        srv.start(expect_ready=False)
        self.addCleanup(srv.__exit__, None, None, None)

        def ready():
            pids = worker_pids(srv)
            listening = [r.get("worker") for r in srv.records() if "listening on" in r.get("msg", "")]
            return len(pids) == 2 and all(listening.count(p) >= 2 for p in pids)
        self.assertTrue(srv.wait_for(lambda: ready() or srv.proc.poll() is not None, 20), srv.lines[-10:])
        workers = worker_pids(srv)

        stop = threading.Event()
        clients = []
        # connect until both workers hold some of the clients' connections
        deadline = time.monotonic() + 10
        while True:
            for c in clients:
                c.conn.close()
            clients = [KeepAliveClient(srv.port, n, stop) for n in range(self.CLIENTS)]
            for c in clients:
                c.connect()
            owners = {}
            while time.monotonic() < deadline and len(owners) < self.CLIENTS:
                time.sleep(0.01)    # accept() is the workers' business: poll /proc until they have
                owners = socket_owners(workers, srv.port)
                owners = {c.local_port: owners[c.local_port] for c in clients if c.local_port in owners}
            if len(set(owners.values())) == 2 or time.monotonic() > deadline:
                break
        self.assertEqual(len(set(owners.values())), 2, "the kernel gave every connection to one worker")
        for c in clients:
            c.start()
        try:
            self.assertTrue(fake.wait_stats(lambda st: st["in_flight"] >= 3, 10), "no generation in flight")
            victim = max(workers, key=lambda p: list(owners.values()).count(p))
            on_victim = {c.n for c in clients if owners[c.local_port] == victim}
            held = {c.n: c.local_port for c in clients}
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            self.assertTrue(srv.wait_log(lambda r: r.get("msg", "").startswith("worker %d killed by signal 9" % victim)))
            self.assertTrue(srv.wait_for(lambda: len(worker_pids(srv)) == 3, 10), srv.lines[-5:])
            # the survivor and the replacement serve everyone, the victim's clients included
            self.assertTrue(srv.wait_for(lambda: all(len([t for t in c.ok if t > killed_at + 0.5]) >= 3
                                                     for c in clients), 20),
                            [(c.n, len(c.ok), c.errors) for c in clients])
        finally:
            stop.set()
            for c in clients:
                c.join(30)
        for c in clients:
            self.assertEqual(set(c.statuses), {200}, (c.n, c.statuses))
            self.assertFalse([e for e in c.errors if e[4]], "half an answer reached client %d" % c.n)
            if c.n in on_victim:
                # one failure: the connection the victim held, at the kill
                self.assertEqual(len(c.errors), 1, (c.n, c.errors))
                self.assertEqual(c.errors[0][2], held[c.n])
                self.assertLess(c.errors[0][0], killed_at + 0.5 * SLOW)
            else:
                self.assertEqual(c.errors, [], "client %d was on the survivor" % c.n)
        # the victim's provider calls went with it; nothing is stuck at the provider
        self.assertTrue(fake.wait_stats(lambda st: st["in_flight"] == 0, 5), fake.stats())
        print("\n%d of %d keep-alive clients were on the killed worker: each lost that connection once, "
              "with no partial answer; %d answers in all" % (len(on_victim), self.CLIENTS,
                                                             sum(len(c.ok) for c in clients)))
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
