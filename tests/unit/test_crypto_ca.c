/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for local issuing: a CA root and leaves it signs (checked with
 * an X509_STORE the way a TLS client would, plus their extensions), leaves
 * for public-only keys from a CSR, an intermediate (pathlen:0 enforced by the
 * verifier), self-signed leaves, and the refusals:
 * wrong CA key, bad names, no names, non-positive lifetimes.
 */
#include <errno.h>
#include <string.h>

#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "crypto/crypto_int.h"
#include "tests/unit/check.h"

#define NOW ((time_t)1700000000)

/* Verify leaf against root, with mid as an untrusted intermediate if given. */
static int verify3(const struct crypto_cert *root, const struct crypto_cert *leaf, time_t at,
		   const struct crypto_cert *mid)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	int ok;

	X509_STORE_add_cert(store, root->x509);
	if (mid)
		sk_X509_push(untrusted, mid->x509);
	X509_STORE_CTX_init(ctx, store, leaf->x509, untrusted);
	X509_STORE_CTX_set_time(ctx, 0, at);
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
	ok = X509_verify_cert(ctx);
	if (ok != 1) /* expected for the negative cases; shown for the others */
		fprintf(stderr, "verify: %s\n",
			X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_free(untrusted);
	return ok;
}

static int verify(const struct crypto_cert *root, const struct crypto_cert *leaf, time_t at)
{
	return verify3(root, leaf, at, NULL);
}

static void check_leaf_exts(const struct crypto_cert *c, bool rsa)
{
	X509 *x = c->x509;
	uint32_t ku = X509_get_key_usage(x);

	CHECK(X509_check_ca(x) == 0);
	CHECK(ku & KU_DIGITAL_SIGNATURE);
	CHECK(!(ku & KU_KEY_CERT_SIGN));
	CHECK(!!(ku & KU_KEY_ENCIPHERMENT) == rsa);
	CHECK(X509_get_extended_key_usage(x) == XKU_SSL_SERVER);
	CHECK(X509_get0_subject_key_id(x) != NULL);
}

static void test_ca(enum crypto_key_type cat, enum crypto_key_type leaft)
{
	const char *names[] = { "app.internal.example", "*.app.internal.example" };
	struct crypto_key *cak = NULL, *lk = NULL, *other = NULL, *pub = NULL;
	struct crypto_cert *root = NULL, *leaf = NULL, *leaf2 = NULL, *bad = NULL;
	struct crypto_csr *csr = NULL;
	struct crypto_cert_info info;

	CHECK_INT(crypto_key_generate(cat, &cak), 0);
	CHECK_INT(crypto_key_generate(leaft, &lk), 0);
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &other), 0);
	CHECK_INT(crypto_ca_root_new(cak, "certfs Test CA", 3650, NOW, &root), 0);
	if (!root)
		return;
	CHECK(crypto_cert_is_self_signed(root));
	CHECK(X509_check_ca(root->x509) == 1);
	CHECK(X509_get_key_usage(root->x509) & KU_KEY_CERT_SIGN);
	CHECK(X509_get0_subject_key_id(root->x509) != NULL);
	CHECK_INT(crypto_cert_info(root, &info), 0);
	CHECK_STR(info.subject, "CN=certfs Test CA");
	CHECK_INT(info.nsans, 0);
	crypto_cert_info_clear(&info);

	/* a leaf for the public half of a CSR's key */
	CHECK_INT(crypto_csr_new(lk, names, 2, &csr), 0);
	CHECK_INT(crypto_csr_get1_key(csr, &pub), 0);
	CHECK_INT(crypto_ca_issue(cak, root, pub, names, 2, 90, NOW, &leaf), 0);
	if (!leaf)
		goto out;
	CHECK(crypto_cert_issued_by(leaf, root));
	CHECK(!crypto_cert_is_self_signed(leaf));
	CHECK(crypto_cert_matches_key(leaf, lk));
	CHECK(crypto_cert_covers(leaf, "app.internal.example"));
	CHECK(crypto_cert_covers(leaf, "x.app.internal.example"));
	CHECK_INT(verify(root, leaf, NOW), 1);
	CHECK(verify(root, leaf, NOW + 91 * 86400) != 1);
	check_leaf_exts(leaf, EVP_PKEY_get_base_id(lk->pkey) == EVP_PKEY_RSA);
	/* AKI of the leaf is the SKI of the root */
	CHECK(X509_get0_authority_key_id(leaf->x509) != NULL &&
	      ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf->x509),
				    X509_get0_subject_key_id(root->x509)) == 0);
	CHECK_INT(crypto_cert_info(leaf, &info), 0);
	CHECK_STR(info.subject, "CN=app.internal.example");
	CHECK_STR(info.issuer, "CN=certfs Test CA");
	CHECK_INT(info.not_after, NOW + 90 * 86400);
	CHECK_INT(info.nsans, 2);
	crypto_cert_info_clear(&info);

	/* serials are random */
	CHECK_INT(crypto_ca_issue(cak, root, lk, names, 1, 90, NOW, &leaf2), 0);
	if (leaf2)
		CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(leaf->x509),
				       X509_get0_serialNumber(leaf2->x509)) != 0);
	crypto_cert_free(leaf2);
	leaf2 = NULL;

	/* never past the CA's own notAfter */
	CHECK_INT(crypto_ca_issue(cak, root, lk, names, 1, 100000, NOW, &leaf2), 0);
	if (leaf2)
		CHECK_INT(crypto_cert_not_after(leaf2), crypto_cert_not_after(root));
	crypto_cert_free(leaf2);

	/* refusals */
	CHECK_INT(crypto_ca_issue(other, root, lk, names, 1, 90, NOW, &bad), -EINVAL);
	CHECK_INT(crypto_ca_issue(pub, root, lk, names, 1, 90, NOW, &bad), -EINVAL);
	{
		const char *badnames[] = { "a..b" };

		CHECK_INT(crypto_ca_issue(cak, root, lk, badnames, 1, 90, NOW, &bad), -EINVAL);
	}
	CHECK_INT(crypto_ca_issue(cak, root, lk, names, 0, 90, NOW, &bad), -EINVAL);
	CHECK_INT(crypto_ca_issue(cak, root, lk, names, 1, 0, NOW, &bad), -EINVAL);
	/* a CA that expired before now cannot issue */
	CHECK_INT(crypto_ca_issue(cak, root, lk, names, 1, 90, NOW + 3651 * 86400, &bad), -EINVAL);
	CHECK_INT(crypto_ca_root_new(cak, "", 10, NOW, &bad), -EINVAL);
	CHECK_INT(crypto_ca_root_new(pub, "x", 10, NOW, &bad), -EINVAL);
	CHECK_INT(crypto_ca_root_new(cak, "x", 0, NOW, &bad), -EINVAL);
	CHECK(bad == NULL);
	/* a leaf cannot act as a CA for a verifier */
	{
		struct crypto_cert *sub = NULL;

		CHECK_INT(crypto_ca_issue(lk, leaf, other, names, 1, 10, NOW, &sub), 0);
		if (sub)
			CHECK(verify3(root, sub, NOW, leaf) != 1);
		crypto_cert_free(sub);
	}
out:
	crypto_cert_free(leaf);
	crypto_cert_free(root);
	crypto_csr_free(csr);
	crypto_key_free(pub);
	crypto_key_free(cak);
	crypto_key_free(lk);
	crypto_key_free(other);
}

static void test_intermediate(void)
{
	const char *names[] = { "svc.internal.example" };
	struct crypto_key *rk = NULL, *ik = NULL, *lk = NULL, *ik2 = NULL;
	struct crypto_cert *root = NULL, *inter = NULL, *leaf = NULL, *sub = NULL, *leaf2 = NULL;
	struct crypto_cert *bad = NULL;
	struct crypto_chain *ch = NULL, *sorted = NULL;
	struct crypto_err e;

	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC384, &rk), 0);
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &ik), 0);
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &lk), 0);
	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &ik2), 0);
	CHECK_INT(crypto_ca_root_new(rk, "certfs Root", 3650, NOW, &root), 0);
	CHECK_INT(crypto_ca_intermediate_new(rk, root, ik, "certfs Int", 5000, NOW, &inter), 0);
	if (!root || !inter)
		goto out;
	CHECK(crypto_cert_issued_by(inter, root));
	CHECK(X509_check_ca(inter->x509) == 1);
	CHECK_INT(X509_get_pathlen(inter->x509), 0);
	CHECK(X509_get_key_usage(inter->x509) & KU_KEY_CERT_SIGN);
	CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(inter->x509),
				    X509_get0_subject_key_id(root->x509)) == 0);
	/* clamped to the root's notAfter */
	CHECK_INT(crypto_cert_not_after(inter), crypto_cert_not_after(root));
	CHECK_INT(crypto_ca_issue(ik, inter, lk, names, 1, 90, NOW, &leaf), 0);
	if (!leaf)
		goto out;
	CHECK_INT(verify3(root, leaf, NOW, inter), 1);
	CHECK(verify(root, leaf, NOW) != 1);
	/* pathlen:0: an intermediate under the intermediate is not honoured */
	CHECK_INT(crypto_ca_intermediate_new(ik, inter, ik2, "Sub", 10, NOW, &sub), 0);
	CHECK_INT(crypto_ca_issue(ik2, sub, lk, names, 1, 5, NOW, &leaf2), 0);
	if (leaf2) {
		X509_STORE *store = X509_STORE_new();
		X509_STORE_CTX *ctx = X509_STORE_CTX_new();
		STACK_OF(X509) *untrusted = sk_X509_new_null();

		X509_STORE_add_cert(store, root->x509);
		sk_X509_push(untrusted, inter->x509);
		sk_X509_push(untrusted, sub->x509);
		X509_STORE_CTX_init(ctx, store, leaf2->x509, untrusted);
		X509_STORE_CTX_set_time(ctx, 0, NOW);
		CHECK(X509_verify_cert(ctx) != 1);
		CHECK_INT(X509_STORE_CTX_get_error(ctx), X509_V_ERR_PATH_LENGTH_EXCEEDED);
		X509_STORE_CTX_free(ctx);
		X509_STORE_free(store);
		sk_X509_free(untrusted);
	}
	/* the chain sorter agrees: leaf, intermediate; root dropped */
	ch = crypto_chain_new();
	CHECK_INT(crypto_chain_push(ch, root), 0);
	CHECK_INT(crypto_chain_push(ch, leaf), 0);
	CHECK_INT(crypto_chain_push(ch, inter), 0);
	CHECK_INT(crypto_chain_sort(ch, &sorted, &e), 0);
	CHECK_INT(crypto_chain_count(sorted), 2);
	CHECK(crypto_chain_get0(sorted, 0) == leaf && crypto_chain_get0(sorted, 1) == inter);
	/* refusals */
	CHECK_INT(crypto_ca_intermediate_new(ik, root, ik2, "x", 10, NOW, &bad), -EINVAL);
	CHECK_INT(crypto_ca_intermediate_new(rk, root, ik2, "", 10, NOW, &bad), -EINVAL);
	CHECK_INT(crypto_ca_intermediate_new(rk, root, ik2, "x", 0, NOW, &bad), -EINVAL);
	CHECK_INT(crypto_ca_intermediate_new(rk, root, ik2, "x", 10, NOW + 4000 * 86400L, &bad),
		  -EINVAL);
	CHECK(bad == NULL);
out:
	crypto_chain_free(sorted);
	crypto_chain_free(ch);
	crypto_cert_free(root);
	crypto_cert_free(inter);
	crypto_cert_free(leaf);
	crypto_cert_free(sub);
	crypto_cert_free(leaf2);
	crypto_key_free(rk);
	crypto_key_free(ik);
	crypto_key_free(lk);
	crypto_key_free(ik2);
}

static void test_selfsigned(void)
{
	const char *names[] = { "self.example.com" }, *bad[] = { "*.*.example.com" };
	struct crypto_key *k = NULL;
	struct crypto_cert *c = NULL;

	CHECK_INT(crypto_key_generate(CRYPTO_KEY_RSA2048, &k), 0);
	CHECK_INT(crypto_selfsigned_new(k, names, 1, 7, NOW, &c), 0);
	CHECK(crypto_cert_is_self_signed(c));
	CHECK_INT(crypto_cert_not_before(c), NOW - 60);
	CHECK_INT(crypto_cert_not_after(c), NOW + 7 * 86400);
	check_leaf_exts(c, true);
	crypto_cert_free(c);
	c = NULL;
	CHECK_INT(crypto_selfsigned_new(k, bad, 1, 7, NOW, &c), -EINVAL);
	CHECK_INT(crypto_selfsigned_new(k, names, 1, -1, NOW, &c), -EINVAL);
	CHECK_INT(crypto_selfsigned_new(k, names, 0, 7, NOW, &c), -EINVAL);
	CHECK(c == NULL);
	crypto_key_free(k);
}

/* RFC 8737 3: SAN = the name only, critical acmeIdentifier = OCTET STRING(SHA-256). */
static void test_alpn_cert(void)
{
	static const unsigned char want[] = { 0x04, 0x20 };
	const char *keyauth = "tok.thumb";
	unsigned char digest[32];
	struct crypto_key *k = NULL;
	struct crypto_cert *c = NULL;
	ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
	X509_EXTENSION *ext;
	const ASN1_OCTET_STRING *v;
	int pos;

	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &k), 0);
	CHECK_INT(crypto_alpn_cert_new(k, "alpn.example.com", keyauth, NOW, &c), 0);
	CHECK(c != NULL);
	if (c) {
		CHECK(crypto_cert_is_self_signed(c));
		pos = X509_get_ext_by_OBJ(c->x509, oid, -1);
		CHECK(pos >= 0);
		ext = pos >= 0 ? X509_get_ext(c->x509, pos) : NULL;
		CHECK(ext && X509_EXTENSION_get_critical(ext));
		v = ext ? X509_EXTENSION_get_data(ext) : NULL;
		CHECK(v && ASN1_STRING_length(v) == 34);
		SHA256((const unsigned char *)keyauth, strlen(keyauth), digest);
		if (v && ASN1_STRING_length(v) == 34) {
			CHECK(!memcmp(ASN1_STRING_get0_data(v), want, 2));
			CHECK(!memcmp(ASN1_STRING_get0_data(v) + 2, digest, 32));
		}
	}
	crypto_cert_free(c);
	c = NULL;
	CHECK_INT(crypto_alpn_cert_new(k, "*.*.example.com", keyauth, NOW, &c), -EINVAL);
	CHECK(c == NULL);
	ASN1_OBJECT_free(oid);
	crypto_key_free(k);
}

int main(void)
{
	test_ca(CRYPTO_KEY_EC256, CRYPTO_KEY_EC256);
	test_ca(CRYPTO_KEY_EC384, CRYPTO_KEY_RSA2048);
	test_ca(CRYPTO_KEY_ED25519, CRYPTO_KEY_ED25519);
	test_ca(CRYPTO_KEY_RSA2048, CRYPTO_KEY_EC384);
	test_intermediate();
	test_selfsigned();
	test_alpn_cert();
	CHECK_DONE();
}
