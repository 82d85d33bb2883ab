/* Logging: one JSON object per line on stderr.  Lines are buffered and
 * written just before the loop waits for I/O (or when the buffer fills), in whole lines, so
 * busy loops pay one write(2) for many requests and workers sharing stderr do
 * not interleave within a line. */
#ifndef GTM_LOG_H
#define GTM_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Without a loop, every line is written at once (start-up, tools). */
void log_attach_loop(uv_loop_t *loop);
void log_detach_loop(void);
void log_set_level(int level);
/* Under a master, each line names the worker that wrote it. */
void log_set_worker(int pid);
int log_level_from_name(const char *name);   /* -1 when unknown */

/* One event line: {"time"[,"worker"],"level","msg"[,"req_id"][,"module"]}. */
void log_msg(int level, const char *req_id, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_vmsg(int level, const char *req_id, const char *module, const char *fmt, va_list ap);

struct access_entry {
    const char *req_id;
    const char *method;
    const char *path;
    int status;
    uint64_t bytes;
    double duration_ms;
    const char *client;
};
void log_access(const struct access_entry *e);

void log_flush(void);
/* Lines dropped because stderr could not take them (disk full, closed). */
uint64_t log_dropped(void);

/* Appends s as a JSON string body (without quotes) to the log buffer format;
 * exposed for the JSON builders that need the same escaping. */
struct buf;
int json_escape_append(struct buf *b, const char *s, size_t n);

#endif
