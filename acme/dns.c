/* SPDX-License-Identifier: MIT */
/*
 * CNAME delegation for dns-01 (RFC 8555 8.4 allows the TXT record to sit
 * behind a CNAME, the acme-dns pattern): `_acme-challenge.example.com CNAME
 * _acme-challenge.auth.example.net` lets the dns hook write one delegated
 * zone instead of every customer zone. The lookup goes through libresolv
 * with a private resolver state (thread-safe), at the system's resolvers or
 * at one given address, IPv4 or IPv6.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
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

/*
 * Ask only the resolver "ADDR:PORT" (IPv4, or bracketed IPv6). glibc keeps
 * IPv4 servers in nsaddr_list and IPv6 ones behind _u._ext.nsaddrs (a
 * malloc'd sockaddr_in6 that res_nclose frees, with the nsaddr_list entry's
 * family 0), which is how res_ninit itself records an IPv6 nameserver of
 * resolv.conf; the servers res_ninit found are dropped first.
 */
static int resolver_set(res_state st, const char *resolver)
{
	struct addrinfo hints, *ai = NULL;
	char host[INET6_ADDRSTRLEN + 8], port[8];
	int rc = -EINVAL;

	if (acme_addr_split(resolver, host, sizeof(host), port, sizeof(port)) || !*host)
		return -EINVAL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &ai))
		return -EINVAL;
	for (int i = 0; i < MAXNS; i++) {
		free(st->_u._ext.nsaddrs[i]);
		st->_u._ext.nsaddrs[i] = NULL;
		memset(&st->nsaddr_list[i], 0, sizeof(st->nsaddr_list[i]));
	}
	st->_u._ext.nscount = 0;
	if (ai->ai_family == AF_INET && ai->ai_addrlen == sizeof(struct sockaddr_in)) {
		memcpy(&st->nsaddr_list[0], ai->ai_addr, sizeof(struct sockaddr_in));
	} else if (ai->ai_family == AF_INET6 && ai->ai_addrlen == sizeof(struct sockaddr_in6)) {
		st->_u._ext.nsaddrs[0] = malloc(sizeof(struct sockaddr_in6));
		if (!st->_u._ext.nsaddrs[0]) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(st->_u._ext.nsaddrs[0], ai->ai_addr, sizeof(struct sockaddr_in6));
	} else {
		goto out;
	}
	st->_u._ext.nssocks[0] = -1;
	st->nscount = 1;
	rc = 0;
out:
	freeaddrinfo(ai);
	return rc;
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
		rc = resolver_set(&st, resolver);
		if (rc)
			goto out;
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
