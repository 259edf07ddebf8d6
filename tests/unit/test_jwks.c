/*
 * test_jwks.c - keyset_from_jwks (services/token/keys.c) and atok_verify
 * with a verify-only set built from a JWKS, as the edge proxy uses them:
 * a token signed with the private key verifies with the published one,
 * and a JWK we do not fully understand refuses the whole set.
 */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "services/token/jwt.h"
#include "services/token/keys.h"

typedef struct fixture {
	char dir[64];
	keyset *priv;
	const token_key *signer;
	Estore__Token__V1__Jwk jwk;
	Estore__Token__V1__Jwk *jwk_ptrs[2];
	Estore__Token__V1__Jwks jwks;
} fixture;

/* A fresh P-256 key as DIR/test-1.pem (PKCS#8), loaded as the private set. */
static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	char path[128], err[256];
	FILE *fp;

	assert_non_null(f);
	assert_non_null(pkey);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_jwks.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(path, sizeof(path), "%s/test-1.pem", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL), 1);
	fclose(fp);
	EVP_PKEY_free(pkey);
	f->priv = keyset_load(f->dir, NULL, err, sizeof(err));
	assert_non_null(f->priv);
	f->signer = keyset_signing(f->priv);
	assert_non_null(f->signer);

	/* The JWK as the token service publishes it. */
	estore__token__v1__jwk__init(&f->jwk);
	f->jwk.kty = "EC";
	f->jwk.crv = "P-256";
	f->jwk.alg = "ES256";
	f->jwk.use = "sig";
	f->jwk.kid = (char *)f->signer->kid;
	f->jwk.x = (char *)f->signer->x;
	f->jwk.y = (char *)f->signer->y;
	f->jwk_ptrs[0] = &f->jwk;
	estore__token__v1__jwks__init(&f->jwks);
	f->jwks.keys = f->jwk_ptrs;
	f->jwks.n_keys = 1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char path[128];

	snprintf(path, sizeof(path), "%s/test-1.pem", f->dir);
	unlink(path);
	rmdir(f->dir);
	keyset_free(f->priv);
	free(f);
	return 0;
}

static char *sign(const token_key *key, long long iat, long long ttl)
{
	static const char *const roles[] = { "ROLE_CUSTOMER" };
	atok_spec spec = {
		.issuer = "estore", .audience = "estore", .sub = "acct-1",
		.roles = roles, .n_roles = 1, .sid = "sess-1", .iat = iat,
		.ttl_s = ttl,
	};
	char jti[33];

	return atok_sign(key, &spec, jti);
}

static const char *verify(const keyset *ks, const char *tok, long long now)
{
	atok_policy pol = { .keys = ks, .issuer = "estore",
			    .audience = "estore", .skew_s = 60 };
	atok_claims c;

	return atok_verify(&pol, tok, strlen(tok), now, &c, NULL);
}

static void test_public_set_verifies(void **state)
{
	fixture *f = *state;
	char err[256];
	keyset *pub = keyset_from_jwks(&f->jwks, err, sizeof(err));
	long long now = (long long)time(NULL);
	char *tok = sign(f->signer, now, 900);
	const token_key *k;

	assert_non_null(pub);
	assert_non_null(tok);
	assert_int_equal(keyset_count(pub), 1);
	assert_null(keyset_signing(pub));
	k = keyset_find(pub, "test-1", 6);
	assert_non_null(k);
	assert_false(k->has_private);
	assert_string_equal(k->x, f->signer->x);
	assert_null(verify(pub, tok, now));

	/* A verify-only key does not sign. */
	assert_null(sign(k, now, 900));

	/* One byte of the payload changed: the signature no longer holds. */
	{
		char *dot = strchr(tok, '.');

		dot[1] = dot[1] == 'e' ? 'f' : 'e';
		assert_non_null(verify(pub, tok, now));
	}
	free(tok);

	tok = sign(f->signer, now - 3600, 900);
	assert_string_equal(verify(pub, tok, now), "token expired");
	free(tok);
	keyset_free(pub);
}

static void test_unknown_kid_and_other_algs(void **state)
{
	fixture *f = *state;
	char err[256];
	keyset *pub;
	long long now = (long long)time(NULL);
	char *tok = sign(f->signer, now, 900);

	/* The same point under another kid: the token's kid is unknown. */
	f->jwk.kid = "other";
	pub = keyset_from_jwks(&f->jwks, err, sizeof(err));
	assert_non_null(pub);
	assert_string_equal(verify(pub, tok, now), "unknown signing key");
	keyset_free(pub);
	free(tok);

	/* alg none and HS256, signed or not, never get to a key. */
	f->jwk.kid = (char *)f->signer->kid;
	pub = keyset_from_jwks(&f->jwks, err, sizeof(err));
	assert_non_null(pub);
	/* {"alg":"none","kid":"test-1"} / {"alg":"HS256","kid":"test-1"} */
	assert_string_equal(verify(pub, "eyJhbGciOiJub25lIiwia2lkIjoidGVzdC0xIn0.e30.", now),
			    "token algorithm not accepted");
	assert_string_equal(verify(pub, "eyJhbGciOiJIUzI1NiIsImtpZCI6InRlc3QtMSJ9.e30.AAAA", now),
			    "token algorithm not accepted");
	keyset_free(pub);
}

/* Sets one field of the JWK, expects the set refused with `want` in the
 * message, and restores the field. */
static void refused(fixture *f, char **field, char *value, const char *want)
{
	char *saved = *field, err[256] = "";
	keyset *ks;

	*field = value;
	ks = keyset_from_jwks(&f->jwks, err, sizeof(err));
	*field = saved;
	if (ks != NULL)
		fail_msg("accepted a JWK with %s", value ? value : "(null)");
	if (strstr(err, want) == NULL)
		fail_msg("message '%s' lacks '%s'", err, want);
}

static void test_bad_jwks_refused(void **state)
{
	fixture *f = *state;
	char err[256];
	/* 32 bytes of 0x01 as x and y: decodes, but is no point on P-256. */
	char off_curve[] = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
	Estore__Token__V1__Jwks empty = ESTORE__TOKEN__V1__JWKS__INIT;

	refused(f, &f->jwk.kty, "RSA", "kty EC");
	refused(f, &f->jwk.crv, "P-384", "crv P-256");
	refused(f, &f->jwk.alg, "HS256", "alg ES256");
	refused(f, &f->jwk.alg, "", "alg ES256");
	refused(f, &f->jwk.alg, NULL, "alg ES256");
	refused(f, &f->jwk.use, "enc", "use");
	refused(f, &f->jwk.kid, "", "kid");
	refused(f, &f->jwk.kid, "../etc/passwd", "kid");
	refused(f, &f->jwk.x, "AQEB", "32 bytes");
	refused(f, &f->jwk.y, "not base64url!", "32 bytes");
	refused(f, &f->jwk.x, NULL, "32 bytes");
	refused(f, &f->jwk.y, off_curve, "not a point");

	assert_null(keyset_from_jwks(&empty, err, sizeof(err)));
	assert_non_null(strstr(err, "no keys"));
	assert_null(keyset_from_jwks(NULL, err, sizeof(err)));

	/* The same kid twice. */
	f->jwk_ptrs[1] = &f->jwk;
	f->jwks.n_keys = 2;
	assert_null(keyset_from_jwks(&f->jwks, err, sizeof(err)));
	assert_non_null(strstr(err, "twice"));
	f->jwks.n_keys = 1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_public_set_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_kid_and_other_algs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_jwks_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
