/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the name validator behind mkdir, names and CSRs, the
 * RFC 6125 matcher and the Punycode decoder. The input is split at its
 * first NUL byte into a name and a pattern.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), canon[256], again[256], *pattern;
	struct crypto_err err;
	uint32_t cps[64];
	size_t n = 64;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	pattern = memchr(s, '\0', size) ? s + strlen(s) + 1 : s;
	if (!crypto_name_validate(s, canon, sizeof(canon), &err)) {
		/* a valid name is its own canonical form, and matches itself */
		if (crypto_name_validate(canon, again, sizeof(again), &err) ||
		    strcmp(canon, again) || !crypto_name_matches(canon, s))
			abort();
	}
	(void)crypto_name_matches(pattern, s);
	(void)!crypto_punycode_decode(s, strlen(s), cps, &n);
	free(s);
	return 0;
}
