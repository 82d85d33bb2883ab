"""/api/accounts, /api/personas and /api/campaigns as the upstream answers
them, with cross-tenant isolation on every route."""
import re
import unittest
import uuid

from test_companies import Fixture, overview

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")


class EntitiesTest(Fixture):
    def tree(self, auth, accounts=1, personas=1):
        """A company with accounts, each with personas; returns ids."""
        c = self.call("POST", "/api/companies", auth, overview()).json()["id"]
        out = {"company": c, "accounts": [], "personas": []}
        for i in range(accounts):
            a = self.call("POST", "/api/accounts?company_id=" + c, auth,
                          {"name": "A%d" % i, "data": {"n": i}}).json()["id"]
            out["accounts"].append(a)
            for j in range(personas):
                p = self.call("POST", "/api/personas?account_id=" + a, auth,
                              {"name": "P%d.%d" % (i, j), "data": {"n": j}}).json()["id"]
                out["personas"].append(p)
        return out

    # --- accounts ---

    def test_account_crud(self):
        u = self.user()
        c = self.call("POST", "/api/companies", u, overview()).json()["id"]
        r = self.call("POST", "/api/accounts?company_id=" + c, u, {"name": "Mid-market", "data": {"k": [1]}})
        self.assertEqual(r.status, 201, r.body)
        a = r.json()
        self.assertEqual(list(a), ["name", "data", "id", "company_id", "created_at", "updated_at"])
        self.assertEqual((a["name"], a["data"], a["company_id"]), ("Mid-market", {"k": [1]}, c))
        self.assertRegex(a["created_at"], TS)
        self.assertEqual(self.call("GET", "/api/accounts/" + a["id"], u).json(), a)
        self.assertEqual(self.call("GET", "/api/accounts?company_id=" + c, u).json(), [a])
        r = self.call("PUT", "/api/accounts/" + a["id"], u, {"data": {"k": 2}})
        self.assertEqual((r.json()["name"], r.json()["data"]), ("Mid-market", {"k": 2}))
        r = self.call("PUT", "/api/accounts/" + a["id"], u, {"data": None})
        self.assertEqual(r.status, 422)
        rel = self.call("GET", "/api/accounts/%s/relations" % a["id"], u).json()
        self.assertEqual((rel["personas"], rel["campaigns"]), ([], []))
        self.assertEqual(self.call("DELETE", "/api/accounts/" + a["id"], u).status, 204)
        self.assertEqual(self.call("GET", "/api/accounts/" + a["id"], u).json(), {"detail": "Account not found"})

    def test_account_errors(self):
        u = self.user()
        r = self.call("GET", "/api/accounts", u)
        self.assertEqual(r.json()["detail"][0], {"type": "missing", "loc": ["query", "company_id"],
                                                 "msg": "Field required", "input": None})
        r = self.call("GET", "/api/accounts?company_id=" + str(uuid.uuid4()), u)
        self.assertEqual((r.status, r.json()), (404, {"detail": "Company not found"}))
        r = self.call("POST", "/api/accounts?company_id=" + str(uuid.uuid4()), u, {"name": "x", "data": {}})
        self.assertEqual((r.status, r.json()), (404, {"detail": "Company not found"}))
        r = self.call("POST", "/api/accounts?company_id=bad", u, {"data": 3})
        self.assertEqual([e["loc"] for e in r.json()["detail"]],
                         [["query", "company_id"], ["body", "name"], ["body", "data"]])

    # --- personas ---

    def test_persona_crud(self):
        u = self.user()
        t = self.tree(u, 1, 0)
        a = t["accounts"][0]
        r = self.call("POST", "/api/personas?account_id=" + a, u, {"name": "VP Ops", "data": {"x": 1}})
        self.assertEqual(r.status, 201, r.body)
        p = r.json()
        self.assertEqual(list(p), ["name", "data", "id", "account_id", "created_at", "updated_at"])
        self.assertEqual(self.call("GET", "/api/personas/" + p["id"], u).json(), p)
        self.assertEqual(self.call("PUT", "/api/personas/" + p["id"], u, {"name": "VP"}).json()["name"], "VP")
        self.assertEqual(self.call("GET", "/api/personas/%s/relations" % p["id"], u).json()["campaigns"], [])
        self.assertEqual(self.call("DELETE", "/api/personas/" + p["id"], u).status, 204)
        r = self.call("POST", "/api/personas?account_id=" + str(uuid.uuid4()), u, {"name": "x", "data": {}})
        self.assertEqual(r.json(), {"detail": "Account not found"})

    def test_persona_list_filters(self):
        u = self.user()
        t1 = self.tree(u, 2, 3)
        t2 = self.tree(u, 1, 2)
        names = lambda r: [p["name"] for p in r.json()]
        # account only: skip and limit apply
        a0 = t1["accounts"][0]
        self.assertEqual(names(self.call("GET", "/api/personas?account_id=" + a0, u)), ["P0.0", "P0.1", "P0.2"])
        self.assertEqual(names(self.call("GET", "/api/personas?account_id=%s&skip=1&limit=1" % a0, u)), ["P0.1"])
        # both: the account must be in the company
        r = self.call("GET", "/api/personas?account_id=%s&company_id=%s" % (a0, t2["company"]), u)
        self.assertEqual((r.status, r.json()), (404, {"detail": "Account does not belong to company"}))
        self.assertEqual(len(self.call("GET", "/api/personas?account_id=%s&company_id=%s" % (a0, t1["company"]), u).json()), 3)
        # company only: up to limit accounts, up to limit personas from each, skip ignored
        self.assertEqual(names(self.call("GET", "/api/personas?company_id=%s&skip=5" % t1["company"], u)),
                         ["P0.0", "P0.1", "P0.2", "P1.0", "P1.1", "P1.2"])
        self.assertEqual(names(self.call("GET", "/api/personas?company_id=%s&limit=2" % t1["company"], u)),
                         ["P0.0", "P0.1", "P1.0", "P1.1"])
        # neither: every company's
        self.assertEqual(len(self.call("GET", "/api/personas", u).json()), 8)
        r = self.call("GET", "/api/personas", self.user())
        self.assertEqual((r.status, r.json()), (403, {"detail": "User has no companies/accounts"}))
        r = self.call("GET", "/api/personas?company_id=" + str(uuid.uuid4()), u)
        self.assertEqual(r.json(), {"detail": "Company not found"})
        r = self.call("GET", "/api/personas?account_id=" + str(uuid.uuid4()), u)
        self.assertEqual(r.json(), {"detail": "Account not found"})

    # --- campaigns ---

    def test_campaign_crud(self):
        u = self.user()
        t = self.tree(u, 1, 1)
        a, p = t["accounts"][0], t["personas"][0]
        r = self.call("POST", "/api/campaigns?account_id=%s&persona_id=%s" % (a, p), u,
                      {"name": "Intro", "type": "email", "data": {"subjects": {"primary": "Hi"}}})
        self.assertEqual(r.status, 201, r.body)
        k = r.json()
        self.assertEqual(list(k), ["name", "type", "data", "id", "account_id", "persona_id", "created_at", "updated_at"])
        self.assertEqual(self.call("GET", "/api/campaigns/" + k["id"], u).json(), k)
        self.assertEqual(self.call("GET", "/api/campaigns?account_id=" + a, u).json(), [k])
        self.assertEqual(self.call("GET", "/api/campaigns?account_id=%s&persona_id=%s" % (a, p), u).json(), [k])
        self.assertEqual(self.call("GET", "/api/campaigns?account_id=%s&persona_id=%s" % (a, uuid.uuid4()), u).json(), [])
        r = self.call("PUT", "/api/campaigns/" + k["id"], u, {"type": "t" * 51})
        self.assertEqual(r.json()["detail"][0]["ctx"], {"max_length": 50})
        self.assertEqual(self.call("PUT", "/api/campaigns/" + k["id"], u, {"type": "sequence"}).json()["type"], "sequence")
        rel = self.call("GET", "/api/accounts/%s/relations" % a, u).json()
        self.assertEqual([c["id"] for c in rel["campaigns"]], [k["id"]])
        # deleting the account takes its personas and campaigns along
        self.assertEqual(self.call("DELETE", "/api/accounts/" + a, u).status, 204)
        self.assertEqual(self.call("GET", "/api/campaigns/" + k["id"], u).json(), {"detail": "Campaign not found"})
        self.assertEqual(self.db.sql("SELECT count(*) FROM personas WHERE id = '%s'" % p), "0")

    def test_campaign_create_checks(self):
        u = self.user()
        t = self.tree(u, 1, 1)
        a, p = t["accounts"][0], t["personas"][0]
        body = {"name": "n", "type": "email", "data": {}}
        r = self.call("POST", "/api/campaigns?account_id=%s&persona_id=%s" % (a, uuid.uuid4()), u, body)
        self.assertEqual(r.json(), {"detail": "Persona not found"})
        r = self.call("POST", "/api/campaigns?account_id=%s&persona_id=%s" % (uuid.uuid4(), p), u, body)
        self.assertEqual((r.status, r.json()), (404, {"detail": "Account not found"}))
        r = self.call("POST", "/api/campaigns", u, body)
        self.assertEqual([e["loc"] for e in r.json()["detail"]], [["query", "account_id"], ["query", "persona_id"]])
        r = self.call("GET", "/api/campaigns?account_id=" + str(uuid.uuid4()), u)
        self.assertEqual(r.json(), {"detail": "Account not found"})

    # --- isolation ---

    def test_user_b_never_reaches_user_a(self):
        a, b = self.user(), self.user()
        t = self.tree(a, 1, 1)
        acc, per = t["accounts"][0], t["personas"][0]
        k = self.call("POST", "/api/campaigns?account_id=%s&persona_id=%s" % (acc, per), a,
                      {"name": "n", "type": "email", "data": {}}).json()["id"]
        bt = self.tree(b, 1, 1)   # b has data of its own
        probes = [
            ("GET", "/api/accounts/" + acc, None, "Account not found"),
            ("GET", "/api/accounts/%s/relations" % acc, None, "Account not found"),
            ("PUT", "/api/accounts/" + acc, {"name": "x"}, "Account not found"),
            ("DELETE", "/api/accounts/" + acc, None, "Account not found"),
            ("GET", "/api/accounts?company_id=" + t["company"], None, "Company not found"),
            ("POST", "/api/accounts?company_id=" + t["company"], {"name": "x", "data": {}}, "Company not found"),
            ("GET", "/api/personas/" + per, None, "Persona not found"),
            ("GET", "/api/personas/%s/relations" % per, None, "Persona not found"),
            ("PUT", "/api/personas/" + per, {"name": "x"}, "Persona not found"),
            ("DELETE", "/api/personas/" + per, None, "Persona not found"),
            ("GET", "/api/personas?account_id=" + acc, None, "Account not found"),
            ("GET", "/api/personas?company_id=" + t["company"], None, "Company not found"),
            ("POST", "/api/personas?account_id=" + acc, {"name": "x", "data": {}}, "Account not found"),
            ("GET", "/api/campaigns/" + k, None, "Campaign not found"),
            ("PUT", "/api/campaigns/" + k, {"name": "x"}, "Campaign not found"),
            ("DELETE", "/api/campaigns/" + k, None, "Campaign not found"),
            ("GET", "/api/campaigns?account_id=" + acc, None, "Account not found"),
            ("POST", "/api/campaigns?account_id=%s&persona_id=%s" % (acc, per), {"name": "n", "type": "t", "data": {}},
             "Persona not found"),
            # b's own account with a's persona, and a's account with b's persona
            ("POST", "/api/campaigns?account_id=%s&persona_id=%s" % (bt["accounts"][0], per),
             {"name": "n", "type": "t", "data": {}}, "Persona not found"),
            ("POST", "/api/campaigns?account_id=%s&persona_id=%s" % (acc, bt["personas"][0]),
             {"name": "n", "type": "t", "data": {}}, "Account not found"),
        ]
        for method, path, body, detail in probes:
            r = self.call(method, path, b, body)
            self.assertEqual((r.status, r.json()), (404, {"detail": detail}), (method, path))
        names = [p["name"] for p in self.call("GET", "/api/personas", b).json()]
        self.assertEqual(names, ["P0.0"])   # only b's own
        # a's rows are untouched
        self.assertEqual(self.call("GET", "/api/campaigns/" + k, a).json()["name"], "n")
        self.assertEqual(self.call("GET", "/api/accounts/" + acc, a).json()["name"], "A0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
