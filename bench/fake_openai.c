/* A fake OpenAI chat-completions server for benchmarks: answers every POST
 * after a fixed delay with one canned JSON output, keeps connections alive,
 * and holds thousands of calls at once on one libuv loop.  Not a test double
 * for behaviour (tests/fakes/fake_llm.py is): only for measuring gtmd.
 *
 * usage: fake_openai PORT DELAY_MS OUTPUT_JSON_FILE */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

struct client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    char *in;
    size_t len, cap;
    int closing;
};

static uv_loop_t *loop;
static unsigned delay_ms;
static char *answer;       /* the whole HTTP response */
static size_t answer_len;
/* GET: a small company page, at once (the website gtmd reads) */
static const char page_body[] =
    "<html><head><title>Ledgerly</title></head><body><h1>Ledgerly closes your books</h1>"
    "<p>Automated bank reconciliation for mid-market finance teams, in hours.</p></body></html>";
static char page[512];
static size_t page_len;
static unsigned long served;

static void on_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    if (++c->closing == 2) {
        free(c->in);
        free(c);
    }
}

static void client_close(struct client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->timer, on_closed);
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

/* Bytes of the first complete request in c->in, or 0. */
static size_t request_length(struct client *c)
{
    char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
    if (!end) {
        return 0;
    }
    size_t head = (size_t)(end - c->in) + 4;
    size_t body = 0;
    for (char *p = c->in; p < end; p++) {
        if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            body = strtoul(p + 15, NULL, 10);
            break;
        }
    }
    return c->len >= head + body ? head + body : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);

static void on_timer(uv_timer_t *t)
{
    struct client *c = t->data;
    uv_write_t *w = malloc(sizeof *w);
    bool get = c->len >= 4 && memcmp(c->in, "GET ", 4) == 0;
    uv_buf_t b = get ? uv_buf_init(page, (unsigned)page_len) : uv_buf_init(answer, (unsigned)answer_len);
    if (!w || uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
        free(w);
        client_close(c);
        return;
    }
    served++;
    size_t used = request_length(c);
    memmove(c->in, c->in + used, c->len - used);
    c->len -= used;
    if (request_length(c)) {
        uv_timer_start(&c->timer, on_timer, memcmp(c->in, "GET ", 4) == 0 ? 0 : delay_ms, 0);
    } else {
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct client *c = h->data;
    if (c->cap - c->len < 65536) {
        c->cap = c->cap * 2 + 65536;
        c->in = realloc(c->in, c->cap);
    }
    b->base = c->in + c->len;
    b->len = c->cap - c->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct client *c = s->data;
    if (n < 0) {
        client_close(c);
        return;
    }
    c->len += (size_t)n;
    if (request_length(c)) {
        uv_read_stop(s);
        bool get = memcmp(c->in, "GET ", 4) == 0;
        uv_timer_start(&c->timer, on_timer, get ? 0 : delay_ms, 0);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else {
        client_close(c);
    }
}

static void read_file_or_die(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    *len = fread(*out, 1, (size_t)n, f);
    fclose(f);
}

static void on_signal(uv_signal_t *h, int sig)
{
    (void)sig;
    fprintf(stderr, "fake_openai: served %lu\n", served);
    uv_stop(h->loop);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fake_openai PORT DELAY_MS OUTPUT_JSON_FILE\n");
        return 2;
    }
    delay_ms = (unsigned)atoi(argv[2]);
    char *output;
    size_t output_len;
    read_file_or_die(argv[3], &output, &output_len);
    /* the model's output travels as a JSON string inside the completion */
    char *escaped = malloc(output_len * 2 + 1);
    size_t e = 0;
    for (size_t i = 0; i < output_len; i++) {
        char ch = output[i];
        if (ch == '"' || ch == '\\') {
            escaped[e++] = '\\';
            escaped[e++] = ch;
        } else if (ch != '\n' && ch != '\r') {
            escaped[e++] = ch;
        }
    }
    escaped[e] = '\0';
    size_t body_cap = e + 512;
    char *body = malloc(body_cap);
    int body_len = snprintf(body, body_cap,
                            "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"model\":\"bench\","
                            "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},"
                            "\"finish_reason\":\"stop\"}],"
                            "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":100,\"total_tokens\":200}}",
                            escaped);
    answer = malloc((size_t)body_len + 256);
    answer_len = (size_t)snprintf(answer, (size_t)body_len + 256,
                                  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                                  body_len, body);
    page_len = (size_t)snprintf(page, sizeof page,
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                                "Content-Length: %zu\r\n\r\n%s", sizeof page_body - 1, page_body);
    loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    uv_tcp_init(loop, &server);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) || uv_listen((uv_stream_t *)&server, 4096, on_connection)) {
        fprintf(stderr, "fake_openai: cannot listen on port %s\n", argv[1]);
        return 1;
    }
    uv_signal_t sig;
    uv_signal_init(loop, &sig);
    uv_signal_start(&sig, on_signal, SIGTERM);
    fprintf(stderr, "fake_openai: listening on 127.0.0.1:%s, %u ms per answer\n", argv[1], delay_ms);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
