/* SPDX-License-Identifier: MIT */
/*
 * util: the capped buffer and secret wiping. Caps are exact (max bytes fit,
 * one more is -EFBIG and appends nothing), printf and take behave, and
 * secret buffers keep their contents across growth and wipe on reset.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "tests/unit/check.h"

static void test_append_cap(void)
{
	struct util_buf b;

	util_buf_init(&b, 10, false);
	CHECK(b.data == NULL && b.len == 0 && b.max == 10 && !b.secret);
	CHECK_INT(util_buf_append(&b, "hello", 5), 0);
	CHECK_INT(util_buf_append(&b, "", 0), 0);
	CHECK_INT(util_buf_append(&b, "world", 5), 0);
	CHECK_INT(b.len, 10);
	CHECK(!memcmp(b.data, "helloworld", 10));
	/* One byte over: refused, nothing appended. */
	CHECK_INT(util_buf_append(&b, "!", 1), -EFBIG);
	CHECK_INT(b.len, 10);
	CHECK_INT(util_buf_append(&b, "xyz", SIZE_MAX), -EFBIG);
	CHECK_INT(b.len, 10);
	/* Terminate adds a NUL that len does not count, even at max. */
	CHECK_INT(util_buf_terminate(&b), 0);
	CHECK_INT(b.len, 10);
	CHECK_STR((char *)b.data, "helloworld");
	util_buf_reset(&b);
	CHECK_INT(b.len, 0);
	CHECK(b.data != NULL);
	CHECK_INT(util_buf_append(&b, "abc", 3), 0);
	CHECK_INT(b.len, 3);
	util_buf_free(&b);
	CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
	util_buf_free(&b); /* twice is harmless */

	/* max 0: only nothing fits. */
	util_buf_init(&b, 0, false);
	CHECK_INT(util_buf_append(&b, "", 0), 0);
	CHECK_INT(util_buf_append(&b, "a", 1), -EFBIG);
	CHECK_INT(util_buf_terminate(&b), 0);
	CHECK_INT(b.len, 0);
	util_buf_free(&b);

	/* Terminate on a buffer that never had data. */
	util_buf_init(&b, 5, false);
	CHECK_INT(util_buf_terminate(&b), 0);
	CHECK_STR((char *)b.data, "");
	util_buf_free(&b);

	/* An unbounded cap still refuses a size that would wrap. */
	util_buf_init(&b, SIZE_MAX, false);
	CHECK_INT(util_buf_append(&b, "ab", 2), 0);
	CHECK_INT(util_buf_append(&b, "x", SIZE_MAX - 2), -EFBIG);
	CHECK_INT(b.len, 2);
	util_buf_free(&b);
}

static void test_growth(void)
{
	struct util_buf b;
	unsigned char chunk[1000];

	for (int secret = 0; secret < 2; secret++) {
		util_buf_init(&b, 1 << 20, secret);
		for (int i = 0; i < 300; i++) {
			memset(chunk, i & 0xff, sizeof(chunk));
			if (util_buf_append(&b, chunk, sizeof(chunk))) {
				CHECK(!"append");
				break;
			}
		}
		CHECK_INT(b.len, 300000);
		CHECK(b.cap >= b.len + 1);
		for (size_t i = 0; i < b.len; i += 997)
			CHECK_INT(b.data[i], (i / 1000) & 0xff);
		util_buf_free(&b);
	}
}

static void test_printf(void)
{
	struct util_buf b;
	char *big;
	int rc;

	util_buf_init(&b, 4096, false);
	CHECK_INT(util_buf_printf(&b, "%s=%d;", "a", 42), 0);
	CHECK_INT(util_buf_printf(&b, "%05x", 255), 0);
	CHECK_INT(util_buf_terminate(&b), 0);
	CHECK_STR((char *)b.data, "a=42;000ff");
	CHECK_INT(b.len, 10);
	/* Longer than the internal stack buffer. */
	big = malloc(2000);
	if (big) {
		memset(big, 'z', 1999);
		big[1999] = '\0';
		CHECK_INT(util_buf_printf(&b, "[%s]", big), 0);
		CHECK_INT(b.len, 10 + 2001);
		CHECK_INT(b.data[10], '[');
		CHECK_INT(b.data[10 + 2000], ']');
		/* Over the cap: refused, nothing appended. */
		rc = util_buf_printf(&b, "%s%s", big, big);
		CHECK_INT(rc, -EFBIG);
		CHECK_INT(b.len, 2011);
		free(big);
	}
	util_buf_free(&b);

	/* Secret buffers format the same way. */
	util_buf_init(&b, 100, true);
	CHECK_INT(util_buf_printf(&b, "pass=%s", "hunter2"), 0);
	CHECK_INT(b.len, 12);
	CHECK(!memcmp(b.data, "pass=hunter2", 12));
	CHECK_INT(util_buf_printf(&b, "%200s", "x"), -EFBIG);
	CHECK_INT(b.len, 12);
	util_buf_free(&b);
}

static void test_take(void)
{
	struct util_buf b;
	unsigned char *p;
	size_t len = 99;

	util_buf_init(&b, 100, false);
	CHECK_INT(util_buf_append(&b, "abcdef", 6), 0);
	p = util_buf_take(&b, &len);
	CHECK(p != NULL);
	CHECK_INT(len, 6);
	CHECK(p && !memcmp(p, "abcdef", 6));
	CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
	/* The buffer is usable again and keeps its cap and kind. */
	CHECK_INT(b.max, 100);
	CHECK_INT(util_buf_append(&b, "x", 1), 0);
	CHECK_INT(b.len, 1);
	util_buf_free(&b);
	free(p);

	/* Taking from an empty buffer gives NULL and 0; len may be omitted. */
	util_buf_init(&b, 100, false);
	p = util_buf_take(&b, &len);
	CHECK(p == NULL);
	CHECK_INT(len, 0);
	CHECK(util_buf_take(&b, NULL) == NULL);
}

static void test_secret(void)
{
	struct util_buf b;
	unsigned char *keep;
	size_t cap;
	char *s;
	unsigned char mem[8];

	util_buf_init(&b, 1000, true);
	CHECK(b.secret);
	CHECK_INT(util_buf_append(&b, "topsecret", 9), 0);
	keep = b.data;
	cap = b.cap;
	/* Reset keeps the allocation, so its wiping can be observed. */
	util_buf_reset(&b);
	CHECK_INT(b.len, 0);
	CHECK(b.data == keep && b.cap == cap);
	for (int i = 0; i < 9; i++)
		CHECK_INT(b.data[i], 0);
	util_buf_free(&b);

	/* A non-secret reset leaves the bytes (no wiping cost). */
	util_buf_init(&b, 1000, false);
	CHECK_INT(util_buf_append(&b, "plain", 5), 0);
	util_buf_reset(&b);
	CHECK(!memcmp(b.data, "plain", 5));
	util_buf_free(&b);

	memset(mem, 0xaa, sizeof(mem));
	util_wipe(mem, 4);
	CHECK(mem[0] == 0 && mem[3] == 0 && mem[4] == 0xaa);
	util_wipe(NULL, 10);
	util_wipe(mem, 0);
	CHECK_INT(mem[4], 0xaa);

	s = strdup("passphrase");
	util_secret_str_free(s);
	util_secret_str_free(NULL);
}

int main(void)
{
	test_append_cap();
	test_growth();
	test_printf();
	test_take();
	test_secret();
	CHECK_DONE();
}
