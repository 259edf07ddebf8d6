/*
 * test_password.c - services/auth/password.c: argon2id hashing through our
 * own memory callbacks and PHC encoding, checked against libargon2's own
 * encoder and verifier so stored hashes stay interchangeable.
 */
#include <argon2.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "password.h"
#include "rpc/status.h"

/* estore-auth links the list generated from common-passwords.txt. */
const char *const auth_builtin_passwords[] = { "password" };
const size_t auth_builtin_passwords_count = 1;

/* Small parameters: the code paths are the same, the tests stay fast. */
static const pw_params small = { .m_kib = 256, .t = 2, .p = 1 };

static void ours_verify_with_libargon2(void **state)
{
	char hash[PW_HASH_MAX];
	pw_params got;

	(void)state;
	assert_int_equal(pw_hash(&small, "hunter2hunter2", 14, hash, sizeof(hash)), 0);
	assert_int_equal(strncmp(hash, "$argon2id$v=19$m=256,t=2,p=1$", 29), 0);
	assert_int_equal(argon2id_verify(hash, "hunter2hunter2", 14), ARGON2_OK);
	assert_int_equal(argon2id_verify(hash, "hunter2hunter3", 14),
			 ARGON2_VERIFY_MISMATCH);
	assert_int_equal(pw_parse_params(hash, &got), 0);
	assert_int_equal(got.m_kib, 256);
	assert_int_equal(got.t, 2);
	assert_int_equal(got.p, 1);
}

static void libargon2_hashes_verify_with_ours(void **state)
{
	static const uint8_t salt[16] = "0123456789abcdef";
	char hash[PW_HASH_MAX];

	(void)state;
	/* Parallelism 2 and a 24-byte digest: what we read, not only what we
	 * write. */
	assert_int_equal(argon2id_hash_encoded(2, 256, 2, "s3cret-pass", 11, salt,
					       sizeof(salt), 24, hash, sizeof(hash)),
			 ARGON2_OK);
	assert_int_equal(pw_verify(hash, "s3cret-pass", 11), 1);
	assert_int_equal(pw_verify(hash, "s3cret-pasS", 11), 0);
	assert_int_equal(pw_verify(hash, "s3cret-pass", 10), 0);
}

static void every_byte_counts(void **state)
{
	char pw[200], hash[PW_HASH_MAX];

	(void)state;
	memset(pw, 'a', sizeof(pw));
	assert_int_equal(pw_hash(&small, pw, sizeof(pw), hash, sizeof(hash)), 0);
	pw[sizeof(pw) - 1] = 'b';
	assert_int_equal(pw_verify(hash, pw, sizeof(pw)), 0);
}

static void malformed_hashes_are_invalid(void **state)
{
	static const char *const bad[] = {
		"",
		"$argon2i$v=19$m=256,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=16$m=256,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=256,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg",
		"$argon2id$v=19$m=256,t=2,p=1$MDEy!zQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=256,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$A",
		"$argon2id$v=19$m=256,t=2,p=1$MDE$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=256,t=0,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=4,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		/* Beyond the bounds a planted row could ask for. */
		"$argon2id$v=19$m=4194304,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=256,t=1000,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (pw_verify(bad[i], "whatever1", 9) != RPC_ERR_INVALID)
			fail_msg("accepted: %s", bad[i]);
	}
	assert_int_equal(pw_verify(NULL, "whatever1", 9), RPC_ERR_INVALID);
}

static void small_buffer_is_refused(void **state)
{
	char hash[40];

	(void)state;
	assert_int_equal(pw_hash(&small, "hunter2hunter2", 14, hash, sizeof(hash)),
			 RPC_ERR_INVALID);
}

static void rehash_when_parameters_rise(void **state)
{
	char hash[PW_HASH_MAX];
	pw_params more = small;

	(void)state;
	assert_int_equal(pw_hash(&small, "hunter2hunter2", 14, hash, sizeof(hash)), 0);
	assert_false(pw_needs_rehash(hash, &small));
	more.m_kib *= 2;
	assert_true(pw_needs_rehash(hash, &more));
	more = small;
	more.t++;
	assert_true(pw_needs_rehash(hash, &more));
	assert_true(pw_needs_rehash("$2b$12$bcrypt", &small));
}

static void kept_memory_is_reused_and_released(void **state)
{
	char a[PW_HASH_MAX], b[PW_HASH_MAX];

	(void)state;
	/* The second computation runs in the region the first one left. */
	assert_int_equal(pw_hash(&small, "hunter2hunter2", 14, a, sizeof(a)), 0);
	assert_int_equal(pw_hash(&small, "hunter2hunter2", 14, b, sizeof(b)), 0);
	assert_string_not_equal(a, b);   /* fresh salts */
	assert_int_equal(pw_verify(a, "hunter2hunter2", 14), 1);
	assert_int_equal(pw_verify(b, "hunter2hunter2", 14), 1);
	pw_memory_release();
	pw_memory_release();
	assert_int_equal(pw_verify(a, "hunter2hunter2", 14), 1);
	pw_memory_release();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ours_verify_with_libargon2),
		cmocka_unit_test(libargon2_hashes_verify_with_ours),
		cmocka_unit_test(every_byte_counts),
		cmocka_unit_test(malformed_hashes_are_invalid),
		cmocka_unit_test(small_buffer_is_refused),
		cmocka_unit_test(rehash_when_parameters_rise),
		cmocka_unit_test(kept_memory_is_reused_and_released),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
