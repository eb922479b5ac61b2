/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for PKCS#12: build and reopen with the modern and the legacy
 * algorithms and with an empty password, check the algorithms actually
 * used, read an RC2-40 file (`openssl pkcs12 -export -legacy`), and the
 * refusals: wrong password, no key, two keys, garbage, trailing and
 * truncated DER, RC2 without the legacy provider, key not matching the leaf.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pkcs12.h>
#include <openssl/provider.h>

#include "crypto/crypto_int.h"
#include "tests/unit/check.h"

#define NOW ((time_t)1700000000)

static struct crypto_key *cak, *lk, *other;
static struct crypto_cert *root, *leaf;
static struct crypto_chain *chain;

static void setup(void)
{
	const char *names[] = { "pfx.example.com" };

	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &cak), 0);
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_RSA2048, &lk), 0);
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &other), 0);
	CHECK_INT(crypto_ca_root_new(cak, "PFX Test CA", 30, NOW, &root), 0);
	CHECK_INT(crypto_ca_issue(cak, root, lk, names, 1, 10, NOW, &leaf), 0);
	chain = crypto_chain_new();
	CHECK_INT(crypto_chain_push(chain, leaf), 0);
	CHECK_INT(crypto_chain_push(chain, root), 0);
}

static void teardown(void)
{
	crypto_chain_free(chain);
	crypto_cert_free(leaf);
	crypto_cert_free(root);
	crypto_key_free(cak);
	crypto_key_free(lk);
	crypto_key_free(other);
}

static int mac_nid(const struct util_buf *der)
{
	const unsigned char *p = der->data;
	PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)der->len);
	const X509_ALGOR *alg = NULL;
	const ASN1_OBJECT *obj = NULL;
	int nid = NID_undef;

	if (!p12)
		return nid;
	PKCS12_get0_mac(NULL, &alg, NULL, NULL, p12);
	if (alg) {
		X509_ALGOR_get0(&obj, NULL, NULL, alg);
		nid = OBJ_obj2nid(obj);
	}
	PKCS12_free(p12);
	return nid;
}

/* The MAC's iteration count, -1 if there is none. */
static long mac_iter(const struct util_buf *der)
{
	const unsigned char *p = der->data;
	PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)der->len);
	const ASN1_INTEGER *iter = NULL;
	long n = -1;

	if (!p12)
		return n;
	PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
	/* An absent count means 1 (RFC 7292). */
	n = iter ? ASN1_INTEGER_get(iter) : 1;
	PKCS12_free(p12);
	return n;
}

static void opens(const struct util_buf *der, const char *pass, size_t ncerts)
{
	struct crypto_key *k = NULL;
	struct crypto_chain *ch = NULL;
	struct crypto_err e;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_p12_parse(der->data, der->len, pass, &k, &ch, &e), 0);
	if (e.msg[0])
		fprintf(stderr, "unexpected: %s\n", e.msg);
	CHECK(k && crypto_key_is_private(k) && crypto_key_same_public(k, lk));
	CHECK_INT(crypto_chain_count(ch), ncerts);
	/* the key's own certificate first */
	if (ncerts)
		CHECK(crypto_chain_count(ch) && crypto_cert_matches_key(crypto_chain_get0(ch, 0), k));
	crypto_key_free(k);
	crypto_chain_free(ch);
}

static void refused(const void *der, size_t len, const char *pass, const char *msg)
{
	struct crypto_key *k = NULL;
	struct crypto_chain *ch = NULL;
	struct crypto_err e;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_p12_parse(der, len, pass, &k, &ch, &e), -EINVAL);
	CHECK(k == NULL && ch == NULL);
	CHECK_STR(e.msg, msg);
}

static void test_build(void)
{
	struct util_buf der, legacy, empty;
	unsigned char *tmp;

	util_buf_init(&der, 1 << 20, true);
	util_buf_init(&legacy, 1 << 20, true);
	util_buf_init(&empty, 1 << 20, true);
	CHECK_INT(crypto_p12_build(lk, chain, "s3cret", CRYPTO_P12_AES256, &der), 0);
	CHECK_INT(mac_nid(&der), NID_sha256);
	CHECK_INT((int)mac_iter(&der), 2048);
	CHECK(memmem(der.data, der.len, "\x06\x09\x60\x86\x48\x01\x65\x03\x04\x01\x2a", 11));
	opens(&der, "s3cret", 2);
	refused(der.data, der.len, "wrong", "PFX password is wrong");
	refused(der.data, der.len, NULL, "PFX password is wrong");
	refused(der.data, der.len, "S3cret", "PFX password is wrong");

	CHECK_INT(crypto_p12_build(lk, chain, "s3cret", CRYPTO_P12_LEGACY, &legacy), 0);
	CHECK_INT(mac_nid(&legacy), NID_sha1);
	opens(&legacy, "s3cret", 2);
	refused(legacy.data, legacy.len, "nope", "PFX password is wrong");

	CHECK_INT(crypto_p12_build(lk, chain, "", CRYPTO_P12_AES256, &empty), 0);
	/* A known password gains nothing from iterations: one, so it is cheap. */
	CHECK_INT((int)mac_iter(&empty), 1);
	CHECK_INT(mac_nid(&empty), NID_sha256);
	opens(&empty, NULL, 2);
	opens(&empty, "", 2);
	refused(empty.data, empty.len, "x", "PFX password is wrong");

	/* damaged input */
	tmp = malloc(der.len + 1);
	memcpy(tmp, der.data, der.len);
	tmp[der.len] = 0;
	refused(tmp, der.len + 1, "s3cret", "PFX is not valid PKCS#12");
	refused(tmp, der.len - 1, "s3cret", "PFX is not valid PKCS#12");
	refused(tmp, 0, "s3cret", "PFX is not valid PKCS#12");
	refused("-----BEGIN CERTIFICATE-----\n", 28, "s3cret", "PFX is not valid PKCS#12");
	free(tmp);

	/* the key must match the leaf; a public-only key cannot be exported */
	util_buf_reset(&der);
	CHECK_INT(crypto_p12_build(other, chain, "x", CRYPTO_P12_AES256, &der), -EINVAL);
	{
		struct crypto_key *pub = NULL;

		CHECK_INT(crypto_cert_get1_key(leaf, &pub), 0);
		CHECK_INT(crypto_p12_build(pub, chain, "x", CRYPTO_P12_AES256, &der), -EINVAL);
		crypto_key_free(pub);
	}
	CHECK_INT(der.len, 0);
	util_buf_free(&der);
	util_buf_free(&legacy);
	util_buf_free(&empty);
}

static void der_to_buf(PKCS12 *p12, struct util_buf *out)
{
	unsigned char *p = NULL;
	int len;

	CHECK(p12 != NULL);
	if (!p12)
		return;
	len = i2d_PKCS12(p12, &p);
	CHECK_INT(util_buf_append(out, p, (size_t)len), 0);
	OPENSSL_free(p);
	PKCS12_free(p12);
}

static void test_keys_count(void)
{
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	STACK_OF(PKCS7) *safes = NULL;
	struct util_buf b;
	PKCS12 *p12;
	int nid = NID_aes_256_cbc;

	util_buf_init(&b, 1 << 20, false);
	/* certificates only */
	der_to_buf(PKCS12_create("pw", NULL, NULL, leaf->x509, NULL, nid, nid, 2048, 2048, 0), &b);
	refused(b.data, b.len, "pw", "PFX holds no private key");
	util_buf_reset(&b);

	/* two keys */
	CHECK(PKCS12_add_cert(&bags, leaf->x509) != NULL);
	CHECK(PKCS12_add_key(&bags, lk->pkey, 0, 2048, nid, "pw") != NULL);
	CHECK(PKCS12_add_key(&bags, other->pkey, 0, 2048, nid, "pw") != NULL);
	CHECK(PKCS12_add_safe(&safes, bags, -1, 0, "pw"));
	p12 = PKCS12_add_safes(safes, 0);
	CHECK(p12 && PKCS12_set_mac(p12, "pw", -1, NULL, 0, 2048, EVP_sha256()));
	der_to_buf(p12, &b);
	refused(b.data, b.len, "pw", "PFX holds more than one private key");
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	util_buf_free(&b);
}

/* RC2-40 certificates + 3DES key, as `openssl pkcs12 -export -legacy` writes. */
static void rc2_pfx(struct util_buf *out)
{
	STACK_OF(X509) *cas = sk_X509_new_null();

	sk_X509_push(cas, root->x509);
	der_to_buf(PKCS12_create("rc2pass", NULL, lk->pkey, leaf->x509, cas,
				 NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
				 NID_pbe_WithSHA1And40BitRC2_CBC, 2048, 2048, 0),
		   out);
	sk_X509_free(cas);
}

static void test_rc2(void)
{
	struct util_buf b;
	int fds[2], status = -1;
	unsigned char chunk[4096];
	ssize_t r;
	pid_t pid;

	util_buf_init(&b, 1 << 20, false);
	/*
	 * The file is made in a child (which loads the legacy provider), so
	 * this process can still show what happens when it cannot be loaded.
	 */
	CHECK_INT(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		struct util_buf cb;
		size_t off;

		close(fds[0]);
		util_buf_init(&cb, 1 << 20, false);
		if (!OSSL_PROVIDER_load(NULL, "default") || !OSSL_PROVIDER_load(NULL, "legacy"))
			_exit(2);
		rc2_pfx(&cb);
		for (off = 0; off < cb.len; off += (size_t)r) {
			r = write(fds[1], cb.data + off, cb.len - off);
			if (r <= 0)
				_exit(3);
		}
		_exit(cb.len ? 0 : 4);
	}
	close(fds[1]);
	while ((r = read(fds[0], chunk, sizeof(chunk))) > 0)
		CHECK_INT(util_buf_append(&b, chunk, (size_t)r), 0);
	close(fds[0]);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(b.len > 0);

	/* no legacy provider to be found */
	pid = fork();
	if (pid == 0) {
		struct crypto_key *k = NULL;
		struct crypto_chain *ch = NULL;
		struct crypto_err e;

		setenv("OPENSSL_MODULES", "/nonexistent-certfs-test", 1);
		if (crypto_p12_parse(b.data, b.len, "rc2pass", &k, &ch, &e) != -EINVAL)
			_exit(1);
		if (strcmp(e.msg, "PFX uses RC2 encryption, which this system cannot read"))
			_exit(2);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* here it loads lazily */
	opens(&b, "rc2pass", 2);
	refused(b.data, b.len, "wrong", "PFX password is wrong");
	util_buf_free(&b);
}

int main(void)
{
	setup();
	test_rc2();
	test_build();
	test_keys_count();
	teardown();
	CHECK_DONE();
}
