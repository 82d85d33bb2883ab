"""gtmd migrate: a fresh database, twice, two at once, adopting the upstream's
database at alembic head without touching a row, refusing other revisions;
and gtmd serve refusing a schema that is behind."""
import os
import subprocess
import threading
import unittest

import pgutil
from harness import GTMD, Server, request

HERE = os.path.dirname(os.path.abspath(__file__))
TABLES = ["users", "companies", "accounts", "personas", "campaigns"]


def migrate(url, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env["DATABASE_URL"] = url
    env.update(extra)
    return subprocess.run([GTMD, "migrate"], env=env, capture_output=True, text=True, timeout=120)


def snapshot(db):
    return {t: db.sql("SELECT coalesce(json_agg(t ORDER BY id)::text, '[]') FROM %s t" % t) for t in TABLES}


class MigrateTest(unittest.TestCase):
    def setUp(self):
        pgutil.require(self)

    def test_fresh_database_then_again(self):
        with pgutil.Database() as db:
            r = migrate(db.url)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("applied 0001_upstream_schema.sql", r.stdout)
            versions = db.sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM gtm_schema_migrations")
            self.assertTrue(versions.startswith("1,2,3"), versions)
            for t in TABLES + ["gtm_api_keys"]:
                self.assertEqual(db.sql("SELECT to_regclass('%s') IS NOT NULL" % t), "t")
            # every foreign key has an index whose first column is that key
            missing = db.sql("""
                SELECT string_agg(c.conrelid::regclass || '.' || a.attname, ',')
                FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                WHERE c.contype = 'f' AND NOT EXISTS (
                    SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])""")
            self.assertEqual(missing, "")
            r = migrate(db.url)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("schema up to date", r.stdout)
            self.assertEqual(r.stderr, "")

    def test_two_at_once(self):
        with pgutil.Database() as db:
            results = [None, None]

            def run(i):
                results[i] = migrate(db.url)

            ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual([r.returncode for r in results], [0, 0], [r.stderr for r in results])
            self.assertEqual(sum("applied 0001" in r.stdout for r in results), 1)
            self.assertEqual(db.sql("SELECT count(*) = count(DISTINCT version) FROM gtm_schema_migrations"), "t")

    def test_adopts_upstream_at_head_touching_no_row(self):
        with pgutil.Database() as db:
            pgutil.psql_file(db.name, os.path.join(HERE, "upstream_schema.sql"))
            before = snapshot(db)
            r = migrate(db.url)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("adopting the upstream schema at alembic revision b7adaca9c685", r.stdout)
            self.assertEqual(snapshot(db), before)
            self.assertEqual(db.sql("SELECT version_num FROM alembic_version"), "b7adaca9c685")
            self.assertEqual(db.sql("SELECT count(*) FROM pg_policies WHERE tablename = 'companies'"), "1")

    def test_refuses_other_alembic_revision(self):
        with pgutil.Database() as db:
            pgutil.psql_file(db.name, os.path.join(HERE, "upstream_schema.sql"))
            db.sql("UPDATE alembic_version SET version_num = 'c7184de40b5b'")
            before = snapshot(db)
            r = migrate(db.url)
            self.assertEqual(r.returncode, 1)
            self.assertIn("alembic revision c7184de40b5b", r.stderr)
            self.assertIn("b7adaca9c685", r.stderr)
            self.assertEqual(snapshot(db), before)
            self.assertEqual(db.sql("SELECT to_regclass('gtm_schema_migrations') IS NULL"), "t")

    def test_refuses_unknown_database(self):
        with pgutil.Database() as db:
            db.sql("CREATE TABLE companies (id int)")
            r = migrate(db.url)
            self.assertEqual(r.returncode, 1)
            self.assertIn("refusing to guess", r.stderr)

    def test_failing_migration_is_rolled_back(self):
        with pgutil.Database() as db:
            sqldir = os.path.join(os.environ.get("TMPDIR", "/tmp"), db.name + "_sql")
            os.makedirs(sqldir)
            try:
                with open(os.path.join(sqldir, "0001_ok.sql"), "w") as f:
                    f.write("CREATE TABLE ok_table (id int);")
                with open(os.path.join(sqldir, "0002_bad.sql"), "w") as f:
                    f.write("CREATE TABLE half_table (id int); SELECT no_such_function();")
                r = migrate(db.url, GTM_SQL_DIR=sqldir)
                self.assertEqual(r.returncode, 1)
                self.assertIn("0002_bad.sql", r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1)
                self.assertEqual(db.sql("SELECT to_regclass('ok_table') IS NOT NULL, to_regclass('half_table') IS NULL"),
                                 "t|t")
                self.assertEqual(db.sql("SELECT string_agg(version::text, ',') FROM gtm_schema_migrations"), "1")
            finally:
                for n in os.listdir(sqldir):
                    os.remove(os.path.join(sqldir, n))
                os.rmdir(sqldir)

    def test_serve_refuses_a_schema_behind(self):
        with pgutil.Database() as db:
            srv = Server(env={"DATABASE_URL": db.url})
            srv.start(expect_ready=False)
            self.assertEqual(srv.wait_exit(), 2)
            self.assertIn("run gtmd migrate", "\n".join(srv.lines))
            self.assertEqual(migrate(db.url).returncode, 0)
            db.sql("DELETE FROM gtm_schema_migrations WHERE version = 3")
            srv = Server(env={"DATABASE_URL": db.url})
            srv.start(expect_ready=False)
            self.assertEqual(srv.wait_exit(), 2)
            self.assertIn("0003_gtmd_api_keys.sql", "\n".join(srv.lines))
            self.assertEqual(migrate(db.url).returncode, 0)
            with Server(env={"DATABASE_URL": db.url}) as srv:
                self.assertEqual(request(srv, "GET", "/health").status, 200)

    def test_serve_starts_when_database_unreachable(self):
        with Server(env={"DATABASE_URL": "postgresql://nobody:pw@127.0.0.1:1/none"}) as srv:
            self.assertEqual(request(srv, "GET", "/health").status, 200)
            self.assertTrue(any("serving anyway" in l for l in srv.lines))
            self.assertFalse(any(":pw@" in l for l in srv.lines))


if __name__ == "__main__":
    unittest.main(verbosity=2)
