#include "util/err.h"
#include "db/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <mbedtls/sha256.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIGRATE_LOCK_KEY "7362011840122"   /* pg_advisory_lock key: "gtmd migrate" */

struct migration {
    int version;
    char name[256];
    char path[4096];
};

char *db_conninfo_normalize(const char *url, char *out, size_t outlen)
{
    const char *plus = NULL;
    if (strncmp(url, "postgresql+", 11) == 0 || strncmp(url, "postgres+", 9) == 0) {
        plus = strchr(url, '+');
    }
    int n;
    if (plus) {
        const char *rest = strstr(plus, "://");
        if (!rest) {
            return NULL;
        }
        n = snprintf(out, outlen, "postgresql%s", rest);
    } else {
        n = snprintf(out, outlen, "%s", url);
    }
    return n >= 0 && (size_t)n < outlen ? out : NULL;
}

static int parse_name(const char *name, int *version)
{
    size_t n = strlen(name);
    if (n < 10 || strcmp(name + n - 4, ".sql") != 0) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return -1;
        }
    }
    if (name[4] != '_') {
        return -1;
    }
    *version = atoi(name);
    return 0;
}

static int cmp_migration(const void *a, const void *b)
{
    return ((const struct migration *)a)->version - ((const struct migration *)b)->version;
}

/* Lists sql_dir's migrations in order.  Caller frees *out. */
static int list_migrations(const char *sql_dir, struct migration **out, size_t *count, char *err, size_t errlen)
{
    DIR *d = opendir(sql_dir);
    if (!d) {
        err_set(err, errlen, "GTM_SQL_DIR: cannot read %s: %s", sql_dir, strerror(errno));
        return -1;
    }
    struct migration *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int version;
        if (parse_name(de->d_name, &version) < 0) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct migration *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                closedir(d);
                err_set(err, errlen, "out of memory");
                return -1;
            }
            v = nv;
        }
        v[n].version = version;
        snprintf(v[n].name, sizeof v[n].name, "%s", de->d_name);
        snprintf(v[n].path, sizeof v[n].path, "%s/%s", sql_dir, de->d_name);
        n++;
    }
    closedir(d);
    if (n > 1) {
        qsort(v, n, sizeof *v, cmp_migration);
    }
    for (size_t i = 1; i < n; i++) {
        if (v[i].version == v[i - 1].version) {
            err_set(err, errlen, "%s and %s share version %d", v[i - 1].name, v[i].name, v[i].version);
            free(v);
            return -1;
        }
    }
    if (n == 0) {
        err_set(err, errlen, "GTM_SQL_DIR: no NNNN_name.sql migrations in %s", sql_dir);
        free(v);
        return -1;
    }
    *out = v;
    *count = n;
    return 0;
}

int migrate_latest_version(const char *sql_dir, char *err, size_t errlen)
{
    struct migration *v;
    size_t n;
    if (list_migrations(sql_dir, &v, &n, err, errlen) < 0) {
        return -1;
    }
    int latest = v[n - 1].version;
    free(v);
    return latest;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    struct { char *p; size_t n, cap; } b = {0};
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.n + r + 1 > b.cap) {
            size_t cap = (b.n + r + 1) * 2;
            char *np = realloc(b.p, cap);
            if (!np) {
                free(b.p);
                fclose(f);
                err_set(err, errlen, "out of memory");
                return NULL;
            }
            b.p = np;
            b.cap = cap;
        }
        memcpy(b.p + b.n, chunk, r);
        b.n += r;
    }
    fclose(f);
    if (!b.p) {
        b.p = calloc(1, 1);
    }
    b.p[b.n] = '\0';
    *len = b.n;
    return b.p;
}

static void sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char h[32];
    mbedtls_sha256_ret((const unsigned char *)data, len, h, 0);
    for (int i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", h[i]);
    }
}

static int exec_ok(PGconn *c, const char *sql, char *err, size_t errlen, const char *what)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        err_set(err, errlen, "%s: %s", what, PQresultErrorMessage(r));
    }
    PQclear(r);
    return ok ? 0 : -1;
}

static void notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *connect_db(const char *conninfo, int timeout_s, char *err, size_t errlen)
{
    char norm[4096];
    if (!db_conninfo_normalize(conninfo, norm, sizeof norm)) {
        err_set(err, errlen, "DATABASE_URL: too long or malformed");
        return NULL;
    }
    char tmo[16];
    snprintf(tmo, sizeof tmo, "%d", timeout_s);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {norm, tmo, "gtmd-migrate", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        err_set(err, errlen, "DATABASE_URL: cannot connect: %s", c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice_ignore, NULL);
    return c;
}

static int table_exists(PGconn *c, const char *name)
{
    const char *params[] = {name};
    PGresult *r = PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, params, NULL, NULL, 0);
    int yes = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return yes;
}

/* What kind of database is this?  Refuses the ones gtmd cannot adopt. */
static int check_adoptable(PGconn *c, FILE *out, char *err, size_t errlen)
{
    if (table_exists(c, "public.alembic_version")) {
        PGresult *r = PQexec(c, "SELECT version_num FROM alembic_version");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            err_set(err, errlen, "cannot read alembic_version: %s", PQresultErrorMessage(r));
            PQclear(r);
            return -1;
        }
        const char *rev = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "(none)";
        if (strcmp(rev, MIGRATE_ADOPTABLE_ALEMBIC) != 0) {
            err_set(err, errlen,
                    "the database carries the upstream schema at alembic revision %s; gtmd adopts only %s "
                    "(the upstream's head): upgrade it with alembic first",
                    rev, MIGRATE_ADOPTABLE_ALEMBIC);
            PQclear(r);
            return -1;
        }
        PQclear(r);
        if (!table_exists(c, "public.gtm_schema_migrations")) {
            fprintf(out, "adopting the upstream schema at alembic revision %s (no row is touched)\n",
                    MIGRATE_ADOPTABLE_ALEMBIC);
        }
        return 0;
    }
    if (!table_exists(c, "public.gtm_schema_migrations") && table_exists(c, "public.companies")) {
        err_set(err, errlen,
                "the database has a companies table but neither gtmd's migrations nor the upstream's "
                "alembic_version: refusing to guess what it is");
        return -1;
    }
    return 0;
}

static int applied_versions(PGconn *c, int **out, size_t *n, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, "SELECT version FROM gtm_schema_migrations ORDER BY version");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        err_set(err, errlen, "cannot read gtm_schema_migrations: %s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    *n = (size_t)PQntuples(r);
    *out = calloc(*n + 1, sizeof **out);
    for (size_t i = 0; i < *n; i++) {
        (*out)[i] = atoi(PQgetvalue(r, (int)i, 0));
    }
    PQclear(r);
    return 0;
}

static int is_applied(const int *v, size_t n, int version)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == version) {
            return 1;
        }
    }
    return 0;
}

static int apply_one(PGconn *c, const struct migration *m, FILE *out, char *err, size_t errlen)
{
    size_t len;
    char *sql = read_file(m->path, &len, err, errlen);
    if (!sql) {
        return -1;
    }
    char sum[65];
    sha256_hex(sql, len, sum);
    char what[300];
    snprintf(what, sizeof what, "%s", m->name);
    if (exec_ok(c, "BEGIN", err, errlen, what) < 0) {
        free(sql);
        return -1;
    }
    if (exec_ok(c, sql, err, errlen, what) < 0) {
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", err);
        exec_ok(c, "ROLLBACK", err, errlen, what);
        snprintf(err, errlen, "%s", saved);
        free(sql);
        return -1;
    }
    free(sql);
    char vbuf[16];
    snprintf(vbuf, sizeof vbuf, "%d", m->version);
    const char *params[] = {vbuf, m->name, sum};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO gtm_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                               3, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        err_set(err, errlen, "%s: recording it: %s", m->name, PQresultErrorMessage(r));
    }
    PQclear(r);
    if (!ok || exec_ok(c, "COMMIT", err, errlen, what) < 0) {
        PQclear(PQexec(c, "ROLLBACK"));
        return -1;
    }
    fprintf(out, "applied %s\n", m->name);
    return 0;
}

int migrate_run(const char *conninfo, const char *sql_dir, FILE *out, char *err, size_t errlen)
{
    struct migration *v;
    size_t n;
    if (list_migrations(sql_dir, &v, &n, err, errlen) < 0) {
        return -1;
    }
    PGconn *c = connect_db(conninfo, 10, err, errlen);
    if (!c) {
        free(v);
        return -1;
    }
    int rc = -1;
    int *done = NULL;
    size_t ndone = 0, applied = 0;
    /* One migrator at a time; the second finds the work done. */
    if (exec_ok(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errlen, "taking the migration lock") < 0) {
        goto out;
    }
    if (check_adoptable(c, out, err, errlen) < 0) {
        goto unlock;
    }
    if (exec_ok(c,
                "CREATE TABLE IF NOT EXISTS gtm_schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " checksum char(64) NOT NULL,"
                " applied_at timestamp without time zone NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC'))",
                err, errlen, "creating gtm_schema_migrations") < 0 ||
        applied_versions(c, &done, &ndone, err, errlen) < 0) {
        goto unlock;
    }
    for (size_t i = 0; i < n; i++) {
        if (is_applied(done, ndone, v[i].version)) {
            continue;
        }
        if (apply_one(c, &v[i], out, err, errlen) < 0) {
            goto unlock;
        }
        applied++;
    }
    if (applied == 0) {
        fprintf(out, "schema up to date at version %d\n", v[n - 1].version);
    } else {
        fprintf(out, "schema now at version %d (%zu applied)\n", v[n - 1].version, applied);
    }
    rc = 0;
unlock:
    PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
out:
    free(done);
    free(v);
    PQfinish(c);
    return rc;
}

int migrate_check(const char *conninfo, const char *sql_dir, int timeout_s, char *msg, size_t len)
{
    int latest = migrate_latest_version(sql_dir, msg, len);
    if (latest < 0) {
        return MIGRATE_ERROR;
    }
    PGconn *c = connect_db(conninfo, timeout_s, msg, len);
    if (!c) {
        return MIGRATE_UNREACHABLE;
    }
    int state = MIGRATE_ERROR;
    if (!table_exists(c, "public.gtm_schema_migrations")) {
        err_set(msg, len, "the database has no gtmd schema (version 0, this gtmd needs %d): run gtmd migrate", latest);
        state = MIGRATE_BEHIND;
    } else {
        struct migration *v;
        size_t n;
        int *done = NULL;
        size_t ndone = 0;
        if (list_migrations(sql_dir, &v, &n, msg, len) == 0) {
            if (applied_versions(c, &done, &ndone, msg, len) == 0) {
                state = MIGRATE_CURRENT;
                for (size_t i = 0; i < n; i++) {
                    if (!is_applied(done, ndone, v[i].version)) {
                        err_set(msg, len, "the database schema lacks %s (this gtmd needs version %d): run gtmd migrate",
                                v[i].name, latest);
                        state = MIGRATE_BEHIND;
                        break;
                    }
                }
            }
            free(done);
            free(v);
        }
    }
    PQfinish(c);
    return state;
}
