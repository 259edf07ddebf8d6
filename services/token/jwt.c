/*
 * jwt.c - signing and verification of access tokens (OpenSSL + jansson).
 * See jwt.h for why neither goes through a JWT library.
 */
#include "services/token/jwt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "services/token/b64url.h"

/* Decoded-size caps: a header is ~60 bytes and a payload ~300; a token
 * whose parts are far larger is not ours and is not worth parsing. */
#define HEADER_MAX 512
#define PAYLOAD_MAX 4096
#define SIG_LEN 64

bool atok_random_hex16(char out[33])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return false;
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[32] = '\0';
	return true;
}

/* ECDSA P-256 / SHA-256 over `input`, as a JOSE signature (r || s). */
static bool es256_sign(EVP_PKEY *pkey, const char *input, size_t len,
		       uint8_t sig[SIG_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char der[80];   /* a P-256 signature in DER is at most 72 */
	size_t der_len = sizeof(der);
	const unsigned char *p = der;
	ECDSA_SIG *es = NULL;
	const BIGNUM *r, *s;
	bool ok = false;

	if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
	    EVP_DigestSign(md, der, &der_len, (const unsigned char *)input,
			   len) != 1)
		goto out;
	es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	if (!es)
		goto out;
	ECDSA_SIG_get0(es, &r, &s);
	ok = BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32;
out:
	ERR_clear_error();
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return ok;
}

/* base64url of a JSON object's compact text, appended at out[*at]. */
static bool append_json_b64(json_t *obj, char *out, size_t cap, size_t *at)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	size_t n;
	bool ok;

	if (!text)
		return false;
	n = strlen(text);
	ok = *at + B64URL_ENCODED_LEN(n) + 1 <= cap;
	if (ok)
		*at += b64url_encode((const uint8_t *)text, n, out + *at);
	free(text);
	return ok;
}

char *atok_sign(const token_key *key, const atok_spec *spec,
		char jti_out[33])
{
	json_t *header = NULL, *claims = NULL, *roles = NULL;
	uint8_t sig[SIG_LEN];
	char *tok = NULL;
	size_t at = 0;
	bool ok = false;

	/* A verify-only key (from a JWKS) has nothing to sign with. */
	if (!key || !key->has_private || !atok_random_hex16(jti_out))
		return NULL;
	header = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", "JWT",
			   "kid", key->kid);
	roles = json_array();
	for (size_t i = 0; roles && i < spec->n_roles; i++)
		if (json_array_append_new(roles, json_string(spec->roles[i])) != 0)
			goto out;
	/* "o" steals the reference to roles. */
	claims = roles ? json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:o}",
				   "iss", spec->issuer, "aud", spec->audience,
				   "sub", spec->sub, "iat", (json_int_t)spec->iat,
				   "nbf", (json_int_t)spec->iat,
				   "exp", (json_int_t)(spec->iat + spec->ttl_s),
				   "jti", jti_out, "roles", roles) : NULL;
	roles = NULL;
	if (!header || !claims)
		goto out;
	if (spec->sid && json_object_set_new(claims, "sid", json_string(spec->sid)) != 0)
		goto out;
	tok = malloc(ATOK_MAX_LEN);
	if (!tok || !append_json_b64(header, tok, ATOK_MAX_LEN, &at))
		goto out;
	tok[at++] = '.';
	if (!append_json_b64(claims, tok, ATOK_MAX_LEN, &at))
		goto out;
	/* Signed with the key parsed once at start: signing through libjwt
	 * parsed the PEM again for every token, 470 µs of the 500 a token
	 * cost. */
	if (!es256_sign(key->pkey, tok, at, sig) ||
	    at + 1 + B64URL_ENCODED_LEN(SIG_LEN) + 1 > ATOK_MAX_LEN)
		goto out;
	tok[at++] = '.';
	at += b64url_encode(sig, sizeof(sig), tok + at);
	ok = true;
out:
	json_decref(header);
	json_decref(claims);
	json_decref(roles);
	if (!ok) {
		free(tok);
		return NULL;
	}
	return tok;
}

/* Decodes one base64url segment and parses it as a JSON object.
 * Duplicate names are refused: two "alg" members must not let one part
 * of the stack read one and another part the other. */
static json_t *segment_json(const char *s, size_t len, size_t cap)
{
	uint8_t buf[PAYLOAD_MAX];
	size_t n;
	json_t *j;

	if (cap > sizeof(buf) || !b64url_decode(s, len, buf, cap, &n))
		return NULL;
	j = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* ECDSA P-256 / SHA-256 over `input` with a JOSE signature (r || s). */
static bool es256_verify(EVP_PKEY *pkey, const uint8_t sig[SIG_LEN],
			 const char *input, size_t len)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *der = NULL;
	int der_len;
	bool ok = false;

	if (!es || !r || !s || !md)
		goto out;
	if (!ECDSA_SIG_set0(es, r, s))
		goto out;
	r = s = NULL;  /* owned by es now */
	der_len = i2d_ECDSA_SIG(es, &der);
	if (der_len <= 0)
		goto out;
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1)
		goto out;
	ok = EVP_DigestVerify(md, der, (size_t)der_len,
			      (const unsigned char *)input, len) == 1;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return ok;
}

/* Copies a JSON string member into out (cap bytes incl. NUL); false when
 * missing, not a string, empty, too long, or holding control bytes. */
static bool get_str(json_t *obj, const char *name, char *out, size_t cap)
{
	json_t *v = json_object_get(obj, name);
	const char *s;
	size_t n;

	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 || n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20)
			return false;
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

static bool get_int(json_t *obj, const char *name, long long *out)
{
	json_t *v = json_object_get(obj, name);

	if (!json_is_integer(v))
		return false;
	*out = json_integer_value(v);
	return true;
}

/* "aud" is a string or an array of strings (RFC 7519 §4.1.3). */
static bool audience_ok(json_t *payload, const char *want)
{
	json_t *aud = json_object_get(payload, "aud"), *v;
	size_t i;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	if (!json_is_array(aud))
		return false;
	json_array_foreach(aud, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
			return true;
	return false;
}

/* The JOSE header: decides which key verifies, and refuses every
 * algorithm but ours before any cryptography runs. */
static const char *check_header(const atok_policy *pol, const char *s,
				size_t len, const token_key **key)
{
	json_t *h = segment_json(s, len, HEADER_MAX), *alg, *kid, *typ;
	const char *why = NULL;

	if (!h)
		return "malformed token header";
	alg = json_object_get(h, "alg");
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "ES256") != 0) {
		why = "token algorithm not accepted";
		goto out;
	}
	typ = json_object_get(h, "typ");
	if (typ && (!json_is_string(typ) ||
		    strcasecmp(json_string_value(typ), "JWT") != 0)) {
		why = "token type not accepted";
		goto out;
	}
	/* RFC 7515 §4.1.11: extensions we do not understand must fail. */
	if (json_object_get(h, "crit")) {
		why = "critical header extensions not supported";
		goto out;
	}
	kid = json_object_get(h, "kid");
	if (!json_is_string(kid) ||
	    !(*key = keyset_find(pol->keys, json_string_value(kid),
				 json_string_length(kid)))) {
		why = "unknown signing key";
		goto out;
	}
out:
	json_decref(h);
	return why;
}

static const char *check_claims(const atok_policy *pol, json_t *p,
				long long now, atok_claims *out,
				bool *expired)
{
	json_t *roles, *v;
	char iss[256];
	size_t i;

	if (!get_str(p, "iss", iss, sizeof(iss)) ||
	    strcmp(iss, pol->issuer) != 0)
		return "wrong token issuer";
	if (!audience_ok(p, pol->audience))
		return "wrong token audience";
	if (!get_int(p, "exp", &out->exp) || !get_int(p, "iat", &out->iat) ||
	    !get_int(p, "nbf", &out->nbf))
		return "token times missing";
	if (!get_str(p, "sub", out->sub, sizeof(out->sub)))
		return "token subject missing or too long";
	if (!get_str(p, "jti", out->jti, sizeof(out->jti)))
		return "token id missing or too long";
	out->is_service = strncmp(out->sub, "service:", 8) == 0;
	out->sid[0] = '\0';
	if (json_object_get(p, "sid") &&
	    !get_str(p, "sid", out->sid, sizeof(out->sid)))
		return "malformed session id";
	/* Account tokens always belong to a session: that is how logging
	 * out or changing the password reaches them. */
	if (!out->is_service && out->sid[0] == '\0')
		return "token session missing";
	roles = json_object_get(p, "roles");
	if (!json_is_array(roles) || json_array_size(roles) > ATOK_ROLES_MAX)
		return "malformed token roles";
	out->n_roles = 0;
	json_array_foreach(roles, i, v) {
		if (!json_is_string(v) || json_string_length(v) == 0 ||
		    json_string_length(v) > ATOK_ROLE_MAX)
			return "malformed token roles";
		memcpy(out->roles[out->n_roles], json_string_value(v),
		       json_string_length(v) + 1);
		out->n_roles++;
	}
	/* Times last, so that "expired" is only reported for a token that
	 * is otherwise fine (revocation treats it as a no-op). The skew
	 * forgives clocks that differ between the signer and us. */
	if (out->nbf > now + pol->skew_s)
		return "token not valid yet";
	if (out->iat > now + pol->skew_s)
		return "token issued in the future";
	if (out->exp <= out->iat)
		return "malformed token times";
	if (now >= out->exp + pol->skew_s) {
		if (expired)
			*expired = true;
		return "token expired";
	}
	return NULL;
}

const char *atok_verify(const atok_policy *pol, const char *token, size_t len,
			long long now, atok_claims *out, bool *expired)
{
	const char *dot1, *dot2, *why;
	const token_key *key = NULL;
	uint8_t sig[SIG_LEN];
	size_t siglen;
	json_t *payload;

	if (expired)
		*expired = false;
	if (len == 0)
		return "empty token";
	if (len > ATOK_MAX_LEN)
		return "token too long";
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token))
		    : NULL;
	if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
		return "malformed token";
	why = check_header(pol, token, (size_t)(dot1 - token), &key);
	if (why)
		return why;
	if (!b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), sig,
			   sizeof(sig), &siglen) || siglen != SIG_LEN)
		return "malformed token signature";
	if (!es256_verify(key->pkey, sig, token, (size_t)(dot2 - token)))
		return "token signature mismatch";
	payload = segment_json(dot1 + 1, (size_t)(dot2 - dot1 - 1), PAYLOAD_MAX);
	if (!payload)
		return "malformed token payload";
	why = check_claims(pol, payload, now, out, expired);
	json_decref(payload);
	return why;
}
