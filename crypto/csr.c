/* SPDX-License-Identifier: MIT */
/*
 * PKCS#10 certificate requests: parsing one a user supplies (its signature
 * is checked, since a request signed by some other key would get a
 * certificate for a key nobody holds), listing the names it asks for, and
 * building the request certfs sends to the ACME server.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "crypto/crypto_int.h"

void crypto_csr_free(struct crypto_csr *csr)
{
	if (!csr)
		return;
	X509_REQ_free(csr->req);
	free(csr);
}

static struct crypto_csr *csr_wrap(X509_REQ *req)
{
	struct crypto_csr *csr = calloc(1, sizeof(*csr));

	if (csr)
		csr->req = req;
	return csr;
}

int crypto_csr_parse(const void *data, size_t len, struct crypto_csr **out,
		     struct crypto_err *err)
{
	const unsigned char *d = data, *p;
	struct crypto_pem_block blk;
	unsigned char *der = NULL;
	X509_REQ *req = NULL;
	EVP_PKEY *pub;
	size_t pos = 0;
	bool found = false;
	long derlen = 0;
	char why[128];
	int rc;

	*out = NULL;
	while (crypto_pem_next(data, len, &pos, &blk)) {
		if (crypto_pem_label_is(&blk, "CERTIFICATE REQUEST") ||
		    crypto_pem_label_is(&blk, "NEW CERTIFICATE REQUEST")) {
			found = true;
			break;
		}
	}
	if (found) {
		rc = crypto_pem_block_decode(&blk, &der, &derlen);
		if (rc == -EINVAL)
			crypto_err_set(err, "CSR is not valid PEM");
		if (rc)
			goto out;
		d = der;
	} else if (len > 0 && d[0] == 0x30 && len < 1024 * 1024) {
		derlen = (long)len;
	} else {
		crypto_err_set(err, "no certificate request found");
		rc = -EINVAL;
		goto out;
	}
	p = d;
	req = d2i_X509_REQ(NULL, &p, derlen);
	if (!req) {
		crypto_err_set(err, "CSR is not valid: %s", crypto_ssl_reason(why, sizeof(why)));
		rc = -EINVAL;
		goto out;
	}
	if (p != d + derlen) {
		crypto_err_set(err, "CSR is not valid: trailing data");
		rc = -EINVAL;
		goto out;
	}
	pub = X509_REQ_get0_pubkey(req);
	if (!pub || X509_REQ_verify(req, pub) != 1) {
		crypto_err_set(err, "CSR signature is not valid");
		rc = -EINVAL;
		goto out;
	}
	*out = csr_wrap(req);
	if (!*out) {
		rc = -ENOMEM;
		goto out;
	}
	req = NULL;
	rc = 0;
out:
	ERR_clear_error();
	X509_REQ_free(req);
	OPENSSL_free(der);
	return rc;
}

static int csr_cn(const X509_REQ *req, char **cn)
{
	const X509_NAME *name = X509_REQ_get_subject_name(req);
	const ASN1_STRING *s;
	unsigned char *utf8 = NULL;
	int idx, len;

	*cn = NULL;
	idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (idx < 0)
		return 0;
	s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
	len = ASN1_STRING_to_UTF8(&utf8, s);
	if (len < 0) {
		ERR_clear_error();
		return 0;
	}
	if (!memchr(utf8, '\0', (size_t)len))
		*cn = strndup((const char *)utf8, (size_t)len);
	OPENSSL_free(utf8);
	return 0;
}

int crypto_csr_names(const struct crypto_csr *csr, char ***names, size_t *n)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	char canon[256], *cn = NULL;
	size_t i;
	int rc;

	*names = NULL;
	*n = 0;
	exts = X509_REQ_get_extensions(csr->req);
	if (exts)
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	ERR_clear_error();
	if (gens) {
		rc = crypto_gens_dns(gens, names, n);
		if (rc)
			goto out;
	}
	rc = csr_cn(csr->req, &cn);
	if (rc)
		goto out;
	if (cn && crypto_name_validate(cn, canon, sizeof(canon), NULL) == 0) {
		for (i = 0; i < *n; i++)
			if (strcasecmp((*names)[i], cn) == 0)
				break;
		if (i == *n) {
			rc = crypto_strv_push(names, n, cn, strlen(cn));
			if (rc)
				goto out;
		}
	}
	rc = 0;
out:
	if (rc) {
		crypto_strv_free(*names, *n);
		*names = NULL;
		*n = 0;
	}
	free(cn);
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return rc;
}

int crypto_csr_get1_key(const struct crypto_csr *csr, struct crypto_key **out)
{
	EVP_PKEY *pkey = X509_REQ_get_pubkey(csr->req);

	*out = NULL;
	if (!pkey) {
		ERR_clear_error();
		return -EINVAL;
	}
	*out = crypto_key_wrap(pkey, false);
	if (!*out) {
		EVP_PKEY_free(pkey);
		return -ENOMEM;
	}
	return 0;
}

int crypto_csr_new(const struct crypto_key *key, const char *const *names, size_t n,
		   struct crypto_csr **out)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *ext = NULL;
	GENERAL_NAMES *gens = NULL;
	X509_REQ *req = NULL;
	int rc;

	*out = NULL;
	if (!key || !key->priv)
		return -EINVAL;
	rc = crypto_names_check(names, n);
	if (rc)
		return rc;
	rc = -ENOMEM;
	req = X509_REQ_new();
	exts = sk_X509_EXTENSION_new_null();
	gens = crypto_gens_from_names(names, n);
	if (!req || !exts || !gens)
		goto out;
	/* PKCS#10 version 1 is encoded as 0. */
	if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, key->pkey))
		goto out;
	rc = crypto_name_cn(X509_REQ_get_subject_name(req), names[0]);
	if (rc)
		goto out;
	rc = -ENOMEM;
	ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
	if (!ext || !sk_X509_EXTENSION_push(exts, ext))
		goto out;
	ext = NULL;
	if (!X509_REQ_add_extensions(req, exts))
		goto out;
	if (X509_REQ_sign(req, key->pkey, crypto_sign_md(key->pkey)) <= 0) {
		rc = -EINVAL;
		goto out;
	}
	*out = csr_wrap(req);
	if (!*out)
		goto out;
	req = NULL;
	rc = 0;
out:
	ERR_clear_error();
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	X509_REQ_free(req);
	return rc;
}

int crypto_csr_to_der(const struct crypto_csr *csr, struct util_buf *out)
{
	unsigned char *der = NULL;
	int len = i2d_X509_REQ(csr->req, &der);

	return crypto_der_to_buf(der, len, out);
}

int crypto_csr_to_pem(const struct crypto_csr *csr, struct util_buf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc;

	if (!bio)
		return -ENOMEM;
	if (!PEM_write_bio_X509_REQ(bio, csr->req)) {
		rc = -ENOMEM;
		goto out;
	}
	rc = crypto_bio_to_buf(bio, out);
out:
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}
