/* SPDX-License-Identifier: MIT */
/*
 * Issuance: the self-signed placeholder served from the first moment, the
 * local CA (a root and an intermediate, created on first use and kept in the
 * store), the worker pool that issues certificates off the FUSE threads, and
 * the scheduler that queues renewals when a third of the lifetime is left.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

#define CA_KEY "ca/root"
/* How long a placeholder is valid: long enough for any issuer to finish. */
#define PLACEHOLDER_DAYS 7
/* Failed issuance is retried after min(RETRY_BASE * 2^failures, RETRY_MAX). */
#define RETRY_BASE ACME_RETRY_BASE_S
#define RETRY_MAX ACME_RETRY_MAX_S

int engine_placeholder(struct engine_domain *d, struct engine_gen **out)
{
	struct crypto_chain *chain = NULL;
	struct crypto_cert *cert = NULL;
	struct crypto_key *key = NULL;
	time_t now = util_now();
	int rc;

	/* Always P-256: the placeholder must appear at once, whatever key
	 * type the real certificate will use (an RSA-4096 key takes seconds). */
	rc = crypto_key_generate(CRYPTO_KEY_EC256, &key);
	if (!rc)
		rc = crypto_selfsigned_new(key, (const char *const *)d->names, d->nnames,
					   PLACEHOLDER_DAYS, now, &cert);
	if (!rc) {
		chain = crypto_chain_new();
		rc = chain ? crypto_chain_push(chain, cert) : -ENOMEM;
	}
	if (!rc)
		rc = engine_gen_new(d->engine, 0, now, ENGINE_SOURCE_SELFSIGNED, key, chain, out);
	if (!rc)
		engine_gen_set_passphrase(d, *out); /* its cert.pfx too */
	crypto_cert_free(cert);
	if (rc) {
		crypto_key_free(key);
		crypto_chain_free(chain);
	}
	return rc;
}

/* ---- the local CA ------------------------------------------------------------ */

static int ca_load(struct engine *e)
{
	struct crypto_err cerr = {{0}};
	const char *fields[4] = {"root_key", "root_cert", "int_key", "int_cert"};
	json_t *o = NULL, *v[4];
	struct util_buf b;
	json_error_t jerr;
	int rc;

	util_buf_init(&b, ENGINE_RECORD_MAX, true);
	rc = store_get(e->store, CA_KEY, &b);
	if (rc)
		goto out;
	o = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &jerr);
	rc = -EINVAL;
	if (!o)
		goto out;
	for (int i = 0; i < 4; i++) {
		v[i] = json_object_get(o, fields[i]);
		if (!json_is_string(v[i]))
			goto out;
	}
	rc = crypto_key_parse_pem(json_string_value(v[0]), json_string_length(v[0]), NULL,
				  &e->ca_key, &cerr);
	if (!rc)
		rc = crypto_cert_parse(json_string_value(v[1]), json_string_length(v[1]),
				       &e->ca_cert, &cerr);
	if (!rc)
		rc = crypto_key_parse_pem(json_string_value(v[2]), json_string_length(v[2]), NULL,
					  &e->int_key, &cerr);
	if (!rc)
		rc = crypto_cert_parse(json_string_value(v[3]), json_string_length(v[3]),
				       &e->int_cert, &cerr);
	if (rc)
		util_err("engine: local CA: stored CA is unreadable: %s", cerr.msg);
out:
	json_decref(o);
	util_buf_free(&b);
	return rc;
}

static int ca_create(struct engine *e)
{
	struct util_buf rk, rc_, ik, ic;
	char *s = NULL;
	json_t *o = NULL;
	int days, rc;

	pthread_mutex_lock(&e->conf_lock);
	days = e->conf.local_ca_lifetime_days;
	pthread_mutex_unlock(&e->conf_lock);
	util_buf_init(&rk, 64 * 1024, true);
	util_buf_init(&ik, 64 * 1024, true);
	util_buf_init(&rc_, 64 * 1024, false);
	util_buf_init(&ic, 64 * 1024, false);
	rc = crypto_key_generate(CRYPTO_KEY_EC384, &e->ca_key);
	if (!rc)
		rc = crypto_ca_root_new(e->ca_key, "certfs local root CA", days, util_now(),
					&e->ca_cert);
	if (!rc)
		rc = crypto_key_generate(CRYPTO_KEY_EC256, &e->int_key);
	if (!rc)
		rc = crypto_ca_intermediate_new(e->ca_key, e->ca_cert, e->int_key,
						"certfs local intermediate CA", days, util_now(),
						&e->int_cert);
	if (!rc)
		rc = crypto_key_to_pem(e->ca_key, &rk);
	if (!rc)
		rc = crypto_key_to_pem(e->int_key, &ik);
	if (!rc)
		rc = crypto_cert_to_pem(e->ca_cert, &rc_);
	if (!rc)
		rc = crypto_cert_to_pem(e->int_cert, &ic);
	if (rc)
		goto out;
	o = json_pack("{s:s%, s:s%, s:s%, s:s%}", "root_key", (char *)rk.data, rk.len, "root_cert",
		      (char *)rc_.data, rc_.len, "int_key", (char *)ik.data, ik.len, "int_cert",
		      (char *)ic.data, ic.len);
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	/* Create-only: on a shared store the first node's CA is everyone's. */
	rc = s ? store_put_if(e->store, CA_KEY, s, strlen(s), 0) : -ENOMEM;
	if (!rc)
		util_info("engine: local CA: created (root and intermediate)");
out:
	if (s) {
		util_wipe(s, strlen(s));
		free(s);
	}
	json_decref(o);
	util_buf_free(&rk);
	util_buf_free(&ik);
	util_buf_free(&rc_);
	util_buf_free(&ic);
	if (rc) {
		crypto_key_free(e->ca_key);
		crypto_cert_free(e->ca_cert);
		crypto_key_free(e->int_key);
		crypto_cert_free(e->int_cert);
		e->ca_key = e->int_key = NULL;
		e->ca_cert = e->int_cert = NULL;
	}
	return rc;
}

/* The CA's root certificate (borrowed); created when asked and missing. */
int engine_ca_get(struct engine *e, bool create, struct crypto_cert **root)
{
	int rc = 0;

	pthread_mutex_lock(&e->ca_lock);
	if (!e->ca_cert) {
		rc = ca_load(e);
		if (rc == -ENOENT && create)
			rc = ca_create(e);
		if (rc == -EEXIST) /* another node made it first */
			rc = ca_load(e);
	}
	*root = e->ca_cert;
	pthread_mutex_unlock(&e->ca_lock);
	return rc;
}

/* ---- issuing one domain ------------------------------------------------------- */

static int issue_local(struct engine_domain *d, const struct conf *c, enum crypto_key_type kt,
		       struct crypto_key *reuse, struct engine_gen **out, char *why,
		       size_t whylen)
{
	struct engine *e = d->engine;
	struct crypto_chain *chain = NULL;
	struct crypto_cert *leaf = NULL, *root;
	struct crypto_key *key = NULL;
	time_t now = util_now();
	char **names;
	size_t n;
	bool csr;
	int rc;

	rc = engine_ca_get(e, true, &root);
	if (rc) {
		snprintf(why, whylen, "local CA is not available: %s", strerror(-rc));
		return rc;
	}
	key = reuse ? crypto_key_up_ref(reuse) : NULL;
	pthread_mutex_lock(&d->lock);
	csr = d->has_csr;
	pthread_mutex_unlock(&d->lock);
	if (!key && csr) {
		rc = engine_domain_csr_key(d, &key);
		if (rc) {
			snprintf(why, whylen, "the stored CSR is unreadable");
			return rc;
		}
	}
	if (!key) {
		rc = crypto_key_generate(kt, &key);
		if (rc) {
			snprintf(why, whylen, "cannot generate a %s key", crypto_key_type_name(kt));
			return rc;
		}
	}
	/* store_lock keeps the names still (they change only under it) without
	 * holding d->lock, which readers need, across the signature. The CA
	 * lock is not needed: the intermediate never changes once made. */
	pthread_mutex_lock(&d->store_lock);
	names = d->names;
	n = d->nnames;
	rc = crypto_ca_issue(e->int_key, e->int_cert, key, (const char *const *)names, n,
			     c->local_cert_lifetime_days, now, &leaf);
	pthread_mutex_unlock(&d->store_lock);
	if (rc) {
		snprintf(why, whylen, "local CA could not sign the certificate");
		goto out;
	}
	chain = crypto_chain_new();
	rc = chain ? crypto_chain_push(chain, leaf) : -ENOMEM;
	if (!rc)
		rc = crypto_chain_push(chain, e->int_cert);
	if (rc)
		goto out;
	/* A CSR's key is public only: the generation then has no key files. */
	if (!crypto_key_is_private(key)) {
		crypto_key_free(key);
		key = NULL;
	}
	rc = engine_gen_new(e, engine_alloc_number(d), now, ENGINE_SOURCE_LOCAL, key, chain, out);
	if (!rc) {
		key = NULL;
		chain = NULL;
	}
out:
	crypto_cert_free(leaf);
	crypto_key_free(key);
	crypto_chain_free(chain);
	return rc;
}

static int issue_selfsigned(struct engine_domain *d, enum crypto_key_type kt,
			    const struct conf *c, struct engine_gen **out)
{
	struct crypto_chain *chain = NULL;
	struct crypto_cert *cert = NULL;
	struct crypto_key *key = NULL;
	time_t now = util_now();
	int rc;

	rc = crypto_key_generate(kt, &key);
	pthread_mutex_lock(&d->store_lock); /* the names, as in issue_local */
	if (!rc)
		rc = crypto_selfsigned_new(key, (const char *const *)d->names, d->nnames,
					   c->local_cert_lifetime_days, now, &cert);
	pthread_mutex_unlock(&d->store_lock);
	if (!rc) {
		chain = crypto_chain_new();
		rc = chain ? crypto_chain_push(chain, cert) : -ENOMEM;
	}
	if (!rc)
		rc = engine_gen_new(d->engine, engine_alloc_number(d), now,
				    ENGINE_SOURCE_SELFSIGNED, key, chain, out);
	crypto_cert_free(cert);
	if (rc) {
		crypto_key_free(key);
		crypto_chain_free(chain);
	}
	return rc;
}

/* ---- pacing (the rules are in acme/acme.h) ------------------------------------ */

enum conf_issuer engine_issuer_of(const struct conf *c, const char *name)
{
	const struct conf_domain *cd = conf_domain_find(c, name);

	return cd && cd->issuer >= 0 ? (enum conf_issuer)cd->issuer : c->issuer;
}

/* Hold d's orders until t (d->lock held). */
static void hold(struct engine_domain *d, time_t t, const char *fmt, ...) UTIL_PRINTF(3, 4);
static void hold(struct engine_domain *d, time_t t, const char *fmt, ...)
{
	va_list ap;

	d->hold_until = t;
	d->held_job = true;
	d->held_auto = d->job_auto;
	va_start(ap, fmt);
	vsnprintf(d->hold_reason, sizeof(d->hold_reason), fmt, ap);
	va_end(ap);
	engine_domain_changed(d);
}

/* Take one automatic order from the account-wide bucket; 0 or when one is there. */
static time_t auto_order_take(struct engine *e, time_t now)
{
	const double rate = ACME_AUTO_ORDERS_PER_HOUR / 3600.0;
	time_t when = 0;

	pthread_mutex_lock(&e->queue_lock);
	if (!e->auto_tokens_at) {
		e->auto_tokens = ACME_AUTO_ORDER_BURST;
		e->auto_tokens_at = now;
	}
	if (now > e->auto_tokens_at) {
		e->auto_tokens += (double)(now - e->auto_tokens_at) * rate;
		if (e->auto_tokens > ACME_AUTO_ORDER_BURST)
			e->auto_tokens = ACME_AUTO_ORDER_BURST;
		e->auto_tokens_at = now;
	}
	if (e->auto_tokens >= 1.0)
		e->auto_tokens -= 1.0;
	else
		when = now + (time_t)((1.0 - e->auto_tokens) / rate) + 1;
	pthread_mutex_unlock(&e->queue_lock);
	return when;
}

void engine_vfail_add(time_t *vfail, time_t t)
{
	size_t oldest = 0;

	for (size_t i = 1; i < ACME_FAILED_VALIDATIONS_PER_HOUR; i++)
		if (vfail[i] < vfail[oldest])
			oldest = i;
	vfail[oldest] = t;
}

/*
 * May an ACME order for d go out now? Otherwise d is held (status says
 * why) and the scheduler runs the job when the hold ends. Decides only:
 * the attempt is written to the stored state once the domain is this
 * node's to issue (note_attempt).
 */
static bool acme_order_allowed(struct engine *e, struct engine_domain *d, time_t now)
{
	time_t oldest = 0, when;
	char date[32], last[32];
	int recent = 0;
	bool ok = false;
	/* Resuming an order made before a restart places no new one. */
	bool resume = engine_acme_saved_order(d);

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < ACME_FAILED_VALIDATIONS_PER_HOUR; i++) {
		if (d->vfail[i] && d->vfail[i] > now - 3600) {
			recent++;
			if (!oldest || d->vfail[i] < oldest)
				oldest = d->vfail[i];
		}
	}
	if (recent >= ACME_FAILED_VALIDATIONS_PER_HOUR) {
		util_format_time(oldest + 3600, date, sizeof(date));
		hold(d, oldest + 3600, "%d failed validations in the last hour (the CA allows "
		     "5 per name): next order at %s", recent, date);
		engine_domain_set_error(d, "%s", d->hold_reason);
		goto out;
	}
	/*
	 * The per-domain floor holds whoever asks: a loop of `echo renew` or
	 * of names writes places one order per floor, the last request going
	 * out when it ends. Only a new domain's first order has nothing to
	 * count from.
	 */
	if (!resume && d->last_attempt && now < d->last_attempt + ACME_ORDER_MIN_INTERVAL_S) {
		when = d->last_attempt + ACME_ORDER_MIN_INTERVAL_S;
		util_format_time(d->last_attempt, last, sizeof(last));
		util_format_time(when, date, sizeof(date));
		hold(d, when, "paced: one order per %d s per domain (the last at %s); the next "
		     "goes out at %s", ACME_ORDER_MIN_INTERVAL_S, last, date);
		goto out;
	}
	if (d->job_auto && (when = auto_order_take(e, now))) {
		hold(d, when, "paced: at most %d automatic orders an hour",
		     ACME_AUTO_ORDERS_PER_HOUR);
		goto out;
	}
	d->held_job = false;
	d->hold_until = 0;
	d->hold_reason[0] = '\0';
	ok = true;
out:
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/*
 * An issuance attempt starts at now: last_attempt (which the per-domain
 * floor counts from) goes into the stored state, so that a restart keeps
 * it. Called with the domain's cluster lock held, so a shared store is
 * written only by the node that issues.
 */
static void note_attempt(struct engine_domain *d, time_t now, enum conf_issuer issuer)
{
	struct engine_state v;

	/* Only the ACME floor counts from it: other issuers keep it in memory
	 * (status shows it) and write nothing before they have a certificate. */
	if (issuer != CONF_ISSUER_ACME) {
		pthread_mutex_lock(&d->lock);
		d->last_attempt = now;
		pthread_mutex_unlock(&d->lock);
		return;
	}
	engine_state_begin(d, &v);
	v.last_attempt = now;
	engine_state_record(d, &v);
}

/*
 * A certificate already due when it arrives (clock ahead, lifetime shorter
 * than the renewal margin) would be re-ordered at once, again and again:
 * serve it, say so, and hold automatic orders for a part of its lifetime.
 */
static void due_on_arrival(struct engine *e, struct engine_domain *d, double fraction)
{
	time_t now = util_now(), life, left, wait, not_after;
	char date[32], reason[200];
	struct engine_state v;

	pthread_mutex_lock(&d->lock);
	life = d->managed_not_after - d->managed_not_before;
	left = d->managed_not_after - now;
	if (life <= 0 || left > (time_t)((double)life * fraction)) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	wait = (time_t)((double)life * ACME_DUE_ON_ARRIVAL_HOLD);
	if (wait < ACME_ORDER_MIN_INTERVAL_S)
		wait = ACME_ORDER_MIN_INTERVAL_S;
	util_format_time(now + wait, date, sizeof(date));
	hold(d, now + wait, "the new certificate was already due for renewal when it arrived "
	     "(is the clock ahead, or the lifetime shorter than the renewal margin?); "
	     "next automatic order at %s", date);
	d->held_job = false;
	snprintf(reason, sizeof(reason), "%s", d->hold_reason);
	not_after = d->managed_not_after;
	pthread_mutex_unlock(&d->lock);
	/* Shown in status and kept across a restart. */
	engine_state_begin(d, &v);
	snprintf(v.last_error, sizeof(v.last_error), "%s", reason);
	engine_state_record(d, &v);
	engine_hook_queue(e, d, false, "due-on-arrival", not_after);
	util_warn("engine: %s: %s", d->name, reason);
}

/*
 * issuer = none: no managed certificate. Without a servable upload the
 * self-signed placeholder is served (and notify says so); nothing is ordered.
 */
static void issue_none(struct engine *e, struct engine_domain *d, const struct conf *c)
{
	struct engine_gen *g = NULL;
	time_t now = util_now();
	bool need;

	pthread_mutex_lock(&d->lock);
	need = !(d->uploaded_gen && d->uploaded_not_after > now) && d->stored_gen &&
	       d->source != ENGINE_SOURCE_SELFSIGNED && !d->removed;
	pthread_mutex_unlock(&d->lock);
	if (!need)
		return;
	if (issue_selfsigned(d, CRYPTO_KEY_EC256, c, &g) || engine_commit_gen(d, g)) {
		util_err("engine: %s: cannot serve the self-signed placeholder", d->name);
	} else {
		util_info("engine: %s: issuer none and no upload: serving a self-signed placeholder",
			  d->name);
		engine_hook_queue(e, d, false, "placeholder", g->info.not_after);
	}
	engine_gen_put(g);
}

time_t engine_retry_at(int failures, time_t now, time_t retry_after)
{
	time_t delay = RETRY_BASE << (failures < 1 ? 0 : failures < 10 ? failures - 1 : 9);

	if (delay > RETRY_MAX)
		delay = RETRY_MAX;
	/* The CA's Retry-After (clamped by the client) wins when later. */
	return retry_after > now + delay ? retry_after : now + delay;
}

/*
 * A certificate begun at started landed: a user's request made before
 * that is answered (one made while it ran stays, and is made next).
 */
static void request_done(struct engine_domain *d, time_t started)
{
	struct engine_state v;

	engine_state_begin(d, &v);
	if (!v.requested || v.requested > started) {
		engine_state_abort(d);
		return;
	}
	v.requested = 0;
	engine_state_record(d, &v);
}

static void issue_domain(struct engine *e, struct engine_domain *d)
{
	const struct conf_domain *cd;
	struct engine_gen *g = NULL, *cur;
	struct crypto_key *reuse = NULL;
	struct crypto_chain *unused = NULL;
	enum crypto_key_type kt;
	enum conf_issuer issuer;
	char why[512] = "";
	time_t retry_after = 0;
	bool validation = false;
	struct store_lock *lock = NULL;
	time_t started = util_now();
	struct conf c;
	int rc;

	engine_conf_snapshot(e, &c);
	cd = conf_domain_find(&c, d->name);
	issuer = engine_issuer_of(&c, d->name);
	if (issuer == CONF_ISSUER_NONE) {
		issue_none(e, d, &c);
		conf_clear(&c);
		return;
	}
	if (issuer == CONF_ISSUER_ACME && !acme_order_allowed(e, d, util_now())) {
		engine_schedule_wake(e); /* for the end of the hold */
		conf_clear(&c);
		return;
	}
	if (issuer != CONF_ISSUER_ACME) {
		pthread_mutex_lock(&d->lock);
		d->held_job = false;
		pthread_mutex_unlock(&d->lock);
	}
	/* On a shared store, one node at a time issues a domain. */
	if (engine_cluster_issue_begin(d, &lock)) {
		conf_clear(&c);
		return;
	}
	note_attempt(d, util_now(), issuer);
	if (crypto_key_type_parse(cd && cd->key_type ? cd->key_type : c.key_type, &kt))
		kt = CRYPTO_KEY_EC256;
	cur = engine_domain_gen(d);
	if (c.key_reuse && cur && cur->has_key && cur->source != ENGINE_SOURCE_SELFSIGNED &&
	    cur->source != ENGINE_SOURCE_UPLOADED && engine_gen_parse(cur, &reuse, &unused))
		reuse = NULL;
	crypto_chain_free(unused);

	switch (issuer) {
	case CONF_ISSUER_LOCAL:
		rc = issue_local(d, &c, kt, reuse, &g, why, sizeof(why));
		break;
	case CONF_ISSUER_SELFSIGNED:
		rc = issue_selfsigned(d, kt, &c, &g);
		if (rc)
			snprintf(why, sizeof(why), "cannot make a self-signed certificate");
		break;
	case CONF_ISSUER_ACME:
		rc = engine_issue_acme(d, &c, kt, reuse, &g, &retry_after, &validation, why,
				       sizeof(why));
		break;
	default:
		rc = -ENOTSUP;
		snprintf(why, sizeof(why), "issuer %s is not supported", conf_issuer_name(issuer));
		break;
	}
	engine_gen_put(cur);
	if (!rc) {
		rc = engine_commit_gen(d, g);
		if (rc)
			snprintf(why, sizeof(why), "cannot store the new certificate: %s",
				 strerror(-rc));
	}
	engine_gen_put(g);
	crypto_key_free(reuse);
	if (!rc) {
		pthread_mutex_lock(&d->lock);
		d->ari_renew_at = 0; /* a new certificate has a new window */
		d->ari_next_check = 0;
		pthread_mutex_unlock(&d->lock);
		request_done(d, started);
		due_on_arrival(e, d, c.renew_fraction);
	}
	if (rc == -ESTALE) {
		/* Fenced out: another node took the domain over; not a failure. */
		util_warn("engine: %s: lock lost while issuing; the new holder's certificate "
			  "stands", d->name);
	} else if (rc && rc != -ENOENT && rc != -ECANCELED) {
		struct engine_state v;

		engine_state_begin(d, &v);
		v.failures++;
		v.errors_total++;
		v.next_attempt = engine_retry_at(v.failures, util_now(), retry_after);
		snprintf(v.last_error, sizeof(v.last_error), "%s", why);
		v.last_error_write = false;
		/* Kept with the state: the CA's hourly limit outlives a restart. */
		if (validation)
			engine_vfail_add(v.vfail, util_now());
		engine_state_record(d, &v);
		pthread_mutex_lock(&d->lock);
		d->issue_failures++;
		pthread_mutex_unlock(&d->lock);
		if (v.failures == 3)
			engine_hook_queue(e, d, false, "failed", v.not_after);
		atomic_fetch_add(&e->errors_total, 1);
		util_err("engine: %s: issuance failed: %s", d->name, why);
		/* The scheduler may be asleep past the first retry. */
		engine_schedule_wake(e);
	}
	conf_clear(&c);
	engine_cluster_issue_end(d, lock);
}

/* ---- worker pool and scheduler -------------------------------------------------- */

int engine_renew_all(struct engine *e, const void *data, size_t len, char *why, size_t whylen)
{
	const char *s = data;
	char **names;
	size_t n, queued = 0;
	struct conf c;

	while (len && (s[len - 1] == '\n' || s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len != 5 || memcmp(s, "renew", 5)) {
		snprintf(why, whylen, "status accepts only the word renew");
		util_info("engine: status: write refused: %s", why);
		return -EINVAL;
	}
	engine_conf_snapshot(e, &c);
	n = engine_names(e, &names);
	for (size_t i = 0; i < n; i++) {
		struct engine_domain *d = engine_domain_get(e, names[i]);

		if (!d)
			continue;
		if (engine_issuer_of(&c, d->name) != CONF_ISSUER_NONE) {
			pthread_mutex_lock(&d->lock);
			d->next_attempt = 0;
			pthread_mutex_unlock(&d->lock);
			/* As the daemon's own orders: paced, so that a large tree
			 * stays inside the CA's limits. */
			engine_queue_auto(e, d);
			queued++;
		}
		engine_domain_put(d);
	}
	engine_names_free(names, n);
	conf_clear(&c);
	util_info("engine: renewal of all %zu domains requested", queued);
	return 0;
}

void engine_schedule_wake(struct engine *e)
{
	pthread_mutex_lock(&e->queue_lock);
	e->sched_kick = true;
	pthread_cond_broadcast(&e->sched_cond);
	pthread_mutex_unlock(&e->queue_lock);
}

/* Append a job and wake a worker (e->queue_lock held). */
static void queue_append(struct engine *e, struct engine_job_item *it)
{
	if (e->queue_tail)
		e->queue_tail->next = it;
	else
		e->queue_head = it;
	e->queue_tail = it;
	pthread_cond_signal(&e->queue_cond);
}

static void queue_item(struct engine *e, struct engine_domain *d, bool ari, bool automatic)
{
	struct engine_job_item *it;
	bool *flag = ari ? &d->ari_queued : &d->queued;

	pthread_mutex_lock(&d->lock);
	if (*flag || d->removed) {
		/* A request (new names, a CSR, renew) while an issuance runs
		 * must not be lost: it runs again once this one is done. */
		if (!ari && *flag && !automatic)
			d->again = true;
		pthread_mutex_unlock(&d->lock);
		return;
	}
	*flag = true;
	if (!ari) {
		d->job_auto = automatic;
		d->cluster_queued_gen = d->managed_gen;
	}
	pthread_mutex_unlock(&d->lock);
	it = calloc(1, sizeof(*it));
	if (!it) {
		pthread_mutex_lock(&d->lock);
		*flag = false;
		pthread_mutex_unlock(&d->lock);
		return;
	}
	atomic_fetch_add(&d->refs, 1);
	it->d = d;
	it->ari = ari;
	pthread_mutex_lock(&e->queue_lock);
	queue_append(e, it);
	pthread_mutex_unlock(&e->queue_lock);
}

void engine_queue(struct engine *e, struct engine_domain *d)
{
	queue_item(e, d, false, false);
}

void engine_queue_auto(struct engine *e, struct engine_domain *d)
{
	queue_item(e, d, false, true);
}

void engine_queue_ari(struct engine *e, struct engine_domain *d)
{
	queue_item(e, d, true, true);
}

void engine_queue_revoke(struct engine *e)
{
	struct engine_job_item *it = calloc(1, sizeof(*it));

	if (!it)
		return;
	it->revoke = true;
	pthread_mutex_lock(&e->queue_lock);
	if (e->revoke_queued || e->stopping) {
		pthread_mutex_unlock(&e->queue_lock);
		free(it);
		return;
	}
	e->revoke_queued = true;
	e->revoke_next = 0;
	queue_append(e, it);
	pthread_mutex_unlock(&e->queue_lock);
}

static void *worker_main(void *arg)
{
	struct engine *e = arg;

	for (;;) {
		struct engine_job_item *it;
		bool again = false;

		pthread_mutex_lock(&e->queue_lock);
		while (!e->stopping && !e->queue_head)
			pthread_cond_wait(&e->queue_cond, &e->queue_lock);
		if (e->stopping) {
			pthread_mutex_unlock(&e->queue_lock);
			return NULL;
		}
		it = e->queue_head;
		e->queue_head = it->next;
		if (!e->queue_head)
			e->queue_tail = NULL;
		pthread_mutex_unlock(&e->queue_lock);

		if (it->revoke) {
			engine_revoke_pass(e);
			pthread_mutex_lock(&e->queue_lock);
			e->revoke_queued = false;
			pthread_mutex_unlock(&e->queue_lock);
			free(it);
			continue;
		}
		if (it->ari)
			engine_acme_check_ari(it->d);
		else
			issue_domain(e, it->d);
		pthread_mutex_lock(&it->d->lock);
		if (it->ari) {
			it->d->ari_queued = false;
		} else {
			it->d->queued = false;
			again = it->d->again;
			it->d->again = false;
		}
		pthread_mutex_unlock(&it->d->lock);
		if (again)
			engine_queue(e, it->d);
		engine_domain_put(it->d);
		free(it);
	}
}

/* Is d's certificate from another issuer than the configured one? (d->lock held) */
static bool issuer_changed(const struct engine_domain *d, enum conf_issuer issuer)
{
	enum engine_source want = issuer == CONF_ISSUER_ACME ? ENGINE_SOURCE_ACME :
				  issuer == CONF_ISSUER_LOCAL ? ENGINE_SOURCE_LOCAL :
								ENGINE_SOURCE_SELFSIGNED;

	if (!d->managed_gen)
		return false;
	if (d->stored_gen && d->source != ENGINE_SOURCE_UPLOADED)
		return d->source != want; /* the served one is the managed one */
	return d->source_managed_acme != (want == ENGINE_SOURCE_ACME);
}

void engine_renewal_conf(struct engine *e, const char *name, double *fraction,
			 enum conf_issuer *issuer)
{
	pthread_mutex_lock(&e->conf_lock);
	*fraction = e->conf.renew_fraction;
	*issuer = engine_issuer_of(&e->conf, name);
	pthread_mutex_unlock(&e->conf_lock);
}

/* why is optional; a rule that applies sets it when given. */
#define RENEW_WHY(...) ((void)(why ? snprintf(why, wl, __VA_ARGS__) : 0))

time_t engine_domain_renew_at(const struct engine_domain *d, time_t now, double fraction,
			      enum conf_issuer issuer, char *why, size_t wl)
{
	time_t life = d->managed_not_after - d->managed_not_before;

	if (why && wl)
		why[0] = '\0';
	if (d->removed)
		return 0;
	if (issuer == CONF_ISSUER_NONE) {
		RENEW_WHY("issuer none: no managed certificate");
		return 0;
	}
	if (d->hold_until > now) {
		RENEW_WHY("%s", d->hold_reason);
		return d->hold_until;
	}
	if (d->next_attempt) {
		RENEW_WHY("retry after %d failed attempt%s", d->failures,
			  d->failures == 1 ? "" : "s");
		return d->next_attempt > now ? d->next_attempt : now;
	}
	if (d->requested) {
		RENEW_WHY("requested (renew, names or a CSR)");
		return now;
	}
	if (!d->managed_gen) {
		RENEW_WHY("not issued yet");
		return now;
	}
	if (issuer_changed(d, issuer)) {
		RENEW_WHY("issuer changed to %s", conf_issuer_name(issuer));
		return now;
	}
	/* The CA's renewal window, when it gave one, decides. */
	if (d->ari_renew_at) {
		RENEW_WHY("inside the CA's renewal window (ARI)");
		return d->ari_renew_at;
	}
	RENEW_WHY("when %.0f%% of the lifetime is left", fraction * 100.0);
	/* Up to 2% of the lifetime of jitter, so that domains made together
	 * do not all renew in the same minute. */
	return d->managed_not_after - (time_t)((double)life * fraction) +
	       (life > 50 ? (time_t)(d->jitter % (unsigned)(life / 50)) : 0);
}

bool engine_domain_due(const struct engine_domain *d, time_t now, double fraction,
		       enum conf_issuer issuer)
{
	time_t at;

	if (d->removed || d->queued || issuer == CONF_ISSUER_NONE)
		return false;
	if (d->held_job && !(d->hold_until && now < d->hold_until))
		return true; /* held by the pacing rules, now free to go */
	if (d->cluster_retry_at && now < d->cluster_retry_at)
		return false; /* another node holds its lock */
	at = engine_domain_renew_at(d, now, fraction, issuer, NULL, 0);
	return at && now >= at;
}

/* A time for status: "2026-12-07T19:43:04Z", or null for 0. */
static json_t *time_json(time_t t)
{
	char s[32];

	if (!t)
		return json_null();
	util_format_time(t, s, sizeof(s));
	return json_string(s);
}

void engine_schedule_json(struct engine_domain *d, json_t *o)
{
	enum conf_issuer issuer;
	char why[256];
	double fraction;
	time_t next;

	engine_renewal_conf(d->engine, d->name, &fraction, &issuer);
	pthread_mutex_lock(&d->lock);
	next = engine_domain_renew_at(d, util_now(), fraction, issuer, why, sizeof(why));
	json_object_set_new(o, "next_renewal", time_json(next));
	json_object_set_new(o, "renewal_reason", json_string(why));
	json_object_set_new(o, "last_success", time_json(d->last_success));
	json_object_set_new(o, "last_attempt", time_json(d->last_attempt));
	json_object_set_new(o, "failures", json_integer(d->failures));
	json_object_set_new(o, "next_retry", time_json(d->next_attempt));
	pthread_mutex_unlock(&d->lock);
}

/*
 * Is the placeholder served while the issuer fails due for renewal, like
 * any certificate, when a fraction of its lifetime is left? (d->lock held)
 */
static bool placeholder_due(const struct engine_domain *d, time_t now, double fraction)
{
	time_t life, left;

	if (d->removed || d->stored_gen || !d->cur || d->cur->number)
		return false;
	life = d->cur->info.not_after - d->cur->info.not_before;
	left = d->cur->info.not_after - now;
	return left <= (time_t)((double)life * fraction);
}

/*
 * A fresh placeholder for d, served as any rotation (scheduler thread).
 * store_lock keeps the names and the stored state as they are while the key
 * is made, without holding d->lock, which readers take.
 */
static void placeholder_renew(struct engine_domain *d)
{
	struct engine_gen *g = NULL;
	bool wanted;
	int rc = -EAGAIN;

	pthread_mutex_lock(&d->store_lock);
	pthread_mutex_lock(&d->lock);
	wanted = !d->stored_gen && !d->removed;
	pthread_mutex_unlock(&d->lock);
	if (wanted)
		rc = engine_placeholder(d, &g);
	pthread_mutex_unlock(&d->store_lock);
	if (rc)
		return;
	util_info("engine: %s: self-signed placeholder renewed (the issuer has not delivered yet)",
		  d->name);
	engine_rotate(d, g);
	engine_gen_put(g);
}

enum engine_upload_event engine_upload_check(const struct engine_domain *d, time_t now,
					     int warn_days)
{
	if (d->removed || !d->uploaded_gen || d->stored_gen != d->uploaded_gen)
		return ENGINE_UPLOAD_NONE;
	if (now >= d->uploaded_not_after)
		return ENGINE_UPLOAD_EXPIRED;
	if (!d->uploaded_warned && now >= d->uploaded_not_after - (time_t)warn_days * 86400)
		return ENGINE_UPLOAD_EXPIRING;
	return ENGINE_UPLOAD_NONE;
}

/* The expiring notice, once: false when it was given already. */
static bool upload_warn_once(struct engine_domain *d)
{
	struct engine_state v;

	engine_state_begin(d, &v);
	if (v.uploaded_warned || d->removed) {
		engine_state_abort(d);
		return false;
	}
	v.uploaded_warned = true;
	engine_state_record(d, &v);
	return true;
}

/* Returns the earliest future moment something is due (0: none known). */
static time_t schedule_pass(struct engine *e)
{
	time_t next = 0;
	struct engine_domain **todo = NULL;
	enum engine_upload_event *events = NULL;
	size_t ntodo = 0, cap;
	time_t now = util_now();
	double fraction;
	int warn_days;
	struct conf c;
	bool revoke;

	pthread_mutex_lock(&e->queue_lock);
	revoke = e->revoke_next && now >= e->revoke_next;
	if (e->revoke_next > now)
		next = e->revoke_next;
	pthread_mutex_unlock(&e->queue_lock);
	if (revoke)
		engine_queue_revoke(e);

	engine_conf_snapshot(e, &c);
	fraction = c.renew_fraction;
	warn_days = c.warn_days;

	pthread_rwlock_rdlock(&e->table_lock);
	cap = e->count + 1;
	todo = calloc(cap, sizeof(*todo));
	events = calloc(cap, sizeof(*events));
	for (size_t i = 0; todo && events && i < e->table_size; i++) {
		for (struct engine_domain *d = e->table[i]; d; d = d->hnext) {
			enum conf_issuer issuer = engine_issuer_of(&c, d->name);
			enum engine_upload_event ev;
			bool due, ari, unsaved, user;

			pthread_mutex_lock(&d->lock);
			due = engine_domain_due(d, now, fraction, issuer);
			/* A held request of a user stays one (it is not the
			 * daemon's and takes nothing from the automatic bucket). */
			user = due && d->held_job && !d->held_auto;
			/* Wake for the earliest retry, hold or renewal window,
			 * not a fixed period later. */
			if (d->next_attempt > now && (!next || d->next_attempt < next))
				next = d->next_attempt;
			if (d->hold_until > now && (!next || d->hold_until < next))
				next = d->hold_until;
			if (d->ari_renew_at > now && (!next || d->ari_renew_at < next))
				next = d->ari_renew_at;
			if (d->cluster_retry_at > now && (!next || d->cluster_retry_at < next))
				next = d->cluster_retry_at;
			ev = engine_upload_check(d, now, warn_days);
			if (ev == ENGINE_UPLOAD_NONE && placeholder_due(d, now, fraction))
				ev = ENGINE_PLACEHOLDER_DUE;
			unsaved = d->state_unsaved != 0;
			ari = issuer == CONF_ISSUER_ACME && d->source_managed_acme &&
			      !d->ari_unsupported && !d->ari_queued && now >= d->ari_next_check &&
			      now >= d->ari_last_fetch + ACME_ARI_MIN_INTERVAL_S;
			pthread_mutex_unlock(&d->lock);
			if (user)
				engine_queue(e, d);
			else if (due)
				engine_queue_auto(e, d);
			else if (ari)
				engine_queue_ari(e, d);
			/* A state write that failed earlier is retried too. */
			if ((ev != ENGINE_UPLOAD_NONE || unsaved) && ntodo < cap) {
				todo[ntodo] = engine_domain_ref(d);
				events[ntodo++] = ev;
			}
		}
	}
	pthread_rwlock_unlock(&e->table_lock);

	/* Outside the table lock: these write the store and run hooks. */
	for (size_t i = 0; i < ntodo; i++) {
		struct engine_domain *d = todo[i];
		time_t not_after;
		char date[32];

		engine_state_retry(d);
		pthread_mutex_lock(&d->lock);
		not_after = d->uploaded_not_after;
		pthread_mutex_unlock(&d->lock);
		util_format_date(not_after, date, sizeof(date));
		if (events[i] == ENGINE_PLACEHOLDER_DUE) {
			placeholder_renew(d);
		} else if (events[i] == ENGINE_UPLOAD_EXPIRING && upload_warn_once(d)) {
			util_warn("engine: %s: uploaded certificate expires on %s; certfs cannot renew it",
				  d->name, date);
			engine_hook_queue(e, d, false, "expiring", not_after);
		} else if (events[i] == ENGINE_UPLOAD_EXPIRED) {
			char why[64];
			int rc;

			snprintf(why, sizeof(why), "expired on %s", date);
			/* Refused by the store: still served, and tried again next pass. */
			rc = engine_drop_upload(d, why);
			if (rc)
				util_err("engine: %s: cannot stop serving the expired upload: %s",
					 d->name, strerror(-rc));
			else
				engine_hook_queue(e, d, false, "expired", not_after);
		}
		engine_domain_put(d);
	}
	free(todo);
	free(events);
	conf_clear(&c);
	return next;
}

static void *scheduler_main(void *arg)
{
	struct engine *e = arg;
	/* With a test clock the clock can jump at any moment, so look often;
	 * otherwise once a minute is plenty for lifetimes counted in days. */
	int period_ms = getenv("CERTFS_CLOCK_FILE") ? 200 : 60000;

	pthread_mutex_lock(&e->queue_lock);
	while (!e->stopping) {
		struct timespec ts;
		time_t next, now;
		int wait_ms = period_ms;

		/* A wake from now on is seen: the pass may have read a domain
		 * before its retry time was set. */
		e->sched_kick = false;
		pthread_mutex_unlock(&e->queue_lock);
		next = schedule_pass(e);
		now = util_now();
		if (next > now && (next - now) * 1000 < wait_ms)
			wait_ms = (int)(next - now) * 1000;
		pthread_mutex_lock(&e->queue_lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait_ms / 1000;
		ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!e->stopping && !e->sched_kick)
			pthread_cond_timedwait(&e->sched_cond, &e->queue_lock, &ts);
	}
	pthread_mutex_unlock(&e->queue_lock);
	return NULL;
}

int engine_workers_start(struct engine *e)
{
	size_t n;
	int rc;

	pthread_mutex_lock(&e->conf_lock);
	n = (size_t)(e->conf.workers > 0 ? e->conf.workers : 4);
	pthread_mutex_unlock(&e->conf_lock);
	e->workers = calloc(n, sizeof(*e->workers));
	if (!e->workers)
		return -ENOMEM;
	for (e->nworkers = 0; e->nworkers < n; e->nworkers++) {
		rc = pthread_create(&e->workers[e->nworkers], NULL, worker_main, e);
		if (rc)
			return -rc;
	}
	rc = pthread_create(&e->scheduler, NULL, scheduler_main, e);
	if (rc)
		return -rc;
	e->scheduler_running = true;
	return 0;
}

void engine_workers_stop(struct engine *e)
{
	struct engine_job_item *it, *next;

	pthread_mutex_lock(&e->queue_lock);
	e->stopping = true;
	pthread_cond_broadcast(&e->queue_cond);
	pthread_cond_broadcast(&e->sched_cond);
	pthread_mutex_unlock(&e->queue_lock);
	for (size_t i = 0; i < e->nworkers; i++)
		pthread_join(e->workers[i], NULL);
	free(e->workers);
	e->workers = NULL;
	e->nworkers = 0;
	if (e->scheduler_running)
		pthread_join(e->scheduler, NULL);
	e->scheduler_running = false;
	for (it = e->queue_head; it; it = next) {
		next = it->next;
		engine_domain_put(it->d); /* NULL for a revocation pass */
		free(it);
	}
	e->queue_head = e->queue_tail = NULL;
}
