"""Throwaway databases for e2e tests, inside the cluster that pg_virtualenv
started for the test run (PGHOST, PGPORT, PGUSER, PGPASSWORD)."""
import os
import unittest
import subprocess
import uuid


def available():
    return bool(os.environ.get("PGHOST") and os.environ.get("PGUSER"))


def require(testcase=None):
    """Fails in CI and skips elsewhere when no cluster was given; without a
    testcase (in setUpClass) it skips the whole class."""
    if not available():
        if os.environ.get("CI"):
            raise AssertionError("no PostgreSQL: run the e2e suite through deploy/test.sh (pg_virtualenv)")
        if testcase is None:
            raise unittest.SkipTest("no PostgreSQL (run through deploy/test.sh)")
        testcase.skipTest("no PostgreSQL (run through deploy/test.sh)")


def psql(db, sql, check=True):
    """Runs sql in db; returns the unaligned, tuples-only output."""
    env = dict(os.environ, PGDATABASE=db)
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       env=env, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("psql failed: %s\n%s" % (sql[:200], r.stderr))
    return r.stdout.strip()


def psql_file(db, path):
    env = dict(os.environ, PGDATABASE=db)
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path], env=env,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("psql -f %s failed:\n%s" % (path, r.stderr))


class Database:
    """A fresh database, dropped again at exit."""

    def __init__(self):
        self.name = "gtm_e2e_" + uuid.uuid4().hex[:12]

    def __enter__(self):
        psql("postgres", "CREATE DATABASE %s" % self.name)
        return self

    def __exit__(self, *exc):
        psql("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.name, check=False)

    @property
    def url(self):
        e = os.environ
        return "postgresql://%s:%s@%s:%s/%s" % (e["PGUSER"], e.get("PGPASSWORD", ""), e["PGHOST"],
                                                e.get("PGPORT", "5432"), self.name)

    def sql(self, statement):
        return psql(self.name, statement)


class MigratedDatabase(Database):
    """A fresh database with gtmd's schema applied by gtmd migrate."""

    def __enter__(self):
        super().__enter__()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        env["DATABASE_URL"] = self.url
        r = subprocess.run([os.environ["GTMD"], "migrate"], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            self.__exit__(None, None, None)
            raise AssertionError("gtmd migrate failed: " + r.stderr)
        return self
