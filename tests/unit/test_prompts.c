/* The real prompts/ directory: every task loads, its schema compiles, and its
 * parts render realistic inputs, and null or missing ones, cleanly.  Also
 * broken prompt directories.  Arguments: the prompt directory, then the
 * inputs file (tests/unit/prompt_inputs.json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "prompt/prompt.h"
#include "schema/schema.h"

static const char *prompt_dir;
static json_t *inputs; /* prompt_inputs.json */
static struct prompts *prompts;

static const char *const TASKS[] = {"product_overview", "target_account", "target_persona", "email_generation",
                                    "positioning"};

static json_t *input(const char *name)
{
    json_t *v = json_object_get(inputs, name);
    if (!v) {
        fail_msg("prompt_inputs.json has no '%s'", name);
    }
    return v;
}

static const char *input_text(const char *name)
{
    const char *text = json_string_value(input(name));
    if (!text) {
        fail_msg("prompt_inputs.json: '%s' is not a string", name);
        return "";
    }
    return text;
}

static void assert_contains(const char *text, const char *needle)
{
    assert_non_null(text);
    if (!strstr(text, needle)) {
        fail_msg("expected \"%s\" in:\n%s", needle, text);
    }
}

static void assert_lacks(const char *text, const char *needle)
{
    assert_non_null(text);
    if (strstr(text, needle)) {
        fail_msg("did not expect \"%s\" in:\n%s", needle, text);
    }
}

/* No tag left over, no run of blank lines, no block that opens on nothing. */
static void assert_well_formed(const char *text)
{
    assert_lacks(text, "{{");
    assert_lacks(text, "}}");
    assert_lacks(text, "\n\n\n");
    size_t len = strlen(text);
    assert_true(len > 2);
    if (text[0] == '\n' || text[0] == ' ' || text[len - 1] != '\n' || text[len - 2] == '\n') {
        fail_msg("text should start with a word and end with one newline:\n%s", text);
    }
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        size_t line_len = strcspn(line, "\n");
        if (line_len > 2 && line[0] == '<' && line[1] != '/' && line[line_len - 1] == '>') {
            const char *next = line + line_len + 1;
            if (*next == '\n' || *next == '\0' || strncmp(next, "</", 2) == 0) {
                fail_msg("empty block %.*s in:\n%s", (int)line_len, line, text);
            }
        }
        if (!line[line_len]) {
            break;
        }
    }
}

/* A user part: also no label without its value, no null, and the word JSON
 * (OpenAI's JSON mode wants it in the messages). */
static void assert_clean_user_part(const char *user)
{
    assert_well_formed(user);
    assert_lacks(user, "null");
    assert_contains(user, "JSON");
    for (const char *line = user; *line; line = strchr(line, '\n') + 1) {
        size_t line_len = strcspn(line, "\n");
        while (line_len > 0 && line[line_len - 1] == ' ') {
            line_len--;
        }
        if (line_len > 0 && line[line_len - 1] == ':') {
            fail_msg("label without a value: %.*s in:\n%s", (int)line_len, line, user);
        }
        if (!line[strcspn(line, "\n")]) {
            break;
        }
    }
}

static void render(const char *task, json_t *vars, char **system, char **user)
{
    char err[256] = "";
    if (prompts_render(prompts, task, vars, system, user, err, sizeof err) != 0) {
        fail_msg("%s: %s", task, err);
    }
    assert_well_formed(*system);
    assert_contains(*system, "JSON");
    assert_contains(*system, "no markdown, no code fences");
    json_decref(vars);
}

static void free_parts(char *system, char *user)
{
    free(system);
    free(user);
}

static int load_prompts(void **state)
{
    (void)state;
    char err[512] = "";
    prompts = prompts_load(prompt_dir, err, sizeof err);
    if (!prompts) {
        fprintf(stderr, "prompts_load(%s): %s\n", prompt_dir, err);
        return -1;
    }
    return 0;
}

static int free_prompts(void **state)
{
    (void)state;
    prompts_free(prompts);
    return 0;
}

static void test_every_task_and_schema(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof TASKS / sizeof TASKS[0]; i++) {
        assert_true(prompts_has(prompts, TASKS[i]));
        const struct schema *schema = prompts_schema(prompts, TASKS[i]);
        assert_non_null(schema);
        /* The compiled schema is the file's. */
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.schema.json", prompt_dir, TASKS[i]);
        json_t *doc = json_load_file(path, 0, NULL);
        assert_non_null(doc);
        assert_true(json_equal(doc, schema_document(schema)));
        assert_string_equal(json_string_value(json_object_get(doc, "type")), "object");
        json_decref(doc);
    }
    assert_false(prompts_has(prompts, "custom_email"));
    assert_false(prompts_has(prompts, ""));
    assert_null(prompts_schema(prompts, "custom_email"));

    json_t *positioning = schema_document(prompts_schema(prompts, "positioning"));
    json_t *points = json_object_get(json_object_get(positioning, "properties"), "unique_selling_points");
    assert_int_equal(json_integer_value(json_object_get(points, "minItems")), 2);
    assert_int_equal(json_integer_value(json_object_get(points, "maxItems")), 5);
    assert_true(json_is_false(json_object_get(positioning, "additionalProperties")));

    /* The positioning schema, written here, means what it says. */
    const struct schema *schema = prompts_schema(prompts, "positioning");
    json_t *good = json_loads("{\"unique_insight\": \"Multi-entity groups outgrow single-ledger AP tools.\","
                              " \"unique_selling_points\": ["
                              "{\"theme\": \"Intercompany built in\", \"description\": \"One AP flow for every entity.\","
                              " \"evidence\": [\"Intercompany matching across entities\"]},"
                              "{\"theme\": \"Pays in 40+ currencies\", \"description\": \"Global payment runs.\","
                              " \"evidence\": [\"Payment runs in 40+ currencies\", \"Nordhavn Logistics\"]}]}",
                              0, NULL);
    assert_non_null(good);
    assert_int_equal(schema_validate(schema, good, NULL, 10), 0);
    json_t *bad = json_deep_copy(good);
    json_array_remove(json_object_get(bad, "unique_selling_points"), 1);
    json_object_set_new(json_array_get(json_object_get(bad, "unique_selling_points"), 0), "evidence", json_array());
    json_object_set_new(bad, "tagline", json_string("extra"));
    json_t *errors = NULL;
    assert_int_equal(schema_validate(schema, bad, &errors, 10), 3);
    json_decref(errors);
    json_decref(bad);
    json_decref(good);
    json_t *strict = schema_openai_strict(schema);
    assert_non_null(strict);
    json_decref(strict);
}

static void test_product_overview(void **state)
{
    (void)state;
    char *system, *user;
    render("product_overview",
           json_pack("{s:s, s:O, s:O, s:b}", "website_url", "https://ledgerly.example", "user_inputted_context",
                     input("user_inputted_context"), "website_content", input("website_content"), "website_read", 1),
           &system, &user);
    assert_well_formed(user);
    assert_contains(user, "<company_website>\nhttps://ledgerly.example\n</company_website>");
    /* Verbatim: no HTML escaping of &, quotes or dashes. */
    assert_contains(user, input_text("user_inputted_context"));
    assert_contains(user, input_text("website_content"));
    assert_lacks(user, "&amp;");
    assert_lacks(user, "could not be read");
    const char *contract[] = {"\"company_name\"", "\"company_url\"", "\"description\"", "\"business_profile_insights\"",
                              "\"capabilities\"", "\"use_case_analysis_insights\"", "\"positioning_insights\"",
                              "\"objections\"", "\"target_customer_insights\"", "\"metadata\"", "Category:",
                              "Business Model:", "Existing Customers:", "Process Impact:", "Problems Addressed:",
                              "Current State:", "Key Market Belief:", "Unique Approach:", "Language Used:",
                              "Target Accounts:", "Key Personas:", "\"sources_used\"", "\"context_quality\"",
                              "\"assessment_summary\"", "\"assumptions_made\"", "\"discovery_gaps\"", "\"insufficient\"",
                              "not enough information to describe the company at all"};
    for (size_t i = 0; i < sizeof contract / sizeof contract[0]; i++) {
        assert_contains(system, contract[i]);
    }
    free_parts(system, user);

    /* Nothing but the address, and the site unreadable. */
    render("product_overview",
           json_pack("{s:s, s:n, s:n, s:b}", "website_url", "https://ledgerly.example", "user_inputted_context",
                     "website_content", "website_read", 0),
           &system, &user);
    assert_clean_user_part(user);
    assert_contains(user, "https://ledgerly.example");
    assert_contains(user, "The website could not be read");
    assert_lacks(user, "<user_context>");
    assert_lacks(user, "<website_content>");
    free_parts(system, user);

    /* Read, but empty; an empty user context counts as none. */
    render("product_overview",
           json_pack("{s:s, s:s, s:s, s:b}", "website_url", "https://ledgerly.example", "user_inputted_context", "",
                     "website_content", "", "website_read", 1),
           &system, &user);
    assert_clean_user_part(user);
    assert_contains(user, "fetched but held no readable text");
    assert_lacks(user, "could not be read");
    assert_lacks(user, "<user_context>");
    free_parts(system, user);

    /* Every variable missing. */
    render("product_overview", json_object(), &system, &user);
    assert_clean_user_part(user);
    assert_lacks(user, "<company_website>");
    free_parts(system, user);
}

static void test_target_account(void **state)
{
    (void)state;
    char *system, *user;
    render("target_account",
           json_pack("{s:s, s:s, s:s, s:s, s:O, s:O, s:b}", "website_url", "https://ledgerly.example",
                     "account_profile_name", "Multi-entity groups in the Nordics", "hypothesis",
                     "Groups with 5+ entities feel intercompany pain first", "additional_context",
                     "Avoid public companies for now", "company_context", input("overview"), "website_content",
                     input("website_content"), "website_read", 1),
           &system, &user);
    assert_well_formed(user);
    assert_contains(user, "<account_profile_name>\nMulti-entity groups in the Nordics\n</account_profile_name>");
    assert_contains(user, "<hypothesis>\nGroups with 5+ entities feel intercompany pain first\n</hypothesis>");
    assert_contains(user, "<additional_context>\nAvoid public companies for now\n</additional_context>");
    /* The overview as pretty JSON, keys in their order. */
    assert_contains(user, "<company_overview>\n{\n  \"company_name\": \"Ledgerly\",\n  \"company_url\"");
    assert_contains(user, "\"Three-way matching: Matches invoices to purchase orders and receipts automatically\"");
    assert_contains(user, input_text("website_content"));
    assert_lacks(user, "No company overview");
    const char *contract[] = {"\"target_account_name\"", "\"target_account_description\"", "\"target_account_rationale\"",
                              "\"firmographics\"", "\"industry\"", "\"employees\"", "\"department_size\"",
                              "\"revenue\"", "\"geography\"", "\"business_model\"", "\"funding_stage\"",
                              "\"company_type\"", "\"keywords\"", "\"buying_signals\"", "\"detection_method\"",
                              "\"buying_signals_rationale\"", "\"primary_context_source\"", "\"confidence_assessment\"",
                              "\"overall_confidence\"", "\"data_quality\"", "\"inference_level\"",
                              "\"recommended_improvements\"", "\"processing_notes\"",
                              "exactly \"Low\", \"Medium\" or \"High\""};
    for (size_t i = 0; i < sizeof contract / sizeof contract[0]; i++) {
        assert_contains(system, contract[i]);
    }
    free_parts(system, user);

    render("target_account",
           json_pack("{s:s, s:n, s:n, s:n, s:n, s:n, s:b}", "website_url", "https://ledgerly.example",
                     "account_profile_name", "hypothesis", "additional_context", "company_context", "website_content",
                     "website_read", 0),
           &system, &user);
    assert_clean_user_part(user);
    assert_contains(user, "No company overview was given");
    assert_lacks(user, "<hypothesis>");
    assert_lacks(user, "<website_content>");
    free_parts(system, user);

    /* An empty overview object is no overview. */
    render("target_account", json_pack("{s:{}}", "company_context"), &system, &user);
    assert_clean_user_part(user);
    assert_contains(user, "No company overview was given");
    assert_lacks(user, "<company_overview>");
    free_parts(system, user);
}

static void test_target_persona(void **state)
{
    (void)state;
    char *system, *user;
    render("target_persona",
           json_pack("{s:s, s:s, s:s, s:s, s:O, s:O, s:n, s:b}", "website_url", "https://ledgerly.example",
                     "persona_profile_name", "Group Controller", "hypothesis",
                     "Controllers own the close, so they feel AP delays first", "additional_context",
                     "Skip CFOs: they sign, they don't champion", "company_context", input("overview"),
                     "target_account_context", input("account"), "website_content", "website_read", 0),
           &system, &user);
    assert_well_formed(user);
    assert_contains(user, "<persona_profile_name>\nGroup Controller\n</persona_profile_name>");
    assert_contains(user, "Controllers own the close, so they feel AP delays first");
    assert_contains(user, "Skip CFOs: they sign, they don't champion");
    assert_contains(user, "<company_overview>\n{\n  \"company_name\": \"Ledgerly\"");
    assert_contains(user, "<target_account>\n{\n  \"target_account_name\": \"Multi-entity mid-market groups\"");
    assert_contains(user, "\"Hospital & Health Care\"");
    assert_lacks(user, "<website_content>");
    const char *contract[] = {"\"target_persona_name\"", "\"target_persona_description\"",
                              "\"target_persona_rationale\"", "\"demographics\"", "\"job_titles\"", "\"departments\"",
                              "\"seniority\"", "\"buying_roles\"", "\"job_description_keywords\"", "\"use_cases\"",
                              "\"use_case\"", "\"pain_points\"", "\"capability\"", "\"desired_outcome\"",
                              "\"buying_signals\"", "\"buying_signals_rationale\"", "\"objections\"", "\"goals\"",
                              "\"purchase_journey\"", "\"metadata\"", "\"Founder/CEO\"", "\"Budget Holder\""};
    for (size_t i = 0; i < sizeof contract / sizeof contract[0]; i++) {
        assert_contains(system, contract[i]);
    }
    free_parts(system, user);

    render("target_persona",
           json_pack("{s:n, s:n, s:n, s:n, s:n, s:n, s:n, s:b}", "website_url", "persona_profile_name", "hypothesis",
                     "additional_context", "company_context", "target_account_context", "website_content",
                     "website_read", 0),
           &system, &user);
    assert_clean_user_part(user);
    assert_contains(user, "No company overview was given");
    assert_contains(user, "No target account was given");
    assert_lacks(user, "<company_website>");
    free_parts(system, user);

    render("target_persona", json_object(), &system, &user);
    assert_clean_user_part(user);
    free_parts(system, user);
}

static char *top3(json_t *overview)
{
    json_t *caps = json_object_get(overview, "capabilities");
    char *joined = calloc(1, 4096);
    for (size_t i = 0; i < 3 && i < json_array_size(caps); i++) {
        if (i) {
            strcat(joined, ", ");
        }
        strcat(joined, json_string_value(json_array_get(caps, i)));
    }
    return joined;
}

static void test_email_generation(void **state)
{
    (void)state;
    char *system, *user;
    char *capabilities = top3(input("overview"));
    render("email_generation",
           json_pack("{s:O, s:O, s:O, s:O, s:s}", "company_context", input("overview"), "target_account",
                     input("account"), "target_persona", input("persona"), "preferences", input("preferences"),
                     "capabilities_top3", capabilities),
           &system, &user);
    assert_well_formed(user); /* the account holds nulls of its own */
    assert_contains(user, "<sending_company>\n{\n  \"company_name\": \"Ledgerly\"");
    assert_contains(user, "<target_account>\n{\n  \"target_account_name\"");
    assert_contains(user, "<target_persona>\n{\n  \"target_persona_name\": \"Group Controller\"");
    assert_contains(user, capabilities);
    assert_contains(user, "Preferred use case: Intercompany invoice matching\n");
    assert_contains(user, "Preferred emphasis: pain-point\n");
    assert_contains(user, "Preferred opening line: buying-signal\n");
    assert_contains(user, "Preferred call to action: priority-check\n");
    assert_contains(user, "<social_proof>\nNordhavn Logistics cut its close from 9 days to 4 with Ledgerly.\n</social_proof>");
    assert_lacks(user, "blossomer");
    assert_lacks(user, "No preferences were given");
    const char *contract[] = {"\"subjects\"", "\"primary\"", "\"alternatives\"", "exactly 2", "\"email_body\"",
                              "\"breakdown\"", "\"label\"", "\"description\"", "\"generation_id\"", "\"confidence\"",
                              "\"personalization_level\"", "\"processing_time_ms\"", "\"subject\"", "\"greeting\"",
                              "\"opening\"", "\"pain-point\"", "\"solution\"", "\"emphasis\"", "\"social-proof\"",
                              "\"cta\"", "\"signature\"", "\"capabilities\"", "\"desired-outcome\"",
                              "\"buying-signal\"", "\"company-research\"", "\"not-personalized\"", "\"feedback\"",
                              "\"meeting\"", "\"priority-check\"", "\"free-resource\"", "\"visit-link\""};
    for (size_t i = 0; i < sizeof contract / sizeof contract[0]; i++) {
        assert_contains(system, contract[i]);
    }
    free_parts(system, user);
    free(capabilities);

    /* Preferences holding only the template, and no social proof. */
    render("email_generation",
           json_pack("{s:O, s:n, s:n, s:{s:s, s:n, s:s}, s:s}", "company_context", input("overview"), "target_account",
                     "target_persona", "preferences", "template", "blossomer", "social_proof", "use_case", "",
                     "capabilities_top3", "Invoice capture"),
           &system, &user);
    assert_clean_user_part(user);
    assert_lacks(user, "Preferred");
    assert_lacks(user, "<social_proof>");
    assert_lacks(user, "<target_persona>");
    assert_lacks(user, "No preferences were given");
    free_parts(system, user);

    render("email_generation",
           json_pack("{s:n, s:n, s:n, s:n, s:s}", "company_context", "target_account", "target_persona", "preferences",
                     "capabilities_top3", ""),
           &system, &user);
    assert_clean_user_part(user);
    assert_contains(user, "No overview of the sending company was given");
    assert_contains(user, "No preferences were given");
    assert_lacks(user, "<top_capabilities>");
    free_parts(system, user);

    render("email_generation", json_object(), &system, &user);
    assert_clean_user_part(user);
    free_parts(system, user);
}

static void test_positioning(void **state)
{
    (void)state;
    char *system, *user;
    render("positioning",
           json_pack("{s:O, s:O}", "context", input("positioning_context"), "company_context", input("overview")),
           &system, &user);
    assert_clean_user_part(user);
    assert_contains(user, "<request_context>\n{\n  \"company_name\": \"Ledgerly\",\n  \"competitors\": [");
    assert_contains(user, "Buyers pick us for intercompany & multi-currency \xe2\x80\x93 not price.");
    assert_contains(user, "<company_overview>\n{");
    assert_lacks(user, "Nothing was given");
    const char *contract[] = {"\"unique_insight\"", "\"unique_selling_points\"", "\"theme\"", "\"description\"",
                              "\"evidence\"", "2-5", "1-5"};
    for (size_t i = 0; i < sizeof contract / sizeof contract[0]; i++) {
        assert_contains(system, contract[i]);
    }
    free_parts(system, user);

    /* Any shape of context: here a bare string. */
    render("positioning", json_pack("{s:s, s:n}", "context", "Ledgerly: AP for multi-entity groups", "company_context"),
           &system, &user);
    assert_clean_user_part(user);
    assert_contains(user, "<request_context>\n\"Ledgerly: AP for multi-entity groups\"\n</request_context>");
    assert_lacks(user, "<company_overview>");
    free_parts(system, user);

    render("positioning", json_pack("{s:n, s:n}", "context", "company_context"), &system, &user);
    assert_clean_user_part(user);
    assert_contains(user, "Nothing was given about the company");
    free_parts(system, user);
}

static void test_unknown_task(void **state)
{
    (void)state;
    char *system = (char *)1, *user = (char *)1, err[128] = "";
    assert_int_equal(prompts_render(prompts, "custom_email", NULL, &system, &user, err, sizeof err), -1);
    assert_null(system);
    assert_null(user);
    assert_string_equal(err, "no prompt for task 'custom_email'");
}

/* ---- broken directories ---- */

struct scratch {
    char dir[64];
    char names[8][64];
    size_t count;
};

static void scratch_init(struct scratch *s)
{
    memset(s, 0, sizeof *s);
    strcpy(s->dir, "/tmp/gtm-prompts-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
}

static void scratch_write(struct scratch *s, const char *name, const char *content)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", s->dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(s->names[i], name) == 0) {
            return;
        }
    }
    snprintf(s->names[s->count++], sizeof s->names[0], "%s", name);
}

static void scratch_remove(struct scratch *s)
{
    for (size_t i = 0; i < s->count; i++) {
        char path[160];
        snprintf(path, sizeof path, "%s/%s", s->dir, s->names[i]);
        unlink(path);
    }
    rmdir(s->dir);
}

/* Loads the directory, expecting failure with a message that says want
 * (with %s standing for the directory). */
static void expect_load_error(const struct scratch *s, const char *want_format)
{
    char want[512], err[512] = "";
    snprintf(want, sizeof want, want_format, s->dir);
    struct prompts *p = prompts_load(s->dir, err, sizeof err);
    if (p) {
        prompts_free(p);
        fail_msg("loaded, expected: %s", want);
    }
    assert_string_equal(err, want);
}

static const char GOOD_SCHEMA[] = "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}}";

static void test_broken_directories(void **state)
{
    (void)state;
    struct scratch s;
    scratch_init(&s);
    expect_load_error(&s, "%s: no prompts (expected <task>.system.tmpl, <task>.user.tmpl and <task>.schema.json)");

    scratch_write(&s, "good.system.tmpl", "You write {{thing}}.\n");
    scratch_write(&s, "good.user.tmpl", "{{#thing}}\nThing: {{thing}}\n{{/thing}}\n");
    scratch_write(&s, "good.schema.json", GOOD_SCHEMA);
    scratch_write(&s, "notes.txt", "not a prompt");
    char err[512];
    struct prompts *p = prompts_load(s.dir, err, sizeof err);
    assert_non_null(p);
    assert_true(prompts_has(p, "good"));
    char *system, *user;
    json_t *vars = json_pack("{s:s}", "thing", "an email");
    assert_int_equal(prompts_render(p, "good", vars, &system, &user, err, sizeof err), 0);
    assert_string_equal(system, "You write an email.\n");
    assert_string_equal(user, "Thing: an email\n");
    free_parts(system, user);
    json_decref(vars);
    prompts_free(p);

    /* A task without its schema. */
    scratch_write(&s, "broken.system.tmpl", "system\n");
    scratch_write(&s, "broken.user.tmpl", "user\n");
    expect_load_error(&s, "%s/broken.schema.json: missing (each prompt task needs broken.system.tmpl, "
                          "broken.user.tmpl and broken.schema.json)");

    /* A template that does not parse. */
    scratch_write(&s, "broken.schema.json", GOOD_SCHEMA);
    scratch_write(&s, "broken.user.tmpl", "Inputs\n\n{{#hypothesis}}\n{{hypothesis}}\n");
    expect_load_error(&s, "%s/broken.user.tmpl: line 3: unclosed section 'hypothesis'");
    scratch_write(&s, "broken.user.tmpl", "user\n");
    scratch_write(&s, "broken.system.tmpl", "one\ntwo {{> partial}}\n");
    expect_load_error(&s, "%s/broken.system.tmpl: line 2: unknown tag '{{> partial}}'");

    /* A schema that is not JSON, and one that does not compile. */
    scratch_write(&s, "broken.system.tmpl", "system\n");
    scratch_write(&s, "broken.schema.json", "{\n  \"type\": \"object\",\n}\n");
    expect_load_error(&s, "%s/broken.schema.json: line 3 column 1: string or '}' expected near '}'");
    scratch_write(&s, "broken.schema.json", "{\"type\": \"object\", \"type\": \"array\"}");
    expect_load_error(&s, "%s/broken.schema.json: line 1 column 25: duplicate object key near '\"type\"'");
    scratch_write(&s, "broken.schema.json", "{\"type\": \"bogus\"}");
    p = prompts_load(s.dir, err, sizeof err);
    assert_null(p);
    char want[160];
    snprintf(want, sizeof want, "%s/broken.schema.json: ", s.dir);
    assert_memory_equal(err, want, strlen(want));
    assert_true(strlen(err) > strlen(want));

    scratch_remove(&s);
    expect_load_error(&s, "%s: No such file or directory");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PROMPT_DIR INPUTS_JSON\n", argv[0]);
        return 2;
    }
    prompt_dir = argv[1];
    json_error_t jerr;
    inputs = json_load_file(argv[2], 0, &jerr);
    if (!inputs) {
        fprintf(stderr, "%s: %s\n", argv[2], jerr.text);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_task_and_schema),
        cmocka_unit_test(test_product_overview),
        cmocka_unit_test(test_target_account),
        cmocka_unit_test(test_target_persona),
        cmocka_unit_test(test_email_generation),
        cmocka_unit_test(test_positioning),
        cmocka_unit_test(test_unknown_task),
        cmocka_unit_test(test_broken_directories),
    };
    int failed = cmocka_run_group_tests(tests, load_prompts, free_prompts);
    json_decref(inputs);
    return failed;
}
