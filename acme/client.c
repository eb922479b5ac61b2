/* SPDX-License-Identifier: MIT */
/*
 * The ACME client proper (RFC 8555): directory and account (7.1.1, 7.3),
 * nonces (7.2) and JWS-signed requests (6.2) with badNonce retries (6.5),
 * issuance (7.4: order, authorizations, challenges, finalize, download with
 * alternate chains), renewal information (RFC 9773) and revocation (7.6).
 * All signing goes through crypto/; this file only ever sees public JWKs,
 * thumbprints and signatures. Many threads may use one client: the
 * directory and account are set up once under a lock, and the nonce pool
 * and account URL are guarded by a small mutex.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "acme/acme_int.h"
#include "crypto/crypto.h"

#define ACME_ISSUE_TIMEOUT_MS (ACME_ISSUE_TIMEOUT_S * 1000u)
#define ACME_PEM_CHAIN "application/pem-certificate-chain"

struct acme_client {
	char *directory_url, *email, *eab_kid, *eab_hmac_key, *preferred_chain, *profile;
	struct crypto_key *key;
	const char *alg;
	char thumbprint[64];
	char *jwk;               /* compact public JWK JSON */
	unsigned int issue_timeout_ms;
	struct acme_http *http;

	pthread_mutex_t setup;   /* serialises directory fetch and registration */
	bool have_dir;
	struct acme_directory dir;

	pthread_mutex_t lock;    /* nonces and account_url */
	char *account_url;
	char nonces[ACME_NONCE_POOL][128];
	size_t nnonces;
};

static char *xstrdup(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

static void problem_set(struct acme_problem *p, const char *fmt, ...) UTIL_PRINTF(2, 3);

static void problem_set(struct acme_problem *p, const char *fmt, ...)
{
	va_list ap;

	acme_problem_clear(p);
	va_start(ap, fmt);
	vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
	va_end(ap);
}

static void log_problem(const char *what, const struct acme_problem *p)
{
	char s[1400];

	acme_problem_sentence(p, s, sizeof(s));
	/* The sentence starts with "acme: " already. */
	util_warn("acme: %s: %s", what, s + strlen("acme: "));
}

int acme_client_new(const struct acme_client_config *cfg, struct acme_client **out,
		    struct acme_problem *prob)
{
	struct acme_client *c = NULL;
	struct util_buf jwk;
	int rc;

	util_buf_init(&jwk, 16384, false);
	acme_problem_clear(prob);
	if (!cfg || !cfg->directory_url || strncmp(cfg->directory_url, "https://", 8)) {
		problem_set(prob, "the ACME directory must be an https:// URL");
		return -EINVAL;
	}
	if (!cfg->account_key || !crypto_key_is_private(cfg->account_key) ||
	    !crypto_jws_alg(cfg->account_key)) {
		problem_set(prob, "the account key must be a P-256 or RSA private key");
		return -EINVAL;
	}
	if (!!(cfg->eab_kid && *cfg->eab_kid) != !!(cfg->eab_hmac_key && *cfg->eab_hmac_key)) {
		problem_set(prob, "external account binding needs both eab_kid and eab_hmac_key");
		return -EINVAL;
	}
	if (cfg->email && strpbrk(cfg->email, " \t\r\n,<>")) {
		problem_set(prob, "contact email '%s' is not an address", cfg->email);
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->setup, NULL);
	pthread_mutex_init(&c->lock, NULL);
	c->key = crypto_key_up_ref(cfg->account_key);
	c->alg = crypto_jws_alg(c->key);
	c->issue_timeout_ms = cfg->issue_timeout_ms ? cfg->issue_timeout_ms : ACME_ISSUE_TIMEOUT_MS;
	c->directory_url = strdup(cfg->directory_url);
	c->email = xstrdup(cfg->email);
	c->eab_kid = xstrdup(cfg->eab_kid);
	c->eab_hmac_key = xstrdup(cfg->eab_hmac_key);
	c->preferred_chain = xstrdup(cfg->preferred_chain);
	c->profile = xstrdup(cfg->profile);
	c->account_url = xstrdup(cfg->account_url);
	if (!c->directory_url || (cfg->email && *cfg->email && !c->email) ||
	    (cfg->eab_kid && *cfg->eab_kid && (!c->eab_kid || !c->eab_hmac_key)) ||
	    (cfg->preferred_chain && *cfg->preferred_chain && !c->preferred_chain) ||
	    (cfg->profile && *cfg->profile && !c->profile) ||
	    (cfg->account_url && *cfg->account_url && !c->account_url)) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = crypto_jwk_json(c->key, &jwk)) || (rc = util_buf_terminate(&jwk)) ||
	    (rc = crypto_jwk_thumbprint(c->key, c->thumbprint))) {
		problem_set(prob, "cannot compute the account key's JWK");
		goto out;
	}
	c->jwk = (char *)util_buf_take(&jwk, NULL);
	rc = acme_http_new(cfg->ca_bundle, cfg->request_timeout_ms, &c->http, prob->detail,
			   sizeof(prob->detail));
	if (rc)
		goto out;
	acme_http_set_cancel(c->http, cfg->cancel);
	*out = c;
	c = NULL;
	rc = 0;
out:
	util_buf_free(&jwk);
	acme_client_free(c);
	return rc;
}

void acme_client_free(struct acme_client *c)
{
	if (!c)
		return;
	acme_http_free(c->http);
	acme_directory_clear(&c->dir);
	crypto_key_free(c->key);
	free(c->jwk);
	free(c->directory_url);
	free(c->email);
	free(c->eab_kid);
	util_secret_str_free(c->eab_hmac_key);
	free(c->preferred_chain);
	free(c->profile);
	free(c->account_url);
	pthread_mutex_destroy(&c->setup);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int acme_client_get_account_url(struct acme_client *c, char *out, size_t len)
{
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	if (!c->account_url)
		rc = -ENOENT;
	else if ((size_t)snprintf(out, len, "%s", c->account_url) >= len)
		rc = -ERANGE;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* ---- responses ---------------------------------------------------------- */

/* An HTTP error status into a problem, with Retry-After (RFC 8555 6.6). */
static void response_problem(const struct acme_response *r, struct acme_problem *prob)
{
	acme_problem_parse(r->body.data, r->body.len, r->status, prob);
	if (r->retry_after) {
		time_t t;

		if (acme_retry_after_parse(r->retry_after, util_now(), &t) == 0)
			prob->retry_after = t;
	}
}

/*
 * The configured profile against the directory's meta.profiles (c->setup
 * held, before have_dir): a server without profiles never sees the field
 * (said once in the log), a profile it does not offer is refused clearly.
 */
static int check_profile(struct acme_client *c, struct acme_problem *prob)
{
	char list[512] = "";
	size_t used = 0;

	if (!c->profile)
		return 0;
	if (!c->dir.has_profiles || !c->dir.nprofiles) {
		util_warn("acme: %s offers no certificate profiles: profile %s is not sent",
			  c->directory_url, c->profile);
		free(c->profile);
		c->profile = NULL;
		return 0;
	}
	for (size_t i = 0; i < c->dir.nprofiles; i++) {
		if (!strcmp(c->dir.profiles[i], c->profile))
			return 0;
		if (used < sizeof(list))
			used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
						 i ? ", " : "", c->dir.profiles[i]);
	}
	problem_set(prob, "profile %s is not offered by the ACME server (it offers %s)",
		    c->profile, list);
	return -EINVAL;
}

static int ensure_directory(struct acme_client *c, struct acme_problem *prob)
{
	struct acme_response r;
	int rc;

	/* Once set, dir is immutable: readers need no lock after this check. */
	pthread_mutex_lock(&c->setup);
	acme_response_init(&r);
	if (c->have_dir) {
		rc = 0;
		goto out;
	}
	rc = acme_http_request(c->http, "GET", c->directory_url, NULL, 0, "application/json",
			       &r, prob);
	if (rc)
		goto out;
	if (r.status != 200) {
		response_problem(&r, prob);
		rc = -EPROTO;
		goto out;
	}
	rc = acme_directory_parse(r.body.data, r.body.len, &c->dir, prob->detail,
				  sizeof(prob->detail));
	if (rc)
		goto out;
	if (c->dir.eab_required && !c->eab_kid && !c->account_url) {
		problem_set(prob, "the ACME server requires external account binding: "
				  "set eab_kid and eab_hmac_key");
		acme_directory_clear(&c->dir);
		rc = -EINVAL;
		goto out;
	}
	rc = check_profile(c, prob);
	if (rc) {
		acme_directory_clear(&c->dir);
		goto out;
	}
	c->have_dir = true;
	rc = 0;
out:
	pthread_mutex_unlock(&c->setup);
	acme_response_clear(&r);
	return rc;
}

/* ---- nonces (7.2) -------------------------------------------------------- */

static void nonce_put(struct acme_client *c, const struct acme_response *r)
{
	if (!r->has_nonce)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->nnonces == ACME_NONCE_POOL) {
		/* Drop the oldest: newer nonces are less likely to have expired. */
		memmove(c->nonces[0], c->nonces[1], sizeof(c->nonces[0]) * (ACME_NONCE_POOL - 1));
		c->nnonces--;
	}
	snprintf(c->nonces[c->nnonces++], sizeof(c->nonces[0]), "%s", r->nonce);
	pthread_mutex_unlock(&c->lock);
}

static int nonce_get(struct acme_client *c, char out[128], struct acme_problem *prob)
{
	struct acme_response r;
	int rc;

	pthread_mutex_lock(&c->lock);
	if (c->nnonces) {
		c->nnonces--;
		memcpy(out, c->nonces[c->nnonces], 128);
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	pthread_mutex_unlock(&c->lock);
	acme_response_init(&r);
	rc = acme_http_request(c->http, "HEAD", c->dir.new_nonce, NULL, 0, NULL, &r, prob);
	if (rc)
		goto out;
	if (!r.has_nonce) {
		problem_set(prob, "%s: no Replay-Nonce in the response (HTTP %d)",
			    c->dir.new_nonce, r.status);
		rc = -EPROTO;
		goto out;
	}
	memcpy(out, r.nonce, 128);
	rc = 0;
out:
	acme_response_clear(&r);
	return rc;
}

/* ---- JWS (6.2) ------------------------------------------------------------ */

/* b64url(protected) "." b64url(payload) "." signature as flattened JSON. */
static int jws_build(struct acme_client *c, const char *url, const char *nonce, const char *kid,
		     const char *payload, char **out)
{
	struct util_buf prot, pay, input, sig;
	json_t *hdr = NULL, *jwk = NULL, *body = NULL;
	char *hs = NULL;
	int rc = -ENOMEM;

	util_buf_init(&prot, 65536, false);
	util_buf_init(&pay, 4 * 1024 * 1024, false);
	util_buf_init(&input, 8 * 1024 * 1024, false);
	util_buf_init(&sig, 4096, false);
	hdr = json_pack("{s:s, s:s, s:s}", "alg", c->alg, "nonce", nonce, "url", url);
	if (!hdr)
		goto out;
	if (kid) {
		if (json_object_set_new(hdr, "kid", json_string(kid)))
			goto out;
	} else {
		jwk = json_loads(c->jwk, 0, NULL);
		if (!jwk || json_object_set_new(hdr, "jwk", jwk))
			goto out;
	}
	hs = json_dumps(hdr, JSON_COMPACT);
	if (!hs)
		goto out;
	if ((rc = crypto_b64url(hs, strlen(hs), &prot)) ||
	    (rc = crypto_b64url(payload, strlen(payload), &pay)) ||
	    (rc = util_buf_append(&input, prot.data, prot.len)) ||
	    (rc = util_buf_append(&input, ".", 1)) ||
	    (rc = util_buf_append(&input, pay.data, pay.len)) ||
	    (rc = crypto_jws_sign(c->key, input.data, input.len, &sig)) ||
	    (rc = util_buf_terminate(&prot)) || (rc = util_buf_terminate(&pay)) ||
	    (rc = util_buf_terminate(&sig)))
		goto out;
	body = json_pack("{s:s, s:s, s:s}", "protected", (char *)prot.data, "payload",
			 pay.len ? (char *)pay.data : "", "signature", (char *)sig.data);
	rc = -ENOMEM;
	if (!body || !(*out = json_dumps(body, JSON_COMPACT)))
		goto out;
	rc = 0;
out:
	json_decref(hdr);
	json_decref(body);
	free(hs);
	util_buf_free(&prot);
	util_buf_free(&pay);
	util_buf_free(&input);
	util_buf_free(&sig);
	return rc;
}

/*
 * Signed POST (payload "" = POST-as-GET, 6.3). kid mode unless use_jwk.
 * badNonce (6.5) is retried with the nonce the error carried, at most
 * ACME_BADNONCE_TRIES times. -EPROTO with prob for an HTTP error.
 */
static int acme_post(struct acme_client *c, const char *url, const char *payload, bool use_jwk,
		     const char *accept, struct acme_response *r, struct acme_problem *prob)
{
	char nonce[128];
	char *kid = NULL, *body = NULL;
	int rc = -EPROTO, tries;

	if (!use_jwk) {
		pthread_mutex_lock(&c->lock);
		kid = c->account_url ? strdup(c->account_url) : NULL;
		pthread_mutex_unlock(&c->lock);
		if (!kid) {
			problem_set(prob, "no ACME account");
			return -EINVAL;
		}
	}
	for (tries = 0; tries < ACME_BADNONCE_TRIES; tries++) {
		free(body);
		body = NULL;
		if ((rc = nonce_get(c, nonce, prob)))
			goto out;
		rc = jws_build(c, url, nonce, kid, payload, &body);
		if (rc) {
			problem_set(prob, "cannot sign the request to %s", url);
			goto out;
		}
		rc = acme_http_request(c->http, "POST", url, body, strlen(body), accept, r, prob);
		if (rc)
			goto out;
		nonce_put(c, r);
		if (r->status < 400) {
			rc = 0;
			goto out;
		}
		response_problem(r, prob);
		rc = -EPROTO;
		if (!(r->status == 400 && acme_problem_is(prob, "badNonce")))
			goto out;
		util_debug("acme: %s: badNonce, retrying (%d)", url, tries + 1);
	}
out:
	free(kid);
	free(body);
	return rc;
}

/* ---- account (7.3) ------------------------------------------------------- */

/* 7.3.4: a JWS by the EAB MAC key over the account JWK. */
static int eab_build(struct acme_client *c, json_t **out)
{
	struct util_buf key, prot, pay, input, mac;
	json_t *hdr = NULL;
	char *hs = NULL;
	int rc = -ENOMEM;

	util_buf_init(&key, 1024, true);
	util_buf_init(&prot, 4096, false);
	util_buf_init(&pay, 4096, false);
	util_buf_init(&input, 8192, false);
	util_buf_init(&mac, 256, false);
	hdr = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", c->eab_kid, "url",
			c->dir.new_account);
	if (!hdr || !(hs = json_dumps(hdr, JSON_COMPACT)))
		goto out;
	rc = crypto_b64url_decode(c->eab_hmac_key, strlen(c->eab_hmac_key), &key);
	if (rc || key.len == 0) {
		rc = -EINVAL;
		goto out;
	}
	if ((rc = crypto_b64url(hs, strlen(hs), &prot)) ||
	    (rc = crypto_b64url(c->jwk, strlen(c->jwk), &pay)) ||
	    (rc = util_buf_append(&input, prot.data, prot.len)) ||
	    (rc = util_buf_append(&input, ".", 1)) ||
	    (rc = util_buf_append(&input, pay.data, pay.len)) ||
	    (rc = crypto_hmac_sha256_b64url(key.data, key.len, input.data, input.len, &mac)) ||
	    (rc = util_buf_terminate(&prot)) || (rc = util_buf_terminate(&pay)) ||
	    (rc = util_buf_terminate(&mac)))
		goto out;
	*out = json_pack("{s:s, s:s, s:s}", "protected", (char *)prot.data, "payload",
			 (char *)pay.data, "signature", (char *)mac.data);
	rc = *out ? 0 : -ENOMEM;
out:
	json_decref(hdr);
	free(hs);
	util_buf_free(&key);
	util_buf_free(&prot);
	util_buf_free(&pay);
	util_buf_free(&input);
	util_buf_free(&mac);
	return rc;
}

static int register_account(struct acme_client *c, struct acme_problem *prob)
{
	struct acme_response r;
	json_t *req = NULL, *eab = NULL;
	char *payload = NULL, *url = NULL;
	char mailto[512];
	enum acme_status st;
	int rc = -ENOMEM;

	acme_response_init(&r);
	req = json_pack("{s:b}", "termsOfServiceAgreed", 1);
	if (!req)
		goto out;
	if (c->email) {
		snprintf(mailto, sizeof(mailto), "mailto:%s", c->email);
		if (json_object_set_new(req, "contact", json_pack("[s]", mailto)))
			goto out;
	}
	if (c->eab_kid) {
		rc = eab_build(c, &eab);
		if (rc) {
			problem_set(prob, "cannot build the external account binding "
					  "(is eab_hmac_key base64url?)");
			goto out;
		}
		rc = -ENOMEM;
		if (json_object_set_new(req, "externalAccountBinding", eab))
			goto out;
	}
	if (!(payload = json_dumps(req, JSON_COMPACT)))
		goto out;
	rc = acme_post(c, c->dir.new_account, payload, true, NULL, &r, prob);
	if (rc)
		goto out;
	/* 201 for a new account, 200 when the key already has one (7.3.1). */
	if ((r.status != 200 && r.status != 201) || !r.location ||
	    acme_url_resolve(c->dir.new_account, r.location, &url)) {
		problem_set(prob, "newAccount: HTTP %d without a usable Location", r.status);
		rc = -EPROTO;
		goto out;
	}
	if (acme_account_parse_status(r.body.data, r.body.len, &st) == 0 &&
	    st != ACME_STATUS_VALID) {
		problem_set(prob, "the ACME account %s is %s", url, acme_status_name(st));
		rc = -EPROTO;
		goto out;
	}
	util_info("acme: account %s: %s", url, r.status == 201 ? "registered" : "found");
	pthread_mutex_lock(&c->lock);
	free(c->account_url);
	c->account_url = url;
	url = NULL;
	pthread_mutex_unlock(&c->lock);
	rc = 0;
out:
	json_decref(req);
	free(payload);
	free(url);
	acme_response_clear(&r);
	return rc;
}

int acme_client_account(struct acme_client *c, struct acme_problem *prob)
{
	bool have;
	int rc;

	acme_problem_clear(prob);
	rc = ensure_directory(c, prob);
	if (rc)
		return rc;
	pthread_mutex_lock(&c->setup);
	pthread_mutex_lock(&c->lock);
	have = c->account_url != NULL;
	pthread_mutex_unlock(&c->lock);
	rc = have ? 0 : register_account(c, prob);
	pthread_mutex_unlock(&c->setup);
	return rc;
}

/*
 * A signed request in account (kid) mode; when the server no longer knows
 * the stored account (accountDoesNotExist, e.g. a reset test CA), register
 * again once and retry.
 */
static int account_post(struct acme_client *c, const char *url, const char *payload,
			const char *accept, struct acme_response *r, struct acme_problem *prob)
{
	int rc = acme_post(c, url, payload, false, accept, r, prob);

	if (rc == -EPROTO && acme_problem_is(prob, "accountDoesNotExist")) {
		util_warn("acme: account unknown to the server, registering again");
		pthread_mutex_lock(&c->setup);
		pthread_mutex_lock(&c->lock);
		free(c->account_url);
		c->account_url = NULL;
		pthread_mutex_unlock(&c->lock);
		rc = register_account(c, prob);
		pthread_mutex_unlock(&c->setup);
		if (rc == 0)
			rc = acme_post(c, url, payload, false, accept, r, prob);
	}
	return rc;
}

/* ---- issuance (7.4) ------------------------------------------------------- */

struct published {
	enum acme_challenge_type type;
	char *token;    /* http-01 */
	char *record;   /* dns-01 */
	char *value;
	char *authz_url;
	char *chall_url;
	bool active;
};

struct issue {
	struct acme_client *c;
	const struct acme_issue_request *req;
	const struct acme_challenge_ops *ops;
	struct acme_problem *prob;
	uint64_t deadline;
	char *order_url;
	struct acme_order order;
	struct published *pub;
	size_t npub;
};

/* Sleep ms, in short slices so that a shutdown ends the wait (-ECANCELED). */
static int sleep_ms(struct acme_client *c, uint64_t ms)
{
	uint64_t end = util_mono_ms() + ms, now;

	while ((now = util_mono_ms()) < end) {
		uint64_t slice = end - now < 50 ? end - now : 50;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)slice * 1000000L };

		if (acme_http_cancelled(c->http))
			return -ECANCELED;
		nanosleep(&ts, NULL);
	}
	return acme_http_cancelled(c->http) ? -ECANCELED : 0;
}

void acme_client_cancel(struct acme_client *c)
{
	if (c)
		acme_http_cancel(c->http);
}

/*
 * Wait before polling again: the exponential backoff, or the server's
 * Retry-After when that is later (7.4, "clients SHOULD follow it"); a
 * Retry-After of 0 never polls faster than the backoff. Never past the
 * issuance deadline.
 */
static int poll_wait(struct issue *x, const struct acme_response *r, unsigned int *backoff,
		     const char *what)
{
	uint64_t now = util_mono_ms(), ms = *backoff;
	time_t t = 0;

	if (r->retry_after && acme_retry_after_parse(r->retry_after, util_now(), &t) == 0) {
		long long d = (long long)(t - util_now()) * 1000;

		if (d > (long long)ms)
			ms = (uint64_t)d;
	}
	if (now + ms > x->deadline) {
		if (t > util_now())
			problem_set(x->prob, "the server asked to poll %s again in %lld s, after "
					     "this issuance's deadline; trying again later",
				    what, (long long)(t - util_now()));
		else
			problem_set(x->prob, "timed out waiting for %s", what);
		/* The server asked for a later visit: let the engine persist it. */
		x->prob->retry_after = t;
		return -ETIMEDOUT;
	}
	if (sleep_ms(x->c, ms)) {
		problem_set(x->prob, "cancelled while waiting for %s (shutting down)", what);
		return -ECANCELED;
	}
	*backoff = *backoff * 2 > ACME_POLL_MAX_MS ? ACME_POLL_MAX_MS : *backoff * 2;
	return 0;
}

static int deadline_check(struct issue *x)
{
	if (util_mono_ms() > x->deadline) {
		problem_set(x->prob, "issuance took longer than %u s",
			    x->c->issue_timeout_ms / 1000);
		return -ETIMEDOUT;
	}
	return 0;
}

static int fetch_order(struct issue *x, struct acme_response *r)
{
	int rc = account_post(x->c, x->order_url, "", NULL, r, x->prob);

	if (rc)
		return rc;
	acme_order_clear(&x->order);
	rc = acme_order_parse(r->body.data, r->body.len, &x->order, x->prob->detail,
			      sizeof(x->prob->detail));
	return rc;
}

static int fetch_authz(struct issue *x, const char *url, struct acme_authz *a,
		       struct acme_response *r)
{
	int rc = account_post(x->c, url, "", NULL, r, x->prob);

	if (rc)
		return rc;
	acme_problem_clear(x->prob);
	return acme_authz_parse(r->body.data, r->body.len, a, x->prob->detail,
				sizeof(x->prob->detail));
}

/* Are the order's identifiers the requested names (as a set)? */
static bool same_names(char *const *a, size_t na, const char *const *b, size_t nb)
{
	for (size_t i = 0; i < na; i++) {
		bool found = false;

		for (size_t k = 0; k < nb && !found; k++)
			found = !strcasecmp(a[i], b[k]);
		if (!found)
			return false;
	}
	for (size_t k = 0; k < nb; k++) {
		bool found = false;

		for (size_t i = 0; i < na && !found; i++)
			found = !strcasecmp(a[i], b[k]);
		if (!found)
			return false;
	}
	return true;
}

static int new_order(struct issue *x, bool with_replaces, struct acme_response *r)
{
	struct acme_client *c = x->c;
	json_t *req = NULL, *ids = NULL;
	char *payload = NULL;
	int rc = -ENOMEM;

	if (!(req = json_object()) || !(ids = json_array()))
		goto out;
	for (size_t i = 0; i < x->req->nnames; i++)
		if (json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns", "value",
							 x->req->names[i])))
			goto out;
	if (json_object_set(req, "identifiers", ids))
		goto out;
	/* RFC 9773 5: the certificate this order replaces. */
	if (with_replaces && x->req->replaces && *x->req->replaces &&
	    json_object_set_new(req, "replaces", json_string(x->req->replaces)))
		goto out;
	if (c->profile && json_object_set_new(req, "profile", json_string(c->profile)))
		goto out;
	if (!(payload = json_dumps(req, JSON_COMPACT)))
		goto out;
	rc = account_post(c, c->dir.new_order, payload, NULL, r, x->prob);
	if (rc)
		goto out;
	free(x->order_url);
	x->order_url = NULL;
	if (r->status != 201 || !r->location ||
	    acme_url_resolve(c->dir.new_order, r->location, &x->order_url)) {
		problem_set(x->prob, "newOrder: HTTP %d without a usable Location", r->status);
		rc = -EPROTO;
		goto out;
	}
	acme_order_clear(&x->order);
	rc = acme_order_parse(r->body.data, r->body.len, &x->order, x->prob->detail,
			      sizeof(x->prob->detail));
	if (rc)
		goto out;
	util_info("acme: %s: order %s created", x->req->names[0], x->order_url);
	rc = 0;
out:
	json_decref(req);
	json_decref(ids);
	free(payload);
	return rc;
}

/* Resume a saved order when it is still usable; otherwise start anew. */
static int open_order(struct issue *x, struct acme_response *r)
{
	int rc;

	if (x->req->resume_order_url && *x->req->resume_order_url) {
		x->order_url = strdup(x->req->resume_order_url);
		if (!x->order_url)
			return -ENOMEM;
		rc = fetch_order(x, r);
		if (rc == 0 && x->order.status != ACME_STATUS_INVALID &&
		    x->order.status != ACME_STATUS_EXPIRED &&
		    same_names(x->order.identifiers, x->order.nidentifiers, x->req->names,
			       x->req->nnames)) {
			util_info("acme: %s: resuming order %s (%s)", x->req->names[0],
				  x->order_url, acme_status_name(x->order.status));
			return 0;
		}
		if (rc == -ENOMEM || rc == -EIO || rc == -ETIMEDOUT || rc == -ECANCELED)
			return rc;
		util_info("acme: %s: saved order %s is not usable, starting a new one",
			  x->req->names[0], x->order_url);
		acme_problem_clear(x->prob);
	}
	rc = new_order(x, true, r);
	/* A CA may refuse "replaces" (already replaced, unknown): drop it once. */
	if (rc == -EPROTO && x->req->replaces &&
	    (acme_problem_is(x->prob, "alreadyReplaced") || r->status == 409 ||
	     acme_problem_is(x->prob, "malformed"))) {
		log_problem("newOrder with replaces", x->prob);
		acme_problem_clear(x->prob);
		rc = new_order(x, false, r);
	}
	if (rc == 0 && !same_names(x->order.identifiers, x->order.nidentifiers, x->req->names,
				   x->req->nnames)) {
		problem_set(x->prob, "the server created an order for other names than requested");
		rc = -EPROTO;
	}
	return rc;
}

static struct acme_challenge *pick_challenge(struct issue *x, struct acme_authz *a,
					     enum acme_challenge_type *type)
{
	const struct acme_challenge_ops *ops = x->ops;
	bool http_ok = ops->http01_publish != NULL, dns_ok = ops->dns01_add != NULL;
	bool alpn_ok = ops->tlsalpn01_publish != NULL;
	const char *want;

	/* 7.1.3/8.4: wildcard identifiers are only provable through DNS. */
	if (a->wildcard) {
		if (!dns_ok) {
			problem_set(x->prob, "*.%s is a wildcard and needs dns-01, "
					     "but no DNS hook is configured", a->identifier);
			return NULL;
		}
		*type = ACME_CHALLENGE_DNS01;
	} else if (ops->prefer == ACME_CHALLENGE_DNS01 && dns_ok) {
		*type = ACME_CHALLENGE_DNS01;
	} else if (ops->prefer == ACME_CHALLENGE_TLSALPN01 && alpn_ok) {
		*type = ACME_CHALLENGE_TLSALPN01;
	} else if (http_ok) {
		*type = ACME_CHALLENGE_HTTP01;
	} else if (dns_ok) {
		*type = ACME_CHALLENGE_DNS01;
	} else {
		problem_set(x->prob, "%s: no way to answer a challenge is configured", a->identifier);
		return NULL;
	}
	want = *type == ACME_CHALLENGE_DNS01	 ? "dns-01" :
	       *type == ACME_CHALLENGE_TLSALPN01 ? "tls-alpn-01" :
						   "http-01";
	for (size_t i = 0; i < a->nchallenges; i++)
		if (!strcmp(a->challenges[i].type, want) && a->challenges[i].token)
			return &a->challenges[i];
	problem_set(x->prob, "%s%s: the server offers no %s challenge", a->wildcard ? "*." : "",
		    a->identifier, want);
	return NULL;
}

static void published_free(struct issue *x)
{
	for (size_t i = 0; i < x->npub; i++) {
		struct published *p = &x->pub[i];

		if (p->active && p->type == ACME_CHALLENGE_HTTP01 && x->ops->http01_unpublish)
			x->ops->http01_unpublish(x->ops->arg, p->token);
		if (p->active && p->type == ACME_CHALLENGE_DNS01 && x->ops->dns01_del)
			x->ops->dns01_del(x->ops->arg, p->record, p->value);
		if (p->active && p->type == ACME_CHALLENGE_TLSALPN01 && x->ops->tlsalpn01_unpublish)
			x->ops->tlsalpn01_unpublish(x->ops->arg, p->record);
		free(p->token);
		free(p->record);
		free(p->value);
		free(p->authz_url);
		free(p->chall_url);
	}
	free(x->pub);
	x->pub = NULL;
	x->npub = 0;
}

/* Publish the answer for one pending authorization (8.1, 8.3, 8.4). */
static int prepare_authz(struct issue *x, const char *authz_url, struct acme_authz *a)
{
	enum acme_challenge_type type;
	struct acme_challenge *ch;
	struct published *p = &x->pub[x->npub];
	struct util_buf txt;
	char *keyauth = NULL;
	int rc = -ENOMEM;

	util_buf_init(&txt, 256, false);
	ch = pick_challenge(x, a, &type);
	if (!ch) {
		rc = -EINVAL;
		goto out;
	}
	/* 8.1: keyAuthorization = token || '.' || base64url(JWK thumbprint) */
	if (asprintf(&keyauth, "%s.%s", ch->token, x->c->thumbprint) < 0) {
		keyauth = NULL;
		goto out;
	}
	memset(p, 0, sizeof(*p));
	p->type = type;
	if (!(p->authz_url = strdup(authz_url)) || !(p->chall_url = strdup(ch->url)))
		goto out;
	x->npub++;
	if (type == ACME_CHALLENGE_TLSALPN01) {
		/* RFC 8737 3: the identifier's certificate carries the keyauth digest. */
		if (!(p->record = strdup(a->identifier)))
			goto out;
		rc = x->ops->tlsalpn01_publish(x->ops->arg, a->identifier, keyauth);
		if (rc) {
			problem_set(x->prob, "%s: cannot publish the tls-alpn-01 certificate: %s",
				    a->identifier, strerror(-rc));
			goto out;
		}
	} else if (type == ACME_CHALLENGE_HTTP01) {
		if (!(p->token = strdup(ch->token)))
			goto out;
		rc = x->ops->http01_publish(x->ops->arg, ch->token, keyauth);
		if (rc) {
			problem_set(x->prob, "%s: cannot publish the http-01 token: %s",
				    a->identifier, strerror(-rc));
			goto out;
		}
	} else {
		if ((rc = crypto_sha256_b64url(keyauth, strlen(keyauth), &txt)) ||
		    (rc = util_buf_terminate(&txt)))
			goto out;
		rc = -ENOMEM;
		if (asprintf(&p->record, "_acme-challenge.%s", a->identifier) < 0) {
			p->record = NULL;
			goto out;
		}
		if (!(p->value = strdup((char *)txt.data)))
			goto out;
		rc = x->ops->dns01_add(x->ops->arg, p->record, p->value);
		if (rc) {
			problem_set(x->prob, "%s: the DNS hook could not add %s", a->identifier,
				    p->record);
			goto out;
		}
	}
	p->active = true;
	rc = 0;
out:
	free(keyauth);
	util_buf_free(&txt);
	return rc;
}

/* The problem of the challenge we answered, for an invalid authorization. */
static void authz_failure(struct issue *x, const struct acme_authz *a, const char *chall_url)
{
	for (size_t i = 0; i < a->nchallenges; i++) {
		if (a->challenges[i].has_error &&
		    (!chall_url || !strcmp(a->challenges[i].url, chall_url))) {
			*x->prob = a->challenges[i].error;
			x->prob->validation = true;
			return;
		}
	}
	problem_set(x->prob, "%s: authorization is %s", a->identifier, acme_status_name(a->status));
	x->prob->validation = a->status == ACME_STATUS_INVALID;
}

static int do_authorizations(struct issue *x, struct acme_response *r)
{
	struct acme_authz a;
	int rc = 0;
	size_t i;

	memset(&a, 0, sizeof(a));
	x->pub = calloc(x->order.nauthzs + 1, sizeof(*x->pub));
	if (!x->pub)
		return -ENOMEM;
	/* Publish every answer first (dns-01 hooks block until visible). */
	for (i = 0; i < x->order.nauthzs; i++) {
		if ((rc = deadline_check(x)) || (rc = fetch_authz(x, x->order.authzs[i], &a, r)))
			goto out;
		if (a.status == ACME_STATUS_PENDING) {
			if ((rc = prepare_authz(x, x->order.authzs[i], &a)))
				goto out;
		} else if (a.status != ACME_STATUS_VALID) {
			authz_failure(x, &a, NULL);
			rc = -EPROTO;
			goto out;
		}
		acme_authz_clear(&a);
	}
	/* 7.5.1: tell the server to validate; the body is exactly {}. */
	for (i = 0; i < x->npub; i++) {
		if ((rc = deadline_check(x)) ||
		    (rc = account_post(x->c, x->pub[i].chall_url, "{}", NULL, r, x->prob)))
			goto out;
	}
	/* 7.5.1: poll each authorization until it leaves "pending". */
	for (i = 0; i < x->npub; i++) {
		unsigned int backoff = ACME_POLL_FIRST_MS;

		for (;;) {
			if ((rc = fetch_authz(x, x->pub[i].authz_url, &a, r)))
				goto out;
			if (a.status == ACME_STATUS_VALID)
				break;
			if (a.status != ACME_STATUS_PENDING) {
				authz_failure(x, &a, x->pub[i].chall_url);
				rc = -EPROTO;
				goto out;
			}
			acme_authz_clear(&a);
			if ((rc = poll_wait(x, r, &backoff, "the authorization")))
				goto out;
		}
		acme_authz_clear(&a);
	}
	rc = 0;
out:
	acme_authz_clear(&a);
	published_free(x);
	return rc;
}

static int finalize(struct issue *x, struct acme_response *r)
{
	struct util_buf csr;
	json_t *req = NULL;
	char *payload = NULL;
	int rc;

	util_buf_init(&csr, 64 * 1024, false);
	/* 7.4: csr is the base64url DER of the PKCS#10 request. */
	if ((rc = crypto_b64url(x->req->csr_der, x->req->csr_len, &csr)) ||
	    (rc = util_buf_terminate(&csr)))
		goto out;
	rc = -ENOMEM;
	if (!(req = json_pack("{s:s}", "csr", (char *)csr.data)) ||
	    !(payload = json_dumps(req, JSON_COMPACT)))
		goto out;
	rc = account_post(x->c, x->order.finalize, payload, NULL, r, x->prob);
	if (rc)
		goto out;
	acme_order_clear(&x->order);
	rc = acme_order_parse(r->body.data, r->body.len, &x->order, x->prob->detail,
			      sizeof(x->prob->detail));
out:
	json_decref(req);
	free(payload);
	util_buf_free(&csr);
	return rc;
}

/*
 * Check a downloaded chain and turn it into sorted PEM: leaf covers exactly
 * the names, holds the CSR's key, and every link verifies.
 */
static int check_chain(struct issue *x, const struct util_buf *pem, struct util_buf *out,
		       char *top_issuer_cn, size_t cnlen)
{
	struct crypto_chain *in = NULL, *sorted = NULL;
	struct crypto_csr *csr = NULL;
	struct crypto_key *key = NULL;
	struct crypto_cert_info info;
	struct crypto_cert *leaf, *top;
	struct crypto_err err = { "" };
	char cn[256];
	int rc;

	memset(&info, 0, sizeof(info));
	rc = crypto_chain_parse(pem->data, pem->len, &in, &err);
	if (rc) {
		problem_set(x->prob, "the downloaded certificate: %s", err.msg);
		goto out;
	}
	rc = crypto_chain_sort(in, &sorted, &err);
	if (rc) {
		problem_set(x->prob, "the downloaded certificate %s", err.msg);
		goto out;
	}
	leaf = crypto_chain_get0(sorted, 0);
	top = crypto_chain_get0(in, crypto_chain_count(in) - 1);
	if (top_issuer_cn) {
		top_issuer_cn[0] = '\0';
		if (crypto_cert_info(top, &info) == 0)
			acme_dn_cn(info.issuer, top_issuer_cn, cnlen);
		crypto_cert_info_clear(&info);
		memset(&info, 0, sizeof(info));
	}
	if ((rc = crypto_cert_info(leaf, &info)))
		goto out;
	if (!same_names(info.sans, info.nsans, x->req->names, x->req->nnames)) {
		acme_dn_cn(info.subject, cn, sizeof(cn));
		problem_set(x->prob, "the issued certificate (%s) does not name exactly the "
				     "requested domains", cn);
		rc = -EPROTO;
		goto out;
	}
	rc = crypto_csr_parse(x->req->csr_der, x->req->csr_len, &csr, &err);
	if (rc == 0)
		rc = crypto_csr_get1_key(csr, &key);
	if (rc) {
		problem_set(x->prob, "the CSR cannot be read back: %s", err.msg);
		goto out;
	}
	if (!crypto_cert_matches_key(leaf, key)) {
		problem_set(x->prob, "the issued certificate is not for the CSR's key");
		rc = -EPROTO;
		goto out;
	}
	util_buf_reset(out);
	rc = crypto_chain_to_pem(sorted, out);
out:
	crypto_cert_info_clear(&info);
	crypto_chain_free(in);
	crypto_chain_free(sorted);
	crypto_csr_free(csr);
	crypto_key_free(key);
	return rc;
}

/* Does the chain's top certificate chain up to the preferred issuer? */
static bool chain_preferred(const char *pref, const char *issuer_cn)
{
	return pref && issuer_cn[0] && !strcmp(pref, issuer_cn);
}

/* 7.4.2: download; with preferred_chain, consider Link rel="alternate". */
static int download(struct issue *x, struct acme_response *r, struct util_buf *out)
{
	const char *pref = x->c->preferred_chain;
	char *alts[ACME_MAX_ALTERNATES] = { NULL };
	size_t nalts = 0, i;
	char cn[256];
	struct util_buf alt;
	int rc;

	util_buf_init(&alt, ACME_BODY_MAX, false);
	rc = account_post(x->c, x->order.certificate, "", ACME_PEM_CHAIN, r, x->prob);
	if (rc)
		goto out;
	for (i = 0; i < r->nlinks; i++) {
		char *raw[ACME_MAX_ALTERNATES];
		size_t nraw = 0;

		if (acme_link_parse(r->links[i], "alternate", raw, ACME_MAX_ALTERNATES, &nraw))
			util_debug("acme: ignoring a malformed Link header");
		for (size_t k = 0; k < nraw; k++) {
			if (nalts < ACME_MAX_ALTERNATES &&
			    acme_url_resolve(x->order.certificate, raw[k], &alts[nalts]) == 0)
				nalts++;
			free(raw[k]);
		}
	}
	rc = check_chain(x, &r->body, out, cn, sizeof(cn));
	if (rc)
		goto out;
	if (!pref || chain_preferred(pref, cn))
		goto out;
	for (i = 0; i < nalts; i++) {
		struct acme_problem p;

		acme_response_clear(r);
		if (account_post(x->c, alts[i], "", ACME_PEM_CHAIN, r, &p)) {
			log_problem("alternate chain", &p);
			continue;
		}
		if (check_chain(x, &r->body, &alt, cn, sizeof(cn))) {
			log_problem("alternate chain", x->prob);
			acme_problem_clear(x->prob);
			continue;
		}
		if (chain_preferred(pref, cn)) {
			util_buf_reset(out);
			rc = util_buf_append(out, alt.data, alt.len);
			goto out;
		}
	}
	util_info("acme: %s: no chain issued by '%s', keeping the default", x->req->names[0], pref);
	rc = 0;
out:
	for (i = 0; i < nalts; i++)
		free(alts[i]);
	util_buf_free(&alt);
	return rc;
}

static int validate_request(const struct acme_issue_request *req, struct acme_problem *prob)
{
	if (!req || !req->names || req->nnames == 0 || req->nnames > ACME_MAX_AUTHZ ||
	    !req->csr_der || req->csr_len == 0 || !req->ops) {
		problem_set(prob, "issue: names, CSR and challenge callbacks are required");
		return -EINVAL;
	}
	for (size_t i = 0; i < req->nnames; i++)
		if (!req->names[i] || !*req->names[i] || strlen(req->names[i]) > 253) {
			problem_set(prob, "issue: name %zu is empty or too long", i);
			return -EINVAL;
		}
	return 0;
}

int acme_issue(struct acme_client *c, const struct acme_issue_request *req,
	       struct util_buf *chain_pem, struct acme_problem *prob)
{
	struct issue x;
	struct acme_response r;
	unsigned int backoff = ACME_POLL_FIRST_MS;
	bool authz_done = false, finalized = false;
	int rc;

	memset(&x, 0, sizeof(x));
	acme_response_init(&r);
	acme_problem_clear(prob);
	x.c = c;
	x.req = req;
	x.ops = req ? req->ops : NULL;
	x.prob = prob;
	x.deadline = util_mono_ms() + c->issue_timeout_ms;
	if ((rc = validate_request(req, prob)) || (rc = acme_client_account(c, prob)) ||
	    (rc = open_order(&x, &r)))
		goto out;
	if (x.ops->save_order && (rc = x.ops->save_order(x.ops->arg, x.order_url))) {
		problem_set(prob, "cannot save the order state: %s", strerror(-rc));
		goto out;
	}
	for (;;) {
		if ((rc = deadline_check(&x)))
			goto out;
		switch (x.order.status) {
		case ACME_STATUS_PENDING:
			if (!authz_done) {
				rc = do_authorizations(&x, &r);
				authz_done = true;
				if (rc)
					goto out;
				backoff = ACME_POLL_FIRST_MS;
			} else if ((rc = poll_wait(&x, &r, &backoff, "the order to become ready"))) {
				goto out;
			}
			rc = fetch_order(&x, &r);
			break;
		case ACME_STATUS_READY:
			if (!finalized) {
				rc = finalize(&x, &r);
				finalized = true;
				backoff = ACME_POLL_FIRST_MS;
				break;
			}
			/* Finalized but not yet processing: poll like processing. */
			__attribute__((fallthrough));
		case ACME_STATUS_PROCESSING:
			if ((rc = poll_wait(&x, &r, &backoff, "the certificate")))
				goto out;
			rc = fetch_order(&x, &r);
			break;
		case ACME_STATUS_VALID:
			rc = download(&x, &r, chain_pem);
			if (rc == 0)
				util_info("acme: %s: certificate issued (order %s)", req->names[0],
					  x.order_url);
			goto out;
		default:
			if (x.order.has_error)
				*prob = x.order.error;
			else
				problem_set(prob, "order %s is %s", x.order_url,
					    acme_status_name(x.order.status));
			rc = -EPROTO;
			goto out;
		}
		if (rc)
			goto out;
	}
out:
	if (rc) {
		char what[300];

		snprintf(what, sizeof(what), "%s: issue", req && req->nnames ? req->names[0] : "?");
		log_problem(what, prob);
		if (rc == -EINVAL && prob->status)
			rc = -EPROTO;
	}
	published_free(&x);
	acme_order_clear(&x.order);
	free(x.order_url);
	acme_response_clear(&r);
	return rc;
}

/* ---- renewal information (RFC 9773) and revocation (7.6) ----------------- */

int acme_renewal_info(struct acme_client *c, const char *ari_id,
		      struct acme_renewal_info *out, struct acme_problem *prob)
{
	struct acme_response r;
	char *url = NULL;
	time_t t;
	int rc;

	acme_response_init(&r);
	acme_problem_clear(prob);
	if (!ari_id || !acme_token_ok(strchr(ari_id, '.') ? strchr(ari_id, '.') + 1 : "") ||
	    strspn(ari_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") !=
		    strlen(ari_id)) {
		problem_set(prob, "renewalInfo: '%s' is not a certificate identifier",
			    ari_id ? ari_id : "");
		return -EINVAL;
	}
	if ((rc = ensure_directory(c, prob)))
		goto out;
	if (!c->dir.renewal_info) {
		problem_set(prob, "the ACME server does not support renewal information (RFC 9773)");
		rc = -EOPNOTSUPP;
		goto out;
	}
	/* RFC 9773 4.1: GET {renewalInfo}/{certID}, unauthenticated. */
	if (asprintf(&url, "%s%s%s", c->dir.renewal_info,
		     c->dir.renewal_info[strlen(c->dir.renewal_info) - 1] == '/' ? "" : "/",
		     ari_id) < 0) {
		url = NULL;
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = acme_http_request(c->http, "GET", url, NULL, 0, "application/json", &r, prob)))
		goto out;
	if (r.status != 200) {
		response_problem(&r, prob);
		rc = -EPROTO;
		goto out;
	}
	rc = acme_renewal_info_parse(r.body.data, r.body.len, out, prob->detail,
				     sizeof(prob->detail));
	if (rc)
		goto out;
	if (r.retry_after && acme_retry_after_parse(r.retry_after, util_now(), &t) == 0)
		out->retry_after = t;
	rc = 0;
out:
	free(url);
	acme_response_clear(&r);
	return rc;
}

int acme_revoke(struct acme_client *c, const void *cert_der, size_t len, int reason,
		struct acme_problem *prob)
{
	struct acme_response r;
	struct util_buf b64;
	json_t *req = NULL;
	char *payload = NULL;
	int rc;

	acme_response_init(&r);
	util_buf_init(&b64, 64 * 1024, false);
	acme_problem_clear(prob);
	if (!cert_der || !len || reason < -1 || reason > 10) {
		problem_set(prob, "revoke: a certificate and a reason code 0..10 are required");
		return -EINVAL;
	}
	if ((rc = acme_client_account(c, prob)))
		goto out;
	if (!c->dir.revoke_cert) {
		problem_set(prob, "the ACME server has no revokeCert resource");
		rc = -EOPNOTSUPP;
		goto out;
	}
	if ((rc = crypto_b64url(cert_der, len, &b64)) || (rc = util_buf_terminate(&b64)))
		goto out;
	rc = -ENOMEM;
	if (!(req = json_pack("{s:s}", "certificate", (char *)b64.data)))
		goto out;
	if (reason >= 0 && json_object_set_new(req, "reason", json_integer(reason)))
		goto out;
	if (!(payload = json_dumps(req, JSON_COMPACT)))
		goto out;
	rc = account_post(c, c->dir.revoke_cert, payload, NULL, &r, prob);
out:
	json_decref(req);
	free(payload);
	util_buf_free(&b64);
	acme_response_clear(&r);
	return rc;
}
