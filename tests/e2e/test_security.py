"""Security review as tests, against the real binary, a real Postgres, a fake
Stack Auth and a fake LLM provider:

- forged credentials of every kind on every authenticated route (401, and
  nothing written);
- cross-tenant access on every route of GET /admin/routes: user B with user
  A's ids in paths, queries and bodies gets exactly what a random id gets
  (404), sees none of A's rows, and A's rows read back unchanged;
- SQL injection strings in every string field of every create/update body,
  every query and path parameter and the credential headers: never a 5xx,
  stored values read back byte for byte, a canary table untouched;
- header and log injection: CR/LF and other control bytes, raw and
  percent-encoded, in every client value that reaches a response header
  (Origin, X-Request-Id, Access-Control-Request-Headers, the Location of
  trailing-slash redirects) or a log line; checked on the raw bytes;
- path traversal: URL paths, GTM_MODULE_DIR (.., symlinks, FIFOs, files that
  are not modules, the hot-swap staging copy), GTM_PROMPT_DIR (templates have
  no includes, schemas no external $ref), template syntax in user input,
  website URLs with other schemes;
- oversized and deeply nested JSON, huge numbers, duplicate keys, invalid
  UTF-8, NUL in strings: a clean 4xx each and the server still serving;
- the HTTPS listener scanned by Debian's sslscan: TLS 1.2 only, AEAD suites
  with forward secrecy, strong ECDHE groups, no renegotiation, no
  compression.

Routes come from the live route table and request bodies from
/openapi.json, so a new route or field is covered without editing this file
(a new kind of path or query id fails loudly until ID_KINDS knows it)."""
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))

import jwt as pyjwt  # noqa: E402

import pgutil  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402
from harness import FX_MODULE_DIR, Server, request  # noqa: E402
from stackauth import FakeStack, Key, b64u  # noqa: E402
from test_openapi import resolve  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.setrecursionlimit(20000)     # Python's json and == on the 2,000-deep values below
SOURCE_ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
CERTS = os.environ.get("TLS_CERT_DIR", "")
EC = (os.path.join(CERTS, "ec-chain.pem"), os.path.join(CERTS, "ec-key.pem"))
RSA = (os.path.join(CERTS, "rsa-chain.pem"), os.path.join(CERTS, "rsa-key.pem"))
METHODS = ("get", "put", "post", "delete", "patch")

# Path and query parameters that name a row, and the kind of row.  A route
# with another *_id parameter makes the cross-tenant test fail until the
# parameter is added here.
ID_KINDS = {"company_id": "company", "account_id": "account", "persona_id": "persona",
            "campaign_id": "campaign", "key_id": "key"}
# The first path segment under /api/ of a create or update route, and its table.
TABLES = {"companies": "companies", "accounts": "accounts", "personas": "personas",
          "campaigns": "campaigns", "api-keys": "gtm_api_keys"}

SQL_STRINGS = [
    "' OR '1'='1", "' OR 1=1 --", "'; DROP TABLE users; --", '"; DROP TABLE companies; --',
    "1; SELECT pg_sleep(10); --", "'||(SELECT current_user)||'", "' UNION SELECT key_hash FROM gtm_api_keys --",
    "$1", "$1::text || $2", "$$; DROP TABLE users; $$", "$q$ x $q$", "?", ":name", "%s%n%x%d", "%' OR '%'='",
    "\\", "\\'", "\\\\'; --", "E'\\x27 OR 1=1'", "\\x00", "\\u0000",
    "\x00", "a\x00' OR '1'='1",
    "\u2018 OR \u20181\u2019=\u20191", "\u02bc; DROP TABLE users; --", "\uff07 OR \uff071\uff07=\uff071",
    "\r\n\t\x1b[31m\x7f\x01", "\U0001F600\u2028\u2029\ufeff\u200b",
    "{{json .}}{{#a}}x{{/a}}", "<script>alert(1)</script>",
    "x" * 10240, "'" * 10240,
]
INJECTED = "sec-injected"


# --- helpers ---

def schema_type(schema):
    t = schema.get("type")
    if isinstance(t, list):
        t = [x for x in t if x != "null"]
        t = t[0] if t else None
    return t


def sample(doc, schema):
    """A minimal valid value for schema: its required properties only."""
    schema = resolve(doc, schema)
    t = schema_type(schema)
    if "enum" in schema:
        return schema["enum"][0]
    if t == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: sample(doc, props.get(k, {})) for k in schema.get("required", [])}
    if t == "array":
        return []
    if t == "string":
        return "a@b.example" if schema.get("format") == "email" else "s"
    if t in ("integer", "number"):
        return 1
    if t == "boolean":
        return True
    return {}


def string_fields(doc, schema):
    """(key, kind) for each property holding text: str, list (of strings), obj."""
    schema = resolve(doc, schema)
    out = []
    for k, p in schema.get("properties", {}).items():
        p = resolve(doc, p)
        t = schema_type(p)
        if t == "string":
            out.append((k, "str"))
        elif t == "array" and schema_type(resolve(doc, p.get("items", {}))) == "string":
            out.append((k, "list"))
        elif t == "object":
            out.append((k, "obj"))
    return out


def body_schema(op):
    return (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")


def path_params(pattern):
    return re.findall(r"\{([^}]+)\}", pattern)


def fill(pattern, values):
    return re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], pattern)


def q(value):
    return urllib.parse.quote(value, safe="")


def with_query(path, params):
    if not params:
        return path
    return path + "?" + "&".join("%s=%s" % (k, q(v)) for k, v in params.items())


def read_to_close(s):
    """What the peer sends until it closes (or resets, or the timeout passes)."""
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return out


def raw_exchange(srv, data, timeout=10, admin=False):
    """Sends bytes on a fresh connection and reads until the server closes it
    (send Connection: close).  Returns (status, [header lines as bytes], body)."""
    s = srv.connect(admin=admin)
    s.settimeout(timeout)
    out = b""
    try:
        s.sendall(data)
        out = read_to_close(s)
    except (ConnectionResetError, socket.timeout):
        pass
    finally:
        s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1]) if lines and lines[0].startswith(b"HTTP/1.") else 0
    return status, lines[1:], body


HEADER_LINE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+: [\t\x20-\x7e\x80-\xff]*$")


def sql_stdin(db, sql):
    """Runs sql (any length) in db through psql's stdin; the tuples-only output."""
    env = dict(os.environ, PGDATABASE=db.name)
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"], input=sql, env=env,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("psql failed: %s\n%s" % (sql[:300], r.stderr[-2000:]))
    return r.stdout.strip()


def md5(text):
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def sql_text(text):
    """text as an SQL expression that needs no quoting of its own."""
    return "convert_from(decode('%s', 'hex'), 'UTF8')" % text.encode("utf-8").hex()


def es256_token(key, header, payload_text):
    """A JWS over exactly payload_text (which PyJWT's claims API would re-encode)."""
    return pyjwt.api_jws.encode(payload_text.encode(), key.private, algorithm="ES256", headers=header)


class Fixture(unittest.TestCase):
    """One migrated database, a fake Stack Auth, a fake OpenAI that refuses
    every call at once (so generation runs its whole pipeline, website cache
    included, and fails fast with 502), and the real modules."""

    @classmethod
    def setUpClass(cls):
        pgutil.require()
        cls.cleanups = []
        try:
            cls.db = pgutil.MigratedDatabase().__enter__()
            cls.cleanups.append(lambda: cls.db.__exit__(None, None, None))
            cls.stack = FakeStack()
            cls.cleanups.append(cls.stack.close)
            cls.fake = FakeLLM(defaults={"*": {"error": "auth"}}).start()
            cls.cleanups.append(cls.fake.stop)
            env = dict(cls.stack.env(), DATABASE_URL=cls.db.url, CORS_ORIGINS="*", LLM_PROVIDERS="openai",
                       OPENAI_API_KEY="test-key", OPENAI_BASE_URL=cls.fake.url("openai"),
                       LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD="1000000000")
            cls.srv = Server(env=env, module_dir=os.environ["MODULE_DIR"])
            cls.srv.start()
            cls.cleanups.append(lambda: cls.srv.__exit__(None, None, None))
            r = request(cls.srv, "GET", "/admin/routes", admin=True)
            assert r.status == 200, r.body
            cls.routes = r.json()["routes"]
            r = request(cls.srv, "GET", "/openapi.json")
            assert r.status == 200, r.body
            cls.doc = r.json()
            cls.db.sql("CREATE TABLE sec_canary (id int PRIMARY KEY, v text NOT NULL);"
                       "INSERT INTO sec_canary VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        except BaseException:
            cls.run_cleanups()
            raise

    @classmethod
    def run_cleanups(cls):
        while cls.cleanups:
            cls.cleanups.pop()()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        lines = list(cls.srv.lines)
        cls.run_cleanups()
        assert code == 0, code
        # every line gtmd wrote, whatever the tests sent it, is one JSON object
        # in valid UTF-8 (the harness decodes with 'replace': U+FFFD marks a bad byte)
        for line in lines:
            assert "\ufffd" not in line, "log line is not UTF-8: %r" % line
            rec = json.loads(line)
            assert isinstance(rec, dict) and INJECTED not in rec, line

    # --- users and their rows ---

    def user(self, sub=None):
        return {"Authorization": "Bearer " + self.stack.token(sub or str(uuid.uuid4()))}

    def call(self, method, path, auth=None, body=None):
        return request(self.srv, method, path, body=body, headers=auth)

    def tree(self, tag):
        """A user with one row of every kind, all named tag; returns their ids."""
        sub = str(uuid.uuid4())
        auth = self.user(sub)
        t = {"sub": sub, "auth": auth, "tag": tag}
        r = self.call("POST", "/api/companies", auth,
                      {"company_name": tag, "company_url": "https://%s.example" % tag, "description": tag,
                       "capabilities": [tag], "objections": [tag], "metadata": {"secret": tag}})
        self.assertEqual(r.status, 201, r.body)
        t["company"] = r.json()["id"]
        r = self.call("POST", "/api/accounts?company_id=" + t["company"], auth, {"name": tag, "data": {"secret": tag}})
        self.assertEqual(r.status, 201, r.body)
        t["account"] = r.json()["id"]
        r = self.call("POST", "/api/personas?account_id=" + t["account"], auth, {"name": tag, "data": {"secret": tag}})
        self.assertEqual(r.status, 201, r.body)
        t["persona"] = r.json()["id"]
        r = self.call("POST", "/api/campaigns?account_id=%s&persona_id=%s" % (t["account"], t["persona"]), auth,
                      {"name": tag, "type": "email", "data": {"secret": tag}})
        self.assertEqual(r.status, 201, r.body)
        t["campaign"] = r.json()["id"]
        r = self.call("POST", "/api/auth/api-keys", auth, {"name": tag})
        self.assertEqual(r.status, 201, r.body)
        t["key"], t["key_text"] = r.json()["id"], r.json()["key"]
        return t

    def snapshot(self, t):
        """Every row user t owns or that hangs below t's rows, as JSON text."""
        s = t["sub"]
        mine_c = "SELECT id FROM companies WHERE user_id = '%s'" % s
        mine_a = "SELECT id FROM accounts WHERE company_id IN (%s) OR id = '%s'" % (mine_c, t["account"])
        mine_p = "SELECT id FROM personas WHERE account_id IN (%s) OR id = '%s'" % (mine_a, t["persona"])
        return self.db.sql("""SELECT json_build_object(
            'users', (SELECT json_agg(x ORDER BY x.id) FROM users x WHERE x.id = '{s}'),
            'companies', (SELECT json_agg(x ORDER BY x.id) FROM companies x WHERE x.user_id = '{s}' OR x.id = '{c}'),
            'accounts', (SELECT json_agg(x ORDER BY x.id) FROM accounts x WHERE x.id IN ({a})),
            'personas', (SELECT json_agg(x ORDER BY x.id) FROM personas x WHERE x.id IN ({p})),
            'campaigns', (SELECT json_agg(x ORDER BY x.id) FROM campaigns x
                          WHERE x.account_id IN ({a}) OR x.persona_id IN ({p}) OR x.id = '{k}'),
            'keys', (SELECT json_agg(x ORDER BY x.id) FROM gtm_api_keys x WHERE x.user_id = '{s}' OR x.id = '{key}')
            )::text""".format(s=s, c=t["company"], a=mine_a, p=mine_p, k=t["campaign"], key=t["key"]))

    def assert_rows_read_back(self, t):
        for path in ("/api/companies/" + t["company"], "/api/accounts/" + t["account"],
                     "/api/personas/" + t["persona"], "/api/campaigns/" + t["campaign"]):
            r = self.call("GET", path, t["auth"])
            self.assertEqual((r.status, r.json()["name"], r.json()["data"]["secret" if "companies" not in path
                                                                             else "metadata"]),
                             (200, t["tag"], t["tag"] if "companies" not in path else {"secret": t["tag"]}), path)
        keys = self.call("GET", "/api/auth/profile", t["auth"]).json()["api_keys"]
        self.assertEqual([k["name"] for k in keys], [t["tag"]])
        r = request(self.srv, "POST", "/api/auth/validate", body={"api_key": t["key_text"]})
        self.assertEqual(r.json()["valid"], True)

    def operation(self, route):
        return self.doc["paths"].get(route["path"], {}).get(route["method"], {})

    def query_ids(self, route):
        out = []
        for p in self.operation(route).get("parameters", []):
            if p.get("in") == "query" and p["name"].endswith("_id"):
                self.assertIn(p["name"], ID_KINDS, "%s %s: unknown query id %s: add it to ID_KINDS"
                              % (route["method"], route["path"], p["name"]))
                out.append(p["name"])
        return out

    def base_body(self, route):
        schema = body_schema(self.operation(route))
        return sample(self.doc, schema) if schema else None

    def canary(self):
        return self.db.sql("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM sec_canary") + "|" + \
            self.db.sql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")


class CrossTenantTest(Fixture):
    def ids_of(self, t):
        return {name: t[kind] for name, kind in ID_KINDS.items()}

    def leak_check(self, a, r, method, sent_a_ids):
        text = r.body.decode("utf-8", "replace")
        self.assertNotIn(a["tag"], text, "A's data in B's answer")
        self.assertNotIn(a["key_text"][:12], text, "A's key prefix in B's answer")
        if method == "GET" and 200 <= r.status < 300 and not sent_a_ids:
            for kind in ("company", "account", "persona", "campaign", "key", "sub"):
                self.assertNotIn(a[kind], text, "A's %s id in B's answer" % kind)

    def probe(self, a, b_auth, route, path_ids, query_ids, body, random_path_ids=None, random_query_ids=None):
        """B asks with these ids; returns the Response after the common checks."""
        method = route["method"].upper()
        path = with_query(fill(route["path"], path_ids), query_ids)
        r = self.call(method, path, b_auth, body)
        where = "%s %s" % (method, path)
        # generation: the fake provider refuses every call, which is a 502
        self.assertTrue(r.status < 500 or (route.get("rate_limited") and r.status == 502), (where, r.body))
        self.leak_check(a, r, method, True)
        if random_path_ids is not None:
            # what a random id gets: the same status and body (no existence oracle)
            other = self.call(method, with_query(fill(route["path"], random_path_ids), random_query_ids), b_auth, body)
            self.assertEqual((r.status, r.json()), (other.status, other.json()), where)
            self.assertEqual(r.status, 404, (where, r.body))
            self.assertEqual(list(r.json()), ["detail"], where)
        return r

    def run_probes(self, a, b, b_auth, routes, *, deletes):
        a_ids, b_ids = self.ids_of(a), self.ids_of(b)
        foreign_body_ids = dict(a_ids, user_id=a["sub"], id=a["company"], neon_auth_user_id=a["sub"])
        probed = 0
        for route in routes:
            method = route["method"].upper()
            if (method == "DELETE") != deletes:
                continue
            params = path_params(route["path"])
            for p in params:
                self.assertIn(p, ID_KINDS, "%s %s: unknown path id %s: add it to ID_KINDS" % (method, route["path"], p))
            qids = self.query_ids(route)
            body = self.base_body(route)
            if isinstance(body, dict):
                body.update(foreign_body_ids)
            rand = {p: str(uuid.uuid4()) for p in set(params) | set(qids)}
            if params or qids:
                # every id A's
                self.probe(a, b_auth, route, {p: a_ids[p] for p in params}, {p: a_ids[p] for p in qids}, body,
                           {p: rand[p] for p in params}, {p: rand[p] for p in qids})
                probed += 1
                # one id A's, the others B's own
                for foreign in list(params) + list(qids):
                    if len(params) + len(qids) < 2:
                        break
                    pick = lambda p: a_ids[p] if p == foreign else b_ids[p]
                    r = self.probe(a, b_auth, route, {p: pick(p) for p in params}, {p: pick(p) for p in qids}, body)
                    if method != "GET":
                        self.assertEqual(r.status, 404, (method, route["path"], foreign, r.body))
                    probed += 1
                if not deletes and params:
                    # B's own row, A's ids in the body: answered for B's row only
                    self.probe(a, b_auth, route, {p: b_ids[p] for p in params}, {p: b_ids[p] for p in qids}, body)
                    probed += 1
            elif not (deletes and route["path"] == "/api/neon-auth/user"):
                r = self.probe(a, b_auth, route, {}, {}, body)
                if route.get("rate_limited"):
                    # generation: the fake provider refuses every call (502); A's
                    # ids in the body must not bring A's rows into the prompt
                    for sent in self.fake.requests():
                        self.assertNotIn(a["tag"], json.dumps(sent["body"]), route["path"])
                probed += 1
        return probed

    def test_every_route_refuses_another_users_rows(self):
        a = self.tree("alpha-" + uuid.uuid4().hex)
        b = self.tree("bravo-" + uuid.uuid4().hex)
        before = self.snapshot(a)
        routes = [r for r in self.routes if r["auth"]]
        self.assertGreater(len(routes), 30)
        b_key = {"X-API-Key": b["key_text"]}
        n = 0
        for creds in (b["auth"], b_key):
            n += self.run_probes(a, b, creds, routes, deletes=False)
            n += self.run_probes(a, b, creds, routes, deletes=True)
        self.assertGreater(n, 60)
        # lists: B sees only B's rows
        for path in ("/api/companies", "/api/personas", "/api/accounts?company_id=" + b["company"],
                     "/api/campaigns?account_id=" + b["account"]):
            r = self.call("GET", path, b["auth"])
            names = [x["name"] for x in r.json()]
            # B's tree, and the rows B's own creates above made (named from the schema's sample)
            self.assertEqual((r.status, names[0], set(names) - {b["tag"], "s"}), (200, b["tag"], set()), path)
        # B's rows stayed B's and where they were, whatever ids B's bodies carried
        self.assertEqual(self.db.sql(
            "SELECT (SELECT user_id FROM companies WHERE id = '{c}') || ',' ||"
            " (SELECT company_id FROM accounts WHERE id = '{a}') || ',' ||"
            " (SELECT account_id FROM personas WHERE id = '{p}') || ',' ||"
            " (SELECT account_id || '/' || persona_id FROM campaigns WHERE id = '{k}')".format(
                c=b["company"], a=b["account"], p=b["persona"], k=b["campaign"])),
            "%s,%s,%s,%s/%s" % (b["sub"], b["company"], b["account"], b["account"], b["persona"]))
        # B deletes itself: A keeps everything
        r = self.call("DELETE", "/api/neon-auth/user", b["auth"])
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.db.sql("SELECT count(*) FROM companies WHERE user_id = '%s'" % b["sub"]), "0")
        self.assertEqual(self.snapshot(a), before)
        self.assert_rows_read_back(a)

    def test_generate_bodies_with_another_users_ids(self):
        a = self.tree("alpha-" + uuid.uuid4().hex)
        b_auth = self.user()
        ids = {"company_id": a["company"], "account_id": a["account"], "persona_id": a["persona"],
               "campaign_id": a["campaign"], "id": a["company"], "user_id": a["sub"]}
        gen = [r for r in self.routes if r.get("rate_limited")]
        self.assertGreaterEqual(len(gen), 8)
        for route in gen:
            self.fake.reset()
            body = self.base_body(route) or {}
            body.update(ids)
            for key, kind in string_fields(self.doc, body_schema(self.operation(route))):
                if kind == "obj":
                    body[key] = dict(ids)
            r = self.call("POST", route["path"], b_auth if route["auth"] else None, body)
            self.assertIn(r.status, (422, 502), (route["path"], r.body))
            self.assertNotIn(a["tag"], r.body.decode(), route["path"])
            sent = self.fake.requests()
            if r.status == 502:
                self.assertTrue(sent, route["path"])
            for s in sent:
                self.assertNotIn(a["tag"], json.dumps(s["body"]), route["path"])


class ForgedCredentialsTest(Fixture):
    def forgeries(self, a, b):
        """(name, headers) that must each be refused with 401 on every authenticated route."""
        st = self.stack
        sub = a["sub"]
        now = int(time.time())
        stranger = Key("EC")
        under_kid = Key("EC")
        under_kid.kid = st.keys[0].kid
        good = st.token(sub).split(".")
        other = st.token(b["sub"]).split(".")
        deep = '{"sub":"%s","iss":"%s","exp":%d,"x":%s1%s}' % (sub, st.issuer, now + 600, "[" * 5000, "]" * 5000)
        out = [
            ("alg none", st.token_alg_none(sub)),
            ("alg none, real signature attached", "%s.%s.%s" % (b64u(json.dumps({"alg": "none", "kid": st.keys[0].kid})
                                                                      .encode()), good[1], good[2])),
            ("HS256 keyed with the EC public key", st.token_hs256_with_public_key(sub)),
            ("HS256 keyed with the RSA public key", st.token_hs256_with_public_key(sub, st.keys[1])),
            ("RS256 header on the EC kid", st.token_alg_swap(sub)),
            ("B's token with A's sub", st.token_tampered(b["sub"], sub)),
            ("A's header and payload, B's signature", "%s.%s.%s" % (good[0], good[1], other[2])),
            ("A's token without its signature", "%s.%s." % (good[0], good[1])),
            ("A's token, signature one character off", "%s.%s.%s" % (good[0], good[1],
                                                                      good[2][:-2] + ("A" if good[2][-2] != "A" else "B") + good[2][-1])),
            ("a stranger's key, its own kid", st.token(sub, key=stranger)),
            ("a stranger's key under the project's kid", st.token(sub, key=under_kid)),
            ("a stranger's key, its jwk and jku in the header",
             st.token(sub, key=under_kid, headers={"jwk": stranger.jwk, "jku": "http://127.0.0.1:%d/jwks" % st.port})),
            ("expired", st.token(sub, exp=now - 5)),
            ("not yet valid", st.token(sub, nbf=now + 600)),
            ("another issuer", st.token(sub, iss="https://evil.example")),
            ("another audience", st.token(sub, aud="another-project")),
            ("no expiry", st.token(sub, exp=None)),
            ("kid with a path", st.token(sub, headers={"kid": "../../../../etc/passwd"})),
            ("kid with SQL", st.token(sub, headers={"kid": "' OR '1'='1"})),
            ("payload nested 5,000 deep, correctly signed", es256_token(st.keys[0], {"kid": st.keys[0].kid}, deep)),
            ("garbage", "not.a.jwt"),
        ]
        headers = [(name, {"Authorization": "Bearer " + tok}) for name, tok in out]
        key = a["key_text"]
        flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
        for name, k in (("A's key, last character changed", flipped), ("A's key, one character short", key[:-1]),
                        ("A's key and one more character", key + "A"), ("a well-formed key nobody has", "bls_" + "A" * 43),
                        ("A's revoked key", a["revoked_key"]), ("a key with SQL", "bls_' OR '1'='1")):
            headers.append((name + " (X-API-Key)", {"X-API-Key": k}))
            headers.append((name + " (Bearer)", {"Authorization": "Bearer " + k}))
        headers += [("no credentials", {}), ("empty Bearer", {"Authorization": "Bearer "}),
                    ("Basic scheme with A's token", {"Authorization": "Basic " + st.token(sub)}),
                    ("lower-case bearer with A's token", {"Authorization": "bearer " + st.token(sub)}),
                    ("empty X-API-Key", {"X-API-Key": ""})]
        return headers

    def test_every_forgery_on_every_authenticated_route(self):
        a = self.tree("alpha-" + uuid.uuid4().hex)
        b = self.tree("bravo-" + uuid.uuid4().hex)
        r = self.call("POST", "/api/auth/api-keys", a["auth"], {"name": "revoked"})
        revoked = r.json()
        self.assertEqual(self.call("DELETE", "/api/auth/api-keys/" + revoked["id"], a["auth"]).status, 204)
        a["revoked_key"] = revoked["key"]
        # A's real token and key have been seen (and cached) before the forgeries come
        self.assertEqual(self.call("GET", "/api/companies", a["auth"]).status, 200)
        self.assertEqual(self.call("GET", "/api/companies", {"X-API-Key": a["key_text"]}).status, 200)
        # that use writes last_used_at on its own, after the answer: wait for it before the snapshot
        deadline = time.monotonic() + 10
        while self.db.sql("SELECT last_used_at IS NULL FROM gtm_api_keys WHERE id = '%s'" % a["key"]) == "t":
            self.assertLess(time.monotonic(), deadline, "last_used_at never written")
        before = self.snapshot(a)
        counts = self.db.sql("SELECT (SELECT count(*) FROM users) || ',' || (SELECT count(*) FROM companies) || ',' ||"
                             " (SELECT count(*) FROM gtm_api_keys)")
        routes = [r for r in self.routes if r["auth"]]
        ids = {name: a[kind] for name, kind in ID_KINDS.items()}
        forged = self.forgeries(a, b)
        self.assertGreater(len(forged), 35)
        for route in routes:
            path = fill(route["path"], ids)
            qids = self.query_ids(route)
            path = with_query(path, {p: ids[p] for p in qids})
            body = self.base_body(route)
            for name, headers in forged:
                r = request(self.srv, route["method"].upper(), path, body=body, headers=headers)
                self.assertEqual(r.status, 401, (name, route["method"], route["path"], r.body))
                self.assertTrue(r.header("www-authenticate").startswith("Bearer"), name)
                self.assertNotIn(a["tag"], r.body.decode("utf-8", "replace"))
        self.assertEqual(self.snapshot(a), before)
        self.assertEqual(self.db.sql("SELECT (SELECT count(*) FROM users) || ',' || (SELECT count(*) FROM companies)"
                                     " || ',' || (SELECT count(*) FROM gtm_api_keys)"), counts)
        self.assert_rows_read_back(a)


class InjectionTest(Fixture):
    def own_ids(self, t):
        return {name: t[kind] for name, kind in ID_KINDS.items()}

    def writable_routes(self):
        for route in self.routes:
            if route["method"] in ("post", "put") and body_schema(self.operation(route)) \
                    and not route.get("rate_limited"):
                yield route

    def readback_expr(self, answer, key, kind):
        """Where a body field is stored, as an SQL expression over the row."""
        if kind == "str":
            return key if key in answer else "data->>'%s'" % key
        if kind == "list":
            return "data->'%s'->>0" % key
        return None

    def test_sql_strings_in_every_body_field(self):
        b = self.tree("bravo-" + uuid.uuid4().hex)
        canary = self.canary()
        ids = self.own_ids(b)
        checks = []          # (where, table, row id, sql expr, md5 of the text)
        obj_checks = []      # (where, table, row id, sql json expr, md5 of the payload)
        sent = 0
        for route in self.writable_routes():
            op = self.operation(route)
            fields = string_fields(self.doc, body_schema(op))
            self.assertTrue(fields, route["path"])
            path = with_query(fill(route["path"], ids), {p: ids[p] for p in self.query_ids(route)})
            auth = b["auth"] if route["auth"] else None
            segment = route["path"].split("/")[2] if route["path"].startswith("/api/") else ""
            segment = route["path"].split("/")[3] if segment == "auth" else segment
            for key, kind in fields:
                for payload in SQL_STRINGS:
                    body = self.base_body(route)
                    body[key] = payload if kind == "str" else [payload] if kind == "list" else {payload: payload}
                    r = self.call(route["method"].upper(), path, auth, body)
                    sent += 1
                    where = "%s %s %s=%r" % (route["method"], route["path"], key, payload[:40])
                    # 501: POST /api/auth/signup, a stub as upstream's
                    self.assertTrue(r.status < 500 or r.status == 501, (where, r.body[:300]))
                    if "\x00" in payload:
                        self.assertEqual(r.status, 422, (where, r.body[:300]))   # never stored cut short
                    if r.status not in (200, 201) or segment not in TABLES:
                        continue
                    answer = r.json()
                    row = answer.get("id") if route["method"] == "post" else ids[path_params(route["path"])[0]]
                    self.assertIsNotNone(row, where)
                    if kind == "obj":
                        stored = answer.get(key, answer.get("data", {}).get(key))
                        self.assertEqual(stored, {payload: payload}, where)
                        col = key if key in answer else "data->'%s'" % key
                        obj_checks.append((where, TABLES[segment], row, col, md5(payload)))
                    else:
                        got = answer[key] if key in answer else answer.get("data", {}).get(key)
                        self.assertEqual(got, payload if kind == "str" else [payload], where)
                        checks.append((where, TABLES[segment], row, self.readback_expr(answer, key, kind), md5(payload)))
                    if segment != "api-keys":
                        again = self.call("GET", "/api/%s/%s" % (segment, row), auth)
                        self.assertEqual(again.json(), answer, where)
        self.assertGreater(sent, 500)
        self.assertGreater(len(checks), 100)
        self.assertGreater(len(obj_checks), 50)
        # byte for byte in the database, in one statement
        parts = ["SELECT %d AS n, md5(convert_to(%s, 'UTF8')) = '%s' AS ok FROM %s WHERE id = '%s'"
                 % (i, expr, digest, table, row) for i, (_, table, row, expr, digest) in enumerate(checks)]
        parts += ["SELECT %d, (SELECT bool_and(md5(convert_to(k, 'UTF8')) = '%s' AND md5(convert_to(v, 'UTF8')) = '%s')"
                  " FROM jsonb_each_text(%s) AS e(k, v)) FROM %s WHERE id = '%s'"
                  % (len(checks) + i, digest, digest, col, table, row)
                  for i, (_, table, row, col, digest) in enumerate(obj_checks)]
        # the readback of a row is only good until the next payload overwrites it: check the last one of each
        last = {}
        for i, c in enumerate(checks + obj_checks):
            last[(c[1], c[2], c[3])] = i
        keep = sorted(last.values())
        out = sql_stdin(self.db, "SELECT count(*) || '|' || coalesce(string_agg(CASE WHEN ok IS NOT TRUE THEN n::text END,"
                        " ','), '') FROM (%s) t;" % " UNION ALL ".join(parts[i] for i in keep))
        count, _, failed = out.partition("|")
        self.assertEqual(int(count), len(keep), "rows missing")
        bad = [(checks + obj_checks)[int(n)][0] for n in failed.split(",") if n]
        self.assertEqual(bad, [], "stored values differ from what was sent")
        self.assertEqual(self.canary(), canary)

    def test_sql_strings_in_every_query_and_path_parameter(self):
        b = self.tree("bravo-" + uuid.uuid4().hex)
        canary = self.canary()
        ids = self.own_ids(b)
        sent = 0
        for route in self.routes:
            if route["method"] == "delete" or route.get("rate_limited"):
                continue
            op = self.operation(route)
            params = path_params(route["path"])
            queries = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
            base_q = {p: ids[p] for p in queries if p in ID_KINDS}
            auth = b["auth"] if route["auth"] else None
            body = self.base_body(route)
            targets = [("path", p) for p in params] + [("query", p) for p in queries]
            for where_kind, name in targets:
                for payload in SQL_STRINGS + ["../../etc/passwd", "%00", "%2e%2e%2f"]:
                    pv = {p: ids[p] for p in params}
                    qv = dict(base_q)
                    (pv if where_kind == "path" else qv)[name] = payload
                    path = with_query(fill(route["path"], {k: q(v) for k, v in pv.items()}), qv)
                    r = self.call(route["method"].upper(), path, auth, body)
                    sent += 1
                    self.assertLess(r.status, 500, (route["method"], path[:200], r.body[:300]))
                    if where_kind == "path" or name in ID_KINDS:
                        self.assertGreaterEqual(r.status, 400, (route["method"], path[:200], r.body[:300]))
        self.assertGreater(sent, 300)
        self.assertEqual(self.canary(), canary)
        # the owner's rows are where they were
        self.assertEqual(self.call("GET", "/api/companies/" + b["company"], b["auth"]).json()["name"], b["tag"])

    def test_percent_encoded_nul_is_not_cut_off(self):
        # regression: /api/companies/<id>%00junk was answered for <id>, and
        # ?skip=0%00x as skip=0: the answer was for another target than the one sent
        b = self.tree("bravo-" + uuid.uuid4().hex)
        for path in ("/api/companies/%s%%00junk" % b["company"], "/api/companies/%s%%00" % b["company"],
                     "/api/companies?skip=0%00x", "/api/accounts?company_id=%s%%00%%27" % b["company"],
                     "/api/companies/%s/relations%%00/x" % b["company"], "/health%00"):
            r = self.call("GET", path, b["auth"])
            self.assertEqual((r.status, r.json()), (400, {"detail": "Invalid request target"}), path)
        self.assertEqual(self.call("GET", "/api/companies/" + b["company"], b["auth"]).status, 200)

    def test_nul_in_stored_strings_is_422(self):
        # regression: a NUL in a name was cut off silently (accounts, personas,
        # campaigns, keys) and one in data or in a company was a 500 from jsonb
        b = self.tree("bravo-" + uuid.uuid4().hex)
        cases = [
            ("POST", "/api/companies", {"company_name": "a\x00b", "company_url": "u", "description": "d",
                                        "capabilities": [], "objections": [], "metadata": {}}, ["body", "company_name"]),
            ("POST", "/api/companies", {"company_name": "a", "company_url": "u", "description": "d",
                                        "capabilities": ["ok", "x\x00"], "objections": [], "metadata": {}},
             ["body", "capabilities", 1]),
            ("POST", "/api/companies", {"company_name": "a", "company_url": "u", "description": "d", "capabilities": [],
                                        "objections": [], "metadata": {"k": [{"deep": "\x00"}]}},
             ["body", "metadata", "k", 0, "deep"]),
            ("PUT", "/api/companies/" + b["company"], {"data": {"x": "\x00"}}, ["body", "data", "x"]),
            ("POST", "/api/accounts?company_id=" + b["company"], {"name": "x\x00y", "data": {}}, ["body", "name"]),
            ("PUT", "/api/accounts/" + b["account"], {"data": {"k": "a\x00b"}}, ["body", "data", "k"]),
            ("POST", "/api/personas?account_id=" + b["account"], {"name": "p", "data": {"\x01": "\x00"}},
             ["body", "data", "\x01"]),
            ("PUT", "/api/campaigns/" + b["campaign"], {"type": "\x00"}, ["body", "type"]),
            ("POST", "/api/auth/api-keys", {"name": "k\x00"}, ["body", "name"]),
        ]
        for method, path, body, loc in cases:
            r = self.call(method, path, b["auth"], body)
            self.assertEqual(r.status, 422, (method, path, r.body))
            d = r.json()["detail"][0]
            self.assertEqual((d["type"], d["loc"]), ("value_error", loc), (method, path))
        r = request(self.srv, "POST", "/api/auth/validate", body={"api_key": b["key_text"] + "\x00junk"})
        self.assertEqual(r.status, 422, r.body)
        self.assert_rows_read_back(b)

    def test_sql_strings_in_credential_headers(self):
        for payload in SQL_STRINGS:
            for name in ("X-API-Key", "Authorization"):
                value = payload if name == "X-API-Key" else "Bearer " + payload
                data = (b"GET /api/companies HTTP/1.1\r\nHost: x\r\n" + name.encode() + b": " +
                        value.encode("utf-8") + b"\r\nConnection: close\r\n\r\n")
                status, _, body = raw_exchange(self.srv, data)
                # 401, or 400 for bytes HTTP does not allow in a header
                self.assertIn(status, (400, 401), (name, payload[:40], body[:200]))
        self.assertEqual(self.call("GET", "/health").status, 200)


class HeaderInjectionTest(Fixture):
    RAW = [b"\r", b"\n", b"\r\nX-Injected: 1", b"\nX-Injected: 1", b"\rX-Injected: 1", b"\x00", b"\x01", b"\x0b",
           b"\x0c", b"\x1b", b"\x7f", b"\t", b"\xff", b"\xc0\x8a", b"\xe2\x80\xa8"]
    ENCODED = ["%0d%0aX-Injected:%201", "%0aX-Injected:%201", "%0d", "%00", "%E2%80%A8", "%C0%8A", "%u000a",
               "%250d%250a", "\\r\\nX-Injected: 1"]

    def assert_clean_head(self, lines, what):
        for line in lines:
            self.assertRegex(line, HEADER_LINE, what)
            name = line.split(b":", 1)[0].lower()
            self.assertNotIn(name, (b"x-injected", b"set-cookie"), what)

    def test_echoed_header_values(self):
        uid = str(uuid.uuid4())
        templates = {
            # the CORS origin is echoed (CORS_ORIGINS=* here: any origin is)
            "Origin": b"GET /health HTTP/1.1\r\nHost: x\r\nOrigin: http://a%sb\r\nConnection: close\r\n\r\n",
            # the client's request id is echoed when it is made of safe characters
            "X-Request-Id": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: id%sz\r\nConnection: close\r\n\r\n",
            # a preflight echoes the requested headers
            "Access-Control-Request-Headers": (b"OPTIONS /api/companies HTTP/1.1\r\nHost: x\r\nOrigin: http://o\r\n"
                                               b"Access-Control-Request-Method: GET\r\n"
                                               b"Access-Control-Request-Headers: x-a%sb\r\nConnection: close\r\n\r\n"),
            # a trailing-slash redirect builds Location from Host, the path and the query
            "Host": ("GET /api/companies/%s/ HTTP/1.1\r\nHost: h%%sz\r\nConnection: close\r\n\r\n" % uid).encode(),
            "Location path": (b"GET /api/companies/a%sb/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
            "Location query": ("GET /api/companies/%s/?q=a%%sb HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                               % uid).encode(),
            # the access log and the 404 carry the path
            "path": b"GET /nowhere/a%sb HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        }
        n = 0
        for what, tmpl in templates.items():
            values = self.RAW + [e.encode() for e in self.ENCODED]
            for v in values:
                status, lines, body = raw_exchange(self.srv, tmpl.replace(b"%s", v))
                where = "%s with %r" % (what, v)
                self.assertNotEqual(status, 0, where)
                self.assertLess(status, 500, where)
                self.assert_clean_head(lines, where)
                n += 1
                if status == 307:
                    loc = [l for l in lines if l.lower().startswith(b"location:")][0]
                    self.assertNotRegex(loc, rb"[\x00-\x08\x0a-\x1f\x7f]", where)
                    # never another site: an absolute URL on the Host sent, or a path
                    target = loc.split(b": ", 1)[1]
                    self.assertTrue(target.startswith(b"http://h") or re.match(rb"^/[^/\\]", target), (where, target))
                    # a URI: printable ASCII only (regression: \f, \t and \xff in the target were copied raw)
                    self.assertRegex(target, rb"^[\x21-\x7e]+$", where)
        self.assertGreater(n, 150)
        status, lines, _ = raw_exchange(self.srv, templates["Location path"].replace(b"%s", b"\x0c\t\xff"))
        self.assertEqual(status, 307)
        self.assertIn(b"location: http://h/api/companies/a%0C%09%FFb", lines)
        # what is echoed, is echoed whole: the allowed characters pass, nothing else
        status, lines, _ = raw_exchange(self.srv, templates["X-Request-Id"].replace(b"%s", b"-ok.1"))
        self.assertIn(b"x-request-id: id-ok.1z", lines)
        status, lines, _ = raw_exchange(self.srv, templates["Origin"].replace(b"%s", b"-ok"))
        self.assertIn(b"access-control-allow-origin: http://a-okb", lines)
        self.assertEqual(request(self.srv, "GET", "/health").status, 200)

    def test_no_redirect_leaves_the_site(self):
        uid = str(uuid.uuid4())
        cases = [
            b"GET //evil.example/api/companies/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            b"GET /%2F%2Fevil.example/api/companies/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            ("GET /api/companies/%s/ HTTP/1.0\r\n\r\n" % uid).encode(),                     # no Host
            ("GET /api/companies/%s/ HTTP/1.1\r\nHost: evil.example/x\r\nConnection: close\r\n\r\n" % uid).encode(),
            ("GET /api/companies/%s/ HTTP/1.1\r\nHost: a\\@evil.example\r\nConnection: close\r\n\r\n" % uid).encode(),
            ("GET http://evil.example/api/companies/%s/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % uid).encode(),
            ("GET http://evil.example//api/companies/%s/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % uid).encode(),
            ("GET /api/companies/%s// HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % uid).encode(),
            # absolute form: the Location is built from the decoded path (regression: CR LF in it lost the header)
            b"GET http://evil.example/api/companies/a%0d%0aX-Injected:%201%3F%23/ HTTP/1.1\r\nHost: h\r\n"
            b"Connection: close\r\n\r\n",
        ]
        for data in cases:
            status, lines, _ = raw_exchange(self.srv, data)
            self.assertLess(status, 500, data)
            self.assert_clean_head(lines, data)
            if status == 307:
                self.assertEqual(len([l for l in lines if l.lower().startswith(b"location:")]), 1, (data, lines))
            if b"X-Injected" in data:
                self.assertIn(b"location: http://h/api/companies/a%0D%0AX-Injected:%201%3F%23", lines)
            for l in lines:
                if l.lower().startswith(b"location:"):
                    target = l.split(b": ", 1)[1]
                    self.assertTrue(target.startswith(b"http://h/") or re.match(rb"^/[^/\\]", target), (data, target))
                    self.assertRegex(target, rb"^[\x21-\x7e]+$", data)

    def test_log_lines_cannot_be_forged(self):
        forged = '{"level":"error","%s":true}' % INJECTED
        paths = ["/nowhere/a%0a" + q(forged), "/nowhere/%0d%0a" + q(forged) + "%0d%0a", "/nowhere/%ff%fe%c0%af",
                 "/nowhere/%e2%80%a8%22%5c", "/nowhere/%1b[31m%7f", "/api/companies/x%0a" + q(forged)]
        for i, p in enumerate(paths):
            r = request(self.srv, "GET", p, headers={"X-Request-Id": "log-forge-%d" % i})
            self.assertIn(r.status, (400, 401, 404, 422), p)
        r = request(self.srv, "GET", "/api/companies", headers={"Authorization": "Bearer " + "a.b.c\x0b"})
        self.assertEqual(r.status, 400)
        for i, p in enumerate(paths):
            self.assertTrue(self.srv.wait_log(lambda rec: rec.get("req_id") == "log-forge-%d" % i), p)
            rec = [x for x in self.srv.records() if x.get("req_id") == "log-forge-%d" % i][-1]
            # the path is logged decoded, as one JSON string; bytes that are not UTF-8 as U+FFFD
            self.assertEqual(rec["path"], urllib.parse.unquote(p, errors="replace"), p)
        # (tearDownClass checks that every line is one JSON object in UTF-8)


class PathTraversalTest(Fixture):
    PATHS = ["/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/docs/../../etc/passwd",
             "/docs/..%2f..%2f..%2fetc%2fpasswd", "//etc/passwd", "/api/companies/..%2f..%2f..%2fetc%2fpasswd",
             "/api/companies/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/openapi.json/../../etc/passwd",
             "/health/..;/..;/etc/passwd", "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", "/..%5c..%5cetc%5cpasswd",
             "/api/companies/%252e%252e%252fetc%252fpasswd", "/./health/./", "/docs/%2e%2e/openapi.json",
             "/modules/company.so", "/company.so", "/prompts/product_overview.user.tmpl", "/sql/0001_upstream_schema.sql",
             "/api/companies/..", "/api/companies/.", "/api/../api/companies", "/api/%2e%2e/api/companies"]

    def test_url_paths_never_reach_files(self):
        secrets = [b"root:x:0:", b"\x7fELF", b"{{#", b"CREATE TABLE", b"-----BEGIN"]
        auth = self.user()
        for listener in ("public", "admin"):
            for p in self.PATHS:
                for method in ("GET", "HEAD", "POST"):
                    data = ("%s %s HTTP/1.1\r\nHost: h\r\nAuthorization: %s\r\nContent-Length: 0\r\n"
                            "Connection: close\r\n\r\n" % (method, p, auth["Authorization"])).encode()
                    status, lines, body = raw_exchange(self.srv, data, admin=listener == "admin")
                    where = (listener, method, p, status, body[:200])
                    self.assertIn(status, (307, 400, 404, 405, 422), where)
                    for s in secrets:
                        self.assertNotIn(s, body, where)
        # the compiled-in pages are only at their own paths
        self.assertEqual(request(self.srv, "GET", "/docs").status, 200)
        self.assertEqual(request(self.srv, "GET", "/docs/").status, 307)

    def test_template_syntax_in_user_input_is_text(self):
        self.fake.reset()
        evil = "{{json .}} {{#company_context}}X{{/company_context}} {{> /etc/passwd}} {{{raw}}} {{! c }} }}{{"
        r = self.call("POST", "/demo/companies/generate-ai", None,
                      {"website_url": "http://127.0.0.1:9/", "user_inputted_context": evil})
        self.assertEqual(r.status, 502, r.body)
        prompt = json.dumps(self.fake.requests()[0]["body"])
        self.assertIn(json.dumps(evil)[1:-1], prompt)
        self.assertNotIn("root:x:0:", prompt)

    def test_website_url_with_other_schemes_is_not_read(self):
        for url in ("file:///etc/passwd", "file://localhost/etc/passwd", "/etc/passwd", "../../etc/passwd",
                    "gopher://127.0.0.1:5432/_x", "dict://127.0.0.1:5432/x", "ftp://127.0.0.1/etc/passwd",
                    "http://[::1]:%d/" % self.srv.port, "http://0x7f000001:%d/health" % self.srv.port,
                    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:%d/health" % self.srv.admin_port):
            self.fake.reset()
            r = self.call("POST", "/demo/companies/generate-ai", None, {"website_url": url})
            self.assertIn(r.status, (422, 502), (url, r.body))
            for sent in self.fake.requests():
                text = json.dumps(sent["body"])
                for s in ("root:x:0:", '\\"status\\":\\"ok\\"', "ami-id", "gtm_"):
                    self.assertNotIn(s, text, url)


class JsonLimitsTest(Fixture):
    def writable(self):
        for route in self.routes:
            if route["method"] in ("post", "put") and body_schema(self.operation(route)):
                yield route

    def post_raw(self, route, body, auth, ids):
        path = with_query(fill(route["path"], ids), {p: ids[p] for p in self.query_ids(route)})
        return request(self.srv, route["method"].upper(), path, body=body,
                       headers=dict(auth if route["auth"] else {}, **{"Content-Type": "application/json"}))

    def test_nesting_numbers_duplicates_encodings_on_every_body(self):
        b = self.tree("bravo-" + uuid.uuid4().hex)
        ids = {name: b[kind] for name, kind in ID_KINDS.items()}
        deep_arr = "[" * 10000 + "]" * 10000
        deep_obj = '{"a":' * 10000 + "1" + "}" * 10000
        bodies = [
            ("10,000 nested arrays", deep_arr, 422),
            ("10,000 nested objects", deep_obj, 422),
            ("100,000 nested arrays, unclosed", "[" * 100000, 422),
            ("a number 400 digits long", '{"n":' + "9" * 400 + "}", None),
            ("1e400", '{"n":1e400}', None),
            ("-1e400", '{"n":-1e400}', None),
            ("NaN", '{"n":NaN}', 422),
            ("Infinity", '{"n":Infinity}', 422),
            ("invalid UTF-8", b'{"name":"\xff\xfe"}', 422),
            ("overlong UTF-8", b'{"name":"\xc0\xaf"}', 422),
            ("UTF-8 surrogate", b'{"name":"\xed\xa0\x80"}', 422),
            ("escaped lone surrogate", '{"name":"\\ud800"}', 422),
            ("NUL byte raw", b'{"name":"a\x00b"}', 422),
            ("NUL in a key", '{"a\\u0000b":1}', 422),
            ("truncated", '{"name":"x', 422),
            ("trailing garbage", '{"name":"x"}}', 422),
            ("byte order mark", b'\xef\xbb\xbf{"name":"x"}', 422),
        ]
        n = 0
        for route in self.writable():
            for what, body, want in bodies:
                r = self.post_raw(route, body, b["auth"], ids)
                where = (what, route["method"], route["path"], r.status, r.body[:200])
                self.assertGreaterEqual(r.status, 400, where)
                self.assertLess(r.status, 500, where)
                if want:
                    self.assertEqual(r.status, want, where)
                n += 1
        self.assertGreater(n, 300)
        self.assertEqual(request(self.srv, "GET", "/health").status, 200)

    def test_deep_but_parseable_values(self):
        # just under jansson's parse depth (2048): stored, read back, validated,
        # rendered into a prompt; never a crash
        b = self.tree("bravo-" + uuid.uuid4().hex)
        deep = 2000
        value = json.loads('{"a":' * deep + '"end"' + "}" * deep)
        for method, path in (("PUT", "/api/accounts/" + b["account"]), ("PUT", "/api/companies/" + b["company"])):
            r = request(self.srv, method, path, headers=dict(b["auth"], **{"Content-Type": "application/json"}),
                        body='{"data":' + '{"a":' * deep + '"end"' + "}" * deep + "}")
            self.assertEqual(r.status, 200, (path, r.body[:200]))
            self.assertEqual(json.loads(r.body.decode())["data"], value)
            self.assertEqual(self.call("GET", path, b["auth"]).status, 200)
        # a validation error that echoes the whole deep body
        r = request(self.srv, "POST", "/api/auth/validate", headers={"Content-Type": "application/json"},
                    body='{"x":' + '{"a":' * deep + "1" + "}" * deep + "}")
        self.assertEqual(r.status, 422)
        # into a prompt ({{json}}), through the pipeline
        self.fake.reset()
        r = request(self.srv, "POST", "/api/campaigns/positioning", headers=dict(b["auth"], **{"Content-Type": "application/json"}),
                    body='{"company_context":' + '{"a":' * deep + "1" + "}" * deep + "}")
        self.assertIn(r.status, (422, 502), r.body[:200])
        self.assertEqual(request(self.srv, "GET", "/health").status, 200)

    def test_numbers_and_duplicate_keys_as_python_reads_them(self):
        b = self.tree("bravo-" + uuid.uuid4().hex)
        path = "/api/accounts/" + b["account"]
        h = dict(b["auth"], **{"Content-Type": "application/json"})
        r = request(self.srv, "PUT", path, headers=h, body='{"name":"first","name":"last","data":{"k":1,"k":2}}')
        self.assertEqual((r.status, r.json()["name"], r.json()["data"]), (200, "last", {"k": 2}))
        r = request(self.srv, "PUT", path, headers=h,
                    body='{"data":{"max":9223372036854775807,"min":-9223372036854775808,"tiny":1e-400,"big":1.5e308}}')
        self.assertEqual(r.status, 200, r.body)
        data = r.json()["data"]
        # jsonb prints 1.5e308 with all its digits, as the upstream's jsonb did
        self.assertEqual((data["max"], data["min"], data["tiny"], float(data["big"])),
                         (9223372036854775807, -9223372036854775808, 0.0, 1.5e308))

    def test_bodies_over_the_limit_are_413_before_anything_else(self):
        # default GTM_MAX_BODY, 1 MiB; no credentials needed to be refused
        limit = 1 << 20
        for route in self.writable():
            path = fill(route["path"], {p: str(uuid.uuid4()) for p in path_params(route["path"])})
            data = ("%s %s HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                    "Connection: close\r\n\r\n" % (route["method"].upper(), path, limit + 1)).encode()
            status, _, body = raw_exchange(self.srv, data)
            self.assertEqual((status, json.loads(body)), (413, {"detail": "Request body too large"}), route["path"])
        # chunked, past the limit
        s = self.srv.connect()
        s.settimeout(10)
        s.sendall(b"POST /api/companies HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/json\r\n\r\n")
        try:
            for _ in range(33):      # 33 chunks of 32 KiB: just past 1 MiB
                s.sendall(b"8000\r\n" + b" " * 0x8000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        out = read_to_close(s)
        s.close()
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:100])
        # a body of exactly the limit is read (and judged on its merits)
        b = self.tree("bravo-" + uuid.uuid4().hex)
        pad = limit - len('{"name":"x","data":{"p":""}}')
        body = '{"name":"x","data":{"p":"%s"}}' % ("p" * pad)
        self.assertEqual(len(body), limit)
        r = request(self.srv, "PUT", "/api/accounts/" + b["account"], body=body,
                    headers=dict(b["auth"], **{"Content-Type": "application/json"}))
        self.assertEqual(r.status, 200, r.body[:200])
        self.assertEqual(request(self.srv, "GET", "/health").status, 200)


class LoaderPathsTest(unittest.TestCase):
    """GTM_MODULE_DIR and GTM_PROMPT_DIR: only their own regular files are read."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gtm-sec-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def server(self, **kw):
        srv = Server(**kw)
        self.addCleanup(srv.__exit__, None, None, None)
        return srv

    def test_module_dir(self):
        mods = os.path.join(self.dir, "mods")
        os.mkdir(mods)
        shutil.copy(os.path.join(FX_MODULE_DIR, "fx_echo.so"), mods)
        shutil.copy(os.path.join(FX_MODULE_DIR, "fx_plain.so"), self.dir)            # outside: never loaded
        shutil.copy(os.path.join(FX_MODULE_DIR, "fx_plain.so"), os.path.join(mods, ".hidden.so"))
        shutil.copy(os.path.join(FX_MODULE_DIR, "fx_plain.so"), os.path.join(mods, "..dots.so"))
        os.symlink("/etc/passwd", os.path.join(mods, "passwd.so"))
        os.symlink(os.path.join(self.dir, "nothing-here"), os.path.join(mods, "dangling.so"))
        os.mkdir(os.path.join(mods, "directory.so"))
        # regression: a FIFO made start-up (and a reload) wait in open() for ever
        os.mkfifo(os.path.join(mods, "fifo.so"))
        tmp = os.path.join(self.dir, "tmp")
        os.mkdir(tmp)
        srv = self.server(module_dir=os.path.join(mods, "..", "mods"), env={"TMPDIR": tmp})
        srv.start(timeout=15)
        out = "\n".join(srv.lines)
        for name in ("fifo.so", "directory.so"):
            self.assertIn("module %s refused: not a regular file" % name, out)
        self.assertRegex(out, r"module passwd.so refused: cannot load: .*invalid ELF header")
        self.assertNotIn("root:x:0", out)
        self.assertNotIn("fx_plain", out)
        self.assertNotIn("hidden", out)
        self.assertNotIn("dots", out)
        self.assertEqual(request(srv, "GET", "/fx/items/0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e40").status, 200)
        detailed = request(srv, "GET", "/health/detailed", admin=True).json()
        self.assertNotIn("root:x:0", json.dumps(detailed))
        # a reload: the loaded module's file replaced by a FIFO, and a new FIFO
        victim = os.path.join(mods, "fx_echo.so")
        fifo2 = os.path.join(mods, ".swap")
        os.mkfifo(fifo2)
        os.rename(fifo2, victim)
        os.mkfifo(os.path.join(mods, "fifo2.so"))
        r = request(srv, "POST", "/admin/reload", admin=True)
        self.assertLess(r.status, 300, r.body)
        self.assertTrue(srv.wait_log(lambda rec: "fx_echo.so refused on reload: not a regular file" in rec.get("msg", ""),
                                     timeout=10), srv.lines[-5:])
        self.assertTrue(srv.wait_log(lambda rec: "fifo2.so refused on reload: not a regular file" in rec.get("msg", ""),
                                     timeout=10), srv.lines[-5:])
        r = request(srv, "GET", "/fx/items/0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e40")
        self.assertEqual(r.status, 200)      # the running instance keeps serving
        # a real swap stages its private copy in TMPDIR and leaves nothing there
        os.unlink(victim)
        shutil.copy(os.path.join(FX_MODULE_DIR, "fx_echo.so"), os.path.join(mods, ".new"))
        os.rename(os.path.join(mods, ".new"), victim)
        request(srv, "POST", "/admin/reload", admin=True)
        self.assertTrue(srv.wait_log(lambda rec: re.search(r"module fx_echo .* reloaded from .*\(generation 2\)",
                                                           rec.get("msg", "")), timeout=10), srv.lines[-5:])
        self.assertEqual(os.listdir(tmp), [])
        self.assertEqual(srv.stop(), 0)

    def prompt_copy(self):
        src = os.path.join(SOURCE_ROOT, "prompts")
        dst = os.path.join(self.dir, "prompts")
        shutil.copytree(src, dst)
        return dst

    def refused_start(self, prompts):
        srv = self.server(module_dir=FX_MODULE_DIR, env={"GTM_PROMPT_DIR": prompts})
        srv.start(expect_ready=False)
        self.assertEqual(srv.wait_exit(), 2, srv.lines)
        return "\n".join(srv.lines)

    def test_prompt_templates_include_nothing(self):
        for tag in ("{{> ../../../../etc/passwd}}", "{{>/etc/passwd}}", "{{< /etc/passwd}}", "{{include /etc/passwd}}",
                    "{{../../etc/passwd}}", "{{#/etc/passwd}}x{{//etc/passwd}}", "{{json /etc/passwd}}",
                    "{{& /etc/passwd}}", "{{{/etc/passwd}}}"):
            prompts = self.prompt_copy()
            with open(os.path.join(prompts, "product_overview.user.tmpl"), "a") as f:
                f.write("\n" + tag + "\n")
            out = self.refused_start(prompts)
            self.assertIn("product_overview.user.tmpl", out, tag)
            self.assertIn("unknown tag", out, tag)
            self.assertNotIn("root:x:0", out, tag)
            shutil.rmtree(prompts)

    def test_prompt_schemas_refer_to_nothing_outside(self):
        for ref in ("file:///etc/passwd", "/etc/passwd", "../../etc/passwd#", "http://127.0.0.1:1/x.json",
                    "product_overview.schema.json#"):
            prompts = self.prompt_copy()
            path = os.path.join(prompts, "positioning.schema.json")
            with open(path) as f:
                schema = json.load(f)
            schema["properties"]["unique_insight"] = {"$ref": ref}
            with open(path, "w") as f:
                json.dump(schema, f)
            out = self.refused_start(prompts)
            self.assertIn("positioning.schema.json", out, ref)
            self.assertIn("is not supported", out, ref)
            self.assertNotIn("root:x:0", out, ref)
            shutil.rmtree(prompts)


def client_hello(compression=(1, 0), suites=(0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8)):
    """A TLS 1.2 ClientHello record offering these compression methods."""
    ext = b""
    groups = struct.pack(">HHH", 0x001D, 0x0017, 0x0018)
    ext += struct.pack(">HH", 0x000A, len(groups) + 2) + struct.pack(">H", len(groups)) + groups
    ext += struct.pack(">HHB", 0x000B, 2, 1) + b"\x00"
    sigs = struct.pack(">HHHH", 0x0403, 0x0804, 0x0401, 0x0503)
    ext += struct.pack(">HH", 0x000D, len(sigs) + 2) + struct.pack(">H", len(sigs)) + sigs
    host = b"localhost"
    sni = struct.pack(">BH", 0, len(host)) + host
    ext += struct.pack(">HH", 0x0000, len(sni) + 2) + struct.pack(">H", len(sni)) + sni
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack(">H", 2 * len(suites)) +
            b"".join(struct.pack(">H", s) for s in suites) + bytes([len(compression)]) + bytes(compression) +
            struct.pack(">H", len(ext)) + ext)
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def server_hello(sock, timeout=10):
    """(version, cipher suite, compression method) of the ServerHello, or None on an alert."""
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < 5 or len(buf) < 5 + struct.unpack(">H", buf[3:5])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    if buf[0] != 0x16:
        return None
    hs = buf[5:]
    assert hs[0] == 2, hs[:4]
    p = 4 + 2 + 32
    sid = hs[p]
    p += 1 + sid
    suite = struct.unpack(">H", hs[p:p + 2])[0]
    return struct.unpack(">H", hs[4:6])[0], suite, hs[p + 2]


class TlsScanTest(unittest.TestCase):
    """The HTTPS listener as Debian's sslscan sees it, with each certificate type."""

    AEAD = ("GCM", "CHACHA20-POLY1305", "CCM")

    def scan(self, srv):
        exe = shutil.which("sslscan")
        if not exe:
            self.fail("sslscan is not installed: apt-get install sslscan (Debian package 'sslscan'; "
                      "it belongs in TEST_PKGS in deploy/lib.sh)")
        r = subprocess.run([exe, "--xml=-", "--no-colour", "127.0.0.1:%d" % srv.tls_port], capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        root = ET.fromstring(r.stdout[r.stdout.index("<?xml"):])
        test = root.find("ssltest")
        self.assertIsNotNone(test, r.stdout[-2000:])
        return test

    def check(self, cert, key_type):
        with Server(tls=cert) as srv:
            test = self.scan(srv)
            protocols = {(p.get("type"), p.get("version")): p.get("enabled") for p in test.findall("protocol")}
            self.assertEqual(protocols, {("ssl", "2"): "0", ("ssl", "3"): "0", ("tls", "1.0"): "0", ("tls", "1.1"): "0",
                                         ("tls", "1.2"): "1", ("tls", "1.3"): "0"})
            reneg = test.find("renegotiation")
            self.assertEqual((reneg.get("supported"), reneg.get("secure")), ("0", "0"), "renegotiation is possible")
            for hb in test.findall("heartbleed"):
                self.assertEqual(hb.get("vulnerable"), "0")
            comp = test.find("compression")
            if comp is not None:
                self.assertEqual(comp.get("supported"), "0", "TLS compression (CRIME)")
            ciphers = [c.get("cipher") for c in test.findall("cipher")]
            self.assertTrue(ciphers)
            for c in ciphers:
                self.assertTrue(c.startswith("ECDHE-%s-" % key_type), "%s: no forward secrecy or wrong key" % c)
                self.assertTrue(any(a in c for a in self.AEAD), "%s is not an AEAD suite" % c)
            for c in test.findall("cipher"):
                self.assertGreaterEqual(int(c.get("bits")), 128, c.attrib)
                self.assertEqual(c.get("strength"), "strong", c.attrib)
                self.assertIn(c.get("curve"), ("25519", "P-256", "P-384"), c.attrib)
            # regression: mbedTLS' defaults took secp192r1/secp224r1 (96 and 112-bit) from a client offering only
            # those, and chose P-521 whenever it was offered
            groups = {g.get("name").split()[0]: int(g.get("bits")) for g in test.findall("group")}
            self.assertTrue(groups)
            for name, bits in groups.items():
                self.assertGreaterEqual(bits, 128, "weak ECDHE group %s" % name)
                self.assertIn(name, ("x25519", "secp256r1", "secp384r1"), name)
            self.assertEqual([c.get("curve") for c in test.findall("cipher") if c.get("status") == "preferred"],
                             ["25519"])
            for cert_el in test.iter("certificate"):
                sig = cert_el.findtext("signature-algorithm") or ""
                self.assertNotRegex(sig.lower(), r"md5|sha1with|sha1$", sig)
                pk = cert_el.find("pk")
                if pk is not None and pk.get("type") == "RSA":
                    self.assertGreaterEqual(int(pk.get("bits")), 2048)
            # compression offered by the client (DEFLATE first): the server chooses none
            s = socket.create_connection(("127.0.0.1", srv.tls_port), 10)
            try:
                s.sendall(client_hello())
                hello = server_hello(s)
            finally:
                s.close()
            self.assertIsNotNone(hello, "no ServerHello for a ClientHello offering DEFLATE")
            self.assertEqual((hello[0], hello[2]), (0x0303, 0), hello)
            # a client offering DEFLATE only: refused, or (mbedTLS) answered without compression
            s = socket.create_connection(("127.0.0.1", srv.tls_port), 10)
            try:
                s.sendall(client_hello(compression=(1,)))
                hello = server_hello(s)
            except (ConnectionResetError, socket.timeout):
                hello = None
            finally:
                s.close()
            self.assertTrue(hello is None or hello[2] == 0, hello)

    def test_ec_certificate(self):
        self.check(EC, "ECDSA")

    def test_rsa_certificate(self):
        self.check(RSA, "RSA")


if __name__ == "__main__":
    unittest.main(verbosity=2)
