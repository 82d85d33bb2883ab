/* An in-process gtmd worker for the HTTP fuzz targets: the real server
 * (config_load, server_init, modules, listeners on loopback ports the kernel
 * picks), driven one loopback connection per input.  Nothing in the server
 * is replaced; the harness only owns the loop and is the client. */
#ifndef GTM_FUZZ_SERVER_H
#define GTM_FUZZ_SERVER_H

#include <stdbool.h>
#include <stddef.h>

/* Settings the harness overrides on top of its defaults (GTM_* names). */
struct fuzz_env {
    const char *name;
    const char *value;
};

/* Starts the server once, with module_dir and the extra settings (NULL
 * terminated, may be NULL).  Exits the process when the server refuses. */
void fuzz_server_start(const char *module_dir, const struct fuzz_env *extra);

struct fuzz_reply {
    char *data;          /* everything the server sent (capped at FUZZ_REPLY_CAP) */
    size_t len;
    size_t total;        /* bytes received, past the cap too */
    bool eof;            /* the server closed with a FIN */
    bool reset;          /* the server reset the connection */
    size_t unsent;       /* input the server never took (it closed first) */
};
#define FUZZ_REPLY_CAP (64u << 20)   /* 4 KiB of pipelined GET /openapi.json is ~20 MiB */

struct fuzz_send {
    bool admin;          /* to the admin listener instead of the public one */
    size_t chunk;        /* 0: write everything at once; else in writes of this many bytes, the server reading between them */
    bool half_close;     /* shut the write side once everything is sent */
};

/* One connection: sends data, reads until the server closes, then waits
 * until the server has released the connection.  A hang is a libFuzzer
 * timeout.  out is reused between calls (data kept allocated). */
void fuzz_exchange(const void *data, size_t len, const struct fuzz_send *how, struct fuzz_reply *out);

/* Connections the server holds (0 between exchanges). */
unsigned fuzz_server_conns(void);

/* ---- checking the answers ------------------------------------------------ */

#define FUZZ_MAX_MSGS 4096

/* The requests in a byte stream as llhttp reads them: how many began, and
 * the method of each whose headers completed (-1 when they did not). */
struct fuzz_requests {
    unsigned begun;
    int method[FUZZ_MAX_MSGS];
};
void fuzz_parse_requests(const void *data, size_t len, struct fuzz_requests *out);

struct fuzz_response {
    int status;
    char content_type[64];
    bool has_request_id;
    bool close;                  /* "connection: close" */
};

struct fuzz_responses {
    unsigned n;                  /* final (non-1xx) responses */
    unsigned interim;            /* 1xx responses */
    struct fuzz_response r[FUZZ_MAX_MSGS];
    char why[160];               /* set when the reply is not well-formed */
    char *body;                  /* the first final response's body, de-chunked, NUL-terminated */
    size_t body_len;
};

/* Parses a reply as a sequence of HTTP/1.1 responses to reqs (HEAD answers
 * carry no body).  0 when every byte belongs to a complete response; -1 with
 * why otherwise.  out->body is malloc'd (or NULL): free it. */
int fuzz_parse_responses(const struct fuzz_reply *reply, const struct fuzz_requests *reqs,
                         struct fuzz_responses *out);

/* Prints why and the exchange to stderr, then aborts (a libFuzzer crash). */
_Noreturn void fuzz_fail(const char *why, const void *in, size_t inlen, const struct fuzz_reply *reply);

#endif
