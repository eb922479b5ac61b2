/* SPDX-License-Identifier: MIT */
/*
 * DNS names: the validator that decides which names may become directories
 * and certificate requests, RFC 6125 matching of a name against a SAN
 * pattern, and a minimal RFC 3492 Punycode decoder so that "xn--" labels are
 * checked to decode (OpenSSL 3.0 only has one internally).
 *
 * Single-label names such as "localhost" are refused by the strict
 * validator: no public CA issues them. The development validator, for the
 * local and self-signed issuers, also takes single labels ("localhost",
 * "*.localhost", LAN host names) and IPv4/IPv6 addresses (canonical text).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "crypto/crypto_int.h"

/* RFC 3492 section 5 parameters. */
enum {
	PUNY_BASE = 36,
	PUNY_TMIN = 1,
	PUNY_TMAX = 26,
	PUNY_SKEW = 38,
	PUNY_DAMP = 700,
	PUNY_INITIAL_BIAS = 72,
	PUNY_INITIAL_N = 128,
};

static uint32_t puny_adapt(uint32_t delta, uint32_t numpoints, bool first)
{
	uint32_t k = 0;

	delta = first ? delta / PUNY_DAMP : delta / 2;
	delta += delta / numpoints;
	while (delta > ((PUNY_BASE - PUNY_TMIN) * PUNY_TMAX) / 2) {
		delta /= PUNY_BASE - PUNY_TMIN;
		k += PUNY_BASE;
	}
	return k + (PUNY_BASE - PUNY_TMIN + 1) * delta / (delta + PUNY_SKEW);
}

static uint32_t puny_digit(char c)
{
	if (c >= '0' && c <= '9')
		return (uint32_t)(c - '0' + 26);
	if (c >= 'a' && c <= 'z')
		return (uint32_t)(c - 'a');
	if (c >= 'A' && c <= 'Z')
		return (uint32_t)(c - 'A');
	return PUNY_BASE;
}

int crypto_punycode_decode(const char *in, size_t inlen, uint32_t *out, size_t *outlen)
{
	const uint32_t maxint = UINT32_MAX;
	uint32_t n = PUNY_INITIAL_N, i = 0, bias = PUNY_INITIAL_BIAS;
	uint32_t oldi, w, k, t, digit;
	size_t b = 0, j, pos, nout = 0, max = *outlen;

	/* Basic code points are everything before the last delimiter. */
	for (j = 0; j < inlen; j++)
		if (in[j] == '-')
			b = j;
	for (j = 0; j < b; j++) {
		if ((unsigned char)in[j] >= 0x80 || nout >= max)
			return -EINVAL;
		out[nout++] = (unsigned char)in[j];
	}
	for (pos = b > 0 ? b + 1 : 0; pos < inlen;) {
		oldi = i;
		w = 1;
		for (k = PUNY_BASE;; k += PUNY_BASE) {
			if (pos >= inlen)
				return -EINVAL;
			digit = puny_digit(in[pos++]);
			if (digit >= PUNY_BASE || digit > (maxint - i) / w)
				return -EINVAL;
			i += digit * w;
			t = k <= bias ? PUNY_TMIN : k >= bias + PUNY_TMAX ? PUNY_TMAX : k - bias;
			if (digit < t)
				break;
			if (w > maxint / (PUNY_BASE - t))
				return -EINVAL;
			w *= PUNY_BASE - t;
		}
		bias = puny_adapt(i - oldi, (uint32_t)nout + 1, oldi == 0);
		if (i / (nout + 1) > maxint - n)
			return -EINVAL;
		n += i / (uint32_t)(nout + 1);
		i %= (uint32_t)(nout + 1);
		/*
		 * Only Unicode scalar values past ASCII and the C1 controls may be
		 * inserted; anything else is not a host name character.
		 */
		if (n < 0xa0 || n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff) || nout >= max)
			return -EINVAL;
		memmove(out + i + 1, out + i, (nout - i) * sizeof(*out));
		out[i++] = n;
		nout++;
	}
	*outlen = nout;
	return 0;
}

/* An A-label must decode and must hold at least one non-ASCII code point. */
static bool alabel_ok(const char *label, size_t len)
{
	uint32_t cps[64];
	size_t n = 64, i;

	if (crypto_punycode_decode(label + 4, len - 4, cps, &n) || n == 0)
		return false;
	for (i = 0; i < n; i++)
		if (cps[i] >= 0x80)
			return true;
	return false;
}

static bool ldh(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

#define BAD(...) (crypto_err_set(err, __VA_ARGS__), -EINVAL)

/* An IPv4 or IPv6 address in its canonical text into out (RFC 5952). */
static bool ip_canon(const char *in, char *out, size_t outlen)
{
	unsigned char addr[16];
	char text[INET6_ADDRSTRLEN];

	if (inet_pton(AF_INET, in, addr) == 1)
		inet_ntop(AF_INET, addr, text, sizeof(text));
	else if (inet_pton(AF_INET6, in, addr) == 1)
		inet_ntop(AF_INET6, addr, text, sizeof(text));
	else
		return false;
	if (strlen(text) >= outlen)
		return false;
	memcpy(out, text, strlen(text) + 1);
	return true;
}

static int name_validate(const char *in, char *out, size_t outlen, bool dev,
			 struct crypto_err *err)
{
	const char *label, *dot, *p;
	size_t len, ll, nlabels = 0, i;
	bool wildcard = false, numeric = false;

	if (!in || !*in)
		return BAD("domain name is empty");
	len = strlen(in);
	/* Bytes first, so the name can be quoted in every later sentence. */
	for (p = in; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return BAD("domain name contains a control character");
		if ((unsigned char)*p >= 0x80)
			return BAD("domain name contains non-ASCII bytes "
				   "(write international names in their xn-- form)");
	}
	if (len > 253)
		return BAD("domain name is longer than 253 bytes");
	if (strchr(in, '/'))
		return BAD("domain name '%s' contains '/'", in);
	if (in[len - 1] == '.')
		return BAD("domain name '%s' ends with a dot", in);
	for (label = in;; label = dot + 1) {
		dot = strchr(label, '.');
		ll = dot ? (size_t)(dot - label) : strlen(label);
		if (ll == 0)
			return BAD("domain name '%s' has an empty label", in);
		if (ll == 1 && label[0] == '*') {
			if (label != in)
				return BAD("domain name '%s' has a wildcard outside the "
						"first label", in);
			wildcard = true;
		} else {
			if (ll > 63)
				return BAD("domain name '%s' has a label longer than 63 bytes",
					   in);
			for (i = 0; i < ll; i++) {
				if (!ldh(label[i])) {
					crypto_err_set(err, "domain name '%s' has a character '%c' "
							    "not allowed in a host name",
						       in, label[i]);
					return -EINVAL;
				}
			}
			if (label[0] == '-' || label[ll - 1] == '-')
				return BAD("domain name '%s' has a label that starts or ends "
						"with '-'", in);
			if (ll >= 4 && strncasecmp(label, "xn--", 4) == 0 && !alabel_ok(label, ll))
				return BAD("domain name '%s' has an xn-- label that is not "
						"valid punycode", in);
			nlabels++;
			numeric = strspn(label, "0123456789") >= ll;
		}
		if (!dot)
			break;
	}
	if (nlabels < 2 && !(dev && nlabels == 1))
		return BAD(wildcard ? "wildcard '%s' needs at least two labels after '*.'"
					 : "domain name '%s' needs at least two labels",
			   in);
	/* An all-digit top label is an IPv4 address, which DNS-01/HTTP-01 names are not. */
	if (numeric)
		return BAD("domain name '%s' is an IP address, not a DNS name", in);
	if (outlen < len + 1) {
		crypto_err_set(err, "domain name '%s' does not fit the output", in);
		return -ENOSPC;
	}
	for (i = 0; i <= len; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] - 'A' + 'a') : in[i];
	return 0;
}

int crypto_name_validate(const char *in, char *out, size_t outlen, struct crypto_err *err)
{
	return name_validate(in, out, outlen, false, err);
}

int crypto_name_validate_dev(const char *in, char *out, size_t outlen, struct crypto_err *err)
{
	if (in && ip_canon(in, out, outlen))
		return 0;
	return name_validate(in, out, outlen, true, err);
}

bool crypto_name_is_ip(const char *name)
{
	unsigned char addr[16];

	return name && (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1);
}

bool crypto_name_matches(const char *pattern, const char *name)
{
	const char *dot;

	if (!pattern || !name || !*pattern || !*name)
		return false;
	if (strcasecmp(pattern, name) == 0)
		return true;
	/*
	 * RFC 6125 6.4.3: only a whole left-most "*" label, matching exactly
	 * one non-empty label; never the bare parent, never two labels, and
	 * never a pattern whose remainder is a single label ("*.com").
	 */
	if (strncmp(pattern, "*.", 2) != 0 || !strchr(pattern + 2, '.'))
		return false;
	dot = strchr(name, '.');
	if (!dot || dot == name)
		return false;
	return strcasecmp(dot + 1, pattern + 2) == 0;
}
