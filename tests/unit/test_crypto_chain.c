/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for chain ordering: a root -> intermediate -> leaf hierarchy
 * built with OpenSSL directly, given in every order, with duplicates, and
 * with the refusals: an unrelated certificate, a missing link, two leaves,
 * a look-alike intermediate (right name, wrong key), only roots; and the
 * completeness of a lone leaf (known issuer, system trust store); and the
 * hostile ones: what TLS clients refuse (a CA as the leaf, an EKU without
 * serverAuth, an unknown critical extension, SHA-1), two CAs that sign each
 * other (a loop), more certificates
 * than an upload may hold, and sixteen certificates sharing one name, which
 * must be refused by the signature-check budget rather than checked n^2.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/x509v3.h>

#include "crypto/crypto_int.h"
#include "tests/unit/check.h"

#define NOW ((time_t)1700000000)

static EVP_PKEY *ec_key(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	CHECK(ext != NULL);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
}

static struct crypto_cert *mkx(const char *cn, EVP_PKEY *subj, X509 *issuer, EVP_PKEY *signer,
			       bool ca, const EVP_MD *md, const char *ext, const char *value);

/* A certificate for subject key with CN=cn, issued by issuer (NULL: self). */
static struct crypto_cert *mk(const char *cn, EVP_PKEY *subj, X509 *issuer, EVP_PKEY *signer,
			      bool ca)
{
	return mkx(cn, subj, issuer, signer, ca, EVP_sha256(), NULL, NULL);
}

/* The same, signed with md, with one more extension (by name or OID) when ext is set. */
static struct crypto_cert *mkx(const char *cn, EVP_PKEY *subj, X509 *issuer, EVP_PKEY *signer,
			       bool ca, const EVP_MD *md, const char *ext, const char *value)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_get_subject_name(x);
	struct crypto_cert *c;

	X509_set_version(x, 2);
	CHECK_INT(crypto_set_random_serial(x), 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509_set_pubkey(x, subj);
	ASN1_TIME_set(X509_getm_notBefore(x), NOW - 86400);
	ASN1_TIME_set(X509_getm_notAfter(x), NOW + 86400);
	add_ext(x, issuer ? issuer : x, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
	if (ca)
		add_ext(x, x, NID_subject_key_identifier, "hash");
	if (ext) {
		X509V3_CTX ctx;
		X509_EXTENSION *e;

		X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
		e = X509V3_EXT_nconf(NULL, &ctx, ext, value);
		CHECK(e != NULL);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	CHECK(X509_sign(x, signer, md) > 0);
	c = crypto_cert_wrap(x);
	CHECK(c != NULL);
	return c;
}

static struct crypto_chain *chain_of(struct crypto_cert *const *v, size_t n)
{
	struct crypto_chain *ch = crypto_chain_new();
	size_t i;

	for (i = 0; i < n; i++)
		CHECK_INT(crypto_chain_push(ch, v[i]), 0);
	return ch;
}

static void sorted(struct crypto_cert *const *in, size_t n, struct crypto_cert *const *want,
		   size_t nwant)
{
	struct crypto_chain *ch = chain_of(in, n), *out = NULL;
	struct crypto_err e;
	size_t i;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_chain_sort(ch, &out, &e), 0);
	if (e.msg[0])
		fprintf(stderr, "unexpected: %s\n", e.msg);
	CHECK_INT(crypto_chain_count(out), nwant);
	for (i = 0; i < nwant && i < crypto_chain_count(out); i++)
		CHECK(X509_cmp(crypto_chain_get0(out, i)->x509, want[i]->x509) == 0);
	crypto_chain_free(out);
	crypto_chain_free(ch);
}

static void refused(struct crypto_cert *const *in, size_t n, const char *msg)
{
	struct crypto_chain *ch = chain_of(in, n), *out = NULL;
	struct crypto_err e;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_chain_sort(ch, &out, &e), -EINVAL);
	CHECK(out == NULL);
	CHECK_STR(e.msg, msg);
	crypto_chain_free(ch);
}

/*
 * crypto_chain_complete: a lone leaf needs a known issuer or one in the
 * system trust store (here a file named by SSL_CERT_FILE, as OpenSSL reads
 * it); longer chains and self-signed certificates are complete as they are.
 */
static void test_complete(struct crypto_cert *root, struct crypto_cert *inter,
			  struct crypto_cert *leaf, struct crypto_cert *rootleaf)
{
	char path[] = "certfs-unit-roots-XXXXXX"; /* in the test's working directory */
	struct crypto_chain *ch, *known;
	struct util_buf pem;
	struct crypto_err e;
	int fd;

	memset(&e, 0, sizeof(e));
	util_buf_init(&pem, 1 << 20, false);
	CHECK_INT(crypto_cert_to_pem(root, &pem), 0);
	fd = mkstemp(path);
	CHECK(fd >= 0 && write(fd, pem.data, pem.len) == (ssize_t)pem.len);
	close(fd);
	setenv("SSL_CERT_DIR", "/nonexistent", 1);
	setenv("SSL_CERT_FILE", "/nonexistent", 1);

	{
		struct crypto_cert *in[] = { leaf, inter };

		ch = chain_of(in, 2);
		CHECK_INT(crypto_chain_complete(ch, NULL, &e), 0);
		crypto_chain_free(ch);
	}
	ch = chain_of(&root, 1);
	CHECK_INT(crypto_chain_complete(ch, NULL, &e), 0);
	crypto_chain_free(ch);
	/* Alone, with nothing known: refused, naming the issuer. */
	ch = chain_of(&leaf, 1);
	CHECK_INT(crypto_chain_complete(ch, NULL, &e), -EINVAL);
	CHECK_CONTAINS(e.msg, "missing the certificate that issued 'CN=leaf.example.com' "
			      "(issuer 'CN=Test Int')");
	CHECK_INT(crypto_chain_count(ch), 1);
	/* A known intermediate completes it and is appended. */
	known = chain_of(&inter, 1);
	CHECK_INT(crypto_chain_complete(ch, known, &e), 0);
	CHECK_INT(crypto_chain_count(ch), 2);
	CHECK(crypto_chain_get0(ch, 1) == inter);
	crypto_chain_free(ch);
	crypto_chain_free(known);
	/* A leaf of a root: known, or in the trust store, it is complete alone. */
	ch = chain_of(&rootleaf, 1);
	CHECK_INT(crypto_chain_complete(ch, NULL, &e), -EINVAL);
	known = chain_of(&root, 1);
	CHECK_INT(crypto_chain_complete(ch, known, &e), 0);
	CHECK_INT(crypto_chain_count(ch), 1);
	crypto_chain_free(known);
	setenv("SSL_CERT_FILE", path, 1);
	CHECK_INT(crypto_chain_complete(ch, NULL, &e), 0);
	CHECK_INT(crypto_chain_count(ch), 1);
	crypto_chain_free(ch);
	/* The trust store holds the root, not the intermediate. */
	ch = chain_of(&leaf, 1);
	CHECK_INT(crypto_chain_complete(ch, NULL, &e), -EINVAL);
	crypto_chain_free(ch);
	unlink(path);
	unsetenv("SSL_CERT_FILE");
	unsetenv("SSL_CERT_DIR");
	util_buf_free(&pem);
}

static void tls_judged(struct crypto_cert *leaf, struct crypto_cert *inter, const char *msg)
{
	struct crypto_cert *in[] = { leaf, inter };
	struct crypto_chain *ch = chain_of(in, inter ? 2 : 1);
	struct crypto_err e = { { 0 } };

	CHECK_INT(crypto_chain_check_tls(ch, &e), msg ? -EINVAL : 0);
	if (msg)
		CHECK_STR(e.msg, msg);
	crypto_chain_free(ch);
	crypto_cert_free(leaf);
}

/* What TLS clients refuse in a chain that sorts fine. */
static void test_tls(struct crypto_cert *inter, EVP_PKEY *ki)
{
	EVP_PKEY *kl = ec_key(), *k1 = ec_key(), *kr = ec_key();
	const EVP_MD *sha256 = EVP_sha256(), *sha1 = EVP_sha1();
	struct crypto_cert *root = mk("TLS Root", kr, NULL, kr, true);
	struct crypto_cert *weak = mkx("SHA1 Int", k1, root->x509, kr, true, sha1, NULL, NULL);

	tls_judged(mk("tls.example.com", kl, inter->x509, ki, false), inter, NULL);
	tls_judged(mkx("tls.example.com", kl, inter->x509, ki, false, sha256, "extendedKeyUsage",
		       "serverAuth,clientAuth"),
		   inter, NULL);
	tls_judged(mk("tls.example.com", kl, inter->x509, ki, true), inter,
		   "certificate is a CA certificate (CA:TRUE), which TLS clients refuse as a "
		   "server certificate");
	tls_judged(mkx("tls.example.com", kl, inter->x509, ki, false, sha256, "extendedKeyUsage",
		       "clientAuth"),
		   inter, "certificate's extended key usage does not include serverAuth (TLS server)");
	tls_judged(mkx("tls.example.com", kl, inter->x509, ki, false, sha256,
		       "1.3.6.1.4.1.55555.1", "critical,ASN1:NULL"),
		   inter, "certificate 'CN=tls.example.com' has an unknown critical extension "
			  "1.3.6.1.4.1.55555.1");
	/* the same extension, not critical, may be ignored by clients */
	tls_judged(mkx("tls.example.com", kl, inter->x509, ki, false, sha256,
		       "1.3.6.1.4.1.55555.1", "ASN1:NULL"),
		   inter, NULL);
	tls_judged(mkx("tls.example.com", kl, inter->x509, ki, false, sha1, NULL, NULL), inter,
		   "certificate 'CN=tls.example.com' is signed with SHA1, which TLS clients refuse");
	tls_judged(mkx("tls.example.com", kl, weak->x509, k1, false, sha256, NULL, NULL), weak,
		   "certificate 'CN=SHA1 Int' is signed with SHA1, which TLS clients refuse");
	crypto_cert_free(weak);
	crypto_cert_free(root);
	EVP_PKEY_free(kl);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(kr);
}

/* Two CAs cross-signed both ways, with a leaf under one of them. */
static void test_loop(void)
{
	EVP_PKEY *ka = ec_key(), *kb = ec_key(), *kl = ec_key();
	struct crypto_cert *rootb = mk("Loop B", kb, NULL, kb, true);
	struct crypto_cert *a = mk("Loop A", ka, rootb->x509, kb, true);
	struct crypto_cert *b = mk("Loop B", kb, a->x509, ka, true);
	struct crypto_cert *leaf = mk("loop.example.com", kl, a->x509, ka, false);
	struct crypto_cert *in[] = { leaf, a, b };

	refused(in, 3, "chain: certificate 'CN=Loop B' is issued by 'CN=Loop A', which comes "
		       "earlier in the chain (a loop)");
	crypto_cert_free(rootb);
	crypto_cert_free(a);
	crypto_cert_free(b);
	crypto_cert_free(leaf);
	EVP_PKEY_free(ka);
	EVP_PKEY_free(kb);
	EVP_PKEY_free(kl);
}

/* Sixteen certificates named alike, each signed by the next one's key. */
static void test_one_name(void)
{
	struct crypto_cert *c[CRYPTO_CHAIN_MAX], *first;
	EVP_PKEY *k[CRYPTO_CHAIN_MAX];
	size_t i;

	for (i = 0; i < CRYPTO_CHAIN_MAX; i++)
		k[i] = ec_key();
	first = mk("Same", k[0], NULL, k[0], false);
	for (i = 0; i < CRYPTO_CHAIN_MAX; i++)
		c[i] = mk("Same", k[i], first->x509, k[(i + 1) % CRYPTO_CHAIN_MAX], false);
	refused(c, CRYPTO_CHAIN_MAX, "chain: ordering the certificates needs more than 64 "
				     "signature checks (the limit)");
	for (i = 0; i < CRYPTO_CHAIN_MAX; i++) {
		crypto_cert_free(c[i]);
		EVP_PKEY_free(k[i]);
	}
	crypto_cert_free(first);
}

/* More certificates than an upload may hold: refused while parsing. */
static void test_too_many(struct crypto_cert *leaf)
{
	struct crypto_chain *ch = NULL, *out = NULL;
	struct util_buf one, many;
	struct crypto_err e;
	size_t i;

	util_buf_init(&one, 1 << 20, false);
	util_buf_init(&many, 4 << 20, false);
	CHECK_INT(crypto_cert_to_pem(leaf, &one), 0);
	for (i = 0; i < CRYPTO_CHAIN_MAX; i++)
		CHECK_INT(util_buf_append(&many, one.data, one.len), 0);
	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_chain_parse(many.data, many.len, &ch, &e), 0);
	crypto_chain_free(ch);
	ch = NULL;
	/* a thousand copies: the seventeenth ends it */
	for (i = CRYPTO_CHAIN_MAX; i < 1000; i++)
		CHECK_INT(util_buf_append(&many, one.data, one.len), 0);
	CHECK_INT(crypto_chain_parse(many.data, many.len, &ch, &e), -EINVAL);
	CHECK(ch == NULL);
	CHECK_STR(e.msg, "more than 16 certificates (the limit for one upload)");
	/* a chain built by hand is held to the same limit when sorted */
	ch = crypto_chain_new();
	for (i = 0; i <= CRYPTO_CHAIN_MAX; i++)
		CHECK_INT(crypto_chain_push(ch, leaf), 0);
	CHECK_INT(crypto_chain_sort(ch, &out, &e), -EINVAL);
	CHECK_STR(e.msg, "chain: more than 16 certificates (the limit for one upload)");
	crypto_chain_free(ch);
	util_buf_free(&one);
	util_buf_free(&many);
}

int main(void)
{
	EVP_PKEY *kr = ec_key(), *ki = ec_key(), *kl = ec_key(), *kl2 = ec_key();
	EVP_PKEY *kr2 = ec_key(), *ki2 = ec_key(), *kfake = ec_key();
	struct crypto_cert *root = mk("Test Root", kr, NULL, kr, true);
	struct crypto_cert *inter = mk("Test Int", ki, root->x509, kr, true);
	struct crypto_cert *leaf = mk("leaf.example.com", kl, inter->x509, ki, false);
	struct crypto_cert *leaf2 = mk("leaf2.example.com", kl2, inter->x509, ki, false);
	struct crypto_cert *root2 = mk("Other Root", kr2, NULL, kr2, true);
	struct crypto_cert *inter2 = mk("Other Int", ki2, root2->x509, kr2, true);
	/* same name as the intermediate, different key */
	struct crypto_cert *fake = mk("Test Int", kfake, root->x509, kr, true);
	struct crypto_chain *ch = NULL, *parsed = NULL, *out = NULL;
	struct util_buf pem;
	struct crypto_err e;

	{
		struct crypto_cert *in[] = { root, leaf, inter }, *want[] = { leaf, inter };

		sorted(in, 3, want, 2);
	}
	{
		struct crypto_cert *in[] = { inter, leaf }, *want[] = { leaf, inter };

		sorted(in, 2, want, 2);
	}
	{
		struct crypto_cert *in[] = { leaf, inter, root }, *want[] = { leaf, inter };

		sorted(in, 3, want, 2);
	}
	{
		struct crypto_cert *in[] = { inter, leaf, inter, leaf }, *want[] = { leaf, inter };

		sorted(in, 4, want, 2);
	}
	{
		struct crypto_cert *in[] = { leaf }, *want[] = { leaf };

		sorted(in, 1, want, 1);
	}
	{
		/* a lone self-signed certificate is its own chain */
		struct crypto_cert *in[] = { root }, *want[] = { root };

		sorted(in, 1, want, 1);
	}
	{
		/* an intermediate and its root only: the intermediate leads */
		struct crypto_cert *in[] = { root, inter }, *want[] = { inter };

		sorted(in, 2, want, 1);
	}
	{
		struct crypto_cert *in[] = { leaf, inter, root, root2 };

		refused(in, 4, "chain: certificate 'CN=Other Root' does not belong to the chain");
	}
	{
		struct crypto_cert *in[] = { inter2, leaf, inter, root };

		refused(in, 4, "chain: certificate 'CN=Other Int' does not belong to the chain");
	}
	{
		struct crypto_cert *in[] = { leaf, root };

		refused(in, 2, "chain: missing the certificate that issued 'CN=leaf.example.com' "
			       "(issuer 'CN=Test Int')");
	}
	{
		struct crypto_cert *in[] = { leaf, inter2 };

		refused(in, 2, "chain: missing the certificate that issued 'CN=leaf.example.com' "
			       "(issuer 'CN=Test Int')");
	}
	{
		struct crypto_cert *in[] = { leaf, leaf2, inter };

		refused(in, 3, "chain: more than one leaf certificate");
	}
	{
		struct crypto_cert *in[] = { leaf, fake };

		refused(in, 2, "chain: certificate 'CN=leaf.example.com' is not issued by "
			       "'CN=Test Int'");
	}
	{
		struct crypto_cert *in[] = { root, root2 };

		refused(in, 2, "chain: no leaf certificate");
	}
	refused(NULL, 0, "chain: no certificate");
	test_loop();
	test_tls(inter, ki);
	test_one_name();
	test_too_many(leaf);
	CHECK(crypto_cert_issued_by(leaf, inter));
	CHECK(!crypto_cert_issued_by(leaf, fake));
	CHECK(!crypto_cert_issued_by(inter, leaf));
	CHECK(!crypto_cert_is_self_signed(inter));
	CHECK(crypto_cert_is_self_signed(root));
	{
		struct crypto_cert *rootleaf = mk("direct.example.com", kl2, root->x509, kr, false);

		test_complete(root, inter, leaf, rootleaf);
		crypto_cert_free(rootleaf);
	}

	/* PEM out and back, order kept */
	{
		struct crypto_cert *in[] = { leaf, inter, root };

		ch = chain_of(in, 3);
	}
	util_buf_init(&pem, 1 << 20, false);
	CHECK_INT(crypto_chain_to_pem(ch, &pem), 0);
	CHECK(memchr(pem.data, '\r', pem.len) == NULL);
	CHECK_INT(crypto_chain_parse(pem.data, pem.len, &parsed, &e), 0);
	CHECK_INT(crypto_chain_count(parsed), 3);
	CHECK(X509_cmp(crypto_chain_get0(parsed, 0)->x509, leaf->x509) == 0);
	CHECK(X509_cmp(crypto_chain_get0(parsed, 2)->x509, root->x509) == 0);
	CHECK_INT(crypto_chain_sort(parsed, &out, &e), 0);
	CHECK_INT(crypto_chain_count(out), 2);
	CHECK_INT(crypto_chain_push(ch, NULL), -EINVAL);
	CHECK_INT(crypto_chain_count(NULL), 0);
	crypto_chain_free(NULL);

	util_buf_free(&pem);
	crypto_chain_free(out);
	crypto_chain_free(parsed);
	crypto_chain_free(ch);
	crypto_cert_free(root);
	crypto_cert_free(inter);
	crypto_cert_free(leaf);
	crypto_cert_free(leaf2);
	crypto_cert_free(root2);
	crypto_cert_free(inter2);
	crypto_cert_free(fake);
	EVP_PKEY_free(kr);
	EVP_PKEY_free(ki);
	EVP_PKEY_free(kl);
	EVP_PKEY_free(kl2);
	EVP_PKEY_free(kr2);
	EVP_PKEY_free(ki2);
	EVP_PKEY_free(kfake);
	CHECK_DONE();
}
