"""/api/companies exactly as the upstream answers: shapes and key order,
status codes, timestamps, paging, PUT semantics, ownership as 404, cascade
delete, hostile strings byte for byte; and rows of an adopted upstream
database read back through the API."""
import hashlib
import os
import re
import unittest
import uuid

import pgutil
from harness import Server, request
from stackauth import FakeStack

HERE = os.path.dirname(os.path.abspath(__file__))
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")


def overview(**over):
    o = {"company_name": "Acme", "company_url": "https://acme.example", "description": "Anvils.",
         "capabilities": ["Anvils: heavy"], "objections": ["Price"], "metadata": {"sources_used": ["site"]}}
    o.update(over)
    return o


class Fixture(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pgutil.require()
        cls.db = cls.make_db().__enter__()
        cls.stack = FakeStack()
        env = dict(cls.stack.env(), DATABASE_URL=cls.db.url)
        cls.srv = Server(env=env, module_dir=os.environ["MODULE_DIR"]).start()

    @classmethod
    def make_db(cls):
        return pgutil.MigratedDatabase()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        cls.stack.close()
        cls.db.__exit__(None, None, None)
        assert code == 0, code

    def user(self, sub=None):
        return {"Authorization": "Bearer " + self.stack.token(sub or str(uuid.uuid4()))}

    def call(self, method, path, auth, body=None):
        return request(self.srv, method, path, body=body, headers=auth)


class CompaniesTest(Fixture):
    def test_create_shape_and_provisioning(self):
        sub = str(uuid.uuid4())
        r = self.call("POST", "/api/companies", self.user(sub), overview(company_id="ignored", extra="dropped"))
        self.assertEqual(r.status, 201, r.body)
        c = r.json()
        self.assertEqual(list(c), ["name", "url", "data", "id", "user_id", "created_at", "updated_at"])
        self.assertEqual((c["name"], c["url"], c["user_id"]), ("Acme", "https://acme.example", sub))
        self.assertRegex(c["id"], r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertRegex(c["created_at"], TS)
        self.assertRegex(c["updated_at"], TS)
        # data is the whole overview dump: all ten keys, explicit nulls, unknown keys dropped
        self.assertEqual(set(c["data"]), {"company_name", "company_url", "description", "business_profile_insights",
                                          "capabilities", "use_case_analysis_insights", "positioning_insights",
                                          "objections", "target_customer_insights", "metadata"})
        self.assertIsNone(c["data"]["business_profile_insights"])
        self.assertEqual(self.db.sql("SELECT role FROM users WHERE id = '%s'" % sub), "user")

    def test_create_validation(self):
        u = self.user()
        r = self.call("POST", "/api/companies", u, {"company_name": 5, "capabilities": "no", "objections": [1, "ok"],
                                                    "metadata": []})
        self.assertEqual(r.status, 422)
        d = r.json()["detail"]
        got = [(e["type"], e["loc"]) for e in d]
        self.assertEqual(got, [("string_type", ["body", "company_name"]), ("missing", ["body", "company_url"]),
                               ("missing", ["body", "description"]), ("list_type", ["body", "capabilities"]),
                               ("string_type", ["body", "objections", 0]), ("dict_type", ["body", "metadata"])])
        self.assertEqual(d[1]["msg"], "Field required")
        self.assertEqual(d[1]["input"]["company_name"], 5)       # pydantic shows the whole object
        r = self.call("POST", "/api/companies", u, [1, 2])
        self.assertEqual(r.json()["detail"][0]["type"], "model_attributes_type")
        r = request(self.srv, "POST", "/api/companies", body="{bad json", headers=dict(u, **{"Content-Type": "application/json"}))
        self.assertEqual(r.json()["detail"][0]["type"], "json_invalid")
        r = self.call("POST", "/api/companies", u, overview(company_name="n" * 256))
        self.assertEqual(r.status, 422)
        self.assertTrue(r.json()["detail"].startswith("Validation failed: 1 validation error for CompanyCreate"))

    def test_get_list_order_paging(self):
        u = self.user()
        ids = [self.call("POST", "/api/companies", u, overview(company_name="C%d" % i)).json()["id"] for i in range(5)]
        lst = self.call("GET", "/api/companies", u).json()
        self.assertEqual([c["id"] for c in lst], ids)
        self.assertEqual([c["id"] for c in self.call("GET", "/api/companies?skip=1&limit=2", u).json()], ids[1:3])
        self.assertEqual(self.call("GET", "/api/companies?skip=10", u).json(), [])
        r = self.call("GET", "/api/companies?limit=0", u)
        self.assertEqual(r.json()["detail"][0]["loc"], ["query", "limit"])
        one = self.call("GET", "/api/companies/" + ids[2], u)
        self.assertEqual(one.json(), lst[2])
        r = self.call("GET", "/api/companies/" + ids[2].upper().replace("-", ""), u)
        self.assertEqual(r.json()["id"], ids[2])
        r = self.call("GET", "/api/companies/not-a-uuid", u)
        self.assertEqual(r.json()["detail"][0]["type"], "uuid_parsing")
        r = self.call("GET", "/api/companies/" + str(uuid.uuid4()), u)
        self.assertEqual((r.status, r.json()), (404, {"detail": "Company not found"}))
        r = request(self.srv, "GET", "/api/companies/", headers=u)
        self.assertEqual(r.status, 307)

    def test_put_semantics(self):
        u = self.user()
        c = self.call("POST", "/api/companies", u, overview()).json()
        r = self.call("PUT", "/api/companies/" + c["id"], u, {"company_id": "ignored"})
        self.assertEqual(r.status, 200)
        same = r.json()
        self.assertEqual(same, c)   # nothing present: nothing changes, not even updated_at
        r = self.call("PUT", "/api/companies/" + c["id"], u, {"name": "Acme 2", "data": {"only": "this"}})
        d = r.json()
        self.assertEqual((d["name"], d["url"], d["data"]), ("Acme 2", c["url"], {"only": "this"}))
        self.assertNotEqual(d["updated_at"], c["updated_at"])
        self.assertEqual(d["created_at"], c["created_at"])
        r = self.call("PUT", "/api/companies/" + c["id"], u, {"data": None})
        self.assertIsNone(r.json()["data"])
        r = self.call("PUT", "/api/companies/" + c["id"], u, {"name": None})
        self.assertEqual(r.status, 422)
        r = self.call("PUT", "/api/companies/" + c["id"], u, {"url": "u" * 501})
        self.assertEqual(r.json()["detail"][0]["type"], "string_too_long")
        self.assertEqual(r.json()["detail"][0]["ctx"], {"max_length": 500})

    def test_tenants_are_isolated(self):
        a, b = self.user(), self.user()
        c = self.call("POST", "/api/companies", a, overview()).json()
        for method, path, body in (("GET", "/api/companies/" + c["id"], None),
                                   ("GET", "/api/companies/" + c["id"] + "/relations", None),
                                   ("PUT", "/api/companies/" + c["id"], {"name": "stolen"}),
                                   ("DELETE", "/api/companies/" + c["id"], None)):
            r = self.call(method, path, b, body)
            self.assertEqual((r.status, r.json()), (404, {"detail": "Company not found"}), method)
        self.assertEqual(self.call("GET", "/api/companies", b).json(), [])
        self.assertEqual(self.call("GET", "/api/companies/" + c["id"], a).json()["name"], "Acme")

    def test_relations_and_cascade_delete(self):
        u = self.user()
        c = self.call("POST", "/api/companies", u, overview()).json()
        self.db.sql("""
            WITH a AS (INSERT INTO accounts (id, company_id, name, data, created_at, updated_at)
                       VALUES (gen_random_uuid(), '%s', 'A1', '{"k": 1}', now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc') RETURNING id),
                 p AS (INSERT INTO personas (id, account_id, name, data, created_at, updated_at)
                       SELECT gen_random_uuid(), a.id, 'P', '{}', now(), now() FROM a RETURNING id, account_id)
            INSERT INTO campaigns (id, account_id, persona_id, name, type, data, created_at, updated_at)
            SELECT gen_random_uuid(), p.account_id, p.id, 'C', 'email', '{}', now(), now() FROM p""" % c["id"])
        rel = self.call("GET", "/api/companies/%s/relations" % c["id"], u).json()
        self.assertEqual(list(rel)[-1], "accounts")
        self.assertEqual([a["name"] for a in rel["accounts"]], ["A1"])
        self.assertEqual(list(rel["accounts"][0]), ["name", "data", "id", "company_id", "created_at", "updated_at"])
        r = self.call("DELETE", "/api/companies/" + c["id"], u)
        self.assertEqual(r.status, 204)
        self.assertEqual(r.body, b"")
        self.assertEqual(self.db.sql("SELECT (SELECT count(*) FROM accounts WHERE company_id = '%s') + "
                                     "(SELECT count(*) FROM companies WHERE id = '%s')" % (c["id"], c["id"])), "0")
        self.assertEqual(self.call("DELETE", "/api/companies/" + c["id"], u).status, 404)

    def test_hostile_strings_byte_for_byte(self):
        u = self.user()
        evil = "'; DROP TABLE companies; -- \u2028 <script>\"x\"</script> \\ \U0001F600 %s %n"
        r = self.call("POST", "/api/companies", u, overview(company_name=evil, company_url=evil,
                                                            metadata={evil: [evil, {"$where": evil}]}))
        self.assertEqual(r.status, 201, r.body)
        c = r.json()
        self.assertEqual((c["name"], c["url"]), (evil, evil))
        self.assertEqual(c["data"]["metadata"], {evil: [evil, {"$where": evil}]})
        # stored as sent, byte for byte
        self.assertEqual(self.db.sql("SELECT md5(name) || md5(url) FROM companies WHERE id = '%s'" % c["id"]),
                         hashlib.md5(evil.encode()).hexdigest() * 2)
        self.assertEqual(self.call("GET", "/api/companies/" + c["id"], u).json()["name"], evil)

    def test_database_down_is_503_not_a_hang(self):
        env = dict(self.stack.env(), DATABASE_URL="postgresql://x:y@127.0.0.1:1/none")
        with Server(env=env, module_dir=os.environ["MODULE_DIR"]) as srv:
            r = request(srv, "GET", "/api/companies", headers=self.user())
            self.assertEqual(r.status, 503)
            self.assertIsNotNone(r.header("retry-after"))
            self.assertIn("detail", r.json())


class AdoptedDatabaseTest(Fixture):
    """The upstream's own rows, read back through the API after gtmd migrate."""

    @classmethod
    def make_db(cls):
        class Adopted(pgutil.Database):
            def __enter__(self):
                super().__enter__()
                pgutil.psql_file(self.name, os.path.join(HERE, "upstream_schema.sql"))
                from test_migrate import migrate
                r = migrate(self.url)
                assert r.returncode == 0, r.stderr
                return self
        return Adopted()

    def test_rows_read_back(self):
        u = self.user("11111111-1111-4111-8111-111111111111")
        lst = self.call("GET", "/api/companies", u).json()
        self.assertEqual(len(lst), 1)
        c = lst[0]
        self.assertEqual(c["id"], "aaaaaaaa-0000-4000-8000-000000000001")
        self.assertEqual(c["created_at"], "2025-07-11T20:15:30.123456")
        self.assertEqual(c["data"]["capabilities"], ["Anvils: heavy"])
        rel = self.call("GET", "/api/companies/%s/relations" % c["id"], u).json()
        self.assertEqual(rel["accounts"][0]["created_at"], "2025-07-11T20:16:00")
        other = self.user("22222222-2222-4222-8222-222222222222")
        self.assertEqual([x["name"] for x in self.call("GET", "/api/companies", other).json()], ["Other"])
        self.assertIsNone(self.call("GET", "/api/companies", other).json()[0]["data"])
        # personas and campaigns through their own routes
        acc = "bbbbbbbb-0000-4000-8000-000000000001"
        per = self.call("GET", "/api/personas?account_id=" + acc, u).json()
        self.assertEqual([(p["id"], p["name"], p["created_at"]) for p in per],
                         [("cccccccc-0000-4000-8000-000000000001", "VP Ops", "2025-07-11T20:17:00")])
        camp = self.call("GET", "/api/campaigns?account_id=" + acc, u).json()
        self.assertEqual((camp[0]["name"], camp[0]["type"], camp[0]["data"], camp[0]["updated_at"]),
                         ("Intro email", "email", {"subjects": {"primary": "Hi"}}, None))
        self.assertEqual(self.call("GET", "/api/accounts/" + acc, other).json(), {"detail": "Account not found"})
        # and the upstream user with a NULL role is still served
        r = self.call("PUT", "/api/companies/aaaaaaaa-0000-4000-8000-000000000002", other, {"name": "Renamed"})
        self.assertEqual(r.json()["name"], "Renamed")


if __name__ == "__main__":
    unittest.main(verbosity=2)
