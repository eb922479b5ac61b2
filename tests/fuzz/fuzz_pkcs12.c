/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: what an upload of cert.pfx goes through. Any bytes as
 * PKCS#12 with the empty password (tried both ways, as certfs does) and
 * with the seeds' password "fuzz", then ordering and the TLS client rules.
 * The iteration caps keep every input cheap: a slow one is a finding.
 */
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crypto_chain *ch = NULL, *sorted = NULL;
	struct crypto_key *k = NULL;
	struct crypto_err err;
	const char *pass[] = { NULL, "fuzz" };
	size_t i;

	for (i = 0; i < 2; i++) {
		if (crypto_p12_parse(data, size, pass[i], &k, &ch, &err))
			continue;
		(void)!crypto_key_check_policy(k, &err);
		if (crypto_chain_count(ch) && !crypto_chain_sort(ch, &sorted, &err)) {
			(void)!crypto_chain_check_tls(sorted, &err);
			crypto_chain_free(sorted);
			sorted = NULL;
		}
		crypto_chain_free(ch);
		crypto_key_free(k);
		ch = NULL;
		k = NULL;
	}
	return 0;
}
