/* SPDX-License-Identifier: MIT */
/*
 * acme module internals: the parsed forms of directory, order and
 * authorization objects, the response parsers (pure functions over bytes so
 * the unit tests can feed them hostile input), and the HTTP transport with
 * its JWS-signed POST. Not to be included outside acme/ and its unit tests.
 */
#ifndef CERTFS_ACME_INT_H
#define CERTFS_ACME_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "acme/acme.h"

#define ACME_BODY_MAX (1024 * 1024)  /* any response body */
#define ACME_MAX_AUTHZ 100            /* authorizations per order */
#define ACME_MAX_CHALLENGES 16        /* challenges per authorization */
#define ACME_MAX_ALTERNATES 8         /* Link rel="alternate" chains */
#define ACME_URL_MAX 2048
#define ACME_NONCE_POOL 4
/* A CA may refuse any share of nonces (Pebble's test knob goes to 99%): at
 * 50%, 25 tries fail once in 30 million requests; each retry costs one round
 * trip, never a sleep. */
#define ACME_BADNONCE_TRIES 25

/* ---- parsed objects (RFC 8555 7.1) ------------------------------------- */

struct acme_directory {
	char *new_nonce, *new_account, *new_order; /* required */
	char *revoke_cert, *key_change, *renewal_info; /* optional, NULL */
	char *terms_of_service;
	bool eab_required;
	bool has_profiles;      /* meta.profiles present */
	char **profiles;
	size_t nprofiles;
};

enum acme_status {
	ACME_STATUS_UNKNOWN = 0,
	ACME_STATUS_PENDING,
	ACME_STATUS_READY,
	ACME_STATUS_PROCESSING,
	ACME_STATUS_VALID,
	ACME_STATUS_INVALID,
	ACME_STATUS_EXPIRED,
	ACME_STATUS_DEACTIVATED,
	ACME_STATUS_REVOKED,
};

struct acme_order {
	enum acme_status status;
	char **authzs;
	size_t nauthzs;
	char **identifiers; /* dns identifier values */
	size_t nidentifiers;
	char *finalize;
	char *certificate;  /* NULL until valid */
	bool has_error;
	struct acme_problem error;
};

struct acme_challenge {
	char *type;   /* "http-01", "dns-01", ... */
	char *url;
	char *token;  /* NULL for types without one */
	enum acme_status status;
	bool has_error;
	struct acme_problem error;
};

struct acme_authz {
	enum acme_status status;
	char *identifier;   /* dns value, without "*." */
	bool wildcard;
	struct acme_challenge *challenges;
	size_t nchallenges;
};

/* The parsers: 0 or -EINVAL (with a sentence in detail, when given). */
int acme_directory_parse(const void *body, size_t len, struct acme_directory *out,
			 char *detail, size_t dlen) ACME_WUR;
void acme_directory_clear(struct acme_directory *d);
int acme_order_parse(const void *body, size_t len, struct acme_order *out,
		     char *detail, size_t dlen) ACME_WUR;
void acme_order_clear(struct acme_order *o);
int acme_authz_parse(const void *body, size_t len, struct acme_authz *out,
		     char *detail, size_t dlen) ACME_WUR;
void acme_authz_clear(struct acme_authz *a);
/* Account object: just its status (valid/deactivated/revoked). */
int acme_account_parse_status(const void *body, size_t len, enum acme_status *out) ACME_WUR;
/* RFC 9773 4.2 renewalInfo response. */
int acme_renewal_info_parse(const void *body, size_t len, struct acme_renewal_info *out,
			    char *detail, size_t dlen) ACME_WUR;
enum acme_status acme_status_parse(const char *s);
const char *acme_status_name(enum acme_status s);

/*
 * Problem document body (any content) plus the HTTP status into p. Never
 * fails: a body that is not a problem document gives type "" and a detail
 * naming the status. Subproblems are folded into detail.
 */
void acme_problem_parse(const void *body, size_t len, int status, struct acme_problem *p);
/*
 * Retry-After value (delta-seconds or HTTP-date) relative to now into an
 * absolute time, clamped to [now + ACME_RETRY_AFTER_MIN_S, now +
 * ACME_RETRY_AFTER_MAX_S] (delta 0 stays now). -EINVAL for garbage.
 */
int acme_retry_after_parse(const char *value, time_t now, time_t *out) ACME_WUR;
/*
 * Append to urls[] (up to max, *n updated) every target of a Link header
 * value whose rel parameter lists rel. Targets are returned as written;
 * the caller resolves relative references. Returns 0 or -EINVAL for a
 * malformed header (urls found so far are kept), -ENOMEM.
 */
int acme_link_parse(const char *value, const char *rel, char **urls, size_t max,
		    size_t *n) ACME_WUR;
/* A token usable in a URL path and a DNS value: base64url alphabet, 1..256. */
bool acme_token_ok(const char *token);
/* The CN of an RFC 2253-ish "CN=x, O=y" string into out ("" when absent). */
void acme_dn_cn(const char *dn, char *out, size_t len);
void acme_strv_free(char **v, size_t n);

/* ---- responders' listening socket (listen.c) ------------------------------ */

/* A responder's socket and thread; fn's loop ends when wake[0] is readable. */
struct acme_listener {
	int lfd;
	int wake[2];
	unsigned int port;
	pthread_t thread;
	bool running;
};

/* All fds -1, not running (so acme_listener_stop is safe after a failed start). */
void acme_listener_init(struct acme_listener *l);
/* Listen on listen_addr and run fn(arg) on a new thread; logs "acme: WHAT: listening". */
int acme_listener_start(struct acme_listener *l, const char *listen_addr, const char *what,
			void *(*fn)(void *), void *arg) ACME_WUR;
/* Wake the thread, join it, close the sockets. */
void acme_listener_stop(struct acme_listener *l, const char *what);

/*
 * Split "ADDR:PORT" (ADDR an IPv4 address, a bracketed IPv6 address or
 * empty) into host (without the brackets) and port, both NUL-terminated.
 * -EINVAL when it is not of that form or does not fit.
 */
int acme_addr_split(const char *s, char *host, size_t hlen, char *port, size_t plen) ACME_WUR;
/*
 * Listen on "ADDR:PORT" (port 0 picks one): a non-blocking, close-on-exec
 * socket into *fd and the bound port into *port. Logs why it failed as
 * "acme: WHAT: ...". -EINVAL for a bad address, -errno from bind/listen.
 */
int acme_listen_open(const char *listen_addr, const char *what, int *fd,
		     unsigned int *port) ACME_WUR;

/* ---- transport (http.c) ------------------------------------------------- */

struct acme_response {
	int status;
	struct util_buf body;
	char *location;
	char *content_type;
	char *retry_after;      /* raw header value */
	char *links[ACME_MAX_ALTERNATES * 2];
	size_t nlinks;          /* raw Link header values */
	bool has_nonce;
	char nonce[128];
};

struct acme_http;

int acme_http_new(const char *ca_bundle, unsigned int request_timeout_ms,
		  struct acme_http **out, char *detail, size_t dlen) ACME_WUR;
void acme_http_free(struct acme_http *h);
void acme_response_init(struct acme_response *r);
void acme_response_clear(struct acme_response *r);
/*
 * One request: method "GET", "HEAD" or "POST" (body with content type
 * application/jose+json). accept may be NULL. On a transport failure
 * -EIO and prob filled; HTTP errors are not failures here (see r->status).
 */
int acme_http_request(struct acme_http *h, const char *method, const char *url,
		      const void *body, size_t len, const char *accept,
		      struct acme_response *r, struct acme_problem *prob) ACME_WUR;
/* Make every request on h, in flight or later, fail with -ECANCELED. */
void acme_http_cancel(struct acme_http *h);
/* The same once *flag is set (the caller's shutdown flag; NULL for none). */
void acme_http_set_cancel(struct acme_http *h, const atomic_bool *flag);
bool acme_http_cancelled(struct acme_http *h);
/* Resolve ref against base into a new string (absolute http(s) only). */
int acme_url_resolve(const char *base, const char *ref, char **out) ACME_WUR;

#endif
