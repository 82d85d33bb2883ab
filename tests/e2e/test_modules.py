"""The module loader: the good fixture serves, every broken one is refused
with one log line naming the reason and both versions."""
import os
import shutil
import tempfile
import unittest

from harness import FX_MODULE_DIR, Server, abi_version, request

MAJOR, MINOR = abi_version()
HOST = "this gtmd provides ABI %d.%d" % (MAJOR, MINOR)

GOOD = "0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e40"


class LoaderTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(module_dir=FX_MODULE_DIR).start()

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def refusal(self, fname):
        recs = [r for r in self.srv.records() if r.get("level") == "error" and
                r.get("msg", "").startswith("module %s refused:" % fname)]
        self.assertEqual(len(recs), 1, "no single refusal line for %s: %r" % (fname, self.srv.lines))
        return recs[0]["msg"]

    def test_good_module_loaded_and_serving(self):
        self.assertTrue(any("module fx_echo 1.0.0 loaded" in r.get("msg", "") for r in self.srv.records()))
        r = request(self.srv, "GET", "/fx/items/" + GOOD)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["module_version"], "1.0.0")

    def test_bad_magic(self):
        self.assertIn("bad magic 0xdeadbeef (expected 0x314d5447)", self.refusal("fx_badmagic.so"))

    def test_other_major_stamp(self):
        self.assertIn("built for gtmd ABI 2.%d, %s (another major)" % (MINOR, HOST), self.refusal("fx_major2.so"))

    def test_other_major_entry(self):
        self.assertIn("exports gtm_module_v2 (gtmd ABI 2.x), " + HOST, self.refusal("fx_v2only.so"))

    def test_newer_minor(self):
        self.assertIn("built for gtmd ABI %d.%d, %s (needs a newer gtmd)" % (MAJOR, MINOR + 1, HOST),
                      self.refusal("fx_newminor.so"))

    def test_build_signature(self):
        self.assertIn("build signature 'ptr4,long4,be,jansson1' differs", self.refusal("fx_badsig.so"))

    def test_init_failure(self):
        self.assertIn("init failed (-22)", self.refusal("fx_initfail.so"))

    def test_unresolved_symbol(self):
        msg = self.refusal("fx_unresolved.so")
        self.assertIn("cannot load", msg)
        self.assertIn("fx_symbol_that_does_not_exist", msg)

    def test_route_clash(self):
        self.assertIn("clashes with /health", self.refusal("fx_clash.so"))
        r = request(self.srv, "GET", "/health")
        self.assertEqual(r.body, b'{"status":"ok"}')

    def test_auth_hook_runs_for_auth_routes(self):
        r = request(self.srv, "GET", "/fx/whoami")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("www-authenticate"), "Bearer")
        r = request(self.srv, "GET", "/fx/whoami", headers={"X-Fx-User": "alice"})
        self.assertEqual(r.json(), {"user": "alice"})


class NoModulesTest(unittest.TestCase):
    def test_core_routes_only_and_auth_unavailable(self):
        d = tempfile.mkdtemp()
        try:
            with Server(module_dir=d) as srv:
                self.assertEqual(request(srv, "GET", "/health").status, 200)
                self.assertEqual(request(srv, "GET", "/fx/items/" + GOOD).status, 404)
        finally:
            shutil.rmtree(d)

    def test_auth_route_without_auth_module_is_503(self):
        d = tempfile.mkdtemp()
        try:
            shutil.copy(os.path.join(FX_MODULE_DIR, "fx_plain.so"), d)
            with Server(module_dir=d) as srv:
                r = request(srv, "GET", "/fx/whoami")
                self.assertEqual(r.status, 503)
                self.assertIn("no auth module", r.json()["detail"])
                self.assertEqual(request(srv, "GET", "/fx/items/" + GOOD).status, 200)
        finally:
            shutil.rmtree(d)

    def test_rate_limited_route_without_ratelimit_module_is_503(self):
        d = tempfile.mkdtemp()
        try:
            shutil.copy(os.path.join(os.environ["FX_LIMITED_DIR"], "fx_limited.so"), d)
            with Server(module_dir=d) as srv:
                r = request(srv, "POST", "/fx/demo-limited/company_generate", body={})
                self.assertEqual(r.status, 503)
                self.assertIn("no ratelimit module", r.json()["detail"])
        finally:
            shutil.rmtree(d)

    def test_unreadable_module_dir_is_a_start_error(self):
        srv = Server(module_dir="/nonexistent/gtmd-modules")
        srv.start(expect_ready=False)
        self.assertEqual(srv.wait_exit(), 2)
        self.assertTrue(any("GTM_MODULE_DIR" in l and "/nonexistent/gtmd-modules" in l for l in srv.lines))


if __name__ == "__main__":
    unittest.main(verbosity=2)
