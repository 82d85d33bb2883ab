#!/usr/bin/python3
"""A fake Firecrawl (v1 scrape) for tests: standard library only, 127.0.0.1 only.

Start it, read its port, point FIRECRAWL_BASE_URL at it, stop it by pid:

    /usr/bin/python3 tests/fakes/fake_firecrawl.py [--port 0] [--key fc-test]
        [--port-file PATH] [--mode ok|error|timeout|garbage|unsuccessful|empty]
        [--status 500] [--delay-ms 0] [--hang-ms 30000]

Once listening it prints one line, "PORT <n>", on stdout (and writes <n> to
--port-file when given).  SIGTERM or SIGINT stops it.

The API, as Firecrawl answers it (external-apis.md section 4):

    POST /v1/scrape   Authorization: Bearer <key> (401 otherwise; any key
                      when --key is not given).  The JSON body is checked
                      like Firecrawl's strict schema: "url" required, unknown
                      keys give 400 BAD_REQUEST.  Success is
                      {"success":true,"data":{"markdown":...,"metadata":{...}}}
                      (plus "html" when asked for).  The markdown is the page
                      configured for that URL, else a generated page that
                      names the URL and carries a link and an image.

Modes (for every scrape, or per URL through "fail_urls"):

    ok            the success answer
    error         HTTP <status> (default 500) with Firecrawl's error body
                  for that status (401, 402, 408, 429, 500 ...)
    timeout       answers only after --hang-ms (the client gives up first)
    garbage       HTTP 200 with a body that is not JSON
    unsuccessful  HTTP 200 with {"success":false,...}
    empty         HTTP 200, success, and an empty markdown

Control endpoints (no auth), for tests to change behaviour and look back:

    POST /_fake/config    JSON, any of: {"mode": "...", "status": 500,
                          "delay_ms": 0, "hang_ms": 30000,
                          "pages": {"<url>": "<markdown>"},
                          "fail_urls": {"<url>": "<mode>" or <status>}}
                          (keys given replace the current values)
    GET  /_fake/requests  {"count": n, "requests": [{"path", "auth", "body"}]}
                          the scrape requests seen, in order, body parsed
    POST /_fake/reset     back to the start-up configuration, log cleared
"""

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCRAPE_KEYS = {
    "url", "formats", "onlyMainContent", "includeTags", "excludeTags", "headers", "waitFor",
    "mobile", "skipTlsVerification", "timeout", "actions", "location", "removeBase64Images",
    "blockAds", "proxy", "maxAge", "storeInCache", "jsonOptions", "changeTrackingOptions",
    "parsePDF", "zeroDataRetention", "origin", "integration",
}

ERROR_BODIES = {
    400: {"success": False, "code": "BAD_REQUEST", "error": "Bad Request"},
    401: {"success": False, "error": "Unauthorized: Invalid token"},
    402: {"success": False, "error": "Insufficient credits to perform this request."},
    403: {"success": False, "error": "This website is no longer supported."},
    408: {"success": False, "code": "SCRAPE_TIMEOUT", "error": "Scrape timed out"},
    429: {"success": False, "error": "Rate limit exceeded. Consumed (req/min): 11, Remaining (req/min): 0. "
                                     "Upgrade your plan at https://firecrawl.dev/pricing for increased rate "
                                     "limits or please retry after 12s, resets at Mon Jan 01 2024"},
    500: {"success": False, "code": "SCRAPE_ALL_ENGINES_FAILED",
          "error": "All scraping engines failed! -- Double check the URL to make sure it's not broken."},
}


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.initial = {
            "mode": args.mode, "status": args.status, "delay_ms": args.delay_ms,
            "hang_ms": args.hang_ms, "pages": {}, "fail_urls": {},
        }
        self.key = args.key
        self.reset()

    def reset(self):
        with self.lock:
            self.config = json.loads(json.dumps(self.initial))
            self.requests = []


def generated_markdown(url):
    return (
        "# Page for %s\n\n"
        "[Home](https://example.invalid/) [About](https://example.invalid/about)\n\n"
        "![Logo](https://example.invalid/logo.png)\n\n"
        "This page was scraped by the fake Firecrawl from [the site](%s).\n\n"
        "- First point\n- Second point\n" % (url, url)
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-firecrawl/1"

    def log_message(self, fmt, *args):  # quiet: tests read the request log instead
        pass

    def send_json(self, status, obj, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        state = self.server.state
        if self.path == "/_fake/requests":
            with state.lock:
                self.send_json(200, {"count": len(state.requests), "requests": state.requests})
            return
        self.send_json(404, {"success": False, "error": "Not found"})

    def do_POST(self):
        state = self.server.state
        raw = self.read_body()
        if self.path == "/_fake/reset":
            state.reset()
            self.send_json(200, {"ok": True})
            return
        if self.path == "/_fake/config":
            try:
                update = json.loads(raw or b"{}")
            except ValueError:
                self.send_json(400, {"error": "config is not JSON"})
                return
            with state.lock:
                state.config.update(update)
                config = dict(state.config)
            self.send_json(200, config)
            return
        if self.path.rstrip("/") in ("/v1/scrape", "/v2/scrape"):
            self.scrape(state, raw)
            return
        self.send_json(404, {"success": False, "error": "Not found"})

    def scrape(self, state, raw):
        auth = self.headers.get("Authorization", "")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with state.lock:
            state.requests.append({"path": self.path, "auth": auth, "body": body,
                                   "content_type": self.headers.get("Content-Type", "")})
            config = json.loads(json.dumps(state.config))
        if state.key is not None and auth != "Bearer " + state.key:
            self.send_json(401, ERROR_BODIES[401])
            return
        if body is None:
            self.send_json(400, {"success": False, "code": "BAD_REQUEST_INVALID_JSON",
                                 "error": "Invalid JSON body"})
            return
        if not isinstance(body, dict) or not isinstance(body.get("url"), str) or set(body) - SCRAPE_KEYS:
            err = dict(ERROR_BODIES[400])
            err["details"] = [{"code": "unrecognized_keys", "keys": sorted(set(body) - SCRAPE_KEYS)}
                              if isinstance(body, dict) else {"code": "invalid_type"}]
            self.send_json(400, err)
            return
        url = body["url"]
        mode, status = config["mode"], config["status"]
        per_url = config["fail_urls"].get(url)
        if isinstance(per_url, int):
            mode, status = "error", per_url
        elif isinstance(per_url, str):
            mode = per_url
        if config["delay_ms"]:
            time.sleep(config["delay_ms"] / 1000.0)
        if mode == "timeout":
            time.sleep(config["hang_ms"] / 1000.0)
            mode = "ok"
        if mode == "error":
            self.send_json(status, ERROR_BODIES.get(status, {"success": False, "error": "HTTP %d" % status}))
            return
        if mode == "garbage":
            self.send_json(200, None, raw=b"<html>Bad gateway</html>")
            return
        if mode == "unsuccessful":
            self.send_json(200, {"success": False, "error": "Scrape failed"})
            return
        markdown = "" if mode == "empty" else config["pages"].get(url, generated_markdown(url))
        data = {"markdown": markdown,
                "metadata": {"title": "Fake page", "sourceURL": url, "url": url, "statusCode": 200,
                             "contentType": "text/html", "scrapeId": "fake-%d" % len(state.requests),
                             "proxyUsed": "basic", "creditsUsed": 1}}
        formats = body.get("formats") or ["markdown"]
        if "html" in formats:
            data["html"] = "<div>%s</div>" % markdown
        if "markdown" not in formats:
            del data["markdown"]
        self.send_json(200, {"success": True, "data": data})


def main():
    ap = argparse.ArgumentParser(description="fake Firecrawl v1 scrape API")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", default=None, help="the API key to require (any when not given)")
    ap.add_argument("--port-file")
    ap.add_argument("--mode", default="ok",
                    choices=["ok", "error", "timeout", "garbage", "unsuccessful", "empty"])
    ap.add_argument("--status", type=int, default=500)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--hang-ms", type=int, default=30000)
    args = ap.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args)
    port = server.server_address[1]

    def stop(signum, frame):
        # shutdown() waits for serve_forever, which runs in this thread: exit directly.
        sys.stdout.flush()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        with open(args.port_file, "w") as fh:
            fh.write("%d\n" % port)
    print("PORT %d" % port, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except SystemExit:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
