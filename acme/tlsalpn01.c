/* SPDX-License-Identifier: MIT */
/*
 * The built-in TLS-ALPN-01 responder (RFC 8737) behind --tls-alpn01-listen,
 * for hosts where only port 443 is open. Publishing a challenge makes a
 * fresh P-256 key and the acmeIdentifier certificate for the name (crypto/);
 * one background thread accepts connections and completes a handshake for
 * the "acme-tls/1" protocol with the certificate the SNI asks for. A
 * connection gets ALPN_CONN_MS for its handshake, so a slow peer only delays
 * the next one a little; the CA retries from elsewhere anyway.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "acme/acme_int.h"
#include "crypto/crypto.h"

#define ALPN_CONN_MS 5000
#define ALPN_MAX_NAMES 1024

struct alpn_entry {
	char *name;
	struct crypto_key *key;
	struct crypto_cert *cert;
};

struct acme_tlsalpn01 {
	struct acme_listener l;
	struct crypto_tls_alpn *tls;
	pthread_mutex_t lock;
	struct alpn_entry entries[ALPN_MAX_NAMES];
	size_t n;
};

static void entry_clear(struct alpn_entry *en)
{
	free(en->name);
	crypto_key_free(en->key);
	crypto_cert_free(en->cert);
	memset(en, 0, sizeof(*en));
}

static int lookup(void *arg, const char *sni, struct crypto_key **key, struct crypto_cert **cert)
{
	struct acme_tlsalpn01 *s = arg;
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		if (!strcasecmp(s->entries[i].name, sni)) {
			*key = crypto_key_up_ref(s->entries[i].key);
			*cert = crypto_cert_up_ref(s->entries[i].cert);
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void on_accept(struct acme_tlsalpn01 *s)
{
	struct timeval tv = { .tv_sec = ALPN_CONN_MS / 1000, .tv_usec = 0 };
	int fd = accept4(s->l.lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0) {
		if (crypto_tls_alpn_serve(s->tls, fd) == 0)
			util_debug("acme: tls-alpn-01: validation handshake done");
	}
	close(fd);
}

static void *serve(void *arg)
{
	struct acme_tlsalpn01 *s = arg;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = s->l.wake[0], .events = POLLIN },
			{ .fd = s->l.lfd, .events = POLLIN },
		};

		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			util_err("acme: tls-alpn-01: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN)
			on_accept(s);
	}
	return NULL;
}

int acme_tlsalpn01_start(const char *listen_addr, struct acme_tlsalpn01 **out)
{
	struct acme_tlsalpn01 *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	acme_listener_init(&s->l);
	pthread_mutex_init(&s->lock, NULL);
	rc = crypto_tls_alpn_new(lookup, s, &s->tls);
	if (!rc)
		rc = acme_listener_start(&s->l, listen_addr, "tls-alpn-01", serve, s);
	if (rc)
		goto out;
	*out = s;
	s = NULL;
	rc = 0;
out:
	acme_tlsalpn01_stop(s);
	return rc;
}

unsigned int acme_tlsalpn01_port(const struct acme_tlsalpn01 *s)
{
	return s ? s->l.port : 0;
}

int acme_tlsalpn01_publish(struct acme_tlsalpn01 *s, const char *name, const char *keyauth)
{
	struct alpn_entry en = { 0 };
	size_t i;
	int rc;

	if (!s || !name || !keyauth)
		return -EINVAL;
	rc = crypto_key_generate(CRYPTO_KEY_EC256, &en.key);
	if (!rc)
		rc = crypto_alpn_cert_new(en.key, name, keyauth, util_now(), &en.cert);
	if (!rc && !(en.name = strdup(name)))
		rc = -ENOMEM;
	if (rc)
		goto out;
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->n; i++)
		if (!strcasecmp(s->entries[i].name, name))
			break;
	if (i == ALPN_MAX_NAMES) {
		rc = -ENOSPC;
	} else {
		if (i < s->n)
			entry_clear(&s->entries[i]);
		else
			s->n++;
		s->entries[i] = en;
		memset(&en, 0, sizeof(en));
	}
	pthread_mutex_unlock(&s->lock);
out:
	entry_clear(&en);
	return rc;
}

void acme_tlsalpn01_unpublish(struct acme_tlsalpn01 *s, const char *name)
{
	if (!s || !name)
		return;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		if (strcasecmp(s->entries[i].name, name))
			continue;
		entry_clear(&s->entries[i]);
		s->entries[i] = s->entries[--s->n];
		memset(&s->entries[s->n], 0, sizeof(s->entries[s->n]));
		break;
	}
	pthread_mutex_unlock(&s->lock);
}

void acme_tlsalpn01_stop(struct acme_tlsalpn01 *s)
{
	if (!s)
		return;
	acme_listener_stop(&s->l, "tls-alpn-01");
	for (size_t i = 0; i < s->n; i++)
		entry_clear(&s->entries[i]);
	crypto_tls_alpn_free(s->tls);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
