/* SQL fragments that build each entity's upstream response object, with the
 * upstream's key order (json_build_object keeps it) and timestamp format. */
#ifndef GTM_CRUD_SQL_H
#define GTM_CRUD_SQL_H

#define SQL_COMPANY_JSON(t)                                                                       \
    "json_build_object('name'," t ".name,'url'," t ".url,'data'," t ".data,'id'," t ".id,"       \
    "'user_id'," t ".user_id,'created_at',gtm_ts(" t ".created_at),'updated_at',gtm_ts(" t       \
    ".updated_at))"

#define SQL_ACCOUNT_JSON(t)                                                                       \
    "json_build_object('name'," t ".name,'data'," t ".data,'id'," t ".id,'company_id'," t        \
    ".company_id,'created_at',gtm_ts(" t ".created_at),'updated_at',gtm_ts(" t ".updated_at))"

#define SQL_PERSONA_JSON(t)                                                                       \
    "json_build_object('name'," t ".name,'data'," t ".data,'id'," t ".id,'account_id'," t        \
    ".account_id,'created_at',gtm_ts(" t ".created_at),'updated_at',gtm_ts(" t ".updated_at))"

#define SQL_CAMPAIGN_JSON(t)                                                                      \
    "json_build_object('name'," t ".name,'type'," t ".type,'data'," t ".data,'id'," t ".id,"     \
    "'account_id'," t ".account_id,'persona_id'," t ".persona_id,'created_at',gtm_ts(" t          \
    ".created_at),'updated_at',gtm_ts(" t ".updated_at))"

/* A JSON array of row objects in the stable list order. */
#define SQL_JSON_LIST(json_expr, from_where)                                                      \
    "SELECT coalesce(json_agg(j ORDER BY ca, id), '[]')::text FROM (SELECT " json_expr " AS j, "  \
    "x.created_at AS ca, x.id FROM " from_where ") s"

#endif
