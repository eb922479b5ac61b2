/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the cost limits on password-based key derivation. The
 * hostile inputs are built here with OpenSSL's ASN.1 API and an iteration
 * count far past the cap, but with garbage where the derived bytes would go,
 * so building them costs nothing; the parsers must refuse them from the
 * parameters alone (were they to derive first, 10^8 iterations would take a
 * minute and end in a different sentence). Also: the per-upload budget,
 * scrypt's cost, over-long passphrases, and files at the usual counts still
 * open.
 */
#include <errno.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#include "crypto/crypto_int.h"
#include "tests/unit/check.h"

#define NOW ((time_t)1700000000)
#define HUGE_ITER 100000000

static struct crypto_key *key;
static struct crypto_chain *chain;

/* An X509_SIG whose algorithm is alg (taken) and whose "ciphertext" is junk. */
static X509_SIG *junk_sig(X509_ALGOR *alg)
{
	X509_SIG *sig = X509_SIG_new();
	X509_ALGOR *palg;
	ASN1_OCTET_STRING *pdata;

	CHECK(sig && alg);
	X509_SIG_getm(sig, &palg, &pdata);
	CHECK(X509_ALGOR_set0(palg, OBJ_dup(alg->algorithm), alg->parameter->type,
			      alg->parameter->value.ptr));
	alg->parameter->value.ptr = NULL;
	alg->parameter->type = V_ASN1_NULL;
	X509_ALGOR_free(alg);
	CHECK(ASN1_OCTET_STRING_set(pdata, (const unsigned char *)"0123456789abcdef", 16));
	return sig;
}

static X509_ALGOR *pbkdf2_alg(int iter)
{
	return PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), iter, NULL, 0, NULL, NID_hmacWithSHA256);
}

/* "ENCRYPTED PRIVATE KEY" PEM around sig (freed). */
static void sig_pem(X509_SIG *sig, struct util_buf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());

	CHECK(PEM_write_bio_PKCS8(bio, sig));
	CHECK_INT(crypto_bio_to_buf(bio, out), 0);
	BIO_free(bio);
	X509_SIG_free(sig);
}

static void key_refused(X509_ALGOR *alg, const char *msg)
{
	struct crypto_key *k = NULL;
	struct crypto_err e = { { 0 } };
	struct util_buf pem;

	util_buf_init(&pem, 1 << 20, false);
	sig_pem(junk_sig(alg), &pem);
	CHECK_INT(crypto_key_parse_pem(pem.data, pem.len, "pass", &k, &e), -EINVAL);
	CHECK(k == NULL);
	CHECK_STR(e.msg, msg);
	util_buf_free(&pem);
}

static void test_pkcs8(void)
{
	struct crypto_key *k = NULL;
	struct crypto_err e = { { 0 } };
	char longpass[CRYPTO_PASS_MAX + 2];
	BIO *bio = BIO_new(BIO_s_mem());
	struct util_buf pem;

	key_refused(pbkdf2_alg(HUGE_ITER), "encrypted private key: iteration count 100000000 "
					   "is over the limit of 600000");
	key_refused(pbkdf2_alg(INT32_MAX), "encrypted private key: iteration count 2147483647 "
					   "is over the limit of 600000");
	key_refused(PKCS5_pbe_set(NID_pbe_WithSHA1And3_Key_TripleDES_CBC, HUGE_ITER, NULL, 0),
		    "encrypted private key: iteration count 100000000 is over the limit of "
		    "600000");
	/*
	 * scrypt N = 2^14, r = 8 stays inside OpenSSL's own 32 MiB memory
	 * limit, but p = 64 asks for 64 times its default work.
	 */
	key_refused(PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), NULL, 0, NULL, 1 << 14, 8, 64),
		    "encrypted private key: scrypt cost N*r*p is over the limit of 600000");

	/* OpenSSL's own defaults (PBKDF2 2048) open */
	util_buf_init(&pem, 1 << 20, true);
	CHECK(PEM_write_bio_PKCS8PrivateKey(bio, key->pkey, EVP_aes_256_cbc(), NULL, 0, NULL,
					    (void *)"pass"));
	CHECK_INT(crypto_bio_to_buf(bio, &pem), 0);
	CHECK_INT(crypto_key_parse_pem(pem.data, pem.len, "pass", &k, &e), 0);
	CHECK(k && crypto_key_same_public(k, key));
	crypto_key_free(k);
	k = NULL;
	memset(longpass, 'p', sizeof(longpass) - 1);
	longpass[sizeof(longpass) - 1] = '\0';
	CHECK_INT(crypto_key_parse_pem(pem.data, pem.len, longpass, &k, &e), -EINVAL);
	CHECK_STR(e.msg, "passphrase is longer than 1024 bytes (the limit)");
	util_buf_free(&pem);
	BIO_free(bio);
}

static void p12_refused(PKCS12 *p12, const char *pass, const char *msg)
{
	struct crypto_key *k = NULL;
	struct crypto_chain *ch = NULL;
	struct crypto_err e = { { 0 } };
	unsigned char *der = NULL;
	int len = i2d_PKCS12(p12, &der);

	CHECK(len > 0);
	CHECK_INT(crypto_p12_parse(der, (size_t)len, pass, &k, &ch, &e), -EINVAL);
	CHECK(k == NULL && ch == NULL);
	CHECK_STR(e.msg, msg);
	OPENSSL_free(der);
	PKCS12_free(p12);
}

static PKCS12 *p12_built(const char *pass)
{
	struct util_buf der;
	const unsigned char *p;
	PKCS12 *p12;

	util_buf_init(&der, 1 << 20, true);
	CHECK_INT(crypto_p12_build(key, chain, pass, CRYPTO_P12_AES256, &der), 0);
	p = der.data;
	p12 = d2i_PKCS12(NULL, &p, (long)der.len);
	CHECK(p12 != NULL);
	util_buf_free(&der);
	return p12;
}

/* A MAC iteration count set in the ASN.1 after the MAC was computed. */
static void test_p12_mac(void)
{
	const ASN1_INTEGER *iter = NULL;
	PKCS12 *p12;

	p12 = p12_built("pass");
	PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
	CHECK(iter && ASN1_INTEGER_set_int64((ASN1_INTEGER *)iter, HUGE_ITER));
	p12_refused(p12, "pass", "PFX MAC: iteration count 100000000 is over the limit of 600000");
	/* certfs exports an empty password with one iteration, which leaves
	 * the count out of the ASN.1: MAC it again with two to have one. */
	p12 = p12_built("");
	CHECK(PKCS12_set_mac(p12, "", -1, NULL, 0, 2, EVP_sha256()));
	PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
	CHECK(iter && ASN1_INTEGER_set_int64((ASN1_INTEGER *)iter, INT32_MAX));
	p12_refused(p12, "", "PFX MAC: iteration count 2147483647 is over the limit of 600000");
}

/* A shrouded key bag whose PBKDF2 asks for 10^8 rounds, no MAC. */
static void test_p12_bag(void)
{
	STACK_OF(PKCS12_SAFEBAG) *bags = sk_PKCS12_SAFEBAG_new_null();
	STACK_OF(PKCS7) *safes = sk_PKCS7_new_null();
	PKCS12_SAFEBAG *bag;
	PKCS7 *p7;

	bag = PKCS12_SAFEBAG_create0_pkcs8(junk_sig(pbkdf2_alg(HUGE_ITER)));
	CHECK(bag && sk_PKCS12_SAFEBAG_push(bags, bag));
	p7 = PKCS12_pack_p7data(bags);
	CHECK(p7 && sk_PKCS7_push(safes, p7));
	p12_refused(PKCS12_add_safes(safes, 0), "pass",
		    "PFX private key: iteration count 100000000 is over the limit of 600000");
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	sk_PKCS7_pop_free(safes, PKCS7_free);
}

/* The encrypted certificate safe re-labelled with 10^8 rounds, MAC redone. */
static void test_p12_safe(void)
{
	PKCS12 *p12 = p12_built("pass");
	STACK_OF(PKCS7) *safes = PKCS12_unpack_authsafes(p12);
	PKCS7 *p7;
	int i, n = 0;

	for (i = 0; i < sk_PKCS7_num(safes); i++) {
		p7 = sk_PKCS7_value(safes, i);
		if (OBJ_obj2nid(p7->type) != NID_pkcs7_encrypted)
			continue;
		X509_ALGOR_free(p7->d.encrypted->enc_data->algorithm);
		p7->d.encrypted->enc_data->algorithm =
			PKCS5_pbe_set(NID_pbe_WithSHA1And3_Key_TripleDES_CBC, HUGE_ITER, NULL, 0);
		n++;
	}
	CHECK_INT(n, 1);
	CHECK(PKCS12_pack_authsafes(p12, safes));
	CHECK(PKCS12_set_mac(p12, "pass", -1, NULL, 0, 2048, NULL));
	sk_PKCS7_pop_free(safes, PKCS7_free);
	p12_refused(p12, "pass",
		    "PFX certificates: iteration count 100000000 is over the limit of 600000");
}

static void test_budget(void)
{
	struct crypto_kdf_budget b;
	struct crypto_err e = { { 0 } };
	char longpass[CRYPTO_PASS_MAX + 2];

	crypto_kdf_budget_init(&b);
	CHECK_INT(crypto_kdf_charge(&b, "x", CRYPTO_KDF_ITER_MAX, 2, &e), 0);
	CHECK_INT(crypto_kdf_charge(&b, "x", CRYPTO_KDF_ITER_MAX, 1, &e), 0);
	CHECK_INT(crypto_kdf_charge(&b, "y", CRYPTO_KDF_ITER_MAX, 1, &e), -EINVAL);
	CHECK_STR(e.msg, "y: key derivations need more than 2000000 iterations in all "
			 "(the limit for one upload)");
	CHECK_INT(crypto_kdf_charge(&b, "z", 2048, 1, &e), 0);
	CHECK_INT(crypto_kdf_charge(&b, "z", CRYPTO_KDF_ITER_MAX + 1, 1, &e), -EINVAL);
	CHECK_STR(e.msg, "z: iteration count 600001 is over the limit of 600000");

	memset(longpass, 'p', sizeof(longpass) - 1);
	longpass[sizeof(longpass) - 1] = '\0';
	p12_refused(p12_built("pass"), longpass,
		    "passphrase is longer than 1024 bytes (the limit)");
}

int main(void)
{
	const char *names[] = { "kdf.example.com" };
	struct crypto_cert *c = NULL;

	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &key), 0);
	CHECK_INT(crypto_selfsigned_new(key, names, 1, 10, NOW, &c), 0);
	chain = crypto_chain_new();
	CHECK_INT(crypto_chain_push(chain, c), 0);
	crypto_cert_free(c);

	test_pkcs8();
	test_p12_mac();
	test_p12_bag();
	test_p12_safe();
	test_budget();

	crypto_chain_free(chain);
	crypto_key_free(key);
	CHECK_DONE();
}
