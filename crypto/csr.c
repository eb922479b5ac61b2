/* SPDX-License-Identifier: MIT */
/*
 * PKCS#10 certificate requests: parsing one a user supplies (its signature
 * is checked, since a request signed by some other key would get a
 * certificate for a key nobody holds), listing the names it asks for, and
 * building the request certfs sends to the ACME server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* The subject's CN as UTF-8 (NULL when absent); -EINVAL when unreadable. */
static int csr_cn(const X509_REQ *req, char **cn, size_t *len)
{
	const X509_NAME *name = X509_REQ_get_subject_name(req);
	const ASN1_STRING *s;
	unsigned char *utf8 = NULL;
	int idx, n;

	*cn = NULL;
	*len = 0;
	idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (idx < 0)
		return 0;
	s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
	n = ASN1_STRING_to_UTF8(&utf8, s);
	if (n < 0) {
		ERR_clear_error();
		return -EINVAL;
	}
	*cn = (char *)utf8;
	*len = (size_t)n;
	return 0;
}

/*
 * Validate one requested name and add its canonical form unless already
 * listed. The validator's sentences never quote control bytes, so nothing
 * from a CSR can put a line of its own into status.
 */
static int csr_add_name(char ***v, size_t *n, const char *s, size_t len, bool dev,
			struct crypto_err *err)
{
	struct crypto_err why = { { 0 } };
	char canon[256];
	size_t i;

	if (memchr(s, '\0', len)) {
		crypto_err_set(err, "CSR name contains a NUL byte");
		return -EINVAL;
	}
	if (len >= sizeof(canon)) {
		crypto_err_set(err, "CSR name is longer than 253 bytes");
		return -EINVAL;
	}
	memcpy(canon, s, len);
	canon[len] = '\0';
	if (dev ? crypto_name_validate_dev(canon, canon, sizeof(canon), &why)
		: crypto_name_validate(canon, canon, sizeof(canon), &why)) {
		crypto_err_set(err, "CSR name: %s", why.msg);
		return -EINVAL;
	}
	for (i = 0; i < *n; i++)
		if (strcmp((*v)[i], canon) == 0)
			return 0;
	if (*n >= CRYPTO_NAMES_MAX) {
		crypto_err_set(err, "CSR lists more than %d names (the limit)", CRYPTO_NAMES_MAX);
		return -EINVAL;
	}
	return crypto_strv_push(v, n, canon, strlen(canon));
}

/* An iPAddress SAN in its canonical text; "" when it is neither 4 nor 16 bytes. */
static void csr_ip_text(const GENERAL_NAME *g, char *addr, size_t addrlen)
{
	const unsigned char *ip = ASN1_STRING_get0_data(g->d.iPAddress);
	int len = ASN1_STRING_length(g->d.iPAddress);

	addr[0] = '\0';
	if (len == 4)
		inet_ntop(AF_INET, ip, addr, (socklen_t)addrlen);
	else if (len == 16)
		inet_ntop(AF_INET6, ip, addr, (socklen_t)addrlen);
}

/* A SAN certfs cannot order: said by kind, an IP address in full. */
static void csr_other_name(const GENERAL_NAME *g, struct crypto_err *err)
{
	char addr[64];

	switch (g->type) {
	case GEN_IPADD:
		csr_ip_text(g, addr, sizeof(addr));
		crypto_err_set(err, "CSR asks for IP address %s: certfs orders certificates for "
				    "DNS names only", addr[0] ? addr : "(malformed)");
		break;
	case GEN_EMAIL:
		crypto_err_set(err, "CSR asks for an email address: certfs orders certificates "
				    "for DNS names only");
		break;
	case GEN_URI:
		crypto_err_set(err, "CSR asks for a URI: certfs orders certificates for DNS "
				    "names only");
		break;
	default:
		crypto_err_set(err, "CSR asks for a name that is not a DNS name: certfs orders "
				    "certificates for DNS names only");
		break;
	}
}

int crypto_csr_names(const struct crypto_csr *csr, bool dev, char ***names, size_t *n,
		     struct crypto_err *err)
{
	char addr[64];
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	const GENERAL_NAME *g;
	char *cn = NULL;
	size_t cnlen = 0;
	int i, rc;

	*names = NULL;
	*n = 0;
	exts = X509_REQ_get_extensions(csr->req);
	if (exts)
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, &i, NULL);
	ERR_clear_error();
	if (exts && !gens && i != -1) {
		crypto_err_set(err, "CSR subjectAltName cannot be read");
		rc = -EINVAL;
		goto out;
	}
	if (sk_GENERAL_NAME_num(gens) > CRYPTO_NAMES_MAX) {
		crypto_err_set(err, "CSR lists more than %d names (the limit)", CRYPTO_NAMES_MAX);
		rc = -EINVAL;
		goto out;
	}
	/* Every name is judged: one dropped quietly would be a certificate short of it. */
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		/* An address is a name only for an issuer of development
		 * certificates; email and URI SANs never are. */
		if (dev && g->type == GEN_IPADD) {
			csr_ip_text(g, addr, sizeof(addr));
			if (!addr[0]) {
				crypto_err_set(err, "CSR asks for a malformed IP address");
				rc = -EINVAL;
				goto out;
			}
			rc = csr_add_name(names, n, addr, strlen(addr), dev, err);
			if (rc)
				goto out;
			continue;
		}
		if (g->type != GEN_DNS) {
			csr_other_name(g, err);
			rc = -EINVAL;
			goto out;
		}
		rc = csr_add_name(names, n, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
				  (size_t)ASN1_STRING_length(g->d.dNSName), dev, err);
		if (rc)
			goto out;
	}
	rc = csr_cn(csr->req, &cn, &cnlen);
	if (rc) {
		crypto_err_set(err, "CSR common name cannot be read");
		goto out;
	}
	if (cn) {
		rc = csr_add_name(names, n, cn, cnlen, dev, err);
		if (rc)
			goto out;
	}
	if (*n == 0) {
		crypto_err_set(err, "CSR names no DNS name");
		rc = -EINVAL;
		goto out;
	}
	rc = 0;
out:
	if (rc) {
		crypto_strv_free(*names, *n);
		*names = NULL;
		*n = 0;
	}
	OPENSSL_free(cn);
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
