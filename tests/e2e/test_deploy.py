"""Deployment: .env.example, README's settings table and the sources name the
same variables; `meson install` lays out a tree whose gtmd serves, loads every
module and migrates from the installed files; the systemd unit verifies; the
Dockerfile's package lists match deploy/lib.sh and what gtmd links."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import uuid

import harness
import pgutil
from harness import Server, request
from stackauth import FakeStack

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD_ROOT = os.environ.get("BUILD_ROOT", "")
NAME = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z0-9]$")


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def env_example_vars():
    out = set()
    for line in read(".env.example").splitlines():
        m = re.match(r"^#?([A-Z][A-Z0-9_]*)=", line)
        if m:
            out.add(m.group(1))
    return out


def readme_table_vars():
    """First-column names of the table under README's '## Configuration'."""
    text = read("README.md")
    sect = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    out = set()
    for line in sect.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        out.update(n for n in re.findall(r"`([^`]+)`", first) if NAME.match(n))
    return out


def source_vars():
    """Names read with getenv("X"), host->config("X") (and the core's env helpers)."""
    pat = re.compile(r"\b(?:getenv|config|env|env_[a-z_]+)\s*\(\s*\"([A-Z][A-Z0-9_]+)\"")
    out = {}
    for d in ("core", "modules"):
        for path in glob.glob(os.path.join(ROOT, d, "**", "*.[ch]"), recursive=True):
            with open(path, encoding="utf-8", errors="replace") as f:
                for n in pat.findall(f.read()):
                    out.setdefault(n, os.path.relpath(path, ROOT))
    # Names passed around as whole string literals (e.g. to a table of settings).
    lit = re.compile(r"\"((?:GTM|LLM|OPENAI|ANTHROPIC|GEMINI|FIRECRAWL|STACK)_[A-Z0-9_]+)\"")
    for d in ("core", "modules"):
        for path in glob.glob(os.path.join(ROOT, d, "**", "*.[ch]"), recursive=True):
            with open(path, encoding="utf-8", errors="replace") as f:
                for n in lit.findall(f.read()):
                    out.setdefault(n, os.path.relpath(path, ROOT))
    return out


def bash_array(name):
    """The words of NAME=(...) in deploy/lib.sh."""
    m = re.search(r"^%s=\(([^)]*)\)" % name, read("deploy/lib.sh"), re.M)
    return m.group(1).split()


def dockerfile_stages():
    """[(stage text)] split at FROM lines."""
    return re.split(r"^FROM ", read("Dockerfile"), flags=re.M)[1:]


def apt_packages(stage):
    """Packages of the apt-get install in one Dockerfile stage."""
    joined = re.sub(r"\\\n", " ", stage)
    m = re.search(r"apt-get install ([^&]*)", joined)
    return [w for w in m.group(1).split() if not w.startswith("-")]


class SettingsTest(unittest.TestCase):
    def test_env_example_and_readme_agree(self):
        env, table = env_example_vars(), readme_table_vars()
        self.assertGreater(len(table), 30, table)
        self.assertEqual(sorted(table - env), [], "in README's table, missing from .env.example")
        self.assertEqual(sorted(env - table), [], ".env.example names a variable README's table lacks")

    def test_every_variable_read_is_documented(self):
        env = env_example_vars()
        found = source_vars()
        self.assertGreater(len(found), 25, found)
        missing = {n: p for n, p in found.items() if n not in env}
        self.assertEqual(missing, {}, "read by the sources, missing from .env.example")
        # Names built at run time: {OPENAI,ANTHROPIC,GEMINI}_{API_KEY,BASE_URL,MODEL}
        # (core/llm/llm_config.c) and everything CONTRACT §5 names.
        for p in ("OPENAI", "ANTHROPIC", "GEMINI"):
            for s in ("API_KEY", "BASE_URL", "MODEL"):
                self.assertIn("%s_%s" % (p, s), env)
        contract = os.path.join(ROOT, "..", "shared", "CONTRACT.md")
        if os.path.exists(contract):
            with open(contract, encoding="utf-8") as f:
                sect = f.read().split("## 5.", 1)[1].split("\n## ", 1)[0]
            names = set()
            for tok in re.findall(r"`([^`]+)`", sect):
                m = re.match(r"^\{([A-Z,]+)\}_(?:\{([A-Z_,]+)\}|([A-Z_]+))$", tok)
                if m:
                    for a in m.group(1).split(","):
                        for b in (m.group(2) or m.group(3)).split(","):
                            names.add("%s_%s" % (a, b))
                elif NAME.match(tok) and "_" in tok:
                    names.add(tok)
            self.assertEqual(sorted(names - env), [], "named by CONTRACT §5, missing from .env.example")

    def test_env_example_defaults_are_commented_out(self):
        for line in read(".env.example").splitlines():
            self.assertFalse(re.match(r"^[A-Z][A-Z0-9_]*=", line), "an active setting: " + line)


class PackagingTest(unittest.TestCase):
    def test_dockerfile_builds_with_lib_sh_packages(self):
        build, runtime = dockerfile_stages()
        self.assertEqual(apt_packages(build), bash_array("BUILD_PKGS"))
        self.assertRegex(build, r"meson setup \S+ --buildtype=release --prefix=/usr/local")
        self.assertIn("meson install", build)
        self.assertIn("COPY --from=build /usr/local /usr/local", runtime)
        self.assertRegex(runtime, r"(?m)^USER gtmd$")
        self.assertRegex(runtime, r"(?m)^ENV GTM_LISTEN=0\.0\.0\.0:8000$")
        self.assertRegex(runtime, r"(?m)^EXPOSE 8000$")
        self.assertRegex(runtime, r'(?m)^CMD \["gtmd", "serve"\]$')
        self.assertIn("curl", apt_packages(runtime))  # the HEALTHCHECK's tool

    def test_dockerfile_runtime_has_every_linked_library(self):
        """Each library gtmd or a module links (DT_NEEDED) comes from a package the
        runtime stage installs (libc6 is in debian:12 already)."""
        if not BUILD_ROOT or not shutil.which("readelf") or not shutil.which("dpkg"):
            self.skipTest("needs BUILD_ROOT, readelf and dpkg")
        runtime = set(apt_packages(dockerfile_stages()[1]))
        objs = [os.path.join(BUILD_ROOT, "gtmd")] + glob.glob(os.path.join(BUILD_ROOT, "modules", "*.so"))
        ldd = {}
        for o in objs:
            for line in subprocess.run(["ldd", o], capture_output=True, text=True, check=True).stdout.splitlines():
                m = re.match(r"\s*(\S+) => (/\S+)", line)
                if m:
                    ldd[m.group(1)] = m.group(2)
        needed = set()
        for o in objs:
            out = subprocess.run(["readelf", "-dW", o], capture_output=True, text=True, check=True).stdout
            needed.update(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
        self.assertIn("libpq.so.5", needed)
        for lib in sorted(needed):
            if lib.startswith(("libc.so", "libm.so", "libdl.so", "libpthread.so", "ld-linux", "libasan",
                               "libubsan", "libgcc_s", "libstdc++")):
                continue
            path = os.path.realpath(ldd[lib])
            r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            if r.returncode != 0:  # merged /usr: dpkg knows the /lib spelling
                r = subprocess.run(["dpkg", "-S", re.sub(r"^/usr/lib/", "/lib/", path)], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, "%s (%s): %s" % (lib, path, r.stderr))
            pkg = r.stdout.split(":", 1)[0]
            self.assertIn(pkg, runtime, "%s comes from %s, which the runtime image lacks" % (lib, pkg))

    def test_systemd_unit(self):
        unit = read("deploy/gtmd.service")
        keys = {}
        for line in unit.splitlines():
            m = re.match(r"^([A-Za-z]+)=(.*)$", line)
            if m:
                keys.setdefault(m.group(1), m.group(2))
        for k, v in {"Type": "exec", "ExecStart": "/usr/local/bin/gtmd serve",
                     "EnvironmentFile": "/etc/gtmd/gtmd.env", "Restart": "on-failure", "KillSignal": "SIGTERM",
                     "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                     "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
                     "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
                     "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces": "yes",
                     "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
                     "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
                     "LimitNOFILE": "65536", "DynamicUser": "yes"}.items():
            self.assertEqual(keys.get(k), v, k)
        stop = float(keys["TimeoutStopSec"].rstrip("s"))
        self.assertGreater(stop, 10, "TimeoutStopSec must exceed GTM_SHUTDOWN_TIMEOUT's default of 10 s")
        sa = shutil.which("systemd-analyze")
        if not sa or not GTMD_BIN_FOR_UNIT:
            self.skipTest("systemd-analyze not installed")
        # verify checks that ExecStart's binary exists: point it at the build's.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "gtmd.service")
            with open(path, "w") as f:
                f.write(unit.replace("/usr/local/bin/gtmd", GTMD_BIN_FOR_UNIT))
            r = subprocess.run([sa, "verify", path], capture_output=True, text=True, timeout=60)
            out = (r.stdout + r.stderr).strip()
            self.assertEqual((r.returncode, out), (0, ""), "systemd-analyze verify")


GTMD_BIN_FOR_UNIT = os.environ.get("GTMD", "")


class InstallTest(unittest.TestCase):
    """meson install --destdir, then the installed tree on its own."""

    @classmethod
    def setUpClass(cls):
        if not BUILD_ROOT:
            raise AssertionError("BUILD_ROOT is not set (tests/e2e/meson.build sets it)")
        meson = shutil.which("meson")
        if not meson:
            raise AssertionError("meson not on PATH")
        # Outside the build tree: a gtmd under BUILD_ROOT would take the build's paths.
        cls.dest = tempfile.mkdtemp(prefix="gtmd-install-")
        r = subprocess.run([meson, "install", "-C", BUILD_ROOT, "--destdir", cls.dest, "--no-rebuild", "--quiet"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            shutil.rmtree(cls.dest, ignore_errors=True)
            raise AssertionError("meson install failed:\n" + r.stdout + r.stderr)
        opts = {o["name"]: o["value"] for o in json.loads(subprocess.run(
            [meson, "introspect", BUILD_ROOT, "--buildoptions"], capture_output=True, text=True, check=True).stdout)}
        cls.prefix = opts["prefix"]

        def under(opt):
            return os.path.join(cls.prefix, opts[opt])  # an absolute option stays absolute
        cls.bindir, cls.libdir, cls.datadir = under("bindir"), under("libdir"), under("datadir")
        cls.bin = cls.dest + os.path.join(cls.bindir, "gtmd")
        cls.modules = cls.dest + os.path.join(cls.libdir, "gtmd", "modules")
        cls.prompts = cls.dest + os.path.join(cls.datadir, "gtmd", "prompts")
        cls.sql = cls.dest + os.path.join(cls.datadir, "gtmd", "sql")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def installed_env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GTM_", "CORS_")) and k != "DATABASE_URL"}
        env.update(GTM_MODULE_DIR=self.modules, GTM_PROMPT_DIR=self.prompts, GTM_SQL_DIR=self.sql)
        env.update(extra)
        return env

    def test_layout(self):
        self.assertTrue(os.access(self.bin, os.X_OK), self.bin)
        built = sorted(os.path.basename(p) for p in glob.glob(os.path.join(BUILD_ROOT, "modules", "*.so")))
        self.assertEqual(len(built), 6, built)
        self.assertEqual(sorted(os.listdir(self.modules)), built)
        self.assertEqual(sorted(os.listdir(self.prompts)), sorted(os.listdir(os.path.join(ROOT, "prompts"))))
        self.assertEqual(sorted(os.listdir(self.sql)), sorted(os.listdir(os.path.join(ROOT, "sql"))))
        # Debian's meson puts libdir under the multiarch triplet, also for /usr/local.
        arch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip() \
            if shutil.which("gcc") else ""
        if arch:
            self.assertEqual(self.libdir, os.path.join(self.prefix, "lib", arch))
        # Only gtmd, modules, prompts and sql: no test binaries, no static libraries.
        extra = []
        for base, _dirs, files in os.walk(self.dest):
            for f in files:
                p = os.path.join(base, f)
                if not (p == self.bin or p.startswith((self.modules + "/", self.prompts + "/", self.sql + "/"))):
                    extra.append(p)
        self.assertEqual(extra, [])

    def test_w_xor_x(self):
        """MemoryDenyWriteExecute=yes in the unit holds only if nothing needs
        writable+executable memory: no text relocations, no executable stack."""
        if not shutil.which("readelf"):
            self.skipTest("readelf not installed")
        for o in [self.bin] + glob.glob(os.path.join(self.modules, "*.so")):
            dyn = subprocess.run(["readelf", "-dW", o], capture_output=True, text=True, check=True).stdout
            self.assertNotIn("TEXTREL", dyn, o)
            seg = subprocess.run(["readelf", "-lW", o], capture_output=True, text=True, check=True).stdout
            stack = [l for l in seg.splitlines() if "GNU_STACK" in l]
            self.assertEqual(len(stack), 1, o)
            self.assertNotIn("E", stack[0].split()[-2], o + ": executable stack")

    def test_compiled_in_paths_are_the_install_paths(self):
        """Without overrides the installed binary looks under the prefix, not the
        build or source tree (the destdir copy finds nothing there)."""
        want = os.path.join(self.datadir, "gtmd", "prompts")
        if os.path.exists(want):
            self.skipTest(want + " exists on this machine")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GTM_", "CORS_")) and k != "DATABASE_URL"}
        env["GTM_LISTEN"] = "127.0.0.1:%d" % harness.free_port()
        r = subprocess.run([self.bin, "serve"], env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(want, r.stderr)

    def test_installed_tree_migrates_and_serves(self):
        if not pgutil.available():
            pgutil.require(self)
        with pgutil.Database() as db:
            r = subprocess.run([self.bin, "migrate"], env=self.installed_env(DATABASE_URL=db.url),
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            versions = db.sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM gtm_schema_migrations")
            files = sorted(f for f in os.listdir(self.sql) if re.match(r"^\d{4}_.*\.sql$", f))
            self.assertEqual(versions, ",".join(str(int(f[:4])) for f in files))

            stack = FakeStack()
            saved = harness.GTMD
            harness.GTMD = self.bin
            try:
                env = dict(stack.env(), DATABASE_URL=db.url, GTM_PROMPT_DIR=self.prompts, GTM_SQL_DIR=self.sql)
                with Server(env=env, module_dir=self.modules) as srv:
                    r = request(srv, "GET", "/health")
                    self.assertEqual((r.status, r.json().get("status")), (200, "ok"), r.body)
                    loaded = {}
                    for rec in srv.records():
                        m = re.match(r"^module (\S+) \S+ loaded from (\S+) ", rec.get("msg", ""))
                        if m:
                            loaded[m.group(1)] = m.group(2)
                    want = {os.path.basename(p)[:-3]: p for p in glob.glob(os.path.join(self.modules, "*.so"))}
                    self.assertEqual(len(want), 6)
                    self.assertEqual(loaded, want)
                    # The routes of the installed modules against the installed schema.
                    auth = {"Authorization": "Bearer " + stack.token(str(uuid.uuid4()))}
                    body = {"company_name": "Acme", "company_url": "https://acme.example", "description": "Anvils.",
                            "capabilities": [], "objections": [], "metadata": {}}
                    r = request(srv, "POST", "/api/companies", body=body, headers=auth)
                    self.assertEqual(r.status, 201, r.body)
                    r = request(srv, "GET", "/api/companies/" + r.json()["id"], headers=auth)
                    self.assertEqual((r.status, r.json()["name"]), (200, "Acme"))
                    self.assertEqual(srv.stop(), 0)
            finally:
                harness.GTMD = saved
                stack.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
