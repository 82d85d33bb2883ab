/* HTML to text through gumbo, the markdown and plain-text paths, and the
 * shared line filter: real-looking pages, entities, malformed markup,
 * pathological nesting, caps in code points, and bytes that are not UTF-8. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "site/site.h"
#include "site/site_internal.h"

/* ---- helpers ----------------------------------------------------------------- */

static char *to_text(const char *html, size_t max_chars) {
    size_t len = 12345;
    char *t = site_html_to_text(html, strlen(html), max_chars, &len);
    assert_non_null(t);
    assert_int_equal(len, strlen(t));
    return t;
}

static void expect_has(const char *text, const char *part) {
    if (!strstr(text, part))
        fail_msg("missing \"%s\" in:\n%s", part, text);
}

static void expect_lacks(const char *text, const char *part) {
    if (strstr(text, part))
        fail_msg("unexpected \"%s\" in:\n%s", part, text);
}

/* A whole line of the text equals line. */
static bool has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len == n && memcmp(p, line, n) == 0)
            return true;
        p = nl ? nl + 1 : NULL;
    }
    return false;
}

static void expect_line(const char *text, const char *line) {
    if (!has_line(text, line))
        fail_msg("no line \"%s\" in:\n%s", line, text);
}

static bool valid_utf8(const char *s, size_t len, size_t *code_points) {
    size_t cps = 0;
    for (size_t i = 0; i < len;) {
        unsigned char b = (unsigned char)s[i];
        size_t n = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
        if (!n || i + n > len)
            return false;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)s[i + k] & 0xc0) != 0x80)
                return false;
        i += n;
        cps++;
    }
    *code_points = cps;
    return true;
}

/* No blank lines, no line with leading/trailing or doubled spaces. */
static void expect_tidy(const char *text) {
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len == 0 || p[0] == ' ' || p[len - 1] == ' ' || memmem(p, len, "  ", 2) || memchr(p, '\t', len))
            fail_msg("untidy line \"%.*s\" in:\n%s", (int)len, p, text);
        if (!nl)
            break;
        p = nl + 1;
    }
}

/* ---- a real-looking page --------------------------------------------------------- */

static const char company_page[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<title>Acme Robotics &ndash; Warehouse automation</title>\n"
    "<style>body { color: red } .x::after { content: 'style text' }</style>\n"
    "<script>var s = \"<p>script text</p>\"; if (a < b && c > d) {}</script>\n"
    "<script type=\"application/ld+json\">{\"@type\": \"Organization\", \"name\": \"json text\"}</script>\n"
    "</head>\n"
    "<body class=\"home page cookies-not-set\">\n"
    "<a class=\"skip-link\" href=\"#main\">Skip to content</a>\n"
    "<header class=\"site-header\"><div class=\"logo\">AcmeLogoText</div>\n"
    "  <nav aria-label=\"Main\"><ul><li><a href=\"/\">Home</a></li><li><a href=\"/about\">About</a></li>\n"
    "  <li><a href=\"/pricing\">Pricing</a></li></ul></nav></header>\n"
    "<div id=\"cookie-notice\" class=\"banner\">We use cookies to improve your experience.\n"
    "  <button>Accept all</button> <button>Reject</button></div>\n"
    "<div class=\"cc-window\" aria-label=\"consent\"><p class=\"consent-text\">Consent banner text</p></div>\n"
    "<div id=\"onetrust-banner-sdk\" class=\"otFlat gdpr-banner\">OneTrust banner text</div>\n"
    "<main id=\"main\">\n"
    "<article>\n"
    "<header><h1>Robots that pick &amp; pack</h1><p class=\"byline\">By Jane&nbsp;Doe</p></header>\n"
    "<p>Acme builds   autonomous\n   mobile robots for <strong>mid-size</strong> warehouses.\n"
    "Our fleet handles 10&times; the volume &mdash; at &lt;half&gt; the cost.</p>\n"
    "<h2>Why Acme</h2>\n"
    "<ul>\n  <li>Deploys in <em>two weeks</em></li>\n  <li>No new shelving</li>\n"
    "  <li>Pay per pick<ul><li>Volume discounts</li></ul></li>\n</ul>\n"
    "<h3>Pricing</h3>\n"
    "<table><thead><tr><th>Plan</th><th>Price</th></tr></thead>\n"
    "<tbody><tr><td>Starter</td><td>$999/mo</td></tr><tr><td>Scale</td><td>Contact sales</td></tr></tbody></table>\n"
    "<p hidden>hidden attribute text</p>\n"
    "<div aria-hidden=\"true\">aria hidden text</div>\n"
    "<div style=\"display: none\">display none text</div>\n"
    "<div style=\"VISIBILITY:hidden\">visibility hidden text</div>\n"
    "<svg viewBox=\"0 0 10 10\"><title>svg title</title><text>svg text</text></svg>\n"
    "<noscript>Please enable JavaScript</noscript>\n"
    "<template><p>template text</p></template>\n"
    "<iframe src=\"/embed\">iframe text</iframe>\n"
    "<form action=\"/subscribe\"><label>Email*</label><input name=\"email\"><button>Subscribe</button></form>\n"
    "<p>Read our privacy policy to learn how we handle data about robots.</p>\n"
    "<footer class=\"entry-footer\">Posted in Robotics</footer>\n"
    "</article>\n"
    "</main>\n"
    "<aside><h2>Related posts</h2></aside>\n"
    "<div role=\"navigation\">Breadcrumb text</div>\n"
    "<div role=\"banner\">Role banner text</div>\n"
    "<footer class=\"site-footer\"><p>Acme Robotics, 1 Main St</p>\n"
    "<p>&copy; 2024 Acme Inc. All rights reserved.</p><p>Privacy Policy | Terms of Service</p></footer>\n"
    "</body></html>\n";

static void test_company_page(void **state) {
    (void)state;
    char *t = to_text(company_page, 20000);
    expect_tidy(t);
    /* the title first, then the content */
    assert_true(strncmp(t, "Acme Robotics \xe2\x80\x93 Warehouse automation\n", 39) == 0);
    expect_line(t, "Robots that pick & pack");
    expect_line(t, "By Jane Doe");
    expect_line(t, "Acme builds autonomous mobile robots for mid-size warehouses. Our fleet handles "
                   "10\xc3\x97 the volume \xe2\x80\x94 at <half> the cost.");
    expect_line(t, "Why Acme");
    expect_line(t, "- Deploys in two weeks");
    expect_line(t, "- No new shelving");
    expect_line(t, "- Pay per pick");
    expect_line(t, "- Volume discounts");
    expect_line(t, "Pricing"); /* a heading, not a menu */
    expect_line(t, "Plan | Price");
    expect_line(t, "Starter | $999/mo");
    expect_line(t, "Scale | Contact sales");
    expect_line(t, "Read our privacy policy to learn how we handle data about robots.");
    expect_line(t, "Posted in Robotics"); /* the article's own footer */
    /* gone: code, chrome, hidden things, banners, boilerplate */
    const char *gone[] = {"script text", "json text", "style text", "color", "Skip to content", "AcmeLogoText",
                          "Home", "About", "We use cookies", "Accept all", "Consent banner", "OneTrust",
                          "hidden attribute", "aria hidden", "display none", "visibility hidden", "svg",
                          "JavaScript", "template text", "iframe text", "Email", "Subscribe", "Related posts",
                          "Breadcrumb", "Role banner", "Acme Robotics, 1 Main St", "All rights reserved",
                          "Terms of Service", "Privacy Policy"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        expect_lacks(t, gone[i]);
    free(t);
}

static void test_blocks_and_lines(void **state) {
    (void)state;
    char *t = to_text("<div>one</div><div>two<p>three</p>four</div>five<br>six<hr>seven", 1000);
    assert_string_equal(t, "one\ntwo\nthree\nfour\nfive\nsix\nseven");
    free(t);
    t = to_text("<p>in<b>line</b> <i>runs</i><span> stay</span> together</p>", 1000);
    assert_string_equal(t, "inline runs stay together");
    free(t);
    t = to_text("<h1>Title</h1>Intro text <h2>Sub</h2><p>Body</p>", 1000);
    assert_string_equal(t, "Title\nIntro text\nSub\nBody");
    free(t);
    t = to_text("<pre>line 1\nline   2\n\nline 3</pre><p>after</p>", 1000);
    assert_string_equal(t, "line 1\nline 2\nline 3\nafter");
    free(t);
    t = to_text("<ol><li>first</li><li>second</li></ol><dl><dt>term</dt><dd>definition</dd></dl>", 1000);
    assert_string_equal(t, "- first\n- second\nterm\ndefinition");
    free(t);
}

static void test_entities(void **state) {
    (void)state;
    char *t = to_text("<p>&amp; &lt;tag&gt; &quot;q&quot; &#39;s&#39; caf&eacute; &#x1F600; &#8364;5 "
                      "a&nbsp;b &copy &notanentity; &amp</p>",
                      1000);
    assert_string_equal(t, "& <tag> \"q\" 's' caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac"
                           "5 a b \xc2\xa9 \xc2\xac""anentity; &"); /* "&not" needs no ';' (HTML5) */
    free(t);
}

static void test_malformed(void **state) {
    (void)state;
    char *t = to_text("<p>Unclosed <b>bold <i>italic</p><div>after", 1000);
    expect_line(t, "Unclosed bold italic");
    expect_line(t, "after");
    free(t);
    t = to_text("</div></span>stray end tags<p>para<p>next para<li>orphan item", 1000);
    assert_string_equal(t, "stray end tags\npara\nnext para\n- orphan item");
    free(t);
    t = to_text("<table><td>cell one<td>cell two<tr><td>row two</table>tail", 1000);
    assert_string_equal(t, "cell one | cell two\nrow two\ntail");
    free(t);
    t = to_text("<b><i>misnested</b></i> text <div <p>broken tag</p> <!-- comment <p>no</p> --> end", 1000);
    expect_has(t, "misnested text");
    expect_lacks(t, "no");
    expect_lacks(t, "comment");
    free(t);
    t = to_text("<script>never closed <p>all script", 1000);
    assert_string_equal(t, "");
    free(t);
    t = to_text("just text, no tags at all", 1000);
    assert_string_equal(t, "just text, no tags at all");
    free(t);
    t = to_text("", 1000);
    assert_string_equal(t, "");
    free(t);
    size_t len = 99;
    t = site_html_to_text(NULL, 0, 1000, &len);
    assert_non_null(t);
    assert_int_equal(len, 0);
    free(t);
}

static void test_banners_and_roots(void **state) {
    (void)state;
    /* A body or main whose class mentions cookies is still the page. */
    char *t = to_text("<body class=\"cookie-consent-given\"><main class=\"gdpr-ok\"><p>Real content</p></main>"
                      "<section class=\"CookieBanner\"><p>Banner</p></section>"
                      "<div id=\"GDPR-modal\">Modal</div><div role=\"dialog\">Dialog</div></body>",
                      1000);
    assert_string_equal(t, "Real content");
    free(t);
    /* A page header (banner) goes, an article's header stays. */
    t = to_text("<header><h1>Site name</h1></header><article><header><h1>Post title</h1></header>"
                "<p>Post body</p><footer>Post footer</footer></article><footer>Site footer</footer>",
                1000);
    assert_string_equal(t, "Post title\nPost body\nPost footer");
    free(t);
}

static void test_boilerplate_lines(void **state) {
    (void)state;
    char *t = to_text("<p>Home About Services Contact</p>"
                      "<p>Home | About us | Products | Contact us</p>"
                      "<p>Follow us on Twitter</p><p>Follow us: Facebook &middot; LinkedIn</p>"
                      "<p>Subscribe to our newsletter</p><p>Sign up for updates</p>"
                      "<p>Copyright &copy; 2023 Example Corp</p><p>Copyright 2024 Someone</p>"
                      "<p>&copy; 2024 Example</p><p>Example Ltd &copy; 2021</p>"
                      "<p>Cookie Policy</p><p>Terms &amp; Conditions</p><p>Search for:</p><p>Menu Toggle</p>"
                      "<p>@acme #robots #ai</p><p>Your email address</p><p>Name*</p><p>Message:</p>"
                      "<p>About</p><p>Contact</p>"
                      "<p>Our services include design and build.</p>"
                      "<p>Copyright law protects original works.</p>"
                      "<p># Not a hashtag line</p><p>Email us at hello@example.com</p>",
                      10000);
    assert_string_equal(t, "About\nContact\nOur services include design and build.\n"
                           "Copyright law protects original works.\n# Not a hashtag line\n"
                           "Email us at hello@example.com");
    free(t);
    const char *yes[] = {"Privacy Policy", "All rights reserved.", "Pricing \xe2\x80\xa2 Blog \xe2\x80\xa2 Careers",
                         "Skip to main content", "Back to top \xe2\x86\x91"};
    const char *no[] = {"Pricing", "Home", "Blog posts about robots", "We reserve all rights to refuse service."};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!text_is_boilerplate_line(yes[i], strlen(yes[i])))
            fail_msg("not boilerplate: %s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (text_is_boilerplate_line(no[i], strlen(no[i])))
            fail_msg("boilerplate: %s", no[i]);
}

/* ---- caps ---------------------------------------------------------------------- */

static void test_cap_exact_ascii(void **state) {
    (void)state;
    size_t n = 2000000;
    char *html = malloc(n + 16);
    strcpy(html, "<p>");
    for (size_t i = 0; i < n; i++)
        html[3 + i] = (char)('a' + i % 26);
    strcpy(html + 3 + n, "</p>");
    size_t len = 0;
    char *t = site_html_to_text(html, strlen(html), 12345, &len);
    assert_non_null(t);
    assert_int_equal(len, 12345);
    assert_int_equal(strlen(t), 12345);
    assert_int_equal(t[12344], 'a' + 12344 % 26);
    free(t);
    free(html);
}

static void test_cap_code_points(void **state) {
    (void)state;
    /* 2-byte and 4-byte characters: the cap counts characters, never cuts one */
    size_t n = 300000;
    char *html = malloc(n * 2 + 16);
    strcpy(html, "<p>");
    for (size_t i = 0; i < n; i++)
        memcpy(html + 3 + 2 * i, "\xc3\xa9", 2);
    strcpy(html + 3 + 2 * n, "</p>");
    size_t len = 0, cps = 0;
    char *t = site_html_to_text(html, strlen(html), 1000, &len);
    assert_int_equal(len, 2000);
    assert_true(valid_utf8(t, len, &cps));
    assert_int_equal(cps, 1000);
    free(t);
    free(html);

    char emoji[4 * 50 + 16] = "<p>";
    for (int i = 0; i < 50; i++)
        strcat(emoji, "\xf0\x9f\x98\x80");
    strcat(emoji, "</p>");
    t = site_html_to_text(emoji, strlen(emoji), 7, &len);
    assert_int_equal(len, 28);
    assert_true(valid_utf8(t, len, &cps));
    assert_int_equal(cps, 7);
    free(t);

    /* many lines: the newlines count, the text never ends in one */
    t = to_text("<p>aaaa</p><p>bbbb</p><p>cccc</p>", 10);
    assert_string_equal(t, "aaaa\nbbbb");
    free(t);
    t = to_text("<p>aaaa</p><p>bbbb</p><p>cccc</p>", 11);
    assert_string_equal(t, "aaaa\nbbbb\nc");
    free(t);
    t = to_text("<p>aaaa</p><p>bbbb</p><p>cccc</p>", 12);
    assert_string_equal(t, "aaaa\nbbbb\ncc");
    free(t);
    t = to_text("<p>aaaa</p>", 0);
    assert_string_equal(t, "");
    free(t);
}

static double seconds_since(struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Pages built to hurt the parser finish quickly and keep what came before. */
static void test_pathological_nesting(void **state) {
    (void)state;
    const char *units[] = {"<div>", "<b>", "<table><tr><td>", "<span><i><u>", "<div/>", "<font color=red>",
                           "<div a=b\">", "<ul><li>", "<svg><g>"};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        size_t ulen = strlen(units[u]), reps = (5u * 1024 * 1024) / ulen;
        char *html = malloc(reps * ulen + 64);
        size_t o = (size_t)sprintf(html, "<p>intro text</p>");
        for (size_t i = 0; i < reps; i++, o += ulen)
            memcpy(html + o, units[u], ulen);
        strcpy(html + o, "deep text");
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        size_t len;
        char *t = site_html_to_text(html, strlen(html), 20000, &len);
        double took = seconds_since(&t0);
        assert_non_null(t);
        if (strncmp(t, "intro text", 10) != 0)
            fail_msg("%s: text starts \"%.40s\"", units[u], t);
        if (took > 10.0)
            fail_msg("%s x %zu took %.1f s", units[u], reps, took);
        free(t);
        free(html);
    }
    /* an SVG full of self-closing shapes is not deep */
    char *html = malloc(64 * 1000 + 64);
    size_t o = (size_t)sprintf(html, "<svg>");
    for (int i = 0; i < 1000; i++)
        o += (size_t)sprintf(html + o, "<path d=\"M0 0\"/>");
    strcpy(html + o, "</svg><p>after the icon</p>");
    char *t = to_text(html, 1000);
    assert_string_equal(t, "after the icon");
    free(t);
    free(html);
    /* nor is a sloppy table of unclosed rows and cells */
    html = malloc(40 * 2000 + 64);
    o = (size_t)sprintf(html, "<table>");
    for (int i = 0; i < 2000; i++)
        o += (size_t)sprintf(html + o, "<tr><td>r%d<td>x", i);
    strcpy(html + o, "</table><p>after the table</p>");
    t = to_text(html, 100000);
    expect_line(t, "r1999 | x");
    expect_line(t, "after the table");
    free(t);
    free(html);
}

/* ---- not UTF-8 --------------------------------------------------------------------- */

static void test_not_utf8(void **state) {
    (void)state;
    const char html[] = "<p>caf\xe9 na\xefve</p><p>\xff\xfe junk</p><p>over\xc0\xaflong</p>"
                        "<p>surrogate \xed\xa0\x80 end</p><p>trunc \xe2\x82</p><p>nul\0byte</p><p>ok \xc3\xa9</p>";
    size_t len = 0, cps;
    char *t = site_html_to_text(html, sizeof(html) - 1, 1000, &len);
    assert_non_null(t);
    assert_true(valid_utf8(t, len, &cps));
    assert_int_equal(strlen(t), len); /* no NUL inside */
    expect_has(t, "caf\xef\xbf\xbd na\xef\xbf\xbdve");
    expect_has(t, "junk");
    expect_has(t, "over\xef\xbf\xbd\xef\xbf\xbdlong");
    expect_has(t, "ok \xc3\xa9");
    expect_has(t, "byte");
    free(t);
    size_t out_len;
    char *s = text_utf8_sanitize("a\x80z", 3, &out_len);
    assert_int_equal(out_len, 5);
    assert_memory_equal(s, "a\xef\xbf\xbdz", 5);
    free(s);
}

/* ---- markdown (Firecrawl) and plain text ---------------------------------------------- */

static void test_markdown(void **state) {
    (void)state;
    const char md[] = "# Acme Robotics\n"
                      "\n"
                      "- [Home](https://acme.example/)\n"
                      "- [About us](https://acme.example/about)\n"
                      "* [Pricing](/pricing \"Plans\")\n"
                      "\n"
                      "![Hero image](https://acme.example/hero.png)\n"
                      "Acme builds [autonomous robots](https://acme.example/robots) for **warehouses**.\n"
                      "See [the docs][docs] or <https://acme.example/contact> or https://acme.example/x now.\n"
                      "[![badge](https://img.example/b.svg)](https://ci.example) Build status\n"
                      "Nested [link with ![icon](i.png) inside](https://x.example/(paren)) works.\n"
                      "Escaped \\[not a link\\](really) and a lone [bracket.\n"
                      "\n"
                      "| Plan | Price |\n"
                      "|------|:-----:|\n"
                      "| Starter | $999 |\n"
                      "\n"
                      "[docs]: https://acme.example/docs\n"
                      "Privacy Policy | Terms of Service\n"
                      "\t\tTabs   and    spaces  \r\n";
    size_t len = 0;
    char *t = site_markdown_to_text(md, sizeof(md) - 1, 20000, &len);
    assert_non_null(t);
    assert_string_equal(t, "# Acme Robotics\n"
                           "Acme builds autonomous robots for **warehouses**.\n"
                           "See the docs or or now.\n"
                           "Build status\n"
                           "Nested link with inside works.\n"
                           "Escaped [not a link](really) and a lone [bracket.\n"
                           "| Plan | Price |\n"
                           "| Starter | $999 |\n"
                           "Tabs and spaces");
    assert_int_equal(len, strlen(t));
    free(t);
    const char only_chrome[] = "![only](an-image.png)\n\n[Home](/)\n";
    t = site_markdown_to_text(only_chrome, strlen(only_chrome), 100, &len);
    assert_string_equal(t, "");
    free(t);
    /* a line of unmatched brackets costs linear time */
    size_t n = 4 * 1024 * 1024;
    char *brackets = malloc(n);
    memset(brackets, '[', n);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    t = site_markdown_to_text(brackets, n, 100, &len);
    assert_true(seconds_since(&t0) < 10.0);
    assert_int_equal(len, 100);
    free(t);
    free(brackets);
}

static void test_plain(void **state) {
    (void)state;
    const char text[] = "  First line  \n\n\nSecond\tline\r\nCookie Policy\n\xff";
    size_t len;
    char *t = site_plain_to_text(text, sizeof(text) - 1, 1000, &len);
    assert_string_equal(t, "First line\nSecond line\n\xef\xbf\xbd");
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_company_page),
        cmocka_unit_test(test_blocks_and_lines),
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_banners_and_roots),
        cmocka_unit_test(test_boilerplate_lines),
        cmocka_unit_test(test_cap_exact_ascii),
        cmocka_unit_test(test_cap_code_points),
        cmocka_unit_test(test_pathological_nesting),
        cmocka_unit_test(test_not_utf8),
        cmocka_unit_test(test_markdown),
        cmocka_unit_test(test_plain),
    };
    return cmocka_run_group_tests_name("html_text", tests, NULL, NULL);
}
