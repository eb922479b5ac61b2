/* SPDX-License-Identifier: MIT */
/*
 * Single X.509 certificates: reading and writing, their key, issuer and
 * self-signature checks, the validity window (the clock is always a
 * parameter, so tests and the renewal logic decide what "now" is), name
 * coverage through the SAN list, and the summary that status shows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "crypto/crypto_int.h"

struct crypto_cert *crypto_cert_wrap(X509 *x)
{
	struct crypto_cert *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	atomic_init(&c->refs, 1);
	c->x509 = x;
	return c;
}

struct crypto_cert *crypto_cert_up_ref(struct crypto_cert *c)
{
	if (c)
		atomic_fetch_add(&c->refs, 1);
	return c;
}

void crypto_cert_free(struct crypto_cert *c)
{
	if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	X509_free(c->x509);
	free(c);
}

int crypto_cert_parse(const void *data, size_t len, struct crypto_cert **out,
		      struct crypto_err *err)
{
	struct crypto_chain *ch = NULL;
	int rc;

	*out = NULL;
	rc = crypto_chain_parse(data, len, &ch, err);
	if (rc)
		return rc;
	*out = crypto_cert_up_ref(crypto_chain_get0(ch, 0));
	crypto_chain_free(ch);
	return 0;
}

int crypto_cert_to_pem(const struct crypto_cert *c, struct util_buf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc;

	if (!bio)
		return -ENOMEM;
	if (!PEM_write_bio_X509(bio, c->x509)) {
		rc = -ENOMEM;
		goto out;
	}
	rc = crypto_bio_to_buf(bio, out);
out:
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}

int crypto_cert_to_der(const struct crypto_cert *c, struct util_buf *out)
{
	unsigned char *der = NULL;
	int len = i2d_X509(c->x509, &der);

	return crypto_der_to_buf(der, len, out);
}

int crypto_cert_get1_key(const struct crypto_cert *c, struct crypto_key **out)
{
	EVP_PKEY *pkey = X509_get_pubkey(c->x509);

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

bool crypto_cert_matches_key(const struct crypto_cert *c, const struct crypto_key *k)
{
	EVP_PKEY *pub = X509_get0_pubkey(c->x509);
	bool same = pub && k && EVP_PKEY_eq(pub, k->pkey) == 1;

	ERR_clear_error();
	return same;
}

bool crypto_cert_issued_by(const struct crypto_cert *subject, const struct crypto_cert *issuer)
{
	EVP_PKEY *pub = X509_get0_pubkey(issuer->x509);
	bool ok;

	/* The names must chain, and the signature is what proves it. */
	ok = pub && X509_NAME_cmp(X509_get_issuer_name(subject->x509),
				  X509_get_subject_name(issuer->x509)) == 0 &&
	     X509_verify(subject->x509, pub) == 1;
	ERR_clear_error();
	return ok;
}

bool crypto_cert_is_self_signed(const struct crypto_cert *c)
{
	return crypto_cert_issued_by(c, c);
}

time_t crypto_cert_not_before(const struct crypto_cert *c)
{
	return crypto_asn1_time(X509_get0_notBefore(c->x509));
}

time_t crypto_cert_not_after(const struct crypto_cert *c)
{
	return crypto_asn1_time(X509_get0_notAfter(c->x509));
}

int crypto_cert_check_validity(const struct crypto_cert *c, time_t now, int skew,
			       struct crypto_err *err)
{
	time_t nb = crypto_cert_not_before(c), na = crypto_cert_not_after(c);
	char date[32];

	if (nb == (time_t)-1 || na == (time_t)-1) {
		crypto_err_set(err, "certificate validity dates cannot be read");
		return -EINVAL;
	}
	if (skew < 0)
		skew = 0;
	if (now + skew < nb) {
		util_format_date(nb, date, sizeof(date));
		crypto_err_set(err, "certificate is not valid before %s", date);
		return -EINVAL;
	}
	if (now - skew > na) {
		util_format_date(na, date, sizeof(date));
		crypto_err_set(err, "certificate has expired on %s", date);
		return -EINVAL;
	}
	return 0;
}

long crypto_cert_days_left(const struct crypto_cert *c, time_t now)
{
	long long d = (long long)crypto_cert_not_after(c) - (long long)now;

	/* Floor, not truncation: half a day past expiry is day -1. */
	if (d < 0)
		return (long)(-((-d + 86399) / 86400));
	return (long)(d / 86400);
}

static int cert_dns_names(const X509 *x, char ***v, size_t *n)
{
	GENERAL_NAMES *gens;
	int rc;

	*v = NULL;
	*n = 0;
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	ERR_clear_error();
	if (!gens)
		return 0;
	rc = crypto_gens_dns(gens, v, n);
	GENERAL_NAMES_free(gens);
	if (rc) {
		crypto_strv_free(*v, *n);
		*v = NULL;
		*n = 0;
	}
	return rc;
}

bool crypto_cert_covers(const struct crypto_cert *c, const char *name)
{
	char **v = NULL;
	size_t n = 0, i;
	bool hit = false;

	/* SANs only: RFC 6125 section 6.4.4 retires the CN fallback. */
	if (name && crypto_name_is_ip(name))
		return X509_check_ip_asc(c->x509, name, 0) == 1;
	if (!name || cert_dns_names(c->x509, &v, &n))
		return false;
	for (i = 0; i < n && !hit; i++)
		hit = crypto_name_matches(v[i], name);
	crypto_strv_free(v, n);
	return hit;
}

int crypto_cert_check_covers(const struct crypto_cert *c, const char *name,
			     struct crypto_err *err)
{
	if (crypto_cert_covers(c, name))
		return 0;
	crypto_err_set(err, "certificate does not cover %s", name ? name : "(none)");
	return -EINVAL;
}

int crypto_cert_check_key_policy(const struct crypto_cert *c, struct crypto_err *err)
{
	struct crypto_key *k = NULL;
	int rc;

	rc = crypto_cert_get1_key(c, &k);
	if (rc) {
		crypto_err_set(err, "certificate public key cannot be read");
		return rc;
	}
	rc = crypto_key_check_policy(k, err);
	crypto_key_free(k);
	return rc;
}

static void hex_lower(const unsigned char *p, size_t n, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n && 2 * i + 2 < outlen; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 15];
	}
	out[2 * i] = '\0';
}

int crypto_cert_info(const struct crypto_cert *c, struct crypto_cert_info *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct crypto_key *k = NULL;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	crypto_name_short(X509_get_subject_name(c->x509), out->subject, sizeof(out->subject));
	crypto_name_short(X509_get_issuer_name(c->x509), out->issuer, sizeof(out->issuer));
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c->x509), NULL);
	hex = bn ? BN_bn2hex(bn) : NULL;
	if (!hex) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; hex[i]; i++)
		if (hex[i] >= 'A' && hex[i] <= 'F')
			hex[i] = (char)(hex[i] - 'A' + 'a');
	snprintf(out->serial, sizeof(out->serial), "%s", hex);
	if (!X509_digest(c->x509, EVP_sha256(), md, &mdlen)) {
		rc = -ENOMEM;
		goto out;
	}
	hex_lower(md, mdlen, out->fingerprint_sha256, sizeof(out->fingerprint_sha256));
	rc = crypto_cert_get1_key(c, &k);
	snprintf(out->key_type, sizeof(out->key_type), "%s",
		 rc ? "other" : crypto_key_type_name(crypto_key_type_of(k)));
	out->not_before = crypto_cert_not_before(c);
	out->not_after = crypto_cert_not_after(c);
	rc = cert_dns_names(c->x509, &out->sans, &out->nsans);
out:
	ERR_clear_error();
	crypto_key_free(k);
	OPENSSL_free(hex);
	BN_free(bn);
	if (rc)
		crypto_cert_info_clear(out);
	return rc;
}

void crypto_cert_info_clear(struct crypto_cert_info *info)
{
	if (!info)
		return;
	crypto_strv_free(info->sans, info->nsans);
	info->sans = NULL;
	info->nsans = 0;
}

/* The first critical extension OpenSSL does not know, or NULL. */
static const X509_EXTENSION *unknown_critical(const X509 *x)
{
	const X509_EXTENSION *ext;
	int i;

	for (i = 0; i < X509_get_ext_count(x); i++) {
		ext = X509_get_ext(x, i);
		if (X509_EXTENSION_get_critical(ext) &&
		    !X509_supported_extension((X509_EXTENSION *)ext))
			return ext;
	}
	return NULL;
}

/* What every certificate of an uploaded chain must be (leaf and intermediates). */
static int check_tls_any(const X509 *x, struct crypto_err *err)
{
	const X509_EXTENSION *ext;
	char who[160], oid[80];
	int mdnid = NID_undef, secbits = -1;

	crypto_name_short(X509_get_subject_name(x), who, sizeof(who));
	ext = unknown_critical(x);
	if (ext) {
		OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object((X509_EXTENSION *)ext), 1);
		crypto_err_set(err, "certificate '%s' has an unknown critical extension %s", who,
			       oid);
		return -EINVAL;
	}
	if (!X509_get_signature_info((X509 *)x, &mdnid, NULL, &secbits, NULL)) {
		crypto_err_set(err, "certificate '%s' has a signature algorithm certfs does not "
				    "know", who);
		return -EINVAL;
	}
	/* OpenSSL rates SHA-1 at 63 bits (collisions) and MD5 at 39. */
	if (secbits >= 0 && secbits < 112) {
		crypto_err_set(err, "certificate '%s' is signed with %s, which TLS clients refuse",
			       who, mdnid != NID_undef ? OBJ_nid2sn(mdnid) : "a weak digest");
		return -EINVAL;
	}
	return 0;
}

int crypto_chain_check_tls(const struct crypto_chain *ch, struct crypto_err *err)
{
	const X509 *leaf;
	uint32_t flags;
	size_t i;
	int rc = 0;

	if (!ch || ch->n == 0) {
		crypto_err_set(err, "chain: no certificate");
		return -EINVAL;
	}
	leaf = ch->certs[0]->x509;
	/* Also computes the cached extension flags read below. */
	flags = X509_get_extension_flags((X509 *)leaf);
	if (flags & EXFLAG_INVALID) {
		crypto_err_set(err, "certificate has extensions that cannot be read");
		rc = -EINVAL;
		goto out;
	}
	if (flags & EXFLAG_CA) {
		crypto_err_set(err, "certificate is a CA certificate (CA:TRUE), which TLS clients "
				    "refuse as a server certificate");
		rc = -EINVAL;
		goto out;
	}
	if ((flags & EXFLAG_XKUSAGE) && !(X509_get_extended_key_usage((X509 *)leaf) & XKU_SSL_SERVER)) {
		crypto_err_set(err, "certificate's extended key usage does not include serverAuth "
				    "(TLS server)");
		rc = -EINVAL;
		goto out;
	}
	for (i = 0; i < ch->n && !rc; i++)
		rc = check_tls_any(ch->certs[i]->x509, err);
out:
	ERR_clear_error();
	return rc;
}
