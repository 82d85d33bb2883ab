"""A fake Stack Auth for tests: P-256 (and RSA) keys made here, a JWKS served
on 127.0.0.1, and tokens minted by PyJWT (an implementation independent of
gtmd's), including forged ones."""
import base64
import http.server
import json
import threading
import time
import uuid

import jwt
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64u(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(length, "big"))


class Key:
    def __init__(self, kind="EC", kid=None):
        self.kind = kind
        self.kid = kid or uuid.uuid4().hex[:12]
        if kind == "EC":
            self.private = ec.generate_private_key(ec.SECP256R1())
            nums = self.private.public_key().public_numbers()
            self.jwk = {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": self.kid,
                        "x": int_b64u(nums.x, 32), "y": int_b64u(nums.y, 32)}
            self.alg = "ES256"
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            nums = self.private.public_key().public_numbers()
            self.jwk = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                        "n": int_b64u(nums.n), "e": int_b64u(nums.e)}
            self.alg = "RS256"

    def public_pem(self):
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)


class FakeStack:
    def __init__(self, project_id=None):
        self.project_id = project_id or str(uuid.uuid4())
        self.keys = [Key("EC"), Key("RSA")]
        self.fetches = 0
        self.fail = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.fetches += 1
                if outer.fail or not self.path.endswith("/.well-known/jwks.json"):
                    body = b'{"error":"nope"}'
                    self.send_response(500 if outer.fail else 404)
                else:
                    body = json.dumps({"keys": [k.jwk for k in outer.keys]}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.issuer = "https://api.stack-auth.com/api/v1/projects/%s" % self.project_id
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def env(self):
        return {"STACK_PROJECT_ID": self.project_id,
                "STACK_JWKS_URL": "http://127.0.0.1:%d/api/v1/projects/%s/.well-known/jwks.json"
                                  % (self.port, self.project_id),
                "STACK_ISSUER": self.issuer}

    def claims(self, sub, **over):
        now = int(time.time())
        c = {"sub": sub, "iss": self.issuer, "aud": self.project_id, "iat": now, "exp": now + 600,
             "role": "authenticated", "branch_id": "main"}
        for k, v in over.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def token(self, sub=None, key=None, headers=None, **claims):
        key = key or self.keys[0]
        h = {"kid": key.kid}
        if headers:
            h.update(headers)
        return jwt.encode(self.claims(sub or str(uuid.uuid4()), **claims), key.private, algorithm=key.alg,
                          headers=h)

    # --- forgeries ---
    def token_alg_none(self, sub):
        header = b64u(json.dumps({"alg": "none", "typ": "JWT", "kid": self.keys[0].kid}).encode())
        payload = b64u(json.dumps(self.claims(sub)).encode())
        return "%s.%s." % (header, payload)

    def token_hs256_with_public_key(self, sub, key=None):
        key = key or self.keys[0]
        header = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
        payload = b64u(json.dumps(self.claims(sub)).encode())
        mac = hmac.HMAC(key.public_pem(), hashes.SHA256())
        mac.update(("%s.%s" % (header, payload)).encode())
        return "%s.%s.%s" % (header, payload, b64u(mac.finalize()))

    def token_alg_swap(self, sub):
        """An RS256 header on the EC key's kid, signed with the RSA key."""
        ec_key, rsa_key = self.keys[0], self.keys[1]
        return jwt.encode(self.claims(sub), rsa_key.private, algorithm="RS256", headers={"kid": ec_key.kid})

    def token_tampered(self, sub, other_sub):
        good = self.token(sub).split(".")
        payload = b64u(json.dumps(self.claims(other_sub)).encode())
        return "%s.%s.%s" % (good[0], payload, good[2])
