/* SPDX-License-Identifier: MIT */
/*
 * Sealed values: AES-256-GCM with a random 96-bit nonce per value (NIST SP
 * 800-38D 8.2.2: random nonces are safe far beyond the number of values a
 * certificate store ever writes with one key). The etcd store seals every
 * value it writes, so read access to etcd is not access to private keys;
 * the value's name is the additional authenticated data, so a value copied
 * to another name fails to open instead of being served for the wrong
 * domain.
 */
#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "crypto/crypto_int.h"

#define SEAL_MAGIC "cfs1"
#define SEAL_MAGIC_LEN 4
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
/* EVP lengths are int; values are far smaller (the store caps them). */
#define SEAL_MAX (64u * 1024 * 1024)

bool crypto_is_sealed(const void *in, size_t len)
{
	return len >= CRYPTO_SEAL_OVERHEAD && !memcmp(in, SEAL_MAGIC, SEAL_MAGIC_LEN);
}

/* Run the cipher over in into a fresh tail of out (grown first). */
static int gcm_run(EVP_CIPHER_CTX *ctx, bool enc, const void *aad, size_t aadlen,
		   const void *in, size_t len, struct util_buf *out)
{
	size_t start = out->len;
	int n = 0, m = 0;
	int rc;

	/* Grow out by len bytes, then write into them in place. */
	rc = util_buf_append(out, in, len);
	if (rc)
		return rc;
	if ((aadlen && EVP_CipherUpdate(ctx, NULL, &m, aad, (int)aadlen) != 1) ||
	    (len && EVP_CipherUpdate(ctx, out->data + start, &n, out->data + start,
				     (int)len) != 1) ||
	    (size_t)n != len) {
		util_wipe(out->data + start, len);
		out->len = start;
		return enc ? -EIO : -EINVAL;
	}
	return 0;
}

int crypto_seal(const unsigned char key[CRYPTO_SEAL_KEY_LEN], const void *aad, size_t aadlen,
		const void *in, size_t len, struct util_buf *out)
{
	unsigned char nonce[SEAL_NONCE_LEN], tag[SEAL_TAG_LEN];
	EVP_CIPHER_CTX *ctx = NULL;
	size_t start = out->len;
	int n, rc;

	if (len > SEAL_MAX || aadlen > SEAL_MAX)
		return -EFBIG;
	rc = crypto_random(nonce, sizeof(nonce));
	if (rc)
		return rc;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return -ENOMEM;
	rc = -EIO;
	if (EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), key, nonce, NULL) != 1)
		goto out;
	rc = util_buf_append(out, SEAL_MAGIC, SEAL_MAGIC_LEN);
	if (!rc)
		rc = util_buf_append(out, nonce, sizeof(nonce));
	if (!rc)
		rc = gcm_run(ctx, true, aad, aadlen, in, len, out);
	if (rc)
		goto out;
	rc = -EIO;
	if (EVP_EncryptFinal_ex(ctx, tag, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag) != 1)
		goto out;
	rc = util_buf_append(out, tag, sizeof(tag));
out:
	if (rc) {
		char reason[256];

		util_err("crypto: seal: %s", crypto_ssl_reason(reason, sizeof(reason)));
		util_wipe(out->data + start, out->len - start);
		out->len = start;
	}
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

int crypto_unseal(const unsigned char key[CRYPTO_SEAL_KEY_LEN], const void *aad,
		  size_t aadlen, const void *in, size_t len, struct util_buf *out)
{
	const unsigned char *p = in;
	unsigned char tag[SEAL_TAG_LEN];
	EVP_CIPHER_CTX *ctx = NULL;
	size_t start = out->len, body;
	int n, rc;

	if (!crypto_is_sealed(in, len))
		return -EINVAL;
	if (len > SEAL_MAX || aadlen > SEAL_MAX)
		return -EFBIG;
	body = len - CRYPTO_SEAL_OVERHEAD;
	memcpy(tag, p + len - SEAL_TAG_LEN, SEAL_TAG_LEN);
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return -ENOMEM;
	rc = -EIO;
	if (EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), key, p + SEAL_MAGIC_LEN, NULL) != 1)
		goto out;
	rc = gcm_run(ctx, false, aad, aadlen, p + SEAL_MAGIC_LEN + SEAL_NONCE_LEN, body, out);
	if (rc)
		goto out;
	/* The tag decides: until it checks, the plaintext is not trusted. */
	rc = -EINVAL;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) != 1 ||
	    EVP_DecryptFinal_ex(ctx, tag, &n) != 1)
		goto out;
	rc = 0;
out:
	if (rc) {
		ERR_clear_error();
		util_wipe(out->data + start, out->len - start);
		out->len = start;
	}
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}
