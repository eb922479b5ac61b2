/* SPDX-License-Identifier: MIT */
/*
 * crypto: sealed values (AES-256-GCM, used by the etcd store) and standard
 * base64: round trips, and every way a sealed value can be wrong (other
 * key, other name, one altered byte, truncated, not sealed at all).
 */
#include <errno.h>
#include <string.h>

#include "crypto/crypto.h"
#include "tests/unit/check.h"

static void test_seal_roundtrip(void)
{
	unsigned char key[CRYPTO_SEAL_KEY_LEN], other[CRYPTO_SEAL_KEY_LEN];
	const char *msg = "-----BEGIN PRIVATE KEY-----\nnot really\n";
	struct util_buf sealed, plain, again;

	memset(key, 7, sizeof(key));
	memset(other, 8, sizeof(other));
	util_buf_init(&sealed, 1 << 20, false);
	util_buf_init(&plain, 1 << 20, true);
	util_buf_init(&again, 1 << 20, false);
	CHECK_INT(crypto_seal(key, "domains/a/gen/1", 15, msg, strlen(msg), &sealed), 0);
	CHECK_INT(sealed.len, strlen(msg) + CRYPTO_SEAL_OVERHEAD);
	CHECK(crypto_is_sealed(sealed.data, sealed.len));
	CHECK(!memmem(sealed.data, sealed.len, "PRIVATE", 7));
	CHECK_INT(crypto_unseal(key, "domains/a/gen/1", 15, sealed.data, sealed.len, &plain), 0);
	CHECK_INT(plain.len, strlen(msg));
	CHECK(!memcmp(plain.data, msg, plain.len));
	/* Two seals of the same bytes differ (a fresh nonce each time). */
	CHECK_INT(crypto_seal(key, "domains/a/gen/1", 15, msg, strlen(msg), &again), 0);
	CHECK(again.len == sealed.len && memcmp(again.data, sealed.data, sealed.len));

	util_buf_reset(&plain);
	CHECK_INT(crypto_unseal(other, "domains/a/gen/1", 15, sealed.data, sealed.len, &plain),
		  -EINVAL);
	CHECK_INT(crypto_unseal(key, "domains/b/gen/1", 15, sealed.data, sealed.len, &plain),
		  -EINVAL);
	CHECK_INT(crypto_unseal(key, "domains/a/gen/1", 15, sealed.data, sealed.len - 1, &plain),
		  -EINVAL);
	sealed.data[20] ^= 1;
	CHECK_INT(crypto_unseal(key, "domains/a/gen/1", 15, sealed.data, sealed.len, &plain),
		  -EINVAL);
	CHECK_INT(plain.len, 0);
	CHECK_INT(crypto_unseal(key, "x", 1, msg, strlen(msg), &plain), -EINVAL);
	CHECK_INT(crypto_unseal(key, "x", 1, "cfs1", 4, &plain), -EINVAL);
	/* Empty plaintext is fine. */
	util_buf_reset(&sealed);
	CHECK_INT(crypto_seal(key, "k", 1, "", 0, &sealed), 0);
	CHECK_INT(crypto_unseal(key, "k", 1, sealed.data, sealed.len, &plain), 0);
	CHECK_INT(plain.len, 0);
	util_buf_free(&sealed);
	util_buf_free(&plain);
	util_buf_free(&again);
}

static void test_b64(void)
{
	struct util_buf b, d;

	util_buf_init(&b, 1024, false);
	util_buf_init(&d, 1024, false);
	CHECK_INT(crypto_b64("\xfb\xff", 2, &b), 0);
	CHECK_INT(b.len, 4);
	CHECK(!memcmp(b.data, "+/8=", 4));
	CHECK_INT(crypto_b64_decode((const char *)b.data, b.len, &d), 0);
	CHECK(d.len == 2 && !memcmp(d.data, "\xfb\xff", 2));
	util_buf_reset(&d);
	CHECK_INT(crypto_b64_decode("-_8", 3, &d), -EINVAL);
	CHECK_INT(crypto_b64_decode("a b=", 4, &d), -EINVAL);
	CHECK_INT(crypto_b64_decode("abcde", 5, &d), -EINVAL);
	CHECK_INT(crypto_b64_decode("ab=", 3, &d), -EINVAL);
	util_buf_free(&b);
	util_buf_free(&d);
}

int main(void)
{
	test_seal_roundtrip();
	test_b64();
	return check_failures > 100 ? 100 : check_failures;
}
