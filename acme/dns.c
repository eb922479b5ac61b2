/* SPDX-License-Identifier: MIT */
/*
 * CNAME delegation for dns-01 (RFC 8555 8.4 allows the TXT record to sit
 * behind a CNAME, the acme-dns pattern): `_acme-challenge.example.com CNAME
 * _acme-challenge.auth.example.net` lets the dns hook write one delegated
 * zone instead of every customer zone. The lookup goes through libresolv
 * with a private resolver state (thread-safe), at the system's resolvers or
 * at one given address.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acme/acme_int.h"

#define DNS_MAX_HOPS 8

/* The CNAME target of name into out; -ENOENT when it has none. */
static int cname_of(res_state st, const char *name, char *out, size_t len)
{
	unsigned char ans[4096];
	char target[NS_MAXDNAME];
	ns_msg msg;
	ns_rr rr;
	int n;

	n = res_nquery(st, name, ns_c_in, ns_t_cname, ans, sizeof(ans));
	if (n < 0)
		return -ENOENT; /* NXDOMAIN, no data or no answer: no CNAME known */
	if (ns_initparse(ans, n, &msg) < 0)
		return -EINVAL;
	for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
			return -EINVAL;
		if (ns_rr_type(rr) != ns_t_cname || strcasecmp(ns_rr_name(rr), name))
			continue;
		if (ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), ns_rr_rdata(rr), target,
				       sizeof(target)) < 0)
			return -EINVAL;
		if ((size_t)snprintf(out, len, "%s", target) >= len)
			return -ERANGE;
		return 0;
	}
	return -ENOENT;
}

int acme_dns_cname_target(const char *resolver, const char *name, char *out, size_t len)
{
	struct __res_state st;
	char cur[NS_MAXDNAME], next[NS_MAXDNAME];
	int rc = 0, hops;

	if ((size_t)snprintf(out, len, "%s", name) >= len ||
	    (size_t)snprintf(cur, sizeof(cur), "%s", name) >= sizeof(cur))
		return -ERANGE;
	memset(&st, 0, sizeof(st));
	if (res_ninit(&st))
		return -EIO;
	if (resolver && *resolver) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		const char *colon = strrchr(resolver, ':');
		char host[64];

		if (!colon || (size_t)(colon - resolver) >= sizeof(host)) {
			rc = -EINVAL;
			goto out;
		}
		memcpy(host, resolver, (size_t)(colon - resolver));
		host[colon - resolver] = '\0';
		if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
			rc = -EINVAL;
			goto out;
		}
		sin.sin_port = htons((unsigned short)atoi(colon + 1));
		st.nsaddr_list[0] = sin;
		st.nscount = 1;
	}
	/* A resolver that does not answer costs a second, not the default 10. */
	st.retrans = 1;
	st.retry = 1;
	for (hops = 0; hops < DNS_MAX_HOPS; hops++) {
		rc = cname_of(&st, cur, next, sizeof(next));
		if (rc == -ENOENT) {
			rc = 0;
			break;
		}
		if (rc)
			goto out;
		memcpy(cur, next, sizeof(cur));
	}
	if (hops == DNS_MAX_HOPS) {
		rc = -ELOOP;
		goto out;
	}
	if ((size_t)snprintf(out, len, "%s", cur) >= len)
		rc = -ERANGE;
out:
	res_nclose(&st);
	return rc;
}
