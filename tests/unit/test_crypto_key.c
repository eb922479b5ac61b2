/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for crypto keys: generation of every supported type, PEM
 * parsing in all the forms users bring (PKCS#8, PKCS#1, SEC1, encrypted
 * PKCS#8 and legacy Proc-Type encryption), and each refusal: missing or
 * wrong passphrase, several keys, no key, damaged PEM, weak or foreign key
 * types. Fixtures are written with OpenSSL directly.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/dsa.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "crypto/crypto_int.h"
#include "tests/unit/check.h"

/* PEM text of pkey in the given form, as a malloc'd C string. */
enum form { F_PKCS8, F_TRAD, F_PKCS8_ENC, F_TRAD_ENC };

static char *pem_of(EVP_PKEY *pkey, enum form f, const char *pass)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *p, *s = NULL;
	long n;
	int ok = 0;

	switch (f) {
	case F_PKCS8:
		ok = PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
		break;
	case F_TRAD:
		ok = PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL, NULL, 0, NULL, NULL);
		break;
	case F_PKCS8_ENC:
		ok = PEM_write_bio_PKCS8PrivateKey(bio, pkey, EVP_aes_256_cbc(), pass,
						   (int)strlen(pass), NULL, NULL);
		break;
	case F_TRAD_ENC:
		ok = PEM_write_bio_PrivateKey_traditional(bio, pkey, EVP_aes_128_cbc(),
							  (unsigned char *)pass, (int)strlen(pass),
							  NULL, NULL);
		break;
	}
	if (ok) {
		n = BIO_get_mem_data(bio, &p);
		s = strndup(p, (size_t)n);
	}
	BIO_free(bio);
	return s;
}

static int parse(const char *pem, const char *pass, struct crypto_key **k, struct crypto_err *e)
{
	memset(e, 0, sizeof(*e));
	return crypto_key_parse_pem(pem, strlen(pem), pass, k, e);
}

static void expect_refused(const char *pem, const char *pass, const char *msg)
{
	struct crypto_key *k = NULL;
	struct crypto_err e;

	CHECK_INT(parse(pem, pass, &k, &e), -EINVAL);
	CHECK(k == NULL);
	CHECK_STR(e.msg, msg);
}

static void test_type_names(void)
{
	enum crypto_key_type t;
	int i;

	for (i = 0; i < CRYPTO_KEY_OTHER; i++) {
		CHECK_INT(crypto_key_type_parse(crypto_key_type_name((enum crypto_key_type)i), &t), 0);
		CHECK_INT(t, i);
	}
	CHECK_STR(crypto_key_type_name(CRYPTO_KEY_OTHER), "other");
	CHECK_STR(crypto_key_type_name(CRYPTO_KEY_EC256), "ec256");
	CHECK_INT(crypto_key_type_parse("other", &t), -EINVAL);
	CHECK_INT(crypto_key_type_parse("rsa1024", &t), -EINVAL);
	CHECK_INT(crypto_key_type_parse("", &t), -EINVAL);
	CHECK_INT(crypto_key_type_parse(NULL, &t), -EINVAL);
}

static void roundtrip(struct crypto_key *k)
{
	struct util_buf b, pub;
	struct crypto_key *k2 = NULL;
	struct crypto_err e;

	util_buf_init(&b, 1 << 16, true);
	util_buf_init(&pub, 1 << 16, false);
	CHECK_INT(crypto_key_to_pem(k, &b), 0);
	CHECK(crypto_pem_has_key(b.data, b.len));
	CHECK(!crypto_pem_has_cert(b.data, b.len));
	CHECK_INT(crypto_key_parse_pem(b.data, b.len, NULL, &k2, &e), 0);
	CHECK(k2 && crypto_key_same_public(k, k2));
	CHECK(k2 && crypto_key_is_private(k2));
	CHECK(k2 && crypto_key_type_of(k2) == crypto_key_type_of(k));
	CHECK_INT(crypto_key_public_pem(k, &pub), 0);
	CHECK_INT(util_buf_terminate(&pub), 0);
	CHECK_CONTAINS((const char *)pub.data, "-----BEGIN PUBLIC KEY-----");
	CHECK(!crypto_pem_has_key(pub.data, pub.len));
	crypto_key_free(k2);
	util_buf_free(&b);
	util_buf_free(&pub);
}

static void test_generate(void)
{
	static const enum crypto_key_type types[] = {
		CRYPTO_KEY_EC256, CRYPTO_KEY_EC384, CRYPTO_KEY_RSA2048,
		CRYPTO_KEY_RSA3072, CRYPTO_KEY_RSA4096, CRYPTO_KEY_ED25519,
	};
	struct crypto_key *k, *k2 = NULL;
	struct crypto_err e;
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		k = NULL;
		CHECK_INT(crypto_key_generate(types[i], &k), 0);
		if (!k)
			continue;
		CHECK_INT(crypto_key_type_of(k), types[i]);
		CHECK(crypto_key_is_private(k));
		CHECK_INT(crypto_key_check_policy(k, &e), 0);
		roundtrip(k);
		/* Reference counting: the up-ref'd handle outlives one free. */
		k2 = crypto_key_up_ref(k);
		crypto_key_free(k);
		CHECK_INT(crypto_key_type_of(k2), types[i]);
		crypto_key_free(k2);
	}
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_OTHER, &k), -EINVAL);
	CHECK(k == NULL);
	crypto_key_free(NULL);
}

static void test_forms(void)
{
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct crypto_key *k = NULL, *ref = crypto_key_wrap(rsa, true);
	struct crypto_key *ecref = crypto_key_wrap(ec, true);
	struct crypto_err e;
	char *pem, *crlf, *two, *withcert;
	size_t i, j;

	/* PKCS#1 "RSA PRIVATE KEY" */
	pem = pem_of(rsa, F_TRAD, NULL);
	CHECK_CONTAINS(pem, "BEGIN RSA PRIVATE KEY");
	CHECK_INT(parse(pem, NULL, &k, &e), 0);
	CHECK(crypto_key_same_public(k, ref));
	crypto_key_free(k);
	k = NULL;
	/* CRLF line ends */
	crlf = calloc(2 * strlen(pem) + 1, 1);
	for (i = 0, j = 0; pem[i]; i++) {
		if (pem[i] == '\n')
			crlf[j++] = '\r';
		crlf[j++] = pem[i];
	}
	CHECK_INT(parse(crlf, NULL, &k, &e), 0);
	CHECK(crypto_key_same_public(k, ref));
	crypto_key_free(k);
	k = NULL;
	free(crlf);
	/* a password given for a key that has none is ignored */
	CHECK_INT(parse(pem, "unused", &k, &e), 0);
	crypto_key_free(k);
	k = NULL;
	free(pem);

	/* SEC1 "EC PRIVATE KEY" */
	pem = pem_of(ec, F_TRAD, NULL);
	CHECK_CONTAINS(pem, "BEGIN EC PRIVATE KEY");
	CHECK_INT(parse(pem, NULL, &k, &e), 0);
	CHECK(crypto_key_same_public(k, ecref));
	CHECK_INT(crypto_key_type_of(k), CRYPTO_KEY_EC256);
	CHECK(!crypto_key_same_public(k, ref));
	crypto_key_free(k);
	k = NULL;
	free(pem);

	/* encrypted PKCS#8 */
	pem = pem_of(ec, F_PKCS8_ENC, "correct horse");
	CHECK_CONTAINS(pem, "BEGIN ENCRYPTED PRIVATE KEY");
	CHECK(crypto_pem_has_key(pem, strlen(pem)));
	CHECK_INT(parse(pem, "correct horse", &k, &e), 0);
	CHECK(crypto_key_same_public(k, ecref));
	crypto_key_free(k);
	k = NULL;
	expect_refused(pem, NULL, "key is encrypted: write the passphrase to passphrase first");
	expect_refused(pem, "wrong horse", "passphrase does not decrypt the private key");
	expect_refused(pem, "", "passphrase does not decrypt the private key");
	free(pem);

	/* legacy Proc-Type: 4,ENCRYPTED PKCS#1 */
	pem = pem_of(rsa, F_TRAD_ENC, "legacy pass");
	CHECK_CONTAINS(pem, "Proc-Type: 4,ENCRYPTED");
	CHECK_INT(parse(pem, "legacy pass", &k, &e), 0);
	CHECK(crypto_key_same_public(k, ref));
	crypto_key_free(k);
	k = NULL;
	expect_refused(pem, NULL, "key is encrypted: write the passphrase to passphrase first");
	expect_refused(pem, "legacy pasS", "passphrase does not decrypt the private key");
	free(pem);

	/* two keys, and a key next to a certificate-like block */
	pem = pem_of(rsa, F_PKCS8, NULL);
	two = malloc(2 * strlen(pem) + 1);
	strcpy(two, pem);
	strcat(two, pem);
	expect_refused(two, NULL, "more than one private key found");
	free(two);
	withcert = malloc(strlen(pem) + 200);
	strcpy(withcert, "subject=CN=x\n-----BEGIN CERTIFICATE-----\nMIIB\n"
			 "-----END CERTIFICATE-----\n");
	strcat(withcert, pem);
	CHECK_INT(parse(withcert, NULL, &k, &e), 0);
	CHECK(crypto_key_same_public(k, ref));
	crypto_key_free(k);
	k = NULL;
	free(withcert);

	/* truncated: no END line */
	pem[strlen(pem) / 2] = '\0';
	expect_refused(pem, NULL, "private key is not valid PEM");
	free(pem);

	crypto_key_free(ref);
	crypto_key_free(ecref);
}

static void test_bad_pem(void)
{
	expect_refused("", NULL, "no private key found");
	expect_refused("hello world\n", NULL, "no private key found");
	expect_refused("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		       NULL, "no private key found");
	expect_refused("-----BEGIN PRIVATE KEY-----\n!!!! not base64 ****\n"
		       "-----END PRIVATE KEY-----\n",
		       NULL, "private key is not valid PEM");
	/* valid base64 of bytes that are no key */
	expect_refused("-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n"
		       "-----END PRIVATE KEY-----\n",
		       NULL, "private key is not valid PEM");
	/* mismatched END label */
	expect_refused("-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n"
		       "-----END RSA PRIVATE KEY-----\n",
		       NULL, "private key is not valid PEM");
	/* a PEM block that pretends to be encrypted but has no DEK-Info */
	expect_refused("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n"
		       "aGVsbG8gd29ybGQ=\n-----END RSA PRIVATE KEY-----\n",
		       "x", "private key is not valid PEM");
	CHECK(!crypto_pem_has_key("", 0));
	CHECK(!crypto_pem_has_cert("-----BEGIN CERTIFICATE-----\nMIIB\n", 33));
}

static void policy_refused(EVP_PKEY *pkey, const char *msg, bool other)
{
	struct crypto_key *k;
	struct crypto_err e;
	char *pem;

	CHECK(pkey != NULL);
	if (!pkey)
		return;
	k = crypto_key_wrap(pkey, true);
	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_key_check_policy(k, &e), -EINVAL);
	CHECK_STR(e.msg, msg);
	if (other)
		CHECK_INT(crypto_key_type_of(k), CRYPTO_KEY_OTHER);
	/* Parsing accepts it: refusing is the policy's job, by name. */
	pem = pem_of(pkey, F_PKCS8, NULL);
	if (pem) {
		struct crypto_key *k2 = NULL;

		CHECK_INT(parse(pem, NULL, &k2, &e), 0);
		CHECK(crypto_key_same_public(k, k2));
		crypto_key_free(k2);
		free(pem);
	}
	crypto_key_free(k);
}

static EVP_PKEY *dsa_key(void)
{
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL), *kc = NULL;
	EVP_PKEY *params = NULL, *key = NULL;

	if (pc && EVP_PKEY_paramgen_init(pc) > 0 && EVP_PKEY_CTX_set_dsa_paramgen_bits(pc, 1024) > 0 &&
	    EVP_PKEY_paramgen(pc, &params) > 0) {
		kc = EVP_PKEY_CTX_new_from_pkey(NULL, params, NULL);
		if (kc && EVP_PKEY_keygen_init(kc) > 0)
			EVP_PKEY_keygen(kc, &key);
	}
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_CTX_free(kc);
	EVP_PKEY_free(params);
	return key;
}

static EVP_PKEY *pss_key(void)
{
	EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(NULL, "RSA-PSS", NULL);
	EVP_PKEY *key = NULL;

	if (kc && EVP_PKEY_keygen_init(kc) > 0 && EVP_PKEY_CTX_set_rsa_keygen_bits(kc, 2048) > 0)
		EVP_PKEY_keygen(kc, &key);
	EVP_PKEY_CTX_free(kc);
	return key;
}

/* The public half of a fresh RSA-2048 key with its exponent replaced by e. */
static EVP_PKEY *rsa_with_e(const char *e_dec)
{
	EVP_PKEY *real = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), *out = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	BIGNUM *n = NULL, *e = NULL;

	CHECK(real && ctx && bld);
	CHECK(EVP_PKEY_get_bn_param(real, OSSL_PKEY_PARAM_RSA_N, &n));
	CHECK(BN_dec2bn(&e, e_dec));
	CHECK(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n));
	CHECK(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e));
	params = OSSL_PARAM_BLD_to_param(bld);
	CHECK(params && EVP_PKEY_fromdata_init(ctx) > 0);
	CHECK(EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_PUBLIC_KEY, params) > 0);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(real);
	BN_free(n);
	BN_free(e);
	return out;
}

static void test_policy(void)
{
	/* `openssl rsa -check`: "bad e value" */
	policy_refused(rsa_with_e("1"),
		       "RSA public exponent 1 is not allowed (an odd number from 3, usually 65537)",
		       false);
	policy_refused(rsa_with_e("65536"),
		       "RSA public exponent 65536 is not allowed (an odd number from 3, usually "
		       "65537)", false);
	policy_refused(rsa_with_e("231584178474632390847141970017375815706539969331281128078915168"
				  "015826259279873"), /* 2^257 + 1 */
		       "RSA public exponent of more than 64 bits is not allowed (an odd number "
		       "from 3, usually 65537)", false);
	{
		struct crypto_key *k = crypto_key_wrap(rsa_with_e("3"), false);

		CHECK_INT(crypto_key_check_policy(k, NULL), 0);
		crypto_key_free(k);
	}
	policy_refused(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024),
		       "RSA key of 1024 bits is too weak (at least 2048)", true);
	policy_refused(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521"),
		       "EC curve secp521r1 is not allowed (P-256 or P-384)", true);
	policy_refused(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"),
		       "EC curve secp256k1 is not allowed (P-256 or P-384)", true);
	policy_refused(dsa_key(), "DSA keys are not allowed", true);
	policy_refused(EVP_PKEY_Q_keygen(NULL, NULL, "ED448"), "ED448 keys are not allowed", true);
	policy_refused(pss_key(),
		       "RSA-PSS keys are not allowed (use plain RSA)", true);
}

static void test_public_only(void)
{
	struct crypto_key *k = NULL, *pub = NULL;
	struct crypto_cert *c = NULL;
	struct util_buf b;
	const char *names[] = { "example.com" };

	util_buf_init(&b, 1 << 16, true);
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_ED25519, &k), 0);
	CHECK_INT(crypto_selfsigned_new(k, names, 1, 30, 1700000000, &c), 0);
	CHECK_INT(crypto_cert_get1_key(c, &pub), 0);
	CHECK(!crypto_key_is_private(pub));
	CHECK(crypto_key_same_public(k, pub));
	CHECK(crypto_key_same_public(pub, k));
	/* no private half, no private PEM */
	CHECK_INT(crypto_key_to_pem(pub, &b), -EINVAL);
	CHECK_INT(b.len, 0);
	CHECK(!crypto_key_same_public(k, NULL));
	util_buf_free(&b);
	crypto_key_free(pub);
	crypto_key_free(k);
	crypto_cert_free(c);
}

int main(void)
{
	test_type_names();
	test_generate();
	test_forms();
	test_bad_pem();
	test_policy();
	test_public_only();
	CHECK_DONE();
}
