/* The prompt template language (core/prompt/prompt.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "prompt/prompt.h"

/* Renders template with vars given as JSON text (NULL for no vars). */
static char *render(const char *template, const char *vars_json)
{
    char err[256] = "";
    struct tmpl *t = tmpl_parse(template, strlen(template), err, sizeof err);
    if (!t) {
        fail_msg("parse failed: %s", err);
    }
    json_t *vars = NULL;
    if (vars_json) {
        json_error_t jerr;
        vars = json_loads(vars_json, 0, &jerr);
        if (!vars) {
            fail_msg("bad test JSON: %s", jerr.text);
        }
    }
    char *out = tmpl_render(t, vars, err, sizeof err);
    if (!out) {
        fail_msg("render failed: %s", err);
    }
    json_decref(vars);
    tmpl_free(t);
    return out;
}

static void expect(const char *template, const char *vars_json, const char *want)
{
    char *got = render(template, vars_json);
    assert_string_equal(got, want);
    free(got);
}

static void expect_parse_error(const char *template, const char *want)
{
    char err[256] = "";
    struct tmpl *t = tmpl_parse(template, strlen(template), err, sizeof err);
    assert_null(t);
    assert_string_equal(err, want);
}

static void test_text_only(void **state)
{
    (void)state;
    expect("", NULL, "");
    expect("plain text\nwith lines\n", NULL, "plain text\nwith lines\n");
    expect("single { braces } and }} stray closers", NULL, "single { braces } and }} stray closers");
}

static void test_values(void **state)
{
    (void)state;
    const char *vars = "{\"s\":\"Acme & <Co> \\\"quoted\\\" 'x'\",\"i\":42,\"neg\":-7,\"r\":1.5,\"tenth\":0.1,"
                       "\"whole\":2.0,\"t\":true,\"f\":false,\"n\":null,\"o\":{\"b\":1,\"a\":[1,\"x\"]},"
                       "\"a\":[\"p\",\"q\"],\"empty\":\"\"}";
    /* No HTML escaping: values go in as they are. */
    expect("{{s}}", vars, "Acme & <Co> \"quoted\" 'x'");
    expect("{{i}}|{{neg}}|{{r}}|{{tenth}}|{{whole}}", vars, "42|-7|1.5|0.1|2.0");
    expect("{{t}}|{{f}}", vars, "true|false");
    expect("[{{n}}][{{missing}}][{{empty}}]", vars, "[][][]");
    expect("{{o}}", vars, "{\"b\":1,\"a\":[1,\"x\"]}");
    expect("{{a}}", vars, "[\"p\",\"q\"]");
    expect("{{ s }}/{{\ti\t}}", vars, "Acme & <Co> \"quoted\" 'x'/42");
    /* A variable called json is still a variable. */
    expect("{{json}}", "{\"json\":\"j\"}", "j");
}

static void test_no_vars(void **state)
{
    (void)state;
    expect("a{{x}}b{{#x}}no{{/x}}{{^x}}yes{{/x}}{{json x}}", NULL, "abyesnull");
}

static void test_json_tag(void **state)
{
    (void)state;
    expect("{{json o}}", "{\"o\":{\"z\":1,\"a\":[true,null],\"m\":{}}}",
           "{\n  \"z\": 1,\n  \"a\": [\n    true,\n    null\n  ],\n  \"m\": {}\n}");
    expect("{{json s}}", "{\"s\":\"caf\\u00e9 <b> & \\\"q\\\" a/b\"}", "\"caf\xc3\xa9 <b> & \\\"q\\\" a/b\"");
    expect("{{json i}} {{json n}} {{json missing}} {{json t}}", "{\"i\":3,\"n\":null,\"t\":true}", "3 null null true");
    expect("{{#a}}{{json .}};{{/a}}", "{\"a\":[{\"k\":1},\"s\"]}", "{\n  \"k\": 1\n};\"s\";");
    expect("{{json a.b}}", "{\"a\":{\"b\":[]}}", "[]");
}

static void test_sections(void **state)
{
    (void)state;
    /* A truthy scalar: the block once, with the value as the current item. */
    expect("{{#s}}<{{.}}>{{/s}}", "{\"s\":\"v\"}", "<v>");
    expect("{{#i}}<{{.}}>{{/i}}", "{\"i\":5}", "<5>");
    expect("{{#t}}yes{{/t}}", "{\"t\":true}", "yes");
    /* An object: its fields come into scope, outer names stay reachable. */
    expect("{{#c}}{{name}} by {{owner}}{{/c}}", "{\"owner\":\"Ann\",\"c\":{\"name\":\"Acme\"}}", "Acme by Ann");
    /* An inner key shadows an outer one even when its value is null. */
    expect("{{#c}}[{{name}}]{{/c}}", "{\"name\":\"outer\",\"c\":{\"name\":null,\"x\":1}}", "[]");
    expect("{{#c}}[{{name}}]{{/c}}", "{\"name\":\"outer\",\"c\":{\"x\":1}}", "[outer]");
    expect("{{^s}}none{{/s}}{{#s}}some{{/s}}", "{\"s\":\"v\"}", "some");
}

static void test_arrays(void **state)
{
    (void)state;
    expect("{{#a}}- {{.}}\n{{/a}}", "{\"a\":[\"one\",\"two\",\"three\"]}", "- one\n- two\n- three\n");
    expect("{{#people}}{{name}} ({{role}}){{#tags}} #{{.}}{{/tags}}; {{/people}}",
           "{\"people\":[{\"name\":\"Ann\",\"role\":\"CEO\",\"tags\":[\"a\",\"b\"]},{\"name\":\"Bo\",\"tags\":[]}]}",
           "Ann (CEO) #a #b; Bo (); ");
    /* Items that are not objects: their own value, and outer names. */
    expect("{{#a}}{{.}}{{sep}}{{/a}}", "{\"sep\":\",\",\"a\":[1,2.5,true]}", "1,2.5,true,");
    /* Arrays of arrays. */
    expect("{{#rows}}[{{#.}}{{.}}{{/.}}]{{/rows}}", "{\"rows\":[[1,2],[],[3]]}", "[12][][3]");
}

static void test_nested_sections(void **state)
{
    (void)state;
    const char *vars = "{\"company\":{\"name\":\"Acme\",\"accounts\":[{\"name\":\"Retail\",\"personas\":"
                       "[{\"title\":\"CFO\"},{\"title\":\"COO\"}]},{\"name\":\"Banks\",\"personas\":[]}]}}";
    expect("{{#company}}{{#accounts}}{{name}}:{{#personas}} {{title}}@{{company.name}}{{/personas}}"
           "{{^personas}} nobody{{/personas}}|{{/accounts}}{{/company}}",
           vars, "Retail: CFO@Acme COO@Acme|Banks: nobody|");
    /* The same name nested within itself. */
    expect("{{#a}}{{#a}}{{b}}{{/a}}{{/a}}", "{\"a\":{\"a\":{\"b\":\"deep\"}}}", "deep");
}

static void test_falsy(void **state)
{
    (void)state;
    const char *values[] = {"0", "0.0", "\"\"", "[]", "{}", "false", "null"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char vars[64];
        snprintf(vars, sizeof vars, "{\"v\":%s}", values[i]);
        expect("{{#v}}T{{/v}}{{^v}}F{{/v}}", vars, "F");
    }
    expect("{{#v}}T{{/v}}{{^v}}F{{/v}}", "{}", "F");
    const char *truthy[] = {"1", "-1", "0.5", "\" \"", "[0]", "{\"a\":null}", "true", "\"0\"", "\"false\""};
    for (size_t i = 0; i < sizeof truthy / sizeof truthy[0]; i++) {
        char vars[64];
        snprintf(vars, sizeof vars, "{\"v\":%s}", truthy[i]);
        expect("{{#v}}T{{/v}}{{^v}}F{{/v}}", vars, "T");
    }
}

static void test_dotted_paths(void **state)
{
    (void)state;
    const char *vars = "{\"a\":{\"b\":{\"c\":\"deep\"},\"s\":\"str\",\"n\":null},\"x\":1}";
    expect("{{a.b.c}}", vars, "deep");
    expect("[{{a.missing.c}}][{{nope.b.c}}][{{a.s.len}}][{{a.n.z}}][{{x.y}}]", vars, "[][][][][]");
    expect("{{#a.b}}{{c}}{{/a.b}}{{^a.missing.c}}none{{/a.missing.c}}", vars, "deepnone");
    expect("{{#a.b.c}}has {{.}}{{/a.b.c}}", vars, "has deep");
    /* The first part is searched through the scopes, the rest only inside it. */
    expect("{{#a.b}}{{a.s}}{{/a.b}}", vars, "str");
}

static void test_comments(void **state)
{
    (void)state;
    expect("a{{! note }}b", NULL, "ab");
    expect("a\n{{! a standalone\n    comment over lines }}\nb\n", NULL, "a\nb\n");
    expect("a {{!x}} b", NULL, "a  b");
}

static void test_standalone_lines(void **state)
{
    (void)state;
    const char *vars = "{\"items\":[\"x\",\"y\"],\"on\":true,\"name\":\"N\"}";
    expect("Items:\n{{#items}}\n- {{.}}\n{{/items}}\nEnd\n", vars, "Items:\n- x\n- y\nEnd\n");
    /* Indented tags and trailing blanks still make a standalone line. */
    expect("A\n  {{#on}}  \n  in\n\t{{/on}}\t\nB", vars, "A\n  in\nB");
    /* A false section leaves nothing, not even a blank line. */
    expect("A\n{{#off}}\nhidden\n{{/off}}\n{{^off}}\nshown\n{{/off}}\nB\n", vars, "A\nshown\nB\n");
    /* CRLF line ends. */
    expect("A\r\n{{#on}}\r\nin\r\n{{/on}}\r\nB\r\n", vars, "A\r\nin\r\nB\r\n");
    /* At the very start and at the very end, without a final newline. */
    expect("{{#on}}\nin\n{{/on}}", vars, "in\n");
    /* Text on the line, two tags, or a variable: not standalone. */
    expect("A {{#on}}\nin\n{{/on}} B\n", vars, "A \nin\n B\n");
    expect("{{#on}}{{/on}}\nB", vars, "\nB");
    expect("A\n{{name}}\nB", vars, "A\nN\nB");
    expect("A\n{{missing}}\nB", vars, "A\n\nB");
    expect("A\n{{json missing}}\nB", vars, "A\nnull\nB");
}

static void test_unicode(void **state)
{
    (void)state;
    expect("Caf\xc3\xa9 \xe2\x86\x92 {{v}} \xf0\x9f\x9a\x80", "{\"v\":\"\\u00fcber \\ud83d\\ude80 \xe6\x97\xa5\xe6\x9c\xac\"}",
           "Caf\xc3\xa9 \xe2\x86\x92 \xc3\xbc" "ber \xf0\x9f\x9a\x80 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80");
}

static void test_values_never_reinterpreted(void **state)
{
    (void)state;
    const char *vars = "{\"x\":\"{{y}} {{#y}}S{{/y}} {{! c }} {{\",\"y\":\"BAD\",\"o\":{\"k\":\"{{y}}\"}}";
    expect("{{x}}", vars, "{{y}} {{#y}}S{{/y}} {{! c }} {{");
    expect("{{json o}}", vars, "{\n  \"k\": \"{{y}}\"\n}");
    expect("{{#o}}{{k}}{{/o}}", vars, "{{y}}");
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_parse_error("a\n{{#x}}\nb", "line 2: unclosed section 'x'");
    expect_parse_error("{{#a}}\n{{#b}}\n{{/b}}\n", "line 1: unclosed section 'a'");
    expect_parse_error("a\nb\n{{/y}}", "line 3: unexpected {{/y}}");
    expect_parse_error("{{#a}}\n\n{{/b}}\n{{/a}}", "line 3: unexpected {{/b}}");
    expect_parse_error("{{#a}}{{/a}}{{/a}}", "line 1: unexpected {{/a}}");
    expect_parse_error("{{^a.b}}{{/a}}", "line 1: unexpected {{/a}}");
    expect_parse_error("ok\n{{>partial}}", "line 2: unknown tag '{{>partial}}'");
    expect_parse_error("{{&x}}", "line 1: unknown tag '{{&x}}'");
    expect_parse_error("{{{x}}}", "line 1: unknown tag '{{{x}}'");
    expect_parse_error("{{}}", "line 1: unknown tag '{{}}'");
    expect_parse_error("{{ }}", "line 1: unknown tag '{{ }}'");
    expect_parse_error("{{a b}}", "line 1: unknown tag '{{a b}}'");
    expect_parse_error("{{a..b}}", "line 1: unknown tag '{{a..b}}'");
    expect_parse_error("{{.a}}", "line 1: unknown tag '{{.a}}'");
    expect_parse_error("{{a.}}", "line 1: unknown tag '{{a.}}'");
    expect_parse_error("{{#}}{{/}}", "line 1: unknown tag '{{#}}'");
    expect_parse_error("{{json}x}}", "line 1: unknown tag '{{json}x}}'");
    expect_parse_error("{{=<% %>=}}", "line 1: unknown tag '{{=<% %>=}}'");
    expect_parse_error("{{#\xc3\xa9}}x{{/\xc3\xa9}}", "line 1: unknown tag '{{#\xc3\xa9}}'");
    expect_parse_error("a\n\nb {{name", "line 3: unterminated tag (no closing }})");
    expect_parse_error("{{#a}}\n{{na\nme}}\n{{/a}}", "line 2: unknown tag '{{na...}}'");
    expect_parse_error("{{very_long_name_that_is_fine but then this goes on and on}}",
                       "line 1: unknown tag '{{very_long_name_that_is_fine but then thi...}}'");
    /* Line numbers count lines swallowed by standalone tags and comments. */
    expect_parse_error("{{#a}}\n{{! one\ntwo\nthree }}\n{{/a}}\n{{/b}}", "line 6: unexpected {{/b}}");
    expect_parse_error("x\r\n{{#a}}\r\n{{/a}}\r\n{{?}}", "line 4: unknown tag '{{?}}'");
}

static void test_unencodable_value(void **state)
{
    (void)state;
    char err[256];
    struct tmpl *t = tmpl_parse("[{{s}}] {{json s}}", 18, err, sizeof err);
    assert_non_null(t);
    json_t *vars = json_object();
    json_object_set_new(vars, "s", json_stringn_nocheck("a\xff", 2));
    assert_null(tmpl_render(t, vars, err, sizeof err));
    assert_string_equal(err, "a value is not valid UTF-8");
    tmpl_free(t);
    /* As plain text it goes through as it is. */
    t = tmpl_parse("[{{s}}]", 7, err, sizeof err);
    char *out = tmpl_render(t, vars, err, sizeof err);
    assert_string_equal(out, "[a\xff]");
    free(out);
    tmpl_free(t);
    json_decref(vars);
}

static void test_nesting_limit(void **state)
{
    (void)state;
    char open[64 * 6 + 1] = "", close[64 * 6 + 1] = "";
    for (int i = 0; i < 64; i++) {
        strcat(open, "{{#a}}");
        strcat(close, "{{/a}}");
    }
    char template[2 * sizeof open + 16];
    snprintf(template, sizeof template, "%s{{b}}%s", open, close);
    /* a is an object holding itself one level at a time: build 64 levels. */
    json_t *vars = json_object(), *level = vars;
    for (int i = 0; i < 64; i++) {
        json_t *inner = json_object();
        json_object_set_new(level, "a", inner);
        level = inner;
    }
    json_object_set_new(level, "b", json_string("bottom"));
    char err[256];
    struct tmpl *t = tmpl_parse(template, strlen(template), err, sizeof err);
    assert_non_null(t);
    char *out = tmpl_render(t, vars, err, sizeof err);
    assert_string_equal(out, "bottom");
    free(out);
    tmpl_free(t);
    json_decref(vars);

    snprintf(template, sizeof template, "{{#a}}%s%s{{/a}}", open, close);
    assert_null(tmpl_parse(template, strlen(template), err, sizeof err));
    assert_string_equal(err, "line 1: sections nested more than 64 deep");
}

static void test_length_not_terminator(void **state)
{
    (void)state;
    const char buf[] = "{{v}}!{{/never_seen}}";
    char err[256];
    struct tmpl *t = tmpl_parse(buf, 6, err, sizeof err);
    assert_non_null(t);
    json_t *vars = json_pack("{s:s}", "v", "ok");
    char *out = tmpl_render(t, vars, err, sizeof err);
    assert_string_equal(out, "ok!");
    free(out);
    json_decref(vars);
    tmpl_free(t);
    /* One template renders many times, with different vars. */
    t = tmpl_parse("[{{v}}]", 7, err, sizeof err);
    for (int i = 0; i < 3; i++) {
        vars = json_pack("{s:i}", "v", i);
        out = tmpl_render(t, vars, err, sizeof err);
        char want[8];
        snprintf(want, sizeof want, "[%d]", i);
        assert_string_equal(out, want);
        free(out);
        json_decref(vars);
    }
    tmpl_free(t);
    tmpl_free(NULL);
}

static void test_megabyte_values(void **state)
{
    (void)state;
    /* Braces, a two-byte character and a newline, repeated past 1 MB. */
    static const char unit[] = "{{\xc3\xa9}}\n";
    size_t unit_len = sizeof unit - 1, copies = (1u << 20) / unit_len + 1;
    size_t big_len = unit_len * copies;
    char *big = malloc(big_len + 1);
    assert_non_null(big);
    for (size_t i = 0; i < copies; i++) {
        memcpy(big + i * unit_len, unit, unit_len);
    }
    big[big_len] = '\0';
    json_t *vars = json_object();
    json_object_set_new(vars, "big", json_stringn(big, big_len));
    json_t *list = json_array();
    for (int i = 0; i < 3; i++) {
        json_array_append_new(list, json_pack("{s:s%}", "text", big, big_len));
    }
    json_object_set_new(vars, "list", list);

    const char *template = "<{{big}}>\n{{#list}}\n[{{text}}]\n{{/list}}\n{{json big}}";
    char err[256];
    struct tmpl *t = tmpl_parse(template, strlen(template), err, sizeof err);
    assert_non_null(t);
    char *out = tmpl_render(t, vars, err, sizeof err);
    assert_non_null(out);
    /* <big>\n, three [big]\n, then the JSON string with its newlines escaped. */
    size_t want_len = 4 * (big_len + 3) + big_len + copies + 2;
    assert_int_equal(strlen(out), want_len);
    assert_memory_equal(out, "<", 1);
    assert_memory_equal(out + 1, big, big_len);
    assert_memory_equal(out + big_len + 1, ">\n[", 3);
    assert_memory_equal(out + big_len + 4, big, big_len);
    assert_memory_equal(out + 4 * (big_len + 3), "\"{{\xc3\xa9}}\\n{{", 10);
    free(out);
    tmpl_free(t);
    json_decref(vars);
    free(big);

    /* A 1 MB template: line numbers stay right at its end. */
    size_t template_len = 1u << 20;
    char *text = malloc(template_len);
    assert_non_null(text);
    size_t lines = 1;
    for (size_t i = 0; i < template_len - 8; i++) {
        text[i] = i % 100 == 99 ? '\n' : 'x';
        lines += text[i] == '\n';
    }
    memcpy(text + template_len - 8, "{{v}}\n{{", 8);
    char want[64];
    snprintf(want, sizeof want, "line %zu: unterminated tag (no closing }})", lines + 1);
    assert_null(tmpl_parse(text, template_len, err, sizeof err));
    assert_string_equal(err, want);
    memcpy(text + template_len - 8, "{{v}}end", 8);
    t = tmpl_parse(text, template_len, err, sizeof err);
    assert_non_null(t);
    vars = json_pack("{s:s}", "v", "V");
    out = tmpl_render(t, vars, err, sizeof err);
    assert_int_equal(strlen(out), template_len - 4);
    assert_memory_equal(out + template_len - 8, "Vend", 4);
    free(out);
    tmpl_free(t);
    json_decref(vars);
    free(text);
}

static void test_render_bounds(void **state)
{
    (void)state;
    char err[256];
    /* sections nested over a list: work grows as 10^depth */
    char nested[64] = "", closing[64] = "";
    for (int i = 0; i < 8; i++) {
        strcat(nested, "{{#l}}");
        strcat(closing, "{{/l}}");
    }
    char template[256];
    snprintf(template, sizeof template, "%s%s", nested, closing); /* no output at all, 10^8 visits */
    json_t *vars = json_pack("{s:[iiiiiiiiii]}", "l", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    struct tmpl *t = tmpl_parse(template, strlen(template), err, sizeof err);
    assert_non_null(t);
    assert_null(tmpl_render(t, vars, err, sizeof err));
    assert_string_equal(err, "the rendering would take more than 1048576 steps (sections nested over long lists)");
    tmpl_free(t);
    /* the same with text inside: the output bound */
    snprintf(template, sizeof template, "%s%s%s", nested, "0123456789abcdef0123456789abcdef0123456789abcdef"
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", closing);
    t = tmpl_parse(template, strlen(template), err, sizeof err);
    assert_non_null(t);
    assert_null(tmpl_render(t, vars, err, sizeof err));
    assert_string_equal(err, "the rendered text would exceed 16777216 bytes");
    tmpl_free(t);
    /* three levels are 1000 visits: rendered */
    char *out = render("{{#l}}{{#l}}{{#l}}.{{/l}}{{/l}}{{/l}}", "{\"l\": [1,2,3,4,5,6,7,8,9,10]}");
    assert_int_equal(strlen(out), 1000);
    free(out);
    json_decref(vars);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_only),
        cmocka_unit_test(test_render_bounds),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_no_vars),
        cmocka_unit_test(test_json_tag),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_nested_sections),
        cmocka_unit_test(test_falsy),
        cmocka_unit_test(test_dotted_paths),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_standalone_lines),
        cmocka_unit_test(test_unicode),
        cmocka_unit_test(test_values_never_reinterpreted),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_unencodable_value),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_length_not_terminator),
        cmocka_unit_test(test_megabyte_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
