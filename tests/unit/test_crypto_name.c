/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for DNS names: the validator (every refusal with its own bad
 * input), RFC 6125 wildcard matching, and the RFC 3492 Punycode decoder
 * against the RFC's own sample strings.
 */
#include <errno.h>
#include <string.h>

#include "crypto/crypto_int.h"
#include "tests/unit/check.h"

static void ok(const char *in, const char *want)
{
	char out[256];
	struct crypto_err e;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_name_validate(in, out, sizeof(out), &e), 0);
	if (!e.msg[0])
		CHECK_STR(out, want);
	else
		fprintf(stderr, "unexpected refusal of '%s': %s\n", in, e.msg);
}

static void refused(const char *in, const char *msg)
{
	char out[256] = "untouched";
	struct crypto_err e;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_name_validate(in, out, sizeof(out), &e), -EINVAL);
	CHECK_CONTAINS(e.msg, msg);
	CHECK_STR(out, "untouched");
}

static void test_validate(void)
{
	char label63[64], label64[65], long254[300], long253[300], small[8];
	struct crypto_err e;
	size_t i;

	ok("example.com", "example.com");
	ok("WWW.Example.COM", "www.example.com");
	ok("*.example.com", "*.example.com");
	ok("a-b.c0.example", "a-b.c0.example");
	ok("xn--bcher-kva.example", "xn--bcher-kva.example");
	ok("XN--BCHER-KVA.example", "xn--bcher-kva.example");
	ok("123.example.com", "123.example.com");

	refused("", "domain name is empty");
	refused(NULL, "domain name is empty");
	refused("a..b", "domain name 'a..b' has an empty label");
	refused(".com", "domain name '.com' has an empty label");
	refused("example.com.", "domain name 'example.com.' ends with a dot");
	refused("-a.com", "domain name '-a.com' has a label that starts or ends with '-'");
	refused("a-.com", "has a label that starts or ends with '-'");
	refused("a/b.com", "domain name 'a/b.com' contains '/'");
	refused("../etc.com", "contains '/'");
	refused("a\nb.com", "domain name contains a control character");
	refused("a\tb.com", "domain name contains a control character");
	refused("a\x7f.com", "domain name contains a control character");
	refused("b\xc3\xbc" "cher.example", "domain name contains non-ASCII bytes");
	refused("*.*.a.com", "domain name '*.*.a.com' has a wildcard outside the first label");
	refused("a.*.com", "domain name 'a.*.com' has a wildcard outside the first label");
	refused("f*.a.com", "has a character '*' not allowed");
	refused("a_b.example.com", "has a character '_' not allowed");
	refused("a b.example.com", "has a character ' ' not allowed");
	refused("a:80.example.com", "has a character ':' not allowed");
	refused("*.com", "wildcard '*.com' needs at least two labels after '*.'");
	refused("*", "needs at least two labels");
	/* Single-label names are refused by design (see name.c). */
	refused("localhost", "domain name 'localhost' needs at least two labels");
	refused("1.2.3.4", "is an IP address, not a DNS name");
	/* xn-- labels must be valid punycode of something non-ASCII */
	refused("xn--abc-9.example", "has an xn-- label that is not valid punycode");
	refused("xn--abc-d.example", "has an xn-- label that is not valid punycode");
	refused("xn--99999999999.example", "has an xn-- label that is not valid punycode");
	refused("xn--a.example", "has an xn-- label that is not valid punycode");

	memset(label63, 'a', 63);
	label63[63] = '\0';
	memset(label64, 'a', 64);
	label64[64] = '\0';
	snprintf(long253, sizeof(long253), "%s.com", label63);
	ok(long253, long253);
	snprintf(long253, sizeof(long253), "%s.com", label64);
	refused(long253, "has a label longer than 63 bytes");
	/* 253 bytes exactly is allowed, 254 is not */
	long254[0] = '\0';
	for (i = 0; i < 4; i++) {
		strcat(long254, label63 + 2); /* 61 */
		strcat(long254, ".");
	}
	strcat(long254, "abcdefg"); /* 4 * 62 + 7 = 255 */
	long254[253] = '\0';
	CHECK_INT(strlen(long254), 253);
	ok(long254, long254);
	long254[253] = 'x';
	long254[254] = '\0';
	refused(long254, "domain name is longer than 253 bytes");

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_name_validate("example.com", small, sizeof(small), &e), -ENOSPC);
	CHECK_INT(crypto_name_validate("example.com", small, sizeof(small), NULL), -ENOSPC);
}

static void dev(const char *in, const char *want)
{
	char out[256] = "";
	struct crypto_err e;

	memset(&e, 0, sizeof(e));
	CHECK_INT(crypto_name_validate_dev(in, out, sizeof(out), &e), want ? 0 : -EINVAL);
	if (want)
		CHECK_STR(out, want);
}

/* Development names: what the local and self-signed issuers also take. */
static void test_validate_dev(void)
{
	dev("localhost", "localhost");
	dev("LocalHost", "localhost");
	dev("*.localhost", "*.localhost");
	dev("intranet", "intranet");
	dev("127.0.0.1", "127.0.0.1");
	dev("::1", "::1");
	dev("0:0:0:0:0:0:0:1", "::1");
	dev("FD00::A", "fd00::a");
	dev("example.com", "example.com");
	/* Still refused: what no issuer can serve. */
	dev("*", NULL);
	dev("a..b", NULL);
	dev("ex_ample", NULL);
	dev("1.2.3", NULL);
	dev("::1::2", NULL);
	dev("[::1]", NULL);
	CHECK(crypto_name_is_ip("::1") && crypto_name_is_ip("10.0.0.1"));
	CHECK(!crypto_name_is_ip("localhost") && !crypto_name_is_ip("1.2.3"));
}

static void test_matches(void)
{
	CHECK(crypto_name_matches("example.com", "example.com"));
	CHECK(crypto_name_matches("Example.COM", "example.com"));
	CHECK(crypto_name_matches("*.example.com", "www.example.com"));
	CHECK(crypto_name_matches("*.EXAMPLE.com", "WWW.example.COM"));
	CHECK(!crypto_name_matches("*.example.com", "example.com"));
	CHECK(!crypto_name_matches("*.example.com", "a.b.example.com"));
	CHECK(!crypto_name_matches("*.example.com", ".example.com"));
	CHECK(!crypto_name_matches("*.com", "example.com"));
	CHECK(!crypto_name_matches("w*.example.com", "www.example.com"));
	CHECK(!crypto_name_matches("www.example.com", "example.com"));
	CHECK(!crypto_name_matches("example.com", "www.example.com"));
	CHECK(!crypto_name_matches("example.com", "example.co"));
	CHECK(!crypto_name_matches("", ""));
	CHECK(!crypto_name_matches(NULL, "a.com"));
	CHECK(!crypto_name_matches("a.com", NULL));
}

static void puny(const char *in, const uint32_t *want, size_t nwant)
{
	uint32_t out[64];
	size_t n = 64, i;

	CHECK_INT(crypto_punycode_decode(in, strlen(in), out, &n), 0);
	CHECK_INT(n, nwant);
	for (i = 0; i < n && i < nwant; i++)
		CHECK_INT(out[i], want[i]);
}

static void test_punycode(void)
{
	/* bücher */
	static const uint32_t bucher[] = { 'b', 0xfc, 'c', 'h', 'e', 'r' };
	/* RFC 3492 7.1 (D) Chinese (simplified) */
	static const uint32_t chinese[] = { 0x4ed6, 0x4eec, 0x4e3a, 0x4ec0, 0x4e48,
					    0x4e0d, 0x8bf4, 0x4e2d, 0x6587 };
	/* RFC 3492 7.1 (B) Chinese (traditional) */
	static const uint32_t trad[] = { 0x4ed6, 0x5011, 0x7232, 0x4ec0, 0x9ebd,
					 0x4e0d, 0x8aaa, 0x4e2d, 0x6587 };
	/* RFC 3492 7.1 (L) "3<nen>B<gumi><kinpachi><sensei>" */
	static const uint32_t mixed[] = { '3', 0x5e74, 'B', 0x7d44, 0x91d1, 0x516b,
					  0x5148, 0x751f };
	uint32_t out[4];
	size_t n;

	puny("bcher-kva", bucher, 6);
	puny("ihqwcrb4cv8a8dqg056pqjye", chinese, 9);
	puny("ihqwctvzc91f659drss3x8bo0yb", trad, 9);
	puny("3B-ww4c5e180e575a65lsy2b", mixed, 8);
	/* bad digit, truncated delta, overflow, output too small */
	n = 4;
	CHECK_INT(crypto_punycode_decode("ab!c", 4, out, &n), -EINVAL);
	n = 4;
	CHECK_INT(crypto_punycode_decode("bcher-kv", 8, out, &n), -EINVAL);
	n = 4;
	CHECK_INT(crypto_punycode_decode("zzzzzzzzzzzz", 12, out, &n), -EINVAL);
	n = 4;
	CHECK_INT(crypto_punycode_decode("bcher-kva", 9, out, &n), -EINVAL);
	/* non-ASCII before the delimiter */
	n = 4;
	CHECK_INT(crypto_punycode_decode("\xc3-a", 3, out, &n), -EINVAL);
}

int main(void)
{
	test_validate();
	test_validate_dev();
	test_matches();
	test_punycode();
	CHECK_DONE();
}
