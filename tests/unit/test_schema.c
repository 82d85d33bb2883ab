/* The JSON Schema subset: every keyword valid and invalid, the four real
 * upstream schemas with realistic answers, normalize, the OpenAI strict
 * rewrite, compile errors, cycles, limits.  argv[1] is tests/unit/schemas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "schema/schema.h"

static const char *schema_dir = "schemas";

/* Test JSON is written with single quotes so it reads well in C. */
static json_t *sq(const char *text)
{
    char *copy = strdup(text);
    assert_non_null(copy);
    for (char *p = copy; *p; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    json_error_t e;
    json_t *v = json_loads(copy, JSON_DECODE_ANY, &e);
    if (!v) {
        fail_msg("bad test JSON: %s in %s", e.text, copy);
    }
    free(copy);
    return v;
}

static struct schema *compile_sq(const char *text)
{
    json_t *doc = sq(text);
    char err[256];
    struct schema *s = schema_compile(doc, err, sizeof err);
    if (!s) {
        fail_msg("schema did not compile: %s", err);
    }
    json_decref(doc);
    return s;
}

static json_t *load_file(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", schema_dir, name);
    json_error_t e;
    json_t *v = json_load_file(path, 0, &e);
    if (!v) {
        fail_msg("cannot load %s: %s", path, e.text);
    }
    return v;
}

static struct schema *load_schema(const char *task)
{
    char name[256];
    snprintf(name, sizeof name, "%s.schema.json", task);
    json_t *doc = load_file(name);
    char err[256];
    struct schema *s = schema_compile(doc, err, sizeof err);
    if (!s) {
        fail_msg("%s did not compile: %s", name, err);
    }
    json_decref(doc);
    return s;
}

static json_t *load_example(const char *task)
{
    char name[256];
    snprintf(name, sizeof name, "%s.example.json", task);
    return load_file(name);
}

static char *dump(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(text);
    return text;
}

static void expect_valid_json(const struct schema *s, json_t *v)
{
    json_t *errors = NULL;
    size_t n = schema_validate(s, v, &errors, 10);
    if (n != 0) {
        char *text = dump(errors);
        fail_msg("expected valid, got %zu errors: %s", n, text);
    }
    assert_int_equal(json_array_size(errors), 0);
    json_decref(errors);
}

static void expect_valid(const struct schema *s, const char *instance)
{
    json_t *v = sq(instance);
    expect_valid_json(s, v);
    json_decref(v);
}

/* Exactly the errors listed, as path, message pairs, NULL-terminated. */
static void expect_errors_json(const struct schema *s, json_t *v, ...)
{
    json_t *errors = NULL;
    size_t n = schema_validate(s, v, &errors, 50);
    assert_non_null(errors);
    char *got = dump(errors);
    va_list ap;
    va_start(ap, v);
    size_t i = 0;
    for (const char *path; (path = va_arg(ap, const char *)); i++) {
        const char *message = va_arg(ap, const char *);
        json_t *entry = json_array_get(errors, i);
        if (!entry || strcmp(json_string_value(json_object_get(entry, "path")), path) != 0 ||
            strcmp(json_string_value(json_object_get(entry, "message")), message) != 0) {
            fail_msg("error %zu: wanted %s: %s\n  got %s", i, path, message, got);
        }
    }
    va_end(ap);
    if (n != i || json_array_size(errors) != i) {
        fail_msg("wanted %zu errors, got %zu: %s", i, n, got);
    }
    free(got);
    json_decref(errors);
}

static void expect_error(const struct schema *s, const char *instance, const char *path, const char *message)
{
    json_t *v = sq(instance);
    expect_errors_json(s, v, path, message, NULL);
    json_decref(v);
}

static void expect_compile_error(const char *schema_text, const char *reason)
{
    json_t *doc = sq(schema_text);
    char err[256] = "unset";
    struct schema *s = schema_compile(doc, err, sizeof err);
    if (s) {
        fail_msg("compiled, but wanted \"%s\"", reason);
    }
    assert_string_equal(err, reason);
    json_decref(doc);
}

static void expect_normalized_json(const struct schema *s, json_t *v, const char *expected)
{
    json_t *out = schema_normalize(s, v);
    assert_non_null(out);
    json_t *want = sq(expected);
    char *got_text = dump(out), *want_text = dump(want);
    assert_string_equal(got_text, want_text);
    free(got_text);
    free(want_text);
    json_decref(want);
    json_decref(out);
}

static void expect_normalized(const struct schema *s, const char *instance, const char *expected)
{
    json_t *v = sq(instance);
    expect_normalized_json(s, v, expected);
    json_decref(v);
}

/* Sets the value at a JSON pointer of existing containers ("-" appends). */
static void set_at(json_t *doc, const char *pointer, json_t *value)
{
    char *copy = strdup(pointer + 1);
    json_t *parent = doc;
    char *token = copy, *slash;
    while ((slash = strchr(token, '/'))) {
        *slash = '\0';
        parent = json_is_array(parent) ? json_array_get(parent, strtoul(token, NULL, 10))
                                       : json_object_get(parent, token);
        assert_non_null(parent);
        token = slash + 1;
    }
    if (json_is_array(parent)) {
        if (strcmp(token, "-") == 0) {
            assert_int_equal(json_array_append_new(parent, value), 0);
        } else {
            assert_int_equal(json_array_set_new(parent, strtoul(token, NULL, 10), value), 0);
        }
    } else if (value) {
        assert_int_equal(json_object_set_new(parent, token, value), 0);
    } else {
        assert_int_equal(json_object_del(parent, token), 0);
    }
    free(copy);
}

static void remove_at(json_t *doc, const char *pointer)
{
    set_at(doc, pointer, NULL);
}

/* Keywords one by one. */

static void test_types(void **state)
{
    (void)state;
    struct schema *s = compile_sq("{'type':'string'}");
    expect_valid(s, "'x'");
    expect_valid(s, "''");
    expect_error(s, "3", "", "expected string, got number");
    expect_error(s, "null", "", "expected string, got null");
    expect_error(s, "[]", "", "expected string, got array");
    expect_error(s, "{}", "", "expected string, got object");
    expect_error(s, "true", "", "expected string, got boolean");
    schema_free(s);

    s = compile_sq("{'type':'integer'}");
    expect_valid(s, "3");
    expect_valid(s, "-7");
    expect_valid(s, "3.0");
    expect_valid(s, "1e3");
    expect_error(s, "3.5", "", "expected integer, got 3.5");
    expect_error(s, "'3'", "", "expected integer, got string");
    expect_error(s, "true", "", "expected integer, got boolean");
    schema_free(s);

    s = compile_sq("{'type':'number'}");
    expect_valid(s, "3");
    expect_valid(s, "3.25");
    expect_valid(s, "-1e-9");
    expect_error(s, "false", "", "expected number, got boolean");
    expect_error(s, "'1.5'", "", "expected number, got string");
    schema_free(s);

    s = compile_sq("{'type':'boolean'}");
    expect_valid(s, "true");
    expect_valid(s, "false");
    expect_error(s, "0", "", "expected boolean, got number");
    schema_free(s);

    s = compile_sq("{'type':'null'}");
    expect_valid(s, "null");
    expect_error(s, "0", "", "expected null, got number");
    schema_free(s);

    s = compile_sq("{'type':'array'}");
    expect_valid(s, "[1,'a',null]");
    expect_error(s, "{}", "", "expected array, got object");
    schema_free(s);

    s = compile_sq("{'type':'object'}");
    expect_valid(s, "{'a':1}");
    expect_error(s, "[]", "", "expected object, got array");
    schema_free(s);

    s = compile_sq("{'type':['string','null']}");
    expect_valid(s, "'x'");
    expect_valid(s, "null");
    expect_error(s, "1", "", "expected string or null, got number");
    schema_free(s);

    s = compile_sq("{'type':['integer','boolean','null']}");
    expect_valid(s, "2.0");
    expect_valid(s, "true");
    expect_error(s, "2.5", "", "expected integer, boolean or null, got 2.5");
    expect_error(s, "'a'", "", "expected integer, boolean or null, got string");
    schema_free(s);

    /* No type: anything goes; so do the boolean schemas. */
    s = compile_sq("{'description':'anything'}");
    expect_valid(s, "[{'a':[1,2]}]");
    schema_free(s);
    s = compile_sq("true");
    expect_valid(s, "null");
    schema_free(s);
    s = compile_sq("false");
    expect_error(s, "null", "", "no value is allowed here");
    schema_free(s);
}

static void test_properties_required(void **state)
{
    (void)state;
    struct schema *s = compile_sq("{'type':'object','properties':{'name':{'type':'string'},'age':{'type':'integer'}},"
                                  "'required':['name']}");
    expect_valid(s, "{'name':'Ada'}");
    expect_valid(s, "{'name':'Ada','age':36}");
    expect_valid(s, "{'name':'Ada','extra':[1]}"); /* additionalProperties absent: allowed */
    expect_error(s, "{'age':36}", "", "missing required property \"name\"");
    expect_error(s, "{'name':'Ada','age':'36'}", "/age", "expected integer, got string");
    json_t *v = sq("{'age':'x'}");
    expect_errors_json(s, v, "", "missing required property \"name\"", "/age", "expected integer, got string", NULL);
    json_decref(v);
    schema_free(s);

    /* Required names need no properties entry. */
    s = compile_sq("{'required':['a','b']}");
    expect_valid(s, "{'a':1,'b':2}");
    expect_valid(s, "'not an object'");
    v = sq("{}");
    expect_errors_json(s, v, "", "missing required property \"a\"", "", "missing required property \"b\"", NULL);
    json_decref(v);
    schema_free(s);

    /* Keys that need escaping in a JSON pointer, and in a message. */
    s = compile_sq("{'properties':{'a/b':{'type':'string'},'c~d':{'type':'string'}},'required':['say \\'hi\\'']}");
    v = json_pack("{s:i,s:i,s:s}", "a/b", 1, "c~d", 2, "say \"hi\"", "");
    expect_errors_json(s, v, "/a~1b", "expected string, got number", "/c~0d", "expected string, got number", NULL);
    json_decref(v);
    v = json_pack("{}");
    expect_errors_json(s, v, "", "missing required property \"say \\\"hi\\\"\"", NULL);
    json_decref(v);
    schema_free(s);
}

static void test_additional_properties(void **state)
{
    (void)state;
    struct schema *s = compile_sq("{'properties':{'a':{'type':'string'}},'additionalProperties':false}");
    expect_valid(s, "{'a':'x'}");
    expect_error(s, "{'a':'x','b':1}", "/b", "unexpected property \"b\" (allowed: \"a\")");
    schema_free(s);

    s = compile_sq("{'type':'object','additionalProperties':false}");
    expect_valid(s, "{}");
    expect_error(s, "{'b':1}", "/b", "unexpected property \"b\" (no properties are allowed here)");
    schema_free(s);

    s = compile_sq("{'properties':{'a':{'type':'string'}},'additionalProperties':true}");
    expect_valid(s, "{'a':'x','b':[1,{}]}");
    schema_free(s);

    s = compile_sq("{'properties':{'a':{'type':'string'}},'additionalProperties':{'type':'integer'}}");
    expect_valid(s, "{'a':'x','b':1,'c':2}");
    expect_error(s, "{'a':'x','b':1,'c':'2'}", "/c", "expected integer, got string");
    /* Known properties are checked by their own schema only. */
    expect_error(s, "{'a':1}", "/a", "expected string, got number");
    schema_free(s);
}

static void test_items_and_counts(void **state)
{
    (void)state;
    struct schema *s = compile_sq("{'type':'array','items':{'type':'string'},'minItems':1,'maxItems':2}");
    expect_valid(s, "['a']");
    expect_valid(s, "['a','b']");
    expect_error(s, "[]", "", "expected at least 1 item, got 0");
    expect_error(s, "['a','b','c']", "", "expected at most 2 items, got 3");
    expect_error(s, "['a',2]", "/1", "expected string, got number");
    json_t *v = sq("[1,'b',3]");
    expect_errors_json(s, v, "", "expected at most 2 items, got 3", "/0", "expected string, got number", "/2",
                       "expected string, got number", NULL);
    json_decref(v);
    /* Counts apply to arrays only. */
    expect_error(s, "'abc'", "", "expected array of strings, got string");
    schema_free(s);

    s = compile_sq("{'minItems':2}");
    expect_valid(s, "'a string is not an array'");
    expect_error(s, "[1]", "", "expected at least 2 items, got 1");
    schema_free(s);

    s = compile_sq("{'type':'string','minLength':2,'maxLength':4}");
    expect_valid(s, "'ab'");
    expect_valid(s, "'abcd'");
    expect_error(s, "'a'", "", "expected at least 2 characters, got 1");
    expect_error(s, "'abcde'", "", "expected at most 4 characters, got 5");
    /* Code points, not bytes: 4 characters in 9 bytes, 5 in 11. */
    expect_valid(s, "'h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80'");
    expect_error(s, "'h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80!'", "", "expected at most 4 characters, got 5");
    schema_free(s);

    s = compile_sq("{'maxLength':1}");
    expect_valid(s, "12345");
    expect_error(s, "'\xc3\xa9\xc3\xa9'", "", "expected at most 1 character, got 2");
    schema_free(s);
}

static void test_enum(void **state)
{
    (void)state;
    struct schema *s = compile_sq("{'type':'string','enum':['Low','Medium','High']}");
    expect_valid(s, "'Medium'");
    expect_error(s, "'Urgent'", "", "\"Urgent\" is not one of \"Low\", \"Medium\", \"High\"");
    expect_error(s, "'low'", "", "\"low\" is not one of \"Low\", \"Medium\", \"High\"");
    expect_error(s, "3", "", "expected string, got number");
    schema_free(s);

    /* Mixed values, numbers compared by value. */
    s = compile_sq("{'enum':[1,'one',null,[1,2],{'a':1}]}");
    expect_valid(s, "1");
    expect_valid(s, "1.0");
    expect_valid(s, "null");
    expect_valid(s, "[1,2.0]");
    expect_valid(s, "{'a':1}");
    expect_error(s, "2", "", "2 is not one of 1, \"one\", null, [1,2], {\"a\":1}");
    expect_error(s, "[2,1]", "", "[2,1] is not one of 1, \"one\", null, [1,2], {\"a\":1}");
    expect_error(s, "false", "", "false is not one of 1, \"one\", null, [1,2], {\"a\":1}");
    schema_free(s);

    /* A long offending value is cut in the message. */
    s = compile_sq("{'enum':['a']}");
    char long_text[300];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    json_t *v = json_string(long_text);
    json_t *errors = NULL;
    assert_int_equal(schema_validate(s, v, &errors, 5), 1);
    const char *message = json_string_value(json_object_get(json_array_get(errors, 0), "message"));
    assert_true(strlen(message) < 120);
    assert_non_null(strstr(message, "\xe2\x80\xa6 is not one of \"a\""));
    json_decref(errors);
    json_decref(v);
    schema_free(s);
}

static void test_any_of(void **state)
{
    (void)state;
    struct schema *s = compile_sq("{'anyOf':[{'type':'array','items':{'type':'string'}},{'type':'null'}]}");
    expect_valid(s, "['a','b']");
    expect_valid(s, "[]");
    expect_valid(s, "null");
    /* The array branch takes arrays: its own error is the useful one. */
    expect_error(s, "['a',2]", "/1", "expected string, got number");
    expect_error(s, "'a'", "", "None of the allowed forms matched: expected array of strings or null, got string");
    expect_error(s, "{}", "", "None of the allowed forms matched: expected array of strings or null, got object");
    schema_free(s);

    /* Two object branches: the one with fewer errors is reported. */
    s = compile_sq("{'anyOf':[{'type':'object','required':['a','b','c']},"
                   "{'type':'object','properties':{'kind':{'enum':['x']}},'required':['kind']}]}");
    expect_valid(s, "{'a':1,'b':2,'c':3}");
    expect_valid(s, "{'kind':'x'}");
    expect_error(s, "{'kind':'y'}", "/kind", "\"y\" is not one of \"x\"");
    schema_free(s);

    /* Branches described for the summary: enums, nested anyOf, untyped. */
    s = compile_sq("{'anyOf':[{'enum':['a','b']},{'anyOf':[{'type':'integer'},{'type':'boolean'}]}]}");
    expect_valid(s, "'b'");
    expect_valid(s, "7");
    expect_valid(s, "false");
    expect_error(s, "'c'", "", "\"c\" is not one of \"a\", \"b\"");
    expect_error(s, "null", "",
                 "None of the allowed forms matched: expected one of \"a\", \"b\" or integer or boolean, got null");
    schema_free(s);

    /* anyOf next to other keywords: both apply. */
    s = compile_sq("{'type':'array','maxItems':1,'anyOf':[{'items':{'type':'string'}},{'items':{'type':'integer'}}]}");
    expect_valid(s, "['a']");
    expect_valid(s, "[1]");
    expect_error(s, "[null]", "/0", "expected string, got null");
    json_t *v = sq("['a','b']");
    expect_errors_json(s, v, "", "expected at most 1 item, got 2", NULL);
    json_decref(v);
    schema_free(s);
}

static void test_refs(void **state)
{
    (void)state;
    struct schema *s = compile_sq("{'$defs':{'Priority':{'type':'string','enum':['Low','High']}},"
                                  "'type':'object','properties':{'p':{'$ref':'#/$defs/Priority','description':'d'}}}");
    expect_valid(s, "{'p':'Low'}");
    expect_error(s, "{'p':'Mid'}", "/p", "\"Mid\" is not one of \"Low\", \"High\"");
    schema_free(s);

    s = compile_sq("{'definitions':{'Name':{'type':'string'}},'type':'array','items':{'$ref':'#/definitions/Name'}}");
    expect_valid(s, "['a']");
    expect_error(s, "[1]", "/0", "expected string, got number");
    schema_free(s);

    /* Chains of refs, a definition referring to a later one, escaped names. */
    s = compile_sq("{'$defs':{'A':{'$ref':'#/$defs/B'},'B':{'$ref':'#/$defs/a~1b%20c'},'a/b c':{'type':'integer'}},"
                   "'$ref':'#/$defs/A'}");
    expect_valid(s, "4");
    expect_error(s, "'4'", "", "expected integer, got string");
    schema_free(s);

    /* A self-referential tree validates finite instances. */
    s = compile_sq("{'$defs':{'Tree':{'type':'object','properties':{'name':{'type':'string'},"
                   "'children':{'type':'array','items':{'$ref':'#/$defs/Tree'}}},'required':['name']}},"
                   "'$ref':'#/$defs/Tree'}");
    expect_valid(s, "{'name':'root','children':[{'name':'a'},{'name':'b','children':[{'name':'c','children':[]}]}]}");
    expect_error(s, "{'name':'root','children':[{'name':'a'},{'name':'b','children':[{'name':3}]}]}",
                 "/children/1/children/0/name", "expected string, got number");
    expect_normalized(s, "{'children':[{'name':'a','x':1}],'name':'root'}",
                      "{'name':'root','children':[{'name':'a','children':null}]}");
    schema_free(s);

    /* "#" is the root, and recursion through items is fine. */
    s = compile_sq("{'type':['array','string'],'items':{'$ref':'#'}}");
    expect_valid(s, "['a',['b',[[]]]]");
    expect_error(s, "['a',['b',[1]]]", "/1/1/0", "expected array or string, got number");
    schema_free(s);
}

static void test_compile_errors(void **state)
{
    (void)state;
    expect_compile_error("{'type':'object','properties':{'x':{'type':'string','pattern':'^a'}}}",
                         "/properties/x: unsupported keyword \"pattern\"");
    expect_compile_error("{'type':'string','format':'email'}", "root: unsupported keyword \"format\"");
    expect_compile_error("{'oneOf':[{'type':'string'}]}", "root: unsupported keyword \"oneOf\"");
    expect_compile_error("{'items':{'allOf':[{'type':'string'}]}}", "/items: unsupported keyword \"allOf\"");
    expect_compile_error("{'anyOf':[{'type':'string'},{'const':1}]}", "/anyOf/1: unsupported keyword \"const\"");
    expect_compile_error("{'additionalProperties':{'minimum':1}}",
                         "/additionalProperties: unsupported keyword \"minimum\"");
    expect_compile_error("{'properties':{'a/b':{'nullable':true}}}", "/properties/a~1b: unsupported keyword \"nullable\"");
    expect_compile_error("{'$defs':{'X':{'type':'string','pattern':'x'}},'type':'string'}",
                         "/$defs/X: unsupported keyword \"pattern\"");
    expect_compile_error("{'$ref':'https://example.com/s.json'}",
                         "root: $ref \"https://example.com/s.json\" is not supported: only \"#\", \"#/$defs/Name\" and "
                         "\"#/definitions/Name\"");
    expect_compile_error("{'$defs':{'A':{'type':'object','properties':{'x':{}}}},'$ref':'#/$defs/A/properties/x'}",
                         "root: $ref \"#/$defs/A/properties/x\" is not supported: only \"#\", \"#/$defs/Name\" and "
                         "\"#/definitions/Name\"");
    expect_compile_error("{'$defs':{},'properties':{'p':{'$ref':'#/$defs/Nope'}}}",
                         "/properties/p: $ref \"#/$defs/Nope\" names no definition in /$defs");
    expect_compile_error("{'$defs':{'A':{}},'items':{'$ref':'#/definitions/A'}}",
                         "/items: $ref \"#/definitions/A\" names no definition in /definitions");
    expect_compile_error("{'$defs':{'A':{}},'$ref':'#/$defs/A~2'}", "root: $ref \"#/$defs/A~2\" is not a well-formed JSON pointer");
    expect_compile_error("{'$defs':{'A':{}},'$ref':'#/$defs/A','type':'string'}",
                         "root: \"type\" alongside $ref is not supported");
    expect_compile_error("{'$ref':5}", "root: $ref must be a string");
    expect_compile_error("{'items':{'$defs':{}}}", "/items: $defs is only supported at the document root");
    expect_compile_error("{'properties':{'s':{'$schema':'x'}}}", "/properties/s: unsupported keyword \"$schema\"");
    expect_compile_error("{'$defs':[]}", "/$defs: must be an object of schemas");
    expect_compile_error("{'type':'str'}", "root: unknown type \"str\"");
    expect_compile_error("{'type':['string','string']}", "root: type lists \"string\" twice");
    expect_compile_error("{'type':[]}", "root: type must list at least one type");
    expect_compile_error("{'type':5}", "root: type must be a string or an array of strings");
    expect_compile_error("{'properties':{'x':5}}", "/properties/x: a schema must be an object or a boolean");
    expect_compile_error("{'properties':[]}", "root: properties must be an object");
    expect_compile_error("{'required':'a'}", "root: required must be an array of strings");
    expect_compile_error("{'required':['a','a']}", "root: required lists \"a\" twice");
    expect_compile_error("{'items':[{'type':'string'}]}",
                         "root: items must be a single schema (the array form is not supported)");
    expect_compile_error("{'anyOf':[]}", "root: anyOf must be a non-empty array of schemas");
    expect_compile_error("{'enum':[]}", "root: enum must be a non-empty array");
    expect_compile_error("{'minItems':-1}", "root: minItems must be a non-negative integer");
    expect_compile_error("{'maxLength':1.5}", "root: maxLength must be a non-negative integer");
    expect_compile_error("{'title':3}", "root: title must be a string");
    expect_compile_error("'string'", "root: a schema must be an object or a boolean");

    /* Cycles that never reach a value are refused, not followed. */
    expect_compile_error("{'$ref':'#'}",
                         "root: $ref cycle: the schema refers back to itself without going through properties or items");
    expect_compile_error("{'$defs':{'A':{'$ref':'#/$defs/B'},'B':{'$ref':'#/$defs/A'}},'$ref':'#/$defs/A'}",
                         "/$defs/A: $ref cycle: the schema refers back to itself without going through properties or "
                         "items");
    expect_compile_error("{'$defs':{'A':{'anyOf':[{'type':'null'},{'$ref':'#/$defs/A'}]}},'type':'string'}",
                         "/$defs/A: $ref cycle: the schema refers back to itself without going through properties or "
                         "items");

    /* Annotations are accepted and change nothing. */
    struct schema *s = compile_sq("{'$schema':'https://json-schema.org/draft/2020-12/schema','title':'T',"
                                  "'description':'D','$comment':'c','examples':[1],'default':2,'type':'integer'}");
    expect_valid(s, "1");
    schema_free(s);

    /* No buffer, or a tiny one: still a clean failure. */
    json_t *doc = sq("{'pattern':'x'}");
    assert_null(schema_compile(doc, NULL, 0));
    char tiny[8];
    assert_null(schema_compile(doc, tiny, sizeof tiny));
    assert_true(strlen(tiny) < sizeof tiny);
    json_decref(doc);
    assert_null(schema_compile(NULL, tiny, sizeof tiny));

    /* The document is kept, and handed back. */
    doc = sq("{'type':'string'}");
    s = schema_compile(doc, NULL, 0);
    assert_non_null(s);
    json_decref(doc);
    assert_string_equal(json_string_value(json_object_get(schema_document(s), "type")), "string");
    schema_free(s);
    schema_free(NULL);
}

static void test_max_errors(void **state)
{
    (void)state;
    struct schema *s = compile_sq("{'type':'array','items':{'type':'string'}}");
    json_t *v = sq("[1,2,3,4,5]");
    json_t *errors = NULL;
    assert_int_equal(schema_validate(s, v, &errors, 2), 2);
    assert_int_equal(json_array_size(errors), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 1), "path")), "/1");
    json_decref(errors);
    assert_int_equal(schema_validate(s, v, &errors, 10), 5);
    assert_int_equal(json_array_size(errors), 5);
    json_decref(errors);
    /* 0: a yes/no answer. */
    assert_int_equal(schema_validate(s, v, &errors, 0), 1);
    assert_int_equal(json_array_size(errors), 0);
    json_decref(errors);
    /* No array wanted. */
    assert_int_equal(schema_validate(s, v, NULL, 3), 3);
    json_decref(v);

    /* The limit holds across anyOf branches too. */
    v = sq("{'a':[1,2,3],'b':[1,2,3]}");
    schema_free(s);
    s = compile_sq("{'additionalProperties':{'anyOf':[{'type':'null'},{'type':'array','items':{'type':'string'}}]}}");
    assert_int_equal(schema_validate(s, v, &errors, 4), 4);
    assert_int_equal(json_array_size(errors), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 3), "path")), "/b/0");
    json_decref(errors);
    json_decref(v);

    /* Missing pieces are errors, not crashes. */
    assert_int_equal(schema_validate(s, NULL, &errors, 5), 1);
    json_decref(errors);
    assert_int_equal(schema_validate(NULL, json_null(), NULL, 5), 1);
    assert_null(schema_normalize(s, NULL));
    assert_null(schema_normalize(NULL, json_null()));
    assert_null(schema_openai_strict(NULL));
    schema_free(s);
}

static json_t *nested_arrays(int depth)
{
    size_t len = (size_t)depth * 2 + 1;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, '[', (size_t)depth);
    memset(text + depth, ']', (size_t)depth);
    text[len - 1] = '\0';
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    free(text);
    assert_non_null(v);
    return v;
}

static void test_deep_nesting(void **state)
{
    (void)state;
    struct schema *s = compile_sq("{'$defs':{'Node':{'type':'array','items':{'$ref':'#/$defs/Node'}}},"
                                  "'$ref':'#/$defs/Node'}");
    json_t *shallow = nested_arrays(50);
    expect_valid_json(s, shallow);
    json_decref(shallow);

    json_t *deep = nested_arrays(1000);
    json_t *errors = NULL;
    assert_int_equal(schema_validate(s, deep, &errors, 10), 1);
    json_t *entry = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(entry, "message")), "value nested deeper than 128 levels");
    assert_int_equal(json_string_length(json_object_get(entry, "path")), 129 * 2);
    json_decref(errors);
    assert_int_equal(schema_validate(s, deep, NULL, 0), 1);

    /* normalize copies what lies past the limit instead of following it. */
    json_t *normalized = schema_normalize(s, deep);
    assert_non_null(normalized);
    assert_true(json_equal(normalized, deep));
    json_decref(normalized);
    json_decref(deep);
    assert_null(schema_openai_strict(s)); /* recursive, and not an object */
    schema_free(s);

    /* The same through anyOf, where each branch is tried. */
    s = compile_sq("{'$defs':{'Node':{'anyOf':[{'type':'null'},{'type':'array','items':{'$ref':'#/$defs/Node'}}]}},"
                   "'$ref':'#/$defs/Node'}");
    deep = nested_arrays(1000);
    assert_int_equal(schema_validate(s, deep, &errors, 10), 1);
    json_decref(errors);
    json_decref(deep);
    schema_free(s);

    /* Overlapping branches would try 2^60 combinations: the step budget
     * stops that, and the value is called invalid with a reason. */
    s = compile_sq("{'$defs':{'N':{'anyOf':[{'type':'array','items':{'$ref':'#/$defs/N'}},"
                   "{'type':'array','items':{'$ref':'#/$defs/N'}}]}},'$ref':'#/$defs/N'}");
    json_t *ambiguous = nested_arrays(60);
    expect_valid_json(s, ambiguous); /* the first branch takes it straight away */
    json_t *innermost = ambiguous;
    while (json_array_size(innermost)) {
        innermost = json_array_get(innermost, 0);
    }
    json_array_append_new(innermost, json_integer(1));
    assert_int_equal(schema_validate(s, ambiguous, &errors, 3), 1);
    entry = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(entry, "path")), "");
    assert_string_equal(json_string_value(json_object_get(entry, "message")),
                        "gave up after 200000 checks: the value is too large or its schema too ambiguous");
    json_decref(errors);
    assert_int_equal(schema_validate(s, ambiguous, &errors, 0), 1);
    json_decref(errors);
    normalized = schema_normalize(s, ambiguous);
    assert_true(json_equal(normalized, ambiguous));
    json_decref(normalized);
    json_decref(ambiguous);
    schema_free(s);

    /* A schema nested too deeply is refused at compile time. */
    size_t depth = 200;
    char *text = malloc(depth * 12 + 32);
    assert_non_null(text);
    size_t o = 0;
    for (size_t i = 0; i < depth; i++) {
        o += (size_t)sprintf(text + o, "{\"items\":");
    }
    o += (size_t)sprintf(text + o, "{}");
    for (size_t i = 0; i < depth; i++) {
        text[o++] = '}';
    }
    text[o] = '\0';
    json_t *doc = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(doc);
    char err[2048];
    assert_null(schema_compile(doc, err, sizeof err));
    assert_non_null(strstr(err, "/items/items/"));
    assert_non_null(strstr(err, ": schema nested deeper than 128 levels"));
    json_decref(doc);
}

/* normalize on small schemas. */

static void test_normalize(void **state)
{
    (void)state;
    struct schema *s = compile_sq(
        "{'type':'object','properties':{'b':{'type':'string'},'a':{'type':'integer','default':7},"
        "'c':{'anyOf':[{'type':'string'},{'type':'null'}]},'d':{'type':'array','items':{'$ref':'#/$defs/Item'}}},"
        "'required':['b'],'$defs':{'Item':{'type':'object','properties':{'y':{'type':'string'},'x':{'type':'string'}},"
        "'required':['x']}}}");
    /* Schema order, defaults (given, or null), unknown keys dropped, nested. */
    expect_normalized(s, "{'zz':1,'d':[{'q':1,'x':'1','y':'2'},{'x':'3'}],'b':'B'}",
                      "{'b':'B','a':7,'c':null,'d':[{'y':'2','x':'1'},{'y':null,'x':'3'}]}");
    expect_normalized(s, "{'c':'C','a':1,'b':'B','d':[]}", "{'b':'B','a':1,'c':'C','d':[]}");
    schema_free(s);

    /* Open objects keep their extras after the known keys, in their order. */
    s = compile_sq("{'properties':{'b':{'type':'string'},'a':{'type':'string'}},'additionalProperties':true}");
    expect_normalized(s, "{'z':{'k':[1]},'a':'A','m':2,'b':'B'}", "{'b':'B','a':'A','z':{'k':[1]},'m':2}");
    schema_free(s);

    /* ...normalized by their schema when there is one. */
    s = compile_sq("{'properties':{'id':{'type':'string'}},'additionalProperties':"
                   "{'type':'object','properties':{'label':{'type':'string'},'color':{'type':'string'}}}}");
    expect_normalized(s, "{'x':{'color':'red','junk':1},'id':'i'}", "{'id':'i','x':{'label':null,'color':'red'}}");
    schema_free(s);

    /* anyOf: the first branch the value matches shapes it. */
    s = compile_sq("{'anyOf':[{'type':'object','properties':{'a':{'type':'integer'}},'required':['a']},"
                   "{'type':'object','properties':{'b':{'type':'integer'},'c':{'default':[1]}},'required':['b']},"
                   "{'type':'null'}]}");
    expect_normalized(s, "{'b':2,'a':1}", "{'a':1}");
    expect_normalized(s, "{'b':2,'x':1}", "{'b':2,'c':[1]}");
    expect_normalized(s, "null", "null");
    expect_normalized(s, "'neither'", "'neither'");
    schema_free(s);

    /* A default on the property wins over one on its definition; defaults are copies. */
    s = compile_sq("{'$defs':{'D':{'type':'array','default':['def']}},'properties':{'p':{'$ref':'#/$defs/D',"
                   "'default':['prop']},'q':{'$ref':'#/$defs/D'}}}");
    json_t *v = sq("{}");
    json_t *out = schema_normalize(s, v);
    char *text = dump(out);
    assert_string_equal(text, "{\"p\":[\"prop\"],\"q\":[\"def\"]}");
    free(text);
    json_array_append_new(json_object_get(out, "q"), json_string("mutated"));
    json_decref(out);
    out = schema_normalize(s, v);
    text = dump(out);
    assert_string_equal(text, "{\"p\":[\"prop\"],\"q\":[\"def\"]}");
    free(text);
    json_decref(out);
    json_decref(v);
    schema_free(s);

    /* The result is a new value: changing it leaves the input alone. */
    s = compile_sq("{'additionalProperties':true}");
    v = sq("{'a':{'b':[1]}}");
    out = schema_normalize(s, v);
    json_array_append_new(json_object_get(json_object_get(out, "a"), "b"), json_integer(2));
    text = dump(v);
    assert_string_equal(text, "{\"a\":{\"b\":[1]}}");
    free(text);
    json_decref(out);
    json_decref(v);
    schema_free(s);
}

/* The four real schemas. */

static void test_product_overview(void **state)
{
    (void)state;
    struct schema *s = load_schema("product_overview");
    json_t *good = load_example("product_overview");
    expect_valid_json(s, good);

    json_t *v = json_deep_copy(good);
    remove_at(v, "/objections");
    expect_errors_json(s, v, "", "missing required property \"objections\"", NULL);
    json_decref(v);

    v = json_deep_copy(good);
    set_at(v, "/capabilities/1", json_integer(42));
    set_at(v, "/positioning_insights", json_string("Leader in close automation"));
    set_at(v, "/metadata", json_array());
    /* In document order: positioning_insights was added last. */
    expect_errors_json(s, v, "/capabilities/1", "expected string, got number", "/metadata", "expected object, got array",
                       "/positioning_insights",
                       "None of the allowed forms matched: expected array of strings or null, got string", NULL);
    json_decref(v);

    /* Extra keys are fine, and normalize drops them. */
    v = json_deep_copy(good);
    set_at(v, "/confidence", json_real(0.9));
    expect_valid_json(s, v);
    expect_normalized_json(
        s, v,
        "{'company_name':'Ledgerly','company_url':'https://ledgerly.example',"
        "'description':'Ledgerly automates month-end close for mid-market finance teams. It reconciles bank feeds, "
        "flags anomalies and prepares audit-ready reports.',"
        "'business_profile_insights':['Category: Finance automation','Business Model: SaaS subscription'],"
        "'capabilities':['Automated bank reconciliation','Anomaly detection on journal entries',"
        "'Audit-ready close reports'],"
        "'use_case_analysis_insights':null,'positioning_insights':null,"
        "'objections':['We already close in Excel','Integration with our ERP looks risky'],"
        "'target_customer_insights':['Target Accounts: Mid-market companies with 2-10 entities'],"
        "'metadata':{'sources_used':['website'],'context_quality':'high',"
        "'assessment_summary':'Clear product pages and pricing.'}}");
    json_decref(v);

    /* metadata is open: strict mode cannot say so. */
    assert_null(schema_openai_strict(s));
    json_decref(good);
    schema_free(s);
}

static void test_target_account(void **state)
{
    (void)state;
    struct schema *s = load_schema("target_account");
    json_t *good = load_example("target_account");
    expect_valid_json(s, good);

    json_t *v = json_deep_copy(good);
    set_at(v, "/buying_signals/0/priority", json_string("Urgent"));
    expect_errors_json(s, v, "/buying_signals/0/priority", "\"Urgent\" is not one of \"Low\", \"Medium\", \"High\"",
                       NULL);
    json_decref(v);

    v = json_deep_copy(good);
    remove_at(v, "/firmographics");
    remove_at(v, "/buying_signals/1/detection_method");
    expect_errors_json(s, v, "", "missing required property \"firmographics\"", "/buying_signals/1",
                       "missing required property \"detection_method\"", NULL);
    json_decref(v);

    /* Wrong types deep inside, through $ref and anyOf. */
    v = json_deep_copy(good);
    set_at(v, "/firmographics/employees", json_integer(500));
    set_at(v, "/firmographics/geography/1", json_integer(5));
    set_at(v, "/metadata/confidence_assessment/recommended_improvements", json_string("More data"));
    set_at(v, "/buying_signals/1/title", json_null());
    expect_errors_json(s, v, "/firmographics/employees",
                       "None of the allowed forms matched: expected string or null, got number",
                       "/firmographics/geography/1", "expected string, got number", "/buying_signals/1/title",
                       "expected string, got null", "/metadata/confidence_assessment/recommended_improvements",
                       "expected array of strings, got string", NULL);
    json_decref(v);

    v = json_deep_copy(good);
    set_at(v, "/buying_signals", json_object());
    expect_errors_json(s, v, "/buying_signals", "expected array of objects, got object", NULL);
    json_decref(v);

    /* Extras anywhere are valid and dropped. */
    v = json_deep_copy(good);
    set_at(v, "/firmographics/notes", json_string("n"));
    set_at(v, "/buying_signals/0/score", json_integer(3));
    set_at(v, "/extra", json_true());
    expect_valid_json(s, v);
    json_t *normalized = schema_normalize(s, v);
    assert_non_null(normalized);
    assert_null(json_object_get(normalized, "extra"));
    assert_null(json_object_get(json_object_get(normalized, "firmographics"), "notes"));
    assert_null(json_object_get(json_array_get(json_object_get(normalized, "buying_signals"), 0), "score"));
    expect_valid_json(s, normalized);
    char *text = dump(json_object_get(normalized, "firmographics"));
    assert_string_equal(text, "{\"industry\":[\"Software Development\",\"Financial Services\"],"
                              "\"employees\":\"200-1000\",\"department_size\":null,\"revenue\":\"$20M-$200M\","
                              "\"geography\":[\"United States\",\"United Kingdom\"],\"business_model\":null,"
                              "\"funding_stage\":[\"Series B\",\"Series C\"],\"company_type\":null,"
                              "\"keywords\":[\"multi-entity\",\"month-end close\",\"intercompany\","
                              "\"audit readiness\"]}");
    free(text);
    json_decref(normalized);
    json_decref(v);
    json_decref(good);
    schema_free(s);
}

static void test_target_persona(void **state)
{
    (void)state;
    struct schema *s = load_schema("target_persona");
    json_t *good = load_example("target_persona");
    expect_valid_json(s, good);

    json_t *v = json_deep_copy(good);
    remove_at(v, "/use_cases/1/capability");
    set_at(v, "/demographics/job_titles", json_string("Controller"));
    set_at(v, "/buying_signals/0/priority", json_string("high"));
    set_at(v, "/goals/-", json_false());
    expect_errors_json(s, v, "/demographics/job_titles", "expected array of strings, got string", "/use_cases/1",
                       "missing required property \"capability\"", "/buying_signals/0/priority",
                       "\"high\" is not one of \"Low\", \"Medium\", \"High\"", "/goals/3",
                       "expected string, got boolean", NULL);
    json_decref(v);

    v = json_deep_copy(good);
    remove_at(v, "/metadata");
    remove_at(v, "/purchase_journey");
    expect_errors_json(s, v, "", "missing required property \"purchase_journey\"", "",
                       "missing required property \"metadata\"", NULL);
    json_decref(v);

    /* Unknown keys inside the open metadata survive normalize. */
    v = json_deep_copy(good);
    set_at(v, "/unknown", json_integer(1));
    json_t *normalized = schema_normalize(s, v);
    assert_null(json_object_get(normalized, "unknown"));
    char *text = dump(json_object_get(normalized, "metadata"));
    assert_string_equal(text, "{\"sources_used\":[\"website\"],\"context_quality\":\"medium\"}");
    free(text);
    json_decref(normalized);
    json_decref(v);

    assert_null(schema_openai_strict(s));
    json_decref(good);
    schema_free(s);
}

static void test_email(void **state)
{
    (void)state;
    struct schema *s = load_schema("email_generation_blossomer");
    json_t *good = load_example("email_generation_blossomer");
    expect_valid_json(s, good);

    json_t *v = json_deep_copy(good);
    set_at(v, "/subjects/alternatives/-", json_string("A third one"));
    expect_errors_json(s, v, "/subjects/alternatives", "expected at most 2 items, got 3", NULL);
    json_decref(v);

    v = json_deep_copy(good);
    json_array_remove(json_object_get(json_object_get(v, "subjects"), "alternatives"), 0);
    expect_errors_json(s, v, "/subjects/alternatives", "expected at least 2 items, got 1", NULL);
    json_decref(v);

    v = json_deep_copy(good);
    set_at(v, "/breakdown/greeting/color", json_integer(5));
    set_at(v, "/breakdown/cta", json_string("The ask"));
    set_at(v, "/email_body/2/type", json_null());
    set_at(v, "/metadata/processing_time_ms", json_real(12.5));
    remove_at(v, "/metadata/confidence");
    expect_errors_json(s, v, "/email_body/2/type", "expected string, got null", "/breakdown/greeting/color",
                       "expected string, got number", "/breakdown/cta", "expected object, got string", "/metadata",
                       "missing required property \"confidence\"", "/metadata/processing_time_ms",
                       "None of the allowed forms matched: expected integer or null, got number", NULL);
    json_decref(v);

    /* 1834.0 is an integer. */
    v = json_deep_copy(good);
    set_at(v, "/metadata/processing_time_ms", json_real(1834.0));
    expect_valid_json(s, v);
    json_decref(v);

    /* breakdown is open: extras kept (normalized by their schema), the
     * rest filled and ordered. */
    v = json_deep_copy(good);
    remove_at(v, "/metadata/processing_time_ms");
    set_at(v, "/metadata/model", json_string("gpt"));
    set_at(v, "/subjects/extra", json_string("x"));
    json_t *normalized = schema_normalize(s, v);
    assert_non_null(normalized);
    char *text = dump(json_object_get(normalized, "metadata"));
    assert_string_equal(text, "{\"generation_id\":\"gen_01J9ZC4B7Q\",\"confidence\":\"high\","
                              "\"personalization_level\":\"medium\",\"processing_time_ms\":null}");
    free(text);
    text = dump(json_object_get(normalized, "subjects"));
    assert_string_equal(text, "{\"primary\":\"Closing the books in 5 days at Northwind\",\"alternatives\":"
                              "[\"Northwind's month-end, minus the spreadsheets\",\"A faster close for your three "
                              "entities\"]}");
    free(text);
    assert_true(json_equal(json_object_get(normalized, "breakdown"), json_object_get(good, "breakdown")));
    expect_valid_json(s, normalized);
    json_decref(normalized);
    json_decref(v);

    /* breakdown is open: no strict form. */
    assert_null(schema_openai_strict(s));
    json_decref(good);
    schema_free(s);
}

/* What OpenAI's strict mode insists on, checked over a whole schema. */
static void check_strict_shape(json_t *schema, const char *where)
{
    assert_true(json_is_object(schema));
    static const char *const banned[] = {"$ref", "$defs", "definitions", "default", "examples", "minLength",
                                         "maxLength"};
    for (size_t i = 0; i < sizeof banned / sizeof *banned; i++) {
        if (json_object_get(schema, banned[i])) {
            fail_msg("%s: %s left in the strict schema", where, banned[i]);
        }
    }
    json_t *any_of = json_object_get(schema, "anyOf");
    if (!json_object_get(schema, "type") && !any_of && !json_object_get(schema, "enum")) {
        fail_msg("%s: no type", where);
    }
    json_t *properties = json_object_get(schema, "properties");
    json_t *type = json_object_get(schema, "type");
    if (json_is_string(type) && strcmp(json_string_value(type), "object") == 0) {
        assert_non_null(properties);
        assert_true(json_is_false(json_object_get(schema, "additionalProperties")));
        json_t *required = json_object_get(schema, "required");
        assert_int_equal(json_array_size(required), json_object_size(properties));
        size_t i = 0;
        const char *key;
        json_t *sub;
        json_object_foreach(properties, key, sub)
        {
            assert_string_equal(json_string_value(json_array_get(required, i++)), key);
            char child[512];
            snprintf(child, sizeof child, "%s/properties/%s", where, key);
            check_strict_shape(sub, child);
        }
    }
    if (json_object_get(schema, "items")) {
        check_strict_shape(json_object_get(schema, "items"), where);
    }
    size_t i;
    json_t *branch;
    json_array_foreach(any_of, i, branch)
    {
        /* No anyOf nested straight inside another's branch: no double wrap. */
        assert_null(json_object_get(branch, "anyOf"));
        check_strict_shape(branch, where);
    }
}

static void test_openai_strict_target_account(void **state)
{
    (void)state;
    struct schema *s = load_schema("target_account");
    json_t *strict = schema_openai_strict(s);
    assert_non_null(strict);
    check_strict_shape(strict, "");

    /* $refs inlined with the property's own description winning. */
    json_t *props = json_object_get(strict, "properties");
    json_t *firmographics = json_object_get(props, "firmographics");
    assert_string_equal(json_string_value(json_object_get(firmographics, "description")), "Clay-ready prospect filters");
    assert_string_equal(json_string_value(json_object_get(firmographics, "title")), "Firmographics");
    json_t *priority = json_object_get(json_object_get(json_object_get(json_object_get(props, "buying_signals"),
                                                                       "items"),
                                                       "properties"),
                                       "priority");
    char *text = dump(priority);
    assert_string_equal(text, "{\"title\":\"PriorityEnum\",\"description\":\"Low|Medium|High\",\"type\":\"string\","
                              "\"enum\":[\"Low\",\"Medium\",\"High\"]}");
    free(text);

    /* Optional fields that already allow null stay as they were (no
     * default); every property is now required. */
    json_t *employees = json_object_get(json_object_get(firmographics, "properties"), "employees");
    text = dump(employees);
    assert_string_equal(text, "{\"title\":\"Employees\",\"description\":\"Exact range (e.g., '50-500')\","
                              "\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}");
    free(text);
    text = dump(json_object_get(firmographics, "required"));
    assert_string_equal(text, "[\"industry\",\"employees\",\"department_size\",\"revenue\",\"geography\","
                              "\"business_model\",\"funding_stage\",\"company_type\",\"keywords\"]");
    free(text);

    /* The rewrite is itself a schema this validator takes, and a normalized
     * answer satisfies it. */
    char err[256];
    struct schema *strict_schema = schema_compile(strict, err, sizeof err);
    if (!strict_schema) {
        fail_msg("strict schema does not compile: %s", err);
    }
    json_t *good = load_example("target_account");
    json_t *normalized = schema_normalize(s, good);
    expect_valid_json(strict_schema, normalized);
    /* ...while a missing optional key is now an error. */
    remove_at(normalized, "/firmographics/revenue");
    expect_errors_json(strict_schema, normalized, "/firmographics", "missing required property \"revenue\"", NULL);
    json_decref(normalized);
    json_decref(good);
    schema_free(strict_schema);
    json_decref(strict);
    schema_free(s);
}

static void test_openai_strict_small(void **state)
{
    (void)state;
    /* Optional plain properties are wrapped, annotations moved outside;
     * minLength, maxLength and default dropped; minItems kept. */
    struct schema *s = compile_sq(
        "{'type':'object','title':'T','properties':{'name':{'type':'string','maxLength':5,'description':'n'},"
        "'tags':{'type':'array','items':{'type':'string','minLength':1},'maxItems':3,'default':[]},"
        "'maybe':{'type':['string','null'],'default':null},'kind':{'enum':['a','b']}},'required':['name']}");
    json_t *strict = schema_openai_strict(s);
    assert_non_null(strict);
    check_strict_shape(strict, "");
    char *text = dump(strict);
    assert_string_equal(text,
                        "{\"title\":\"T\",\"type\":\"object\",\"properties\":{"
                        "\"name\":{\"description\":\"n\",\"type\":\"string\"},"
                        "\"tags\":{\"anyOf\":[{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":3},"
                        "{\"type\":\"null\"}]},"
                        "\"maybe\":{\"type\":[\"string\",\"null\"]},"
                        "\"kind\":{\"anyOf\":[{\"enum\":[\"a\",\"b\"]},{\"type\":\"null\"}]}},"
                        "\"required\":[\"name\",\"tags\",\"maybe\",\"kind\"],\"additionalProperties\":false}");
    free(text);
    json_decref(strict);
    schema_free(s);

    /* What has no strict form. */
    static const char *const inexpressible[] = {
        "{'type':'object','properties':{'m':{'type':'object','additionalProperties':true}}}",
        "{'type':'object','additionalProperties':{'type':'string'}}",
        "{'type':'object','properties':{'any':{}}}",
        "{'type':'object','properties':{'list':{'type':'array'}}}",
        "{'type':'object','properties':{'no':false}}",
        "{'type':'object','required':['ghost']}",
        "{'type':'array','items':{'type':'string'}}",
        "{'anyOf':[{'type':'object'},{'type':'null'}]}",
        ("{'$defs':{'T':{'type':'object','properties':{'kids':{'type':'array','items':{'$ref':'#/$defs/T'}}}}},"
         "'$ref':'#/$defs/T'}"),
    };
    for (size_t i = 0; i < sizeof inexpressible / sizeof *inexpressible; i++) {
        s = compile_sq(inexpressible[i]);
        json_t *out = schema_openai_strict(s);
        if (out) {
            fail_msg("%s has no strict form, got %s", inexpressible[i], dump(out));
        }
        schema_free(s);
    }

    /* A closed object without properties, a root reached through $ref. */
    s = compile_sq("{'$defs':{'R':{'type':'object','properties':{'e':{'type':'object'}},'required':['e']}},"
                   "'$ref':'#/$defs/R'}");
    strict = schema_openai_strict(s);
    assert_non_null(strict);
    text = dump(strict);
    assert_string_equal(text, "{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"object\",\"properties\":{},"
                              "\"required\":[],\"additionalProperties\":false}},\"required\":[\"e\"],"
                              "\"additionalProperties\":false}");
    free(text);
    json_decref(strict);
    schema_free(s);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        schema_dir = argv[1];
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_properties_required),
        cmocka_unit_test(test_additional_properties),
        cmocka_unit_test(test_items_and_counts),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_any_of),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_max_errors),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_product_overview),
        cmocka_unit_test(test_target_account),
        cmocka_unit_test(test_target_persona),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_openai_strict_target_account),
        cmocka_unit_test(test_openai_strict_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
