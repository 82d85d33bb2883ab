"""Module hot swap: a changed file in GTM_MODULE_DIR, renamed into place, is
loaded on SIGHUP while requests keep flowing; requests already running finish
on the old instance; a broken file leaves the old one serving, with the reason
in the log, /health/detailed and /metrics; under a master, SIGHUP reaches
every worker."""
import json
import os
import re
import shutil
import signal
import tempfile
import subprocess
import threading
import unittest
import urllib.parse
import uuid

from harness import GTMD, Server, free_port, request
from upstream import Upstream

SWAP_DIR = os.environ["FX_SWAP_DIR"]
FX_DIR = os.environ["FX_MODULE_DIR"]
ITEM = "/fx/items/" + str(uuid.uuid4())


def install(src, moddir):
    """As an operator deploys: write a temporary file, rename it over the old one."""
    tmp = os.path.join(moddir, ".fx_swap.so.tmp")
    shutil.copyfile(src, tmp)
    os.rename(tmp, os.path.join(moddir, "fx_swap.so"))


def build(v):
    return os.path.join(SWAP_DIR, "fx_swap_%s.so" % v)


def served_version(srv):
    r = request(srv, "GET", ITEM)
    assert r.status == 200, (r.status, r.body)
    # the host names the build that answered, for operators watching a swap
    assert r.header("x-gtm-module") == "fx_swap/" + r.json()["module_version"], r.headers
    return r.json()["module_version"]


def module_info(srv):
    d = request(srv, "GET", "/health/detailed", admin=True).json()
    return [m for m in d["modules"] if m["name"] == "fx_swap"][0]


class Load:
    """Client threads on fresh connections; every answer must be a 200."""

    def __init__(self, srv, threads=4, probe=None):
        self.srv = srv
        self.probe = probe or self.fx_item
        self.versions = {}
        self.failures = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    @staticmethod
    def fx_item(srv):
        """(version, error) of one request."""
        r = request(srv, "GET", ITEM)
        return (r.json()["module_version"], None) if r.status == 200 else (None, (r.status, r.body[:200]))

    def run(self):
        while not self.stop.is_set():
            try:
                v, err = self.probe(self.srv)
            except (OSError, EOFError, ValueError) as e:
                v, err = None, repr(e)
            with self.cond:
                if err:
                    self.failures.append(err)
                else:
                    self.versions[v] = self.versions.get(v, 0) + 1
                self.cond.notify_all()

    def total(self):
        with self.cond:
            return sum(self.versions.values())

    def wait_more(self, n, timeout=20):
        with self.cond:
            base = sum(self.versions.values())
            return self.cond.wait_for(lambda: sum(self.versions.values()) >= base + n or self.failures, timeout)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(20)


def reloaded(gen):
    return lambda r: re.search(r"^module fx_swap swap-[ab] reloaded from .* \(generation %d\)" % gen, r.get("msg", ""))


def gtmd_reload(admin):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env["GTM_ADMIN_LISTEN"] = admin
    return subprocess.run([GTMD, "reload"], env=env, capture_output=True, text=True, timeout=20)


class ReloadCommandTest(unittest.TestCase):
    def test_nobody_listening(self):
        r = gtmd_reload("127.0.0.1:%d" % free_port())
        self.assertEqual(r.returncode, 1)
        self.assertIn("no gtmd answers on GTM_ADMIN_LISTEN", r.stderr)
        self.assertIn("refused", r.stderr)

    def test_admin_listener_off(self):
        r = gtmd_reload("off")
        self.assertEqual(r.returncode, 2)
        self.assertIn("GTM_ADMIN_LISTEN is off", r.stderr)

    def test_single_process(self):
        moddir = tempfile.mkdtemp(prefix="gtmd-hotswap-")
        self.addCleanup(shutil.rmtree, moddir)
        install(build("a"), moddir)
        with Server(module_dir=moddir) as srv:
            install(build("b"), moddir)
            r = gtmd_reload(srv.env["GTM_ADMIN_LISTEN"])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(srv.wait_log(reloaded(2)))
            self.assertEqual(served_version(srv), "swap-b")
            self.assertEqual(request(srv, "POST", "/admin/reload").status, 404)   # not on the public listener
            self.assertEqual(srv.stop(), 0)


class HotSwapTest(unittest.TestCase):
    def setUp(self):
        self.moddir = tempfile.mkdtemp(prefix="gtmd-hotswap-")
        self.addCleanup(shutil.rmtree, self.moddir)
        install(build("a"), self.moddir)

    def test_swap_under_load_then_a_broken_file(self):
        with Server(module_dir=self.moddir) as srv:
            self.assertEqual(served_version(srv), "swap-a")
            with Load(srv) as load:
                self.assertTrue(load.wait_more(50))
                for gen in range(2, 22):         # 20 swaps, alternating the two builds
                    install(build("b" if gen % 2 == 0 else "a"), self.moddir)
                    srv.proc.send_signal(signal.SIGHUP)
                    self.assertTrue(srv.wait_log(reloaded(gen)), srv.lines[-5:])
                    self.assertTrue(load.wait_more(20))
                # a file that is not a module: refused, the running one goes on
                shutil.copyfile(os.path.join(FX_DIR, "fx_badmagic.so"), os.path.join(self.moddir, ".bad"))
                os.rename(os.path.join(self.moddir, ".bad"), os.path.join(self.moddir, "fx_swap.so"))
                srv.proc.send_signal(signal.SIGHUP)
                self.assertTrue(srv.wait_log(lambda r: "fx_swap.so refused on reload: bad magic" in r.get("msg", "")))
                self.assertTrue(load.wait_more(50))
            self.assertEqual(load.failures, [])
            self.assertGreater(load.versions.get("swap-a", 0), 0)
            self.assertGreater(load.versions.get("swap-b", 0), 0)
            self.assertEqual(served_version(srv), "swap-a")      # generation 21 is build a
            info = module_info(srv)
            self.assertEqual((info["version"], info["generation"]), ("swap-a", 21))
            self.assertIn("bad magic", info["reload_error"])
            self.assertEqual(info["path"], os.path.join(self.moddir, "fx_swap.so"))
            metrics = request(srv, "GET", "/metrics", admin=True).body.decode()
            self.assertIn('gtm_module_reloads_total{outcome="ok"} 20\n', metrics)
            self.assertIn('gtm_module_reloads_total{outcome="refused"} 1\n', metrics)
            # the same broken file is not tried again at every SIGHUP
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(lambda r: r.get("msg", "").startswith("SIGHUP: 0 module files")))
            self.assertEqual(sum("refused on reload" in l for l in srv.lines), 1)
            # a good build replaces it, and the error is gone
            install(build("b"), self.moddir)
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(reloaded(22)))
            self.assertEqual(served_version(srv), "swap-b")
            self.assertNotIn("reload_error", module_info(srv))
            self.assertEqual(srv.stop(), 0)
        # nothing staged is left behind
        self.assertEqual([f for f in os.listdir(tempfile.gettempdir()) if f.startswith("gtmd-%d-" % srv.proc.pid)], [])

    def test_a_request_in_flight_finishes_on_the_old_instance(self):
        with Upstream() as up, Server(module_dir=self.moddir) as srv:
            out = {}
            url = "/fx/fetch?" + urllib.parse.urlencode({"url": up.url("/slow?ms=1500")})
            t = threading.Thread(target=lambda: out.setdefault("r", request(srv, "GET", url)))
            t.start()
            self.assertTrue(up.wait_requests(1))
            install(build("b"), self.moddir)
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(lambda r: re.search(r"reloaded from .*; [1-9]\d* users still on swap-a",
                                                               r.get("msg", ""))))
            self.assertEqual(served_version(srv), "swap-b")
            t.join(20)
            self.assertEqual(out["r"].status, 200)
            self.assertEqual(out["r"].json()["body"], "ok:")
            self.assertEqual(srv.stop(), 0)

    def test_the_old_instance_has_a_drain_deadline(self):
        env = {"GTM_MODULE_DRAIN_TIMEOUT": "0.5"}
        with Upstream() as up, Server(module_dir=self.moddir, env=env) as srv:
            out = {}
            url = "/fx/fetch?" + urllib.parse.urlencode({"url": up.url("/slow?ms=3000")})
            t = threading.Thread(target=lambda: out.setdefault("r", request(srv, "GET", url)))
            t.start()
            self.assertTrue(up.wait_requests(1))
            install(build("b"), self.moddir)
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(reloaded(2)))
            t.join(20)
            # answered by the host at the deadline, not by the old code when its call returned
            self.assertEqual((out["r"].status, out["r"].header("retry-after")), (503, "1"), out["r"].body)
            self.assertIn("did not finish in time", out["r"].json()["detail"])
            self.assertTrue(srv.wait_log(lambda r: "GTM_MODULE_DRAIN_TIMEOUT passed" in r.get("msg", "")
                                         and r.get("req_id")))
            # the old instance is finalised once its outstanding call returns; its late answer goes nowhere
            self.assertTrue(srv.wait_log(lambda r: re.match(r"module fx_swap swap-a \(generation 1\) drained in "
                                                            r"[0-9.]+ s and finalised", r.get("msg", ""))))
            self.assertFalse([l for l in srv.lines if "second answer" in l])
            self.assertEqual(served_version(srv), "swap-b")
            self.assertEqual(srv.stop(), 0)

    def test_real_module_swapped_and_unloaded_under_load(self):
        """company.so (GTM_MODULE_UNLOADABLE) swapped 6 times while its
        handler answers: each old instance is finalised and its code unmapped
        (under ASan in CI, a use of it afterwards would be reported)."""
        mods = os.environ["MODULE_DIR"]
        d = tempfile.mkdtemp(prefix="gtmd-real-swap-")
        self.addCleanup(shutil.rmtree, d)
        shutil.copy(os.path.join(mods, "company.so"), d)
        shutil.copy(os.path.join(FX_DIR, "fx_echo.so"), d)     # its authenticate hook takes X-Fx-User

        def demo(srv):
            r = request(srv, "GET", "/api/companies/not-a-uuid", headers={"X-Fx-User": "u1"})  # the handler's 422
            if r.status != 422 or r.json()["detail"][0]["loc"] != ["path", "company_id"]:
                return None, (r.status, r.body[:200])
            return r.header("x-gtm-module"), None

        with Server(module_dir=d) as srv, Load(srv, probe=demo) as load:
            self.assertTrue(load.wait_more(20))
            for gen in range(2, 8):
                src = os.path.join(mods, "alt", "company.so") if gen % 2 == 0 else os.path.join(mods, "company.so")
                shutil.copyfile(src, os.path.join(d, ".company.so.new"))
                os.rename(os.path.join(d, ".company.so.new"), os.path.join(d, "company.so"))
                srv.proc.send_signal(signal.SIGHUP)
                self.assertTrue(srv.wait_log(lambda r: re.search(r"^module company \S+ reloaded from .* \(generation %d\)"
                                                                 % gen, r.get("msg", ""))))
                self.assertTrue(srv.wait_log(lambda r: re.search(r"^module company \S+ \(generation %d\) drained in"
                                                                 % (gen - 1), r.get("msg", ""))))
                self.assertTrue(load.wait_more(20))
            self.assertEqual(load.failures, [])
            # six swaps, and only the serving copy is still mapped: the old ones were dlclosed
            with open("/proc/%d/maps" % srv.proc.pid) as f:
                staged = {l.split(None, 5)[5].strip() for l in f if "/gtmd-%d-" % srv.proc.pid in l}
            self.assertEqual(len(staged), 1, staged)
        self.assertEqual(sorted(load.versions), ["company/0.1.0", "company/0.1.0-alt"])
        self.assertEqual(srv.proc.returncode, 0)

    def test_sighup_to_the_master_reaches_every_worker(self):
        srv = Server(module_dir=self.moddir, env={"GTM_WORKERS": "2"})
        srv.start(expect_ready=False)
        try:
            self.assertTrue(srv.wait_for(lambda: sum("listening on" in l for l in srv.lines) >= 4 or
                                         srv.proc.poll() is not None, 20))
            self.assertIsNone(srv.proc.poll())
            install(build("b"), self.moddir)
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(srv.wait_for(lambda: len({r.get("worker") for r in srv.records() if reloaded(2)(r)}) == 2,
                                         10), srv.lines[-6:])
            for _ in range(20):
                self.assertEqual(served_version(srv), "swap-b")
            # gtmd reload finds the master through the admin listener
            install(build("a"), self.moddir)
            r = gtmd_reload(srv.env["GTM_ADMIN_LISTEN"])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout.splitlines()[0])["pid"], srv.proc.pid)
            self.assertTrue(srv.wait_for(lambda: len({r.get("worker") for r in srv.records() if reloaded(3)(r)}) == 2,
                                         10), srv.lines[-6:])
            self.assertEqual(served_version(srv), "swap-a")
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_a_new_module_file_is_loaded(self):
        with Server(module_dir=self.moddir) as srv:
            shutil.copyfile(os.path.join(os.environ["FX_LIMITED_DIR"], "fx_limited.so"),
                            os.path.join(self.moddir, "fx_limited.so"))
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(lambda r: r.get("msg", "").startswith("module fx_limited ") and
                                         "loaded from " + self.moddir in r.get("msg", "")))
            names = [m["name"] for m in request(srv, "GET", "/health/detailed", admin=True).json()["modules"]]
            self.assertEqual(sorted(names), ["fx_limited", "fx_swap"])
            shutil.copyfile(os.path.join(FX_DIR, "fx_plain.so"), os.path.join(self.moddir, ".new"))
            # fx_plain's routes clash with fx_swap's: refused, and fx_swap still serves
            os.rename(os.path.join(self.moddir, ".new"), os.path.join(self.moddir, "fx_plain.so"))
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(lambda r: "fx_plain.so refused on reload" in r.get("msg", "")))
            self.assertEqual(served_version(srv), "swap-a")
            refused = request(srv, "GET", "/health/detailed", admin=True).json()["refused_module_files"]
            self.assertEqual([f["path"] for f in refused], [os.path.join(self.moddir, "fx_plain.so")])
            self.assertIn("clash", refused[0]["error"])
            # not tried again while it is unchanged
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(lambda r: r.get("msg", "").startswith("SIGHUP: 0 module files")))
            self.assertEqual(sum("fx_plain.so refused on reload" in l for l in srv.lines), 1)
            # removed, then a good new file under that name: loaded, and the note is gone
            os.unlink(os.path.join(self.moddir, "fx_plain.so"))
            shutil.copyfile(os.path.join(os.environ["MODULE_DIR"], "company.so"), os.path.join(self.moddir, ".new"))
            os.rename(os.path.join(self.moddir, ".new"), os.path.join(self.moddir, "fx_plain.so"))
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(lambda r: r.get("msg", "").startswith("module company ")))
            self.assertEqual(request(srv, "GET", "/health/detailed", admin=True).json()["refused_module_files"], [])
            self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
