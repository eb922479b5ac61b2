/* SPDX-License-Identifier: MIT */
/*
 * The ACME issuer: turns a domain's names and key into an issuance by the
 * acme/ client. Accounts live in the store, one per ACME directory
 * (acme/accounts/ID), and are reused; the order URL and the domain key are stored before finalize
 * (domains/NAME/order), so a restart resumes the same order with the same
 * key. http-01 tokens are served from the mount's .well-known (and by the
 * built-in responder when http01_listen is set); dns-01 records go through
 * the dns hook, which runs to completion before the challenge is answered.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acme/acme.h"
#include "engine/engine_int.h"

struct engine_token {
	struct engine_token *next;
	char *token;
	char *keyauth;
};

/* What the challenge callbacks of one issuance share. */
struct issue_ctx {
	struct engine *e;
	struct engine_domain *d;
	const struct conf *c;
	char **dns_hook;
	const struct crypto_key *key;
	char why[512];
};

/* ---- http-01 tokens served by the mount -------------------------------------- */

static int token_publish(void *arg, const char *token, const char *keyauth)
{
	struct engine *e = ((struct issue_ctx *)arg)->e;
	struct engine_token *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->token = strdup(token);
	t->keyauth = strdup(keyauth);
	if (!t->token || !t->keyauth) {
		free(t->token);
		free(t->keyauth);
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_lock(&e->acme_lock);
	t->next = e->tokens;
	e->tokens = t;
	pthread_mutex_unlock(&e->acme_lock);
	{
		/* In a shared store too: the CA may ask any node. */
		int rc = engine_cluster_token_put(e, token, keyauth);

		if (rc)
			return rc;
	}
	if (e->http01) {
		int rc = acme_http01_publish(e->http01, token, keyauth);

		if (rc)
			return rc;
	}
	return 0;
}

static void token_unpublish(void *arg, const char *token)
{
	struct engine *e = ((struct issue_ctx *)arg)->e;
	struct engine_token **pp, *t;

	pthread_mutex_lock(&e->acme_lock);
	for (pp = &e->tokens; (t = *pp); pp = &t->next) {
		if (!strcmp(t->token, token)) {
			*pp = t->next;
			free(t->token);
			free(t->keyauth);
			free(t);
			break;
		}
	}
	pthread_mutex_unlock(&e->acme_lock);
	engine_cluster_token_del(e, token);
	if (e->http01)
		acme_http01_unpublish(e->http01, token);
}

int engine_challenge_get(struct engine *e, const char *token, struct util_buf *out)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&e->acme_lock);
	for (struct engine_token *t = e->tokens; t; t = t->next) {
		if (!strcmp(t->token, token)) {
			rc = util_buf_append(out, t->keyauth, strlen(t->keyauth));
			break;
		}
	}
	pthread_mutex_unlock(&e->acme_lock);
	if (rc == -ENOENT)
		rc = engine_cluster_token_get(e, token, out);
	return rc;
}

size_t engine_challenge_tokens(struct engine *e, char ***tokens)
{
	size_t n = 0, cap = 0;
	char **v;

	pthread_mutex_lock(&e->acme_lock);
	for (struct engine_token *t = e->tokens; t; t = t->next)
		cap++;
	v = calloc(cap + 1, sizeof(*v));
	for (struct engine_token *t = e->tokens; v && t; t = t->next)
		v[n++] = strdup(t->token);
	pthread_mutex_unlock(&e->acme_lock);
	*tokens = v;
	return v ? n : 0;
}

/* ---- tls-alpn-01 through the built-in responder ------------------------------- */

static int alpn_publish(void *arg, const char *name, const char *keyauth)
{
	return acme_tlsalpn01_publish(((struct issue_ctx *)arg)->e->tlsalpn01, name, keyauth);
}

static void alpn_unpublish(void *arg, const char *name)
{
	acme_tlsalpn01_unpublish(((struct issue_ctx *)arg)->e->tlsalpn01, name);
}

/* ---- dns-01 through the hook ---------------------------------------------------- */

static int dns_run(struct issue_ctx *ctx, const char *verb, const char *record, const char *value)
{
	char *argv[32], *env[4] = {0}, why[512] = "";
	size_t n = 0;
	int rc;

	if (!ctx->dns_hook) {
		snprintf(ctx->why, sizeof(ctx->why), "dns-01 needs the dns hook ([hooks] dns)");
		return -EINVAL;
	}
	while (ctx->dns_hook[n] && n < 27) {
		argv[n] = ctx->dns_hook[n];
		n++;
	}
	argv[n++] = (char *)verb;
	argv[n++] = (char *)record;
	argv[n++] = (char *)value;
	argv[n] = NULL;
	if (asprintf(&env[0], "CERTFS_DOMAIN=%s", ctx->d->name) < 0)
		env[0] = NULL;
	if (asprintf(&env[1], "CERTFS_EVENT=dns-%s", verb) < 0)
		env[1] = NULL;
	rc = engine_hook_exec(ctx->e, argv, env, why, sizeof(why));
	free(env[0]);
	free(env[1]);
	if (rc) {
		snprintf(ctx->why, sizeof(ctx->why), "dns hook failed: %.480s", why);
		return -EIO;
	}
	return 0;
}

/*
 * The TXT record the hook writes for record (_acme-challenge.NAME): the
 * domain's dns_delegate for its own name, else where the CNAMEs of record
 * lead (the acme-dns pattern), else record itself.
 */
static void dns_target(struct issue_ctx *ctx, const char *record, char *out, size_t len)
{
	const struct conf_domain *cd = conf_domain_find(ctx->c, ctx->d->name);
	const char *base = ctx->d->name;
	char own[300];
	int rc;

	if (!strncmp(base, "*.", 2))
		base += 2; /* a wildcard is proven at _acme-challenge of its base */
	snprintf(own, sizeof(own), "_acme-challenge.%s", base);
	if (cd && cd->dns_delegate && !strcasecmp(record, own)) {
		snprintf(out, len, "%s", cd->dns_delegate);
	} else {
		rc = acme_dns_cname_target(ctx->c->acme_dns_resolver, record, out, len);
		if (rc) {
			util_warn("engine: %s: dns-01: cannot follow the CNAMEs of %s (%s); "
				  "writing it directly", ctx->d->name, record, strerror(-rc));
			snprintf(out, len, "%s", record);
		}
	}
	if (strcasecmp(out, record))
		util_info("engine: %s: dns-01: %s is delegated to %s", ctx->d->name, record, out);
}

static int dns_add(void *arg, const char *record, const char *value)
{
	char target[300];

	dns_target(arg, record, target, sizeof(target));
	return dns_run(arg, "add", target, value);
}

static void dns_del(void *arg, const char *record, const char *value)
{
	char target[300];

	dns_target(arg, record, target, sizeof(target));
	(void)dns_run(arg, "del", target, value);
}

/* Before finalize: the order URL and the key, so a restart resumes it. */
static int save_order(void *arg, const char *url)
{
	struct issue_ctx *ctx = arg;
	struct util_buf pem;
	char *s = NULL;
	json_t *o;
	int rc;

	util_buf_init(&pem, 64 * 1024, true);
	rc = crypto_key_is_private(ctx->key) ? crypto_key_to_pem(ctx->key, &pem) : 0;
	o = rc ? NULL : json_pack("{s:s}", "url", url);
	if (o && pem.len)
		json_object_set_new(o, "key", json_stringn((const char *)pem.data, pem.len));
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	/* -ENOENT once the domain is removed: the order is not re-created. */
	rc = s ? engine_domain_record_put(ctx->d, "order", s, strlen(s)) : -ENOMEM;
	if (s) {
		util_wipe(s, strlen(s));
		free(s);
	}
	json_decref(o);
	util_buf_free(&pem);
	return rc;
}

/* A saved order (URL, key) from before a restart, if any. */
static void load_order(struct engine_domain *d, char **url, struct crypto_key **key)
{
	struct crypto_err cerr = {{0}};
	struct util_buf b;
	char skey[320];
	json_error_t jerr;
	json_t *o, *v;

	*url = NULL;
	*key = NULL;
	util_buf_init(&b, 256 * 1024, true);
	snprintf(skey, sizeof(skey), "%s/order", d->key);
	if (store_get(d->engine->store, skey, &b)) {
		util_buf_free(&b);
		return;
	}
	o = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &jerr);
	util_buf_free(&b);
	v = o ? json_object_get(o, "url") : NULL;
	if (json_is_string(v))
		*url = strdup(json_string_value(v));
	v = o ? json_object_get(o, "key") : NULL;
	if (json_is_string(v) &&
	    crypto_key_parse_pem(json_string_value(v), json_string_length(v), NULL, key, &cerr))
		*key = NULL;
	json_decref(o);
}

bool engine_acme_saved_order(struct engine_domain *d)
{
	struct crypto_key *key;
	char *url;
	bool saved;

	load_order(d, &url, &key);
	saved = url && key;
	free(url);
	crypto_key_free(key);
	return saved;
}

/* ---- accounts, one per CA ---------------------------------------------------------- */

/*
 * An account belongs to one ACME server: its URL is only meaningful there
 * (another CA refuses it as a foreign "kid"). So accounts are kept per
 * directory URL, under acme/accounts/dir-HASH (SHA-256 of the URL), and
 * each record names its directory. Switching CA (staging to production)
 * makes a new account on first use and leaves the old one for a switch back.
 */
#define ACCOUNTS_DIR "acme/accounts"
/* Before accounts were kept per CA: one record for whatever CA was used. */
#define LEGACY_ACCOUNT_KEY "acme/account"

/* The store key of the account for directory into out. */
static int account_key_name(const char *directory, char *out, size_t len)
{
	struct util_buf h;
	int rc;

	util_buf_init(&h, 128, false);
	rc = crypto_sha256_b64url(directory, strlen(directory), &h);
	if (!rc)
		rc = util_buf_terminate(&h);
	if (!rc) {
		/* Store keys allow [A-Za-z0-9._*@+=-] and no leading dot:
		 * base64url's '_' becomes '.', after a prefix. */
		for (char *p = (char *)h.data; *p; p++)
			if (*p == '_')
				*p = '.';
		if ((size_t)snprintf(out, len, "%s/dir-%s", ACCOUNTS_DIR, (char *)h.data) >= len)
			rc = -ERANGE;
	}
	util_buf_free(&h);
	return rc;
}

/* Length of "https://host[:port]" of url (0 when it is not an https URL). */
static size_t url_origin_len(const char *url)
{
	const char *p;

	if (strncasecmp(url, "https://", 8))
		return 0;
	p = url + 8 + strcspn(url + 8, "/?#");
	return (size_t)(p - url);
}

/* Do a and b share scheme, host and port? */
static bool same_origin(const char *a, const char *b)
{
	size_t n = url_origin_len(a);

	return n && n == url_origin_len(b) && !strncasecmp(a, b, n);
}

/* Parse an account record: key (owned), url and directory (owned, may be NULL). */
static int account_parse(const struct util_buf *b, struct crypto_key **key, char **url,
			 char **directory)
{
	struct crypto_err cerr = {{0}};
	json_error_t jerr;
	json_t *o, *v;
	int rc;

	*key = NULL;
	*url = NULL;
	if (directory)
		*directory = NULL;
	o = json_loadb((const char *)b->data, b->len, JSON_REJECT_DUPLICATES, &jerr);
	v = o ? json_object_get(o, "key") : NULL;
	rc = json_is_string(v) ? crypto_key_parse_pem(json_string_value(v), json_string_length(v),
						      NULL, key, &cerr)
			       : -EINVAL;
	v = o ? json_object_get(o, "url") : NULL;
	if (!rc && json_is_string(v) && json_string_length(v))
		*url = strdup(json_string_value(v));
	v = o ? json_object_get(o, "directory") : NULL;
	if (!rc && directory && json_is_string(v))
		*directory = strdup(json_string_value(v));
	json_decref(o);
	return rc;
}

/* Write the account record of directory (url may be NULL before registration). */
static int account_save(struct engine *e, const char *skey, const char *directory,
			const struct crypto_key *key, const char *url)
{
	struct util_buf pem;
	json_t *o = NULL;
	char *s = NULL;
	int rc;

	util_buf_init(&pem, 64 * 1024, true);
	rc = crypto_key_to_pem(key, &pem);
	if (!rc) {
		o = json_pack("{s:s%, s:s}", "key", (char *)pem.data, pem.len, "directory",
			      directory);
		if (o && url)
			json_object_set_new(o, "url", json_string(url));
		s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		rc = s ? store_put(e->store, skey, s, strlen(s)) : -ENOMEM;
	}
	if (s) {
		util_wipe(s, strlen(s));
		free(s);
	}
	json_decref(o);
	util_buf_free(&pem);
	return rc;
}

/*
 * The account for directory: the stored one, else the record from before
 * accounts were per CA when its URL is on the same server, else a new
 * ES256 key, stored before it is registered.
 */
static int account_load(struct engine *e, const char *directory, const char *skey,
			struct crypto_key **key, char **url)
{
	struct util_buf b;
	char *dir = NULL;
	int rc;

	util_buf_init(&b, 256 * 1024, true);
	rc = store_get(e->store, skey, &b);
	if (!rc) {
		rc = account_parse(&b, key, url, &dir);
		/* A hash collision or a hand-copied record: never use another CA's URL. */
		if (!rc && *url && (!dir || strcmp(dir, directory))) {
			free(*url);
			*url = NULL;
		}
		free(dir);
		util_buf_free(&b);
		return rc;
	}
	if (rc != -ENOENT)
		goto out;
	util_buf_free(&b);
	util_buf_init(&b, 256 * 1024, true);
	if (!store_get(e->store, LEGACY_ACCOUNT_KEY, &b) && !account_parse(&b, key, url, NULL)) {
		if (*url && same_origin(*url, directory)) {
			util_info("engine: acme: using the stored account %s for %s", *url,
				  directory);
			rc = account_save(e, skey, directory, *key, *url);
			goto out;
		}
		crypto_key_free(*key);
		free(*url);
		*key = NULL;
		*url = NULL;
	}
	rc = crypto_key_generate(CRYPTO_KEY_EC256, key);
	if (!rc)
		rc = account_save(e, skey, directory, *key, NULL);
	if (!rc)
		util_info("engine: acme: new account key for %s", directory);
out:
	if (rc) {
		crypto_key_free(*key);
		free(*url);
		*key = NULL;
		*url = NULL;
	}
	util_buf_free(&b);
	return rc;
}

/* ---- the client ------------------------------------------------------------------ */

/*
 * The ACME client of the running configuration. Issuances hold a reference,
 * so a reload (engine_acme_reload) can drop it while they finish with the
 * old settings; the next issuance builds one from the new configuration.
 */
struct engine_acme {
	atomic_int refs;
	struct acme_client *cl;
	struct crypto_key *key;
	char *directory;
	char skey[128];          /* store key of the account record */
	bool url_saved;          /* the account URL is in the record */
};

static void eacme_put(struct engine_acme *a)
{
	if (!a || atomic_fetch_sub(&a->refs, 1) != 1)
		return;
	acme_client_free(a->cl);
	crypto_key_free(a->key);
	free(a->directory);
	free(a);
}

/* The shared client with a reference (put with eacme_put), made on first use. */
static struct engine_acme *client_get(struct engine *e, const struct conf *c, char *why,
				      size_t whylen)
{
	struct acme_client_config cfg;
	struct acme_problem prob;
	struct engine_acme *a = NULL;
	char *url = NULL;
	int rc;

	pthread_mutex_lock(&e->acme_lock);
	if (atomic_load(&e->cancel)) {
		snprintf(why, whylen, "acme: cancelled (shutting down)");
		goto out;
	}
	if (e->acme) {
		a = e->acme;
		atomic_fetch_add(&a->refs, 1);
		goto out;
	}
	if (!c->acme_directory) {
		snprintf(why, whylen, "issuer acme needs an ACME directory (--acme-directory)");
		goto out;
	}
	a = calloc(1, sizeof(*a));
	if (!a || !(a->directory = strdup(c->acme_directory)) ||
	    account_key_name(c->acme_directory, a->skey, sizeof(a->skey))) {
		snprintf(why, whylen, "acme: out of memory");
		goto fail;
	}
	rc = account_load(e, c->acme_directory, a->skey, &a->key, &url);
	if (rc) {
		snprintf(why, whylen, "acme: the account key cannot be read or created: %s",
			 strerror(-rc));
		goto fail;
	}
	a->url_saved = url != NULL;
	memset(&cfg, 0, sizeof(cfg));
	cfg.directory_url = c->acme_directory;
	cfg.ca_bundle = c->acme_ca_bundle;
	cfg.email = c->acme_email;
	cfg.eab_kid = c->acme_eab_kid;
	cfg.eab_hmac_key = c->acme_eab_hmac_key;
	cfg.preferred_chain = c->acme_preferred_chain;
	cfg.profile = c->acme_profile;
	cfg.account_key = a->key;
	cfg.account_url = url;
	/* Every client made here, also one a reload replaced while an
	 * issuance still holds it, ends its requests at shutdown. */
	cfg.cancel = &e->cancel;
	acme_problem_clear(&prob);
	if (acme_client_new(&cfg, &a->cl, &prob)) {
		acme_problem_sentence(&prob, why, whylen);
		goto fail;
	}
	/* One for e->acme, one for the caller. */
	atomic_store(&a->refs, 2);
	e->acme = a;
	goto out;
fail:
	if (a) {
		crypto_key_free(a->key);
		free(a->directory);
		free(a);
	}
	a = NULL;
out:
	pthread_mutex_unlock(&e->acme_lock);
	free(url);
	return a;
}

/* After a successful request: keep the account URL the server gave. */
static void account_remember(struct engine *e, struct engine_acme *a)
{
	char url[1024];

	/* acme_lock: workers finishing together store it once. */
	pthread_mutex_lock(&e->acme_lock);
	if (!a->url_saved && !acme_client_get_account_url(a->cl, url, sizeof(url))) {
		if (account_save(e, a->skey, a->directory, a->key, url))
			util_err("engine: acme: cannot store the account URL");
		else
			a->url_saved = true;
	}
	pthread_mutex_unlock(&e->acme_lock);
}

void engine_acme_reload(struct engine *e, const struct conf *old, const struct conf *c)
{
	struct engine_acme *a;
	bool listen_changed;

	/* Directory, CA bundle (re-read even when only its content changed),
	 * contact, EAB, chain and profile: the next request uses a new client. */
	pthread_mutex_lock(&e->acme_lock);
	a = e->acme;
	e->acme = NULL;
	pthread_mutex_unlock(&e->acme_lock);
	eacme_put(a);
	listen_changed = !!old->acme_http01_listen != !!c->acme_http01_listen ||
			 (c->acme_http01_listen &&
			  strcmp(old->acme_http01_listen, c->acme_http01_listen));
	if (listen_changed)
		util_warn("config: http01_listen changed: takes effect after a restart");
	if (!!old->acme_tls_alpn01_listen != !!c->acme_tls_alpn01_listen ||
	    (c->acme_tls_alpn01_listen &&
	     strcmp(old->acme_tls_alpn01_listen, c->acme_tls_alpn01_listen)))
		util_warn("config: tls_alpn01_listen changed: takes effect after a restart");
	/* The pool and the store are set up once. */
	if (old->workers != c->workers)
		util_warn("config: workers changed: takes effect after a restart");
	if (!!old->store != !!c->store || (c->store && strcmp(old->store, c->store)))
		util_warn("config: store changed: takes effect after a restart");
}

int engine_acme_start(struct engine *e)
{
	char listen[128] = "", alpn[128] = "";
	int rc = 0;

	pthread_mutex_lock(&e->conf_lock);
	if (e->conf.acme_http01_listen)
		snprintf(listen, sizeof(listen), "%s", e->conf.acme_http01_listen);
	if (e->conf.acme_tls_alpn01_listen)
		snprintf(alpn, sizeof(alpn), "%s", e->conf.acme_tls_alpn01_listen);
	pthread_mutex_unlock(&e->conf_lock);
	if (listen[0]) {
		rc = acme_http01_start(listen, &e->http01);
		if (rc)
			util_err("engine: acme: http-01 responder on %s: %s", listen, strerror(-rc));
	}
	if (!rc && alpn[0]) {
		rc = acme_tlsalpn01_start(alpn, &e->tlsalpn01);
		if (rc)
			util_err("engine: acme: tls-alpn-01 responder on %s: %s", alpn, strerror(-rc));
	}
	return rc;
}

void engine_acme_cancel(struct engine *e)
{
	/* Clients made by client_get() watch e->cancel themselves (older
	 * ones a reload replaced too); this only makes the current one stop
	 * without waiting for its next look at the flag. */
	pthread_mutex_lock(&e->acme_lock);
	if (e->acme)
		acme_client_cancel(e->acme->cl);
	pthread_mutex_unlock(&e->acme_lock);
}

void engine_acme_stop(struct engine *e)
{
	struct engine_token *t, *next;

	if (e->http01)
		acme_http01_stop(e->http01);
	e->http01 = NULL;
	acme_tlsalpn01_stop(e->tlsalpn01);
	e->tlsalpn01 = NULL;
	eacme_put(e->acme);
	e->acme = NULL;
	for (t = e->tokens; t; t = next) {
		next = t->next;
		free(t->token);
		free(t->keyauth);
		free(t);
	}
	e->tokens = NULL;
}

/* ---- issuing ------------------------------------------------------------------------ */

int engine_issue_acme(struct engine_domain *d, const struct conf *c, enum crypto_key_type kt,
		      struct crypto_key *reuse, struct engine_gen **out, time_t *retry_after,
		      bool *validation, char *why, size_t whylen)
{
	struct engine *e = d->engine;
	struct acme_challenge_ops ops;
	struct acme_issue_request req;
	struct acme_problem prob;
	struct issue_ctx ctx;
	struct crypto_err cerr = {{0}};
	struct crypto_chain *chain = NULL;
	struct crypto_key *key = NULL;
	struct crypto_csr *csr = NULL;
	struct util_buf der, pem;
	const struct conf_domain *cd = conf_domain_find(c, d->name);
	char *resume = NULL, **names = NULL, *replaces = NULL;
	enum conf_challenge challenge;
	struct engine_acme *a;
	size_t n = 0;
	bool has_csr;
	int rc;

	*retry_after = 0;
	*validation = false;
	util_buf_init(&der, ENGINE_UPLOAD_MAX, false);
	util_buf_init(&pem, ENGINE_RECORD_MAX, false);
	a = client_get(e, c, why, whylen);
	if (!a)
		return atomic_load(&e->cancel) ? -ECANCELED : -EINVAL;

	pthread_mutex_lock(&d->lock);
	names = calloc(d->nnames + 1, sizeof(*names));
	for (size_t i = 0; names && i < d->nnames; i++)
		names[n++] = strdup(d->names[i]);
	has_csr = d->has_csr;
	pthread_mutex_unlock(&d->lock);
	if (!names) {
		rc = -ENOMEM;
		goto out;
	}

	load_order(d, &resume, &key);
	if (has_csr) {
		/* The user's CSR: its key stays with the user. */
		struct util_buf raw;
		char skey[320];

		crypto_key_free(key);
		key = NULL;
		util_buf_init(&raw, ENGINE_UPLOAD_MAX, false);
		snprintf(skey, sizeof(skey), "%s/csr", d->key);
		rc = store_get(e->store, skey, &raw);
		if (!rc)
			rc = crypto_csr_parse(raw.data, raw.len, &csr, &cerr);
		util_buf_free(&raw);
		if (!rc)
			rc = crypto_csr_get1_key(csr, &key);
	} else {
		if (!key)
			key = reuse ? crypto_key_up_ref(reuse) : NULL;
		rc = key ? 0 : crypto_key_generate(kt, &key);
		if (!rc)
			rc = crypto_csr_new(key, (const char *const *)names, n, &csr);
	}
	if (!rc)
		rc = crypto_csr_to_der(csr, &der);
	if (rc) {
		snprintf(why, whylen, "acme: cannot make the CSR%s%s", cerr.msg[0] ? ": " : "",
			 cerr.msg);
		goto out;
	}

	memset(&ctx, 0, sizeof(ctx));
	ctx.e = e;
	ctx.d = d;
	ctx.c = c;
	ctx.dns_hook = c->hook_dns;
	ctx.key = key;
	memset(&ops, 0, sizeof(ops));
	challenge = (cd && cd->challenge >= 0) ? (enum conf_challenge)cd->challenge
					       : c->acme_challenge;
	ops.prefer = challenge == CONF_CHALLENGE_DNS01	  ? ACME_CHALLENGE_DNS01 :
		     challenge == CONF_CHALLENGE_TLSALPN01 ? ACME_CHALLENGE_TLSALPN01 :
							   ACME_CHALLENGE_HTTP01;
	if (challenge == CONF_CHALLENGE_TLSALPN01 && !e->tlsalpn01) {
		snprintf(why, whylen, "tls-alpn-01 needs the built-in responder "
				      "(--tls-alpn01-listen or tls_alpn01_listen)");
		rc = -EINVAL;
		goto out;
	}
	if (e->tlsalpn01) {
		ops.tlsalpn01_publish = alpn_publish;
		ops.tlsalpn01_unpublish = alpn_unpublish;
	}
	ops.arg = &ctx;
	ops.dns01_add = dns_add;
	ops.dns01_del = dns_del;
	ops.save_order = save_order;
	ops.http01_publish = token_publish;
	ops.http01_unpublish = token_unpublish;

	memset(&req, 0, sizeof(req));
	req.names = (const char *const *)names;
	req.nnames = n;
	req.csr_der = der.data;
	req.csr_len = der.len;
	req.resume_order_url = resume;
	req.replaces = replaces = engine_acme_replaces(d);
	req.ops = &ops;
	acme_problem_clear(&prob);
	rc = acme_issue(a->cl, &req, &pem, &prob);
	if (rc) {
		if (ctx.why[0])
			snprintf(why, whylen, "%s", ctx.why);
		else
			acme_problem_sentence(&prob, why, whylen);
		*retry_after = prob.retry_after;
		*validation = prob.validation;
		goto out;
	}
	account_remember(e, a);
	rc = crypto_chain_parse(pem.data, pem.len, &chain, &cerr);
	if (rc) {
		snprintf(why, whylen, "acme: the issued chain is unreadable: %s", cerr.msg);
		goto out;
	}
	if (!crypto_key_is_private(key)) {
		crypto_key_free(key);
		key = NULL;
	}
	rc = engine_gen_new(e, engine_alloc_number(d), util_now(), ENGINE_SOURCE_ACME, key, chain,
			    out);
	if (!rc) {
		int drc;

		key = NULL;
		chain = NULL;
		/* Done: nothing to resume. A stale record only costs a fetch of
		 * a finished order at the next issuance. */
		drc = engine_domain_record_del(d, "order");
		if (drc && drc != -ENOENT)
			util_warn("engine: %s: cannot remove the finished order: %s", d->name,
				  strerror(-drc));
	}
out:
	crypto_strv_free(names, n);
	crypto_key_free(key);
	crypto_chain_free(chain);
	crypto_csr_free(csr);
	util_buf_free(&der);
	util_buf_free(&pem);
	free(resume);
	free(replaces);
	eacme_put(a);
	return rc;
}

/* ---- renewal information (RFC 9773) and revocation ------------------------------ */

/* The managed ACME certificate of d, read from the store (caller puts it). */
static struct engine_gen *managed_acme_gen(struct engine_domain *d)
{
	struct engine_gen *g = NULL;
	uint64_t managed;

	pthread_mutex_lock(&d->lock);
	managed = d->managed_gen;
	if (managed && d->cur && d->cur->number == managed)
		g = engine_gen_get(d->cur);
	pthread_mutex_unlock(&d->lock);
	/* The store is read without d->lock, which readers of the tree need. */
	if (managed && !g && engine_domain_read_gen(d, managed, &g))
		g = NULL;
	if (g && g->source != ENGINE_SOURCE_ACME) {
		engine_gen_put(g);
		g = NULL;
	}
	return g;
}

char *engine_acme_replaces(struct engine_domain *d)
{
	struct engine_gen *g;
	struct util_buf id;
	char *s = NULL;
	bool unsupported;

	pthread_mutex_lock(&d->lock);
	unsupported = d->ari_unsupported;
	pthread_mutex_unlock(&d->lock);
	if (unsupported)
		return NULL;
	g = managed_acme_gen(d);
	if (!g)
		return NULL;
	util_buf_init(&id, 1024, false);
	{
		struct crypto_chain *chain;
		struct crypto_key *key;

		if (!engine_gen_parse(g, &key, &chain)) {
			if (!crypto_cert_ari_id(crypto_chain_get0(chain, 0), &id) &&
			    !util_buf_terminate(&id))
				s = strdup((const char *)id.data);
			crypto_key_free(key);
			crypto_chain_free(chain);
		}
	}
	util_buf_free(&id);
	engine_gen_put(g);
	return s;
}

void engine_acme_check_ari(struct engine_domain *d)
{
	struct engine *e = d->engine;
	struct acme_renewal_info info;
	struct acme_problem prob;
	struct engine_acme *a;
	char why[512], *id;
	time_t now = util_now();
	struct conf c;
	int rc;

	engine_conf_snapshot(e, &c);
	a = client_get(e, &c, why, sizeof(why));
	conf_clear(&c);
	id = a ? engine_acme_replaces(d) : NULL;
	if (!id) {
		pthread_mutex_lock(&d->lock);
		d->ari_next_check = now + 6 * 3600;
		pthread_mutex_unlock(&d->lock);
		eacme_put(a);
		return;
	}
	acme_problem_clear(&prob);
	memset(&info, 0, sizeof(info));
	pthread_mutex_lock(&d->lock);
	d->ari_last_fetch = now;
	pthread_mutex_unlock(&d->lock);
	rc = acme_renewal_info(a->cl, id, &info, &prob);
	eacme_put(a);
	free(id);
	pthread_mutex_lock(&d->lock);
	if (rc == -EOPNOTSUPP) {
		d->ari_unsupported = true; /* the lifetime rule decides */
	} else if (rc) {
		d->ari_next_check = now + 3600;
	} else {
		time_t span = info.window_end > info.window_start ?
				      info.window_end - info.window_start : 0;

		time_t prev = d->ari_renew_at;

		/* A random moment inside the window spreads the CA's load
		 * (RFC 9773 4.2); a window in the past means now. */
		d->ari_renew_at = info.window_start + (span ? (time_t)(d->jitter % (unsigned)span) : 0);
		/* When the CA asks, but never more often than the floor
		 * (Retry-After 0 or 1 included) and at least daily. */
		d->ari_next_check = info.retry_after ? info.retry_after : now + 6 * 3600;
		if (d->ari_next_check < now + ACME_ARI_MIN_INTERVAL_S)
			d->ari_next_check = now + ACME_ARI_MIN_INTERVAL_S;
		if (d->ari_next_check > now + ACME_ARI_MAX_INTERVAL_S)
			d->ari_next_check = now + ACME_ARI_MAX_INTERVAL_S;
		if (d->ari_renew_at != prev) {
			char date[32];

			util_format_time(d->ari_renew_at, date, sizeof(date));
			util_info("engine: %s: renewal information: renew at %s", d->name, date);
		}
	}
	pthread_mutex_unlock(&d->lock);
}

int engine_acme_revoke(struct engine *e, struct engine_gen *g, char *why, size_t whylen)
{
	struct acme_problem prob;
	struct engine_acme *a;
	struct util_buf der;
	struct conf c;
	int rc;

	engine_conf_snapshot(e, &c);
	a = client_get(e, &c, why, whylen);
	conf_clear(&c);
	if (!a)
		return atomic_load(&e->cancel) ? -ECANCELED : -EIO;
	util_buf_init(&der, 64 * 1024, false);
	{
		struct crypto_chain *chain;
		struct crypto_key *key;

		rc = engine_gen_parse(g, &key, &chain);
		if (!rc)
			rc = crypto_cert_to_der(crypto_chain_get0(chain, 0), &der);
		crypto_key_free(key);
		crypto_chain_free(chain);
	}
	acme_problem_clear(&prob);
	if (!rc)
		rc = acme_revoke(a->cl, der.data, der.len, -1, &prob);
	if (rc)
		acme_problem_sentence(&prob, why, whylen);
	eacme_put(a);
	util_buf_free(&der);
	return rc;
}
