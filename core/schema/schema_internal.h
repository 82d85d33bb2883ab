/* The compiled form of a schema, shared by the compiler, the validator and the
 * transforms.  Not for use outside core/schema/. */
#ifndef GTM_SCHEMA_INTERNAL_H
#define GTM_SCHEMA_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "schema/schema.h"

/* Instances and schemas nested deeper than this are refused rather than
 * followed: recursion stays bounded whatever an LLM or a schema file holds. */
#define SCHEMA_MAX_DEPTH 128

enum schema_type {
    SCHEMA_T_NULL = 1u << 0,
    SCHEMA_T_BOOLEAN = 1u << 1,
    SCHEMA_T_OBJECT = 1u << 2,
    SCHEMA_T_ARRAY = 1u << 3,
    SCHEMA_T_NUMBER = 1u << 4,
    SCHEMA_T_STRING = 1u << 5,
    SCHEMA_T_INTEGER = 1u << 6,
};
#define SCHEMA_TYPE_KINDS 7

enum schema_additional {
    SCHEMA_ADDL_ABSENT, /* allowed by validation, dropped by normalize */
    SCHEMA_ADDL_TRUE,
    SCHEMA_ADDL_FALSE,
    SCHEMA_ADDL_SCHEMA,
};

struct schema_node;

struct schema_prop {
    const char *name; /* borrowed from the document */
    size_t name_len;
    struct schema_node *schema;
    int required;
};

struct schema_node {
    json_t *doc;           /* this subschema's JSON, borrowed from the document */
    char *pointer;         /* its JSON pointer in the document, for messages */
    int always_false;      /* the boolean schema false */
    unsigned types;        /* bitmask of enum schema_type; 0 = any type */
    unsigned type_order[SCHEMA_TYPE_KINDS]; /* as listed, for messages */
    size_t ntypes;
    struct schema_node *ref; /* $ref target; a $ref node carries only annotations */
    struct schema_prop *props;
    size_t nprops;
    json_t *required;      /* the required array, borrowed; NULL when absent */
    enum schema_additional additional;
    struct schema_node *additional_schema;
    struct schema_node *items;
    struct schema_node **any_of;
    size_t nany_of;
    json_t *enum_values;   /* borrowed; NULL when absent */
    long long min_items, max_items, min_length, max_length; /* -1 when absent */
    json_t *default_value; /* borrowed; NULL when absent */
    int visit;             /* scratch for compile-time cycle checks */
};

struct schema {
    json_t *doc;
    struct schema_node *root;
    struct schema_node **nodes; /* every node, owned, for schema_free */
    size_t nnodes, cap;
};

/* The node a $ref chain ends at. */
const struct schema_node *schema_resolve(const struct schema_node *n);

/* 1 when instance satisfies n (no messages, stops at the first error). */
int schema_node_accepts(const struct schema_node *n, json_t *instance);

/* The JSON Schema type name of an instance: "integer" is never returned, a
 * number is a number. */
const char *schema_instance_type_name(const json_t *v);
unsigned schema_instance_type_bit(const json_t *v);
int schema_type_allows(unsigned types, const json_t *v);
const char *schema_type_name(unsigned bit);

#endif
