/*
 * keys.c - loads the ES256 keys of TOKEN_KEY_DIR once at start, or the
 * public keys of a JWKS.
 */
#include "services/token/keys.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include "services/token/b64url.h"

/* A P-256 private key in PEM is about 250 bytes; anything near this is
 * not one of ours (and must not be slurped into memory). */
#define KEY_FILE_MAX (16 * 1024)

struct keyset {
	token_key keys[KEYS_MAX];
	size_t n;
	size_t signing;
	bool public_only;        /* from a JWKS: nothing signs */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool kid_ok(const char *s, size_t len)
{
	if (len == 0 || len > KEYS_KID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* An encrypted key would make OpenSSL prompt on the terminal: a service
 * must refuse it instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Reads a whole (small) file; the caller wipes and frees it. Follows
 * symlinks on purpose: Kubernetes mounts secrets as symlinks. */
static char *read_small_file(const char *path, size_t *len, char *err,
			     size_t errlen)
{
	FILE *f = fopen(path, "rbe");
	struct stat stbuf;
	char *buf = NULL;
	size_t n;

	if (!f) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &stbuf) != 0 || !S_ISREG(stbuf.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if (stbuf.st_size <= 0 || stbuf.st_size > KEY_FILE_MAX) {
		set_err(err, errlen, "%s: %lld bytes is not the size of a key "
			"file (1..%d)", path, (long long)stbuf.st_size,
			KEY_FILE_MAX);
		goto out;
	}
	buf = malloc((size_t)stbuf.st_size + 1);
	if (!buf) {
		set_err(err, errlen, "%s: out of memory", path);
		goto out;
	}
	n = fread(buf, 1, (size_t)stbuf.st_size, f);
	if (n != (size_t)stbuf.st_size) {
		set_err(err, errlen, "%s: short read", path);
		OPENSSL_cleanse(buf, (size_t)stbuf.st_size);
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = '\0';
	*len = n;
out:
	fclose(f);
	return buf;
}

/* The public point as two base64url coordinates of 32 bytes each. */
static bool public_xy(EVP_PKEY *pkey, token_key *k)
{
	BIGNUM *x = NULL, *y = NULL;
	uint8_t buf[32];
	bool ok = false;

	if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
	    !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y))
		goto out;
	/* JWK coordinates are fixed-length (RFC 7518 §6.2.1.2): pad. */
	if (BN_bn2binpad(x, buf, sizeof(buf)) != (int)sizeof(buf))
		goto out;
	b64url_encode(buf, sizeof(buf), k->x);
	if (BN_bn2binpad(y, buf, sizeof(buf)) != (int)sizeof(buf))
		goto out;
	b64url_encode(buf, sizeof(buf), k->y);
	ok = true;
out:
	BN_free(x);
	BN_free(y);
	return ok;
}

/* Parses one key file into k. */
static bool load_one(const char *dir, const char *name, token_key *k,
		     char *err, size_t errlen)
{
	char path[4096], group[32];
	char *text;
	size_t len = 0;
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	bool ok = false;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path)) {
		set_err(err, errlen, "%s/%s: path too long", dir, name);
		return false;
	}
	text = read_small_file(path, &len, err, errlen);
	if (!text)
		return false;
	bio = BIO_new_mem_buf(text, (int)len);
	if (bio)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	/* OpenSSL's error queue may describe the input; drop it unread. */
	ERR_clear_error();
	if (!pkey) {
		set_err(err, errlen, "%s: not a PEM private key (an unencrypted "
			"PKCS#8 or SEC1 EC key is expected)", path);
		goto out;
	}
	if (!EVP_PKEY_is_a(pkey, "EC") ||
	    !EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
					    group, sizeof(group), NULL) ||
	    strcmp(group, "prime256v1") != 0) {
		set_err(err, errlen, "%s: not an EC P-256 key (ES256 needs "
			"prime256v1)", path);
		goto out;
	}
	if (!public_xy(pkey, k)) {
		set_err(err, errlen, "%s: cannot export the key", path);
		goto out;
	}
	k->pkey = pkey;
	k->has_private = true;
	pkey = NULL;
	ok = true;
out:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	OPENSSL_cleanse(text, len);
	free(text);
	return ok;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

keyset *keyset_load(const char *dir, const char *signing_kid, char *err,
		    size_t errlen)
{
	char *names[KEYS_MAX];
	size_t n = 0;
	DIR *d;
	struct dirent *de;
	keyset *ks = NULL;

	if (!dir || !*dir) {
		set_err(err, errlen, "TOKEN_KEY_DIR is empty");
		return NULL;
	}
	d = opendir(dir);
	if (!d) {
		set_err(err, errlen, "TOKEN_KEY_DIR %s: %s", dir,
			strerror(errno));
		return NULL;
	}
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		/* Hidden entries include Kubernetes' ..data links, which
		 * point at the same files again. */
		if (de->d_name[0] == '.' || len <= 4 ||
		    strcmp(de->d_name + len - 4, ".pem") != 0)
			continue;
		if (!kid_ok(de->d_name, len - 4)) {
			set_err(err, errlen, "TOKEN_KEY_DIR %s: '%s': a kid "
				"(file name without .pem) is 1-%d of "
				"[A-Za-z0-9._-]", dir, de->d_name,
				KEYS_KID_MAX);
			goto fail;
		}
		if (n == KEYS_MAX) {
			set_err(err, errlen, "TOKEN_KEY_DIR %s: more than %d "
				"key files", dir, KEYS_MAX);
			goto fail;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			set_err(err, errlen, "out of memory");
			goto fail;
		}
		n++;
	}
	if (errno != 0) {
		set_err(err, errlen, "TOKEN_KEY_DIR %s: %s", dir,
			strerror(errno));
		goto fail;
	}
	if (n == 0) {
		set_err(err, errlen, "TOKEN_KEY_DIR %s holds no *.pem key "
			"(generate one: openssl ecparam -name prime256v1 "
			"-genkey -noout | openssl pkcs8 -topk8 -nocrypt > "
			"%s/KID.pem)", dir, dir);
		goto fail;
	}
	qsort(names, n, sizeof(names[0]), cmp_names);

	ks = calloc(1, sizeof(*ks));
	if (!ks) {
		set_err(err, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		token_key *k = &ks->keys[i];

		memcpy(k->kid, names[i], strlen(names[i]) - 4);
		k->kid[strlen(names[i]) - 4] = '\0';
		if (!load_one(dir, names[i], k, err, errlen))
			goto fail;
		ks->n++;
	}
	ks->signing = ks->n - 1;
	if (signing_kid && *signing_kid) {
		const token_key *k = keyset_find(ks, signing_kid,
						 strlen(signing_kid));

		if (!k) {
			set_err(err, errlen, "TOKEN_SIGNING_KID '%s' is not a "
				"key in %s", signing_kid, dir);
			goto fail;
		}
		ks->signing = (size_t)(k - ks->keys);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	closedir(d);
	return ks;
fail:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	closedir(d);
	keyset_free(ks);
	return NULL;
}

/* One base64url coordinate of exactly 32 bytes into out. */
static bool coord(const char *b64, uint8_t out[32])
{
	size_t n = 0;

	return b64 && b64url_decode(b64, strlen(b64), out, 32, &n) && n == 32;
}

/* A public P-256 key from its affine coordinates; NULL unless the point
 * is on the curve (a point off it is the invalid-curve attack's way in). */
static EVP_PKEY *ec_public_key(const uint8_t x[32], const uint8_t y[32])
{
	uint8_t point[65];
	char group[] = "prime256v1";
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY_CTX *check = NULL;
	EVP_PKEY *pkey = NULL;

	/* SEC1 uncompressed form: 0x04 || x || y. */
	point[0] = 0x04;
	memcpy(point + 1, x, 32);
	memcpy(point + 33, y, 32);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
						     group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
						      point, sizeof(point));
	params[2] = OSSL_PARAM_construct_end();
	if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto fail;
	check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!check || EVP_PKEY_public_check(check) != 1)
		goto fail;
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return pkey;
fail:
	ERR_clear_error();
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return NULL;
}

static bool str_is(const char *s, const char *want)
{
	return s && strcmp(s, want) == 0;
}

keyset *keyset_from_jwks(const Estore__Token__V1__Jwks *jwks, char *err,
			 size_t errlen)
{
	keyset *ks = NULL;

	if (!jwks || jwks->n_keys == 0) {
		set_err(err, errlen, "JWKS: no keys");
		return NULL;
	}
	if (jwks->n_keys > KEYS_MAX) {
		set_err(err, errlen, "JWKS: %zu keys, at most %d accepted",
			jwks->n_keys, KEYS_MAX);
		return NULL;
	}
	ks = calloc(1, sizeof(*ks));
	if (!ks) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	ks->public_only = true;
	for (size_t i = 0; i < jwks->n_keys; i++) {
		const Estore__Token__V1__Jwk *j = jwks->keys[i];
		token_key *k = &ks->keys[i];
		uint8_t x[32], y[32];
		size_t kidlen = j && j->kid ? strlen(j->kid) : 0;

		if (!j || !kid_ok(j->kid, kidlen)) {
			set_err(err, errlen, "JWKS key %zu: a kid is 1-%d of "
				"[A-Za-z0-9._-]", i, KEYS_KID_MAX);
			goto fail;
		}
		if (keyset_find(ks, j->kid, kidlen)) {
			set_err(err, errlen, "JWKS key %zu (%s): kid used twice",
				i, j->kid);
			goto fail;
		}
		if (!str_is(j->kty, "EC") || !str_is(j->crv, "P-256") ||
		    !str_is(j->alg, "ES256")) {
			set_err(err, errlen, "JWKS key %zu (%s): only kty EC, "
				"crv P-256, alg ES256 are accepted", i, j->kid);
			goto fail;
		}
		if (j->use && j->use[0] && strcmp(j->use, "sig") != 0) {
			set_err(err, errlen, "JWKS key %zu (%s): use must be "
				"\"sig\"", i, j->kid);
			goto fail;
		}
		if (!coord(j->x, x) || !coord(j->y, y)) {
			set_err(err, errlen, "JWKS key %zu (%s): x and y must "
				"be base64url of 32 bytes each", i, j->kid);
			goto fail;
		}
		k->pkey = ec_public_key(x, y);
		if (!k->pkey) {
			set_err(err, errlen, "JWKS key %zu (%s): not a point "
				"on P-256", i, j->kid);
			goto fail;
		}
		memcpy(k->kid, j->kid, kidlen + 1);
		/* Kept as received (they decoded strictly, so this is the
		 * one encoding of the point). */
		memcpy(k->x, j->x, B64URL_ENCODED_LEN(32) + 1);
		memcpy(k->y, j->y, B64URL_ENCODED_LEN(32) + 1);
		k->has_private = false;
		ks->n++;
	}
	return ks;
fail:
	keyset_free(ks);
	return NULL;
}

void keyset_free(keyset *ks)
{
	if (!ks)
		return;
	for (size_t i = 0; i < KEYS_MAX; i++) {
		token_key *k = &ks->keys[i];

		EVP_PKEY_free(k->pkey);
	}
	free(ks);
}

const token_key *keyset_find(const keyset *ks, const char *kid, size_t len)
{
	for (size_t i = 0; i < ks->n; i++)
		if (strlen(ks->keys[i].kid) == len &&
		    memcmp(ks->keys[i].kid, kid, len) == 0)
			return &ks->keys[i];
	return NULL;
}

const token_key *keyset_signing(const keyset *ks)
{
	return ks->public_only ? NULL : &ks->keys[ks->signing];
}

size_t keyset_count(const keyset *ks)
{
	return ks->n;
}

const token_key *keyset_get(const keyset *ks, size_t i)
{
	return i < ks->n ? &ks->keys[i] : NULL;
}
