/* SPDX-License-Identifier: MIT */
/*
 * The files certfs writes about itself: status (text), status.json,
 * metrics (Prometheus text exposition) and ca.pem. Each is rendered whole
 * when opened, so a reader always gets one consistent snapshot.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certfs_version.h"
#include "engine/engine_int.h"

/*
 * Whole days from now to not_after, rounded to the nearest day. A fresh
 * certificate of 90 days shows 90 for its first half day, not 89 from its
 * second second on; two renders a moment apart agree.
 */
static long days_left(time_t not_after, time_t now)
{
	time_t d = not_after - now;

	return (long)(d >= 0 ? (d + 43200) / 86400 : -((-d + 43200) / 86400));
}

struct domain_view {
	char state[16];
	enum engine_source source;
	time_t not_before, not_after;
	time_t renew_at;             /* next renewal or retry, 0: none planned */
	bool has_key;                /* the served generation has key files */
	long days_left;
	uint64_t generation;
	uint64_t served;             /* the served generation's number */
	size_t stale;                /* stale readers (filled outside d->lock) */
	uint64_t issued_total, errors_total;
	uint64_t issue_failures, upload_refusals, hook_failures;
	char last_error[512];
};

/* The configuration a view depends on. */
struct view_conf {
	int warn_days;
	double renew_fraction;
	enum conf_issuer issuer;
};

/* The state a user sees, from the stored summary (d->lock held). */
static void domain_view(const struct engine_domain *d, struct domain_view *v, time_t now,
			const struct view_conf *vc)
{
	const char *st;

	v->source = d->stored_gen ? d->source : ENGINE_SOURCE_SELFSIGNED;
	v->not_before = d->not_before;
	v->not_after = d->not_after;
	v->renew_at = engine_domain_renew_at(d, now, vc->renew_fraction, vc->issuer, NULL, 0);
	v->has_key = d->cur && d->cur->has_key;
	v->generation = d->stored_gen;
	v->served = d->cur ? d->cur->number : 0;
	v->issued_total = d->issued_total;
	v->errors_total = d->errors_total;
	v->issue_failures = d->issue_failures;
	v->upload_refusals = d->upload_refusals;
	v->hook_failures = d->hook_failures;
	snprintf(v->last_error, sizeof(v->last_error), "%s", d->last_error);
	/* A state write the store refused: memory and store disagree until the
	 * scheduler's retry lands, and status says so. */
	if (d->state_unsaved)
		snprintf(v->last_error, sizeof(v->last_error), "%.400s%sstate not saved: %s",
			 d->last_error, d->last_error[0] ? "; " : "", strerror(-d->state_unsaved));
	if (!d->stored_gen && d->cur) {
		v->not_before = d->cur->info.not_before;
		v->not_after = d->cur->info.not_after;
	}
	v->days_left = days_left(v->not_after, now);
	if (!d->stored_gen)
		st = d->last_error[0] ? "error" : "issuing";
	else if (d->not_after <= now)
		st = "expired";
	else if (d->source == ENGINE_SOURCE_UPLOADED &&
		 d->not_after - now < (time_t)vc->warn_days * 86400) /* as the scheduler warns */
		st = "expiring";
	else
		st = "valid";
	snprintf(v->state, sizeof(v->state), "%s", st);
}

/* The configuration the domain's view depends on (not under d->lock). */
static void view_conf_of(struct engine *e, const char *name, struct view_conf *vc)
{
	pthread_mutex_lock(&e->conf_lock);
	vc->warn_days = e->conf.warn_days;
	pthread_mutex_unlock(&e->conf_lock);
	engine_renewal_conf(e, name, &vc->renew_fraction, &vc->issuer);
}

/* Is a certificate in this state one to serve? (cert-manager's Ready) */
static bool view_ready(const struct domain_view *v)
{
	return !strcmp(v->state, "valid") || !strcmp(v->state, "expiring");
}

/*
 * Prometheus text exposition (version 0.0.4). Every family is written
 * whole, HELP and TYPE first, then one sample per domain: Prometheus (and
 * promtool) reject a family whose samples are interleaved with another's.
 * Names follow cert-manager (certmanager_certificate_expiration_timestamp_
 * seconds, ..._renewal_timestamp_seconds, ..._ready_status) and
 * x509-certificate-exporter (not-before, expired), with certfs_ in front.
 */
enum metric_kind { METRIC_GAUGE, METRIC_COUNTER };

struct metric {
	const char *name, *help;
	enum metric_kind kind;
	/* Writes the domain's samples of this family (none is fine). */
	int (*sample)(struct util_buf *out, const char *name, const char *domain,
		      const struct domain_view *v);
};

static int sample_expiration(struct util_buf *out, const char *name, const char *domain,
			     const struct domain_view *v)
{
	return util_buf_printf(out, "%s{domain=\"%s\",source=\"%s\"} %lld\n", name, domain,
			       engine_source_name(v->source), (long long)v->not_after);
}

static int sample_not_before(struct util_buf *out, const char *name, const char *domain,
			     const struct domain_view *v)
{
	return util_buf_printf(out, "%s{domain=\"%s\",source=\"%s\"} %lld\n", name, domain,
			       engine_source_name(v->source), (long long)v->not_before);
}

static int sample_renewal(struct util_buf *out, const char *name, const char *domain,
			  const struct domain_view *v)
{
	if (!v->renew_at)
		return 0;
	return util_buf_printf(out, "%s{domain=\"%s\"} %lld\n", name, domain,
			       (long long)v->renew_at);
}

static int sample_ready(struct util_buf *out, const char *name, const char *domain,
			const struct domain_view *v)
{
	bool ready = view_ready(v);
	int rc = util_buf_printf(out, "%s{domain=\"%s\",condition=\"True\"} %d\n", name,
				 domain, ready);

	return rc ? rc : util_buf_printf(out, "%s{domain=\"%s\",condition=\"False\"} %d\n",
					 name, domain, !ready);
}

static int sample_expired(struct util_buf *out, const char *name, const char *domain,
			  const struct domain_view *v)
{
	return util_buf_printf(out, "%s{domain=\"%s\"} %d\n", name, domain,
			       !strcmp(v->state, "expired"));
}

#define COUNTER_SAMPLE(field)                                                                  \
	static int sample_##field(struct util_buf *out, const char *name, const char *domain, \
				  const struct domain_view *v)                                 \
	{                                                                                      \
		return util_buf_printf(out, "%s{domain=\"%s\"} %llu\n", name, domain,            \
				       (unsigned long long)v->field);                          \
	}
COUNTER_SAMPLE(issued_total)
COUNTER_SAMPLE(issue_failures)
COUNTER_SAMPLE(upload_refusals)
COUNTER_SAMPLE(hook_failures)

static int sample_stale(struct util_buf *out, const char *name, const char *domain,
			const struct domain_view *v)
{
	return util_buf_printf(out, "%s{domain=\"%s\"} %zu\n", name, domain, v->stale);
}

static const struct metric domain_metrics[] = {
	{"certfs_certificate_expiration_timestamp_seconds",
	 "End of validity (notAfter) of the served certificate, Unix time.", METRIC_GAUGE,
	 sample_expiration},
	{"certfs_certificate_not_before_timestamp_seconds",
	 "Start of validity (notBefore) of the served certificate, Unix time.", METRIC_GAUGE,
	 sample_not_before},
	{"certfs_certificate_renewal_timestamp_seconds",
	 "When the managed certificate is next renewed (or a failed issuance retried), Unix time.",
	 METRIC_GAUGE, sample_renewal},
	{"certfs_certificate_ready_status",
	 "Whether the domain serves a certificate from its issuer or an upload (condition True) "
	 "or not (False: issuing, failed or expired).",
	 METRIC_GAUGE, sample_ready},
	{"certfs_certificate_expired", "1 when the served certificate has expired.", METRIC_GAUGE,
	 sample_expired},
	{"certfs_issuance_total", "Certificates issued since the domain was created.",
	 METRIC_COUNTER, sample_issued_total},
	{"certfs_issuance_failures_total", "Failed issuances since certfs started.",
	 METRIC_COUNTER, sample_issue_failures},
	{"certfs_upload_refusals_total", "Writes into the domain refused since certfs started.",
	 METRIC_COUNTER, sample_upload_refusals},
	{"certfs_hook_failures_total",
	 "Deploy and notify hook runs that failed since certfs started.", METRIC_COUNTER,
	 sample_hook_failures},
	{"certfs_stale_readers",
	 "Running processes that read an older certificate of the domain than the one served "
	 "and have not read it since (not reloaded).",
	 METRIC_GAUGE, sample_stale},
};

static int render_metrics(struct engine *e, char **names, const struct domain_view *views,
			  size_t n, struct util_buf *out)
{
	int rc = util_buf_printf(out,
				 "# HELP certfs_build_info certfs version (the value is always 1).\n"
				 "# TYPE certfs_build_info gauge\n"
				 "certfs_build_info{version=\"%s\"} 1\n"
				 "# HELP certfs_store_up 1 while the store answers.\n"
				 "# TYPE certfs_store_up gauge\n"
				 "certfs_store_up %d\n"
				 "# HELP certfs_domains Domains in the tree.\n"
				 "# TYPE certfs_domains gauge\n"
				 "certfs_domains %zu\n",
				 CERTFS_VERSION, engine_cluster_reachable(e) ? 1 : 0, n);

	for (size_t m = 0; !rc && m < sizeof(domain_metrics) / sizeof(domain_metrics[0]); m++) {
		const struct metric *mt = &domain_metrics[m];

		rc = util_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", mt->name, mt->help,
				     mt->name, mt->kind == METRIC_COUNTER ? "counter" : "gauge");
		for (size_t i = 0; !rc && i < n; i++)
			if (names[i])
				rc = mt->sample(out, mt->name, names[i], &views[i]);
	}
	return rc;
}

/*
 * haproxy's crt-list: one line per domain that has a key, naming its
 * bundle.pem (key and chain in one file, which haproxy loads whole) by
 * its path in the mount. haproxy picks the certificate by SNI from the
 * certificates' own names, so no filter is written.
 */
static int render_crt_list(struct engine *e, char **names, const struct domain_view *views,
			   size_t n, struct util_buf *out)
{
	const char *mnt = e->mountpoint ? e->mountpoint : "";
	int rc = 0;

	for (size_t i = 0; !rc && i < n; i++)
		if (names[i] && views[i].has_key)
			rc = util_buf_printf(out, "%s/%s/%s\n", mnt, names[i],
					     engine_file_name(ENGINE_FILE_BUNDLE));
	return rc;
}

static int render_root(struct engine *e, enum engine_file f, struct util_buf *out)
{
	time_t now = util_now();
	struct view_conf vc;
	struct domain_view *views = NULL;
	json_t *arr = NULL;
	char **names;
	size_t n, stale_domains = 0;
	int rc = 0;

	n = engine_names(e, &names);
	views = calloc(n ? n : 1, sizeof(*views));
	if (!views) {
		rc = -ENOMEM;
		goto out;
	}
	/* One snapshot of every domain first: metrics are written family by
	 * family, and a family must agree with the others. */
	for (size_t i = 0; i < n; i++) {
		struct engine_domain *d = engine_domain_get(e, names[i]);

		if (!d) {
			free(names[i]);
			names[i] = NULL; /* removed meanwhile */
			continue;
		}
		view_conf_of(e, names[i], &vc);
		pthread_rwlock_rdlock(&d->publish_lock);
		pthread_mutex_lock(&d->lock);
		domain_view(d, &views[i], now, &vc);
		pthread_mutex_unlock(&d->lock);
		pthread_rwlock_unlock(&d->publish_lock);
		views[i].stale = engine_stale_readers(e, d, views[i].served, NULL, 0);
		stale_domains += views[i].stale > 0;
		engine_domain_put(d);
	}
	if (f == ENGINE_FILE_METRICS) {
		rc = render_metrics(e, names, views, n, out);
		goto out;
	}
	if (f == ENGINE_FILE_CRT_LIST) {
		rc = render_crt_list(e, names, views, n, out);
		goto out;
	}
	/* A shared store that does not answer: what is served is what was
	 * last known, and changes are refused until it is back. */
	if (f == ENGINE_FILE_STATUS && !engine_cluster_reachable(e))
		rc = util_buf_printf(out, "# store %s unreachable: serving what was last known, "
				     "changes refused\n", e->store->spec);
	if (f == ENGINE_FILE_STATUS_JSON) {
		arr = json_array();
		if (!arr) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; !rc && i < n; i++) {
		const struct domain_view *v = &views[i];
		char date[32];

		if (!names[i])
			continue;
		switch (f) {
		case ENGINE_FILE_STATUS:
			util_format_date(v->not_after, date, sizeof(date));
			rc = util_buf_printf(out, "%s %s %s %s %ld", names[i], v->state,
					     engine_source_name(v->source), date, v->days_left);
			/* A sixth field only when someone needs a reload. */
			if (!rc && v->stale)
				rc = util_buf_printf(out, " stale=%zu", v->stale);
			if (!rc)
				rc = util_buf_printf(out, "\n");
			break;
		case ENGINE_FILE_STATUS_JSON:
			util_format_time(v->not_after, date, sizeof(date));
			if (json_array_append_new(
				    arr, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "domain",
						   names[i], "state", v->state, "source",
						   engine_source_name(v->source), "not_after", date,
						   "days_left", (json_int_t)v->days_left,
						   "generation", (json_int_t)v->generation,
						   "stale_readers", (json_int_t)v->stale)))
				rc = -ENOMEM;
			break;
		default:
			rc = -ENOENT;
		}
	}
	if (!rc && f == ENGINE_FILE_STATUS && stale_domains)
		rc = util_buf_printf(out, "# %zu domain%s with stale readers (see DOMAIN/status)\n",
				     stale_domains, stale_domains == 1 ? "" : "s");
	if (!rc && f == ENGINE_FILE_STATUS_JSON) {
		json_t *o = json_pack("{s:o, s:s, s:I}", "domains", arr, "store",
				      engine_cluster_reachable(e) ? "reachable" : "unreachable",
				      "stale_domains", (json_int_t)stale_domains);
		char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;

		arr = NULL;
		rc = s ? util_buf_printf(out, "%s\n", s) : -ENOMEM;
		free(s);
		json_decref(o);
	}
out:
	json_decref(arr);
	free(views);
	engine_names_free(names, n);
	return rc;
}

/* Stale readers shown in a domain's status (the metric counts them all). */
#define RENDER_STALE_MAX 64

/*
 * d's stale readers as a JSON array (NULL on ENOMEM), found before the
 * status is rendered: the front end reads /proc to find them, which must
 * not hold up a publication.
 */
static json_t *stale_json(struct engine *e, struct engine_domain *d)
{
	struct engine_stale_reader *sr = calloc(RENDER_STALE_MAX, sizeof(*sr));
	struct engine_gen *g = engine_domain_gen(d);
	json_t *arr = json_array();
	size_t n = 0;

	if (sr && g)
		n = engine_stale_readers(e, d, g->number, sr, RENDER_STALE_MAX);
	for (size_t i = 0; arr && i < n && i < RENDER_STALE_MAX; i++) {
		char since[32];

		util_format_time(sr[i].since, since, sizeof(since));
		if (json_array_append_new(arr, json_pack("{s:i, s:s, s:s, s:I, s:s}", "pid",
							 (int)sr[i].pid, "command",
							 sr[i].command, "exe", sr[i].exe,
							 "generation",
							 (json_int_t)sr[i].generation, "since",
							 since))) {
			json_decref(arr);
			arr = NULL;
		}
	}
	engine_gen_put(g);
	free(sr);
	return arr;
}

/* "4242 nginx (generation 3, since 2026-12-07T22:00:00Z)" for status. */
static int stale_text(struct util_buf *out, json_t *r)
{
	return util_buf_printf(out, "%lld %s (generation %lld, since %s)",
			       (long long)json_integer_value(json_object_get(r, "pid")),
			       json_string_value(json_object_get(r, "command")),
			       (long long)json_integer_value(json_object_get(r, "generation")),
			       json_string_value(json_object_get(r, "since")));
}

/* "probe: endpoint=127.0.0.1:443 generation=3 current=yes ..." on one line. */
static int object_text(struct util_buf *out, const char *key, json_t *obj)
{
	const char *k;
	json_t *v;
	int rc = util_buf_printf(out, "%s:", key);

	json_object_foreach(obj, k, v) {
		if (rc)
			break;
		if (json_is_string(v))
			rc = util_buf_printf(out, " %s=%s", k, json_string_value(v));
		else if (json_is_integer(v))
			rc = util_buf_printf(out, " %s=%lld", k, (long long)json_integer_value(v));
		else if (json_is_boolean(v))
			rc = util_buf_printf(out, " %s=%s", k, json_is_true(v) ? "yes" : "no");
		else
			rc = util_buf_printf(out, " %s=none", k);
	}
	return rc ? rc : util_buf_printf(out, "\n");
}

static int render_domain_published(struct engine *e, struct engine_domain *d,
				   enum engine_file f, json_t *stale, struct util_buf *out)
{
	struct engine_gen *g = engine_domain_gen(d);
	time_t now = util_now();
	struct domain_view v;
	struct view_conf vc;
	char nb[32] = "", na[32] = "";
	json_t *o = NULL, *names = NULL;
	int rc = 0;

	view_conf_of(e, d->name, &vc);
	pthread_mutex_lock(&d->lock);
	domain_view(d, &v, now, &vc);
	if (f == ENGINE_FILE_NAMES) {
		for (size_t i = 0; !rc && i < d->nnames; i++)
			rc = util_buf_printf(out, "%s\n", d->names[i]);
		pthread_mutex_unlock(&d->lock);
		engine_gen_put(g);
		return rc;
	}
	names = json_array();
	for (size_t i = 0; names && i < d->nnames; i++)
		json_array_append_new(names, json_string(d->names[i]));
	pthread_mutex_unlock(&d->lock);
	if (!names || !g) {
		json_decref(names);
		engine_gen_put(g);
		return -ENOMEM;
	}
	/* The served generation is what the files hold; its own summary wins
	 * over the stored one (they differ only during a placeholder). */
	util_format_time(g->info.not_before, nb, sizeof(nb));
	util_format_time(g->info.not_after, na, sizeof(na));
	o = json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:s?}",
		      "domain", d->name, "names", names, "state", v.state, "source",
		      engine_source_name(g->source), "issuer", g->info.issuer, "serial",
		      g->info.serial, "not_before", nb, "not_after", na, "days_left",
		      (json_int_t)days_left(g->info.not_after, now),
		      "key_type", g->info.key_type, "fingerprint_sha256",
		      g->info.fingerprint_sha256, "generation", (json_int_t)g->number,
		      "last_error", v.last_error[0] ? v.last_error : NULL);
	if (o) {
		pthread_mutex_lock(&d->lock);
		json_object_set_new(o, "pending", d->pending[0] ? json_string(d->pending) : json_null());
		if (d->hook_error)
			json_object_set_new(o, "hook_error", json_string(d->hook_error));
		pthread_mutex_unlock(&d->lock);
		json_object_set_new(o, "subject", json_string(g->info.subject));
		json_object_set_new(o, "has_private_key", json_boolean(g->has_key));
		json_object_set(o, "stale_readers", stale);
		engine_probe_json(d, o);
		engine_schedule_json(d, o);
		/* Whether one is set, never what it is. */
		json_object_set_new(o, "passphrase", g->pfx_password ? json_string("set")
								     : json_null());
	}
	if (!o) {
		rc = -ENOMEM;
	} else if (f == ENGINE_FILE_STATUS_JSON) {
		char *s = json_dumps(o, JSON_INDENT(2));

		rc = s ? util_buf_printf(out, "%s\n", s) : -ENOMEM;
		free(s);
	} else {
		const char *key;
		json_t *val;

		json_object_foreach(o, key, val) {
			if (json_is_array(val)) {
				rc = util_buf_printf(out, "%s:", key);
				/* An empty list of names stays empty, as before. */
				if (!rc && !json_array_size(val) && !strcmp(key, "stale_readers"))
					rc = util_buf_printf(out, " none");
				for (size_t i = 0; !rc && i < json_array_size(val); i++) {
					json_t *el = json_array_get(val, i);

					rc = util_buf_printf(out, "%s ",
							     i && json_is_object(el) ? "," : "");
					if (!rc && json_is_object(el))
						rc = stale_text(out, el);
					else if (!rc)
						rc = util_buf_printf(out, "%s",
								     json_string_value(el));
				}
				if (!rc)
					rc = util_buf_printf(out, "\n");
			} else if (json_is_string(val)) {
				rc = util_buf_printf(out, "%s: %s\n", key, json_string_value(val));
			} else if (json_is_integer(val)) {
				rc = util_buf_printf(out, "%s: %lld\n", key,
						     (long long)json_integer_value(val));
			} else if (json_is_boolean(val)) {
				rc = util_buf_printf(out, "%s: %s\n", key,
						     json_is_true(val) ? "yes" : "no");
			} else if (json_is_object(val)) {
				rc = object_text(out, key, val);
			} else {
				rc = util_buf_printf(out, "%s: none\n", key);
			}
			if (rc)
				break;
		}
	}
	json_decref(o);
	engine_gen_put(g);
	return rc;
}

/* The state and the files agree: a publication under way is waited for. */
static int render_domain(struct engine *e, struct engine_domain *d, enum engine_file f,
			 struct util_buf *out)
{
	json_t *stale = f == ENGINE_FILE_NAMES ? NULL : stale_json(e, d);
	int rc;

	if (f != ENGINE_FILE_NAMES && !stale)
		return -ENOMEM;
	pthread_rwlock_rdlock(&d->publish_lock);
	rc = render_domain_published(e, d, f, stale, out);
	pthread_rwlock_unlock(&d->publish_lock);
	json_decref(stale);
	return rc;
}

bool engine_root_file_exists(struct engine *e, enum engine_file f)
{
	struct crypto_cert *root = NULL;

	/* With the ACME issuer there is no local CA: no ca.pem to list. */
	if (f == ENGINE_FILE_CA_PEM)
		return !engine_ca_get(e, false, &root) && root;
	return true;
}

int engine_render(struct engine *e, struct engine_domain *d, enum engine_file f,
		  struct util_buf *out)
{
	if (!d && f == ENGINE_FILE_LOG)
		return util_log_recent(out, NULL, NULL);
	if (f == ENGINE_FILE_LOG) {
		/* The domain's own lines: "module: NAME: ..." and "fs: NAME/FILE: ...". */
		char colon[260], slash[260];

		snprintf(colon, sizeof(colon), ": %s:", d->name);
		snprintf(slash, sizeof(slash), ": %s/", d->name);
		return util_log_recent(out, colon, slash);
	}
	if (!d && f == ENGINE_FILE_CA_PEM) {
		struct crypto_cert *root;

		if (engine_ca_get(e, false, &root) || !root)
			return -ENOENT;
		return crypto_cert_to_pem(root, out);
	}
	if (!d)
		return render_root(e, f, out);
	if (f != ENGINE_FILE_STATUS && f != ENGINE_FILE_STATUS_JSON && f != ENGINE_FILE_NAMES)
		return -ENOENT;
	return render_domain(e, d, f, out);
}

/* "example.com.pem" -> the domain, or NULL when the name is not of the view. */
static struct engine_domain *crt_view_domain(struct engine *e, const char *file)
{
	size_t len = strlen(file);
	char name[256];

	if (len <= 4 || len - 4 >= sizeof(name) || strcmp(file + len - 4, ".pem"))
		return NULL;
	memcpy(name, file, len - 4);
	name[len - 4] = '\0';
	return engine_domain_get(e, name);
}

int engine_crt_view_get(struct engine *e, const char *file, struct util_buf *out)
{
	struct engine_domain *d = crt_view_domain(e, file);
	struct engine_gen *g = d ? engine_domain_gen(d) : NULL;
	struct iovec part[2];
	int rc = -ENOENT;

	if (g && !engine_gen_bundle(g, part)) {
		rc = util_buf_append(out, part[0].iov_base, part[0].iov_len);
		if (!rc)
			rc = util_buf_append(out, part[1].iov_base, part[1].iov_len);
	}
	engine_gen_put(g);
	if (d)
		engine_domain_put(d);
	return rc;
}

size_t engine_crt_view_names(struct engine *e, char ***out)
{
	char **names;
	size_t n = engine_names(e, &names), kept = 0;

	for (size_t i = 0; i < n; i++) {
		struct engine_domain *d = engine_domain_get(e, names[i]);
		struct engine_gen *g = d ? engine_domain_gen(d) : NULL;
		char *file = NULL;

		/* A CSR-issued domain has no key: nothing haproxy could load. */
		if (g && engine_gen_has_key(g) && asprintf(&file, "%s.pem", names[i]) < 0)
			file = NULL;
		engine_gen_put(g);
		if (d)
			engine_domain_put(d);
		free(names[i]);
		names[i] = NULL;
		if (file)
			names[kept++] = file;
	}
	*out = names;
	return kept;
}
