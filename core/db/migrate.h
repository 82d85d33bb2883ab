/* Schema migrations: sql/NNNN_name.sql applied in order, each once, each in
 * its own transaction, recorded in gtm_schema_migrations.  Runs as a command
 * (gtmd migrate), so plain blocking libpq is right here. */
#ifndef GTM_MIGRATE_H
#define GTM_MIGRATE_H

#include <stddef.h>
#include <stdio.h>

/* The upstream's alembic head, the only upstream state gtmd adopts. */
#define MIGRATE_ADOPTABLE_ALEMBIC "b7adaca9c685"

/* Applies what is missing.  0, or -1 with a one-line reason in err.  Progress
 * lines go to out.  Safe to run twice and from two processes at once. */
int migrate_run(const char *conninfo, const char *sql_dir, FILE *out, char *err, size_t errlen);

enum migrate_state {
    MIGRATE_CURRENT = 0,       /* every file in sql_dir is applied */
    MIGRATE_BEHIND = 1,        /* msg says what is missing */
    MIGRATE_UNREACHABLE = -1,  /* could not connect within timeout_s */
    MIGRATE_ERROR = -2,        /* sql_dir unreadable, or a query failed */
};
/* For gtmd serve at start-up: is the database's schema current? */
int migrate_check(const char *conninfo, const char *sql_dir, int timeout_s, char *msg, size_t len);

/* The highest version among the files of sql_dir, or -1 with err set. */
int migrate_latest_version(const char *sql_dir, char *err, size_t errlen);

/* libpq takes postgres:// and postgresql:// but not SQLAlchemy's
 * postgresql+psycopg2://, which upstream .env files carry: drops the driver
 * part.  Returns out, or NULL when it does not fit. */
char *db_conninfo_normalize(const char *url, char *out, size_t outlen);

#endif
