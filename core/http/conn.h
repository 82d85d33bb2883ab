/* One client connection: reads (through TLS when the listener has it), parses
 * with llhttp one request at a time, answers in order, and closes politely. */
#ifndef GTM_CONN_H
#define GTM_CONN_H

#include <llhttp.h>
#include <stdbool.h>
#include <uv.h>

#include "util/buf.h"

struct server;
struct listener;
struct gtm_req;
struct tls_session;

enum conn_phase {
    PHASE_FIRST = 0,    /* accepted, no byte yet */
    PHASE_IDLE,         /* keep-alive, between requests */
    PHASE_HEADERS,      /* a request has begun */
    PHASE_BODY,
    PHASE_BUSY,         /* a request is being answered */
    PHASE_LINGER,       /* answered and shut down; discarding input until EOF */
    PHASE_CLOSED,
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct server *srv;
    struct conn *prev, *next;
    llhttp_t parser;
    struct tls_session *tls;
    struct buf in;              /* plaintext not parsed yet */
    struct gtm_req *req;        /* being parsed or answered */
    size_t write_pending;       /* bytes handed to uv_write and not yet written */
    uint8_t phase;
    uint8_t open_handles;
    bool reading;
    bool driving, redrive;
    bool peer_eof;
    bool want_close;            /* close after the current answer */
    bool admin;                 /* accepted on the admin listener */
    char peer[48];
};

/* Accepts one pending connection on l (or refuses it politely at the cap). */
void conn_accept(struct listener *l);
/* Queues plaintext for the client. */
void conn_send(struct conn *c, const char *data, size_t len);
/* The answer to r is queued: go on with the next request or close. */
void conn_request_done(struct conn *c, struct gtm_req *r);
/* Shutdown: close now when idle, after the current answer otherwise. */
void conn_drain(struct conn *c);
/* Closes at once, dropping anything unsent. */
void conn_abort(struct conn *c);

#endif
