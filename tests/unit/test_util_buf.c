/* SPDX-License-Identifier: MIT */
/*
 * util: the capped buffer and secret wiping. Caps are exact (max bytes fit,
 * one more is -EFBIG and appends nothing), printf and take behave, and
 * secret buffers keep their contents across growth and wipe on reset, and
 * secret memory is zeroed, wiped for reuse and marked "dd" (MADV_DONTDUMP)
 * by the kernel itself, as /proc/self/smaps shows.
 */
#include <errno.h>
#include <stdio.h>
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

/* The VmFlags line of the mapping that holds p, from /proc/self/smaps. */
static bool kernel_says_dontdump(const void *p)
{
	unsigned long lo = 0, hi = 0, a = (unsigned long)(uintptr_t)p;
	bool inside = false, dd = false;
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "re");

	CHECK(f != NULL);
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = a >= lo && a < hi;
		else if (inside && !strncmp(line, "VmFlags:", 8))
			dd = strstr(line, " dd") != NULL;
	}
	if (f)
		fclose(f);
	return dd;
}

static void test_secret_memory(void)
{
	unsigned char *p, *q, *big, *m;
	struct util_buf b;
	size_t i;
	bool zero = true;

	p = util_secret_alloc(100);
	CHECK(p && util_secret_kept_from_dumps(p) && kernel_says_dontdump(p));
	for (i = 0; i < 100; i++)
		zero &= p[i] == 0;
	CHECK(zero);
	memset(p, 0xa5, 100);
	util_secret_free(p);
	/* the same class reuses the block, wiped */
	q = util_secret_alloc(90);
	CHECK(q == p);
	for (i = 0, zero = true; i < 90; i++)
		zero &= q[i] == 0;
	CHECK(zero);
	util_secret_free(q);

	big = util_secret_alloc(3 << 20);
	CHECK(big && util_secret_kept_from_dumps(big) && kernel_says_dontdump(big + (2 << 20)));
	memset(big, 0x5a, 3 << 20);
	util_secret_free(big);
	big = util_secret_alloc(3 << 20);
	CHECK(big && big[1 << 20] == 0 && big[(3 << 20) - 1] == 0);
	util_secret_free(big);

	/* malloc'd blocks are taken too (wiped, not in the region) */
	m = malloc(32);
	CHECK(m && !util_secret_kept_from_dumps(m));
	util_secret_free(m);
	util_secret_free(NULL);

	util_buf_init(&b, 1 << 20, true);
	CHECK_INT(util_buf_append(&b, "-----BEGIN PRIVATE KEY-----", 27), 0);
	CHECK(util_secret_kept_from_dumps(b.data) && kernel_says_dontdump(b.data));
	util_buf_shrink(&b);
	CHECK(util_secret_kept_from_dumps(b.data));
	util_buf_free(&b);
	util_buf_init(&b, 1 << 20, false);
	CHECK_INT(util_buf_append(&b, "public", 6), 0);
	CHECK(!util_secret_kept_from_dumps(b.data));
	util_buf_free(&b);
}

int main(void)
{
	test_append_cap();
	test_growth();
	test_printf();
	test_take();
	test_secret();
	test_secret_memory();
	CHECK_DONE();
}
