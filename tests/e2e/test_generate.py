"""The generate endpoints end to end: the real binary, a real Postgres, fake
OpenAI/Anthropic/Gemini servers, a local website.  Shapes, post-processing,
failover and repair through the server, every failure class (422, 502, 503,
504), SSE progress, coalescing of identical requests, cancellation when the
client leaves, and a website that cannot be read."""
import http.server
import json
import os
import socket
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))

import pgutil  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402
from harness import Conn, Server, raw_request, request  # noqa: E402
from stackauth import FakeStack  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "unit", "schemas")


def example(name):
    with open(os.path.join(SCHEMAS, name + ".example.json")) as f:
        return json.load(f)


OVERVIEW = example("product_overview")
ACCOUNT = example("target_account")
PERSONA = example("target_persona")
EMAIL = example("email_generation_blossomer")
POSITIONING = {"unique_insight": "Teams lose a day a week to manual reconciliation.",
               "unique_selling_points": [
                   {"theme": "Speed", "description": "Closes books in hours.", "evidence": ["Customer quote"]},
                   {"theme": "Trust", "description": "Audit trail by default.", "evidence": ["SOC 2"]}]}

PAGE = b"""<html><head><title>Ledgerly - reconciliation</title></head><body>
<nav><a href="/">Home</a> <a href="/about">About</a></nav>
<div class="cookie-banner">We use cookies</div>
<h1>Ledgerly closes your books</h1><p>Automated bank reconciliation for mid-market finance teams.</p>
<footer>All rights reserved</footer></body></html>"""


class Website:
    def __init__(self):
        outer = self
        self.hits = 0

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class GenerateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pgutil.require()
        cls.db = pgutil.MigratedDatabase().__enter__()
        cls.fake = FakeLLM().start()
        cls.site = Website()
        cls.stack = FakeStack()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()
        cls.site.close()
        cls.fake.stop()
        cls.db.__exit__(None, None, None)

    def setUp(self):
        self.fake.reset()

    def server(self, providers=("openai",), **env):
        e = dict(self.stack.env(), DATABASE_URL=self.db.url, GTM_FETCH_ALLOW="127.0.0.1:%d" % self.site.port,
                 WEB_CACHE_TTL_HOURS="0", LLM_PROVIDERS=",".join(providers) or "openai")
        for p in providers:
            e["%s_API_KEY" % p.upper()] = "test-key-" + p
            e["%s_BASE_URL" % p.upper()] = self.fake.url(p)
        e.update(env)
        srv = Server(env=e, module_dir=os.environ["MODULE_DIR"]).start()
        self.addCleanup(self.stop_server, srv)
        return srv

    def stop_server(self, srv):
        self.assertEqual(srv.stop(), 0)

    def post(self, srv, path, body, headers=None):
        return request(srv, "POST", path, body=body, headers=headers)

    # --- each endpoint, its shape and its post-processing ---

    def test_company_overview_with_website(self):
        srv = self.server()
        self.fake.script("openai", [{"answer": OVERVIEW}])
        r = self.post(srv, "/demo/companies/generate-ai",
                      {"website_url": self.site.url(), "user_inputted_context": "We sell to CFOs & controllers"})
        self.assertEqual(r.status, 200, r.body)
        out = r.json()
        self.assertEqual(list(out)[:3], ["company_name", "company_url", "description"])
        self.assertEqual(out["capabilities"], OVERVIEW["capabilities"])
        self.assertIs(out["metadata"]["website_read"], True)
        sent = self.fake.requests("openai")[0]["body"]
        roles = [m["role"] for m in sent["messages"]]
        self.assertEqual(roles, ["system", "user"])
        user = sent["messages"][1]["content"]
        self.assertIn("Automated bank reconciliation for mid-market finance teams.", user)
        self.assertIn("We sell to CFOs & controllers", user)      # no HTML escaping
        self.assertNotIn("We use cookies", user)                    # boilerplate removed
        self.assertNotIn("<h1>", user)

    def test_api_route_needs_a_user(self):
        srv = self.server()
        r = self.post(srv, "/api/companies/generate-ai", {"website_url": self.site.url()})
        self.assertEqual(r.status, 401)
        self.fake.script("openai", [{"answer": OVERVIEW}])
        r = self.post(srv, "/api/companies/generate-ai", {"website_url": self.site.url()},
                      {"Authorization": "Bearer " + self.stack.token(str(uuid.uuid4()))})
        self.assertEqual(r.status, 200, r.body)

    def test_validation(self):
        srv = self.server()
        r = self.post(srv, "/demo/companies/generate-ai", {"user_inputted_context": 5})
        self.assertEqual(r.status, 422)
        self.assertEqual([(e["type"], e["loc"]) for e in r.json()["detail"]],
                         [("missing", ["body", "website_url"]), ("string_type", ["body", "user_inputted_context"])])
        r = self.post(srv, "/demo/accounts/generate-ai", {"website_url": "x", "company_context": "not an object"})
        self.assertEqual(r.json()["detail"][0]["type"], "dict_type")
        for path in ("/demo/companies/generate-ai", "/demo/accounts/generate-ai", "/demo/personas/generate-ai"):
            r = self.post(srv, path, {"website_url": None})     # pydantic's `str`: null is not a string
            self.assertEqual((r.status, [(e["type"], e["loc"]) for e in r.json()["detail"]]),
                             (422, [("string_type", ["body", "website_url"])]), path)
        self.assertEqual(self.fake.requests(), [])

    def test_account_persona_email_positioning(self):
        srv = self.server()
        self.fake.script("openai", [{"answer": ACCOUNT}, {"answer": PERSONA}, {"answer": EMAIL}, {"answer": POSITIONING}])
        r = self.post(srv, "/demo/accounts/generate-ai", {"website_url": self.site.url(), "account_profile_name": "Mid-market",
                                                          "hypothesis": "They reconcile by hand", "company_context": OVERVIEW})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["target_account_name"], ACCOUNT["target_account_name"])
        r = self.post(srv, "/demo/personas/generate-ai", {"website_url": self.site.url(), "persona_profile_name": "The Controller",
                                                          "company_context": OVERVIEW, "target_account_context": ACCOUNT})
        self.assertEqual(r.json()["target_persona_name"], "The Controller")   # the caller's name wins
        t0 = time.monotonic()
        r = self.post(srv, "/demo/campaigns/generate-ai", {"company_context": OVERVIEW, "target_account": ACCOUNT,
                                                           "target_persona": PERSONA,
                                                           "preferences": {"emphasis": "pain-point", "template": "blossomer"}})
        self.assertEqual(r.status, 200, r.body)
        email = r.json()
        meta = email["metadata"]
        self.assertNotEqual(meta["generation_id"], EMAIL["metadata"]["generation_id"])
        self.assertEqual(str(uuid.UUID(meta["generation_id"])), meta["generation_id"])
        self.assertIsInstance(meta["processing_time_ms"], int)
        self.assertLessEqual(meta["processing_time_ms"], (time.monotonic() - t0) * 1000 + 50)
        for key, seg in email["breakdown"].items():
            want = {"subject": "bg-purple-50 border-purple-200", "cta": "bg-yellow-50 border-yellow-200"}.get(key)
            if want:
                self.assertEqual(seg["color"], want)
        caps = ", ".join(OVERVIEW["capabilities"][:3])
        self.assertIn(caps, self.fake.requests("openai")[2]["body"]["messages"][1]["content"])
        auth = {"Authorization": "Bearer " + self.stack.token(str(uuid.uuid4()))}
        r = self.post(srv, "/api/campaigns/positioning", {"company_context": OVERVIEW, "notes": "anything"}, auth)
        self.assertEqual((r.status, r.json()), (200, POSITIONING))
        r = self.post(srv, "/api/campaigns/positioning", [1, 2], auth)
        self.assertEqual(r.status, 422)

    def test_insufficient_content_is_422(self):
        srv = self.server()
        thin = dict(OVERVIEW, metadata={"context_quality": "insufficient"})
        self.fake.script("openai", [{"answer": thin}])
        r = self.post(srv, "/demo/companies/generate-ai", {"website_url": self.site.url()})
        self.assertEqual(r.status, 422)
        self.assertIn("Insufficient website content", r.json()["detail"])

    # --- providers, failover, repair, failures ---

    def test_all_eight_endpoints_on_each_provider(self):
        bodies = {
            "companies": ({"website_url": self.site.url()}, OVERVIEW, "company_name"),
            "accounts": ({"website_url": self.site.url(), "company_context": OVERVIEW}, ACCOUNT, "target_account_name"),
            "personas": ({"website_url": self.site.url(), "company_context": OVERVIEW,
                          "target_account_context": ACCOUNT}, PERSONA, "target_persona_name"),
            "campaigns": ({"company_context": OVERVIEW, "preferences": {"emphasis": "capabilities"}}, EMAIL, "subjects"),
        }
        auth = {"Authorization": "Bearer " + self.stack.token(str(uuid.uuid4()))}
        for provider in ("openai", "anthropic", "gemini"):
            self.fake.reset()
            srv = self.server(providers=(provider,))
            for prefix, headers in (("/demo", None), ("/api", auth)):
                for name, (body, answer, key) in bodies.items():
                    with self.subTest(provider=provider, route=prefix + "/" + name):
                        self.fake.script(provider, [{"answer": answer}])
                        r = self.post(srv, "%s/%s/generate-ai" % (prefix, name), body, headers)
                        self.assertEqual(r.status, 200, r.body)
                        self.assertEqual(r.json()[key], answer[key])
            self.assertEqual(len(self.fake.requests(provider)), 8)

    def test_failover_and_repair(self):
        srv = self.server(providers=("openai", "anthropic"))
        bad = dict(OVERVIEW)
        del bad["objections"]
        self.fake.script("openai", [{"error": "auth"}])
        self.fake.script("anthropic", [{"answer": bad}, {"answer": OVERVIEW}])
        r = self.post(srv, "/demo/companies/generate-ai", {"website_url": self.site.url()})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(len(self.fake.requests("openai")), 1)        # a bad key is not retried
        repair = self.fake.requests("anthropic")[1]["body"]
        self.assertIn("objections", json.dumps(repair["messages"][-1]))

    def test_no_valid_output_is_502(self):
        srv = self.server()
        self.fake.set_default("openai", {"text": "not json at all"})
        r = self.post(srv, "/demo/companies/generate-ai", {"website_url": self.site.url()})
        self.assertEqual(r.status, 502, r.body)
        self.assertTrue(r.json()["detail"].startswith("The AI providers did not produce a valid result"))

    def test_no_provider_is_503(self):
        srv = self.server(providers=(), OPENAI_API_KEY="", OPENAI_BASE_URL="")
        r = self.post(srv, "/demo/companies/generate-ai", {"website_url": self.site.url()})
        self.assertEqual(r.status, 503, r.body)
        self.assertIn("OPENAI_API_KEY", r.json()["detail"])
        self.assertIsNotNone(r.header("retry-after"))

    def test_open_circuit_is_503_with_retry_after(self):
        srv = self.server(LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD="1", LLM_CIRCUIT_BREAKER_RECOVERY_TIMEOUT="120")
        self.fake.set_default("openai", {"error": "server"})
        r = self.post(srv, "/demo/companies/generate-ai", {"website_url": self.site.url(), "user_inputted_context": "a"})
        self.assertEqual(r.status, 502, r.body)
        r = self.post(srv, "/demo/companies/generate-ai", {"website_url": self.site.url(), "user_inputted_context": "b"})
        self.assertEqual(r.status, 503, r.body)
        self.assertGreater(int(r.header("retry-after")), 60)

    def test_deadline_is_504(self):
        srv = self.server(GTM_GENERATE_TIMEOUT="1.5")
        self.fake.set_default("openai", {"hang": True})
        t0 = time.monotonic()
        r = self.post(srv, "/demo/companies/generate-ai", {"website_url": self.site.url()})
        took = time.monotonic() - t0
        self.assertEqual(r.status, 504, r.body)
        self.assertLess(took, 5)
        self.assertEqual(r.header("content-type"), "application/json")

    def test_unreadable_website_does_not_fail_the_request(self):
        srv = self.server()
        self.fake.script("openai", [{"answer": OVERVIEW}, {"answer": OVERVIEW}])
        # a private address outside GTM_FETCH_ALLOW: the SSRF guard refuses it
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        r = self.post(srv, "/demo/companies/generate-ai", {"website_url": "http://127.0.0.1:%d/" % port})
        self.assertEqual(r.status, 200, r.body)
        self.assertIs(r.json()["metadata"]["website_read"], False)
        self.assertIn("website_error", r.json()["metadata"])
        r = self.post(srv, "/demo/companies/generate-ai", {"website_url": "not a url"})
        self.assertEqual(r.status, 200, r.body)
        self.assertIs(r.json()["metadata"]["website_read"], False)

    # --- SSE, coalescing, cancellation ---

    def read_events(self, conn, head=None):
        """Reads a chunked SSE body (and its head, unless given); returns [(event, data)]."""
        head = head or conn.read_response(head=True)
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("content-type"), "text/event-stream")
        self.assertEqual(head.header("transfer-encoding"), "chunked")
        body = b""
        while True:
            line = conn._line()
            size = int(line, 16)
            if size == 0:
                conn._line()
                break
            while len(conn.buf) < size + 2:
                conn._fill()
            body += conn.buf[:size]
            conn.buf = conn.buf[size + 2:]
        events = []
        for block in body.decode().strip().split("\n\n"):
            lines = dict(l.split(": ", 1) for l in block.split("\n"))
            events.append((lines["event"], json.loads(lines["data"])))
        return events

    def test_sse_progress_then_result(self):
        srv = self.server()
        self.fake.script("openai", [{"answer": OVERVIEW}])
        c = Conn(srv.connect())
        c.send(raw_request("POST", "/demo/companies/generate-ai", body={"website_url": self.site.url()},
                           headers={"Accept": "text/event-stream"}))
        events = self.read_events(c)
        stages = [d["stage"] for e, d in events if e == "progress"]
        self.assertEqual(stages, ["fetching", "analysing", "generating", "validating", "done"])
        self.assertEqual(events[-1][0], "result")
        self.assertEqual(events[-1][1]["company_name"], OVERVIEW["company_name"])
        # keep-alive survives the stream
        c.send(raw_request("GET", "/health"))
        self.assertEqual(c.read_response().status, 200)
        c.close()

    def test_sse_error_event(self):
        srv = self.server()
        self.fake.set_default("openai", {"text": "nope"})
        c = Conn(srv.connect())
        c.send(raw_request("POST", "/demo/companies/generate-ai", body={"website_url": self.site.url()},
                           headers={"Accept": "text/event-stream"}))
        events = self.read_events(c)
        self.assertEqual(events[-1][0], "error")
        self.assertEqual(events[-1][1]["status"], 502)
        self.assertIn("detail", events[-1][1])
        c.close()

    def test_identical_requests_share_one_run(self):
        srv = self.server()
        self.fake.set_default("openai", {"answer": OVERVIEW, "delay_ms": 700})
        body = {"website_url": self.site.url(), "user_inputted_context": "shared"}
        out = []
        ts = [threading.Thread(target=lambda: out.append(self.post(srv, "/demo/companies/generate-ai", body)))
              for _ in range(5)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual([r.status for r in out], [200] * 5)
        self.assertEqual(len(self.fake.requests("openai")), 1)
        # different bodies do not share
        self.post(srv, "/demo/companies/generate-ai", dict(body, user_inputted_context="other"))
        self.assertEqual(len(self.fake.requests("openai")), 2)

    def test_a_shared_run_survives_one_client_leaving(self):
        srv = self.server()
        self.fake.set_default("openai", {"answer": OVERVIEW, "delay_ms": 800})
        body = {"website_url": self.site.url(), "user_inputted_context": "shared-leave"}
        leaver = Conn(srv.connect())
        leaver.send(raw_request("POST", "/demo/companies/generate-ai", body=body))
        self.assertTrue(self.fake.wait_requests(1, "openai"))
        # an SSE answer's head comes once the request has joined the run
        stayer = Conn(srv.connect())
        stayer.send(raw_request("POST", "/demo/companies/generate-ai", body=body,
                                headers={"Accept": "text/event-stream"}))
        head = stayer.read_response(head=True)
        self.assertEqual(head.status, 200)
        leaver.sock.close()        # the first client leaves; the second still waits on the same run
        events = self.read_events(stayer, head)
        self.assertEqual(events[-1][0], "result")
        self.assertEqual(events[-1][1]["company_name"], OVERVIEW["company_name"])
        self.assertEqual(len(self.fake.requests("openai")), 1)
        stayer.close()

    def test_client_leaving_cancels_the_run(self):
        srv = self.server()
        self.fake.set_default("openai", {"hang": True})
        c = Conn(srv.connect())
        c.send(raw_request("POST", "/demo/companies/generate-ai", body={"website_url": self.site.url(),
                                                                        "user_inputted_context": "leaving"},
                           headers={"X-Request-Id": "leaver-1"}))
        self.assertTrue(self.fake.wait_requests(1, "openai"))
        c.sock.close()
        self.assertTrue(srv.wait_log(lambda rec: rec.get("req_id") == "leaver-1" and
                                     "cancel" in rec.get("msg", "")), srv.lines[-5:])
        stats = json.loads(request_raw(self.fake.port, "/_fake/stats"))
        deadline = time.monotonic() + 5
        while stats["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)   # the fake has no event for "a client hung up"; poll it
            stats = json.loads(request_raw(self.fake.port, "/_fake/stats"))
        self.assertEqual(stats["in_flight"], 0)   # gtmd hung up on the provider


def request_raw(port, path):
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.split(b"\r\n\r\n", 1)[1]


if __name__ == "__main__":
    unittest.main(verbosity=2)
