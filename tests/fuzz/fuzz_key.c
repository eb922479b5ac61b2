/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: what an upload of privkey.pem goes through. Any bytes
 * as a PEM private key (PKCS#8, encrypted PKCS#8, PKCS#1, SEC1, Proc-Type
 * encryption), with and without a passphrase, then the key policy. The
 * iteration caps keep every input cheap: a slow one is a finding.
 */
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crypto_key *k = NULL;
	struct crypto_err err;
	const char *pass[] = { NULL, "fuzz" };
	size_t i;

	for (i = 0; i < 2; i++) {
		if (crypto_key_parse_pem(data, size, pass[i], &k, &err))
			continue;
		(void)!crypto_key_check_policy(k, &err);
		crypto_key_free(k);
		k = NULL;
	}
	(void)crypto_pem_has_key(data, size);
	(void)crypto_pem_has_cert(data, size);
	return 0;
}
