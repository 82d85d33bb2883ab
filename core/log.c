#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"

#define LOG_FLUSH_AT 16384
#define LOG_CHUNK 4096          /* PIPE_BUF: atomic for pipes */

static struct buf log_buf;
static int log_min_level = LOG_INFO;
static int log_worker_pid;
static uv_prepare_t log_prepare;
static int log_have_loop;
static uint64_t log_dropped_lines;
/* The last write ended inside a line (the disk filled mid-write): the next
 * write starts with a newline, so the fragment is not glued to a new line. */
static int log_mid_line;

/* Length of the well-formed UTF-8 sequence at s[0] (0x80 and above), 0 when
 * it is not one (stray, overlong, surrogate, past U+10FFFF, cut short). */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    size_t n = s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;
    if (n == 0 || n > avail) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] > 0x8f)) {
        return 0;
    }
    return n;
}

/* JSON string content; bytes that are not UTF-8 (a client's %ff in a path)
 * become U+FFFD, so every line stays valid JSON for whatever reads the log. */
int json_escape_append(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t len = utf8_seq((const unsigned char *)s + i, n - i);
            if (len) {
                i += len - 1;
                continue;
            }
            if (buf_append(b, s + start, i - start) < 0 || buf_append(b, "\\ufffd", 6) < 0) {
                return -1;
            }
            start = i + 1;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            continue;
        }
        if (buf_append(b, s + start, i - start) < 0) {
            return -1;
        }
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            elen = 6;
        }
        if (buf_append(b, esc, elen) < 0) {
            return -1;
        }
        start = i + 1;
    }
    return buf_append(b, s + start, n - start);
}

static void log_write_all(void)
{
    while (log_mid_line && buf_pending(&log_buf) > 0) {
        ssize_t w = write(STDERR_FILENO, "\n", 1);
        if (w == 1) {
            log_mid_line = 0;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            break; /* still full: the loop below drops and counts */
        }
    }
    while (buf_pending(&log_buf) > 0) {
        const char *p = buf_head(&log_buf);
        size_t n = buf_pending(&log_buf);
        if (n > LOG_CHUNK) {
            /* end the chunk on a line boundary */
            size_t cut = LOG_CHUNK;
            while (cut > 0 && p[cut - 1] != '\n') {
                cut--;
            }
            n = cut ? cut : LOG_CHUNK;
        }
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            /* Full disk or closed stderr: count what is lost, keep serving. */
            for (size_t i = 0; i < buf_pending(&log_buf); i++) {
                log_dropped_lines += p[i] == '\n';
            }
            buf_reset(&log_buf);
            return;
        }
        log_mid_line = p[w - 1] != '\n';
        buf_consume(&log_buf, (size_t)w);
    }
    buf_reset(&log_buf);
}

void log_flush(void)
{
    log_write_all();
}

uint64_t log_dropped(void)
{
    return log_dropped_lines;
}

static void log_on_prepare(uv_prepare_t *h)
{
    (void)h;
    if (buf_pending(&log_buf) > 0) {
        log_write_all();
    }
}

void log_attach_loop(uv_loop_t *loop)
{
    uv_prepare_init(loop, &log_prepare);
    uv_prepare_start(&log_prepare, log_on_prepare);
    uv_unref((uv_handle_t *)&log_prepare);
    log_have_loop = 1;
}

void log_detach_loop(void)
{
    if (log_have_loop) {
        log_flush();
        uv_prepare_stop(&log_prepare);
        uv_close((uv_handle_t *)&log_prepare, NULL);
        log_have_loop = 0;
    }
}

void log_set_worker(int pid)
{
    log_worker_pid = pid;
}

void log_set_level(int level)
{
    log_min_level = level;
}

int log_level_from_name(const char *name)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static void log_time(struct buf *b)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    buf_printf(b, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"", tm.tm_year + 1900,
               tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    if (log_worker_pid) {
        buf_printf(b, ",\"worker\":%d", log_worker_pid);
    }
}

static void log_str_field(const char *key, const char *val)
{
    buf_printf(&log_buf, ",\"%s\":\"", key);
    json_escape_append(&log_buf, val, strlen(val));
    buf_append(&log_buf, "\"", 1);
}

static void log_end_line(void)
{
    buf_append(&log_buf, "}\n", 2);
    if (!log_have_loop || buf_pending(&log_buf) >= LOG_FLUSH_AT) {
        log_write_all();
    }
}

static const char *level_name(int level)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    return level >= 0 && level <= 3 ? names[level] : "info";
}

void log_vmsg(int level, const char *req_id, const char *module, const char *fmt, va_list ap)
{
    if (level < log_min_level) {
        return;
    }
    char msg[1024];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0) {
        return;
    }
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    log_time(&log_buf);
    log_str_field("level", level_name(level));
    if (module) {
        log_str_field("module", module);
    }
    if (req_id) {
        log_str_field("req_id", req_id);
    }
    buf_append(&log_buf, ",\"msg\":\"", 8);
    json_escape_append(&log_buf, msg, len);
    buf_append(&log_buf, "\"", 1);
    log_end_line();
}

void log_msg(int level, const char *req_id, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, req_id, module, fmt, ap);
    va_end(ap);
}

void log_access(const struct access_entry *e)
{
    if (LOG_INFO < log_min_level) {
        return;
    }
    log_time(&log_buf);
    log_str_field("level", "info");
    log_str_field("req_id", e->req_id ? e->req_id : "-");
    log_str_field("method", e->method ? e->method : "-");
    log_str_field("path", e->path ? e->path : "-");
    buf_printf(&log_buf, ",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f", e->status,
               (unsigned long long)e->bytes, e->duration_ms);
    if (e->client) {
        log_str_field("client", e->client);
    }
    log_end_line();
}
