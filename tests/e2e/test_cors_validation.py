"""CORS (upstream semantics plus expose-headers) and upstream-style 422s."""
import json
import unittest

from harness import Server, request

ITEM = "/fx/items/%s"
GOOD = "0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e40"


class CorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(env={"CORS_ORIGINS": "http://localhost:5175, https://app.example.com/"}).start()
        cls.default_srv = Server().start()

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0
        assert cls.default_srv.stop() == 0

    def test_preflight_allowed(self):
        r = request(self.srv, "OPTIONS", "/fx/items", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"OK")
        self.assertEqual(r.header("access-control-allow-origin"), "https://app.example.com")
        self.assertEqual(r.header("access-control-allow-methods"), "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT")
        self.assertEqual(r.header("access-control-allow-headers"), "content-type,authorization")
        self.assertEqual(r.header("access-control-max-age"), "600")
        self.assertEqual(r.header("access-control-allow-credentials"), "true")
        self.assertEqual(r.header("vary"), "Origin")

    def test_preflight_disallowed_is_json_400(self):
        r = request(self.srv, "OPTIONS", "/fx/items", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json(), {"detail": "Disallowed CORS origin"})
        self.assertIsNone(r.header("access-control-allow-origin"))

    def test_actual_request_allowed_origin(self):
        r = request(self.srv, "GET", "/health", headers={"Origin": "http://localhost:5175"})
        self.assertEqual(r.header("access-control-allow-origin"), "http://localhost:5175")
        self.assertEqual(r.header("access-control-allow-credentials"), "true")
        expose = r.header("access-control-expose-headers")
        for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"):
            self.assertIn(h, expose)

    def test_actual_request_other_origin(self):
        r = request(self.srv, "GET", "/health", headers={"Origin": "https://evil.example"})
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("access-control-allow-origin"))
        self.assertEqual(r.header("access-control-allow-credentials"), "true")

    def test_errors_carry_cors_headers(self):
        for method, path in (("GET", "/nope"), ("POST", "/health"), ("GET", ITEM % "bad")):
            r = request(self.srv, method, path, headers={"Origin": "http://localhost:5175"})
            self.assertGreaterEqual(r.status, 400)
            self.assertEqual(r.header("access-control-allow-origin"), "http://localhost:5175", path)
            self.assertEqual(r.header("content-type"), "application/json")

    def test_default_origins_are_upstreams(self):
        for origin in ("http://localhost:5175", "https://blossomer-gtm-app.onrender.com"):
            r = request(self.default_srv, "GET", "/health", headers={"Origin": origin})
            self.assertEqual(r.header("access-control-allow-origin"), origin)
        r = request(self.default_srv, "GET", "/health", headers={"Origin": "http://localhost:4173"})
        self.assertIsNone(r.header("access-control-allow-origin"))


class ValidationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server().start()

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def test_uuid_forms_upstream_accepts(self):
        forms = [GOOD, GOOD.upper(), GOOD.replace("-", ""), "{" + GOOD + "}", "urn:uuid:" + GOOD]
        for f in forms:
            r = request(self.srv, "GET", ITEM % f)
            self.assertEqual(r.status, 200, f)
            self.assertEqual(r.json()["item_id"], GOOD)

    def test_uuid_errors_match_pydantic(self):
        cases = {
            "abc": "invalid length: expected length 32 for simple format, found 3",
            "xyz": "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `x` at 1",
            "0b0ce2a5-0d7a-4a53-8d41": "invalid group count: expected 5, found 4",
            "0b0ce2a50-d7a-4a53-8d41-ff2bba2b2e40": "invalid group length in group 0: expected 8, found 9",
            "0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e4": "invalid group length in group 4: expected 12, found 11",
            "generate-ai": "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `g` at 1",
        }
        for value, why in cases.items():
            r = request(self.srv, "GET", ITEM % value)
            self.assertEqual(r.status, 422, value)
            self.assertEqual(r.json(), {"detail": [{
                "type": "uuid_parsing", "loc": ["path", "item_id"],
                "msg": "Input should be a valid UUID, " + why, "input": value, "ctx": {"error": why}}]}, value)

    def test_bounded_ints(self):
        r = request(self.srv, "GET", ITEM % GOOD + "?skip=-1&limit=5000")
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json()["detail"], [
            {"type": "greater_than_equal", "loc": ["query", "skip"], "msg": "Input should be greater than or equal to 0",
             "input": "-1", "ctx": {"ge": 0}},
            {"type": "less_than_equal", "loc": ["query", "limit"], "msg": "Input should be less than or equal to 1000",
             "input": "5000", "ctx": {"le": 1000}},
        ])
        r = request(self.srv, "GET", ITEM % GOOD + "?limit=ten")
        self.assertEqual(r.json()["detail"], [{
            "type": "int_parsing", "loc": ["query", "limit"],
            "msg": "Input should be a valid integer, unable to parse string as an integer", "input": "ten"}])
        r = request(self.srv, "GET", ITEM % GOOD + "?limit=0")
        self.assertEqual(r.json()["detail"][0]["type"], "greater_than_equal")
        r = request(self.srv, "GET", ITEM % GOOD + "?limit=%2050.0%20&skip=3")
        self.assertEqual(r.status, 200)
        self.assertEqual((r.json()["limit"], r.json()["skip"]), (50, 3))
        r = request(self.srv, "GET", ITEM % GOOD + "?skip=99999999999999999999999")
        self.assertEqual(r.status, 200)
        r = request(self.srv, "GET", ITEM % GOOD + "?limit=99999999999999999999999")
        self.assertEqual(r.json()["detail"][0]["type"], "less_than_equal")

    def test_defaults_and_decoding(self):
        r = request(self.srv, "GET", ITEM % GOOD + "?q=caf%C3%A9+au+lait", headers={"X-Test": "hdr"})
        body = r.json()
        self.assertEqual((body["skip"], body["limit"], body["q"], body["x_test"]), (0, 100, "café au lait", "hdr"))

    def test_malformed_json_is_json_invalid(self):
        r = request(self.srv, "POST", "/fx/items", body='{"a": 1,,}', headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 422)
        d = r.json()["detail"][0]
        self.assertEqual(d["type"], "json_invalid")
        self.assertEqual(d["loc"][0], "body")
        self.assertIsInstance(d["loc"][1], int)
        self.assertEqual((d["msg"], d["input"]), ("JSON decode error", {}))
        self.assertIn("error", d["ctx"])

    def test_missing_body(self):
        r = request(self.srv, "POST", "/fx/items", body="", headers={"Content-Type": "application/json"})
        self.assertEqual(r.json(), {"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]})

    def test_non_json_content_type(self):
        r = request(self.srv, "POST", "/fx/items", body="a=b", headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json()["detail"][0]["type"], "model_attributes_type")

    def test_body_and_query_errors_together(self):
        r = request(self.srv, "POST", "/fx/items?parent_id=nope", body="[1,2]",
                    headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 422)
        types = [d["type"] for d in r.json()["detail"]]
        self.assertEqual(types, ["uuid_parsing", "dict_type"])

    def test_hostile_strings_round_trip(self):
        evil = {"s": "'; DROP TABLE users; --", "u": "\u2028\u0000\U0001F600", "h": "<script>&amp;</script>"}
        r = request(self.srv, "POST", "/fx/items", body=json.dumps(evil), headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json()["received"], evil)


if __name__ == "__main__":
    unittest.main(verbosity=2)
