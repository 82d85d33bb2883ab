/* JSON Schema, the subset the generation outputs use (upstream-schemas/ and
 * prompts/<task>.schema.json): type (string, integer, number, boolean, array,
 * object, null, or a list of them), properties, required, items, anyOf, enum,
 * $ref to #/$defs/Name (also #/definitions/Name and #; nothing else beside a
 * $ref but annotations), additionalProperties (true, false or a schema),
 * minItems, maxItems, minLength, maxLength (in code points); title,
 * description, default, examples and $comment are read but not enforced.  Any other keyword is refused at compile time, so a
 * schema never silently means less than it says. */
#ifndef GTM_SCHEMA_H
#define GTM_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

struct schema;

/* Compiles doc (borrowed; the schema keeps its own reference).  NULL with a
 * one-line reason naming the JSON pointer of the offending part. */
struct schema *schema_compile(json_t *doc, char *err, size_t errlen);
void schema_free(struct schema *s);
/* The document it was compiled from (borrowed). */
json_t *schema_document(const struct schema *s);

/* Validates instance.  Returns the number of errors (0 = valid).  When errors
 * is not NULL it receives a new JSON array of at most max_errors entries
 * {"path": "/buying_signals/0/priority", "message": "\"Urgent\" is not one of
 * \"Low\", \"Medium\", \"High\""}, in document order, phrased so an LLM asked to
 * repair its answer understands them.  Validation stops once max_errors
 * errors are found (the count is then max_errors); max_errors 0 stops at the
 * first and stores none, for a plain valid/invalid answer. */
size_t schema_validate(const struct schema *s, json_t *instance, json_t **errors, size_t max_errors);

/* A valid instance as pydantic would emit it: object keys in the order the
 * schema's properties list them, keys the schema does not know dropped
 * (unless additionalProperties allows them), missing optional properties
 * filled with their default (null when none is given).  New reference. */
json_t *schema_normalize(const struct schema *s, json_t *instance);

/* The schema rewritten for OpenAI's strict json_schema mode: every object
 * lists all its properties in required and has additionalProperties false
 * (optional ones become anyOf [..., null]); $refs inlined; title and
 * description kept, default, examples, minLength and maxLength dropped (not
 * in OpenAI's subset; schema_validate still enforces the lengths).  New
 * reference, or NULL when the schema cannot be expressed (open
 * additionalProperties, a value of any type, a recursive $ref, a root that is
 * not an object), in which case callers fall back to json_object mode. */
json_t *schema_openai_strict(const struct schema *s);

#endif
