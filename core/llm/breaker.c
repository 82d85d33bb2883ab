/* Per-provider circuit breaker, as the upstream's: consecutive failures open
 * it; it stays open until the recovery time has passed since the last
 * failure; then every call goes through (HALF_OPEN) until one succeeds
 * (CLOSED) or fails (OPEN again).  Time comes in as an argument so the
 * states can be tested without waiting. */
#include "llm/llm_internal.h"

void breaker_init(struct llm_breaker *b, unsigned threshold, unsigned recovery_s) {
    b->state = LLM_CLOSED;
    b->consecutive_failures = 0;
    b->last_failure_ms = 0;
    b->threshold = threshold ? threshold : 1;
    b->recovery_ms = (uint64_t)recovery_s * 1000;
}

static bool recovered(const struct llm_breaker *b, uint64_t now_ms) {
    return now_ms >= b->last_failure_ms + b->recovery_ms;
}

enum llm_breaker_state breaker_state_at(const struct llm_breaker *b, uint64_t now_ms) {
    if (b->state == LLM_OPEN && recovered(b, now_ms))
        return LLM_HALF_OPEN;
    return b->state;
}

bool breaker_allow(struct llm_breaker *b, uint64_t now_ms) {
    b->state = breaker_state_at(b, now_ms);
    return b->state != LLM_OPEN;
}

void breaker_success(struct llm_breaker *b) {
    b->state = LLM_CLOSED;
    b->consecutive_failures = 0;
}

void breaker_failure(struct llm_breaker *b, uint64_t now_ms) {
    if (b->consecutive_failures < UINT32_MAX)
        b->consecutive_failures++;
    b->last_failure_ms = now_ms;
    /* A failed trial call reopens at once, whatever the count. */
    if (b->state == LLM_HALF_OPEN || b->consecutive_failures >= b->threshold)
        b->state = LLM_OPEN;
}

uint64_t breaker_ms_until_half_open(const struct llm_breaker *b, uint64_t now_ms) {
    if (breaker_state_at(b, now_ms) != LLM_OPEN)
        return 0;
    return b->last_failure_ms + b->recovery_ms - now_ms;
}
