/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for certificate requests: building one for each key type,
 * reading it back as PEM and DER, the names it lists (SANs plus a DNS-like
 * CN), and the refusals: a tampered request, a damaged signature,
 * truncated or trailing DER, damaged PEM, bad names.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "crypto/crypto_int.h"
#include "tests/unit/check.h"

#define LIT(s) (s), sizeof(s) - 1

static void refused(const void *data, size_t len, const char *msg)
{
	struct crypto_csr *csr = NULL;
	struct crypto_err e;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_csr_parse(data, len, &csr, &e), -EINVAL);
	CHECK(csr == NULL);
	CHECK_CONTAINS(e.msg, msg);
}

static void roundtrip(enum crypto_key_type t)
{
	const char *names[] = { "example.com", "www.example.com", "*.example.org" };
	struct crypto_key *k = NULL, *pub = NULL;
	struct crypto_csr *csr = NULL, *csr2 = NULL;
	struct util_buf der, pem;
	struct crypto_err e;
	char **v = NULL;
	size_t n = 0, i;
	unsigned char *tmp, *hit;

	util_buf_init(&der, 1 << 16, false);
	util_buf_init(&pem, 1 << 16, false);
	CHECK_INT(crypto_key_generate(t, &k), 0);
	CHECK_INT(crypto_csr_new(k, names, 3, &csr), 0);
	CHECK_INT(crypto_csr_to_der(csr, &der), 0);
	CHECK_INT(crypto_csr_to_pem(csr, &pem), 0);
	CHECK_INT(util_buf_terminate(&pem), 0);
	CHECK_CONTAINS((const char *)pem.data, "-----BEGIN CERTIFICATE REQUEST-----");

	/* DER */
	CHECK_INT(crypto_csr_parse(der.data, der.len, &csr2, &e), 0);
	CHECK_INT(crypto_csr_names(csr2, false, &v, &n, &e), 0);
	CHECK_INT(n, 3);
	for (i = 0; i < n && i < 3; i++)
		CHECK_STR(v[i], names[i]);
	crypto_strv_free(v, n);
	CHECK_INT(crypto_csr_get1_key(csr2, &pub), 0);
	CHECK(crypto_key_same_public(pub, k));
	CHECK(!crypto_key_is_private(pub));
	/* a public-only key cannot sign a request */
	crypto_csr_free(csr2);
	csr2 = NULL;
	CHECK_INT(crypto_csr_new(pub, names, 1, &csr2), -EINVAL);
	crypto_key_free(pub);

	/* PEM */
	CHECK_INT(crypto_csr_parse(pem.data, pem.len, &csr2, &e), 0);
	crypto_csr_free(csr2);
	csr2 = NULL;

	/* tampered: a name changed after signing */
	tmp = malloc(der.len + 1);
	memcpy(tmp, der.data, der.len);
	hit = memmem(tmp, der.len, "www.example.com", 15);
	CHECK(hit != NULL);
	if (hit)
		hit[0] = 'v';
	refused(tmp, der.len, "CSR signature is not valid");
	/* damaged signature bytes */
	memcpy(tmp, der.data, der.len);
	tmp[der.len - 3] ^= 0x55;
	refused(tmp, der.len, "CSR");
	/* truncated and trailing */
	memcpy(tmp, der.data, der.len);
	refused(tmp, der.len - 1, "CSR is not valid: ");
	tmp[der.len] = 0;
	refused(tmp, der.len + 1, "CSR is not valid: trailing data");
	free(tmp);

	util_buf_free(&der);
	util_buf_free(&pem);
	crypto_csr_free(csr);
	crypto_key_free(k);
}

/* A request with CN=cn and optional SANs, built with OpenSSL directly. */
static struct crypto_csr *raw_csr(EVP_PKEY *key, const char *cn, const char *san)
{
	X509_REQ *req = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	struct crypto_csr *out = NULL;
	struct util_buf der;
	unsigned char *p = NULL;
	struct crypto_err e;
	int len;

	X509_REQ_set_version(req, 0);
	X509_REQ_set_pubkey(req, key);
	X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
				   (const unsigned char *)cn, -1, -1, 0);
	if (san) {
		sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
								 san));
		X509_REQ_add_extensions(req, exts);
	}
	X509_REQ_sign(req, key, EVP_sha256());
	len = i2d_X509_REQ(req, &p);
	util_buf_init(&der, 1 << 16, false);
	CHECK_INT(util_buf_append(&der, p, (size_t)len), 0);
	CHECK_INT(crypto_csr_parse(der.data, der.len, &out, &e), 0);
	OPENSSL_free(p);
	util_buf_free(&der);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	return out;
}

static void names_of_as(struct crypto_csr *csr, bool dev, const char *const *want, size_t nwant)
{
	char **v = NULL;
	size_t n = 0, i;

	CHECK(csr != NULL);
	if (!csr)
		return;
	CHECK_INT(crypto_csr_names(csr, dev, &v, &n, NULL), 0);
	CHECK_INT(n, nwant);
	for (i = 0; i < n && i < nwant; i++)
		CHECK_STR(v[i], want[i]);
	crypto_strv_free(v, n);
	crypto_csr_free(csr);
}

static void names_of(struct crypto_csr *csr, const char *const *want, size_t nwant)
{
	names_of_as(csr, false, want, nwant);
}

/* Names a CSR may not ask for: refused whole, never dropped. */
static void names_refused_as(struct crypto_csr *csr, bool dev, const char *msg)
{
	struct crypto_err e = { { 0 } };
	char **v = NULL;
	size_t n = 7;

	CHECK(csr != NULL);
	if (!csr)
		return;
	CHECK_INT(crypto_csr_names(csr, dev, &v, &n, &e), -EINVAL);
	CHECK(v == NULL && n == 0);
	CHECK_STR(e.msg, msg);
	CHECK(!strchr(e.msg, '\n'));
	crypto_csr_free(csr);
}

static void names_refused(struct crypto_csr *csr, const char *msg)
{
	names_refused_as(csr, false, msg);
}

static void test_names(void)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	{
		const char *want[] = { "a.example.com", "cn.example.com" };

		names_of(raw_csr(key, "cn.example.com", "DNS:a.example.com"), want, 2);
	}
	{
		const char *want[] = { "a.example.com", "b.example.com" };

		/* the CN already listed (other case) is not repeated; names fold to lower case */
		names_of(raw_csr(key, "A.example.com", "DNS:a.example.com,DNS:B.Example.com"),
			 want, 2);
	}
	names_refused(raw_csr(key, "a.example.com", "DNS:a.example.com,IP:192.0.2.1"),
		      "CSR asks for IP address 192.0.2.1: certfs orders certificates for DNS "
		      "names only");
	names_refused(raw_csr(key, "a.example.com", "DNS:a.example.com,IP:2001:db8::1"),
		      "CSR asks for IP address 2001:db8::1: certfs orders certificates for DNS "
		      "names only");
	names_refused(raw_csr(key, "a.example.com", "DNS:a.example.com,email:x@example.com"),
		      "CSR asks for an email address: certfs orders certificates for DNS names "
		      "only");
	names_refused(raw_csr(key, "My Server", "DNS:a.example.com"),
		      "CSR name: domain name 'My Server' has a character ' ' not allowed in a "
		      "host name");
	names_refused(raw_csr(key, "a.example.com", "DNS:*.*.example.com"),
		      "CSR name: domain name '*.*.example.com' has a wildcard outside the first "
		      "label");
	names_refused(raw_csr(key, "a.example.com", "DNS:*.*."),
		      "CSR name: domain name '*.*.' ends with a dot");
	names_refused(raw_csr(key, "a..example.com", NULL),
		      "CSR name: domain name 'a..example.com' has an empty label");
	names_refused(raw_csr(key, "a.example.com\nstate: valid", NULL),
		      "CSR name: domain name contains a control character");
	names_refused(raw_csr(key, "a\x01.example.com", NULL),
		      "CSR name: domain name contains a control character");
	{
		char san[4096];
		size_t i, off = 0;

		for (i = 0; i <= CRYPTO_NAMES_MAX; i++)
			off += (size_t)snprintf(san + off, sizeof(san) - off, "%sDNS:n%zu.example.com",
						i ? "," : "", i);
		names_refused(raw_csr(key, "n0.example.com", san),
			      "CSR lists more than 100 names (the limit)");
	}
	{
		const char *want[] = { "only.example.com" };

		names_of(raw_csr(key, "only.example.com", NULL), want, 1);
	}
	/* For development issuers: addresses as their canonical text, single
	 * labels; email and URI SANs stay refused, as do bad names. */
	{
		const char *want[] = { "127.0.0.1", "::1", "intranet" };

		names_of_as(raw_csr(key, "intranet", "IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"), true,
			    want, 3);
	}
	{
		const char *want[] = { "127.0.0.1" };

		names_of_as(raw_csr(key, "127.0.0.1", "IP:127.0.0.1"), true, want, 1);
	}
	names_refused(raw_csr(key, "intranet", NULL),
		      "CSR name: domain name 'intranet' needs at least two labels");
	names_refused_as(raw_csr(key, "localhost", "DNS:localhost,email:x@example.com"), true,
			 "CSR asks for an email address: certfs orders certificates for DNS names "
			 "only");
	names_refused_as(raw_csr(key, "localhost", "DNS:localhost,URI:https://localhost/"), true,
			 "CSR asks for a URI: certfs orders certificates for DNS names only");
	names_refused_as(raw_csr(key, "a_b", "IP:127.0.0.1"), true,
			 "CSR name: domain name 'a_b' has a character '_' not allowed in a host "
			 "name");
	EVP_PKEY_free(key);
}

static void test_refusals(void)
{
	const char *bad1[] = { "a..b" }, *bad2[] = { "ok.example.com", "-a.com" };
	const char *good[] = { "example.com" };
	struct crypto_key *k = NULL;
	struct crypto_csr *csr = NULL;

	CHECK_INT(crypto_key_generate(CRYPTO_KEY_EC256, &k), 0);
	CHECK_INT(crypto_csr_new(k, bad1, 1, &csr), -EINVAL);
	CHECK_INT(crypto_csr_new(k, bad2, 2, &csr), -EINVAL);
	CHECK_INT(crypto_csr_new(k, good, 0, &csr), -EINVAL);
	CHECK_INT(crypto_csr_new(k, NULL, 1, &csr), -EINVAL);
	CHECK(csr == NULL);
	crypto_key_free(k);
	crypto_csr_free(NULL);

	refused("", 0, "no certificate request found");
	refused("hello", 5, "no certificate request found");
	refused(LIT("-----BEGIN CERTIFICATE REQUEST-----\n%%%%\n-----END CERTIFICATE REQUEST-----\n"),
		"CSR is not valid PEM");
	refused(LIT("-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8gd29ybGQ=\n"
		    "-----END CERTIFICATE REQUEST-----\n"),
		"CSR is not valid: ");
	refused(LIT("\x30\x03\x02\x01\x00"), "CSR is not valid: ");
}

int main(void)
{
	roundtrip(CRYPTO_KEY_EC256);
	roundtrip(CRYPTO_KEY_EC384);
	roundtrip(CRYPTO_KEY_RSA2048);
	roundtrip(CRYPTO_KEY_ED25519);
	test_names();
	test_refusals();
	CHECK_DONE();
}
