/* SPDX-License-Identifier: MIT */
/*
 * Issuing certificates locally: self-signed leaves, a local CA root, its
 * intermediate and the leaves they sign. The extensions follow what browsers and `openssl verify`
 * expect of a small private CA (CA/Browser Forum profile where it applies):
 * random 128-bit serials, SKI/AKI, serverAuth only, and leaves that never
 * outlive their CA.
 */
#include <errno.h>
#include <string.h>

#include <openssl/err.h>

#include "crypto/crypto_int.h"

enum cert_kind {
	KIND_LEAF,
	KIND_ROOT,
	KIND_INTERMEDIATE,
};

struct cert_spec {
	enum cert_kind kind;
	EVP_PKEY *subject_pub;    /* key the certificate is for */
	const char *cn;
	const char *const *names; /* DNS SANs (leaves only) */
	size_t n;
	const unsigned char *acme_id; /* RFC 8737 acmeIdentifier (SHA-256), leaves only */
	X509 *issuer;             /* NULL: self-issued */
	EVP_PKEY *sign_key;
	time_t not_before, not_after;
};

/*
 * RFC 8737 3: the critical id-pe-acmeIdentifier extension
 * (1.3.6.1.5.5.7.1.31) whose value is an OCTET STRING holding the SHA-256
 * of the key authorization.
 */
static int add_acme_identifier(X509 *x, const unsigned char digest[32])
{
	ASN1_OCTET_STRING *inner = ASN1_OCTET_STRING_new(), *value = ASN1_OCTET_STRING_new();
	ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
	X509_EXTENSION *ext = NULL;
	unsigned char *der = NULL;
	int len, rc = -ENOMEM;

	if (!inner || !value || !oid || !ASN1_OCTET_STRING_set(inner, digest, 32))
		goto out;
	len = i2d_ASN1_OCTET_STRING(inner, &der);
	if (len <= 0 || !ASN1_OCTET_STRING_set(value, der, len))
		goto out;
	ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, value);
	if (!ext || !X509_add_ext(x, ext, -1))
		goto out;
	rc = 0;
out:
	OPENSSL_free(der);
	X509_EXTENSION_free(ext);
	ASN1_OBJECT_free(oid);
	ASN1_OCTET_STRING_free(inner);
	ASN1_OCTET_STRING_free(value);
	return rc;
}

static int cert_build(const struct cert_spec *s, struct crypto_cert **out)
{
	GENERAL_NAMES *gens = NULL;
	X509V3_CTX ctx;
	X509 *x = NULL;
	const char *ku;
	int rc = -ENOMEM;

	*out = NULL;
	x = X509_new();
	if (!x)
		goto out;
	/* X.509 v3 is encoded as 2. */
	if (!X509_set_version(x, 2) || !X509_set_pubkey(x, s->subject_pub))
		goto out;
	rc = crypto_set_random_serial(x);
	if (rc)
		goto out;
	rc = crypto_name_cn(X509_get_subject_name(x), s->cn);
	if (rc)
		goto out;
	rc = -ENOMEM;
	if (!X509_set_issuer_name(x, s->issuer ? X509_get_subject_name(s->issuer)
					       : X509_get_subject_name(x)))
		goto out;
	if (!ASN1_TIME_set(X509_getm_notBefore(x), s->not_before) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), s->not_after))
		goto out;
	X509V3_set_ctx(&ctx, s->issuer ? s->issuer : x, x, NULL, NULL, 0);
	if (s->kind != KIND_LEAF) {
		/*
		 * The root may sign an intermediate; the intermediate
		 * (pathlen:0) signs leaves only.
		 */
		rc = crypto_x509_add_ext(x, &ctx, NID_basic_constraints,
					 s->kind == KIND_ROOT ? "critical,CA:TRUE"
							      : "critical,CA:TRUE,pathlen:0");
		if (!rc)
			rc = crypto_x509_add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
		if (!rc)
			rc = crypto_x509_add_ext(x, &ctx, NID_subject_key_identifier, "hash");
		if (!rc && s->issuer)
			rc = crypto_x509_add_ext(x, &ctx, NID_authority_key_identifier,
						 "keyid:always");
		if (rc)
			goto out;
	} else {
		/* keyEncipherment only means something for RSA key transport. */
		ku = EVP_PKEY_get_base_id(s->subject_pub) == EVP_PKEY_RSA
			     ? "critical,digitalSignature,keyEncipherment"
			     : "critical,digitalSignature";
		rc = crypto_x509_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE");
		if (!rc)
			rc = crypto_x509_add_ext(x, &ctx, NID_key_usage, ku);
		if (!rc)
			rc = crypto_x509_add_ext(x, &ctx, NID_ext_key_usage, "serverAuth");
		if (!rc)
			rc = crypto_x509_add_ext(x, &ctx, NID_subject_key_identifier, "hash");
		if (!rc && s->issuer)
			rc = crypto_x509_add_ext(x, &ctx, NID_authority_key_identifier,
						 "keyid:always");
		if (rc)
			goto out;
		rc = -ENOMEM;
		gens = crypto_gens_from_names(s->names, s->n);
		if (!gens || !X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT))
			goto out;
		if (s->acme_id && (rc = add_acme_identifier(x, s->acme_id)))
			goto out;
	}
	if (X509_sign(x, s->sign_key, crypto_sign_md(s->sign_key)) <= 0) {
		rc = -EINVAL;
		goto out;
	}
	*out = crypto_cert_wrap(x);
	if (!*out) {
		rc = -ENOMEM;
		goto out;
	}
	x = NULL;
	rc = 0;
out:
	ERR_clear_error();
	GENERAL_NAMES_free(gens);
	X509_free(x);
	return rc;
}

int crypto_selfsigned_new(const struct crypto_key *key, const char *const *names,
			  size_t n, int days, time_t now, struct crypto_cert **out)
{
	struct cert_spec s = {
		.kind = KIND_LEAF,
		.names = names,
		.n = n,
		.not_before = now - 60,
		.not_after = now + (time_t)days * 86400,
	};
	int rc;

	*out = NULL;
	if (!key || !key->priv || days <= 0)
		return -EINVAL;
	rc = crypto_names_check(names, n);
	if (rc)
		return rc;
	s.subject_pub = key->pkey;
	s.sign_key = key->pkey;
	s.cn = names[0];
	return cert_build(&s, out);
}

int crypto_alpn_cert_new(const struct crypto_key *key, const char *name, const char *keyauth,
			 time_t now, struct crypto_cert **out)
{
	const char *names[1] = { name };
	unsigned char digest[32];
	unsigned int dlen = 0;
	struct cert_spec s = {
		.kind = KIND_LEAF,
		.names = names,
		.n = 1,
		.cn = name,
		.acme_id = digest,
		.not_before = now - 60,
		.not_after = now + 7 * 86400,
	};
	int rc;

	*out = NULL;
	if (!key || !key->priv || !name || !keyauth)
		return -EINVAL;
	rc = crypto_names_check(names, 1);
	if (rc)
		return rc;
	if (!EVP_Digest(keyauth, strlen(keyauth), digest, &dlen, EVP_sha256(), NULL) || dlen != 32)
		return -ENOMEM;
	s.subject_pub = key->pkey;
	s.sign_key = key->pkey;
	return cert_build(&s, out);
}

int crypto_ca_root_new(const struct crypto_key *key, const char *cn, int days,
		       time_t now, struct crypto_cert **out)
{
	struct cert_spec s = {
		.kind = KIND_ROOT,
		.cn = cn,
		.not_before = now - 60,
		.not_after = now + (time_t)days * 86400,
	};

	*out = NULL;
	if (!key || !key->priv || !cn || !*cn || strlen(cn) > 64 || days <= 0)
		return -EINVAL;
	s.subject_pub = key->pkey;
	s.sign_key = key->pkey;
	return cert_build(&s, out);
}

int crypto_ca_issue(const struct crypto_key *ca_key, const struct crypto_cert *ca_cert,
		    const struct crypto_key *subject_key, const char *const *names,
		    size_t n, int days, time_t now, struct crypto_cert **out)
{
	struct cert_spec s = {
		.kind = KIND_LEAF,
		.names = names,
		.n = n,
		.not_before = now - 60,
		.not_after = now + (time_t)days * 86400,
	};
	time_t ca_end;
	int rc;

	*out = NULL;
	if (!ca_key || !ca_key->priv || !ca_cert || !subject_key || days <= 0 ||
	    !crypto_cert_matches_key(ca_cert, ca_key))
		return -EINVAL;
	rc = crypto_names_check(names, n);
	if (rc)
		return rc;
	/* A leaf outliving its CA would be refused by clients anyway. */
	ca_end = crypto_cert_not_after(ca_cert);
	if (ca_end != (time_t)-1 && s.not_after > ca_end)
		s.not_after = ca_end;
	if (s.not_after <= s.not_before)
		return -EINVAL;
	s.subject_pub = subject_key->pkey;
	s.sign_key = ca_key->pkey;
	s.issuer = ca_cert->x509;
	s.cn = names[0];
	return cert_build(&s, out);
}

int crypto_ca_intermediate_new(const struct crypto_key *root_key,
			       const struct crypto_cert *root_cert,
			       const struct crypto_key *key, const char *cn, int days,
			       time_t now, struct crypto_cert **out)
{
	struct cert_spec s = {
		.kind = KIND_INTERMEDIATE,
		.cn = cn,
		.not_before = now - 60,
		.not_after = now + (time_t)days * 86400,
	};
	time_t root_end;

	*out = NULL;
	if (!root_key || !root_key->priv || !root_cert || !key || !cn || !*cn ||
	    strlen(cn) > 64 || days <= 0 || !crypto_cert_matches_key(root_cert, root_key))
		return -EINVAL;
	root_end = crypto_cert_not_after(root_cert);
	if (root_end != (time_t)-1 && s.not_after > root_end)
		s.not_after = root_end;
	if (s.not_after <= s.not_before)
		return -EINVAL;
	s.subject_pub = key->pkey;
	s.sign_key = root_key->pkey;
	s.issuer = root_cert->x509;
	return cert_build(&s, out);
}
