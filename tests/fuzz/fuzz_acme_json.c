/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: every parser of what an ACME server sends. The same
 * bytes as a directory, an order, an authorization, an account, renewal
 * information and a problem document; as a C string, a Retry-After and a
 * Link header value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acme/acme_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct acme_directory dir;
	struct acme_order order;
	struct acme_authz authz;
	struct acme_renewal_info ri;
	struct acme_problem prob;
	enum acme_status st;
	char detail[256], *urls[8], *s;
	size_t nurls = 0, i;
	time_t t;

	memset(&dir, 0, sizeof(dir));
	memset(&order, 0, sizeof(order));
	memset(&authz, 0, sizeof(authz));
	memset(&ri, 0, sizeof(ri));
	if (!acme_directory_parse(data, size, &dir, detail, sizeof(detail)))
		acme_directory_clear(&dir);
	if (!acme_order_parse(data, size, &order, detail, sizeof(detail)))
		acme_order_clear(&order);
	if (!acme_authz_parse(data, size, &authz, detail, sizeof(detail)))
		acme_authz_clear(&authz);
	(void)!acme_account_parse_status(data, size, &st);
	(void)!acme_renewal_info_parse(data, size, &ri, detail, sizeof(detail));
	acme_problem_parse(data, size, 400, &prob);
	acme_problem_clear(&prob);

	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	(void)!acme_retry_after_parse(s, 1700000000, &t);
	(void)!acme_link_parse(s, "alternate", urls, 8, &nurls);
	for (i = 0; i < nurls; i++)
		free(urls[i]);
	(void)acme_token_ok(s);
	free(s);
	return 0;
}
