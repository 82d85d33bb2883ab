"""The auth module against a fake Stack Auth: forged tokens of every kind,
claims checks, JWKS refresh on an unknown kid (at most once a minute), API
keys (shown once, hash stored, revocable), and the identity routes."""
import os
import time
import unittest
import uuid

import pgutil
from harness import Server, request
from stackauth import FakeStack, Key


def bearer(token):
    return {"Authorization": "Bearer " + token}


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pgutil.require()
        cls.db = pgutil.MigratedDatabase().__enter__()
        cls.stack = FakeStack()
        env = dict(cls.stack.env(), DATABASE_URL=cls.db.url)
        cls.srv = Server(env=env, module_dir=os.environ["MODULE_DIR"]).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        cls.stack.close()
        cls.db.__exit__(None, None, None)
        assert code == 0, code

    def get(self, path, headers=None):
        return request(self.srv, "GET", path, headers=headers)

    def assert_401(self, r, detail):
        self.assertEqual(r.status, 401, r.body)
        self.assertEqual(r.json(), {"detail": detail})
        self.assertTrue(r.header("www-authenticate").startswith("Bearer"))

    def test_valid_token(self):
        sub = str(uuid.uuid4())
        r = self.get("/api/companies", bearer(self.stack.token(sub)))
        self.assertEqual((r.status, r.json()), (200, []))
        r = self.get("/api/companies", bearer(self.stack.token(sub, key=self.stack.keys[1])))   # RS256
        self.assertEqual(r.status, 200)

    def test_missing_or_malformed_header(self):
        self.assert_401(self.get("/api/companies"), "Missing or invalid Authorization header")
        self.assert_401(self.get("/api/companies", {"Authorization": "Basic abc"}),
                        "Missing or invalid Authorization header")
        self.assert_401(self.get("/api/companies", {"Authorization": "bearer " + self.stack.token()}),
                        "Missing or invalid Authorization header")
        self.assert_401(self.get("/api/neon-auth/profile"), "Missing or invalid authorization header")

    def test_forged_tokens(self):
        sub = str(uuid.uuid4())
        cases = {
            "alg none": self.stack.token_alg_none(sub),
            "HS256 keyed with the EC public key": self.stack.token_hs256_with_public_key(sub),
            "HS256 keyed with the RSA public key": self.stack.token_hs256_with_public_key(sub, self.stack.keys[1]),
            "RS256 header on the EC key": self.stack.token_alg_swap(sub),
            "tampered payload": self.stack.token_tampered(sub, str(uuid.uuid4())),
        }
        for name, token in cases.items():
            r = self.get("/api/companies", bearer(token))
            self.assertEqual(r.status, 401, name)
            self.assertTrue(r.json()["detail"].startswith("Invalid token: "), (name, r.json()))
        # a key that is not the project's, kid made up
        stranger = Key("EC")
        r = self.get("/api/companies", bearer(self.stack.token(sub, key=stranger)))
        self.assert_401(r, "Invalid token: key not found")
        # a stranger's key under the project's kid
        stranger.kid = self.stack.keys[0].kid
        r = self.get("/api/companies", bearer(self.stack.token(sub, key=stranger)))
        self.assert_401(r, "Invalid token: Signature verification failed.")
        self.assert_401(self.get("/api/companies", bearer("not.a.jwt")), "Invalid token: Error decoding token headers.")
        self.assert_401(self.get("/api/companies", bearer("garbage")), "Invalid token: Error decoding token headers.")

    def test_missing_kid_is_401_not_500(self):
        import jwt as pyjwt
        token = pyjwt.encode(self.stack.claims(str(uuid.uuid4())), self.stack.keys[0].private, algorithm="ES256")
        self.assert_401(self.get("/api/companies", bearer(token)), "Invalid token: Token has no key id (kid).")

    def test_claims(self):
        sub = str(uuid.uuid4())
        now = int(time.time())
        self.assert_401(self.get("/api/companies", bearer(self.stack.token(sub, exp=now - 5))),
                        "Invalid token: Signature has expired.")
        self.assert_401(self.get("/api/companies", bearer(self.stack.token(sub, nbf=now + 300))),
                        "Invalid token: The token is not yet valid (nbf)")
        self.assert_401(self.get("/api/companies", bearer(self.stack.token(sub, aud="another-project"))),
                        "Invalid token: Invalid audience")
        self.assert_401(self.get("/api/companies", bearer(self.stack.token(sub, aud=self.stack.project_id + ":anon"))),
                        "Invalid token: Invalid audience")
        self.assert_401(self.get("/api/companies", bearer(self.stack.token(sub, iss="https://evil.example"))),
                        "Invalid token: Invalid issuer")
        self.assert_401(self.get("/api/companies", bearer(self.stack.token(sub, exp=None))),
                        "Invalid token: Token has no expiry (exp).")
        # aud absent is accepted (as upstream), aud as a list containing the project too
        self.assertEqual(self.get("/api/companies", bearer(self.stack.token(sub, aud=None))).status, 200)
        self.assertEqual(self.get("/api/companies", bearer(self.stack.token(sub, aud=["x", self.stack.project_id]))).status, 200)
        r = self.get("/api/companies", bearer(self.stack.token("not-a-uuid")))
        self.assertEqual((r.status, r.json()), (400, {"detail": "Invalid user ID format"}))

    def test_neon_wording(self):
        stranger = Key("EC")
        r = self.get("/api/neon-auth/profile", bearer(self.stack.token(key=stranger)))
        self.assert_401(r, "Public key not found for token.")
        r = self.get("/api/neon-auth/profile", bearer(self.stack.token(exp=int(time.time()) - 5)))
        self.assert_401(r, "Invalid Stack Auth token: Signature has expired.")

    def test_key_rotation_refreshes_once(self):
        sub = str(uuid.uuid4())
        self.assertEqual(self.get("/api/companies", bearer(self.stack.token(sub))).status, 200)
        new = Key("EC")
        self.stack.keys.append(new)
        # the first unknown kid may refetch only if the last fetch is a minute old;
        # in a fresh server it is, so run this against a server of its own
        env = dict(self.stack.env(), DATABASE_URL=self.db.url)
        with Server(env=env, module_dir=os.environ["MODULE_DIR"]) as srv:
            before = self.stack.fetches
            self.assertEqual(request(srv, "GET", "/api/companies", headers=bearer(self.stack.token(sub))).status, 200)
            self.assertEqual(self.stack.fetches, before + 1)
            rotated = Key("EC")
            self.stack.keys.append(rotated)
            # fetched less than a minute ago: an unknown kid is refused without a refetch
            r = request(srv, "GET", "/api/companies", headers=bearer(self.stack.token(sub, key=rotated)))
            self.assert_401(r, "Invalid token: key not found")
            self.assertEqual(self.stack.fetches, before + 1)
            # a token seen once is not checked again: no fetch, same answer
            for _ in range(3):
                self.assertEqual(request(srv, "GET", "/api/companies", headers=bearer(self.stack.token(sub))).status, 200)
        with Server(env=env, module_dir=os.environ["MODULE_DIR"]) as srv:
            # new process, new key set: the rotated key is known after its one fetch
            r = request(srv, "GET", "/api/companies", headers=bearer(self.stack.token(sub, key=self.stack.keys[-1])))
            self.assertEqual(r.status, 200)

    def test_jwks_unavailable_is_503(self):
        env = dict(self.stack.env(), DATABASE_URL=self.db.url)
        env["STACK_JWKS_URL"] = "http://127.0.0.1:1/jwks.json"
        with Server(env=env, module_dir=os.environ["MODULE_DIR"]) as srv:
            r = request(srv, "GET", "/api/companies", headers=bearer(self.stack.token()))
            self.assertEqual(r.status, 503)
            self.assertIn("retry-after", dict(r.headers))

    def test_concurrent_requests_share_one_fetch(self):
        import threading
        env = dict(self.stack.env(), DATABASE_URL=self.db.url)
        with Server(env=env, module_dir=os.environ["MODULE_DIR"]) as srv:
            before = self.stack.fetches
            out = []
            ts = [threading.Thread(target=lambda: out.append(
                request(srv, "GET", "/api/companies", headers=bearer(self.stack.token())).status)) for _ in range(20)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(out, [200] * 20, srv.lines[-8:])
            self.assertEqual(self.stack.fetches - before, 1)

    # --- API keys ---

    def test_api_key_life(self):
        sub = str(uuid.uuid4())
        auth = bearer(self.stack.token(sub))
        r = request(self.srv, "POST", "/api/auth/api-keys", body={"name": "ci"}, headers=auth)
        self.assertEqual(r.status, 201, r.body)
        created = r.json()
        key = created["key"]
        self.assertRegex(key, r"^bls_[A-Za-z0-9_-]{43}$")
        self.assertEqual(created["key_prefix"], key[:12])
        self.assertEqual(created["name"], "ci")
        # only a hash is stored
        self.assertEqual(self.db.sql("SELECT count(*) FROM gtm_api_keys WHERE key_hash = "
                                     "encode(sha256('%s'::bytea), 'hex')" % key), "1")
        self.assertEqual(self.db.sql("SELECT count(*) FROM gtm_api_keys t WHERE position('%s' in row_to_json(t)::text) > 0"
                                     % key[12:]), "0")
        # the key works as Bearer and as X-API-Key, as its owner
        r = request(self.srv, "POST", "/api/companies", headers={"X-API-Key": key},
                    body={"company_name": "K", "company_url": "https://k.example", "description": "d",
                          "capabilities": [], "objections": [], "metadata": {}})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json()["user_id"], sub)
        self.assertEqual(len(self.get("/api/companies", bearer(key)).json()), 1)
        self.assertEqual(len(self.get("/api/companies", auth).json()), 1)
        # profile lists it, without the key, with last use recorded: gtmd writes
        # that behind the request (a transaction of its own), so it is awaited
        deadline = time.monotonic() + 10
        while (self.db.sql("SELECT last_used_at IS NOT NULL FROM gtm_api_keys WHERE id = '%s'" % created["id"]) != "t"
               and time.monotonic() < deadline):
            time.sleep(0.02)   # no event says the background write committed: polled, bounded
        prof = self.get("/api/auth/profile", auth).json()
        self.assertEqual(prof["user_id"], sub)
        self.assertEqual([k["key_prefix"] for k in prof["api_keys"]], [key[:12]])
        self.assertNotIn("key", prof["api_keys"][0])
        self.assertIsNotNone(prof["api_keys"][0]["last_used_at"])
        # many uses, no further write of last_used_at (each write would move it)
        first = self.db.sql("SELECT last_used_at FROM gtm_api_keys WHERE id = '%s'" % created["id"])
        self.assertNotEqual(first, "")
        for _ in range(20):
            self.assertEqual(self.get("/api/companies", {"X-API-Key": key}).status, 200)
        self.assertEqual(self.db.sql("SELECT last_used_at FROM gtm_api_keys WHERE id = '%s'" % created["id"]), first)
        # validate
        self.assertEqual(request(self.srv, "POST", "/api/auth/validate", body={"api_key": key}).json()["valid"], True)
        self.assertEqual(request(self.srv, "POST", "/api/auth/validate",
                                 body={"api_key": "bls_" + "A" * 43}).json(), {"valid": False})
        # a key cannot mint keys
        r = request(self.srv, "POST", "/api/auth/api-keys", body={}, headers={"X-API-Key": key})
        self.assertEqual(r.status, 403)
        # revoke: gone at once
        r = request(self.srv, "DELETE", "/api/auth/api-keys/" + created["id"], headers=auth)
        self.assertEqual(r.status, 204)
        r = self.get("/api/companies", bearer(key))
        self.assertEqual((r.status, r.json()), (401, {"detail": "Invalid API key"}))
        r = request(self.srv, "DELETE", "/api/auth/api-keys/" + created["id"], headers=auth)
        self.assertEqual(r.status, 404)

    def test_other_users_key_cannot_be_revoked(self):
        a, b = bearer(self.stack.token()), bearer(self.stack.token())
        created = request(self.srv, "POST", "/api/auth/api-keys", body={"name": "a"}, headers=a).json()
        r = request(self.srv, "DELETE", "/api/auth/api-keys/" + created["id"], headers=b)
        self.assertEqual(r.status, 404)
        self.assertEqual(request(self.srv, "POST", "/api/auth/validate", body={"api_key": created["key"]}).json()["valid"], True)

    def test_malformed_keys(self):
        for k in ("bls_short", "bls_" + "!" * 43, "bls_" + "A" * 44):
            r = self.get("/api/companies", {"X-API-Key": k})
            self.assertEqual((r.status, r.json()), (401, {"detail": "Invalid API key"}), k)

    def test_validate_bad_bodies(self):
        # each of these once took the server down (the key was read after its 422 went out)
        cases = [({}, ["body", "api_key"], "missing"), ({"api_key": 5}, ["body", "api_key"], "string_type"),
                 (["k"], ["body"], "model_attributes_type"), ('{"api_key": ', ["body", 12], "json_invalid")]
        for body, loc, kind in cases:
            r = request(self.srv, "POST", "/api/auth/validate", body=body)
            self.assertEqual(r.status, 422, (body, r.body))
            self.assertEqual((r.json()["detail"][0]["loc"], r.json()["detail"][0]["type"]), (loc, kind), body)
        self.assertEqual(request(self.srv, "GET", "/health").status, 200)

    def test_signup_stays_501(self):
        r = request(self.srv, "POST", "/api/auth/signup", body={"email": "a@b.example"})
        self.assertEqual(r.status, 501)
        r = request(self.srv, "POST", "/api/auth/signup", body={"email": "nope"})
        self.assertEqual(r.status, 422)

    # --- identity ---

    def test_neon_profile_provisions(self):
        sub = str(uuid.uuid4())
        r = self.get("/api/neon-auth/profile", bearer(self.stack.token(sub)))
        self.assertEqual(r.status, 200, r.body)
        p = r.json()
        self.assertEqual(list(p), ["user_id", "neon_auth_user_id", "role", "created_at", "last_login"])
        self.assertEqual((p["user_id"], p["neon_auth_user_id"], p["role"], p["last_login"]), (sub, sub, "user", None))
        self.assertEqual(self.db.sql("SELECT count(*) FROM users WHERE id = '%s'" % sub), "1")
        self.assertEqual(self.get("/api/neon-auth/profile", bearer(self.stack.token(sub))).json(), p)

    def test_sync_user(self):
        sub = str(uuid.uuid4())
        auth = bearer(self.stack.token(sub))
        r = request(self.srv, "POST", "/api/neon-auth/sync-user", body={"neon_auth_user_id": str(uuid.uuid4())}, headers=auth)
        self.assertEqual((r.status, r.json()), (403, {"detail": "User ID mismatch"}))
        r = request(self.srv, "POST", "/api/neon-auth/sync-user", body={"neon_auth_user_id": sub}, headers=auth)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["user_id"], sub)
        self.assertEqual(self.db.sql("SELECT neon_auth_user_id FROM users WHERE id = '%s'" % sub), sub)

    def test_delete_user_removes_everything(self):
        sub = str(uuid.uuid4())
        auth = bearer(self.stack.token(sub))
        r = request(self.srv, "POST", "/api/companies", headers=auth,
                    body={"company_name": "Gone", "company_url": "https://g.example", "description": "d",
                          "capabilities": [], "objections": [], "metadata": {}})
        cid = r.json()["id"]
        # children written straight into the tables (their routes are other modules')
        self.db.sql("""
            WITH a AS (INSERT INTO accounts (id, company_id, name, data, created_at, updated_at)
                       VALUES (gen_random_uuid(), '%s', 'A', '{}', now(), now()) RETURNING id),
                 p AS (INSERT INTO personas (id, account_id, name, data, created_at, updated_at)
                       SELECT gen_random_uuid(), a.id, 'P', '{}', now(), now() FROM a RETURNING id, account_id)
            INSERT INTO campaigns (id, account_id, persona_id, name, type, data, created_at, updated_at)
            SELECT gen_random_uuid(), p.account_id, p.id, 'C', 'email', '{}', now(), now() FROM p""" % cid)
        request(self.srv, "POST", "/api/auth/api-keys", body={"name": "k"}, headers=auth)
        other = bearer(self.stack.token())
        request(self.srv, "POST", "/api/companies", headers=other,
                body={"company_name": "Stays", "company_url": "https://s.example", "description": "d",
                      "capabilities": [], "objections": [], "metadata": {}})
        r = request(self.srv, "DELETE", "/api/neon-auth/user", headers=auth)
        self.assertEqual((r.status, r.json()), (200, {"message": "User successfully deleted from database", "user_id": sub}))
        counts = self.db.sql("""SELECT (SELECT count(*) FROM users WHERE id = '{0}') || ',' ||
                                (SELECT count(*) FROM companies WHERE user_id = '{0}') || ',' ||
                                (SELECT count(*) FROM accounts WHERE company_id = '{1}') || ',' ||
                                (SELECT count(*) FROM gtm_api_keys WHERE user_id = '{0}')""".format(sub, cid))
        self.assertEqual(counts, "0,0,0,0")
        self.assertEqual(self.db.sql("SELECT count(*) FROM companies WHERE name = 'Stays'"), "1")
        r = request(self.srv, "DELETE", "/api/neon-auth/user", headers=auth)
        self.assertEqual(r.status, 404)

    def test_logout(self):
        sub = str(uuid.uuid4())
        r = request(self.srv, "POST", "/api/neon-auth/logout", headers=bearer(self.stack.token(sub)))
        self.assertEqual(r.json(), {"message": "Logout successful, caches cleared", "user_id": sub})


if __name__ == "__main__":
    unittest.main(verbosity=2)
