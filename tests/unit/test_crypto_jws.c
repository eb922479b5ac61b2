/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the ACME signing helpers against published vectors:
 * base64url (RFC 4648 section 10), the RFC 7638 section 3.1 JWK thumbprint,
 * HMAC-SHA256 (RFC 4231 case 2), the RFC 9773 section 4.1 ARI identifier,
 * and ES256/ES384/RS256 signatures checked with OpenSSL's verifier.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/x509v3.h>

#include "crypto/crypto_int.h"
#include "tests/unit/check.h"

static const char rfc7638_n[] =
	"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJ"
	"ECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
	"QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
	"WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

static char *enc(const void *p, size_t n)
{
	struct util_buf b;

	util_buf_init(&b, 1 << 20, false);
	CHECK_INT(crypto_b64url(p, n, &b), 0);
	CHECK_INT(util_buf_terminate(&b), 0);
	return (char *)b.data;
}

static void b64(const char *in, const char *want)
{
	struct util_buf d;
	char *s = enc(in, strlen(in));

	CHECK_STR(s ? s : "", want);
	free(s);
	util_buf_init(&d, 1024, false);
	CHECK_INT(crypto_b64url_decode(want, strlen(want), &d), 0);
	CHECK_INT(d.len, strlen(in));
	CHECK(d.len == strlen(in) && memcmp(d.data ? (const void *)d.data : "", in, d.len) == 0);
	util_buf_free(&d);
}

static void bad_b64(const char *in)
{
	struct util_buf d;

	util_buf_init(&d, 1024, false);
	CHECK_INT(crypto_b64url_decode(in, strlen(in), &d), -EINVAL);
	util_buf_free(&d);
}

static void test_b64url(void)
{
	unsigned char big[10007], special[] = { 0xfb, 0xff, 0xbf };
	struct util_buf d;
	char *s;
	size_t i;

	b64("", "");
	b64("f", "Zg");
	b64("fo", "Zm8");
	b64("foo", "Zm9v");
	b64("foob", "Zm9vYg");
	b64("fooba", "Zm9vYmE");
	b64("foobar", "Zm9vYmFy");
	s = enc(special, 3);
	CHECK_STR(s, "-_-_");
	free(s);
	util_buf_init(&d, 1024, false);
	CHECK_INT(crypto_b64url_decode("Zg==", 4, &d), 0);
	CHECK_INT(d.len, 1);
	CHECK_INT(crypto_b64url_decode("Zm8=", 4, &d), 0);
	CHECK_INT(d.len, 3);
	util_buf_free(&d);
	bad_b64("Zg=");
	bad_b64("Zg===");
	bad_b64("Z");
	bad_b64("Zm9v+A");
	bad_b64("Zm9v/A");
	bad_b64("Zm 9v");
	bad_b64("Zm9v\n");
	bad_b64("=");

	/* several chunks, every byte value */
	for (i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 7 + 3);
	s = enc(big, sizeof(big));
	CHECK_INT(strlen(s), (sizeof(big) * 4 + 2) / 3);
	util_buf_init(&d, 1 << 20, false);
	CHECK_INT(crypto_b64url_decode(s, strlen(s), &d), 0);
	CHECK(d.len == sizeof(big) && memcmp(d.data, big, d.len) == 0);
	util_buf_free(&d);
	/* the output cap is honoured */
	util_buf_init(&d, 100, false);
	CHECK_INT(crypto_b64url_decode(s, strlen(s), &d), -EFBIG);
	CHECK_INT(crypto_b64url(big, sizeof(big), &d), -EFBIG);
	util_buf_free(&d);
	free(s);
}

static struct crypto_key *rfc7638_key(void)
{
	struct util_buf nb;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *pkey = NULL;
	BIGNUM *n, *e = BN_new();

	util_buf_init(&nb, 1024, false);
	CHECK_INT(crypto_b64url_decode(rfc7638_n, strlen(rfc7638_n), &nb), 0);
	n = BN_bin2bn(nb.data, (int)nb.len, NULL);
	BN_set_word(e, 65537);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
	params = OSSL_PARAM_BLD_to_param(bld);
	CHECK(EVP_PKEY_fromdata_init(ctx) == 1);
	CHECK(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_free(n);
	BN_free(e);
	util_buf_free(&nb);
	return crypto_key_wrap(pkey, false);
}

static void test_jwk(void)
{
	struct crypto_key *k = rfc7638_key(), *ec = NULL, *ed = NULL;
	struct util_buf json;
	char tp[64], want[1024];

	util_buf_init(&json, 8192, false);
	CHECK_INT(crypto_jwk_json(k, &json), 0);
	CHECK_INT(util_buf_terminate(&json), 0);
	snprintf(want, sizeof(want), "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"%s\"}", rfc7638_n);
	CHECK_STR((const char *)json.data, want);
	CHECK_INT(crypto_jwk_thumbprint(k, tp), 0);
	CHECK_STR(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	CHECK_STR(crypto_jws_alg(k), "RS256");

	/* EC: fixed-width coordinates in member order */
	util_buf_reset(&json);
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &ec), 0);
	CHECK_INT(crypto_jwk_json(ec, &json), 0);
	CHECK_INT(util_buf_terminate(&json), 0);
	CHECK_INT(strncmp((const char *)json.data, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"", 31), 0);
	CHECK_INT(json.len, 31 + 43 + 7 + 43 + 2);
	CHECK_STR(crypto_jws_alg(ec), "ES256");
	CHECK_INT(crypto_jwk_thumbprint(ec, tp), 0);
	CHECK_INT(strlen(tp), 43);

	/* no JWS algorithm for Ed25519 here */
	util_buf_reset(&json);
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_ED25519, &ed), 0);
	CHECK(crypto_jws_alg(ed) == NULL);
	CHECK_INT(crypto_jwk_json(ed, &json), -EINVAL);
	CHECK_INT(crypto_jwk_thumbprint(ed, tp), -EINVAL);
	CHECK_INT(crypto_jws_sign(ed, "a.b", 3, &json), -EINVAL);
	/* public-only keys do not sign */
	CHECK_INT(crypto_jws_sign(k, "a.b", 3, &json), -EINVAL);
	CHECK_INT(json.len, 0);

	util_buf_free(&json);
	crypto_key_free(k);
	crypto_key_free(ec);
	crypto_key_free(ed);
}

static void sign_verify(enum crypto_key_type t, size_t rawlen, const char *md)
{
	static const char input[] = "eyJhbGciOiJFUzI1NiJ9.eyJmb28iOiJiYXIifQ";
	struct crypto_key *k = NULL;
	struct util_buf sig, raw;
	ECDSA_SIG *es = NULL;
	unsigned char *der = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int derlen = 0, ok;

	util_buf_init(&sig, 4096, false);
	util_buf_init(&raw, 4096, false);
	CHECK_INT(crypto_key_generate(t, &k), 0);
	CHECK_INT(crypto_jws_sign(k, input, strlen(input), &sig), 0);
	CHECK_INT(crypto_b64url_decode((const char *)sig.data, sig.len, &raw), 0);
	CHECK_INT(raw.len, rawlen);
	if (EVP_PKEY_get_base_id(k->pkey) == EVP_PKEY_EC) {
		/* back to DER for OpenSSL's verifier */
		es = ECDSA_SIG_new();
		ECDSA_SIG_set0(es, BN_bin2bn(raw.data, (int)rawlen / 2, NULL),
			       BN_bin2bn(raw.data + rawlen / 2, (int)rawlen / 2, NULL));
		derlen = i2d_ECDSA_SIG(es, &der);
	} else {
		der = OPENSSL_memdup(raw.data, raw.len);
		derlen = (int)raw.len;
	}
	CHECK(EVP_DigestVerifyInit_ex(ctx, NULL, md, NULL, NULL, k->pkey, NULL) == 1);
	ok = EVP_DigestVerify(ctx, der, (size_t)derlen, (const unsigned char *)input,
			      strlen(input));
	CHECK_INT(ok, 1);
	/* and a different input does not verify */
	CHECK(EVP_DigestVerifyInit_ex(ctx, NULL, md, NULL, NULL, k->pkey, NULL) == 1);
	CHECK(EVP_DigestVerify(ctx, der, (size_t)derlen, (const unsigned char *)"x", 1) != 1);
	ERR_clear_error();
	ECDSA_SIG_free(es);
	OPENSSL_free(der);
	EVP_MD_CTX_free(ctx);
	util_buf_free(&sig);
	util_buf_free(&raw);
	crypto_key_free(k);
}

static void test_mac_digest(void)
{
	struct util_buf b;
	unsigned char r1[32], r2[32];

	util_buf_init(&b, 1024, true);
	CHECK_INT(crypto_hmac_sha256_b64url("Jefe", 4, "what do ya want for nothing?", 28, &b), 0);
	CHECK_INT(util_buf_terminate(&b), 0);
	CHECK_STR((const char *)b.data, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM");
	util_buf_reset(&b);
	CHECK_INT(crypto_sha256_b64url("abc", 3, &b), 0);
	CHECK_INT(util_buf_terminate(&b), 0);
	CHECK_STR((const char *)b.data, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
	util_buf_free(&b);
	CHECK_INT(crypto_random(r1, sizeof(r1)), 0);
	CHECK_INT(crypto_random(r2, sizeof(r2)), 0);
	CHECK(memcmp(r1, r2, sizeof(r1)) != 0);
	CHECK_INT(crypto_random(r1, 0), 0);
}

/* A certificate with the RFC 9773 4.1 example AKI and serial. */
static struct crypto_cert *ari_cert(bool with_aki)
{
	static const unsigned char keyid[] = { 0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40,
					       0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
					       0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4 };
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	ASN1_INTEGER *serial = ASN1_INTEGER_new();
	X509 *x = X509_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set_uint64(serial, 0x87654321);
	X509_set_serialNumber(x, serial);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
				   (const unsigned char *)"ari.example", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, key);
	ASN1_TIME_set(X509_getm_notBefore(x), 1700000000);
	ASN1_TIME_set(X509_getm_notAfter(x), 1800000000);
	akid->keyid = ASN1_OCTET_STRING_new();
	ASN1_OCTET_STRING_set(akid->keyid, keyid, sizeof(keyid));
	if (with_aki)
		X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT);
	X509_sign(x, key, EVP_sha256());
	AUTHORITY_KEYID_free(akid);
	ASN1_INTEGER_free(serial);
	EVP_PKEY_free(key);
	return crypto_cert_wrap(x);
}

static void test_ari(void)
{
	struct crypto_cert *c = ari_cert(true), *noaki = ari_cert(false);
	struct util_buf b;

	util_buf_init(&b, 1024, false);
	CHECK_INT(crypto_cert_ari_id(c, &b), 0);
	CHECK_INT(util_buf_terminate(&b), 0);
	CHECK_STR((const char *)b.data, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
	util_buf_reset(&b);
	CHECK_INT(crypto_cert_ari_id(noaki, &b), -ENOENT);
	CHECK_INT(b.len, 0);
	util_buf_free(&b);
	crypto_cert_free(c);
	crypto_cert_free(noaki);
}

int main(void)
{
	test_b64url();
	test_jwk();
	sign_verify(CRYPTO_KEY_EC256, 64, "SHA256");
	sign_verify(CRYPTO_KEY_EC384, 96, "SHA384");
	sign_verify(CRYPTO_KEY_RSA2048, 256, "SHA256");
	test_mac_digest();
	test_ari();
	CHECK_DONE();
}
