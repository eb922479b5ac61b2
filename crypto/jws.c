/* SPDX-License-Identifier: MIT */
/*
 * What the ACME client needs signed, as bytes in and bytes out, so that it
 * never holds a key: base64url (RFC 4648 section 5, built on OpenSSL's
 * standard-alphabet coder), the public JWK and its RFC 7638 thumbprint,
 * JWS signatures (RFC 7515/7518), the EAB HMAC, and the RFC 9773 renewal
 * information certificate identifier.
 */
#include <errno.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>

#include "crypto/crypto_int.h"

/* Input chunk, a multiple of 3 so only the last chunk is padded. */
#define B64_IN 3072
#define B64_OUT (B64_IN / 3 * 4)

/* Standard base64 (RFC 4648 4) or base64url without padding (RFC 7515 2). */
static int b64_encode(const void *data, size_t len, bool url, struct util_buf *out)
{
	const unsigned char *p = data;
	unsigned char enc[B64_OUT + 1];
	size_t chunk;
	int n, i, rc = 0;

	while (len && !rc) {
		chunk = len > B64_IN ? B64_IN : len;
		n = EVP_EncodeBlock(enc, p, (int)chunk);
		for (i = 0; url && i < n; i++) {
			if (enc[i] == '+')
				enc[i] = '-';
			else if (enc[i] == '/')
				enc[i] = '_';
		}
		while (url && n > 0 && enc[n - 1] == '=')
			n--;
		rc = util_buf_append(out, enc, (size_t)n);
		p += chunk;
		len -= chunk;
	}
	/* Callers encode secrets too (EAB keys, key thumbprint input, keys
	 * sealed for the etcd store). */
	OPENSSL_cleanse(enc, sizeof(enc));
	return rc;
}

int crypto_b64url(const void *data, size_t len, struct util_buf *out)
{
	return b64_encode(data, len, true, out);
}

int crypto_b64(const void *data, size_t len, struct util_buf *out)
{
	return b64_encode(data, len, false, out);
}

static bool b64_char_ok(char c, bool url)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return true;
	return url ? (c == '-' || c == '_') : (c == '+' || c == '/');
}

static int b64_decode(const char *s, size_t len, bool url, struct util_buf *out)
{
	unsigned char std[B64_OUT + 4], dec[B64_OUT / 4 * 3 + 3];
	size_t pad = 0, i, chunk, k;
	int n, rc = 0;

	/* Optional '=' padding, but then the length must be whole quads. */
	while (len > 0 && s[len - 1] == '=') {
		len--;
		pad++;
	}
	if (pad > 2 || (pad && (len + pad) % 4) || len % 4 == 1)
		return -EINVAL;
	for (i = 0; i < len; i++)
		if (!b64_char_ok(s[i], url))
			return -EINVAL;
	while (len && !rc) {
		chunk = len > B64_OUT ? B64_OUT : len;
		for (k = 0; k < chunk; k++)
			std[k] = s[k] == '-' ? '+' : s[k] == '_' ? '/' : (unsigned char)s[k];
		pad = (4 - chunk % 4) % 4;
		for (i = 0; i < pad; i++)
			std[k++] = '=';
		n = EVP_DecodeBlock(dec, std, (int)k);
		/* EVP_DecodeBlock counts the zero bytes the padding stood for. */
		if (n < 0 || (size_t)n < pad) {
			rc = -EINVAL;
			break;
		}
		rc = util_buf_append(out, dec, (size_t)n - pad);
		s += chunk;
		len -= chunk;
	}
	OPENSSL_cleanse(std, sizeof(std));
	OPENSSL_cleanse(dec, sizeof(dec));
	return rc;
}

int crypto_b64url_decode(const char *s, size_t len, struct util_buf *out)
{
	return b64_decode(s, len, true, out);
}

int crypto_b64_decode(const char *s, size_t len, struct util_buf *out)
{
	return b64_decode(s, len, false, out);
}

static int ec_size(const EVP_PKEY *pkey)
{
	char group[64];

	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC ||
	    !EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL))
		return 0;
	if (strcmp(group, "prime256v1") == 0)
		return 32;
	if (strcmp(group, "secp384r1") == 0)
		return 48;
	return 0;
}

const char *crypto_jws_alg(const struct crypto_key *k)
{
	switch (EVP_PKEY_get_base_id(k->pkey)) {
	case EVP_PKEY_RSA:
		return "RS256";
	case EVP_PKEY_EC:
		switch (ec_size(k->pkey)) {
		case 32:
			return "ES256";
		case 48:
			return "ES384";
		default:
			return NULL;
		}
	default:
		return NULL;
	}
}

/* Append b64url of a big number: fixed width when pad > 0, else minimal. */
static int bn_b64url(const EVP_PKEY *pkey, const char *param, int pad, struct util_buf *out)
{
	unsigned char bin[1024];
	BIGNUM *bn = NULL;
	int n, rc;

	if (!EVP_PKEY_get_bn_param(pkey, param, &bn)) {
		ERR_clear_error();
		return -EINVAL;
	}
	if (pad > 0)
		n = BN_num_bytes(bn) <= pad ? BN_bn2binpad(bn, bin, pad) : -1;
	else
		n = BN_num_bytes(bn) <= (int)sizeof(bin) ? BN_bn2bin(bn, bin) : -1;
	BN_free(bn);
	if (n <= 0)
		return -EINVAL;
	rc = crypto_b64url(bin, (size_t)n, out);
	return rc;
}

int crypto_jwk_json(const struct crypto_key *k, struct util_buf *out)
{
	int size, rc;

	/* RFC 7638 section 3.2: required members only, lexicographic order. */
	switch (EVP_PKEY_get_base_id(k->pkey)) {
	case EVP_PKEY_RSA:
		rc = util_buf_printf(out, "{\"e\":\"");
		if (!rc)
			rc = bn_b64url(k->pkey, OSSL_PKEY_PARAM_RSA_E, 0, out);
		if (!rc)
			rc = util_buf_printf(out, "\",\"kty\":\"RSA\",\"n\":\"");
		if (!rc)
			rc = bn_b64url(k->pkey, OSSL_PKEY_PARAM_RSA_N, 0, out);
		if (!rc)
			rc = util_buf_printf(out, "\"}");
		return rc;
	case EVP_PKEY_EC:
		size = ec_size(k->pkey);
		if (!size)
			return -EINVAL;
		rc = util_buf_printf(out, "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"",
				     size == 32 ? "P-256" : "P-384");
		if (!rc)
			rc = bn_b64url(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, size, out);
		if (!rc)
			rc = util_buf_printf(out, "\",\"y\":\"");
		if (!rc)
			rc = bn_b64url(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, size, out);
		if (!rc)
			rc = util_buf_printf(out, "\"}");
		return rc;
	default:
		return -EINVAL;
	}
}

int crypto_jwk_thumbprint(const struct crypto_key *k, char out[64])
{
	struct util_buf json, b64;
	int rc;

	util_buf_init(&json, 8192, false);
	util_buf_init(&b64, 64, false);
	out[0] = '\0';
	rc = crypto_jwk_json(k, &json);
	if (!rc)
		rc = crypto_sha256_b64url(json.data, json.len, &b64);
	if (!rc && b64.len < 64) {
		memcpy(out, b64.data, b64.len);
		out[b64.len] = '\0';
	}
	util_buf_free(&json);
	util_buf_free(&b64);
	return rc;
}

int crypto_jws_sign(const struct crypto_key *k, const void *signing_input, size_t len,
		    struct util_buf *out)
{
	unsigned char *sig = NULL, raw[2 * 66];
	const BIGNUM *r, *s;
	const unsigned char *p;
	ECDSA_SIG *es = NULL;
	EVP_MD_CTX *md = NULL;
	const char *alg = k->priv ? crypto_jws_alg(k) : NULL;
	size_t siglen = 0;
	int size = ec_size(k->pkey), rc = -ENOMEM;

	if (!alg)
		return -EINVAL;
	md = EVP_MD_CTX_new();
	if (!md)
		goto out;
	if (EVP_DigestSignInit_ex(md, NULL, size == 48 ? "SHA384" : "SHA256", NULL, NULL,
				  k->pkey, NULL) != 1 ||
	    EVP_DigestSign(md, NULL, &siglen, signing_input, len) != 1) {
		rc = -EINVAL;
		goto out;
	}
	sig = OPENSSL_malloc(siglen);
	if (!sig || EVP_DigestSign(md, sig, &siglen, signing_input, len) != 1)
		goto out;
	if (EVP_PKEY_get_base_id(k->pkey) == EVP_PKEY_RSA) {
		rc = crypto_b64url(sig, siglen, out);
		goto out;
	}
	/* RFC 7518 3.4: JWS wants R || S at fixed width, not the DER SEQUENCE. */
	p = sig;
	es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
	if (!es)
		goto out;
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, raw, size) != size || BN_bn2binpad(s, raw + size, size) != size) {
		rc = -EINVAL;
		goto out;
	}
	rc = crypto_b64url(raw, 2 * (size_t)size, out);
out:
	ERR_clear_error();
	ECDSA_SIG_free(es);
	OPENSSL_free(sig);
	EVP_MD_CTX_free(md);
	return rc;
}

int crypto_hmac_sha256_b64url(const void *key, size_t keylen, const void *data,
			      size_t len, struct util_buf *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;
	int rc;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, data, len, mac,
		       sizeof(mac), &maclen)) {
		ERR_clear_error();
		return -EINVAL;
	}
	rc = crypto_b64url(mac, maclen, out);
	OPENSSL_cleanse(mac, sizeof(mac));
	return rc;
}

int crypto_sha256_b64url(const void *data, size_t len, struct util_buf *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL)) {
		ERR_clear_error();
		return -ENOMEM;
	}
	return crypto_b64url(md, mdlen, out);
}

int crypto_cert_ari_id(const struct crypto_cert *c, struct util_buf *out)
{
	const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(c->x509);
	const unsigned char *p;
	unsigned char *der = NULL;
	long clen;
	int len, tag, cls, rc;

	if (!akid || ASN1_STRING_length(akid) <= 0) {
		ERR_clear_error();
		return -ENOENT;
	}
	len = i2d_ASN1_INTEGER(X509_get0_serialNumber(c->x509), &der);
	if (len <= 0) {
		ERR_clear_error();
		return -ENOMEM;
	}
	/* RFC 9773 4.1: the serial's DER content octets, without tag and length. */
	p = der;
	if (ASN1_get_object(&p, &clen, &tag, &cls, len) & 0x80 || tag != V_ASN1_INTEGER ||
	    clen <= 0 || p + clen != der + len) {
		rc = -EINVAL;
		goto out;
	}
	rc = crypto_b64url(ASN1_STRING_get0_data(akid), (size_t)ASN1_STRING_length(akid), out);
	if (!rc)
		rc = util_buf_append(out, ".", 1);
	if (!rc)
		rc = crypto_b64url(p, (size_t)clen, out);
out:
	ERR_clear_error();
	OPENSSL_free(der);
	return rc;
}
