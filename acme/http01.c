/* SPDX-License-Identifier: MIT */
/*
 * The built-in HTTP-01 responder (RFC 8555 8.3) behind --http01-listen: one
 * background thread, one poll(2) loop, HTTP/1.0 with Connection: close. It
 * answers only GET (and HEAD) /.well-known/acme-challenge/TOKEN for tokens
 * that are published, and 404 for everything else. Requests are bounded in
 * size, in time and in number of concurrent connections, so a slow or
 * hostile peer cannot pin the thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include "acme/acme_int.h"

#define H01_MAX_CONN 32
#define H01_REQ_MAX 2048
#define H01_CONN_MS 5000
#define H01_MAX_TOKENS 1024
#define H01_PREFIX "/.well-known/acme-challenge/"

struct h01_token {
	char *token;
	char *keyauth;
};

struct h01_conn {
	int fd;
	uint64_t deadline;
	size_t len;
	char req[H01_REQ_MAX + 1];
};

struct acme_http01 {
	struct acme_listener l;
	pthread_mutex_t lock;
	struct h01_token tokens[H01_MAX_TOKENS];
	size_t ntokens;
	struct h01_conn conns[H01_MAX_CONN];
};

static void conn_close(struct h01_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static void respond(struct acme_http01 *s, struct h01_conn *c)
{
	char out[1024], path[300] = "";
	char method[8] = "";
	const char *body = NULL;
	char *keyauth = NULL;
	int n;

	if (sscanf(c->req, "%7s %299s HTTP/", method, path) == 2 &&
	    (!strcmp(method, "GET") || !strcmp(method, "HEAD")) &&
	    !strncmp(path, H01_PREFIX, strlen(H01_PREFIX)) &&
	    acme_token_ok(path + strlen(H01_PREFIX))) {
		pthread_mutex_lock(&s->lock);
		for (size_t i = 0; i < s->ntokens; i++)
			if (!strcmp(s->tokens[i].token, path + strlen(H01_PREFIX))) {
				keyauth = strdup(s->tokens[i].keyauth);
				break;
			}
		pthread_mutex_unlock(&s->lock);
		body = keyauth;
	}
	if (body)
		n = snprintf(out, sizeof(out),
			     "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
			     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			     strlen(body), strcmp(method, "HEAD") ? body : "");
	else
		n = snprintf(out, sizeof(out),
			     "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
			     "Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n");
	if (n > 0 && (size_t)n < sizeof(out) &&
	    send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		util_debug("acme: http01: send: %s", strerror(errno));
	free(keyauth);
	conn_close(c);
}

static void on_readable(struct acme_http01 *s, struct h01_conn *c)
{
	ssize_t n = recv(c->fd, c->req + c->len, H01_REQ_MAX - c->len, MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
		respond(s, c);
	} else if (c->len >= H01_REQ_MAX) {
		/* Too large for a challenge request: answer 404 and close. */
		c->req[0] = '\0';
		respond(s, c);
	}
}

static void on_accept(struct acme_http01 *s)
{
	int fd = accept4(s->l.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	size_t i;

	if (fd < 0)
		return;
	for (i = 0; i < H01_MAX_CONN; i++)
		if (s->conns[i].fd < 0)
			break;
	if (i == H01_MAX_CONN) {
		close(fd); /* busy: the CA retries */
		return;
	}
	s->conns[i].fd = fd;
	s->conns[i].len = 0;
	s->conns[i].deadline = util_mono_ms() + H01_CONN_MS;
}

static void *serve(void *arg)
{
	struct acme_http01 *s = arg;
	struct pollfd pfd[H01_MAX_CONN + 2];
	size_t map[H01_MAX_CONN];

	for (;;) {
		nfds_t n = 2;
		uint64_t now = util_mono_ms();

		pfd[0] = (struct pollfd){ .fd = s->l.wake[0], .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = s->l.lfd, .events = POLLIN };
		for (size_t i = 0; i < H01_MAX_CONN; i++) {
			if (s->conns[i].fd < 0)
				continue;
			if (now > s->conns[i].deadline) {
				conn_close(&s->conns[i]);
				continue;
			}
			map[n - 2] = i;
			pfd[n++] = (struct pollfd){ .fd = s->conns[i].fd, .events = POLLIN };
		}
		if (poll(pfd, n, 500) < 0 && errno != EINTR) {
			util_err("acme: http01: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break;
		for (nfds_t k = 2; k < n; k++)
			if (pfd[k].revents)
				on_readable(s, &s->conns[map[k - 2]]);
		if (pfd[1].revents & POLLIN)
			on_accept(s);
	}
	return NULL;
}

int acme_http01_start(const char *listen_addr, struct acme_http01 **out)
{
	struct acme_http01 *s = NULL;
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	acme_listener_init(&s->l);
	pthread_mutex_init(&s->lock, NULL);
	for (size_t i = 0; i < H01_MAX_CONN; i++)
		s->conns[i].fd = -1;
	rc = acme_listener_start(&s->l, listen_addr, "http01", serve, s);
	if (rc)
		goto out;
	*out = s;
	s = NULL;
	rc = 0;
out:
	acme_http01_stop(s);
	return rc;
}

unsigned int acme_http01_port(const struct acme_http01 *s)
{
	return s ? s->l.port : 0;
}

int acme_http01_publish(struct acme_http01 *s, const char *token, const char *keyauth)
{
	char *t = NULL, *k = NULL;
	int rc = 0;
	size_t i;

	if (!s || !acme_token_ok(token) || !keyauth || strlen(keyauth) > 600)
		return -EINVAL;
	if (!(t = strdup(token)) || !(k = strdup(keyauth))) {
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->ntokens; i++)
		if (!strcmp(s->tokens[i].token, token))
			break;
	if (i < s->ntokens) {
		free(s->tokens[i].token);
		free(s->tokens[i].keyauth);
	} else if (s->ntokens == H01_MAX_TOKENS) {
		rc = -ENOSPC;
		goto out;
	} else {
		s->ntokens++;
	}
	s->tokens[i].token = t;
	s->tokens[i].keyauth = k;
	t = k = NULL;
out:
	pthread_mutex_unlock(&s->lock);
	free(t);
	free(k);
	return rc;
}

void acme_http01_unpublish(struct acme_http01 *s, const char *token)
{
	if (!s || !token)
		return;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->ntokens; i++) {
		if (strcmp(s->tokens[i].token, token))
			continue;
		free(s->tokens[i].token);
		free(s->tokens[i].keyauth);
		s->tokens[i] = s->tokens[--s->ntokens];
		break;
	}
	pthread_mutex_unlock(&s->lock);
}

void acme_http01_stop(struct acme_http01 *s)
{
	if (!s)
		return;
	acme_listener_stop(&s->l, "http01");
	for (size_t i = 0; i < H01_MAX_CONN; i++)
		conn_close(&s->conns[i]);
	for (size_t i = 0; i < s->ntokens; i++) {
		free(s->tokens[i].token);
		free(s->tokens[i].keyauth);
	}
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int acme_http01_publish_cb(void *responder, const char *token, const char *keyauth)
{
	return acme_http01_publish(responder, token, keyauth);
}

void acme_http01_unpublish_cb(void *responder, const char *token)
{
	acme_http01_unpublish(responder, token);
}
