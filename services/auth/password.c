/*
 * password.c - argon2id hashing, PHC parameter parsing, the password
 * policy and the deny-list set. See password.h.
 */
#include "password.h"

#include <argon2.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "rpc/status.h"

#define SALT_LEN 16
#define DIGEST_LEN 32

/* Stored hashes come from our own database, but a corrupted or planted row
 * must not make one login allocate gigabytes or spin for minutes: verify
 * only within these bounds (the configuration uses the same ones). */
#define VERIFY_MAX_M_KIB (1u << 20) /* 1 GiB */
#define VERIFY_MAX_T 64u
#define VERIFY_MAX_P 16u

/* ---- UTF-8 ----------------------------------------------------------- */

long pw_utf8_chars(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	long chars = 0;
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		size_t need;
		unsigned cp;

		if (c < 0x80) {
			i++;
			chars++;
			continue;
		}
		/* 0xC0/0xC1 only start overlong 2-byte forms; above 0xF4 is
		 * beyond U+10FFFF. */
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return -1;
		}
		if (len - i <= need)
			return -1;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return -1;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		/* Shortest form only, and no UTF-16 surrogates. */
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return -1;
		i += need + 1;
		chars++;
	}
	return chars;
}

/* ---- deny-list: an open-addressing set of lower-cased strings --------- */

struct pw_denylist {
	char **slots;     /* NULL = empty */
	size_t cap;       /* power of two */
	size_t count;
};

static unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* FNV-1a over the lower-cased bytes, so lookups need no copy. */
static uint64_t fold_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++) {
		h ^= ascii_lower((unsigned char)s[i]);
		h *= 1099511628211ull;
	}
	return h;
}

/* Slots hold NUL-terminated lower-cased copies; a candidate matches when
 * its folded bytes equal the entry and the lengths agree (an embedded NUL
 * in the candidate can then never match a shorter entry). */
static bool fold_equal(const char *entry, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (entry[i] == '\0' ||
		    (unsigned char)entry[i] != ascii_lower((unsigned char)s[i]))
			return false;
	}
	return entry[i] == '\0';
}

pw_denylist *pw_denylist_new(void)
{
	pw_denylist *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->cap = 1024;
	d->slots = calloc(d->cap, sizeof(*d->slots));
	if (d->slots == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

void pw_denylist_free(pw_denylist *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->cap; i++)
		free(d->slots[i]);
	free(d->slots);
	free(d);
}

static size_t find_slot(char *const *slots, size_t cap, const char *s,
			size_t len)
{
	size_t mask = cap - 1;
	size_t i = (size_t)fold_hash(s, len) & mask;

	/* Linear probing; the table is never more than half full, so an
	 * empty slot always ends the walk. */
	while (slots[i] != NULL && !fold_equal(slots[i], s, len))
		i = (i + 1) & mask;
	return i;
}

static int grow(pw_denylist *d)
{
	size_t ncap = d->cap * 2;
	char **nslots = calloc(ncap, sizeof(*nslots));

	if (nslots == NULL)
		return RPC_ERR_NOMEM;
	for (size_t i = 0; i < d->cap; i++) {
		char *e = d->slots[i];

		if (e != NULL)
			nslots[find_slot(nslots, ncap, e, strlen(e))] = e;
	}
	free(d->slots);
	d->slots = nslots;
	d->cap = ncap;
	return 0;
}

int pw_denylist_add(pw_denylist *d, const char *pw, size_t len)
{
	size_t i;
	char *copy;

	if ((d->count + 1) * 2 > d->cap && grow(d) < 0)
		return RPC_ERR_NOMEM;
	i = find_slot(d->slots, d->cap, pw, len);
	if (d->slots[i] != NULL)
		return 0;
	copy = malloc(len + 1);
	if (copy == NULL)
		return RPC_ERR_NOMEM;
	for (size_t k = 0; k < len; k++)
		copy[k] = (char)ascii_lower((unsigned char)pw[k]);
	copy[len] = '\0';
	d->slots[i] = copy;
	d->count++;
	return 0;
}

bool pw_denylist_contains(const pw_denylist *d, const char *pw, size_t len)
{
	return d->slots[find_slot(d->slots, d->cap, pw, len)] != NULL;
}

size_t pw_denylist_size(const pw_denylist *d)
{
	return d->count;
}

int pw_denylist_load_file(pw_denylist *d, const char *path, size_t *added)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t linecap = 0;
	size_t n = 0;
	ssize_t got;
	int rc = 0;

	if (f == NULL)
		return RPC_ERR_IO;
	while ((got = getline(&line, &linecap, f)) >= 0) {
		size_t len = (size_t)got;

		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		if (len == 0 || strncmp(line, "#!comment:", 10) == 0)
			continue;
		rc = pw_denylist_add(d, line, len);
		if (rc < 0)
			break;
		n++;
	}
	if (rc == 0 && ferror(f))
		rc = RPC_ERR_IO;
	free(line);
	fclose(f);
	if (added != NULL)
		*added = n;
	return rc;
}

/* Written by the build from common-passwords.txt (see CMakeLists.txt). */
extern const char *const auth_builtin_passwords[];
extern const size_t auth_builtin_passwords_count;

int pw_denylist_load_builtin(pw_denylist *d, size_t *added)
{
	for (size_t i = 0; i < auth_builtin_passwords_count; i++) {
		const char *pw = auth_builtin_passwords[i];
		int rc = pw_denylist_add(d, pw, strlen(pw));

		if (rc < 0)
			return rc;
	}
	if (added != NULL)
		*added = auth_builtin_passwords_count;
	return 0;
}

/* ---- policy ---------------------------------------------------------- */

pw_verdict pw_check_policy(const pw_denylist *deny, const char *pw,
			   size_t len)
{
	long chars = pw_utf8_chars(pw, len);

	if (chars < 0)
		return PW_BAD_UTF8;
	if (chars < PW_MIN_CHARS || chars > PW_MAX_CHARS)
		return PW_BAD_LENGTH;
	if (deny != NULL && pw_denylist_contains(deny, pw, len))
		return PW_TOO_COMMON;
	return PW_OK;
}

/* ---- hashing --------------------------------------------------------- */

/*
 * argon2's working memory (m_kib, 19 MiB by default) comes from these two
 * callbacks rather than from malloc. It is mapped with transparent huge
 * pages: argon2 reads its memory in a data-dependent order, which with
 * 4 KiB pages costs a TLB miss on most reads and a page fault per 4 KiB
 * when the memory is new (on a 2-core VM, verification was four times
 * slower). A finished computation's region is kept for the next one while
 * hashing goes on (the kernel would otherwise zero 19 MiB again for each:
 * a tenth of a login's CPU), and unmapped by pw_memory_release once the
 * service is idle, so an idle service holds none of it. argon2 wipes the
 * memory before handing it back, so kept regions hold no secrets.
 */
#define HUGE_PAGE (2u << 20)
#define KEPT_MAX 8

static pthread_mutex_t kept_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint8_t *mem;
	size_t len;
} kept[KEPT_MAX];
static int n_kept;

static size_t region_len(size_t bytes)
{
	return (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
}

static uint8_t *take_kept(size_t len)
{
	uint8_t *mem = NULL;

	pthread_mutex_lock(&kept_mu);
	for (int i = 0; i < n_kept; i++) {
		if (kept[i].len == len) {
			mem = kept[i].mem;
			kept[i] = kept[--n_kept];
			break;
		}
	}
	pthread_mutex_unlock(&kept_mu);
	return mem;
}

static int hash_memory_alloc(uint8_t **memory, size_t bytes)
{
	size_t len = region_len(bytes);
	size_t span = len + HUGE_PAGE;
	uint8_t *raw, *aligned;

	if ((*memory = take_kept(len)) != NULL)
		return ARGON2_OK;
	raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return ARGON2_MEMORY_ALLOCATION_ERROR;
	/* Keep the huge-page-aligned middle of the mapping. */
	aligned = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) &
			      ~(uintptr_t)(HUGE_PAGE - 1));
	if (aligned > raw)
		munmap(raw, (size_t)(aligned - raw));
	if (aligned + len < raw + span)
		munmap(aligned + len, (size_t)(raw + span - (aligned + len)));
	/* Advice only: without THP the memory still works, only slower. */
	(void)madvise(aligned, len, MADV_HUGEPAGE);
	*memory = aligned;
	return ARGON2_OK;
}

static void hash_memory_free(uint8_t *memory, size_t bytes)
{
	size_t len = region_len(bytes);

	if (memory == NULL)
		return;
	pthread_mutex_lock(&kept_mu);
	if (n_kept < KEPT_MAX) {
		kept[n_kept].mem = memory;
		kept[n_kept].len = len;
		n_kept++;
		memory = NULL;
	}
	pthread_mutex_unlock(&kept_mu);
	if (memory != NULL)
		munmap(memory, len);
}

void pw_memory_release(void)
{
	pthread_mutex_lock(&kept_mu);
	while (n_kept > 0) {
		n_kept--;
		munmap(kept[n_kept].mem, kept[n_kept].len);
	}
	pthread_mutex_unlock(&kept_mu);
}

/* PHC strings carry salt and digest in standard base64 without padding. */
static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_encode(const uint8_t *in, size_t len, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char c)
{
	const char *p = c != '\0' ? strchr(b64_alphabet, c) : NULL;

	return p != NULL ? (int)(p - b64_alphabet) : -1;
}

/* Decodes exactly `len` characters; -1 on a bad character, a length that
 * no byte string has, or more than `cap` bytes. Returns the byte count. */
static long b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value(in[i]);

		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* The unused low bits of the last character must be zero, so each
	 * byte string has one encoding. */
	if ((acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)o;
}

static void init_context(argon2_context *c, const pw_params *params,
			 const char *pw, size_t len, uint8_t *salt,
			 size_t salt_len, uint8_t *out, size_t out_len)
{
	memset(c, 0, sizeof(*c));
	c->out = out;
	c->outlen = (uint32_t)out_len;
	/* argon2 takes a non-const pointer but only reads the password
	 * (ARGON2_FLAG_CLEAR_PASSWORD is not set). */
	c->pwd = (uint8_t *)(uintptr_t)pw;
	c->pwdlen = (uint32_t)len;
	c->salt = salt;
	c->saltlen = (uint32_t)salt_len;
	c->t_cost = params->t;
	c->m_cost = params->m_kib;
	c->lanes = params->p;
	c->threads = params->p;
	c->version = ARGON2_VERSION_13;
	c->allocate_cbk = hash_memory_alloc;
	c->free_cbk = hash_memory_free;
	c->flags = ARGON2_DEFAULT_FLAGS;
}

int pw_hash(const pw_params *params, const char *pw, size_t len, char *out,
	    size_t cap)
{
	uint8_t salt[SALT_LEN], digest[DIGEST_LEN];
	char salt64[SALT_LEN * 4 / 3 + 4], digest64[DIGEST_LEN * 4 / 3 + 4];
	argon2_context c;
	size_t need;
	int rc, n;

	if (params->m_kib < 8 * params->p || params->t < 1 || params->p < 1 ||
	    len > UINT32_MAX)
		return RPC_ERR_INVALID;
	need = argon2_encodedlen(params->t, params->m_kib, params->p, SALT_LEN,
				 DIGEST_LEN, Argon2_id);
	if (need > cap)
		return RPC_ERR_INVALID;
	/* getrandom without flags blocks only until the kernel's pool is
	 * initialised once after boot; short reads cannot happen for 16
	 * bytes. */
	if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt))
		return RPC_ERR_IO;
	init_context(&c, params, pw, len, salt, sizeof(salt), digest,
		     sizeof(digest));
	rc = argon2id_ctx(&c);
	if (rc == ARGON2_MEMORY_ALLOCATION_ERROR)
		return RPC_ERR_NOMEM;
	if (rc != ARGON2_OK)
		return RPC_ERR_INVALID;
	b64_encode(salt, sizeof(salt), salt64);
	b64_encode(digest, sizeof(digest), digest64);
	explicit_bzero(digest, sizeof(digest));
	/* The format argon2id_hash_encoded writes, so hashes stay
	 * interchangeable with every argon2 implementation. */
	n = snprintf(out, cap, "$argon2id$v=19$m=%u,t=%u,p=%u$%s$%s",
		     params->m_kib, params->t, params->p, salt64, digest64);
	return n > 0 && (size_t)n < cap ? 0 : RPC_ERR_INVALID;
}

int pw_verify(const char *encoded, const char *pw, size_t len)
{
	uint8_t salt[64], want[64], got[64];
	const char *salt64, *digest64;
	long salt_len, digest_len;
	argon2_context c;
	pw_params p;
	int rc;

	if (encoded == NULL || pw_parse_params(encoded, &p) < 0 ||
	    p.m_kib > VERIFY_MAX_M_KIB || p.t > VERIFY_MAX_T ||
	    p.p > VERIFY_MAX_P || p.m_kib < 8 * p.p || p.t < 1 || p.p < 1 ||
	    len > UINT32_MAX)
		return RPC_ERR_INVALID;
	/* pw_parse_params stopped at the '$' before the salt. */
	salt64 = strchr(encoded + sizeof("$argon2id$v=19$") - 1, '$');
	if (salt64 == NULL)
		return RPC_ERR_INVALID;
	salt64++;
	digest64 = strchr(salt64, '$');
	if (digest64 == NULL)
		return RPC_ERR_INVALID;
	digest64++;
	salt_len = b64_decode(salt64, (size_t)(digest64 - 1 - salt64), salt,
			      sizeof(salt));
	digest_len = b64_decode(digest64, strlen(digest64), want, sizeof(want));
	if (salt_len < ARGON2_MIN_SALT_LENGTH ||
	    digest_len < ARGON2_MIN_OUTLEN)
		return RPC_ERR_INVALID;
	init_context(&c, &p, pw, len, salt, (size_t)salt_len, got,
		     (size_t)digest_len);
	/* Computes into c.out and compares with `want` in constant time. */
	rc = argon2id_verify_ctx(&c, (const char *)want);
	explicit_bzero(got, sizeof(got));
	if (rc == ARGON2_OK)
		return 1;
	if (rc == ARGON2_VERIFY_MISMATCH)
		return 0;
	if (rc == ARGON2_MEMORY_ALLOCATION_ERROR)
		return RPC_ERR_NOMEM;
	return RPC_ERR_INVALID;
}

/* Reads "<key>=<decimal>" at *s, moving past it. */
static int read_param(const char **s, char key, uint32_t *out)
{
	const char *p = *s;
	unsigned long long v = 0;
	int digits = 0;

	if (p[0] != key || p[1] != '=')
		return RPC_ERR_INVALID;
	p += 2;
	while (*p >= '0' && *p <= '9' && digits < 10) {
		v = v * 10 + (unsigned)(*p - '0');
		p++;
		digits++;
	}
	if (digits == 0 || v > UINT32_MAX || (*p >= '0' && *p <= '9'))
		return RPC_ERR_INVALID;
	*out = (uint32_t)v;
	*s = p;
	return 0;
}

int pw_parse_params(const char *encoded, pw_params *out)
{
	static const char prefix[] = "$argon2id$v=19$";
	const char *s = encoded;
	pw_params p;

	if (strncmp(s, prefix, sizeof(prefix) - 1) != 0)
		return RPC_ERR_INVALID;
	s += sizeof(prefix) - 1;
	if (read_param(&s, 'm', &p.m_kib) < 0 || *s++ != ',' ||
	    read_param(&s, 't', &p.t) < 0 || *s++ != ',' ||
	    read_param(&s, 'p', &p.p) < 0 || *s != '$')
		return RPC_ERR_INVALID;
	*out = p;
	return 0;
}

bool pw_needs_rehash(const char *encoded, const pw_params *want)
{
	pw_params have;

	if (pw_parse_params(encoded, &have) < 0)
		return true;
	return have.m_kib < want->m_kib || have.t < want->t ||
	       have.p < want->p;
}
