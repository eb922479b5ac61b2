/* SPDX-License-Identifier: MIT */
/*
 * The probe ([domain NAME] probe = HOST:PORT): after a rotation, certfs
 * connects to the server that serves the domain, with the domain as SNI,
 * and records which certificate it presents (fingerprint, and which of the
 * domain's generations that is), so status shows whether the server picked
 * up the renewal, including servers whose reads certfs cannot see (a
 * remote load balancer, a reader of the serving mount). It runs on the
 * hook thread, never in a FUSE request, bounded by PROBE_TIMEOUT_MS per
 * step; the sockets are here, the handshake in crypto/.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/engine_int.h"

/* Connect, and then the handshake, each give up after this long. */
#define PROBE_TIMEOUT_MS 5000
/* Older generations a presented certificate is looked for among. */
#define PROBE_HISTORY 4

char *engine_probe_target(struct engine *e, const char *name)
{
	const struct conf_domain *cd;
	char *t = NULL;

	pthread_mutex_lock(&e->conf_lock);
	cd = conf_domain_find(&e->conf, name);
	if (cd && cd->probe)
		t = strdup(cd->probe);
	pthread_mutex_unlock(&e->conf_lock);
	return t;
}

/* How often a wait asks whether certfs is shutting down. */
#define PROBE_SLICE_MS 100

static bool probe_stop(void *arg)
{
	struct engine *e = arg;

	return atomic_load(&e->cancel);
}

/* Wait for fd to connect, in slices (shutdown ends it); 0 or -errno. */
static int probe_wait_connect(struct engine *e, int fd)
{
	uint64_t deadline = util_mono_ms() + PROBE_TIMEOUT_MS;
	socklen_t len = sizeof(int);
	int soerr = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int r = poll(&p, 1, PROBE_SLICE_MS);

		if (r == 1)
			break;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (probe_stop(e))
			return -ECANCELED;
		if (util_mono_ms() >= deadline)
			return -ETIMEDOUT;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len))
		return -errno;
	return -soerr;
}

/* A TCP connection to HOST:PORT within the timeout; fd or -errno. */
static int probe_connect(struct engine *e, const char *target, char *why, size_t wl)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	const char *colon = strrchr(target, ':');
	char host[260];
	size_t hl = (size_t)(colon - target);
	int fd = -1, rc;

	/* "[::1]:443": the brackets are not part of the address. */
	if (target[0] == '[' && hl >= 2) {
		target++;
		hl -= 2;
	}
	snprintf(host, sizeof(host), "%.*s", (int)hl, target);
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc) {
		snprintf(why, wl, "%s: %s", host, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	rc = -ECONNREFUSED;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    a->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen))
			rc = errno == EINPROGRESS ? probe_wait_connect(e, fd) : -errno;
		else
			rc = 0;
		if (!rc || rc == -ECANCELED)
			break; /* the socket stays non-blocking for the handshake */
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (rc && fd >= 0) {
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		snprintf(why, wl, "connect to %s: %s", target, strerror(-rc));
	return fd >= 0 ? fd : rc;
}

/* Which generation of d has fingerprint fp: the served one or one of the
 * few before it (read from the store); -1 when none. */
static int64_t probe_generation(struct engine_domain *d, const char *fp)
{
	struct engine_gen *g = engine_domain_gen(d);
	int64_t found = -1;

	if (!g)
		return -1;
	if (!strcmp(g->info.fingerprint_sha256, fp))
		found = (int64_t)g->number;
	/* Store reads, under no lock. */
	for (uint64_t n = g->number; found < 0 && n > 0 && g->number - n < PROBE_HISTORY; n--) {
		struct engine_gen *old = NULL;

		if (!engine_domain_read_gen(d, n - 1, &old) &&
		    !strcmp(old->info.fingerprint_sha256, fp))
			found = (int64_t)(n - 1);
		engine_gen_put(old);
	}
	engine_gen_put(g);
	return found;
}

bool engine_probe_run(struct engine *e, struct engine_domain *d)
{
	char *target = engine_probe_target(e, d->name);
	struct crypto_cert_info info;
	struct crypto_cert *leaf = NULL;
	struct crypto_err err = {""};
	struct engine_gen *g;
	char sni[260], why[300] = "";
	int64_t gen = -1;
	bool current = false;
	int fd;

	if (!target)
		return true;
	memset(&info, 0, sizeof(info));
	/* A wildcard's SNI: any name under it. */
	snprintf(sni, sizeof(sni), "%s%s", d->name[0] == '*' ? "probe" : "", d->name + (d->name[0] == '*'));
	fd = probe_connect(e, target, why, sizeof(why));
	if (fd >= 0) {
		if (crypto_tls_probe(fd, sni, PROBE_TIMEOUT_MS, probe_stop, e, &leaf, &err) ||
		    crypto_cert_info(leaf, &info))
			snprintf(why, sizeof(why), "%.100s: %.190s", target,
				 err.msg[0] ? err.msg : "out of memory");
		close(fd);
	}
	if (!why[0])
		gen = probe_generation(d, info.fingerprint_sha256);
	g = engine_domain_gen(d);
	current = g && gen == (int64_t)g->number;
	engine_gen_put(g);
	pthread_mutex_lock(&d->lock);
	if (!d->probe)
		d->probe = calloc(1, sizeof(*d->probe)); /* NULL: the answer is not shown */
	if (d->probe) {
		snprintf(d->probe->target, sizeof(d->probe->target), "%s", target);
		snprintf(d->probe->fp, sizeof(d->probe->fp), "%s",
			 why[0] ? "" : info.fingerprint_sha256);
		snprintf(d->probe->error, sizeof(d->probe->error), "%s", why);
		d->probe->gen = gen;
		d->probe->current = current;
		d->probe->at = util_now();
	}
	engine_domain_changed(d);
	pthread_mutex_unlock(&d->lock);
	if (why[0])
		util_warn("engine: %s: probe: %s", d->name, why);
	else
		util_info("engine: %s: probe: %s serves %s (%s)", d->name, target,
			  info.fingerprint_sha256, current ? "the served generation" :
			  gen >= 0 ? "an older generation" : "a certificate not of this domain");
	crypto_cert_info_clear(&info);
	crypto_cert_free(leaf);
	free(target);
	return current;
}

void engine_probe_json(struct engine_domain *d, json_t *o)
{
	const struct engine_probe_answer *a;
	char at[32];
	json_t *p;

	pthread_mutex_lock(&d->lock);
	a = d->probe;
	if (!a) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	util_format_time(a->at, at, sizeof(at));
	p = json_pack("{s:s, s:s, s:s?, s:s?}", "endpoint", a->target, "at", at,
		      "fingerprint_sha256", a->fp[0] ? a->fp : NULL, "error",
		      a->error[0] ? a->error : NULL);
	if (p && !a->error[0]) {
		json_object_set_new(p, "generation",
				    a->gen >= 0 ? json_integer((json_int_t)a->gen) : json_null());
		json_object_set_new(p, "current", json_boolean(a->current));
	}
	pthread_mutex_unlock(&d->lock);
	if (p)
		json_object_set_new(o, "probe", p);
}
