/* The statements one connection has prepared, keyed by their SQL text: an
 * open-addressing table of SQL -> statement number ("s<id>" on the server).
 * Lives and dies with the session, since prepared statements do. */
#include <stdlib.h>
#include <string.h>

#include "pg/pg_internal.h"

static uint64_t sql_hash(const char *sql) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (const unsigned char *s = (const unsigned char *)sql; *s; s++) {
        h ^= *s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static struct pg_stmt_cache_slot *find_slot(struct pg_stmt_cache_slot *slots, size_t cap, const char *sql,
                                             uint64_t hash) {
    size_t mask = cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        struct pg_stmt_cache_slot *s = &slots[i];
        if (!s->sql || (s->hash == hash && strcmp(s->sql, sql) == 0))
            return s;
    }
}

unsigned pg_stmt_cache_find(const struct pg_stmt_cache *c, const char *sql) {
    if (c->count == 0)
        return 0;
    struct pg_stmt_cache_slot *s = find_slot(c->slots, c->cap, sql, sql_hash(sql));
    return s->sql ? s->id : 0;
}

bool pg_stmt_cache_full(const struct pg_stmt_cache *c) {
    return c->count >= PG_STMT_CACHE_MAX;
}

static bool grow(struct pg_stmt_cache *c) {
    size_t cap = c->cap ? c->cap * 2 : 16;
    struct pg_stmt_cache_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < c->cap; i++) {
        if (c->slots[i].sql)
            *find_slot(slots, cap, c->slots[i].sql, c->slots[i].hash) = c->slots[i];
    }
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    return true;
}

bool pg_stmt_cache_add(struct pg_stmt_cache *c, const char *sql, unsigned id) {
    if (pg_stmt_cache_full(c))
        return false;
    /* keep the load under 3/4 so probes stay short and always end */
    if ((c->count + 1) * 4 > c->cap * 3 && !grow(c))
        return false;
    uint64_t hash = sql_hash(sql);
    struct pg_stmt_cache_slot *s = find_slot(c->slots, c->cap, sql, hash);
    if (s->sql) {
        s->id = id;
        return true;
    }
    char *copy = strdup(sql);
    if (!copy)
        return false;
    s->sql = copy;
    s->hash = hash;
    s->id = id;
    c->count++;
    return true;
}

void pg_stmt_cache_clear(struct pg_stmt_cache *c) {
    for (size_t i = 0; i < c->cap; i++)
        free(c->slots[i].sql);
    free(c->slots);
    c->slots = NULL;
    c->cap = c->count = 0;
}
