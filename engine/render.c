/* SPDX-License-Identifier: MIT */
/*
 * The files certfs writes about itself: status (text), status.json,
 * metrics (Prometheus text exposition) and ca.pem. Each is rendered whole
 * when opened, so a reader always gets one consistent snapshot.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

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
	time_t not_after;
	long days_left;
	uint64_t generation;
	uint64_t issued_total, errors_total;
	char last_error[512];
};

/* The state a user sees, from the stored summary (d->lock held). */
static void domain_view(const struct engine_domain *d, struct domain_view *v, time_t now,
			int warn_days)
{
	const char *st;

	v->source = d->stored_gen ? d->source : ENGINE_SOURCE_SELFSIGNED;
	v->not_after = d->not_after;
	v->generation = d->stored_gen;
	v->issued_total = d->issued_total;
	v->errors_total = d->errors_total;
	snprintf(v->last_error, sizeof(v->last_error), "%s", d->last_error);
	if (!d->stored_gen && d->cur)
		v->not_after = d->cur->info.not_after;
	v->days_left = days_left(v->not_after, now);
	if (!d->stored_gen)
		st = d->last_error[0] ? "error" : "issuing";
	else if (d->not_after <= now)
		st = "expired";
	else if (d->source == ENGINE_SOURCE_UPLOADED &&
		 d->not_after - now < (time_t)warn_days * 86400) /* as the scheduler warns */
		st = "expiring";
	else
		st = "valid";
	snprintf(v->state, sizeof(v->state), "%s", st);
}

static int warn_days_of(struct engine *e)
{
	int w;

	pthread_mutex_lock(&e->conf_lock);
	w = e->conf.warn_days;
	pthread_mutex_unlock(&e->conf_lock);
	return w;
}

static int render_root(struct engine *e, enum engine_file f, struct util_buf *out)
{
	time_t now = util_now();
	int warn = warn_days_of(e);
	json_t *arr = NULL;
	char **names;
	size_t n;
	int rc = 0;

	n = engine_names(e, &names);
	/* A shared store that does not answer: what is served is what was
	 * last known, and changes are refused until it is back. */
	if (f == ENGINE_FILE_STATUS && !engine_cluster_reachable(e))
		rc = util_buf_printf(out, "# store %s unreachable: serving what was last known, "
				     "changes refused\n", e->store->spec);
	if (f == ENGINE_FILE_STATUS_JSON) {
		arr = json_array();
		if (!arr) {
			engine_names_free(names, n);
			return -ENOMEM;
		}
	}
	if (f == ENGINE_FILE_METRICS)
		rc = util_buf_printf(out,
				     "# HELP certfs_store_up 1 while the store answers.\n"
				     "# TYPE certfs_store_up gauge\ncertfs_store_up %d\n",
				     engine_cluster_reachable(e) ? 1 : 0);
	if (!rc && f == ENGINE_FILE_METRICS)
		rc = util_buf_printf(out,
				     "# HELP certfs_domains Number of domains served.\n"
				     "# TYPE certfs_domains gauge\ncertfs_domains %zu\n"
				     "# HELP certfs_issuance_total Certificates issued since the domain was created.\n"
				     "# TYPE certfs_issuance_total counter\n",
				     n);
	for (size_t i = 0; !rc && i < n; i++) {
		struct engine_domain *d = engine_domain_get(e, names[i]);
		struct domain_view v;
		char date[32];

		if (!d)
			continue;
		pthread_mutex_lock(&d->lock);
		domain_view(d, &v, now, warn);
		pthread_mutex_unlock(&d->lock);
		engine_domain_put(d);
		switch (f) {
		case ENGINE_FILE_STATUS:
			util_format_date(v.not_after, date, sizeof(date));
			rc = util_buf_printf(out, "%s %s %s %s %ld\n", names[i], v.state,
					     engine_source_name(v.source), date, v.days_left);
			break;
		case ENGINE_FILE_STATUS_JSON:
			util_format_time(v.not_after, date, sizeof(date));
			if (json_array_append_new(
				    arr, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "domain",
						   names[i], "state", v.state, "source",
						   engine_source_name(v.source), "not_after", date,
						   "days_left", (json_int_t)v.days_left,
						   "generation", (json_int_t)v.generation)))
				rc = -ENOMEM;
			break;
		case ENGINE_FILE_METRICS:
			rc = util_buf_printf(out, "certfs_issuance_total{domain=\"%s\"} %llu\n",
					     names[i], (unsigned long long)v.issued_total);
			if (!rc)
				rc = util_buf_printf(
					out,
					"certfs_certificate_expiry_timestamp_seconds{domain=\"%s\"} %lld\n",
					names[i], (long long)v.not_after);
			if (!rc)
				rc = util_buf_printf(out, "certfs_errors_total{domain=\"%s\"} %llu\n",
						     names[i], (unsigned long long)v.errors_total);
			if (!rc)
				rc = util_buf_printf(
					out, "certfs_certificate_ready{domain=\"%s\"} %d\n", names[i],
					!strcmp(v.state, "valid") || !strcmp(v.state, "expiring"));
			break;
		default:
			rc = -ENOENT;
		}
	}
	engine_names_free(names, n);
	if (!rc && f == ENGINE_FILE_STATUS_JSON) {
		json_t *o = json_pack("{s:o, s:s}", "domains", arr, "store",
				      engine_cluster_reachable(e) ? "reachable" : "unreachable");
		char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;

		arr = NULL;
		rc = s ? util_buf_printf(out, "%s\n", s) : -ENOMEM;
		free(s);
		json_decref(o);
	}
	if (!rc && f == ENGINE_FILE_METRICS)
		rc = util_buf_printf(out,
				     "# HELP certfs_issued_all_total Certificates issued by this process.\n"
				     "# TYPE certfs_issued_all_total counter\ncertfs_issued_all_total %lu\n"
				     "# HELP certfs_errors_all_total Failed issuances in this process.\n"
				     "# TYPE certfs_errors_all_total counter\ncertfs_errors_all_total %lu\n",
				     atomic_load(&e->issued_total), atomic_load(&e->errors_total));
	json_decref(arr);
	return rc;
}

static int render_domain(struct engine *e, struct engine_domain *d, enum engine_file f,
			 struct util_buf *out)
{
	struct engine_gen *g = engine_domain_gen(d);
	time_t now = util_now();
	struct domain_view v;
	char nb[32] = "", na[32] = "";
	json_t *o = NULL, *names = NULL;
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	domain_view(d, &v, now, warn_days_of(e));
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
		if (d->hook_error[0])
			json_object_set_new(o, "hook_error", json_string(d->hook_error));
		pthread_mutex_unlock(&d->lock);
		json_object_set_new(o, "subject", json_string(g->info.subject));
		json_object_set_new(o, "has_private_key", json_boolean(g->has_key));
		engine_schedule_json(d, o);
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
				for (size_t i = 0; !rc && i < json_array_size(val); i++)
					rc = util_buf_printf(out, " %s",
							     json_string_value(json_array_get(val, i)));
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

int engine_render(struct engine *e, struct engine_domain *d, enum engine_file f,
		  struct util_buf *out)
{
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
