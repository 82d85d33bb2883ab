/* Shared between tls_ctx.c and tls_session.c; not part of the interface. */
#ifndef GTM_TLS_INTERNAL_H
#define GTM_TLS_INTERNAL_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

/* Sessions keep pointers into conf (and through it into everything else), so
 * a ctx must outlive every session created from it. */
struct tls_ctx {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;          /* handshakes and records */
    mbedtls_ctr_drbg_context ticket_drbg;   /* ticket key rotation only */
    mbedtls_x509_crt chain;
    mbedtls_pk_context key;
    mbedtls_ssl_ticket_context tickets;
    mbedtls_ssl_config conf;
};

#endif
