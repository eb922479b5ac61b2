/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: what an upload of request.csr goes through. Any bytes
 * as a PEM or DER PKCS#10 request, its names through the validator, its key
 * through the policy.
 */
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crypto_csr *csr = NULL;
	struct crypto_key *k = NULL;
	struct crypto_err err;
	char **names = NULL;
	size_t n = 0;

	if (crypto_csr_parse(data, size, &csr, &err))
		return 0;
	if (!crypto_csr_names(csr, size & 1, &names, &n, &err))
		crypto_strv_free(names, n);
	if (!crypto_csr_get1_key(csr, &k)) {
		(void)!crypto_key_check_policy(k, &err);
		crypto_key_free(k);
	}
	crypto_csr_free(csr);
	return 0;
}
