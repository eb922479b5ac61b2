/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: what an upload of fullchain.pem goes through. Any bytes
 * as a PEM bundle or DER certificate, then ordering, the TLS client rules,
 * the key policy, coverage and the status summary of the leaf.
 */
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crypto_chain *in = NULL, *sorted = NULL;
	struct crypto_cert_info info;
	struct crypto_err err;
	struct crypto_cert *leaf;

	if (crypto_chain_parse(data, size, &in, &err))
		return 0;
	if (!crypto_chain_sort(in, &sorted, &err)) {
		leaf = crypto_chain_get0(sorted, 0);
		(void)!crypto_chain_check_tls(sorted, &err);
		(void)!crypto_cert_check_key_policy(leaf, &err);
		(void)crypto_cert_covers(leaf, "www.example.com");
		if (!crypto_cert_info(leaf, &info))
			crypto_cert_info_clear(&info);
	}
	crypto_chain_free(sorted);
	crypto_chain_free(in);
	return 0;
}
