/* SPDX-License-Identifier: MIT */
/*
 * acme: an RFC 8555 client for the certfs engine. One struct acme_client per
 * ACME directory holds the account (its key stays in crypto/, which signs
 * every JWS), a shared libcurl connection cache, the CA bundle read once and
 * a small pool of fresh nonces; many worker threads may issue certificates
 * through the same client at once. Also here: RFC 9773 renewal information,
 * revocation, tiny built-in HTTP-01 and TLS-ALPN-01 responders
 * (--http01-listen, --tls-alpn01-listen), the CNAME lookups of dns-01
 * delegation, and the rate-limit rules every part keeps to.
 *
 * Every fallible function returns 0 or -errno and, when the ACME server (or
 * the transport) refused, fills a caller-owned struct acme_problem whose
 * sentence is what a user reads in `status`.
 */
#ifndef CERTFS_ACME_H
#define CERTFS_ACME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util/util.h"

#define ACME_WUR __attribute__((warn_unused_result))

struct crypto_key;

/*
 * Rate-limit rules: every limit certfs keeps so that it stays inside a public
 * CA's rate limits (Let's Encrypt's are the tightest in use: 300 new orders
 * per account per 3 hours, 5 failed validations per hostname per hour, 5
 * identical certificates per week) and never hammers a broken server. The
 * README's "Rate limits" paragraph lists the same numbers.
 *
 * Retry-After (RFC 8555 6.6, RFC 9110 10.2.3) on an error: a negative delta
 * or a date in the past becomes ACME_RETRY_AFTER_MIN_S; anything further away
 * than ACME_RETRY_AFTER_MAX_S (one day) is clamped to it, so a broken server
 * cannot park a domain for years; the engine re-asks after a day at worst.
 */
#define ACME_RETRY_AFTER_MIN_S 10
#define ACME_RETRY_AFTER_MAX_S 86400
/*
 * Polling an order or authorization (7.5.1): 25 ms, doubling to one poll
 * every 2 s. A Retry-After shorter than the current step (0 included) does
 * not make it faster, a longer one is followed; one issuance gives up after
 * ACME_ISSUE_TIMEOUT_S, so it never makes more than about 160 polls.
 */
#define ACME_POLL_FIRST_MS 25u
#define ACME_POLL_MAX_MS 2000u
#define ACME_ISSUE_TIMEOUT_S 300u
/* A failed issuance is retried after 30 s, doubling to 6 hours (all issuers). */
#define ACME_RETRY_BASE_S 30
#define ACME_RETRY_MAX_S (6 * 3600)
/*
 * Orders for one domain, whoever starts them (renewals, retries, an issuer
 * change, renew of every domain or of one, names, request.csr): at most one
 * per ACME_ORDER_MIN_INTERVAL_S, counted from the start of the last attempt
 * (kept in the domain's stored state); a request inside it is held and goes
 * out when it ends. Only a new domain's first order (mkdir) and resuming an
 * order saved before a restart have nothing to wait for. Orders the daemon
 * starts by itself are also limited account-wide: a burst of
 * ACME_AUTO_ORDER_BURST then ACME_AUTO_ORDERS_PER_HOUR (a third of Let's
 * Encrypt's new-order limit). One domain has at most one order in flight.
 */
#define ACME_ORDER_MIN_INTERVAL_S 30
#define ACME_AUTO_ORDER_BURST 20
#define ACME_AUTO_ORDERS_PER_HOUR 100
/*
 * Failed validations (an authorization or challenge the CA found invalid):
 * at most this many per domain in any hour (Let's Encrypt allows 5 per
 * hostname), counted across restarts; later orders wait, a forced renew
 * included.
 */
#define ACME_FAILED_VALIDATIONS_PER_HOUR 4
/* Renewal information (RFC 9773 4.3.3): at most once a minute per domain,
 * at least once a day, whatever Retry-After says. */
#define ACME_ARI_MIN_INTERVAL_S 60
#define ACME_ARI_MAX_INTERVAL_S 86400
/*
 * A certificate that is already due for renewal when it arrives (the host's
 * clock ahead, a lifetime shorter than the renewal margin) is served and
 * reported; no automatic order for it before this fraction of its lifetime.
 */
#define ACME_DUE_ON_ARRIVAL_HOLD 0.25

/*
 * An RFC 7807 / RFC 8555 6.7 problem document, or a transport failure dressed
 * as one (type "" then). Subproblems (6.7.1) are folded into detail.
 */
struct acme_problem {
	char type[128];      /* "urn:ietf:params:acme:error:rateLimited", or "" */
	char detail[1024];   /* human text from the server, or ours */
	int status;          /* HTTP status, 0 when no response */
	time_t retry_after;  /* absolute util_now() time, 0 when none */
	bool validation;     /* the CA found an authorization invalid (failed validation) */
};

/* Empty the problem (all fields zero). NULL is a no-op. */
void acme_problem_clear(struct acme_problem *p);
/*
 * One human sentence into out, e.g. "acme: urn:ietf:params:acme:error:
 * unauthorized: Invalid response from http://x/.well-known/acme-challenge/y:
 * 404". Returns out.
 */
const char *acme_problem_sentence(const struct acme_problem *p, char *out, size_t len);
/* True when type is "urn:ietf:params:acme:error:" + short ("rateLimited"). */
bool acme_problem_is(const struct acme_problem *p, const char *short_type);

/* ---- client ------------------------------------------------------------ */

struct acme_client;

struct acme_client_config {
	const char *directory_url;   /* required, https:// (http:// refused) */
	const char *ca_bundle;       /* PEM file for the CA's own TLS; NULL = system store */
	const char *email;           /* contact, NULL or "" for none */
	const char *eab_kid;         /* RFC 8555 7.3.4, both or neither */
	const char *eab_hmac_key;    /* base64url */
	const char *preferred_chain; /* issuer CN to prefer among alternates, or NULL */
	const char *profile;         /* newOrder "profile", or NULL */
	struct crypto_key *account_key; /* ES256 P-256 (or RSA); the client takes a reference */
	const char *account_url;     /* known account (from the store), or NULL to register */
	unsigned int issue_timeout_ms;   /* bound on one acme_issue; 0 = 5 minutes */
	unsigned int request_timeout_ms; /* bound on one HTTP request; 0 = 30 s */
	/* Set by the caller at shutdown: as acme_client_cancel(), or NULL. */
	const atomic_bool *cancel;
};

/*
 * Create a client. No network traffic happens here: the directory is
 * fetched and the account registered on first use. The strings are copied;
 * the account key is referenced. -EINVAL with a sentence in prob for a bad
 * configuration.
 */
int acme_client_new(const struct acme_client_config *cfg, struct acme_client **out,
		    struct acme_problem *prob) ACME_WUR;
/* Free the client. No call on it may be running. NULL is a no-op. */
void acme_client_free(struct acme_client *c);
/*
 * Shutdown: every request in flight on c and every later one fails within
 * about a second with -ECANCELED, and polling waits end at once, so a
 * thread inside acme_issue returns promptly (the order URL it saved stays
 * resumable). Irreversible. Thread-safe, callable while others use c.
 */
void acme_client_cancel(struct acme_client *c);
/*
 * Make sure the directory is known and the account exists: newAccount with
 * termsOfServiceAgreed, contact and EAB when no account URL is known (an
 * existing account for the key is found the same way, RFC 8555 7.3.1).
 * Called by acme_issue() and friends; thread-safe.
 */
int acme_client_account(struct acme_client *c, struct acme_problem *prob) ACME_WUR;
/*
 * Copy the account URL (so the engine can store it) into out. -ENOENT before
 * the account is known, -ERANGE when out is too small. Thread-safe.
 */
int acme_client_get_account_url(struct acme_client *c, char *out, size_t len) ACME_WUR;

/* ---- issuance ---------------------------------------------------------- */

enum acme_challenge_type {
	ACME_CHALLENGE_HTTP01,
	ACME_CHALLENGE_DNS01,
	ACME_CHALLENGE_TLSALPN01,
};

/*
 * What the engine provides for one issuance. Callbacks run on the calling
 * thread. Any callback may be NULL when not needed; a name that needs a
 * missing path fails with a clear problem.
 */
struct acme_challenge_ops {
	/* For plain names; wildcards always use dns-01 (RFC 8555 7.1.3). */
	enum acme_challenge_type prefer;
	/* http-01 (8.3): serve keyauth at /.well-known/acme-challenge/TOKEN. */
	int (*http01_publish)(void *arg, const char *token, const char *keyauth);
	void (*http01_unpublish)(void *arg, const char *token);
	/*
	 * dns-01 (8.4): add TXT record "_acme-challenge.NAME" = value and block
	 * until it is in place; del removes it again.
	 */
	int (*dns01_add)(void *arg, const char *record, const char *value);
	void (*dns01_del)(void *arg, const char *record, const char *value);
	/* tls-alpn-01 (RFC 8737): answer handshakes for name with keyauth's certificate. */
	int (*tlsalpn01_publish)(void *arg, const char *name, const char *keyauth);
	void (*tlsalpn01_unpublish)(void *arg, const char *name);
	/*
	 * Before finalize, the order URL to persist next to the key, so a
	 * restart can resume (acme_issue_request.resume_order_url). A failure
	 * here aborts the issuance.
	 */
	int (*save_order)(void *arg, const char *order_url);
	void *arg;
};

struct acme_issue_request {
	const char *const *names;   /* DNS names, "*.x" for wildcards */
	size_t nnames;
	const void *csr_der;        /* PKCS#10 DER covering exactly names */
	size_t csr_len;
	const char *replaces;       /* RFC 9773 ARI id of the certificate renewed, or NULL */
	const char *resume_order_url; /* order URL saved earlier, or NULL for a new order */
	const struct acme_challenge_ops *ops;
};

/*
 * Obtain a certificate (RFC 8555 7.4): newOrder (or resume the saved order
 * from its status), authorizations and challenges, finalize, download, pick
 * the preferred chain. The result is checked before success: the leaf's DNS
 * names equal names as a set, its key is the CSR's key, and the chain links
 * verify. On success chain_pem gets the PEM chain, leaf first, without the
 * root. On failure prob says why (retry_after set for rateLimited/429/503).
 * -EPROTO: the CA refused; -ETIMEDOUT: the issue timeout passed;
 * -EIO: transport; -EINVAL: bad request or bad response. Thread-safe.
 */
int acme_issue(struct acme_client *c, const struct acme_issue_request *req,
	       struct util_buf *chain_pem, struct acme_problem *prob) ACME_WUR;

/* ---- renewal information (RFC 9773) ------------------------------------ */

struct acme_renewal_info {
	time_t window_start;   /* suggestedWindow.start */
	time_t window_end;     /* suggestedWindow.end */
	time_t retry_after;    /* when to ask again (absolute), 0 if not given */
	char explanation_url[512];
};

/*
 * GET renewalInfo/ARI_ID. -EOPNOTSUPP (with a sentence in prob) when the
 * directory has no "renewalInfo". Thread-safe.
 */
int acme_renewal_info(struct acme_client *c, const char *ari_id,
		      struct acme_renewal_info *out, struct acme_problem *prob) ACME_WUR;

/*
 * Revoke a certificate (RFC 8555 7.6) signed with the account key; reason is
 * an RFC 5280 CRLReason code (0 unspecified, 1 keyCompromise, 4 superseded,
 * 5 cessationOfOperation) or -1 to omit it. Thread-safe.
 */
int acme_revoke(struct acme_client *c, const void *cert_der, size_t len, int reason,
		struct acme_problem *prob) ACME_WUR;

/* ---- built-in HTTP-01 responder ------------------------------------------ */

struct acme_http01;

/*
 * Listen on "ADDR:PORT" ("[::1]:80", "0.0.0.0:5002"; port 0 picks a free
 * one) and serve published tokens from a background thread: HTTP/1.0, GET
 * /.well-known/acme-challenge/TOKEN only, 404 otherwise, bounded request
 * size and time. -EADDRINUSE, -EINVAL for a bad address.
 */
int acme_http01_start(const char *listen_addr, struct acme_http01 **out) ACME_WUR;
/* The bound port (useful with port 0). */
unsigned int acme_http01_port(const struct acme_http01 *s);
/* Serve keyauth for token (copies both; replaces an older value). Thread-safe. */
int acme_http01_publish(struct acme_http01 *s, const char *token, const char *keyauth) ACME_WUR;
/* Stop serving token. Thread-safe. */
void acme_http01_unpublish(struct acme_http01 *s, const char *token);
/* Stop the thread, close the socket, free. NULL is a no-op. */
void acme_http01_stop(struct acme_http01 *s);

/* ---- dns-01 through a CNAME delegation ------------------------------------ */

/*
 * Follow the CNAMEs of name (at most 8 hops) and put the last name into out
 * (name itself when it has no CNAME). resolver is "IPV4:PORT" or
 * "[IPV6]:PORT" (numeric), or NULL for the system's resolvers. -ELOOP past 8 hops, -EINVAL for a bad resolver or
 * answer, -EIO when no resolver state can be made. Thread-safe.
 */
int acme_dns_cname_target(const char *resolver, const char *name, char *out,
			  size_t len) ACME_WUR;

/* ---- built-in TLS-ALPN-01 responder (RFC 8737) ---------------------------- */

struct acme_tlsalpn01;

/*
 * Listen on "ADDR:PORT" (as acme_http01_start) and answer TLS handshakes
 * for ALPN "acme-tls/1" with the challenge certificate of the SNI name,
 * from a background thread; anything else is refused in the handshake.
 */
int acme_tlsalpn01_start(const char *listen_addr, struct acme_tlsalpn01 **out) ACME_WUR;
unsigned int acme_tlsalpn01_port(const struct acme_tlsalpn01 *s);
/* Make and serve the challenge certificate for name (replaces an older one). */
int acme_tlsalpn01_publish(struct acme_tlsalpn01 *s, const char *name,
			   const char *keyauth) ACME_WUR;
void acme_tlsalpn01_unpublish(struct acme_tlsalpn01 *s, const char *name);
/* Stop the thread, close the socket, free. NULL is a no-op. */
void acme_tlsalpn01_stop(struct acme_tlsalpn01 *s);

/* Adapters so a responder can be used directly as acme_challenge_ops. */
int acme_http01_publish_cb(void *responder, const char *token, const char *keyauth);
void acme_http01_unpublish_cb(void *responder, const char *token);

#endif
