#!/usr/bin/python3
"""A fake LLM provider server speaking the OpenAI, Anthropic and Gemini wire
formats, scripted per provider, recording every request it receives.

Paths (any prefix before them is accepted, so a base URL of
http://127.0.0.1:PORT/v1 or http://127.0.0.1:PORT both work):
  openai     POST .../chat/completions
  anthropic  POST .../v1/messages
  gemini     POST .../v1beta/models/<model>:generateContent

Behaviour ("steps").  Each provider has a queue of steps, consumed one per
request, and a default step used when the queue is empty.  A step is a JSON
object; the keys combine:
  {"answer": <json>}        200 with that output (OpenAI: message content;
                            Anthropic: the forced tool's input; Gemini: text)
  {"text": "<raw>"}         200 with that raw text as the answer (for invalid
                            or fenced JSON; Anthropic: a text block, no tool)
  {"finish": "length"}      200, the answer cut off (OpenAI finish_reason
                            length, Anthropic stop_reason max_tokens, Gemini
                            MAX_TOKENS); with "text" or "answer" for the part sent
  {"error": KIND}           KIND: "rate_limit" (429), "server" (500),
                            "unavailable" (503), "overloaded" (529), "auth"
                            (401; Gemini: 400 API_KEY_INVALID), "quota" (OpenAI
                            429 insufficient_quota, Anthropic 402 billing_error,
                            Gemini 400 FAILED_PRECONDITION), "refusal" (200
                            with a refusal), "html" (502 with an HTML page)
  {"retry_after": S}        with an error: Retry-After: S (Gemini: RetryInfo
                            retryDelay); S may be a string (an HTTP-date)
  {"retry_after_ms": MS}    with an error: retry-after-ms (OpenAI)
  {"status": N, "body": B, "headers": {..}}   any raw answer (B: str or JSON)
  {"hang": true}            never answer; the connection is held until the
                            client closes it or /_fake/release is called
  {"reset": true}           close the connection with a TCP reset
  {"truncated_body": true}  announce the full Content-Length, send half, close
  {"reset_mid": true}       send the head and half the body, then a TCP reset
  {"stream": true}          200, chunked text/event-stream that never ends: an
                            SSE event every "interval_ms" (default 100; 0 = as
                            fast as the client reads), padded to "chunk_bytes"
                            when given, until the client closes the connection
                            or /_fake/release is called
  {"delay_ms": N}           wait N ms before doing the rest
  {"usage": false}          leave the usage fields out
  {"usage": {"prompt": P, "completion": C}}   report these token counts
The built-in default step answers {"ok": true}.

Control API (same port, JSON bodies and answers):
  POST /_fake/script    {"provider": P, "steps": [step, ...]}  append to P's queue
  POST /_fake/default   {"provider": P, "step": step}          P's default step
                        (provider "*" sets all three)
  POST /_fake/reset     clear queues, defaults and the request log
  POST /_fake/release   end every held ("hang") request
  GET  /_fake/requests[?provider=P]   the recorded requests, oldest first:
                        {"seq", "provider", "path", "headers" (lower-case
                        names), "body" (parsed JSON, or the raw text), "t"
                        (monotonic seconds when received), "step" (the step used)}
  GET  /_fake/wait?n=N[&provider=P][&timeout=S]   blocks until N requests
                        (of P) are recorded; {"ok": bool, "count": n}
  GET  /_fake/stats     {"requests": {P: n}, "in_flight": n, "max_in_flight": n,
                        "connections": n (accepted so far), "open_connections": n
                        (accepted and not yet closed)}

As a program: fake_llm.py [--port N] [--default STEP_JSON] [--no-record]
prints "PORT <n>" on stdout once listening and serves until SIGTERM/SIGINT
or until stdin reaches EOF when --stdin-eof is given.
As a module: with FakeLLM(defaults={"openai": {...}}) as fake: fake.port,
fake.script(...), fake.requests(...), fake.wait_requests(...).
"""
import argparse
import http.server
import json
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

PROVIDERS = ("openai", "anthropic", "gemini")
DEFAULT_STEP = {"answer": {"ok": True}}
MAX_RECORDED = 20000


def provider_for(path):
    p = urllib.parse.urlparse(path).path
    if p.endswith("/chat/completions"):
        return "openai"
    if p.endswith("/v1/messages"):
        return "anthropic"
    if "/v1beta/models/" in p and p.endswith(":generateContent"):
        return "gemini"
    return None


class State:
    def __init__(self, defaults=None, record=True):
        self.lock = threading.Condition()
        self.record = record
        self.queues = {p: [] for p in PROVIDERS}
        self.base_defaults = dict(defaults or {})
        self.defaults = {}
        self.reset()
        self.release_gen = 0      # bumped by /_fake/release: held requests end
        self.stopping = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.open_connections = 0

    def reset(self):
        with self.lock:
            self.queues = {p: [] for p in PROVIDERS}
            self.defaults = {p: self.base_defaults.get(p, self.base_defaults.get("*", DEFAULT_STEP))
                             for p in PROVIDERS}
            self.log = []
            self.counts = {p: 0 for p in PROVIDERS}
            self.seq = 0

    def next_step(self, provider):
        with self.lock:
            q = self.queues[provider]
            return q.pop(0) if q else self.defaults[provider]

    def add(self, entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.counts[entry["provider"]] += 1
            if self.record:
                self.log.append(entry)
                if len(self.log) > MAX_RECORDED:
                    del self.log[: len(self.log) - MAX_RECORDED]
            self.lock.notify_all()

    def count(self, provider):
        return self.counts[provider] if provider else sum(self.counts.values())


# ---- answers in each wire format ----------------------------------------------

def usage_numbers(step, request_len, text):
    u = step.get("usage", True)
    if u is False:
        return None
    if isinstance(u, dict):
        return u.get("prompt", 0), u.get("completion", 0)
    return max(1, request_len // 4), max(1, len(text) // 4)


def answer_text(step):
    if "text" in step:
        return step["text"]
    return json.dumps(step.get("answer", DEFAULT_STEP["answer"]))


def cut(text):
    return text[: max(1, len(text) // 2)]


def openai_success(step, req, request_len):
    text = answer_text(step)
    finish = "stop"
    refusal = None
    content = text
    if step.get("finish") == "length":
        finish, content = "length", cut(text)
    if step.get("error") == "refusal":
        content, refusal = None, "I'm sorry, I can't help with that."
    body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": req.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content,
                                                 "refusal": refusal},
                         "logprobs": None, "finish_reason": finish}]}
    u = usage_numbers(step, request_len, text)
    if u:
        body["usage"] = {"prompt_tokens": u[0], "completion_tokens": u[1],
                         "total_tokens": u[0] + u[1]}
    return body


def anthropic_success(step, req, request_len, seq):
    text = answer_text(step)
    tool = ((req.get("tool_choice") or {}).get("name")) or "emit"
    if step.get("error") == "refusal":
        content, stop = [{"type": "text", "text": "I can't help with that."}], "refusal"
    elif step.get("finish") == "length":
        # A tool input cut off mid-way arrives as an empty input.
        content = ([{"type": "text", "text": cut(text)}] if "text" in step else
                   [{"type": "tool_use", "id": "toolu_%d" % seq, "name": tool, "input": {}}])
        stop = "max_tokens"
    elif "text" in step:
        content, stop = [{"type": "text", "text": text}], "end_turn"
    else:
        content = [{"type": "tool_use", "id": "toolu_%d" % seq, "name": tool,
                    "input": step.get("answer", DEFAULT_STEP["answer"])}]
        stop = "tool_use"
    body = {"id": "msg_fake%d" % seq, "type": "message", "role": "assistant",
            "model": req.get("model", "fake"), "content": content, "stop_reason": stop,
            "stop_sequence": None}
    u = usage_numbers(step, request_len, text)
    if u:
        body["usage"] = {"input_tokens": u[0], "output_tokens": u[1],
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    return body


def gemini_success(step, req, request_len):
    text = answer_text(step)
    finish = "STOP"
    if step.get("error") == "refusal":
        finish, text = "SAFETY", ""
    elif step.get("finish") == "length":
        finish, text = "MAX_TOKENS", cut(text)
    cand = {"finishReason": finish, "index": 0}
    if text:
        cand["content"] = {"role": "model", "parts": [{"text": text}]}
    body = {"candidates": [cand], "modelVersion": "fake", "responseId": "fake"}
    u = usage_numbers(step, request_len, text)
    if u:
        body["usageMetadata"] = {"promptTokenCount": u[0], "candidatesTokenCount": u[1],
                                 "totalTokenCount": u[0] + u[1]}
    return body


ERRORS = {
    # kind: (openai status, type, code), (anthropic status, type), (gemini status, STATUS, reason)
    "rate_limit": ((429, "requests", "rate_limit_exceeded"), (429, "rate_limit_error"),
                   (429, "RESOURCE_EXHAUSTED", None)),
    "server": ((500, "server_error", None), (500, "api_error"), (500, "INTERNAL", None)),
    "unavailable": ((503, "server_error", "slow_down"), (503, "api_error"),
                    (503, "UNAVAILABLE", None)),
    "overloaded": ((529, "server_error", None), (529, "overloaded_error"),
                   (529, "UNAVAILABLE", None)),
    "auth": ((401, "invalid_request_error", "invalid_api_key"), (401, "authentication_error"),
             (400, "INVALID_ARGUMENT", "API_KEY_INVALID")),
    "quota": ((429, "insufficient_quota", "insufficient_quota"), (402, "billing_error"),
              (400, "FAILED_PRECONDITION", None)),
}


def error_answer(provider, step):
    kind = step["error"]
    headers = {}
    if kind == "html":
        status = step.get("status", 502)
        page = ("<html><head><title>%d Bad Gateway</title></head><body><center><h1>%d Bad "
                "Gateway</h1></center></body></html>" % (status, status))
        return status, page, {"Content-Type": "text/html"}
    o, a, g = ERRORS[kind]
    ra = step.get("retry_after")
    if provider == "openai":
        status = o[0]
        body = {"error": {"message": "fake %s" % kind, "type": o[1], "param": None, "code": o[2]}}
        if step.get("retry_after_ms") is not None:
            headers["retry-after-ms"] = str(step["retry_after_ms"])
    elif provider == "anthropic":
        status = a[0]
        body = {"type": "error", "error": {"type": a[1], "message": "fake %s" % kind},
                "request_id": "req_fake"}
    else:
        status = g[0]
        details = []
        if g[2]:
            details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": g[2],
                            "domain": "googleapis.com"})
        if ra is not None and not isinstance(ra, str):
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": "%gs" % ra})
        body = {"error": {"code": status, "message": "fake %s" % kind, "status": g[1],
                          "details": details}}
    if ra is not None and provider != "gemini":
        headers["retry-after"] = ra if isinstance(ra, str) else ("%g" % ra)
    return status, body, headers


# ---- the server -----------------------------------------------------------------

def make_handler(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            with state.lock:
                state.connections += 1
                state.open_connections += 1

        def finish(self):
            try:
                super().finish()
            except (ConnectionError, OSError, ValueError):
                pass   # the socket was reset on purpose, or the client went away
            finally:
                try:
                    self.connection.close()
                except OSError:
                    pass
                with state.lock:
                    state.open_connections -= 1
                    state.lock.notify_all()

        def log_message(self, *a):
            pass

        def handle(self):
            try:
                super().handle()
            except (ConnectionError, BrokenPipeError, OSError, ValueError):
                pass   # the client went away, or we reset the connection on purpose

        # -- plumbing --
        def read_body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def send(self, status, body, headers=None):
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
                ctype = "application/json"
            else:
                data = (body or "").encode() if isinstance(body, str) else (body or b"")
                ctype = "text/plain"
            headers = dict(headers or {})
            self.send_response(status)
            if not any(k.lower() == "content-type" for k in headers):
                self.send_header("Content-Type", ctype)
            for k, v in headers.items():
                self.send_header(k, str(v))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def hold(self):
            """Keeps the connection open, answering nothing, until the client
            closes it or the test releases held requests."""
            sock = self.connection
            gen = state.release_gen
            while state.release_gen == gen and not state.stopping:
                r, _, _ = select.select([sock], [], [], 0.05)
                if r:
                    try:
                        if not sock.recv(1, socket.MSG_PEEK):
                            break
                    except OSError:
                        break
            self.close_connection = True

        def client_gone(self, timeout):
            """Waits up to timeout seconds; True when the client closed."""
            r, _, _ = select.select([self.connection], [], [], timeout)
            if not r:
                return False
            try:
                return not self.connection.recv(1, socket.MSG_PEEK)
            except OSError:
                return True

        def stream(self, step):
            """An SSE answer that never ends (until the client leaves or the
            test releases it)."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            interval = step.get("interval_ms", 100) / 1000.0
            pad = step.get("chunk_bytes", 0)
            gen = state.release_gen
            n = 0
            while state.release_gen == gen and not state.stopping:
                n += 1
                event = b'data: {"choices":[{"index":0,"delta":{"content":"tick %d"}}]}\n\n' % n
                if pad > len(event):
                    event = b": " + b"x" * (pad - len(event) - 3) + b"\n" + event
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                if self.client_gone(interval):
                    break
            self.close_connection = True

        def reset(self):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        # -- control API --
        def control(self, method):
            u = urllib.parse.urlparse(self.path)
            q = dict(urllib.parse.parse_qsl(u.query))
            raw = self.read_body() if method == "POST" else b""
            try:
                arg = json.loads(raw) if raw else {}
            except ValueError:
                return self.send(400, {"error": "body is not JSON"})
            route = u.path[len("/_fake/"):]
            if method == "POST" and route == "script":
                p = arg.get("provider")
                if p not in PROVIDERS or not isinstance(arg.get("steps"), list):
                    return self.send(400, {"error": "need provider and steps"})
                with state.lock:
                    state.queues[p].extend(arg["steps"])
                return self.send(200, {"ok": True})
            if method == "POST" and route == "default":
                p = arg.get("provider")
                if (p not in PROVIDERS and p != "*") or not isinstance(arg.get("step"), dict):
                    return self.send(400, {"error": "need provider and step"})
                with state.lock:
                    for name in (PROVIDERS if p == "*" else (p,)):
                        state.defaults[name] = arg["step"]
                return self.send(200, {"ok": True})
            if method == "POST" and route == "reset":
                state.reset()
                return self.send(200, {"ok": True})
            if method == "POST" and route == "release":
                with state.lock:
                    state.release_gen += 1
                return self.send(200, {"ok": True})
            if method == "GET" and route == "requests":
                p = q.get("provider")
                with state.lock:
                    out = [e for e in state.log if not p or e["provider"] == p]
                return self.send(200, out)
            if method == "GET" and route == "wait":
                n = int(q.get("n", "1"))
                p = q.get("provider")
                deadline = time.monotonic() + float(q.get("timeout", "10"))
                with state.lock:
                    while state.count(p) < n:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        state.lock.wait(left)
                    c = state.count(p)
                return self.send(200, {"ok": c >= n, "count": c})
            if method == "GET" and route == "stats":
                with state.lock:
                    out = {"requests": dict(state.counts), "in_flight": state.in_flight,
                           "max_in_flight": state.max_in_flight,
                           "connections": state.connections,
                           "open_connections": state.open_connections}
                return self.send(200, out)
            return self.send(404, {"error": "unknown control route"})

        def do_GET(self):
            if self.path.startswith("/_fake/"):
                return self.control("GET")
            self.send(404, {"error": "not found"})

        def do_POST(self):
            if self.path.startswith("/_fake/"):
                return self.control("POST")
            provider = provider_for(self.path)
            raw = self.read_body()
            if not provider:
                return self.send(404, {"error": {"message": "no such path"}})
            try:
                req = json.loads(raw)
            except ValueError:
                req = raw.decode("utf-8", "replace")
            step = state.next_step(provider)
            state.add({"provider": provider, "path": self.path,
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body": req, "t": time.monotonic(), "step": step})
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self.act(provider, step, req if isinstance(req, dict) else {}, len(raw))
            finally:
                with state.lock:
                    state.in_flight -= 1

        def act(self, provider, step, req, request_len):
            if step.get("delay_ms"):
                time.sleep(step["delay_ms"] / 1000.0)
            if step.get("hang"):
                return self.hold()
            if step.get("reset"):
                return self.reset()
            if step.get("stream"):
                return self.stream(step)
            if "status" in step and "error" not in step:
                return self.send(step["status"], step.get("body", ""), step.get("headers"))
            if step.get("error") and step["error"] != "refusal":
                status, body, headers = error_answer(provider, step)
                headers.update(step.get("headers") or {})
                return self.send(status, body, headers)
            seq = state.seq
            if provider == "openai":
                body = openai_success(step, req, request_len)
            elif provider == "anthropic":
                body = anthropic_success(step, req, request_len, seq)
            else:
                body = gemini_success(step, req, request_len)
            if step.get("reset_mid") or step.get("truncated_body"):
                # the full Content-Length announced, half the body sent
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                if step.get("reset_mid"):
                    return self.reset()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.send(200, body, step.get("headers"))

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096   # the benchmark opens ~1,000 connections at once
    allow_reuse_address = True


class FakeLLM:
    """In-process use from Python tests."""

    def __init__(self, defaults=None, record=True, port=0):
        self.state = State(defaults, record)
        self.httpd = Server(("127.0.0.1", port), make_handler(self.state))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, provider):
        base = "http://127.0.0.1:%d" % self.port
        return base + "/v1" if provider == "openai" else base

    def script(self, provider, steps):
        with self.state.lock:
            self.state.queues[provider].extend(steps)

    def set_default(self, provider, step):
        with self.state.lock:
            for name in (PROVIDERS if provider == "*" else (provider,)):
                self.state.defaults[name] = step

    def requests(self, provider=None):
        with self.state.lock:
            return [e for e in self.state.log if not provider or e["provider"] == provider]

    def wait_requests(self, n, provider=None, timeout=10):
        deadline = time.monotonic() + timeout
        with self.state.lock:
            while self.state.count(provider) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.state.lock.wait(left)
        return True

    def reset(self):
        self.state.reset()

    def stats(self):
        with self.state.lock:
            return {"requests": dict(self.state.counts), "in_flight": self.state.in_flight,
                    "max_in_flight": self.state.max_in_flight, "connections": self.state.connections,
                    "open_connections": self.state.open_connections}

    def wait_stats(self, pred, timeout=10):
        """Waits until pred(stats) holds (connections closing wake it); False on timeout."""
        deadline = time.monotonic() + timeout
        with self.state.lock:
            while True:
                st = {"in_flight": self.state.in_flight, "open_connections": self.state.open_connections,
                      "connections": self.state.connections, "requests": dict(self.state.counts)}
                if pred(st):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.state.lock.wait(min(left, 0.1))

    def release(self):
        with self.state.lock:
            self.state.release_gen += 1

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.state.stopping = True
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--default", help="default step for every provider, as JSON")
    ap.add_argument("--no-record", action="store_true", help="keep counts, not requests")
    ap.add_argument("--stdin-eof", action="store_true", help="exit when stdin reaches EOF")
    args = ap.parse_args()
    defaults = {"*": json.loads(args.default)} if args.default else None
    fake = FakeLLM(defaults, record=not args.no_record, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    fake.start()
    print("PORT %d" % fake.port, flush=True)
    if args.stdin_eof:
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.wait(0.5):
        pass
    fake.stop()


if __name__ == "__main__":
    main()
