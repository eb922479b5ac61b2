/* SPDX-License-Identifier: MIT */
/*
 * A few assertion macros for the unit tests: each failed check prints
 * FILE:LINE and the expression, and the test's exit status is the number of
 * failures (capped), so meson reports the test as failed.
 */
#ifndef CERTFS_TEST_CHECK_H
#define CERTFS_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,  \
				__LINE__, #cond);                               \
			check_failures++;                                       \
		}                                                               \
	} while (0)

#define CHECK_INT(a, b)                                                         \
	do {                                                                    \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
		if (check_a_ != check_b_) {                                     \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n",  \
				__FILE__, __LINE__, #a, check_a_, check_b_);    \
			check_failures++;                                       \
		}                                                               \
	} while (0)

#define CHECK_STR(a, b)                                                         \
	do {                                                                    \
		const char *check_a_ = (a), *check_b_ = (b);                    \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_)) {     \
			fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", \
				__FILE__, __LINE__, #a,                         \
				check_a_ ? check_a_ : "(null)",                 \
				check_b_ ? check_b_ : "(null)");                \
			check_failures++;                                       \
		}                                                               \
	} while (0)

/* The message contains the substring. */
#define CHECK_CONTAINS(msg, sub)                                                \
	do {                                                                    \
		const char *check_m_ = (msg), *check_s_ = (sub);                \
		if (!check_m_ || !strstr(check_m_, check_s_)) {                 \
			fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", \
				__FILE__, __LINE__, check_m_ ? check_m_ : "(null)", \
				check_s_);                                      \
			check_failures++;                                       \
		}                                                               \
	} while (0)

#define CHECK_DONE()                                                            \
	do {                                                                    \
		if (check_failures)                                             \
			fprintf(stderr, "%d check(s) failed\n", check_failures); \
		return check_failures > 100 ? 100 : check_failures;             \
	} while (0)

#endif
