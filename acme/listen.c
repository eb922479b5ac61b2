/* SPDX-License-Identifier: MIT */
/*
 * The listening socket of the built-in challenge responders (http-01 and
 * tls-alpn-01): "ADDR:PORT" with ADDR a numeric IPv4 address, a bracketed
 * IPv6 address or empty (all), non-blocking, close-on-exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include "acme/acme_int.h"

int acme_addr_split(const char *s, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon;
	size_t n;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *e = strchr(s, ']');

		if (!e || e[1] != ':')
			return -EINVAL;
		n = (size_t)(e - s - 1);
		colon = e + 1;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		n = (size_t)(colon - s);
	}
	if (n >= hlen || strlen(colon + 1) >= plen || !colon[1] ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

int acme_listen_open(const char *listen_addr, const char *what, int *fd, unsigned int *port)
{
	struct addrinfo hints, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], pbuf[16];
	int one = 1, rc, e, s = -1;

	if (acme_addr_split(listen_addr, host, sizeof(host), pbuf, sizeof(pbuf))) {
		util_err("acme: %s: listen address '%s' is not ADDR:PORT", what,
			 listen_addr ? listen_addr : "");
		return -EINVAL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	e = getaddrinfo(*host ? host : NULL, pbuf, &hints, &ai);
	if (e) {
		util_err("acme: %s: listen address '%s': %s", what, listen_addr, gai_strerror(e));
		return -EINVAL;
	}
	s = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(s, ai->ai_addr, ai->ai_addrlen) < 0 || listen(s, 64) < 0 ||
	    getsockname(s, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		util_err("acme: %s: listen on %s: %s", what, listen_addr, strerror(-rc));
		goto out;
	}
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
	*fd = s;
	s = -1;
	rc = 0;
out:
	if (s >= 0)
		close(s);
	freeaddrinfo(ai);
	return rc;
}

void acme_listener_init(struct acme_listener *l)
{
	memset(l, 0, sizeof(*l));
	l->lfd = l->wake[0] = l->wake[1] = -1;
}

int acme_listener_start(struct acme_listener *l, const char *listen_addr, const char *what,
			void *(*fn)(void *), void *arg)
{
	int rc = acme_listen_open(listen_addr, what, &l->lfd, &l->port);

	if (rc)
		return rc;
	if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	rc = -pthread_create(&l->thread, NULL, fn, arg);
	if (rc)
		return rc;
	l->running = true;
	util_info("acme: %s: listening on %s (port %u)", what, listen_addr, l->port);
	return 0;
}

void acme_listener_stop(struct acme_listener *l, const char *what)
{
	if (l->running) {
		if (write(l->wake[1], "x", 1) < 0)
			util_debug("acme: %s: wake: %s", what, strerror(errno));
		pthread_join(l->thread, NULL);
		l->running = false;
	}
	if (l->lfd >= 0)
		close(l->lfd);
	if (l->wake[0] >= 0)
		close(l->wake[0]);
	if (l->wake[1] >= 0)
		close(l->wake[1]);
	l->lfd = l->wake[0] = l->wake[1] = -1;
}
