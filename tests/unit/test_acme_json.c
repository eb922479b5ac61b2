/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the acme/ parsers: problem documents (RFC 8555 6.7),
 * Retry-After in both forms with absurd values, Link headers, the directory,
 * orders and authorizations, renewal information, and the http-01
 * responder. Most cases are hostile: wrong types, missing members, huge
 * arrays, garbage; none may crash or be accepted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acme/acme_int.h"
#include "check.h"

#define S(x) x, strlen(x)

static void test_problem(void)
{
	struct acme_problem p;
	char s[1400];

	acme_problem_parse(S("{\"type\":\"urn:ietf:params:acme:error:unauthorized\","
			     "\"detail\":\"Invalid response from http://x/.well-known/acme-challenge/t: 404\","
			     "\"status\":403}"), 403, &p);
	CHECK_STR(p.type, "urn:ietf:params:acme:error:unauthorized");
	CHECK_INT(p.status, 403);
	CHECK(acme_problem_is(&p, "unauthorized"));
	CHECK(!acme_problem_is(&p, "badNonce"));
	CHECK_STR(acme_problem_sentence(&p, s, sizeof(s)),
		  "acme: urn:ietf:params:acme:error:unauthorized: Invalid response from "
		  "http://x/.well-known/acme-challenge/t: 404");

	/* Subproblems (6.7.1) are folded into detail. */
	acme_problem_parse(S("{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
			     "\"detail\":\"some names\",\"subproblems\":["
			     "{\"type\":\"urn:ietf:params:acme:error:caa\",\"detail\":\"CAA forbids\","
			     "\"identifier\":{\"type\":\"dns\",\"value\":\"a.example\"}},"
			     "42, {\"detail\":7}, \"x\"]}"), 400, &p);
	CHECK_CONTAINS(p.detail, "some names; a.example: caa: CAA forbids");

	/* Not JSON, not an object, wrong member types, empty. */
	acme_problem_parse(S("<html>bad gateway</html>"), 502, &p);
	CHECK_STR(p.type, "");
	CHECK_CONTAINS(p.detail, "502");
	acme_problem_parse(S("[1,2]"), 500, &p);
	CHECK_CONTAINS(p.detail, "500");
	acme_problem_parse(S("{\"type\":5,\"detail\":[]}"), 400, &p);
	CHECK_STR(p.type, "");
	CHECK_CONTAINS(p.detail, "400");
	acme_problem_parse(NULL, 0, 503, &p);
	CHECK_CONTAINS(acme_problem_sentence(&p, s, sizeof(s)), "503");
	acme_problem_parse(S("{\"subproblems\":{\"a\":1}}"), 400, &p);
	CHECK_CONTAINS(p.detail, "400");
	/* Control characters from the server never reach a log line raw. */
	acme_problem_parse(S("{\"type\":\"t\",\"detail\":\"a\\nb\\u0000c\"}"), 400, &p);
	CHECK(!strchr(p.detail, '\n'));
	/* Very long detail is truncated, not overflowed. */
	{
		char big[5000];

		memcpy(big, "{\"detail\":\"", 11);
		memset(big + 11, 'x', 4000);
		memcpy(big + 4011, "\"}", 3);
		acme_problem_parse(big, strlen(big), 400, &p);
		CHECK(strlen(p.detail) == sizeof(p.detail) - 1);
		CHECK_CONTAINS(p.detail, "...");
	}
	/* Many subproblems: bounded. */
	{
		char big[20000];
		size_t n = 0;

		n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"type\":\"t\",\"subproblems\":[");
		for (int i = 0; i < 500; i++)
			n += (size_t)snprintf(big + n, sizeof(big) - n, "%s{\"detail\":\"d%d\"}",
					      i ? "," : "", i);
		snprintf(big + n, sizeof(big) - n, "]}");
		acme_problem_parse(big, strlen(big), 400, &p);
		CHECK_CONTAINS(p.detail, "...");
		CHECK(!strstr(p.detail, "d11"));
	}
	acme_problem_clear(&p);
	CHECK_STR(acme_problem_sentence(&p, s, sizeof(s)), "acme: unknown error");
	CHECK_STR(acme_problem_sentence(NULL, s, sizeof(s)), "acme: unknown error");
}

static void test_retry_after(void)
{
	time_t now = 1700000000, t = 0;

	CHECK_INT(acme_retry_after_parse("120", now, &t), 0);
	CHECK_INT(t, now + 120);
	CHECK_INT(acme_retry_after_parse("  0 ", now, &t), 0);
	CHECK_INT(t, now);
	/* Negative: small default, not "now" (no hot loop) and not an error. */
	CHECK_INT(acme_retry_after_parse("-5", now, &t), 0);
	CHECK_INT(t, now + ACME_RETRY_AFTER_MIN_S);
	/* Huge, and overflowing: clamped to a day. */
	CHECK_INT(acme_retry_after_parse("9999999999", now, &t), 0);
	CHECK_INT(t, now + ACME_RETRY_AFTER_MAX_S);
	CHECK_INT(acme_retry_after_parse("99999999999999999999999999", now, &t), 0);
	CHECK_INT(t, now + ACME_RETRY_AFTER_MAX_S);
	CHECK_INT(acme_retry_after_parse("-99999999999999999999999999", now, &t), 0);
	CHECK_INT(t, now + ACME_RETRY_AFTER_MIN_S);
	/* HTTP-date (IMF-fixdate): 1700000000 = Tue, 14 Nov 2023 22:13:20 GMT. */
	CHECK_INT(acme_retry_after_parse("Tue, 14 Nov 2023 22:15:20 GMT", now, &t), 0);
	CHECK_INT(t, now + 120);
	/* A date in the past: small default. */
	CHECK_INT(acme_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", now, &t), 0);
	CHECK_INT(t, now + ACME_RETRY_AFTER_MIN_S);
	/* Years ahead: clamped. */
	CHECK_INT(acme_retry_after_parse("Fri, 01 Jan 2100 00:00:00 GMT", now, &t), 0);
	CHECK_INT(t, now + ACME_RETRY_AFTER_MAX_S);
	/* Garbage. */
	t = 42;
	CHECK_INT(acme_retry_after_parse("", now, &t), -EINVAL);
	CHECK_INT(acme_retry_after_parse("   ", now, &t), -EINVAL);
	CHECK_INT(acme_retry_after_parse("12abc", now, &t), -EINVAL);
	CHECK_INT(acme_retry_after_parse("1.5", now, &t), -EINVAL);
	CHECK_INT(acme_retry_after_parse("soon", now, &t), -EINVAL);
	CHECK_INT(acme_retry_after_parse("--1", now, &t), -EINVAL);
	CHECK_INT(acme_retry_after_parse("0x10", now, &t), -EINVAL);
	CHECK_INT(acme_retry_after_parse(NULL, now, &t), -EINVAL);
	CHECK_INT(t, 42);
}

static void test_link(void)
{
	char *u[8];
	size_t n = 0;

	CHECK_INT(acme_link_parse("<https://ca/cert/1/1>;rel=\"alternate\", "
				  "<https://ca/dir>;rel=\"index\", <https://ca/cert/1/2>; rel=alternate",
				  "alternate", u, 8, &n), 0);
	CHECK_INT(n, 2);
	if (n == 2) {
		CHECK_STR(u[0], "https://ca/cert/1/1");
		CHECK_STR(u[1], "https://ca/cert/1/2");
	}
	acme_strv_free(NULL, 0);
	for (size_t i = 0; i < n; i++)
		free(u[i]);
	/* rel with several values, case-insensitive; quoted commas; other params. */
	n = 0;
	CHECK_INT(acme_link_parse("<https://a/x>; title=\"a, b; c\"; rel=\"up ALTERNATE\"",
				  "alternate", u, 8, &n), 0);
	CHECK_INT(n, 1);
	if (n)
		CHECK_STR(u[0], "https://a/x");
	for (size_t i = 0; i < n; i++)
		free(u[i]);
	/* The limit holds. */
	n = 0;
	CHECK_INT(acme_link_parse("<a>;rel=alternate,<b>;rel=alternate,<c>;rel=alternate",
				  "alternate", u, 2, &n), 0);
	CHECK_INT(n, 2);
	for (size_t i = 0; i < n; i++)
		free(u[i]);
	/* Malformed. */
	n = 0;
	CHECK_INT(acme_link_parse("https://a/x; rel=alternate", "alternate", u, 8, &n), -EINVAL);
	CHECK_INT(acme_link_parse("<https://a/x; rel=alternate", "alternate", u, 8, &n), -EINVAL);
	CHECK_INT(acme_link_parse("<https://a/x>; rel=\"alternate", "alternate", u, 8, &n), -EINVAL);
	CHECK_INT(acme_link_parse("<https://a/x> garbage", "alternate", u, 8, &n), -EINVAL);
	CHECK_INT(n, 0);
	CHECK_INT(acme_link_parse("", "alternate", u, 8, &n), 0);
	CHECK_INT(acme_link_parse("<https://a/x>;rel", "alternate", u, 8, &n), 0);
	CHECK_INT(acme_link_parse("<>;rel=alternate", "alternate", u, 8, &n), 0);
	CHECK_INT(n, 0);
}

static const char *dir_ok =
	"{\"newNonce\":\"https://ca/nonce\",\"newAccount\":\"https://ca/acct\","
	"\"newOrder\":\"https://ca/order\",\"revokeCert\":\"https://ca/revoke\","
	"\"renewalInfo\":\"https://ca/ari\",\"meta\":{\"termsOfService\":\"https://ca/tos\","
	"\"externalAccountRequired\":true,\"profiles\":{\"classic\":\"x\",\"short\":\"y\"}}}";

static void test_directory(void)
{
	struct acme_directory d;
	char detail[256];
	static const char *bad[] = {
		"",
		"null",
		"[]",
		"\"https://ca\"",
		"{}",
		"{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\"}",
		"{\"newNonce\":1,\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
		"{\"newNonce\":\"ftp://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
		"{\"newNonce\":\"\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
		"{\"newNonce\":\"https://ca/n\",\"newAccount\":[],\"newOrder\":\"https://ca/o\"}",
		"{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\","
		"\"renewalInfo\":{}}",
		"{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\","
		"\"meta\":[]}",
		"{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\","
		"\"meta\":{\"externalAccountRequired\":\"yes\"}}",
		"{\"newNonce\":\"https://ca/n\",\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\","
		"\"newOrder\":\"https://ca/o\"}",
		"{\"newNonce\":\"https://ca/n\\u0000x\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
		"{\"newNonce\":\"https://ca/n\",",
	};

	CHECK_INT(acme_directory_parse(S(dir_ok), &d, detail, sizeof(detail)), 0);
	CHECK_STR(d.new_nonce, "https://ca/nonce");
	CHECK_STR(d.new_account, "https://ca/acct");
	CHECK_STR(d.new_order, "https://ca/order");
	CHECK_STR(d.revoke_cert, "https://ca/revoke");
	CHECK_STR(d.renewal_info, "https://ca/ari");
	CHECK(d.key_change == NULL);
	CHECK(d.eab_required);
	CHECK(d.has_profiles);
	CHECK_INT(d.nprofiles, 2);
	acme_directory_clear(&d);

	/* Minimal: only the three required members; unknown members ignored. */
	CHECK_INT(acme_directory_parse(S("{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\","
					 "\"newOrder\":\"https://ca/o\",\"x\":[1,{}],\"meta\":{\"profiles\":5}}"),
				       &d, detail, sizeof(detail)), 0);
	CHECK(!d.renewal_info && !d.revoke_cert && !d.eab_required && !d.has_profiles);
	acme_directory_clear(&d);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		detail[0] = '\0';
		if (acme_directory_parse(S(bad[i]), &d, detail, sizeof(detail)) != -EINVAL) {
			fprintf(stderr, "directory case %zu accepted\n", i);
			check_failures++;
			acme_directory_clear(&d);
		}
		CHECK(detail[0] != '\0');
		CHECK(d.new_nonce == NULL);
	}
	CHECK_INT(acme_directory_parse(NULL, 0, &d, NULL, 0), -EINVAL);
}

static const char *order_ok =
	"{\"status\":\"pending\",\"expires\":\"2030-01-01T00:00:00Z\","
	"\"identifiers\":[{\"type\":\"dns\",\"value\":\"a.example\"},{\"type\":\"dns\",\"value\":\"*.a.example\"}],"
	"\"authorizations\":[\"https://ca/authz/1\",\"https://ca/authz/2\"],"
	"\"finalize\":\"https://ca/finalize/1\"}";

static void test_order(void)
{
	struct acme_order o;
	char detail[256];
	static const char *bad[] = {
		"{}",
		"{\"status\":\"weird\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\"}],"
		"\"authorizations\":[],\"finalize\":\"https://ca/f\"}",
		"{\"status\":7,\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\"}],"
		"\"authorizations\":[],\"finalize\":\"https://ca/f\"}",
		"{\"status\":\"pending\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\"}],"
		"\"authorizations\":{},\"finalize\":\"https://ca/f\"}",
		"{\"status\":\"pending\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\"}],"
		"\"authorizations\":[1],\"finalize\":\"https://ca/f\"}",
		"{\"status\":\"pending\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\"}],"
		"\"authorizations\":[\"file:///etc/passwd\"],\"finalize\":\"https://ca/f\"}",
		"{\"status\":\"pending\",\"identifiers\":[],"
		"\"authorizations\":[],\"finalize\":\"https://ca/f\"}",
		"{\"status\":\"pending\",\"identifiers\":[{\"type\":\"ip\",\"value\":\"1.2.3.4\"}],"
		"\"authorizations\":[],\"finalize\":\"https://ca/f\"}",
		"{\"status\":\"pending\",\"identifiers\":[\"a\"],"
		"\"authorizations\":[],\"finalize\":\"https://ca/f\"}",
		"{\"status\":\"pending\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\"}],"
		"\"authorizations\":[]}",
		"{\"status\":\"pending\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\"}],"
		"\"authorizations\":[],\"finalize\":true}",
		"{\"status\":\"valid\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\"}],"
		"\"authorizations\":[],\"finalize\":\"https://ca/f\"}",
		"{\"status\":\"valid\",\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\"}],"
		"\"authorizations\":[],\"finalize\":\"https://ca/f\",\"certificate\":{}}",
	};

	CHECK_INT(acme_order_parse(S(order_ok), &o, detail, sizeof(detail)), 0);
	CHECK_INT(o.status, ACME_STATUS_PENDING);
	CHECK_INT(o.nauthzs, 2);
	CHECK_INT(o.nidentifiers, 2);
	CHECK_STR(o.identifiers[1], "*.a.example");
	CHECK_STR(o.finalize, "https://ca/finalize/1");
	CHECK(o.certificate == NULL);
	CHECK(!o.has_error);
	acme_order_clear(&o);

	CHECK_INT(acme_order_parse(S("{\"status\":\"invalid\",\"identifiers\":[{\"type\":\"dns\","
				     "\"value\":\"a\"}],\"authorizations\":[],\"finalize\":\"https://ca/f\","
				     "\"error\":{\"type\":\"urn:ietf:params:acme:error:badCSR\","
				     "\"detail\":\"bad\"}}"), &o, detail, sizeof(detail)), 0);
	CHECK(o.has_error);
	CHECK(acme_problem_is(&o.error, "badCSR"));
	acme_order_clear(&o);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (acme_order_parse(S(bad[i]), &o, detail, sizeof(detail)) != -EINVAL) {
			fprintf(stderr, "order case %zu accepted\n", i);
			check_failures++;
			acme_order_clear(&o);
		}
	}
	/* A huge authorizations array is refused, not allocated. */
	{
		size_t cap = 200000, n = 0;
		char *big = malloc(cap);

		CHECK(big != NULL);
		if (big) {
			n += (size_t)snprintf(big, cap, "{\"status\":\"pending\",\"identifiers\":"
				"[{\"type\":\"dns\",\"value\":\"a\"}],\"finalize\":\"https://ca/f\","
				"\"authorizations\":[");
			for (int i = 0; i < 5000; i++)
				n += (size_t)snprintf(big + n, cap - n, "%s\"https://ca/a/%d\"",
						      i ? "," : "", i);
			snprintf(big + n, cap - n, "]}");
			CHECK_INT(acme_order_parse(big, strlen(big), &o, detail, sizeof(detail)),
				  -EINVAL);
			free(big);
		}
	}
	/* Deep nesting is refused by the parser, not a stack overflow. */
	{
		char deep[40000];

		memset(deep, '[', sizeof(deep) - 1);
		deep[sizeof(deep) - 1] = '\0';
		CHECK_INT(acme_order_parse(deep, strlen(deep), &o, detail, sizeof(detail)), -EINVAL);
	}
}

static const char *authz_ok =
	"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.example\"},"
	"\"wildcard\":true,\"challenges\":["
	"{\"type\":\"http-01\",\"url\":\"https://ca/c/1\",\"token\":\"tok_-1\",\"status\":\"pending\"},"
	"{\"type\":\"dns-01\",\"url\":\"https://ca/c/2\",\"token\":\"tok2\",\"status\":\"invalid\","
	"\"error\":{\"type\":\"urn:ietf:params:acme:error:dns\",\"detail\":\"NXDOMAIN\"}},"
	"{\"type\":\"future-01\",\"url\":\"https://ca/c/3\"}]}";

static void test_authz(void)
{
	struct acme_authz a;
	char detail[256];
	static const char *bad[] = {
		"{}",
		"{\"status\":\"pending\",\"challenges\":[]}",
		"{\"status\":\"pending\",\"identifier\":\"a\",\"challenges\":[]}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":5},\"challenges\":[]}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},"
		"\"wildcard\":\"yes\",\"challenges\":[]}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"}}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":[1]}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},"
		"\"challenges\":[{\"type\":\"http-01\"}]}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},"
		"\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca/c\",\"token\":\"../../etc\"}]}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},"
		"\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca/c\",\"token\":\"a b\"}]}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},"
		"\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca/c\",\"token\":[]}]}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},"
		"\"challenges\":[{\"type\":[],\"url\":\"https://ca/c\",\"token\":\"t\"}]}",
	};

	CHECK_INT(acme_authz_parse(S(authz_ok), &a, detail, sizeof(detail)), 0);
	CHECK_INT(a.status, ACME_STATUS_PENDING);
	CHECK_STR(a.identifier, "a.example");
	CHECK(a.wildcard);
	CHECK_INT(a.nchallenges, 3);
	if (a.nchallenges == 3) {
		CHECK_STR(a.challenges[0].token, "tok_-1");
		CHECK(a.challenges[1].has_error);
		CHECK_STR(a.challenges[1].error.detail, "NXDOMAIN");
		CHECK(a.challenges[2].token == NULL);
	}
	acme_authz_clear(&a);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (acme_authz_parse(S(bad[i]), &a, detail, sizeof(detail)) != -EINVAL) {
			fprintf(stderr, "authz case %zu accepted\n", i);
			check_failures++;
			acme_authz_clear(&a);
		}
		CHECK(a.challenges == NULL && a.identifier == NULL);
	}
	/* Too many challenges. */
	{
		char big[8192];
		size_t n = 0;

		n += (size_t)snprintf(big, sizeof(big), "{\"status\":\"pending\",\"identifier\":"
				      "{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":[");
		for (int i = 0; i < 40; i++)
			n += (size_t)snprintf(big + n, sizeof(big) - n,
					      "%s{\"type\":\"x\",\"url\":\"https://c/%d\"}", i ? "," : "", i);
		snprintf(big + n, sizeof(big) - n, "]}");
		CHECK_INT(acme_authz_parse(big, strlen(big), &a, detail, sizeof(detail)), -EINVAL);
	}
}

static void test_misc(void)
{
	struct acme_renewal_info ri;
	enum acme_status st;
	char detail[256], cn[64];
	char *u = NULL;

	CHECK(acme_token_ok("abc-_09XYZ"));
	CHECK(!acme_token_ok(""));
	CHECK(!acme_token_ok("a/b"));
	CHECK(!acme_token_ok("a.b"));
	CHECK(!acme_token_ok(NULL));

	CHECK_INT(acme_renewal_info_parse(S("{\"suggestedWindow\":{\"start\":\"2025-01-02T00:00:00Z\","
					    "\"end\":\"2025-01-03T00:00:00.5Z\"},"
					    "\"explanationURL\":\"https://ca/why\"}"),
					  &ri, detail, sizeof(detail)), 0);
	CHECK_INT(ri.window_start, 1735776000);
	CHECK_INT(ri.window_end, 1735862400);
	CHECK_STR(ri.explanation_url, "https://ca/why");
	CHECK_INT(acme_renewal_info_parse(S("{\"suggestedWindow\":{\"start\":\"2025-01-03T00:00:00Z\","
					    "\"end\":\"2025-01-02T00:00:00Z\"}}"),
					  &ri, detail, sizeof(detail)), -EINVAL);
	CHECK_INT(acme_renewal_info_parse(S("{\"suggestedWindow\":{\"start\":\"tomorrow\","
					    "\"end\":\"2025-01-02T00:00:00Z\"}}"),
					  &ri, detail, sizeof(detail)), -EINVAL);
	CHECK_INT(acme_renewal_info_parse(S("{\"suggestedWindow\":[]}"), &ri, detail,
					  sizeof(detail)), -EINVAL);
	CHECK_INT(acme_renewal_info_parse(S("{\"suggestedWindow\":{\"start\":1,\"end\":2}}"), &ri,
					  detail, sizeof(detail)), -EINVAL);

	CHECK_INT(acme_account_parse_status(S("{\"status\":\"valid\"}"), &st), 0);
	CHECK_INT(st, ACME_STATUS_VALID);
	CHECK_INT(acme_account_parse_status(S("{\"status\":true}"), &st), -EINVAL);

	acme_dn_cn("CN=Pebble Root CA 1a2b, O=Pebble", cn, sizeof(cn));
	CHECK_STR(cn, "Pebble Root CA 1a2b");
	acme_dn_cn("O=x\\, CN=fake, CN=real", cn, sizeof(cn));
	CHECK_STR(cn, "real");
	acme_dn_cn("O=x", cn, sizeof(cn));
	CHECK_STR(cn, "");
	acme_dn_cn(NULL, cn, sizeof(cn));
	CHECK_STR(cn, "");

	CHECK_INT(acme_url_resolve("https://ca/acme/new-order", "/my-order/1", &u), 0);
	CHECK_STR(u, "https://ca/my-order/1");
	free(u);
	CHECK_INT(acme_url_resolve("https://ca/x", "http://other/y", &u), -EINVAL);
	CHECK_INT(acme_url_resolve("https://ca/x", "file:///etc/passwd", &u), -EINVAL);
	CHECK_STR(acme_status_name(ACME_STATUS_READY), "ready");
	CHECK_INT(acme_status_parse("processing"), ACME_STATUS_PROCESSING);
	CHECK_INT(acme_status_parse("Processing"), ACME_STATUS_UNKNOWN);
}

/* One request to the responder; returns the response's first line. */
static void http01_get(unsigned int port, const char *req, char *out, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ssize_t n, total = 0;

	out[0] = '\0';
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (write(fd, req, strlen(req)) < 0) {
		close(fd);
		return;
	}
	while ((n = read(fd, out + total, len - 1 - (size_t)total)) > 0)
		total += n;
	out[total] = '\0';
	close(fd);
}

static void test_http01(void)
{
	struct acme_http01 *s = NULL;
	char resp[2048], big[4000];

	CHECK_INT(acme_http01_start("nonsense", &s), -EINVAL);
	CHECK_INT(acme_http01_start("127.0.0.1:99999", &s), -EINVAL);
	CHECK_INT(acme_http01_start("127.0.0.1:0", &s), 0);
	if (!s)
		return;
	CHECK(acme_http01_port(s) > 0);
	CHECK_INT(acme_http01_publish(s, "tok1", "tok1.thumb"), 0);
	CHECK_INT(acme_http01_publish(s, "../x", "v"), -EINVAL);
	http01_get(acme_http01_port(s), "GET /.well-known/acme-challenge/tok1 HTTP/1.1\r\n"
		   "Host: a\r\n\r\n", resp, sizeof(resp));
	CHECK_CONTAINS(resp, "200 OK");
	CHECK_CONTAINS(resp, "\r\n\r\ntok1.thumb");
	http01_get(acme_http01_port(s), "GET /.well-known/acme-challenge/nope HTTP/1.0\r\n\r\n",
		   resp, sizeof(resp));
	CHECK_CONTAINS(resp, "404");
	http01_get(acme_http01_port(s), "POST /.well-known/acme-challenge/tok1 HTTP/1.0\r\n\r\n",
		   resp, sizeof(resp));
	CHECK_CONTAINS(resp, "404");
	http01_get(acme_http01_port(s), "GET /etc/passwd HTTP/1.0\r\n\r\n", resp, sizeof(resp));
	CHECK_CONTAINS(resp, "404");
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	http01_get(acme_http01_port(s), big, resp, sizeof(resp));
	CHECK(strstr(resp, "200") == NULL);
	acme_http01_unpublish(s, "tok1");
	http01_get(acme_http01_port(s), "GET /.well-known/acme-challenge/tok1 HTTP/1.0\r\n\r\n",
		   resp, sizeof(resp));
	CHECK_CONTAINS(resp, "404");
	acme_http01_stop(s);
	acme_http01_stop(NULL);
}

int main(void)
{
	test_problem();
	test_retry_after();
	test_link();
	test_directory();
	test_order();
	test_authz();
	test_misc();
	test_http01();
	CHECK_DONE();
}
