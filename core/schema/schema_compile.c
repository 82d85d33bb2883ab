/* Compiling a schema document into nodes.  Everything a later step relies on
 * is checked here (keyword values, $ref targets, cycles that would never
 * reach a value), so validation and the transforms need not re-check. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema/schema_internal.h"

struct definition {
    const char *section; /* "$defs" or "definitions" */
    const char *name;
    size_t name_len;
    json_t *doc;
    struct schema_node *node;
};

struct compiler {
    struct schema *s;
    struct definition *defs;
    size_t ndefs;
    char *err;
    size_t errlen;
};

static int fail(struct compiler *c, const char *pointer, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct compiler *c, const char *pointer, const char *fmt, ...)
{
    if (!c->err || !c->errlen) {
        return -1;
    }
    int n = snprintf(c->err, c->errlen, "%s: ", pointer && *pointer ? pointer : "root");
    if (n < 0 || (size_t)n >= c->errlen) {
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* pointer + "/" + token, with the token escaped as RFC 6901 asks.  Caller frees. */
static char *pointer_append(const char *pointer, const char *token, size_t token_len)
{
    size_t extra = 0;
    for (size_t i = 0; i < token_len; i++) {
        extra += token[i] == '~' || token[i] == '/';
    }
    size_t base = strlen(pointer);
    char *out = malloc(base + 1 + token_len + extra + 1);
    if (!out) {
        return NULL;
    }
    memcpy(out, pointer, base);
    size_t o = base;
    out[o++] = '/';
    for (size_t i = 0; i < token_len; i++) {
        if (token[i] == '~') {
            out[o++] = '~';
            out[o++] = '0';
        } else if (token[i] == '/') {
            out[o++] = '~';
            out[o++] = '1';
        } else {
            /* A NUL inside a key cannot travel in a C string; it is shown as
             * a space, which only affects messages. */
            out[o++] = token[i] ? token[i] : ' ';
        }
    }
    out[o] = '\0';
    return out;
}

static struct schema_node *new_node(struct compiler *c, json_t *doc, const char *pointer)
{
    struct schema *s = c->s;
    if (s->nnodes == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        struct schema_node **nodes = realloc(s->nodes, cap * sizeof *nodes);
        if (!nodes) {
            return NULL;
        }
        s->nodes = nodes;
        s->cap = cap;
    }
    struct schema_node *n = calloc(1, sizeof *n);
    if (!n) {
        return NULL;
    }
    n->pointer = strdup(pointer);
    if (!n->pointer) {
        free(n);
        return NULL;
    }
    n->doc = doc;
    n->min_items = n->max_items = n->min_length = n->max_length = -1;
    s->nodes[s->nnodes++] = n;
    return n;
}

static int compile_node(struct compiler *c, struct schema_node *n, json_t *doc, int depth);

/* Allocates and compiles the subschema at pointer/token. */
static struct schema_node *compile_child(struct compiler *c, const char *pointer, const char *token, size_t token_len,
                                         json_t *doc, int depth)
{
    char *child_pointer = pointer_append(pointer, token, token_len);
    if (!child_pointer) {
        fail(c, pointer, "out of memory");
        return NULL;
    }
    struct schema_node *n = new_node(c, doc, child_pointer);
    free(child_pointer);
    if (!n) {
        fail(c, pointer, "out of memory");
        return NULL;
    }
    return compile_node(c, n, doc, depth + 1) == 0 ? n : NULL;
}

static const struct {
    const char *name;
    unsigned bit;
} type_names[SCHEMA_TYPE_KINDS] = {
    {"null", SCHEMA_T_NULL},       {"boolean", SCHEMA_T_BOOLEAN}, {"object", SCHEMA_T_OBJECT},
    {"array", SCHEMA_T_ARRAY},     {"number", SCHEMA_T_NUMBER},   {"string", SCHEMA_T_STRING},
    {"integer", SCHEMA_T_INTEGER},
};

const char *schema_type_name(unsigned bit)
{
    for (size_t i = 0; i < SCHEMA_TYPE_KINDS; i++) {
        if (type_names[i].bit == bit) {
            return type_names[i].name;
        }
    }
    return "?";
}

static int add_type(struct compiler *c, struct schema_node *n, json_t *name, const char *pointer)
{
    if (!json_is_string(name)) {
        return fail(c, pointer, "type must be a string or an array of strings");
    }
    for (size_t i = 0; i < SCHEMA_TYPE_KINDS; i++) {
        if (strcmp(json_string_value(name), type_names[i].name) == 0) {
            if (n->types & type_names[i].bit) {
                return fail(c, pointer, "type lists \"%s\" twice", type_names[i].name);
            }
            n->types |= type_names[i].bit;
            n->type_order[n->ntypes++] = type_names[i].bit;
            return 0;
        }
    }
    return fail(c, pointer, "unknown type \"%s\"", json_string_value(name));
}

static int compile_type(struct compiler *c, struct schema_node *n, json_t *v)
{
    if (json_is_array(v)) {
        if (json_array_size(v) == 0) {
            return fail(c, n->pointer, "type must list at least one type");
        }
        size_t i;
        json_t *t;
        json_array_foreach(v, i, t)
        {
            if (add_type(c, n, t, n->pointer) < 0) {
                return -1;
            }
        }
        return 0;
    }
    return add_type(c, n, v, n->pointer);
}

static int compile_count(struct compiler *c, struct schema_node *n, const char *key, json_t *v, long long *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return fail(c, n->pointer, "%s must be a non-negative integer", key);
    }
    *out = json_integer_value(v);
    return 0;
}

static int compile_properties(struct compiler *c, struct schema_node *n, json_t *v, int depth)
{
    if (!json_is_object(v)) {
        return fail(c, n->pointer, "properties must be an object");
    }
    char *base = pointer_append(n->pointer, "properties", strlen("properties"));
    if (!base) {
        return fail(c, n->pointer, "out of memory");
    }
    n->props = calloc(json_object_size(v) ? json_object_size(v) : 1, sizeof *n->props);
    if (!n->props) {
        free(base);
        return fail(c, n->pointer, "out of memory");
    }
    const char *key;
    size_t key_len;
    json_t *sub;
    json_object_keylen_foreach(v, key, key_len, sub)
    {
        struct schema_node *child = compile_child(c, base, key, key_len, sub, depth);
        if (!child) {
            free(base);
            return -1;
        }
        n->props[n->nprops++] = (struct schema_prop){.name = key, .name_len = key_len, .schema = child};
    }
    free(base);
    return 0;
}

static int compile_required(struct compiler *c, struct schema_node *n, json_t *v)
{
    if (!json_is_array(v)) {
        return fail(c, n->pointer, "required must be an array of strings");
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *name = json_array_get(v, i);
        if (!json_is_string(name)) {
            return fail(c, n->pointer, "required must be an array of strings");
        }
        for (size_t j = 0; j < i; j++) {
            if (json_equal(name, json_array_get(v, j))) {
                return fail(c, n->pointer, "required lists \"%s\" twice", json_string_value(name));
            }
        }
    }
    n->required = v;
    return 0;
}

static int compile_any_of(struct compiler *c, struct schema_node *n, json_t *v, int depth)
{
    if (!json_is_array(v) || json_array_size(v) == 0) {
        return fail(c, n->pointer, "anyOf must be a non-empty array of schemas");
    }
    char *base = pointer_append(n->pointer, "anyOf", strlen("anyOf"));
    n->any_of = calloc(json_array_size(v), sizeof *n->any_of);
    if (!base || !n->any_of) {
        free(base);
        return fail(c, n->pointer, "out of memory");
    }
    size_t i;
    json_t *branch;
    json_array_foreach(v, i, branch)
    {
        char index[24];
        int len = snprintf(index, sizeof index, "%zu", i);
        struct schema_node *child = compile_child(c, base, index, (size_t)len, branch, depth);
        if (!child) {
            free(base);
            return -1;
        }
        n->any_of[n->nany_of++] = child;
    }
    free(base);
    return 0;
}

/* Decodes one fragment token: percent-escapes (it is part of a URI), then
 * ~1 and ~0 (RFC 6901).  Caller frees; NULL when malformed. */
static char *decode_ref_token(const char *s, size_t *out_len)
{
    size_t len = strlen(s);
    char *pct = malloc(len + 1), *out = malloc(len + 1);
    if (!pct || !out) {
        free(pct);
        free(out);
        return NULL;
    }
    size_t p = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2])) {
                goto bad;
            }
            char hex[3] = {s[i + 1], s[i + 2], '\0'};
            pct[p++] = (char)strtoul(hex, NULL, 16);
            i += 2;
        } else {
            pct[p++] = s[i];
        }
    }
    size_t o = 0;
    for (size_t i = 0; i < p; i++) {
        if (pct[i] == '~') {
            if (i + 1 < p && pct[i + 1] == '0') {
                out[o++] = '~';
            } else if (i + 1 < p && pct[i + 1] == '1') {
                out[o++] = '/';
            } else {
                goto bad;
            }
            i++;
        } else {
            out[o++] = pct[i];
        }
    }
    out[o] = '\0';
    free(pct);
    *out_len = o;
    return out;
bad:
    free(pct);
    free(out);
    return NULL;
}

static int compile_ref(struct compiler *c, struct schema_node *n, json_t *v)
{
    if (!json_is_string(v)) {
        return fail(c, n->pointer, "$ref must be a string");
    }
    const char *ref = json_string_value(v);
    if (strcmp(ref, "#") == 0) {
        n->ref = c->s->root;
        return 0;
    }
    const char *section = NULL, *rest = NULL;
    if (strncmp(ref, "#/$defs/", 8) == 0) {
        section = "$defs";
        rest = ref + 8;
    } else if (strncmp(ref, "#/definitions/", 14) == 0) {
        section = "definitions";
        rest = ref + 14;
    }
    if (!section || strchr(rest, '/')) {
        return fail(c, n->pointer, "$ref \"%s\" is not supported: only \"#\", \"#/$defs/Name\" and \"#/definitions/Name\"",
                    ref);
    }
    size_t name_len;
    char *name = decode_ref_token(rest, &name_len);
    if (!name) {
        return fail(c, n->pointer, "$ref \"%s\" is not a well-formed JSON pointer", ref);
    }
    for (size_t i = 0; i < c->ndefs; i++) {
        const struct definition *d = &c->defs[i];
        if (strcmp(d->section, section) == 0 && d->name_len == name_len && memcmp(d->name, name, name_len) == 0) {
            n->ref = d->node;
            free(name);
            return 0;
        }
    }
    free(name);
    return fail(c, n->pointer, "$ref \"%s\" names no definition in /%s", ref, section);
}

static int is_annotation(const char *key)
{
    return strcmp(key, "title") == 0 || strcmp(key, "description") == 0 || strcmp(key, "default") == 0 ||
           strcmp(key, "examples") == 0 || strcmp(key, "$comment") == 0;
}

static int compile_node(struct compiler *c, struct schema_node *n, json_t *doc, int depth)
{
    if (depth > SCHEMA_MAX_DEPTH) {
        return fail(c, n->pointer, "schema nested deeper than %d levels", SCHEMA_MAX_DEPTH);
    }
    if (json_is_boolean(doc)) {
        n->always_false = json_is_false(doc);
        return 0;
    }
    if (!json_is_object(doc)) {
        return fail(c, n->pointer, "a schema must be an object or a boolean");
    }
    int is_root = n == c->s->root;
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v)
    {
        int rc = 0;
        if (strcmp(key, "type") == 0) {
            rc = compile_type(c, n, v);
        } else if (strcmp(key, "properties") == 0) {
            rc = compile_properties(c, n, v, depth);
        } else if (strcmp(key, "required") == 0) {
            rc = compile_required(c, n, v);
        } else if (strcmp(key, "additionalProperties") == 0) {
            if (json_is_boolean(v)) {
                n->additional = json_is_true(v) ? SCHEMA_ADDL_TRUE : SCHEMA_ADDL_FALSE;
            } else {
                n->additional = SCHEMA_ADDL_SCHEMA;
                n->additional_schema = compile_child(c, n->pointer, key, strlen(key), v, depth);
                rc = n->additional_schema ? 0 : -1;
            }
        } else if (strcmp(key, "items") == 0) {
            if (json_is_array(v)) {
                rc = fail(c, n->pointer, "items must be a single schema (the array form is not supported)");
            } else {
                n->items = compile_child(c, n->pointer, key, strlen(key), v, depth);
                rc = n->items ? 0 : -1;
            }
        } else if (strcmp(key, "anyOf") == 0) {
            rc = compile_any_of(c, n, v, depth);
        } else if (strcmp(key, "enum") == 0) {
            if (!json_is_array(v) || json_array_size(v) == 0) {
                rc = fail(c, n->pointer, "enum must be a non-empty array");
            }
            n->enum_values = v;
        } else if (strcmp(key, "$ref") == 0) {
            rc = compile_ref(c, n, v);
        } else if (strcmp(key, "minItems") == 0) {
            rc = compile_count(c, n, key, v, &n->min_items);
        } else if (strcmp(key, "maxItems") == 0) {
            rc = compile_count(c, n, key, v, &n->max_items);
        } else if (strcmp(key, "minLength") == 0) {
            rc = compile_count(c, n, key, v, &n->min_length);
        } else if (strcmp(key, "maxLength") == 0) {
            rc = compile_count(c, n, key, v, &n->max_length);
        } else if (strcmp(key, "title") == 0 || strcmp(key, "description") == 0 || strcmp(key, "$comment") == 0) {
            if (!json_is_string(v)) {
                rc = fail(c, n->pointer, "%s must be a string", key);
            }
        } else if (strcmp(key, "default") == 0) {
            n->default_value = v;
        } else if (strcmp(key, "examples") == 0) {
            /* An annotation: nothing to check it against. */
        } else if (is_root && (strcmp(key, "$defs") == 0 || strcmp(key, "definitions") == 0)) {
            /* Compiled up front by schema_compile so $refs can point at them. */
        } else if (is_root && strcmp(key, "$schema") == 0) {
            if (!json_is_string(v)) {
                rc = fail(c, n->pointer, "$schema must be a string");
            }
        } else if (strcmp(key, "$defs") == 0 || strcmp(key, "definitions") == 0) {
            rc = fail(c, n->pointer, "%s is only supported at the document root", key);
        } else {
            rc = fail(c, n->pointer, "unsupported keyword \"%s\"", key);
        }
        if (rc < 0) {
            return -1;
        }
    }
    if (n->ref) {
        /* A $ref with sibling constraints would need an allOf-like merge in
         * normalize and the strict transform; pydantic never writes one. */
        json_object_foreach(doc, key, v)
        {
            if (strcmp(key, "$ref") != 0 && !is_annotation(key) &&
                !(is_root && (strcmp(key, "$defs") == 0 || strcmp(key, "definitions") == 0 ||
                              strcmp(key, "$schema") == 0))) {
                return fail(c, n->pointer, "\"%s\" alongside $ref is not supported", key);
            }
        }
    }
    if (n->required) {
        for (size_t i = 0; i < n->nprops; i++) {
            size_t j;
            json_t *name;
            json_array_foreach(n->required, j, name)
            {
                if (json_string_length(name) == n->props[i].name_len &&
                    memcmp(json_string_value(name), n->props[i].name, n->props[i].name_len) == 0) {
                    n->props[i].required = 1;
                }
            }
        }
    }
    return 0;
}

/* A cycle through $ref and anyOf alone would make validation loop on one
 * value forever; cycles through properties or items are fine (the instance
 * is finite), so only those two edges are followed. */
static int check_cycles(struct compiler *c, struct schema_node *n, int depth)
{
    if (n->visit == 2) {
        return 0;
    }
    if (n->visit == 1) {
        return fail(c, n->pointer, "$ref cycle: the schema refers back to itself without going through properties or items");
    }
    if (depth > SCHEMA_MAX_DEPTH) {
        return fail(c, n->pointer, "$ref and anyOf chained deeper than %d levels", SCHEMA_MAX_DEPTH);
    }
    n->visit = 1;
    if (n->ref && check_cycles(c, n->ref, depth + 1) < 0) {
        return -1;
    }
    for (size_t i = 0; i < n->nany_of; i++) {
        if (check_cycles(c, n->any_of[i], depth + 1) < 0) {
            return -1;
        }
    }
    n->visit = 2;
    return 0;
}

static int collect_definitions(struct compiler *c, json_t *doc, const char *section)
{
    json_t *defs = json_object_get(doc, section);
    if (!defs) {
        return 0;
    }
    char *base = pointer_append("", section, strlen(section));
    if (!base) {
        return fail(c, "", "out of memory");
    }
    if (!json_is_object(defs)) {
        fail(c, base, "must be an object of schemas");
        free(base);
        return -1;
    }
    struct definition *grown = realloc(c->defs, (c->ndefs + json_object_size(defs) + 1) * sizeof *grown);
    if (!grown) {
        free(base);
        return fail(c, "", "out of memory");
    }
    c->defs = grown;
    const char *key;
    size_t key_len;
    json_t *sub;
    json_object_keylen_foreach(defs, key, key_len, sub)
    {
        char *pointer = pointer_append(base, key, key_len);
        struct schema_node *n = pointer ? new_node(c, sub, pointer) : NULL;
        free(pointer);
        if (!n) {
            free(base);
            return fail(c, "", "out of memory");
        }
        c->defs[c->ndefs++] =
            (struct definition){.section = section, .name = key, .name_len = key_len, .doc = sub, .node = n};
    }
    free(base);
    return 0;
}

struct schema *schema_compile(json_t *doc, char *err, size_t errlen)
{
    if (err && errlen) {
        err[0] = '\0';
    }
    struct schema *s = calloc(1, sizeof *s);
    if (!s) {
        if (err && errlen) {
            snprintf(err, errlen, "out of memory");
        }
        return NULL;
    }
    struct compiler c = {.s = s, .err = err, .errlen = errlen};
    if (!doc) {
        fail(&c, "", "no schema document");
        goto failed;
    }
    s->doc = json_incref(doc);
    s->root = new_node(&c, doc, "");
    if (!s->root) {
        fail(&c, "", "out of memory");
        goto failed;
    }
    /* Definitions get their nodes before anything is compiled, so a $ref can
     * point at one that comes later, or at its own ancestor. */
    if (json_is_object(doc) &&
        (collect_definitions(&c, doc, "$defs") < 0 || collect_definitions(&c, doc, "definitions") < 0)) {
        goto failed;
    }
    size_t ndefs = c.ndefs;
    for (size_t i = 0; i < ndefs; i++) {
        if (compile_node(&c, c.defs[i].node, c.defs[i].doc, 1) < 0) {
            goto failed;
        }
    }
    if (compile_node(&c, s->root, doc, 0) < 0) {
        goto failed;
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        if (check_cycles(&c, s->nodes[i], 0) < 0) {
            goto failed;
        }
    }
    free(c.defs);
    return s;
failed:
    free(c.defs);
    schema_free(s);
    return NULL;
}

void schema_free(struct schema *s)
{
    if (!s) {
        return;
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        struct schema_node *n = s->nodes[i];
        free(n->pointer);
        free(n->props);
        free(n->any_of);
        free(n);
    }
    free(s->nodes);
    json_decref(s->doc);
    free(s);
}

json_t *schema_document(const struct schema *s)
{
    return s ? s->doc : NULL;
}

const struct schema_node *schema_resolve(const struct schema_node *n)
{
    /* Cycles of pure $refs were refused at compile time. */
    while (n->ref) {
        n = n->ref;
    }
    return n;
}
