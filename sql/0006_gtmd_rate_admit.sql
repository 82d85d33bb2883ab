-- The rate-limit decision in one round trip: the counters' rows claimed and
-- locked in key order, then checked and bumped together (only when every one
-- is under its limit), inside one statement's transaction. The module used to
-- send the two statements as BEGIN, claim, decide, COMMIT: four round trips
-- while holding the row locks.

CREATE OR REPLACE FUNCTION gtm_rate_admit(p_buckets text[], p_user uuid, p_kinds text[], p_lim_free int[],
 p_lim_pro int[], p_lim_enterprise int[], p_window int)
RETURNS TABLE (r_admin bool, r_tier text, r_admitted bool, r_bumped bigint, r_ord bigint, r_lim int,
 r_used int, r_reset bigint, r_reset_in bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    INSERT INTO gtm_rate_counters AS c (bucket, count, reset_at) SELECT b, 0, '-infinity' FROM unnest(p_buckets::text[]) AS b WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = p_user::uuid AND u.role IN ('admin', 'super_admin')) ORDER BY b
       ON CONFLICT (bucket) DO UPDATE SET count = c.count WHERE false;

    RETURN QUERY WITH now_ AS (SELECT clock_timestamp() AS t),
       who AS (SELECT coalesce((SELECT u.role IN ('admin', 'super_admin') FROM users u WHERE u.id = p_user::uuid), false) AS admin, coalesce((SELECT t.tier FROM gtm_user_tiers t WHERE t.user_id = p_user::uuid), 'free') AS tier),
       want AS (SELECT x.ord, x.bucket, x.kind, CASE who.tier WHEN 'pro' THEN x.lim_pro WHEN 'enterprise' THEN x.lim_enterprise ELSE x.lim_free END AS lim FROM who, unnest(p_buckets::text[], p_kinds::text[], p_lim_free::int[], p_lim_pro::int[], p_lim_enterprise::int[]) WITH ORDINALITY AS x(bucket, kind, lim_free, lim_pro, lim_enterprise, ord)),
       cur AS (SELECT w.ord, w.bucket, w.lim, CASE WHEN c.reset_at > n.t THEN c.count ELSE 0 END AS used, CASE WHEN c.reset_at > n.t THEN c.reset_at WHEN w.kind = 'day' THEN (date_trunc('day', n.t AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC' WHEN w.kind = 'month' THEN (date_trunc('month', n.t AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC' ELSE n.t + make_interval(secs => p_window::int) END AS reset_at FROM want w JOIN gtm_rate_counters c ON c.bucket = w.bucket CROSS JOIN now_ n),
       verdict AS (SELECT NOT who.admin AND (SELECT count(*) FROM cur) = cardinality(p_buckets::text[]) AND coalesce((SELECT bool_and(cur.used < cur.lim) FROM cur), false) AS admitted FROM who),
       bumped AS (UPDATE gtm_rate_counters c SET count = cur.used + 1, reset_at = cur.reset_at FROM cur, verdict WHERE verdict.admitted AND c.bucket = cur.bucket RETURNING c.bucket)
       SELECT who.admin::bool, who.tier::text, verdict.admitted::bool, (SELECT count(*) FROM bumped)::bigint,
               cur.ord::bigint, cur.lim::int, cur.used::int, ceil(extract(epoch FROM cur.reset_at))::bigint,
               ceil(extract(epoch FROM cur.reset_at - n.t))::bigint
       FROM who CROSS JOIN verdict CROSS JOIN now_ n LEFT JOIN cur ON true ORDER BY cur.ord;
END
$fn$;
