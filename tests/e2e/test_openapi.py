"""GET /openapi.json against the server that serves it: a valid OpenAPI 3.1
document; the same (path, method) pairs as the live route table, both ways;
every operation answered by a route (not the router's 404/405); the security
and rate limits the host enforces; real responses of every route (CRUD,
errors, generation) valid against the schema documented for their status,
and no status the document does not list; a module without a description
described by the host; a reload that changes the modules changes the
document."""
import os
import shutil
import sys
import tempfile
import unittest
import uuid

from jsonschema import Draft202012Validator, FormatChecker, RefResolver

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))

import pgutil  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402
from harness import Server, request  # noqa: E402
from stackauth import FakeStack  # noqa: E402
from test_companies import overview  # noqa: E402
from test_generate import ACCOUNT, EMAIL, OVERVIEW, PERSONA, POSITIONING, Website  # noqa: E402

METHODS = ("get", "put", "post", "delete", "patch")


def operations(doc):
    for path, item in doc["paths"].items():
        for m in METHODS:
            if m in item:
                yield path, m, item[m]


def resolve(doc, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = doc
        for part in obj["$ref"][2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        obj = node
    return obj


def all_refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from all_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_refs(v)


def fill(template, value):
    out = []
    for seg in template.split("/"):
        out.append(value if seg.startswith("{") else seg)
    return "/".join(out)


def admin_routes(srv):
    r = request(srv, "GET", "/admin/routes", admin=True)
    assert r.status == 200, r.body
    return r.json()


class DocumentTest(unittest.TestCase):
    """The real modules, a real database, fake providers and website."""

    @classmethod
    def setUpClass(cls):
        pgutil.require()
        cls.db = pgutil.MigratedDatabase().__enter__()
        cls.stack = FakeStack()
        cls.fake = FakeLLM().start()
        cls.site = Website()
        env = dict(cls.stack.env(), DATABASE_URL=cls.db.url, GTM_FETCH_ALLOW="127.0.0.1:%d" % cls.site.port,
                   WEB_CACHE_TTL_HOURS="0", LLM_PROVIDERS="openai", OPENAI_API_KEY="test-key",
                   OPENAI_BASE_URL=cls.fake.url("openai"))
        cls.srv = Server(env=env, module_dir=os.environ["MODULE_DIR"]).start()
        r = request(cls.srv, "GET", "/openapi.json")
        assert r.status == 200, r.body
        cls.doc = r.json()
        cls.etag = r.header("etag")
        cls.seen = set()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        cls.site.close()
        cls.fake.stop()
        cls.stack.close()
        cls.db.__exit__(None, None, None)
        assert code == 0, code

    # --- the document itself ---

    def test_valid_openapi_31(self):
        doc = self.doc
        self.assertEqual(doc["openapi"], "3.1.0")
        self.assertEqual((doc["info"]["title"], bool(doc["info"]["version"])), ("gtmd", True))
        for ref in set(all_refs(doc)):
            self.assertTrue(ref.startswith("#/"), ref)
            resolve(doc, {"$ref": ref})            # raises KeyError when dangling
        for name, schema in doc["components"]["schemas"].items():
            Draft202012Validator.check_schema(schema)
        ids = [op["operationId"] for _, _, op in operations(doc)]
        self.assertEqual(len(ids), len(set(ids)), "operationIds repeat")
        tags = {t["name"] for t in doc["tags"]}
        schemes = set(doc["components"]["securitySchemes"])
        for path, m, op in operations(doc):
            where = "%s %s" % (m, path)
            self.assertTrue(op.get("summary") and op.get("description"), where)
            self.assertTrue(set(op["tags"]) <= tags, where)
            self.assertTrue(op["responses"], where)
            for code, resp in op["responses"].items():
                self.assertRegex(code, r"^([1-5][0-9][0-9]|default)$", where)
                self.assertIn("description", resolve(doc, resp), where + " " + code)
                for ct, media in resolve(doc, resp).get("content", {}).items():
                    if "schema" in media:
                        Draft202012Validator.check_schema(media["schema"])
            declared = {p["name"] for p in map(lambda p: resolve(doc, p), op.get("parameters", []))
                        if p["in"] == "path"}
            wanted = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
            self.assertEqual(declared, wanted, where)
            for p in op.get("parameters", []):
                p = resolve(doc, p)
                self.assertIn(p["in"], ("path", "query", "header"), where)
                if p["in"] == "path":
                    self.assertIs(p["required"], True, where)
                Draft202012Validator.check_schema(p["schema"])
            for req in op.get("security", []):
                self.assertTrue(set(req) <= schemes, where)

    def test_document_and_route_table_agree(self):
        admin = admin_routes(self.srv)
        self.assertEqual(admin["openapi"], {"operations": len(admin["routes"]), "undocumented": 0, "unrouted": 0,
                                            "conflicts": 0})
        routed = {(r["path"], r["method"]): r for r in admin["routes"]}
        documented = {(p, m): op for p, m, op in operations(self.doc)}
        self.assertEqual(sorted(set(routed) - set(documented)), [], "routed but not documented")
        self.assertEqual(sorted(set(documented) - set(routed)), [], "documented but not routed")
        for key, route in routed.items():
            op = documented[key]
            self.assertNotIn("x-gtm-undocumented", op, key)
            self.assertEqual(bool(op.get("security")), route["auth"], key)
            self.assertEqual("401" in op["responses"], route["auth"], key)
            self.assertEqual(op.get("x-gtm-rate-limit"), route.get("limit_key"), key)
            self.assertEqual("429" in op["responses"], route["rate_limited"], key)
            self.assertEqual(op.get("x-gtm-module"), route["module"], key)
        # every public route of the contract is there
        for path in ("/health", "/ready", "/openapi.json", "/docs", "/api/companies/{company_id}/relations",
                     "/api/campaigns/positioning", "/api/neon-auth/user", "/demo/personas/generate-ai"):
            self.assertIn(path, self.doc["paths"])
        # admin routes stay out
        for path in ("/metrics", "/health/detailed", "/admin/reload", "/admin/routes"):
            self.assertNotIn(path, self.doc["paths"])

    def test_every_operation_is_served(self):
        """A request to each documented operation, without credentials, is
        answered by its route: never the router's 404 or 405."""
        for path, m, op in operations(self.doc):
            url = fill(path, str(uuid.uuid4()))
            body = {} if m in ("post", "put", "patch") else None
            r = request(self.srv, m.upper(), url, body=body)
            where = "%s %s -> %d %s" % (m, url, r.status, r.body[:200])
            self.assertNotEqual(r.status, 405, where)
            self.assertFalse(r.status == 404 and r.json() == {"detail": "Not Found"}, where)
            if op.get("security"):
                self.assertEqual(r.status, 401, where)
            self.assertIn(str(r.status), op["responses"], where)

    def test_etag(self):
        r = request(self.srv, "GET", "/openapi.json", headers={"If-None-Match": self.etag})
        self.assertEqual((r.status, r.body), (304, b""))
        self.assertEqual(request(self.srv, "GET", "/openapi.json").header("etag"), self.etag)

    # --- real responses against the documented ones ---

    def check(self, method, template, path, auth=None, body=None, status=None, headers=None):
        h = dict(auth or {})
        h.update(headers or {})
        r = request(self.srv, method, path, body=body, headers=h)
        where = "%s %s -> %d %s" % (method, path, r.status, r.body[:300])
        if status is not None:
            self.assertEqual(r.status, status, where)
        op = self.doc["paths"][template][method.lower()]
        self.assertIn(str(r.status), op["responses"], "undocumented status: " + where)
        resp = resolve(self.doc, op["responses"][str(r.status)])
        content = resp.get("content", {})
        if r.status in (204, 304) or not r.body:
            self.assertFalse(r.body, where)
            self.assertEqual(content, {}, "documented a body: " + where)
        else:
            ctype = (r.header("content-type") or "").split(";")[0]
            self.assertIn(ctype, content, where)
            schema = content[ctype].get("schema")
            if schema is not None and ctype == "application/json":
                v = Draft202012Validator(schema, resolver=RefResolver.from_schema(self.doc),
                                         format_checker=FormatChecker())
                errors = sorted(v.iter_errors(r.json()), key=lambda e: list(e.path))
                self.assertEqual([], ["%s: %s" % (list(e.path), e.message) for e in errors], where)
        self.seen.add((template, method.lower()))
        return r

    def user(self):
        sub = str(uuid.uuid4())
        self.subs = getattr(self, "subs", {})
        h = {"Authorization": "Bearer " + self.stack.token(sub)}
        self.subs[h["Authorization"]] = sub
        return h

    def stack_sub(self, h):
        return self.subs[h["Authorization"]]

    def test_z_responses_match(self):
        u, other = self.user(), self.user()
        nobody = str(uuid.uuid4())
        c = self.check("POST", "/api/companies", "/api/companies", u, overview(), 201).json()["id"]
        self.check("POST", "/api/companies", "/api/companies", u, {"company_name": 5}, 422)
        self.check("POST", "/api/companies", "/api/companies", None, overview(), 401)
        self.check("GET", "/api/companies", "/api/companies?skip=0&limit=5", u, status=200)
        self.check("GET", "/api/companies", "/api/companies?limit=0", u, status=422)
        self.check("GET", "/api/companies/{company_id}", "/api/companies/" + c, u, status=200)
        self.check("GET", "/api/companies/{company_id}", "/api/companies/" + c, other, status=404)
        self.check("GET", "/api/companies/{company_id}", "/api/companies/nope", u, status=422)
        self.check("PUT", "/api/companies/{company_id}", "/api/companies/" + c, u, {"name": "B"}, 200)
        a = self.check("POST", "/api/accounts", "/api/accounts?company_id=" + c, u,
                       {"name": "Mid", "data": {"k": 1}}, 201).json()["id"]
        self.check("POST", "/api/accounts", "/api/accounts?company_id=" + nobody, u, {"name": "x", "data": {}}, 404)
        self.check("GET", "/api/accounts", "/api/accounts?company_id=" + c, u, status=200)
        self.check("GET", "/api/accounts", "/api/accounts", u, status=422)
        self.check("GET", "/api/accounts/{account_id}", "/api/accounts/" + a, u, status=200)
        self.check("PUT", "/api/accounts/{account_id}", "/api/accounts/" + a, u, {"data": {"k": 2}}, 200)
        p = self.check("POST", "/api/personas", "/api/personas?account_id=" + a, u,
                       {"name": "VP", "data": {"x": 1}}, 201).json()["id"]
        self.check("GET", "/api/personas", "/api/personas?account_id=" + a, u, status=200)
        self.check("GET", "/api/personas", "/api/personas?company_id=" + c, u, status=200)
        self.check("GET", "/api/personas/{persona_id}", "/api/personas/" + p, u, status=200)
        self.check("PUT", "/api/personas/{persona_id}", "/api/personas/" + p, u, {"name": "VP2"}, 200)
        k = self.check("POST", "/api/campaigns", "/api/campaigns?account_id=%s&persona_id=%s" % (a, p), u,
                       {"name": "Intro", "type": "email", "data": {"subject": "hi"}}, 201).json()["id"]
        self.check("GET", "/api/campaigns", "/api/campaigns?account_id=" + a, u, status=200)
        self.check("GET", "/api/campaigns/{campaign_id}", "/api/campaigns/" + k, u, status=200)
        self.check("PUT", "/api/campaigns/{campaign_id}", "/api/campaigns/" + k, u, {"name": "Intro 2"}, 200)
        self.check("GET", "/api/companies/{company_id}/relations", "/api/companies/%s/relations" % c, u, status=200)
        self.check("GET", "/api/accounts/{account_id}/relations", "/api/accounts/%s/relations" % a, u, status=200)
        self.check("GET", "/api/personas/{persona_id}/relations", "/api/personas/%s/relations" % p, u, status=200)
        self.check("DELETE", "/api/campaigns/{campaign_id}", "/api/campaigns/" + k, u, status=204)
        self.check("DELETE", "/api/personas/{persona_id}", "/api/personas/" + p, u, status=204)
        self.check("DELETE", "/api/accounts/{account_id}", "/api/accounts/" + a, u, status=204)
        self.check("DELETE", "/api/companies/{company_id}", "/api/companies/" + c, u, status=204)
        self.check("DELETE", "/api/companies/{company_id}", "/api/companies/" + c, u, status=404)

        # identity and keys
        self.check("GET", "/api/neon-auth/profile", "/api/neon-auth/profile", u, status=200)
        self.check("POST", "/api/neon-auth/sync-user", "/api/neon-auth/sync-user", u,
                   {"neon_auth_user_id": self.stack_sub(u)}, 200)
        self.check("POST", "/api/neon-auth/sync-user", "/api/neon-auth/sync-user", u,
                   {"neon_auth_user_id": str(uuid.uuid4())}, 403)
        key = self.check("POST", "/api/auth/api-keys", "/api/auth/api-keys", u, {"name": "ci"}, 201).json()
        self.check("POST", "/api/auth/api-keys", "/api/auth/api-keys", {"X-API-Key": key["key"]}, {}, 403)
        self.check("GET", "/api/auth/profile", "/api/auth/profile", {"X-API-Key": key["key"]}, status=200)
        self.check("POST", "/api/auth/validate", "/api/auth/validate", None, {"api_key": key["key"]}, 200)
        self.check("POST", "/api/auth/validate", "/api/auth/validate", None, {}, 422)
        self.check("DELETE", "/api/auth/api-keys/{key_id}", "/api/auth/api-keys/" + key["id"], u, status=204)
        self.check("POST", "/api/auth/signup", "/api/auth/signup", None, {"email": "a@b.example"}, 501)
        self.check("POST", "/api/neon-auth/logout", "/api/neon-auth/logout", u, status=200)

        # generation, plain and streamed
        site = self.site.url()
        gens = [("/companies/generate-ai", {"website_url": site}, OVERVIEW),
                ("/accounts/generate-ai", {"website_url": site, "account_profile_name": "Mid-market",
                                           "hypothesis": "Manual work", "company_context": OVERVIEW}, ACCOUNT),
                ("/personas/generate-ai", {"website_url": site, "persona_profile_name": "The Controller",
                                           "company_context": OVERVIEW, "target_account_context": ACCOUNT}, PERSONA),
                ("/campaigns/generate-ai", {"company_context": OVERVIEW, "target_account": ACCOUNT,
                                            "target_persona": PERSONA,
                                            "preferences": {"emphasis": "pain-point", "template": "blossomer"}},
                 EMAIL)]
        for prefix, auth in (("/demo", None), ("/api", u)):
            for path, body, answer in gens:
                self.fake.script("openai", [{"answer": answer}])
                self.check("POST", prefix + path, prefix + path, auth, body, 200)
                self.check("POST", prefix + path, prefix + path, auth, {"website_url": 5, "company_context": 5}, 422)
        self.fake.script("openai", [{"answer": POSITIONING}])
        self.check("POST", "/api/campaigns/positioning", "/api/campaigns/positioning", u,
                   {"company_context": OVERVIEW}, 200)
        self.fake.script("openai", [{"answer": OVERVIEW}])
        r = self.check("POST", "/demo/companies/generate-ai", "/demo/companies/generate-ai", None,
                       {"website_url": site, "user_inputted_context": "streamed"}, 200,
                       headers={"Accept": "text/event-stream"})
        self.assertIn(b"event: result", r.body)
        self.check("DELETE", "/api/neon-auth/user", "/api/neon-auth/user", u, status=200)

        # system
        self.check("GET", "/health", "/health", status=200)
        self.check("GET", "/ready", "/ready", status=200)
        self.check("GET", "/openapi.json", "/openapi.json", status=200)
        self.check("GET", "/docs", "/docs", status=200)

        documented = {(p, m) for p, m, _ in operations(self.doc)}
        self.assertEqual(sorted(documented - self.seen), [], "operations this test did not exercise")


class HostDescribesTest(unittest.TestCase):
    """A module that describes one route, leaves the rest, and describes a
    path it does not serve (tests/fixtures/fx_module.c)."""

    def test_fixture_module(self):
        with Server(module_dir=os.environ["FX_MODULE_DIR"]) as srv:
            doc = request(srv, "GET", "/openapi.json").json()
            admin = admin_routes(srv)
            fx = [r for r in admin["routes"] if r["module"] == "fx_echo"]
            self.assertEqual(admin["openapi"]["undocumented"], len(fx) - 1)
            self.assertEqual(admin["openapi"]["unrouted"], 1)
            self.assertNotIn("/fx/nowhere", doc["paths"])
            op = doc["paths"]["/fx/items/{item_id}"]["get"]
            self.assertEqual(op["operationId"], "fxGetItem")
            self.assertNotIn("x-gtm-undocumented", op)
            self.assertIn("FxItem", doc["components"]["schemas"])
            for r in fx:
                if r["path"] == "/fx/items/{item_id}" and r["method"] == "get":
                    continue
                op = doc["paths"][r["path"]][r["method"]]
                self.assertIs(op["x-gtm-undocumented"], True, r)
                self.assertEqual(bool(op.get("security")), r["auth"], r)
            srv.wait_log(lambda rec: "described but not routed" in rec.get("msg", "")
                         and "/fx/nowhere" in rec["msg"])

    def test_reload_changes_the_document(self):
        d = tempfile.mkdtemp(prefix="gtmd-oa-")
        self.addCleanup(shutil.rmtree, d)
        shutil.copy(os.path.join(os.environ["MODULE_DIR"], "company.so"), d)
        with Server(module_dir=d) as srv:
            r = request(srv, "GET", "/openapi.json")
            before, etag = r.json(), r.header("etag")
            self.assertIn("/api/companies", before["paths"])
            self.assertNotIn("/api/accounts", before["paths"])
            tmp = os.path.join(d, ".account.so.tmp")
            shutil.copy(os.path.join(os.environ["MODULE_DIR"], "account.so"), tmp)
            os.rename(tmp, os.path.join(d, "account.so"))
            self.assertEqual(request(srv, "POST", "/admin/reload", admin=True).status, 202)
            srv.wait_log(lambda rec: rec.get("msg", "").startswith("SIGHUP: 1 module file"))
            r = request(srv, "GET", "/openapi.json", headers={"If-None-Match": etag})
            self.assertEqual(r.status, 200)
            self.assertNotEqual(r.header("etag"), etag)
            self.assertIn("/api/accounts/{account_id}", r.json()["paths"])
            self.assertEqual(admin_routes(srv)["openapi"]["undocumented"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
