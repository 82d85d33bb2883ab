/* Runs a function on a later turn of the loop: for callbacks that a contract
 * says never run from inside the call that started them. */
#ifndef GTM_DEFER_H
#define GTM_DEFER_H

#include <uv.h>

/* 0, or -1 when memory ran out (fn will not run). */
int defer_call(uv_loop_t *loop, void (*fn)(void *arg), void *arg);

#endif
