/*
 * service.c - AuthService handlers. See service.h.
 */
#include "service.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "estore/auth/v1/auth.rpc.h"
#include "rpc/log.h"
#include "rpc/loop.h"
#include "services/common/clientaddr.h"

/* Input limits checked before anything else: far above any legitimate
 * value, low enough that nobody makes us hash or forward megabytes. An
 * email is at most 254 bytes (RFC 5321 path limit); display names are
 * 100 characters (account service), at most 4 bytes each; 128 characters
 * of password are at most 512 bytes, and 1024 leaves room for a client
 * that allowed longer ones; refresh tokens are short base64url strings. */
#define EMAIL_MAX_BYTES 254
#define DISPLAY_NAME_MAX_BYTES 400
#define PASSWORD_MAX_BYTES 1024
#define TOKEN_MAX_BYTES 512

/* How long before the caller's deadline a wait for a hashing slot ends. */
#define GATE_MARGIN_NS 100000000LL
#define GATE_IDLE_RELEASE_NS 2000000000LL

#define MSG_BAD_LOGIN "invalid email or password"
#define COMPONENT "auth"

/* ---- the hashing gate: a counting semaphore with a deadline ---------- */

typedef struct hash_gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;    /* CLOCK_MONOTONIC, the clock of rpc_now_ns */
	int slots;
	int free_slots;
	int waiting;
	/* argon2 keeps the memory of finished computations for the next
	 * ones (password.c); the janitor gives it back once hashing has been
	 * idle for GATE_IDLE_RELEASE_NS. Releasing at every idle instant
	 * instead made the kernel zero 19 MiB again for most logins. */
	bool memory_kept;
	long long idle_since;
	bool stopping;
	pthread_cond_t janitor_cv;
	pthread_t janitor;
} hash_gate;

struct auth_service {
	auth_service_config cfg;
	clients *cl;
	throttle *th;
	const pw_denylist *deny;
	hash_gate gate;
	/* Verified instead of a real hash when the email is unknown, so both
	 * outcomes cost one argon2 run with the configured parameters. */
	char dummy_hash[PW_HASH_MAX];
};

static bool gate_idle(const hash_gate *g)
{
	return g->free_slots == g->slots && g->waiting == 0;
}

static void *gate_janitor(void *arg)
{
	hash_gate *g = arg;

	pthread_mutex_lock(&g->mu);
	while (!g->stopping) {
		long long wake = rpc_now_ns() + GATE_IDLE_RELEASE_NS / 2;
		struct timespec ts = { wake / 1000000000LL, wake % 1000000000LL };

		pthread_cond_timedwait(&g->janitor_cv, &g->mu, &ts);
		if (g->memory_kept && gate_idle(g) &&
		    rpc_now_ns() - g->idle_since >= GATE_IDLE_RELEASE_NS) {
			pw_memory_release();
			g->memory_kept = false;
		}
	}
	pthread_mutex_unlock(&g->mu);
	return NULL;
}

static int gate_init(hash_gate *g, int slots)
{
	pthread_condattr_t ca;
	int rc;

	g->slots = slots;
	g->free_slots = slots;
	g->waiting = 0;
	g->memory_kept = false;
	g->stopping = false;
	if (pthread_mutex_init(&g->mu, NULL) != 0)
		return RPC_ERR_NOMEM;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&g->cv, &ca);
	if (rc == 0 && (rc = pthread_cond_init(&g->janitor_cv, &ca)) != 0)
		pthread_cond_destroy(&g->cv);
	pthread_condattr_destroy(&ca);
	if (rc != 0) {
		pthread_mutex_destroy(&g->mu);
		return RPC_ERR_NOMEM;
	}
	if (pthread_create(&g->janitor, NULL, gate_janitor, g) != 0) {
		pthread_cond_destroy(&g->janitor_cv);
		pthread_cond_destroy(&g->cv);
		pthread_mutex_destroy(&g->mu);
		return RPC_ERR_NOMEM;
	}
	return 0;
}

static void gate_dispose(hash_gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->stopping = true;
	pthread_cond_signal(&g->janitor_cv);
	pthread_mutex_unlock(&g->mu);
	pthread_join(g->janitor, NULL);
	pw_memory_release();
	pthread_cond_destroy(&g->janitor_cv);
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
}

/*
 * Takes a slot, waiting until the call's deadline or max_wait_ms, whichever
 * comes first. Waits in slices so a caller that went away stops queueing.
 * True when a slot was taken (give it back with gate_leave).
 */
static bool gate_enter(hash_gate *g, rpc_ctx *ctx, long long max_wait_ms)
{
	long long now = rpc_now_ns();
	long long until = now + max_wait_ms * 1000000LL;
	long long deadline = ctx != NULL ? rpc_ctx_deadline(ctx) : 0;
	bool ok = false;

	/* Give up a little before the caller's deadline, so the caller hears
	 * "server busy" rather than a bare DEADLINE_EXCEEDED. */
	if (deadline > 0 && deadline - GATE_MARGIN_NS < until)
		until = deadline - GATE_MARGIN_NS;
	pthread_mutex_lock(&g->mu);
	for (;;) {
		if (g->free_slots > 0) {
			g->free_slots--;
			ok = true;
			break;
		}
		now = rpc_now_ns();
		if (now >= until || (ctx != NULL && rpc_ctx_cancelled(ctx)))
			break;
		long long wake = now + 100000000LL; /* 100 ms slices */
		struct timespec ts;

		if (wake > until)
			wake = until;
		ts.tv_sec = wake / 1000000000LL;
		ts.tv_nsec = wake % 1000000000LL;
		g->waiting++;
		pthread_cond_timedwait(&g->cv, &g->mu, &ts);
		g->waiting--;
	}
	pthread_mutex_unlock(&g->mu);
	return ok;
}

static void gate_leave(hash_gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->free_slots++;
	g->memory_kept = true;
	if (gate_idle(g))
		g->idle_since = rpc_now_ns();
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* ---- small helpers --------------------------------------------------- */

static auth_service *svc_of(rpc_ctx *ctx)
{
	return rpc_ctx_user(ctx);
}

/* Checks a text field: required (non-empty), at most max bytes, valid
 * UTF-8. Returns RPC_OK or INVALID_ARGUMENT with a "field: ..." message. */
static rpc_code check_text(rpc_ctx *ctx, const char *field, const char *s,
			   size_t max, bool required)
{
	size_t len = s != NULL ? strlen(s) : 0;

	if (len == 0)
		return required ? rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
						 "%s: required", field) : RPC_OK;
	if (len > max)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "%s: too long (at most %zu bytes)", field,
				     max);
	if (pw_utf8_chars(s, len) < 0)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "%s: not valid UTF-8", field);
	return RPC_OK;
}

/* Refresh tokens are opaque printable ASCII (base64url); anything else
 * cannot be one, and must not travel to the token service or its logs. */
static rpc_code check_token(rpc_ctx *ctx, const char *field, const char *s,
			    bool required)
{
	size_t len = s != NULL ? strlen(s) : 0;

	if (len == 0)
		return required ? rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
						 "%s: required", field) : RPC_OK;
	if (len > TOKEN_MAX_BYTES)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "%s: too long", field);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7F)
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "%s: malformed", field);
	return RPC_OK;
}

static rpc_code check_new_password(auth_service *s, rpc_ctx *ctx,
				   const char *field, const char *pw)
{
	size_t len = pw != NULL ? strlen(pw) : 0;

	/* Counting code points of a megabyte is cheap, but say "too long"
	 * for it the same way as for 129 characters. */
	switch (len > PASSWORD_MAX_BYTES ? PW_BAD_LENGTH :
		pw_check_policy(s->deny, pw != NULL ? pw : "", len)) {
	case PW_OK:
		return RPC_OK;
	case PW_BAD_UTF8:
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "%s: not valid UTF-8", field);
	case PW_BAD_LENGTH:
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "%s: must be %d to %d characters", field,
				     PW_MIN_CHARS, PW_MAX_CHARS);
	case PW_TOO_COMMON:
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "%s: too common; choose another", field);
	}
	return rpc_ctx_error(ctx, RPC_INTERNAL, "internal error");
}

/*
 * Maps a dependency failure that the handler does not pass through: a
 * dependency that is down or slow is the caller's business (UNAVAILABLE,
 * DEADLINE_EXCEEDED, CANCELLED); anything else is ours, logged with its
 * detail and answered INTERNAL without it.
 */
static rpc_code dep_error(rpc_ctx *ctx, const char *dep, rpc_code code,
			  const rpc_status *st)
{
	switch (code) {
	case RPC_UNAVAILABLE:
		return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "%s unavailable", dep);
	case RPC_DEADLINE_EXCEEDED:
		return rpc_ctx_error(ctx, RPC_DEADLINE_EXCEEDED,
				     "deadline exceeded");
	case RPC_CANCELLED:
		return rpc_ctx_error(ctx, RPC_CANCELLED, "cancelled");
	default:
		rpc_log(RPC_LOG_ERROR, COMPONENT, "%s: %s failed: %s: %s",
			rpc_ctx_method(ctx), dep, rpc_code_name(code),
			st != NULL && st->message != NULL ? st->message : "");
		return rpc_ctx_error(ctx, RPC_INTERNAL, "internal error");
	}
}

/* Passes a downstream status on as it is (its message is written for
 * callers). */
static rpc_code pass(rpc_ctx *ctx, rpc_code code, const rpc_status *st)
{
	return rpc_ctx_error(ctx, code, "%s",
			     st->message != NULL ? st->message :
						   rpc_code_name(code));
}

static rpc_code busy(rpc_ctx *ctx)
{
	if (rpc_ctx_cancelled(ctx))
		return rpc_ctx_error(ctx, RPC_DEADLINE_EXCEEDED,
				     "deadline exceeded");
	return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "server busy");
}

static rpc_code throttled(rpc_ctx *ctx, long long retry_after_s)
{
	char v[24];
	int n = snprintf(v, sizeof(v), "%lld", retry_after_s);

	rpc_ctx_add_trailer(ctx, "retry-after", v, (size_t)n);
	return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
			     "too many failed logins; retry later");
}

static const char *role_name(Estore__Account__V1__Role r)
{
	switch (r) {
	case ESTORE__ACCOUNT__V1__ROLE__ROLE_CUSTOMER:
		return "customer";
	case ESTORE__ACCOUNT__V1__ROLE__ROLE_VENDOR:
		return "vendor";
	case ESTORE__ACCOUNT__V1__ROLE__ROLE_ADMIN:
		return "admin";
	default:
		return NULL;
	}
}

/* Role names of an account, in the call's arena. */
static char **role_names(rpc_ctx *ctx, const Estore__Account__V1__Account *a,
			 size_t *n)
{
	char **names = rpc_arena_calloc(rpc_ctx_arena(ctx),
					a->n_roles > 0 ? a->n_roles : 1,
					sizeof(*names));

	*n = 0;
	if (names == NULL)
		return NULL;
	for (size_t i = 0; i < a->n_roles; i++) {
		const char *r = role_name(a->roles[i]);

		if (r != NULL)
			names[(*n)++] = (char *)r;
	}
	return names;
}

/* Copies a token pair into the reply (arena strings). */
static rpc_code reply_pair(rpc_ctx *ctx, const Estore__Token__V1__TokenPair *in,
			   Estore__Token__V1__TokenPair *out)
{
	rpc_arena *a = rpc_ctx_arena(ctx);

	out->access_token = rpc_arena_strdup(a, in->access_token);
	out->refresh_token = rpc_arena_strdup(a, in->refresh_token);
	out->token_type = (char *)"Bearer";
	out->expires_in = in->expires_in;
	out->account_id = rpc_arena_strdup(a, in->account_id);
	if (out->access_token == NULL || out->refresh_token == NULL ||
	    out->account_id == NULL)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
				     "out of memory");
	return RPC_OK;
}

static void free_msg(void *m)
{
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
}

/* Issues a fresh session for an account and fills the reply. */
static rpc_code issue_pair(auth_service *s, rpc_ctx *ctx,
			   const Estore__Account__V1__Account *acct,
			   Estore__Token__V1__TokenPair *out)
{
	Estore__Token__V1__TokenPair *pair = NULL;
	rpc_status st = { 0 };
	size_t n_roles;
	char **roles = role_names(ctx, acct, &n_roles);
	rpc_code code;

	if (roles == NULL)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
				     "out of memory");
	code = clients_issue_token_pair(s->cl, ctx, acct->id, roles, n_roles,
					&pair, &st);
	if (code == RPC_OK)
		code = reply_pair(ctx, pair, out);
	else
		code = dep_error(ctx, "token service", code, &st);
	free_msg(pair);
	rpc_status_dispose(&st);
	return code;
}

/* ---- Register -------------------------------------------------------- */

static rpc_code do_register(rpc_ctx *ctx,
			    const Estore__Auth__V1__RegisterRequest *in,
			    Estore__Token__V1__TokenPair *out)
{
	auth_service *s = svc_of(ctx);
	Estore__Account__V1__CreateAccountRequest req =
		ESTORE__ACCOUNT__V1__CREATE_ACCOUNT_REQUEST__INIT;
	Estore__Account__V1__Account *acct = NULL;
	rpc_status st = { 0 };
	char hash[PW_HASH_MAX];
	rpc_code code;
	int rc;

	/* Everything cheap first: no argon2 run for a request that fails
	 * anyway. The account service validates email syntax and the display
	 * name's length and reports with its own field messages. */
	if ((code = check_text(ctx, "email", in->email, EMAIL_MAX_BYTES,
			       true)) != RPC_OK ||
	    (code = check_text(ctx, "display_name", in->display_name,
			       DISPLAY_NAME_MAX_BYTES, true)) != RPC_OK ||
	    (code = check_new_password(s, ctx, "password", in->password)) !=
		    RPC_OK)
		return code;

	if (!gate_enter(&s->gate, ctx, s->cfg.hash_wait_ms))
		return busy(ctx);
	rc = pw_hash(&s->cfg.params, in->password, strlen(in->password), hash,
		     sizeof(hash));
	gate_leave(&s->gate);
	if (rc < 0) {
		rpc_log(RPC_LOG_ERROR, COMPONENT, "hashing failed: %s",
			rpc_strerror(rc));
		return rpc_ctx_error(ctx, RPC_INTERNAL, "internal error");
	}

	req.email = in->email;
	req.display_name = in->display_name;
	req.password_hash = hash;
	code = clients_create_account(s->cl, ctx, &req, &acct, &st);
	if (code == RPC_ALREADY_EXISTS || code == RPC_INVALID_ARGUMENT)
		code = pass(ctx, code, &st);
	else if (code != RPC_OK)
		code = dep_error(ctx, "account service", code, &st);
	else
		code = issue_pair(s, ctx, acct, out);
	free_msg(acct);
	rpc_status_dispose(&st);
	explicit_bzero(hash, sizeof(hash));
	return code;
}

/* ---- Login ----------------------------------------------------------- */

/*
 * Verifies `pw` against `stored` (NULL: unknown account → the dummy hash,
 * same work) while holding a hashing slot; on a match with outdated
 * parameters also computes the replacement into new_hash (else "").
 * Returns 1 match, 0 mismatch, or a negative value when no slot was free
 * (the caller answers "server busy").
 */
static int verify_password(auth_service *s, rpc_ctx *ctx, const char *stored,
			   const char *pw, char *new_hash, size_t cap)
{
	size_t len = strlen(pw);
	int ok;

	new_hash[0] = '\0';
	if (!gate_enter(&s->gate, ctx, s->cfg.hash_wait_ms))
		return -1;
	ok = stored != NULL ? pw_verify(stored, pw, len) : RPC_ERR_INVALID;
	if (ok < 0) {
		/* Unknown account, or a stored value that is not a hash we
		 * accept: spend the same work and fail. */
		if (stored != NULL)
			rpc_log(RPC_LOG_WARN, COMPONENT,
				"stored password hash is not usable argon2id");
		(void)pw_verify(s->dummy_hash, pw, len);
		ok = 0;
	} else if (ok == 1 && pw_needs_rehash(stored, &s->cfg.params)) {
		if (pw_hash(&s->cfg.params, pw, len, new_hash, cap) < 0)
			new_hash[0] = '\0';
	}
	gate_leave(&s->gate);
	return ok;
}

/* The client address of the call, for the per-address counter. */
static void peer_ip(auth_service *s, rpc_ctx *ctx, char *out, size_t cap)
{
	char peer[64];
	size_t len = 0;
	const char *xff = rpc_ctx_metadata_get(ctx, "x-forwarded-for", &len);

	throttle_peer_address(rpc_ctx_peer(ctx), peer, sizeof(peer));
	/* Behind the edge every login comes from the edge's address: the
	 * client it names counts, if it is one we trust to say so. */
	client_address(s->cfg.trusted_proxies, peer, xff, out, cap);
}

static void record_failure(auth_service *s, const char *email, const char *ip)
{
	/* The caller gets UNAUTHENTICATED either way; a failure we could not
	 * count is worth a warning (Redis is about to be reported down). */
	if (throttle_fail(s->th, email, ip) != RPC_OK)
		rpc_log(RPC_LOG_WARN, COMPONENT,
			"could not record a failed login (redis)");
}

static void store_rehash(auth_service *s, rpc_ctx *ctx, const char *id,
			 const char *new_hash)
{
	rpc_status st = { 0 };
	rpc_code code;

	/* Best effort: the login succeeds anyway and the next one retries. */
	code = clients_set_password_hash(s->cl, ctx, id, new_hash, &st);
	if (code != RPC_OK)
		rpc_log(RPC_LOG_WARN, COMPONENT,
			"rehash not stored: %s", rpc_code_name(code));
	else
		rpc_log(RPC_LOG_INFO, COMPONENT,
			"password hash upgraded to the configured parameters");
	rpc_status_dispose(&st);
}

static rpc_code do_login(rpc_ctx *ctx, const Estore__Auth__V1__LoginRequest *in,
			 Estore__Token__V1__TokenPair *out)
{
	auth_service *s = svc_of(ctx);
	Estore__Account__V1__AccountCredentials *cred = NULL;
	rpc_status st = { 0 };
	char ip[64];
	char new_hash[PW_HASH_MAX];
	long long wait_s, failures;
	rpc_code code;
	int ok;

	if ((code = check_text(ctx, "email", in->email, EMAIL_MAX_BYTES,
			       true)) != RPC_OK ||
	    (code = check_text(ctx, "password", in->password,
			       PASSWORD_MAX_BYTES, true)) != RPC_OK)
		return code;

	/* Throttle before any lookup or hashing: a throttled guess costs us
	 * one Redis round trip. */
	peer_ip(s, ctx, ip, sizeof(ip));
	code = throttle_check(s->th, in->email, ip, &wait_s, &failures);
	if (code == RPC_RESOURCE_EXHAUSTED)
		return throttled(ctx, wait_s);
	if (code != RPC_OK)
		return rpc_ctx_error(ctx, RPC_UNAVAILABLE,
				     "login temporarily unavailable");

	code = clients_get_account_by_email(s->cl, ctx, in->email, &cred, &st);
	if (code == RPC_NOT_FOUND || code == RPC_INVALID_ARGUMENT) {
		/* No such account (or no possible one): same path as a wrong
		 * password. */
		code = RPC_OK;
		cred = NULL;
	} else if (code != RPC_OK) {
		code = dep_error(ctx, "account service", code, &st);
		goto out;
	} else if (cred->account == NULL || cred->account->id == NULL ||
		   cred->account->id[0] == '\0') {
		code = dep_error(ctx, "account service", RPC_INTERNAL, NULL);
		goto out;
	}

	ok = verify_password(s, ctx, cred != NULL ? cred->password_hash : NULL,
			     in->password, new_hash, sizeof(new_hash));
	if (ok < 0) {
		code = busy(ctx);
		goto out;
	}
	if (ok == 0) {
		record_failure(s, in->email, ip);
		code = rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, MSG_BAD_LOGIN);
		goto out;
	}

	if (failures > 0 && throttle_clear(s->th, in->email) != RPC_OK)
		rpc_log(RPC_LOG_WARN, COMPONENT,
			"could not clear failed-login counter (redis)");
	if (new_hash[0] != '\0')
		store_rehash(s, ctx, cred->account->id, new_hash);
	code = issue_pair(s, ctx, cred->account, out);
out:
	explicit_bzero(new_hash, sizeof(new_hash));
	free_msg(cred);
	rpc_status_dispose(&st);
	return code;
}

/* ---- Refresh --------------------------------------------------------- */

static rpc_code do_refresh(rpc_ctx *ctx,
			   const Estore__Auth__V1__RefreshRequest *in,
			   Estore__Token__V1__TokenPair *out)
{
	auth_service *s = svc_of(ctx);
	Estore__Token__V1__TokenPair *pair = NULL;
	rpc_status st = { 0 };
	rpc_code code;

	if ((code = check_token(ctx, "refresh_token", in->refresh_token,
				true)) != RPC_OK)
		return code;
	code = clients_refresh_token_pair(s->cl, ctx, in->refresh_token, &pair,
					  &st);
	if (code == RPC_OK)
		code = reply_pair(ctx, pair, out);
	else if (code == RPC_UNAUTHENTICATED || code == RPC_INVALID_ARGUMENT)
		code = pass(ctx, code, &st);
	else
		code = dep_error(ctx, "token service", code, &st);
	free_msg(pair);
	rpc_status_dispose(&st);
	return code;
}

/* ---- Logout ---------------------------------------------------------- */

static rpc_code revoke_target(auth_service *s, rpc_ctx *ctx,
		      const Estore__Token__V1__RevokeTokensRequest *req)
{
	rpc_status st = { 0 };
	rpc_code code = clients_revoke_tokens(s->cl, ctx, req, &st);

	/* Already gone is what we wanted. */
	if (code == RPC_NOT_FOUND)
		code = RPC_OK;
	else if (code == RPC_INVALID_ARGUMENT)
		code = pass(ctx, code, &st);
	else if (code != RPC_OK)
		code = dep_error(ctx, "token service", code, &st);
	rpc_status_dispose(&st);
	return code;
}

static rpc_code do_logout(rpc_ctx *ctx, const Estore__Auth__V1__LogoutRequest *in,
			  Google__Protobuf__Empty *out)
{
	auth_service *s = svc_of(ctx);
	Estore__Token__V1__RevokeTokensRequest req =
		ESTORE__TOKEN__V1__REVOKE_TOKENS_REQUEST__INIT;
	const char *bearer;
	size_t len;
	char *token;
	rpc_code code;

	(void)out;
	if ((code = check_token(ctx, "refresh_token", in->refresh_token,
				false)) != RPC_OK)
		return code;
	bearer = rpc_ctx_bearer(ctx, &len);
	if (bearer == NULL)
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "missing access token");
	token = rpc_arena_strndup(rpc_ctx_arena(ctx), bearer, len);
	if (token == NULL)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
				     "out of memory");

	/* The family first: if revoking the access token then fails, a
	 * retry still authenticates and finishes the job. */
	if (in->refresh_token != NULL && in->refresh_token[0] != '\0') {
		req.target_case =
			ESTORE__TOKEN__V1__REVOKE_TOKENS_REQUEST__TARGET_REFRESH_TOKEN;
		req.refresh_token = in->refresh_token;
		if ((code = revoke_target(s, ctx, &req)) != RPC_OK)
			return code;
	}
	req.target_case =
		ESTORE__TOKEN__V1__REVOKE_TOKENS_REQUEST__TARGET_ACCESS_TOKEN;
	req.access_token = token;
	return revoke_target(s, ctx, &req);
}

/* ---- ChangePassword -------------------------------------------------- */

static rpc_code do_change_password(rpc_ctx *ctx,
				   const Estore__Auth__V1__ChangePasswordRequest *in,
				   Estore__Token__V1__TokenPair *out)
{
	auth_service *s = svc_of(ctx);
	const rpc_identity *who = rpc_ctx_identity(ctx);
	Estore__Account__V1__Account *me = NULL;
	Estore__Account__V1__AccountCredentials *cred = NULL;
	Estore__Token__V1__TokenClaims *claims = NULL;
	Estore__Token__V1__RevokeTokensRequest rev =
		ESTORE__TOKEN__V1__REVOKE_TOKENS_REQUEST__INIT;
	rpc_status st = { 0 };
	char ip[64];
	char hash[PW_HASH_MAX];
	char unused[PW_HASH_MAX];
	const char *bearer;
	char *token;
	size_t len;
	long long wait_s;
	rpc_code code;
	int ok, rc;

	hash[0] = '\0';
	unused[0] = '\0';
	if (who == NULL || who->is_service)
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "only an account can change its password");
	if ((code = check_text(ctx, "current_password", in->current_password,
			       PASSWORD_MAX_BYTES, true)) != RPC_OK ||
	    (code = check_new_password(s, ctx, "new_password",
				       in->new_password)) != RPC_OK)
		return code;
	bearer = rpc_ctx_bearer(ctx, &len);
	token = bearer != NULL ?
		rpc_arena_strndup(rpc_ctx_arena(ctx), bearer, len) : NULL;
	if (token == NULL)
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "missing access token");

	/* The caller's session, to keep it alive when revoking the others. */
	code = clients_validate_token(s->cl, ctx, token, &claims, &st);
	if (code == RPC_UNAUTHENTICATED) {
		code = pass(ctx, code, &st);
		goto out;
	}
	if (code != RPC_OK) {
		code = dep_error(ctx, "token service", code, &st);
		goto out;
	}
	rpc_status_dispose(&st);

	/* Who the caller is by email: the key of the throttle and of the
	 * stored hash. Asked as the caller, so only their own account. */
	code = clients_get_own_account(s->cl, ctx, &me, &st);
	if (code != RPC_OK) {
		code = code == RPC_NOT_FOUND ?
			rpc_ctx_error(ctx, RPC_NOT_FOUND, "account not found") :
			dep_error(ctx, "account service", code, &st);
		goto out;
	}
	rpc_status_dispose(&st);

	peer_ip(s, ctx, ip, sizeof(ip));
	code = throttle_check(s->th, me->email, ip, &wait_s, NULL);
	if (code == RPC_RESOURCE_EXHAUSTED) {
		code = throttled(ctx, wait_s);
		goto out;
	}
	if (code != RPC_OK) {
		code = rpc_ctx_error(ctx, RPC_UNAVAILABLE,
				     "password change temporarily unavailable");
		goto out;
	}

	code = clients_get_account_by_email(s->cl, ctx, me->email, &cred, &st);
	if (code != RPC_OK) {
		code = code == RPC_NOT_FOUND ?
			rpc_ctx_error(ctx, RPC_NOT_FOUND, "account not found") :
			dep_error(ctx, "account service", code, &st);
		goto out;
	}
	rpc_status_dispose(&st);
	if (cred->account == NULL || cred->account->id == NULL ||
	    strcmp(cred->account->id, who->subject) != 0) {
		/* The email moved to another account between the two reads. */
		code = rpc_ctx_error(ctx, RPC_ABORTED,
				     "account changed; try again");
		goto out;
	}

	/* A rehash of the current password is pointless here: the new
	 * password's hash replaces it below. */
	ok = verify_password(s, ctx, cred->password_hash, in->current_password,
			     unused, sizeof(unused));
	if (ok < 0) {
		code = busy(ctx);
		goto out;
	}
	if (ok == 0) {
		record_failure(s, me->email, ip);
		code = rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "current password is incorrect");
		goto out;
	}
	if (!gate_enter(&s->gate, ctx, s->cfg.hash_wait_ms)) {
		code = busy(ctx);
		goto out;
	}
	rc = pw_hash(&s->cfg.params, in->new_password,
		     strlen(in->new_password), hash, sizeof(hash));
	gate_leave(&s->gate);
	if (rc < 0) {
		rpc_log(RPC_LOG_ERROR, COMPONENT, "hashing failed: %s",
			rpc_strerror(rc));
		code = rpc_ctx_error(ctx, RPC_INTERNAL, "internal error");
		goto out;
	}
	code = clients_set_password_hash(s->cl, ctx, who->subject, hash, &st);
	if (code != RPC_OK) {
		code = dep_error(ctx, "account service", code, &st);
		goto out;
	}
	rpc_status_dispose(&st);
	if (throttle_clear(s->th, me->email) != RPC_OK)
		rpc_log(RPC_LOG_WARN, COMPONENT,
			"could not clear failed-login counter (redis)");

	/* Every other session ends: whoever knew the old password is out. */
	rev.target_case =
		ESTORE__TOKEN__V1__REVOKE_TOKENS_REQUEST__TARGET_ACCOUNT_ID;
	rev.account_id = (char *)who->subject;
	rev.except_session_id = claims->session_id;
	code = clients_revoke_tokens(s->cl, ctx, &rev, &st);
	if (code != RPC_OK) {
		code = dep_error(ctx, "token service", code, &st);
		goto out;
	}
	code = issue_pair(s, ctx, cred->account, out);
out:
	explicit_bzero(hash, sizeof(hash));
	explicit_bzero(unused, sizeof(unused));
	free_msg(claims);
	free_msg(me);
	free_msg(cred);
	rpc_status_dispose(&st);
	return code;
}

/* ---- life cycle ------------------------------------------------------- */

auth_service *auth_service_new(const auth_service_config *cfg, clients *cl,
			       throttle *th, const pw_denylist *deny)
{
	auth_service *s = calloc(1, sizeof(*s));
	unsigned char junk[24];
	int rc;

	if (s == NULL)
		return NULL;
	s->cfg = *cfg;
	s->cl = cl;
	s->th = th;
	s->deny = deny;
	if (gate_init(&s->gate, cfg->max_concurrent_hashes) < 0) {
		free(s);
		return NULL;
	}
	/* The dummy's password is random and forgotten at once: nothing can
	 * ever match it. */
	if (getentropy(junk, sizeof(junk)) != 0) {
		auth_service_free(s);
		return NULL;
	}
	rc = pw_hash(&cfg->params, (const char *)junk, sizeof(junk),
		     s->dummy_hash, sizeof(s->dummy_hash));
	explicit_bzero(junk, sizeof(junk));
	pw_memory_release();
	if (rc < 0) {
		auth_service_free(s);
		return NULL;
	}
	return s;
}

void auth_service_free(auth_service *s)
{
	if (s == NULL)
		return;
	gate_dispose(&s->gate);
	free(s);
}

int auth_service_register(auth_service *s, rpc_server *srv)
{
	static const estore_auth_v1_AuthService_impl impl = {
		.register_ = do_register,
		.login = do_login,
		.refresh = do_refresh,
		.logout = do_logout,
		.change_password = do_change_password,
	};

	return estore_auth_v1_AuthService_register(srv, &impl, s);
}
