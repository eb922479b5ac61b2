/* SPDX-License-Identifier: MIT */
/*
 * The capped byte buffer and secret wiping. A secret buffer lives in secret
 * memory (util/secret.c: left out of core dumps, wiped when freed); its
 * growth copies by hand, because realloc() may leave the old bytes behind.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

void util_wipe(void *p, size_t len)
{
	if (p && len)
		explicit_bzero(p, len);
}

void util_secret_str_free(char *s)
{
	if (!s)
		return;
	util_wipe(s, strlen(s));
	util_secret_free(s);
}

void util_buf_init(struct util_buf *b, size_t max, bool secret)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
	b->secret = secret;
}

static int buf_grow(struct util_buf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 256;
	unsigned char *p;

	while (cap < need) {
		/* Doubling past SIZE_MAX would wrap and never end. */
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	if (b->secret) {
		p = util_secret_alloc(cap);
		if (!p)
			return -ENOMEM;
		if (b->len)
			memcpy(p, b->data, b->len);
		util_secret_free(b->data);
	} else {
		p = realloc(b->data, cap);
		if (!p)
			return -ENOMEM;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int util_buf_append(struct util_buf *b, const void *p, size_t n)
{
	int rc;

	/* The +1 below keeps room for util_buf_terminate; it must not wrap. */
	if (n > b->max || b->len > b->max - n || b->len + n == SIZE_MAX)
		return -EFBIG;
	if (b->len + n + 1 > b->cap) {
		rc = buf_grow(b, b->len + n + 1);
		if (rc)
			return rc;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int util_buf_terminate(struct util_buf *b)
{
	int rc;

	if (b->len + 1 > b->cap) {
		rc = buf_grow(b, b->len + 1);
		if (rc)
			return rc;
	}
	b->data[b->len] = '\0';
	return 0;
}

int util_buf_printf(struct util_buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[512];
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		rc = -EINVAL;
		goto out;
	}
	if ((size_t)n < sizeof(small)) {
		rc = util_buf_append(b, small, (size_t)n);
		goto out;
	}
	{
		char *big = malloc((size_t)n + 1);

		if (!big) {
			rc = -ENOMEM;
			goto out;
		}
		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		rc = util_buf_append(b, big, (size_t)n);
		/* The formatted copy of a secret must not outlive the call. */
		if (b->secret)
			util_wipe(big, (size_t)n);
		free(big);
	}
out:
	if (b->secret)
		util_wipe(small, sizeof(small));
	return rc;
}

void util_buf_reset(struct util_buf *b)
{
	if (b->secret)
		util_wipe(b->data, b->len);
	b->len = 0;
}

void util_buf_free(struct util_buf *b)
{
	if (b->secret)
		util_secret_free(b->data);
	else
		free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void util_buf_shrink(struct util_buf *b)
{
	unsigned char *p;

	if (!b->data || b->cap == b->len + 1)
		return;
	/* Keep room for the terminating NUL util_buf_terminate may add. */
	if (b->secret) {
		p = util_secret_alloc(b->len + 1);
		if (!p)
			return;
		memcpy(p, b->data, b->len);
		util_secret_free(b->data);
	} else {
		p = realloc(b->data, b->len + 1);
		if (!p)
			return;
	}
	b->data = p;
	b->cap = b->len + 1;
}

unsigned char *util_buf_take(struct util_buf *b, size_t *len)
{
	unsigned char *p = b->data;

	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}
