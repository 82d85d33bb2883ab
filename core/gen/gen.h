/* The generation pipeline: website → prompt → LLM → validated output, as one
 * asynchronous call.  Identical concurrent calls share one run; each caller
 * is a waiter that may leave (its client went away), and a run nobody waits
 * for any more is cancelled. */
#ifndef GTM_GEN_H
#define GTM_GEN_H

#include <jansson.h>
#include <uv.h>

#include "gtm/host.h"

struct site;
struct llm;
struct prompts;
struct gen;
struct gen_waiter;

struct gen *gen_new(uv_loop_t *loop, struct site *site, struct llm *llm, const struct prompts *prompts,
                    unsigned timeout_ms);
/* Cancels every run (waiters get GTM_ECANCELED), frees once they are done. */
void gen_close(struct gen *g);

/* Joins or starts the run for call.  progress (may be NULL) and done run on
 * the loop, never from inside gen_start; done exactly once.  0, or -1 when
 * the task is unknown or the call malformed (nothing will run). */
int gen_start(struct gen *g, const struct gtm_gen_call *call, const char *request_id, gtm_gen_progress_fn progress,
              gtm_gen_done_fn done, void *arg, struct gen_waiter **out);
/* The waiter's client has gone: no more progress; done still runs once. */
void gen_leave(struct gen_waiter *w);

/* Runs in flight, and waiters on them (for metrics and tests). */
unsigned gen_runs(const struct gen *g);

#endif
