#!/usr/bin/python3
"""For benchmarks and the quickstart: serves a JWKS on 127.0.0.1 like Stack
Auth's and prints, as one JSON line, the environment gtmd needs and a signed
token for a user.  Keeps serving until stdin closes or it is terminated."""
import json
import os
import signal
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from stackauth import FakeStack  # noqa: E402


def main():
    stack = FakeStack(project_id=os.environ.get("STACK_PROJECT_ID") or None)
    user = os.environ.get("BENCH_USER_ID") or str(uuid.uuid4())
    lifetime = int(os.environ.get("TOKEN_SECONDS", "3600"))
    import time
    token = stack.token(user, exp=int(time.time()) + lifetime)
    print(json.dumps({"env": stack.env(), "user_id": user, "token": token}), flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        sys.stdin.read()
    finally:
        stack.close()


if __name__ == "__main__":
    main()
