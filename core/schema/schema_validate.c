/* Validation: walks the instance with the compiled nodes, collecting errors
 * phrased for an LLM that has to repair its own answer. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema/schema_internal.h"

/* Values quoted in messages are cut here: the message must stay readable
 * when the offending value is a whole paragraph. */
#define QUOTE_MAX 80
/* Enum lists and allowed-property lists stop after this many entries. */
#define LIST_MAX 20
/* Schemas whose anyOf branches overlap can make validation try every
 * combination; past this many node visits it gives up and calls the value
 * invalid.  Real answers take a few thousand. */
#define SCHEMA_MAX_STEPS 200000

/* Where the validation is (the instance's JSON pointer) and how much work
 * it has done. */
struct walk {
    char *buf;
    size_t len, cap;
    size_t steps;
    int gave_up; /* SCHEMA_MAX_STEPS reached */
};

struct error_sink {
    json_t *list;      /* NULL when only counting */
    size_t stored_max; /* entries kept in list at most */
    size_t count;
    size_t limit;      /* validation stops once count reaches it */
    int oom;
    struct walk *walk; /* shared by every sink of one validation */
};

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_add(b, big, (size_t)n);
    free(big);
}

/* v as compact JSON, cut at a character boundary past QUOTE_MAX bytes. */
static void sb_json(struct sbuf *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        b->oom = 1;
        return;
    }
    size_t len = strlen(text);
    if (len > QUOTE_MAX) {
        len = QUOTE_MAX;
        while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80) {
            len--;
        }
        sb_add(b, text, len);
        sb_str(b, "\xe2\x80\xa6");
    } else {
        sb_add(b, text, len);
    }
    free(text);
}

static void sb_quoted(struct sbuf *b, const char *s, size_t len)
{
    json_t *str = json_stringn_nocheck(s, len);
    if (!str) {
        b->oom = 1;
        return;
    }
    sb_json(b, str);
    json_decref(str);
}

static int path_reserve(struct walk *p, size_t extra)
{
    if (p->len + extra + 1 <= p->cap) {
        return 0;
    }
    size_t cap = p->cap ? p->cap : 128;
    while (cap < p->len + extra + 1) {
        cap *= 2;
    }
    char *buf = realloc(p->buf, cap);
    if (!buf) {
        return -1;
    }
    p->buf = buf;
    p->cap = cap;
    return 0;
}

/* Appends /key (escaped per RFC 6901); the old length, to pop back to. */
static int path_push_key(struct walk *p, const char *key, size_t key_len, size_t *old_len)
{
    *old_len = p->len;
    if (path_reserve(p, 1 + 2 * key_len) < 0) {
        return -1;
    }
    p->buf[p->len++] = '/';
    for (size_t i = 0; i < key_len; i++) {
        if (key[i] == '~' || key[i] == '/') {
            p->buf[p->len++] = '~';
            p->buf[p->len++] = key[i] == '~' ? '0' : '1';
        } else {
            p->buf[p->len++] = key[i];
        }
    }
    p->buf[p->len] = '\0';
    return 0;
}

static int path_push_index(struct walk *p, size_t index, size_t *old_len)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "/%zu", index);
    *old_len = p->len;
    if (path_reserve(p, (size_t)n) < 0) {
        return -1;
    }
    memcpy(p->buf + p->len, digits, (size_t)n + 1);
    p->len += (size_t)n;
    return 0;
}

static void path_pop(struct walk *p, size_t old_len)
{
    p->len = old_len;
    if (p->buf) {
        p->buf[old_len] = '\0';
    }
}

static int sink_full(const struct error_sink *sink)
{
    return sink->count >= sink->limit;
}

/* Records one error at the current path; message is consumed. */
static void report(struct error_sink *sink, struct sbuf *message)
{
    if (sink_full(sink)) {
        free(message->p);
        return;
    }
    sink->count++;
    if (message->oom) {
        sink->oom = 1;
    } else if (sink->list && json_array_size(sink->list) < sink->stored_max) {
        const char *path = sink->walk->buf ? sink->walk->buf : "";
        json_t *entry = json_object();
        if (!entry || json_object_set_new(entry, "path", json_stringn_nocheck(path, sink->walk->len)) < 0 ||
            json_object_set_new(entry, "message", json_string(message->p ? message->p : "")) < 0) {
            json_decref(entry);
            sink->oom = 1;
        } else if (json_array_append_new(sink->list, entry) < 0) {
            sink->oom = 1; /* append_new released entry */
        }
    }
    free(message->p);
}

static void report_oom(struct error_sink *sink)
{
    sink->oom = 1;
    if (!sink_full(sink)) {
        sink->count++;
    }
}

const char *schema_instance_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "value";
}

unsigned schema_instance_type_bit(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return SCHEMA_T_OBJECT;
    case JSON_ARRAY:
        return SCHEMA_T_ARRAY;
    case JSON_STRING:
        return SCHEMA_T_STRING;
    case JSON_INTEGER:
    case JSON_REAL:
        return SCHEMA_T_NUMBER;
    case JSON_TRUE:
    case JSON_FALSE:
        return SCHEMA_T_BOOLEAN;
    case JSON_NULL:
        return SCHEMA_T_NULL;
    }
    return 0;
}

/* JSON Schema counts 3.0 as an integer: the value decides, not the spelling. */
static int is_integral(const json_t *v)
{
    if (json_is_integer(v)) {
        return 1;
    }
    if (!json_is_real(v)) {
        return 0;
    }
    double d = json_real_value(v);
    const double two_53 = 9007199254740992.0;
    if (d != d) {
        return 0;
    }
    if (d >= two_53 || d <= -two_53) {
        return d - d == 0; /* every finite double this large is whole; inf is not */
    }
    return d == (double)(int64_t)d;
}

int schema_type_allows(unsigned types, const json_t *v)
{
    if (!types) {
        return 1;
    }
    unsigned bit = schema_instance_type_bit(v);
    if (types & bit) {
        return 1;
    }
    return bit == SCHEMA_T_NUMBER && (types & SCHEMA_T_INTEGER) && is_integral(v);
}

/* Equality as JSON Schema defines it: 1 and 1.0 are the same number. */
static int values_equal(const json_t *a, const json_t *b, int depth)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            return json_integer_value(a) == json_integer_value(b);
        }
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b) || depth > SCHEMA_MAX_DEPTH) {
        return 0;
    }
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) {
            return 0;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (!values_equal(json_array_get(a, i), json_array_get(b, i), depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b)) {
            return 0;
        }
        const char *key;
        size_t key_len;
        json_t *va;
        json_object_keylen_foreach((json_t *)a, key, key_len, va)
        {
            json_t *vb = json_object_getn(b, key, key_len);
            if (!vb || !values_equal(va, vb, depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    return json_equal(a, b);
}

static size_t code_points(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    }
    return n;
}

static void describe(struct sbuf *b, const struct schema_node *n, int depth);

static void describe_types(struct sbuf *b, const struct schema_node *n, int depth)
{
    for (size_t i = 0; i < n->ntypes; i++) {
        if (i) {
            sb_str(b, i + 1 == n->ntypes ? " or " : ", ");
        }
        unsigned bit = n->type_order[i];
        if (bit == SCHEMA_T_ARRAY && n->items) {
            const struct schema_node *items = schema_resolve(n->items);
            if (items->ntypes == 1 && !items->enum_values && depth < 3) {
                sb_str(b, "array of ");
                sb_str(b, schema_type_name(items->type_order[0]));
                sb_str(b, "s");
                continue;
            }
        }
        sb_str(b, schema_type_name(bit));
    }
}

static void describe_enum(struct sbuf *b, const json_t *values)
{
    for (size_t i = 0; i < json_array_size(values); i++) {
        if (i == LIST_MAX) {
            sb_str(b, ", \xe2\x80\xa6");
            break;
        }
        if (i) {
            sb_str(b, ", ");
        }
        sb_json(b, json_array_get(values, i));
    }
}

/* A short phrase for what n accepts, e.g. "array of strings or null". */
static void describe(struct sbuf *b, const struct schema_node *n, int depth)
{
    n = schema_resolve(n);
    if (n->always_false) {
        sb_str(b, "nothing");
    } else if (n->enum_values) {
        sb_str(b, "one of ");
        describe_enum(b, n->enum_values);
    } else if (n->ntypes) {
        describe_types(b, n, depth);
    } else if (n->nany_of && depth < 3) {
        for (size_t i = 0; i < n->nany_of; i++) {
            if (i) {
                sb_str(b, " or ");
            }
            describe(b, n->any_of[i], depth + 1);
        }
    } else {
        sb_str(b, "any value");
    }
}

/* Whether n could accept a value of v's type at all: used to pick the anyOf
 * branch whose errors say the most. */
static int accepts_type(const struct schema_node *n, const json_t *v)
{
    n = schema_resolve(n);
    if (n->always_false) {
        return 0;
    }
    if (n->types) {
        return schema_type_allows(n->types, v);
    }
    if (n->enum_values) {
        for (size_t i = 0; i < json_array_size(n->enum_values); i++) {
            if (schema_instance_type_bit(json_array_get(n->enum_values, i)) == schema_instance_type_bit(v)) {
                return 1;
            }
        }
        return 0;
    }
    if (n->nany_of) {
        for (size_t i = 0; i < n->nany_of; i++) {
            if (accepts_type(n->any_of[i], v)) {
                return 1;
            }
        }
        return 0;
    }
    return 1;
}

static void validate_node(const struct schema_node *n, json_t *v, struct error_sink *sink, int depth);

static void validate_any_of(const struct schema_node *n, json_t *v, struct error_sink *sink, int depth)
{
    size_t room = sink->limit - sink->count;
    struct error_sink best = {0};
    int have_best = 0;
    for (size_t i = 0; i < n->nany_of; i++) {
        struct error_sink trial = {.stored_max = room, .limit = room, .walk = sink->walk};
        if (sink->list && !(trial.list = json_array())) {
            report_oom(sink);
            goto done;
        }
        validate_node(n->any_of[i], v, &trial, depth);
        if (trial.oom) {
            json_decref(trial.list);
            report_oom(sink);
            goto done;
        }
        if (trial.count == 0) {
            json_decref(trial.list);
            goto done;
        }
        if (accepts_type(n->any_of[i], v) && (!have_best || trial.count < best.count)) {
            json_decref(best.list);
            best = trial;
            have_best = 1;
        } else {
            json_decref(trial.list);
        }
    }
    if (have_best) {
        /* A branch that takes this type failed deeper down: its own errors
         * point at what to fix better than a summary would. */
        for (size_t i = 0; sink->list && i < json_array_size(best.list); i++) {
            if (json_array_size(sink->list) >= sink->stored_max) {
                break;
            }
            if (json_array_append(sink->list, json_array_get(best.list, i)) < 0) {
                sink->oom = 1;
            }
        }
        sink->count += best.count;
    } else {
        struct sbuf m = {0};
        sb_str(&m, "None of the allowed forms matched: expected ");
        for (size_t i = 0; i < n->nany_of; i++) {
            if (i) {
                sb_str(&m, " or ");
            }
            describe(&m, n->any_of[i], 0);
        }
        sb_printf(&m, ", got %s", schema_instance_type_name(v));
        report(sink, &m);
    }
done:
    json_decref(best.list);
}

static void validate_array(const struct schema_node *n, json_t *v, struct error_sink *sink, int depth)
{
    size_t size = json_array_size(v);
    if (n->min_items >= 0 && size < (unsigned long long)n->min_items) {
        struct sbuf m = {0};
        sb_printf(&m, "expected at least %lld item%s, got %zu", n->min_items, n->min_items == 1 ? "" : "s", size);
        report(sink, &m);
    }
    if (n->max_items >= 0 && size > (unsigned long long)n->max_items) {
        struct sbuf m = {0};
        sb_printf(&m, "expected at most %lld item%s, got %zu", n->max_items, n->max_items == 1 ? "" : "s", size);
        report(sink, &m);
    }
    if (!n->items) {
        return;
    }
    for (size_t i = 0; i < size && !sink_full(sink); i++) {
        size_t old_len;
        if (path_push_index(sink->walk, i, &old_len) < 0) {
            report_oom(sink);
            return;
        }
        validate_node(n->items, json_array_get(v, i), sink, depth + 1);
        path_pop(sink->walk, old_len);
    }
}

static const struct schema_prop *find_prop(const struct schema_node *n, const char *key, size_t key_len)
{
    for (size_t i = 0; i < n->nprops; i++) {
        if (n->props[i].name_len == key_len && memcmp(n->props[i].name, key, key_len) == 0) {
            return &n->props[i];
        }
    }
    return NULL;
}

static void report_unexpected(const struct schema_node *n, const char *key, size_t key_len, struct error_sink *sink)
{
    struct sbuf m = {0};
    sb_str(&m, "unexpected property ");
    sb_quoted(&m, key, key_len);
    if (n->nprops) {
        sb_str(&m, " (allowed: ");
        for (size_t i = 0; i < n->nprops; i++) {
            if (i == LIST_MAX) {
                sb_str(&m, ", \xe2\x80\xa6");
                break;
            }
            if (i) {
                sb_str(&m, ", ");
            }
            sb_quoted(&m, n->props[i].name, n->props[i].name_len);
        }
        sb_str(&m, ")");
    } else {
        sb_str(&m, " (no properties are allowed here)");
    }
    report(sink, &m);
}

static void validate_object(const struct schema_node *n, json_t *v, struct error_sink *sink, int depth)
{
    size_t i;
    json_t *name;
    json_array_foreach(n->required, i, name)
    {
        if (!json_object_getn(v, json_string_value(name), json_string_length(name))) {
            struct sbuf m = {0};
            sb_str(&m, "missing required property ");
            sb_quoted(&m, json_string_value(name), json_string_length(name));
            report(sink, &m);
        }
    }
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach(v, key, key_len, value)
    {
        if (sink_full(sink)) {
            return;
        }
        const struct schema_prop *prop = find_prop(n, key, key_len);
        const struct schema_node *sub = prop ? prop->schema
                                        : n->additional == SCHEMA_ADDL_SCHEMA ? n->additional_schema
                                                                              : NULL;
        if (!sub && (prop || n->additional != SCHEMA_ADDL_FALSE)) {
            continue;
        }
        size_t old_len;
        if (path_push_key(sink->walk, key, key_len, &old_len) < 0) {
            report_oom(sink);
            return;
        }
        if (sub) {
            validate_node(sub, value, sink, depth + 1);
        } else {
            report_unexpected(n, key, key_len, sink);
        }
        path_pop(sink->walk, old_len);
    }
}

static void validate_node(const struct schema_node *n, json_t *v, struct error_sink *sink, int depth)
{
    if (sink_full(sink) || sink->walk->gave_up) {
        return;
    }
    if (++sink->walk->steps > SCHEMA_MAX_STEPS) {
        sink->walk->gave_up = 1;
        return;
    }
    if (depth > SCHEMA_MAX_DEPTH) {
        struct sbuf m = {0};
        sb_printf(&m, "value nested deeper than %d levels", SCHEMA_MAX_DEPTH);
        report(sink, &m);
        return;
    }
    n = schema_resolve(n);
    if (n->always_false) {
        struct sbuf m = {0};
        sb_str(&m, "no value is allowed here");
        report(sink, &m);
        return;
    }
    /* After a type or enum mismatch the other keywords have nothing useful
     * to add. */
    if (!schema_type_allows(n->types, v)) {
        struct sbuf m = {0};
        sb_str(&m, "expected ");
        describe_types(&m, n, 0);
        if (json_is_real(v) && (n->types & SCHEMA_T_INTEGER)) {
            sb_str(&m, ", got ");
            sb_json(&m, v);
        } else {
            sb_printf(&m, ", got %s", schema_instance_type_name(v));
        }
        report(sink, &m);
        return;
    }
    if (n->enum_values) {
        int found = 0;
        for (size_t i = 0; i < json_array_size(n->enum_values) && !found; i++) {
            found = values_equal(v, json_array_get(n->enum_values, i), 0);
        }
        if (!found) {
            struct sbuf m = {0};
            sb_json(&m, v);
            sb_str(&m, " is not one of ");
            describe_enum(&m, n->enum_values);
            report(sink, &m);
            return;
        }
    }
    if (n->nany_of) {
        validate_any_of(n, v, sink, depth);
    }
    if (json_is_string(v) && (n->min_length >= 0 || n->max_length >= 0)) {
        size_t length = code_points(json_string_value(v), json_string_length(v));
        if (n->min_length >= 0 && length < (unsigned long long)n->min_length) {
            struct sbuf m = {0};
            sb_printf(&m, "expected at least %lld character%s, got %zu", n->min_length, n->min_length == 1 ? "" : "s",
                      length);
            report(sink, &m);
        }
        if (n->max_length >= 0 && length > (unsigned long long)n->max_length) {
            struct sbuf m = {0};
            sb_printf(&m, "expected at most %lld character%s, got %zu", n->max_length, n->max_length == 1 ? "" : "s",
                      length);
            report(sink, &m);
        }
    } else if (json_is_array(v)) {
        validate_array(n, v, sink, depth);
    } else if (json_is_object(v)) {
        validate_object(n, v, sink, depth);
    }
}

size_t schema_validate(const struct schema *s, json_t *instance, json_t **errors, size_t max_errors)
{
    if (errors) {
        *errors = NULL;
    }
    struct walk walk = {0};
    struct error_sink sink = {.stored_max = max_errors, .limit = max_errors ? max_errors : 1, .walk = &walk};
    if (errors && max_errors && !(sink.list = json_array())) {
        return 1;
    }
    if (!s || !instance) {
        struct sbuf m = {0};
        sb_str(&m, s ? "no value" : "no schema");
        report(&sink, &m);
    } else {
        validate_node(s->root, instance, &sink, 0);
    }
    if (walk.gave_up) {
        /* What was found before giving up may be incomplete, or an anyOf
         * may have looked valid for want of time: say so. */
        path_pop(&walk, 0);
        if (sink_full(&sink)) {
            sink.count--;
            if (sink.list && json_array_size(sink.list) == sink.stored_max) {
                json_array_remove(sink.list, json_array_size(sink.list) - 1);
            }
        }
        struct sbuf m = {0};
        sb_printf(&m, "gave up after %d checks: the value is too large or its schema too ambiguous", SCHEMA_MAX_STEPS);
        report(&sink, &m);
    }
    free(walk.buf);
    if (sink.oom && sink.count == 0) {
        sink.count = 1;
    }
    if (errors) {
        *errors = sink.list ? sink.list : json_array();
    } else {
        json_decref(sink.list);
    }
    return sink.count;
}

int schema_node_accepts(const struct schema_node *n, json_t *instance)
{
    struct walk walk = {0};
    struct error_sink sink = {.limit = 1, .walk = &walk};
    validate_node(n, instance, &sink, 0);
    free(walk.buf);
    return sink.count == 0 && !sink.oom && !walk.gave_up;
}
