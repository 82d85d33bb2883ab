/* Server-side TLS with mbedTLS 2.28 over memory buffers: the connection feeds
 * the ciphertext it read and sends the ciphertext the session produced; no
 * socket is ever touched here.  TLS 1.2, AEAD suites only, ALPN http/1.1. */
#ifndef GTM_TLS_H
#define GTM_TLS_H

#include <stddef.h>

struct tls_ctx;          /* certificate, key, config: one per listener */
struct tls_session;      /* one per connection */

/* Loads cert_file (PEM chain) and key_file (PEM).  NULL on failure with a
 * one-line reason naming the file written into err. */
struct tls_ctx *tls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);

struct tls_session *tls_session_new(struct tls_ctx *ctx);
void tls_session_free(struct tls_session *s);

enum tls_status {
    TLS_OK = 0,          /* progressed as far as the input allows */
    TLS_CLOSED = 1,      /* the peer sent close_notify */
    TLS_ERROR = -1,      /* fatal: send what is pending, then close */
};

/* Appends ciphertext that arrived from the peer. */
int tls_session_feed(struct tls_session *s, const char *data, size_t len);

/* Drives the handshake and decrypts whatever the fed input allows, calling
 * on_plain for each chunk of application data.  Afterwards there may be
 * ciphertext to send (tls_session_out). */
int tls_session_read(struct tls_session *s,
                     void (*on_plain)(void *arg, const char *data, size_t len), void *arg);

/* Encrypts application data into the outgoing buffer.  Only valid once the
 * handshake is done. */
int tls_session_write(struct tls_session *s, const char *data, size_t len);

/* Queues a close_notify alert. */
void tls_session_close_notify(struct tls_session *s);

/* Ciphertext waiting to be sent: *data and its length.  After sending it,
 * call tls_session_out_consumed(s, len). */
size_t tls_session_out(struct tls_session *s, const char **data);
void tls_session_out_consumed(struct tls_session *s, size_t len);

int tls_session_handshake_done(const struct tls_session *s);
/* The last error as text (for the log), or "" */
const char *tls_session_error(const struct tls_session *s);

#endif
