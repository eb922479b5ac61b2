/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for single certificates: PEM/DER parsing and its refusals
 * (truncated DER, trailing bytes, damaged PEM, nothing there), validity at
 * a clock the test chooses, days left, SAN coverage, key match, key policy
 * applied to the certificate, and the status summary.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "crypto/crypto_int.h"
#include "tests/unit/check.h"

#define NOW ((time_t)1700000000) /* 2023-11-14T22:13:20Z */
#define LIT(s) (s), sizeof(s) - 1

static struct crypto_key *gen(enum crypto_key_type t)
{
	struct crypto_key *k = NULL;

	CHECK_INT(crypto_key_generate(t, &k), 0);
	return k;
}

static struct crypto_cert *selfsigned(struct crypto_key *k, const char *const *names, size_t n)
{
	struct crypto_cert *c = NULL;

	CHECK_INT(crypto_selfsigned_new(k, names, n, 30, NOW, &c), 0);
	return c;
}

static int der_of(const struct crypto_cert *c, unsigned char **der)
{
	*der = NULL;
	return i2d_X509(c->x509, der);
}

static void refused(const void *data, size_t len, const char *msg)
{
	struct crypto_chain *ch = NULL;
	struct crypto_cert *c = NULL;
	struct crypto_err e;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_chain_parse(data, len, &ch, &e), -EINVAL);
	CHECK(ch == NULL);
	CHECK_CONTAINS(e.msg, msg);
	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_cert_parse(data, len, &c, &e), -EINVAL);
	CHECK(c == NULL);
	CHECK_CONTAINS(e.msg, msg);
}

static void test_parse(void)
{
	const char *names[] = { "example.com", "*.example.com" };
	struct crypto_key *k = gen(CRYPTO_KEY_EC256), *k2 = NULL;
	struct crypto_cert *c = selfsigned(k, names, 2), *c2 = NULL;
	struct crypto_chain *ch = NULL;
	struct util_buf pem, mixed;
	struct crypto_err e;
	unsigned char *der = NULL, *tmp;
	char *crlf, *p;
	int derlen;
	size_t i, j;

	util_buf_init(&pem, 1 << 20, false);
	util_buf_init(&mixed, 1 << 20, true);
	CHECK_INT(crypto_cert_to_pem(c, &pem), 0);
	CHECK(crypto_pem_has_cert(pem.data, pem.len));
	CHECK(!crypto_pem_has_key(pem.data, pem.len));

	/* PEM */
	CHECK_INT(crypto_cert_parse(pem.data, pem.len, &c2, &e), 0);
	CHECK(c2 && X509_cmp(c->x509, c2->x509) == 0);
	crypto_cert_free(c2);
	c2 = NULL;

	/* DER */
	derlen = der_of(c, &der);
	CHECK(derlen > 0);
	CHECK_INT(crypto_cert_parse(der, (size_t)derlen, &c2, &e), 0);
	CHECK(c2 && X509_cmp(c->x509, c2->x509) == 0);
	crypto_cert_free(c2);
	c2 = NULL;

	/* truncated DER, trailing bytes after DER */
	refused(der, (size_t)derlen - 1, "certificate 1 is not valid: ");
	refused(der, 10, "certificate 1 is not valid: ");
	tmp = malloc((size_t)derlen + 1);
	memcpy(tmp, der, (size_t)derlen);
	tmp[derlen] = 0;
	refused(tmp, (size_t)derlen + 1, "trailing data after DER certificate");
	/* a damaged byte in the signature algorithm area */
	tmp[4] ^= 0xff;
	refused(tmp, (size_t)derlen, "certificate 1 is not valid: ");
	free(tmp);

	/* BOM + CRLF + a key in between + two certificates */
	CHECK_INT(util_buf_append(&mixed, "\xef\xbb\xbf", 3), 0);
	CHECK_INT(crypto_key_to_pem(k, &mixed), 0);
	CHECK_INT(util_buf_append(&mixed, pem.data, pem.len), 0);
	CHECK_INT(util_buf_append(&mixed, pem.data, pem.len), 0);
	CHECK_INT(util_buf_terminate(&mixed), 0);
	crlf = calloc(2 * mixed.len + 1, 1);
	for (i = 0, j = 0; i < mixed.len; i++) {
		if (mixed.data[i] == '\n')
			crlf[j++] = '\r';
		crlf[j++] = (char)mixed.data[i];
	}
	CHECK_INT(crypto_chain_parse(crlf, j, &ch, &e), 0);
	CHECK_INT(crypto_chain_count(ch), 2);
	CHECK(crypto_chain_get0(ch, 2) == NULL);
	/* the key in between is still found by the key parser */
	CHECK_INT(crypto_key_parse_pem(crlf, j, NULL, &k2, &e), 0);
	CHECK(crypto_key_same_public(k, k2));
	crypto_key_free(k2);
	crypto_chain_free(ch);
	ch = NULL;
	util_wipe(crlf, j);
	free(crlf);

	/* the second block damaged: named by its number */
	CHECK_INT(util_buf_terminate(&pem), 0);
	p = malloc(2 * pem.len + 1);
	memcpy(p, pem.data, pem.len);
	memcpy(p + pem.len, pem.data, pem.len);
	p[2 * pem.len] = '\0';
	p[pem.len + 40] = '*';
	refused(p, strlen(p), "certificate 2 is not valid: bad base64");
	/* the second block cut short */
	p[pem.len + 200] = '\0';
	refused(p, strlen(p), "certificate 2 is not valid: no END line");
	free(p);

	/* base64 of bytes that are not a certificate */
	refused(LIT("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"),
		"certificate 1 is not valid: ");
	refused("", 0, "no certificate found");
	refused("just text", 9, "no certificate found");
	refused(LIT("-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n"),
		"no certificate found");

	OPENSSL_free(der);
	util_buf_free(&pem);
	util_buf_free(&mixed);
	crypto_cert_free(c);
	crypto_key_free(k);
}

static void test_validity(void)
{
	const char *names[] = { "example.com" };
	struct crypto_key *k = gen(CRYPTO_KEY_EC256);
	struct crypto_cert *c = selfsigned(k, names, 1);
	struct crypto_err e;

	CHECK_INT(crypto_cert_not_before(c), NOW - 60);
	CHECK_INT(crypto_cert_not_after(c), NOW + 30 * 86400);
	CHECK_INT(crypto_cert_check_validity(c, NOW, 0, &e), 0);
	CHECK_INT(crypto_cert_check_validity(c, NOW - 60, 0, &e), 0);
	CHECK_INT(crypto_cert_check_validity(c, NOW + 30 * 86400, 0, &e), 0);
	/* not yet valid, unless within the skew */
	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_cert_check_validity(c, NOW - 3600, 0, &e), -EINVAL);
	CHECK_STR(e.msg, "certificate is not valid before 2023-11-14");
	CHECK_INT(crypto_cert_check_validity(c, NOW - 3600, 3600, &e), 0);
	CHECK_INT(crypto_cert_check_validity(c, NOW - 3600, 3539, NULL), -EINVAL);
	/* expired, unless within the skew */
	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_cert_check_validity(c, NOW + 31 * 86400, 0, &e), -EINVAL);
	CHECK_STR(e.msg, "certificate has expired on 2023-12-14");
	CHECK_INT(crypto_cert_check_validity(c, NOW + 30 * 86400 + 300, 300, &e), 0);
	CHECK_INT(crypto_cert_check_validity(c, NOW + 30 * 86400 + 301, 300, &e), -EINVAL);

	CHECK_INT(crypto_cert_days_left(c, NOW), 30);
	CHECK_INT(crypto_cert_days_left(c, NOW + 1), 29);
	CHECK_INT(crypto_cert_days_left(c, NOW + 30 * 86400), 0);
	CHECK_INT(crypto_cert_days_left(c, NOW + 30 * 86400 + 1), -1);
	CHECK_INT(crypto_cert_days_left(c, NOW + 32 * 86400), -2);
	crypto_cert_free(c);
	crypto_key_free(k);
}

static void test_covers_and_keys(void)
{
	const char *names[] = { "example.com", "*.example.com", "Other.Example.NET" };
	struct crypto_key *k = gen(CRYPTO_KEY_ED25519), *other = gen(CRYPTO_KEY_EC256);
	struct crypto_key *pub = NULL;
	struct crypto_cert *c = selfsigned(k, names, 3), *c2 = selfsigned(other, names, 1);
	struct crypto_err e;

	CHECK(crypto_cert_covers(c, "example.com"));
	CHECK(crypto_cert_covers(c, "www.example.com"));
	CHECK(crypto_cert_covers(c, "WWW.EXAMPLE.COM"));
	CHECK(crypto_cert_covers(c, "other.example.net"));
	CHECK(!crypto_cert_covers(c, "a.b.example.com"));
	CHECK(!crypto_cert_covers(c, "example.net"));
	CHECK(!crypto_cert_covers(c, NULL));
	CHECK_INT(crypto_cert_check_covers(c, "www.example.com", &e), 0);
	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_cert_check_covers(c, "www.example.org", &e), -EINVAL);
	CHECK_STR(e.msg, "certificate does not cover www.example.org");
	/* c2 lists only example.com: no wildcard */
	CHECK(!crypto_cert_covers(c2, "www.example.com"));

	CHECK(crypto_cert_matches_key(c, k));
	CHECK(!crypto_cert_matches_key(c, other));
	CHECK(!crypto_cert_matches_key(c2, k));
	CHECK_INT(crypto_cert_get1_key(c, &pub), 0);
	CHECK(crypto_cert_matches_key(c, pub));
	CHECK(!crypto_key_is_private(pub));
	CHECK(crypto_cert_is_self_signed(c));
	CHECK(crypto_cert_issued_by(c, c));
	CHECK(!crypto_cert_issued_by(c, c2));
	CHECK_INT(crypto_cert_check_key_policy(c, &e), 0);
	crypto_key_free(pub);
	crypto_cert_free(c);
	crypto_cert_free(c2);
	crypto_key_free(k);
	crypto_key_free(other);
}

static void test_weak_key_cert(void)
{
	const char *names[] = { "weak.example.com" };
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	struct crypto_key *k = crypto_key_wrap(rsa, true);
	struct crypto_cert *c = selfsigned(k, names, 1);
	struct crypto_cert_info info;
	struct crypto_err e;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_cert_check_key_policy(c, &e), -EINVAL);
	CHECK_STR(e.msg, "RSA key of 1024 bits is too weak (at least 2048)");
	CHECK_INT(crypto_cert_info(c, &info), 0);
	CHECK_STR(info.key_type, "other");
	crypto_cert_info_clear(&info);
	crypto_cert_free(c);
	crypto_key_free(k);
}

static void test_info(void)
{
	const char *names[] = { "example.com", "www.example.com" };
	struct crypto_key *k = gen(CRYPTO_KEY_RSA2048);
	struct crypto_cert *c = selfsigned(k, names, 2);
	struct crypto_cert_info info;
	unsigned char md[32];
	unsigned int mdlen = 0;
	char hex[65];
	size_t i;

	CHECK_INT(crypto_cert_info(c, &info), 0);
	CHECK_STR(info.subject, "CN=example.com");
	CHECK_STR(info.issuer, "CN=example.com");
	CHECK_STR(info.key_type, "rsa2048");
	CHECK_INT(info.not_before, NOW - 60);
	CHECK_INT(info.not_after, NOW + 30 * 86400);
	CHECK_INT(info.nsans, 2);
	if (info.nsans == 2) {
		CHECK_STR(info.sans[0], "example.com");
		CHECK_STR(info.sans[1], "www.example.com");
	}
	CHECK_INT(strlen(info.serial), 32);
	CHECK_INT(strspn(info.serial, "0123456789abcdef"), 32);
	X509_digest(c->x509, EVP_sha256(), md, &mdlen);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	CHECK_STR(info.fingerprint_sha256, hex);
	crypto_cert_info_clear(&info);
	CHECK(info.sans == NULL);
	crypto_cert_info_clear(&info);
	crypto_cert_info_clear(NULL);
	crypto_cert_free(c);
	crypto_cert_free(NULL);
	crypto_key_free(k);
}

int main(void)
{
	test_parse();
	test_validity();
	test_covers_and_keys();
	test_weak_key_cert();
	test_info();
	CHECK_DONE();
}
