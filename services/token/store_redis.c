/*
 * store_redis.c - refresh tokens, sessions and revocation in Redis.
 * Key layout and guarantees: store_redis.h.
 */
#include "services/token/store_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/log.h"

#define PREFIX "token:"
/* Waiting for a pooled connection and each command are bounded by this:
 * ValidateToken is on every request path and must fail fast. */
#define ACQUIRE_MS 1000
/* Above this many families in an account's set, logging in again drops
 * the dead ones: the set stays small for users who never log out. */
#define PRUNE_AT 32

struct tstore {
	rds_pool *pool;
	long long refresh_ttl_s;
};

/* KEYS: rt:<hash>, acct:<a>:families, fam:<f>
 * ARGV: account, family, ttl, prefix, prune threshold, roles */
static rds_script create_script = { .source =
	"redis.call('SET', KEYS[3], 'active', 'EX', ARGV[3])\n"
	"redis.call('HSET', KEYS[1], 'a', ARGV[1], 'f', ARGV[2], 's', 'active', 'r', ARGV[6])\n"
	"redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
	"if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[5]) then\n"
	"  for _, f in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
	"    if redis.call('GET', ARGV[4] .. 'fam:' .. f) ~= 'active' then\n"
	"      redis.call('SREM', KEYS[2], f)\n"
	"    end\n"
	"  end\n"
	"end\n"
	"redis.call('SADD', KEYS[2], ARGV[2])\n"
	"redis.call('EXPIRE', KEYS[2], ARGV[3])\n"
	"return 1\n" };

/*
 * The whole rotation decision is here, atomically: concurrent refreshes
 * of one token are serialised by Redis, the first rotates and every later
 * one sees "rotated", i.e. a reuse.
 * KEYS: rt:<old>, rt:<new>   ARGV: prefix, ttl, roles ("" = keep)
 * Returns {verdict, account, family, roles}.
 */
static rds_script rotate_script = { .source =
	"local r = redis.call('HMGET', KEYS[1], 'a', 'f', 's', 'r')\n"
	"if not r[1] or not r[2] or not r[3] then return {'unknown'} end\n"
	"local fk = ARGV[1] .. 'fam:' .. r[2]\n"
	"if redis.call('GET', fk) ~= 'active' then return {'revoked', r[1], r[2]} end\n"
	"if r[3] ~= 'active' then\n"
	"  redis.call('SET', fk, 'revoked', 'KEEPTTL')\n"
	"  return {'reused', r[1], r[2]}\n"
	"end\n"
	/* HSET keeps the old record's TTL: it is remembered as rotated for
	 * as long as it would have been valid. */
	"redis.call('HSET', KEYS[1], 's', 'rotated')\n"
	"local roles = ARGV[3]\n"
	"if roles == '' then roles = r[4] or '' end\n"
	"redis.call('HSET', KEYS[2], 'a', r[1], 'f', r[2], 's', 'active', 'r', roles)\n"
	"redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
	"redis.call('EXPIRE', fk, ARGV[2])\n"
	"redis.call('EXPIRE', ARGV[1] .. 'acct:' .. r[1] .. ':families', ARGV[2])\n"
	"return {'rotated', r[1], r[2], roles}\n" };

/* KEYS: rt:<hash>   ARGV: prefix */
static rds_script revoke_refresh_script = { .source =
	"local f = redis.call('HGET', KEYS[1], 'f')\n"
	"if not f then return 0 end\n"
	"redis.call('SET', ARGV[1] .. 'fam:' .. f, 'revoked', 'XX', 'KEEPTTL')\n"
	"return 1\n" };

/* KEYS: acct:<a>:families, acct:<a>:nbf
 * ARGV: prefix, kept session ("" = none), now, nbf ttl */
static rds_script revoke_account_script = { .source =
	"local n = 0\n"
	"for _, f in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
	"  if f ~= ARGV[2] then\n"
	"    if redis.call('SET', ARGV[1] .. 'fam:' .. f, 'revoked', 'XX', 'KEEPTTL') then\n"
	"      n = n + 1\n"
	"    end\n"
	"    redis.call('SREM', KEYS[1], f)\n"
	"  end\n"
	"end\n"
	"redis.call('SET', KEYS[2], ARGV[3] .. '|' .. ARGV[2], 'EX', ARGV[4])\n"
	"return n\n" };

tstore *tstore_new(rds_pool *pool, long long refresh_ttl_s)
{
	tstore *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->pool = pool;
	st->refresh_ttl_s = refresh_ttl_s;
	return st;
}

void tstore_free(tstore *st)
{
	free(st);
}

bool tstore_ping(void *user)
{
	tstore *st = user;

	return rds_ping(st->pool);
}

/* Runs a script on a pooled connection. Returns the reply or NULL with
 * *code set; a Redis error reply becomes RPC_INTERNAL (logged). */
static redisReply *run_script(tstore *st, rds_script *s, int nkeys, int argc,
			      const char **argv, rpc_code *code)
{
	redisContext *c = rds_acquire(st->pool, ACQUIRE_MS, code);
	redisReply *r;

	if (!c)
		return NULL;
	r = rds_eval(c, s, nkeys, argc, argv, NULL, code);
	rds_release(st->pool, c);
	if (r && r->type == REDIS_REPLY_ERROR) {
		rpc_log(RPC_LOG_ERROR, "store", "redis script failed: %s",
			r->str);
		freeReplyObject(r);
		*code = RPC_INTERNAL;
		return NULL;
	}
	return r;
}

static redisReply *run_command(tstore *st, int argc, const char **argv,
			       rpc_code *code)
{
	redisContext *c = rds_acquire(st->pool, ACQUIRE_MS, code);
	redisReply *r;

	if (!c)
		return NULL;
	r = rds_command(c, argc, argv, NULL, code);
	rds_release(st->pool, c);
	if (r && r->type == REDIS_REPLY_ERROR) {
		rpc_log(RPC_LOG_ERROR, "store", "redis %s failed: %s", argv[0],
			r->str);
		freeReplyObject(r);
		*code = RPC_INTERNAL;
		return NULL;
	}
	return r;
}

static rpc_code unexpected(redisReply *r, const char *what)
{
	rpc_log(RPC_LOG_ERROR, "store", "unexpected redis reply to %s (type %d)",
		what, r->type);
	freeReplyObject(r);
	return RPC_INTERNAL;
}

rpc_code tstore_create_family(tstore *st, const char *account_id,
			      const char *family, const char *rt_hash,
			      const char *roles)
{
	char k_rt[96], k_set[128], k_fam[96], ttl[24], prune[16];
	const char *argv[9] = { k_rt, k_set, k_fam, account_id, family, ttl,
				PREFIX, prune, roles };
	rpc_code code = RPC_OK;
	redisReply *r;

	snprintf(k_rt, sizeof(k_rt), PREFIX "rt:%s", rt_hash);
	snprintf(k_set, sizeof(k_set), PREFIX "acct:%s:families", account_id);
	snprintf(k_fam, sizeof(k_fam), PREFIX "fam:%s", family);
	snprintf(ttl, sizeof(ttl), "%lld", st->refresh_ttl_s);
	snprintf(prune, sizeof(prune), "%d", PRUNE_AT);
	r = run_script(st, &create_script, 3, 9, argv, &code);
	if (!r)
		return code;
	if (r->type != REDIS_REPLY_INTEGER)
		return unexpected(r, "create family");
	freeReplyObject(r);
	return RPC_OK;
}

static void copy_elem(const redisReply *e, char *out, size_t cap)
{
	size_t n = 0;

	if (e->type == REDIS_REPLY_STRING) {
		n = e->len < cap - 1 ? e->len : cap - 1;
		memcpy(out, e->str, n);
	}
	out[n] = '\0';
}

rpc_code tstore_rotate(tstore *st, const char *old_hash, const char *new_hash,
		       const char *roles_in, tstore_rotation *res,
		       char *account_id, char *family, char *roles_out)
{
	static const struct {
		const char *name;
		tstore_rotation v;
	} verdicts[] = {
		{ "rotated", TSTORE_ROTATED },
		{ "unknown", TSTORE_UNKNOWN },
		{ "revoked", TSTORE_REVOKED },
		{ "reused", TSTORE_REUSED },
	};
	char k_old[96], k_new[96], ttl[24];
	const char *argv[5] = { k_old, k_new, PREFIX, ttl, roles_in };
	rpc_code code = RPC_OK;
	redisReply *r, *e;

	snprintf(k_old, sizeof(k_old), PREFIX "rt:%s", old_hash);
	snprintf(k_new, sizeof(k_new), PREFIX "rt:%s", new_hash);
	snprintf(ttl, sizeof(ttl), "%lld", st->refresh_ttl_s);
	r = run_script(st, &rotate_script, 2, 5, argv, &code);
	if (!r)
		return code;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return unexpected(r, "rotate");
	e = r->element[0];
	account_id[0] = family[0] = roles_out[0] = '\0';
	for (size_t i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++) {
		if (strcmp(e->str, verdicts[i].name) != 0)
			continue;
		*res = verdicts[i].v;
		if (r->elements >= 3) {
			copy_elem(r->element[1], account_id, TSTORE_ID_MAX);
			copy_elem(r->element[2], family, TSTORE_ID_MAX);
		}
		if (r->elements >= 4)
			copy_elem(r->element[3], roles_out, TSTORE_ROLES_MAX);
		freeReplyObject(r);
		return RPC_OK;
	}
	return unexpected(r, "rotate");
}

/* "<unix seconds>|<kept session>" of an account's not-before key. */
static bool refused_by_nbf(const redisReply *e, long long iat, const char *sid)
{
	char buf[TSTORE_ID_MAX + 32];
	char *bar, *end;
	long long nbf;

	if (e->type != REDIS_REPLY_STRING || e->len >= sizeof(buf))
		return false;
	memcpy(buf, e->str, e->len);
	buf[e->len] = '\0';
	bar = strchr(buf, '|');
	if (!bar)
		return false;
	*bar = '\0';
	nbf = strtoll(buf, &end, 10);
	if (end == buf || *end != '\0')
		return false;
	if (iat >= nbf)
		return false;
	/* The session the revoking caller kept (its own) lives on. */
	return !(bar[1] != '\0' && sid && strcmp(bar + 1, sid) == 0);
}

rpc_code tstore_check_access(tstore *st, const char *jti,
			     const char *account_id, const char *sid,
			     long long iat, tstore_verdict *v)
{
	char k_deny[96], k_nbf[128], k_fam[96];
	const char *argv[4] = { "MGET", k_deny, k_nbf, k_fam };
	int argc = account_id ? 4 : 2;
	rpc_code code = RPC_OK;
	redisReply *r;

	snprintf(k_deny, sizeof(k_deny), PREFIX "deny:%s", jti);
	if (account_id) {
		snprintf(k_nbf, sizeof(k_nbf), PREFIX "acct:%s:nbf", account_id);
		snprintf(k_fam, sizeof(k_fam), PREFIX "fam:%s", sid ? sid : "");
	}
	r = run_command(st, argc, argv, &code);
	if (!r)
		return code;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)(argc - 1))
		return unexpected(r, "MGET");
	*v = TSTORE_VALID;
	if (r->element[0]->type != REDIS_REPLY_NIL) {
		*v = TSTORE_DENIED;
	} else if (account_id) {
		const redisReply *fam = r->element[2];

		/* A session that is gone counts as revoked: a family outlives
		 * every token it issued, so this only happens when Redis lost
		 * data, and then refusing is the safe answer. */
		if (fam->type != REDIS_REPLY_STRING || fam->len != 6 ||
		    memcmp(fam->str, "active", 6) != 0)
			*v = TSTORE_SESSION_REVOKED;
		else if (refused_by_nbf(r->element[1], iat, sid))
			*v = TSTORE_ACCOUNT_REVOKED;
	}
	freeReplyObject(r);
	return RPC_OK;
}

rpc_code tstore_deny(tstore *st, const char *jti, long long ttl_s)
{
	char key[96], ttl[24];
	const char *argv[5] = { "SET", key, "1", "EX", ttl };
	rpc_code code = RPC_OK;
	redisReply *r;

	snprintf(key, sizeof(key), PREFIX "deny:%s", jti);
	snprintf(ttl, sizeof(ttl), "%lld", ttl_s < 1 ? 1 : ttl_s);
	r = run_command(st, 5, argv, &code);
	if (!r)
		return code;
	if (r->type != REDIS_REPLY_STATUS)
		return unexpected(r, "SET deny");
	freeReplyObject(r);
	return RPC_OK;
}

rpc_code tstore_revoke_refresh(tstore *st, const char *rt_hash, bool *found)
{
	char k_rt[96];
	const char *argv[2] = { k_rt, PREFIX };
	rpc_code code = RPC_OK;
	redisReply *r;

	snprintf(k_rt, sizeof(k_rt), PREFIX "rt:%s", rt_hash);
	r = run_script(st, &revoke_refresh_script, 1, 2, argv, &code);
	if (!r)
		return code;
	if (r->type != REDIS_REPLY_INTEGER)
		return unexpected(r, "revoke refresh");
	*found = r->integer == 1;
	freeReplyObject(r);
	return RPC_OK;
}

rpc_code tstore_revoke_account(tstore *st, const char *account_id,
			       const char *keep_sid, long long now,
			       long long nbf_ttl_s, int *n_revoked)
{
	char k_set[128], k_nbf[128], s_now[24], s_ttl[24];
	const char *argv[6] = { k_set, k_nbf, PREFIX, keep_sid, s_now, s_ttl };
	rpc_code code = RPC_OK;
	redisReply *r;

	snprintf(k_set, sizeof(k_set), PREFIX "acct:%s:families", account_id);
	snprintf(k_nbf, sizeof(k_nbf), PREFIX "acct:%s:nbf", account_id);
	snprintf(s_now, sizeof(s_now), "%lld", now);
	snprintf(s_ttl, sizeof(s_ttl), "%lld", nbf_ttl_s < 1 ? 1 : nbf_ttl_s);
	r = run_script(st, &revoke_account_script, 2, 6, argv, &code);
	if (!r)
		return code;
	if (r->type != REDIS_REPLY_INTEGER)
		return unexpected(r, "revoke account");
	if (n_revoked)
		*n_revoked = (int)r->integer;
	freeReplyObject(r);
	return RPC_OK;
}
