/* What the pipeline does with a schema besides validating: normalizing an
 * answer the way pydantic would emit it, and rewriting the schema into the
 * subset OpenAI's strict mode accepts. */
#include <string.h>

#include "schema/schema_internal.h"

static json_t *normalize_node(const struct schema_node *n, json_t *v, int depth);

static const struct schema_prop *find_prop(const struct schema_node *n, const char *key, size_t key_len)
{
    for (size_t i = 0; i < n->nprops; i++) {
        if (n->props[i].name_len == key_len && memcmp(n->props[i].name, key, key_len) == 0) {
            return &n->props[i];
        }
    }
    return NULL;
}

/* The default of a property: the nearest one along its $ref chain, so a
 * property's own default wins over its definition's.  New reference. */
static json_t *default_for(const struct schema_node *n)
{
    for (; n; n = n->ref) {
        if (n->default_value) {
            return json_deep_copy(n->default_value);
        }
    }
    return json_null();
}

static int has_object_shape(const struct schema_node *n)
{
    return n->nprops || n->additional != SCHEMA_ADDL_ABSENT || (n->types & SCHEMA_T_OBJECT);
}

static json_t *normalize_object(const struct schema_node *n, json_t *v, int depth)
{
    json_t *out = json_object();
    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < n->nprops; i++) {
        const struct schema_prop *prop = &n->props[i];
        json_t *value = json_object_getn(v, prop->name, prop->name_len);
        json_t *normalized;
        if (value) {
            normalized = normalize_node(prop->schema, value, depth + 1);
        } else if (!prop->required) {
            normalized = default_for(prop->schema);
        } else {
            continue; /* invalid instance: nothing sensible to fill in */
        }
        if (!normalized || json_object_setn_new_nocheck(out, prop->name, prop->name_len, normalized) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    if (n->additional != SCHEMA_ADDL_TRUE && n->additional != SCHEMA_ADDL_SCHEMA) {
        return out; /* unknown keys are dropped, as pydantic ignores extras */
    }
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach(v, key, key_len, value)
    {
        if (find_prop(n, key, key_len)) {
            continue;
        }
        json_t *normalized = n->additional == SCHEMA_ADDL_SCHEMA ? normalize_node(n->additional_schema, value, depth + 1)
                                                                 : json_deep_copy(value);
        if (!normalized || json_object_setn_new_nocheck(out, key, key_len, normalized) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static json_t *normalize_array(const struct schema_node *n, json_t *v, int depth)
{
    json_t *out = json_array();
    if (!out) {
        return NULL;
    }
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        json_t *normalized = normalize_node(n->items, item, depth + 1);
        if (!normalized || json_array_append_new(out, normalized) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* New reference; NULL only when out of memory. */
static json_t *normalize_node(const struct schema_node *n, json_t *v, int depth)
{
    if (depth > SCHEMA_MAX_DEPTH) {
        return json_deep_copy(v);
    }
    n = schema_resolve(n);
    if (json_is_object(v) && has_object_shape(n)) {
        return normalize_object(n, v, depth);
    }
    if (json_is_array(v) && n->items) {
        return normalize_array(n, v, depth);
    }
    for (size_t i = 0; i < n->nany_of; i++) {
        if (schema_node_accepts(n->any_of[i], v)) {
            return normalize_node(n->any_of[i], v, depth);
        }
    }
    return json_deep_copy(v);
}

json_t *schema_normalize(const struct schema *s, json_t *instance)
{
    if (!s || !instance) {
        return NULL;
    }
    return normalize_node(s->root, instance, 0);
}

/* OpenAI strict mode. */

struct strict {
    const struct schema_node *expanding[SCHEMA_MAX_DEPTH + 2];
    int nexpanding;
};

static json_t *strict_node(struct strict *st, const struct schema_node *n, int depth);

static int json_allows_null(const json_t *schema)
{
    const json_t *type = json_object_get(schema, "type");
    if (json_is_string(type) && strcmp(json_string_value(type), "null") == 0) {
        return 1;
    }
    size_t i;
    json_t *item;
    json_array_foreach(type, i, item)
    {
        if (json_is_string(item) && strcmp(json_string_value(item), "null") == 0) {
            return 1;
        }
    }
    json_array_foreach(json_object_get(schema, "anyOf"), i, item)
    {
        if (json_allows_null(item)) {
            return 1;
        }
    }
    json_array_foreach(json_object_get(schema, "enum"), i, item)
    {
        if (json_is_null(item)) {
            return 1;
        }
    }
    return 0;
}

/* anyOf [schema, null], with the annotations moved to the outside where a
 * reader looks for them.  Takes schema. */
static json_t *wrap_nullable(json_t *schema)
{
    json_t *wrapper = json_object();
    json_t *null_schema = json_pack("{s:s}", "type", "null");
    json_t *branches = json_array();
    if (!wrapper || !null_schema || !branches) {
        goto failed;
    }
    static const char *const moved[] = {"title", "description"};
    for (size_t i = 0; i < sizeof moved / sizeof *moved; i++) {
        json_t *annotation = json_object_get(schema, moved[i]);
        if (annotation) {
            if (json_object_set(wrapper, moved[i], annotation) < 0) {
                goto failed;
            }
            json_object_del(schema, moved[i]);
        }
    }
    if (json_array_append_new(branches, schema) < 0) {
        schema = NULL;
        goto failed;
    }
    schema = NULL;
    if (json_array_append_new(branches, null_schema) < 0) {
        null_schema = NULL;
        goto failed;
    }
    null_schema = NULL;
    if (json_object_set_new(wrapper, "anyOf", branches) < 0) {
        branches = NULL;
        goto failed;
    }
    return wrapper;
failed:
    json_decref(schema);
    json_decref(null_schema);
    json_decref(branches);
    json_decref(wrapper);
    return NULL;
}

static int strict_object(struct strict *st, const struct schema_node *n, json_t *out, int depth)
{
    if (n->additional == SCHEMA_ADDL_TRUE || n->additional == SCHEMA_ADDL_SCHEMA) {
        return -1; /* open objects have no strict form */
    }
    /* A required name missing from properties could never be produced once
     * additionalProperties is false. */
    size_t i;
    json_t *name;
    json_array_foreach(n->required, i, name)
    {
        if (!find_prop(n, json_string_value(name), json_string_length(name))) {
            return -1;
        }
    }
    if (!n->types && json_object_set_new(out, "type", json_string("object")) < 0) {
        return -1;
    }
    /* set_new takes each container (and releases it on failure). */
    json_t *properties = json_object();
    if (json_object_set_new(out, "properties", properties) < 0) {
        return -1;
    }
    json_t *required = json_array();
    if (json_object_set_new(out, "required", required) < 0) {
        return -1;
    }
    for (i = 0; i < n->nprops; i++) {
        const struct schema_prop *prop = &n->props[i];
        json_t *sub = strict_node(st, prop->schema, depth + 1);
        if (sub && !prop->required && !json_allows_null(sub)) {
            sub = wrap_nullable(sub);
        }
        if (!sub || json_object_setn_new_nocheck(properties, prop->name, prop->name_len, sub) < 0 ||
            json_array_append_new(required, json_stringn_nocheck(prop->name, prop->name_len)) < 0) {
            return -1;
        }
    }
    return json_object_set_new(out, "additionalProperties", json_false());
}

/* title and description along a $ref chain, the referring end winning: a
 * property's description says more than its definition's. */
static int copy_annotations(const struct schema_node *from, json_t *out)
{
    static const char *const kept[] = {"title", "description"};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        json_t *annotation = NULL;
        for (const struct schema_node *n = from; n; n = n->ref) {
            if (json_is_object(n->doc) && (annotation = json_object_get(n->doc, kept[i]))) {
                break;
            }
        }
        if (annotation && json_object_set(out, kept[i], annotation) < 0) {
            return -1;
        }
    }
    return 0;
}

static int strict_body(struct strict *st, const struct schema_node *n, json_t *out, int depth)
{
    if (n->always_false || (!n->types && !n->enum_values && !n->nany_of && !n->nprops)) {
        return -1; /* "nothing" and "anything" have no strict form */
    }
    if (n->ntypes == 1) {
        if (json_object_set_new(out, "type", json_string(schema_type_name(n->type_order[0]))) < 0) {
            return -1;
        }
    } else if (n->ntypes > 1) {
        json_t *types = json_array();
        if (!types || json_object_set_new(out, "type", types) < 0) {
            return -1;
        }
        for (size_t i = 0; i < n->ntypes; i++) {
            if (json_array_append_new(types, json_string(schema_type_name(n->type_order[i]))) < 0) {
                return -1;
            }
        }
    }
    if (n->enum_values && json_object_set_new(out, "enum", json_deep_copy(n->enum_values)) < 0) {
        return -1;
    }
    if (n->nany_of) {
        json_t *branches = json_array();
        if (!branches || json_object_set_new(out, "anyOf", branches) < 0) {
            return -1;
        }
        for (size_t i = 0; i < n->nany_of; i++) {
            json_t *branch = strict_node(st, n->any_of[i], depth + 1);
            if (!branch || json_array_append_new(branches, branch) < 0) {
                return -1;
            }
        }
    }
    if ((n->types & SCHEMA_T_ARRAY) || n->items) {
        json_t *items = n->items ? strict_node(st, n->items, depth + 1) : NULL;
        if (!items || json_object_set_new(out, "items", items) < 0) {
            return -1; /* an array of anything has no strict form either */
        }
        if (n->min_items >= 0 && json_object_set_new(out, "minItems", json_integer(n->min_items)) < 0) {
            return -1;
        }
        if (n->max_items >= 0 && json_object_set_new(out, "maxItems", json_integer(n->max_items)) < 0) {
            return -1;
        }
    }
    /* minLength and maxLength are not in OpenAI's supported subset: dropped
     * here, still enforced by schema_validate on the answer. */
    if (has_object_shape(n) && strict_object(st, n, out, depth) < 0) {
        return -1;
    }
    return 0;
}

/* New reference, or NULL when n has no strict form (or memory ran out). */
static json_t *strict_node(struct strict *st, const struct schema_node *n, int depth)
{
    const struct schema_node *target = schema_resolve(n);
    if (depth > SCHEMA_MAX_DEPTH || st->nexpanding > SCHEMA_MAX_DEPTH) {
        return NULL;
    }
    for (int i = 0; i < st->nexpanding; i++) {
        if (st->expanding[i] == target) {
            return NULL; /* a recursive $ref cannot be inlined */
        }
    }
    json_t *out = json_object();
    if (!out) {
        return NULL;
    }
    st->expanding[st->nexpanding++] = target;
    int rc = copy_annotations(n, out) < 0 ? -1 : strict_body(st, target, out, depth);
    st->nexpanding--;
    if (rc < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *schema_openai_strict(const struct schema *s)
{
    if (!s) {
        return NULL;
    }
    const struct schema_node *root = schema_resolve(s->root);
    /* OpenAI wants an object at the root, not a union. */
    if (root->types != SCHEMA_T_OBJECT && !(root->types == 0 && root->nprops && !root->nany_of)) {
        return NULL;
    }
    struct strict st = {.nexpanding = 0};
    return strict_node(&st, s->root, 0);
}
