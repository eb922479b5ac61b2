/* SPDX-License-Identifier: MIT */
/*
 * The engine's core: the domain table, the store records behind it and the
 * publication of generations.
 *
 * Store layout (keys of the store module):
 *   ca/root                    the local CA: root and intermediate, keys and certs
 *   domains/NAME/state         JSON: names, created, generation, summary, errors
 *   domains/NAME/gen/N         JSON: one generation (key PEM, chain PEM, source)
 *   archive/NAME@TIME/...      removed domains, moved whole
 * A new generation is written before the state that names it, so a crash
 * in between leaves the previous generation published and an unnamed record
 * that the next commit overwrites.
 */
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

static const char *const file_names[ENGINE_FILE_COUNT] = {
	[ENGINE_FILE_FULLCHAIN] = "fullchain.pem",
	[ENGINE_FILE_CERT] = "cert.pem",
	[ENGINE_FILE_CHAIN] = "chain.pem",
	[ENGINE_FILE_PRIVKEY] = "privkey.pem",
	[ENGINE_FILE_BUNDLE] = "bundle.pem",
	[ENGINE_FILE_PFX] = "cert.pfx",
	[ENGINE_FILE_STATUS] = "status",
	[ENGINE_FILE_STATUS_JSON] = "status.json",
	[ENGINE_FILE_NAMES] = "names",
	[ENGINE_FILE_REQUEST_CSR] = "request.csr",
	[ENGINE_FILE_PASSPHRASE] = "passphrase",
	[ENGINE_FILE_METRICS] = "metrics",
	[ENGINE_FILE_CA_PEM] = "ca.pem",
	[ENGINE_FILE_CRT_LIST] = "crt-list",
	[ENGINE_FILE_LOG] = "log",
};

const char *engine_file_name(enum engine_file f)
{
	return f < ENGINE_FILE_COUNT ? file_names[f] : "?";
}

enum engine_file engine_file_lookup(const char *name, bool root)
{
	if (root) {
		if (!strcmp(name, "status"))
			return ENGINE_FILE_STATUS;
		if (!strcmp(name, "status.json"))
			return ENGINE_FILE_STATUS_JSON;
		if (!strcmp(name, "metrics"))
			return ENGINE_FILE_METRICS;
		if (!strcmp(name, "ca.pem"))
			return ENGINE_FILE_CA_PEM;
		if (!strcmp(name, "crt-list"))
			return ENGINE_FILE_CRT_LIST;
		if (!strcmp(name, "log"))
			return ENGINE_FILE_LOG;
		return ENGINE_FILE_COUNT;
	}
	for (int f = 0; f <= ENGINE_FILE_PASSPHRASE; f++)
		if (!strcmp(name, file_names[f]))
			return (enum engine_file)f;
	if (!strcmp(name, "log"))
		return ENGINE_FILE_LOG;
	return ENGINE_FILE_COUNT;
}

const char *engine_source_name(enum engine_source s)
{
	switch (s) {
	case ENGINE_SOURCE_SELFSIGNED:
		return "selfsigned";
	case ENGINE_SOURCE_LOCAL:
		return "local";
	case ENGINE_SOURCE_ACME:
		return "acme";
	case ENGINE_SOURCE_UPLOADED:
		return "uploaded";
	}
	return "?";
}

/*
 * jansson holds private keys while records are built and parsed; give it an
 * allocator that wipes every block it frees.
 */
static void *json_secure_malloc(size_t n)
{
	return malloc(n);
}

static void json_secure_free(void *p)
{
	if (p)
		util_wipe(p, malloc_usable_size(p));
	free(p);
}

/* ---- the domain table --------------------------------------------------- */

static size_t name_hash(const char *s)
{
	size_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct engine_domain **table_slot(struct engine *e, const char *name)
{
	struct engine_domain **pp = &e->table[name_hash(name) & (e->table_size - 1)];

	while (*pp && strcmp((*pp)->name, name))
		pp = &(*pp)->hnext;
	return pp;
}

static int table_grow(struct engine *e)
{
	size_t nsize = e->table_size ? e->table_size * 2 : 1024;
	struct engine_domain **nt = calloc(nsize, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < e->table_size; i++) {
		struct engine_domain *d = e->table[i], *next;

		for (; d; d = next) {
			size_t h = name_hash(d->name) & (nsize - 1);

			next = d->hnext;
			d->hnext = nt[h];
			nt[h] = d;
		}
	}
	free(e->table);
	e->table = nt;
	e->table_size = nsize;
	return 0;
}

/* Insert (table write lock held); the table owns one reference. */
static int table_insert(struct engine *e, struct engine_domain *d)
{
	int rc;

	if (e->count + 1 > e->table_size / 2) {
		rc = table_grow(e);
		if (rc)
			return rc;
	}
	d->hnext = NULL;
	*table_slot(e, d->name) = d;
	e->count++;
	atomic_fetch_add(&e->version, 1);
	engine_names_free(e->sorted, e->nsorted);
	e->sorted = NULL;
	return 0;
}

/*
 * A domain's name as a store key segment and back: store keys take no ':',
 * so an IPv6 address ("::1") is kept as "++1" ('+' is in no DNS name).
 */
static void name_to_store(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s", name);
	for (char *p = out; *p; p++)
		if (*p == ':')
			*p = '+';
}

void engine_name_from_store(const char *key, char *out, size_t len)
{
	snprintf(out, len, "%s", key);
	for (char *p = out; *p; p++)
		if (*p == '+')
			*p = ':';
}

static struct engine_domain *domain_new(struct engine *e, const char *name)
{
	char stored[256];

	struct engine_domain *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	atomic_init(&d->refs, 1);
	d->engine = e;
	name_to_store(name, stored, sizeof(stored));
	d->name = strdup(name);
	if (!d->name || asprintf(&d->key, "domains/%s", stored) < 0) {
		free(d->name);
		free(d);
		return NULL;
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->store_lock, NULL);
	pthread_mutex_init(&d->write_lock, NULL);
	pthread_rwlock_init(&d->publish_lock, NULL);
	d->next_number = 1;
	if (crypto_random(&d->jitter, sizeof(d->jitter)))
		d->jitter = (unsigned)name_hash(name);
	return d;
}

bool engine_name_folds(const char *name)
{
	for (; *name; name++)
		if (*name >= 'A' && *name <= 'Z')
			return true;
	return false;
}

/* name with ASCII upper case folded into out[256]; false if too long. */
static bool fold_name(const char *name, char *out)
{
	size_t i;

	for (i = 0; name[i]; i++) {
		if (i >= 255)
			return false;
		out[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
	}
	out[i] = '\0';
	return true;
}

struct engine_domain *engine_domain_get(struct engine *e, const char *name)
{
	struct engine_domain *d;
	char folded[256];

	/* Lookups fold case the way mkdir does: `ls EXAMPLE.COM` finds it. */
	if (!fold_name(name, folded))
		return NULL;
	name = folded;
	pthread_rwlock_rdlock(&e->table_lock);
	d = e->table_size ? *table_slot(e, name) : NULL;
	if (d)
		atomic_fetch_add(&d->refs, 1);
	pthread_rwlock_unlock(&e->table_lock);
	return d;
}

struct engine_domain *engine_domain_ref(struct engine_domain *d)
{
	if (d)
		atomic_fetch_add(&d->refs, 1);
	return d;
}

void engine_domain_put(struct engine_domain *d)
{
	if (!d || atomic_fetch_sub(&d->refs, 1) != 1)
		return;
	engine_gen_put(d->cur);
	crypto_strv_free(d->names, d->nnames);
	free(d->name);
	free(d->key);
	free(d->hook_error);
	free(d->probe);
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->store_lock);
	pthread_mutex_destroy(&d->write_lock);
	pthread_rwlock_destroy(&d->publish_lock);
	free(d);
}

const char *engine_domain_name(const struct engine_domain *d)
{
	return d->name;
}

time_t engine_domain_created(const struct engine_domain *d)
{
	return d->created;
}

struct engine_gen *engine_domain_gen(struct engine_domain *d)
{
	struct engine_gen *g;

	pthread_mutex_lock(&d->lock);
	/* Generations are read from the store on first use, so a mount with
	 * many domains serves at once. */
	if (!d->gen_loaded) {
		/* Only memory can fail here: an unreadable generation gives a
		 * placeholder and a sentence in status. */
		if (engine_domain_load_gen(d))
			util_err("engine: %s: no generation to serve: out of memory", d->name);
		engine_domain_changed(d);
	}
	g = engine_gen_get(d->cur);
	pthread_mutex_unlock(&d->lock);
	return g;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t engine_names(struct engine *e, char ***names)
{
	size_t n = 0;
	char **v;

	/* A read path: the read lock keeps the table still while the cache
	 * is filled; names_lock keeps two readers from filling it at once. */
	pthread_rwlock_rdlock(&e->table_lock);
	pthread_mutex_lock(&e->names_lock);
	if (!e->sorted) {
		v = calloc(e->count + 1, sizeof(*v));
		if (v) {
			for (size_t i = 0; i < e->table_size; i++)
				for (struct engine_domain *d = e->table[i]; d; d = d->hnext)
					v[n++] = strdup(d->name);
			qsort(v, n, sizeof(*v), name_cmp);
			e->sorted = v;
			e->nsorted = n;
		}
	}
	n = 0;
	v = calloc(e->nsorted + 1, sizeof(*v));
	if (v && e->sorted) {
		for (; n < e->nsorted; n++)
			v[n] = strdup(e->sorted[n]);
	}
	pthread_mutex_unlock(&e->names_lock);
	pthread_rwlock_unlock(&e->table_lock);
	*names = v;
	return v ? n : 0;
}

void engine_names_free(char **names, size_t n)
{
	if (!names)
		return;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

uint64_t engine_version(struct engine *e)
{
	return atomic_load(&e->version);
}

void engine_domain_changed(struct engine_domain *d)
{
	d->state_version++;
	atomic_fetch_add(&d->engine->state_version, 1);
}

uint64_t engine_state_version(struct engine *e, struct engine_domain *d)
{
	uint64_t v;

	/* The root's files also say whether a shared store answers: that
	 * changes with any request, not only with the watch's events. */
	if (!d)
		return (atomic_load(&e->state_version) + atomic_load(&e->version)) * 2 +
		       (engine_cluster_reachable(e) ? 1 : 0);
	pthread_mutex_lock(&d->lock);
	v = d->state_version;
	pthread_mutex_unlock(&d->lock);
	return v;
}

size_t engine_count(struct engine *e)
{
	size_t n;

	pthread_rwlock_rdlock(&e->table_lock);
	n = e->count;
	pthread_rwlock_unlock(&e->table_lock);
	return n;
}

/* ---- state records ---------------------------------------------------------- */

void engine_domain_set_error(struct engine_domain *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->last_error, sizeof(d->last_error), fmt, ap);
	va_end(ap);
	d->last_error_write = false;
	engine_domain_changed(d);
}

/* The state record of v and names (caller frees), or NULL. */
static char *state_json(const struct engine_domain *d, const struct engine_state *v,
			char *const *names, size_t nnames)
{
	json_t *o, *jn, *vf;
	char *s;

	jn = json_array();
	for (size_t i = 0; jn && i < nnames; i++)
		json_array_append_new(jn, json_string(names[i]));
	o = json_pack("{s:o?, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:I}", "names", jn,
		      "created", (json_int_t)d->created, "generation", (json_int_t)v->stored_gen,
		      "not_before", (json_int_t)v->not_before, "not_after",
		      (json_int_t)v->not_after, "source", engine_source_name(v->source),
		      "issued_total", (json_int_t)v->issued_total, "errors_total",
		      (json_int_t)v->errors_total, "next_attempt", (json_int_t)v->next_attempt,
		      "failures", (json_int_t)v->failures);
	if (!o)
		return NULL;
	json_object_set_new(o, "managed_gen", json_integer((json_int_t)v->managed_gen));
	json_object_set_new(o, "managed_not_before",
			    json_integer((json_int_t)v->managed_not_before));
	json_object_set_new(o, "managed_not_after", json_integer((json_int_t)v->managed_not_after));
	json_object_set_new(o, "uploaded_gen", json_integer((json_int_t)v->uploaded_gen));
	json_object_set_new(o, "uploaded_not_after",
			    json_integer((json_int_t)v->uploaded_not_after));
	json_object_set_new(o, "uploaded_warned", json_boolean(v->uploaded_warned));
	json_object_set_new(o, "csr", json_boolean(v->has_csr));
	json_object_set_new(o, "managed_acme", json_boolean(v->source_managed_acme));
	json_object_set_new(o, "next_number", json_integer((json_int_t)v->next_number));
	if (v->last_success)
		json_object_set_new(o, "last_success", json_integer((json_int_t)v->last_success));
	if (v->last_attempt)
		json_object_set_new(o, "last_attempt", json_integer((json_int_t)v->last_attempt));
	if (v->requested)
		json_object_set_new(o, "requested", json_integer((json_int_t)v->requested));
	vf = json_array();
	for (size_t i = 0; vf && i < ACME_FAILED_VALIDATIONS_PER_HOUR; i++)
		if (v->vfail[i])
			json_array_append_new(vf, json_integer((json_int_t)v->vfail[i]));
	if (vf && json_array_size(vf))
		json_object_set_new(o, "failed_validations", vf);
	else
		json_decref(vf);
	if (v->pending[0])
		json_object_set_new(o, "pending", json_string(v->pending));
	if (v->last_error[0])
		json_object_set_new(o, "last_error", json_string(v->last_error));
	if (v->last_error[0] && v->last_error_write)
		json_object_set_new(o, "last_error_write", json_true());
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* Write v as d's state record (d->store_lock held, d->lock not held). */
static int state_write(struct engine_domain *d, const struct engine_state *v,
		       char *const *names, size_t nnames, bool create)
{
	char key[320], *s;
	int rc;

	s = state_json(d, v, names, nnames);
	if (!s)
		return -ENOMEM;
	snprintf(key, sizeof(key), "%s/state", d->key);
	rc = create ? store_put_if(d->engine->store, key, s, strlen(s), 0)
		    : store_put(d->engine->store, key, s, strlen(s));
	free(s);
	if (rc && rc != -EEXIST)
		util_err("engine: %s: store state: %s", d->name, strerror(-rc));
	return rc;
}

void engine_state_begin(struct engine_domain *d, struct engine_state *v)
{
	pthread_mutex_lock(&d->store_lock);
	pthread_mutex_lock(&d->lock);
	*v = d->st;
	pthread_mutex_unlock(&d->lock);
}

void engine_state_abort(struct engine_domain *d)
{
	pthread_mutex_unlock(&d->store_lock);
}

/* d's state becomes v (d->store_lock held). */
static void state_assign(struct engine_domain *d, const struct engine_state *v, int unsaved)
{
	pthread_mutex_lock(&d->lock);
	d->st = *v;
	d->state_unsaved = unsaved;
	engine_domain_changed(d);
	pthread_mutex_unlock(&d->lock);
}

/* engine_state_commit_names without releasing d->store_lock. */
static int state_commit_locked(struct engine_domain *d, const struct engine_state *v,
			       char ***names, size_t *n, bool publish)
{
	char **old;
	size_t oldn;
	int rc;

	/* d->removed and d->names change only under store_lock, held here. */
	if (d->removed)
		return -ENOENT;
	rc = state_write(d, v, names ? *names : d->names, names ? *n : d->nnames, false);
	if (rc)
		return rc;
	/* A state that names a generation to serve: status waits until the
	 * mounts serve it (the caller releases publish_lock after that). */
	if (publish)
		pthread_rwlock_wrlock(&d->publish_lock);
	pthread_mutex_lock(&d->lock);
	if (names) {
		old = d->names;
		oldn = d->nnames;
		d->names = *names;
		d->nnames = *n;
		*names = old;
		*n = oldn;
	}
	d->st = *v;
	d->state_unsaved = 0;
	engine_domain_changed(d);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* engine_state_commit, holding publish_lock on success when publish is set. */
static int state_commit_publish(struct engine_domain *d, const struct engine_state *v,
				bool publish)
{
	int rc = state_commit_locked(d, v, NULL, NULL, publish);

	pthread_mutex_unlock(&d->store_lock);
	return rc;
}

int engine_state_commit_names(struct engine_domain *d, const struct engine_state *v,
			      char ***names, size_t *n)
{
	int rc = state_commit_locked(d, v, names, n, false);

	pthread_mutex_unlock(&d->store_lock);
	return rc;
}

int engine_state_commit(struct engine_domain *d, const struct engine_state *v)
{
	return engine_state_commit_names(d, v, NULL, NULL);
}

void engine_state_record(struct engine_domain *d, const struct engine_state *v)
{
	int rc = d->removed ? 0 : state_write(d, v, d->names, d->nnames, false);

	/*
	 * Fenced out (a shared store): another node took the domain's lock
	 * while this one held a copy. Its state stands and arrives through
	 * the watch; this copy is neither shown nor retried, or the retry
	 * (which writes unfenced) would put the stale copy over the new
	 * holder's certificate.
	 */
	if (rc == -ESTALE) {
		pthread_mutex_unlock(&d->store_lock);
		return;
	}
	state_assign(d, v, rc);
	pthread_mutex_unlock(&d->store_lock);
}

void engine_state_retry(struct engine_domain *d)
{
	struct engine_state v;
	int rc;

	engine_state_begin(d, &v);
	if (!d->state_unsaved || d->removed) {
		engine_state_abort(d);
		return;
	}
	rc = state_write(d, &v, d->names, d->nnames, false);
	state_assign(d, &v, rc);
	pthread_mutex_unlock(&d->store_lock);
	if (!rc)
		util_info("engine: %s: state saved after an earlier failure", d->name);
}

int engine_domain_record_put(struct engine_domain *d, const char *what, const void *data,
			     size_t len)
{
	char key[320];
	int rc = -ENOENT;

	snprintf(key, sizeof(key), "%s/%s", d->key, what);
	pthread_mutex_lock(&d->store_lock);
	if (!d->removed)
		rc = store_put(d->engine->store, key, data, len);
	pthread_mutex_unlock(&d->store_lock);
	return rc;
}

int engine_domain_record_del(struct engine_domain *d, const char *what)
{
	char key[320];
	int rc = -ENOENT;

	snprintf(key, sizeof(key), "%s/%s", d->key, what);
	pthread_mutex_lock(&d->store_lock);
	if (!d->removed) {
		rc = store_del(d->engine->store, key);
		if (rc == -ENOENT)
			rc = 0;
	}
	pthread_mutex_unlock(&d->store_lock);
	return rc;
}

int engine_domain_parse_state(struct engine_domain *d, const struct util_buf *b)
{
	json_t *o, *names, *v;
	json_error_t jerr;
	size_t i;

	o = json_loadb((const char *)b->data, b->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return -EINVAL;
	}
	/* Parsed again when another node changed the domain (cluster.c). */
	crypto_strv_free(d->names, d->nnames);
	d->names = NULL;
	d->nnames = 0;
	d->pending[0] = '\0';
	d->last_error[0] = '\0';
	names = json_object_get(o, "names");
	if (json_is_array(names) && json_array_size(names) > 0) {
		d->names = calloc(json_array_size(names) + 1, sizeof(char *));
		if (!d->names) {
			json_decref(o);
			return -ENOMEM;
		}
		json_array_foreach(names, i, v) {
			if (json_is_string(v))
				d->names[d->nnames++] = strdup(json_string_value(v));
		}
	}
	{
		/* Set once: lookups read it without a lock, and a state from
		 * another node names the same creation time. */
		time_t created = (time_t)json_integer_value(json_object_get(o, "created"));

		if (d->created != created)
			d->created = created;
	}
	d->stored_gen = (uint64_t)json_integer_value(json_object_get(o, "generation"));
	d->not_before = (time_t)json_integer_value(json_object_get(o, "not_before"));
	d->not_after = (time_t)json_integer_value(json_object_get(o, "not_after"));
	d->issued_total = (uint64_t)json_integer_value(json_object_get(o, "issued_total"));
	d->errors_total = (uint64_t)json_integer_value(json_object_get(o, "errors_total"));
	d->next_attempt = (time_t)json_integer_value(json_object_get(o, "next_attempt"));
	d->last_success = (time_t)json_integer_value(json_object_get(o, "last_success"));
	d->last_attempt = (time_t)json_integer_value(json_object_get(o, "last_attempt"));
	d->requested = (time_t)json_integer_value(json_object_get(o, "requested"));
	memset(d->vfail, 0, sizeof(d->vfail));
	v = json_object_get(o, "failed_validations");
	for (i = 0; json_is_array(v) && i < json_array_size(v); i++) {
		time_t t = (time_t)json_integer_value(json_array_get(v, i));

		if (t > 0) /* the newest are kept, should there be more */
			engine_vfail_add(d->vfail, t);
	}
	d->failures = (int)json_integer_value(json_object_get(o, "failures"));
	d->managed_gen = (uint64_t)json_integer_value(json_object_get(o, "managed_gen"));
	d->managed_not_before = (time_t)json_integer_value(json_object_get(o, "managed_not_before"));
	d->managed_not_after = (time_t)json_integer_value(json_object_get(o, "managed_not_after"));
	d->uploaded_gen = (uint64_t)json_integer_value(json_object_get(o, "uploaded_gen"));
	d->uploaded_not_after = (time_t)json_integer_value(json_object_get(o, "uploaded_not_after"));
	d->uploaded_warned = json_is_true(json_object_get(o, "uploaded_warned"));
	d->has_csr = json_is_true(json_object_get(o, "csr"));
	d->source_managed_acme = json_is_true(json_object_get(o, "managed_acme"));
	v = json_object_get(o, "pending");
	if (json_is_string(v))
		snprintf(d->pending, sizeof(d->pending), "%s", json_string_value(v));
	v = json_object_get(o, "last_error");
	if (json_is_string(v))
		snprintf(d->last_error, sizeof(d->last_error), "%s", json_string_value(v));
	d->last_error_write = json_is_true(json_object_get(o, "last_error_write"));
	v = json_object_get(o, "source");
	for (int s = ENGINE_SOURCE_SELFSIGNED; json_is_string(v) && s <= ENGINE_SOURCE_UPLOADED;
	     s++)
		if (!strcmp(json_string_value(v), engine_source_name((enum engine_source)s)))
			d->source = (enum engine_source)s;
	d->next_number = (uint64_t)json_integer_value(json_object_get(o, "next_number"));
	if (d->next_number <= d->stored_gen)
		d->next_number = d->stored_gen + 1;
	if (d->next_number <= d->managed_gen)
		d->next_number = d->managed_gen + 1;
	if (d->next_number <= d->uploaded_gen)
		d->next_number = d->uploaded_gen + 1;
	json_decref(o);
	if (!d->nnames) {
		d->names = calloc(2, sizeof(char *));
		if (!d->names)
			return -ENOMEM;
		d->names[0] = strdup(d->name);
		d->nnames = 1;
	}
	return 0;
}


char *engine_domain_passphrase(struct engine_domain *d)
{
	struct util_buf b;
	char key[320], *s = NULL;

	util_buf_init(&b, 64 * 1024, true);
	snprintf(key, sizeof(key), "%s/passphrase", d->key);
	if (!store_get(d->engine->store, key, &b)) {
		/* Secret memory: a core dump leaves it out. */
		s = util_secret_alloc(b.len + 1);
		if (s)
			memcpy(s, b.data, b.len);
	}
	util_buf_free(&b);
	return s;
}

void engine_gen_set_passphrase(struct engine_domain *d, struct engine_gen *g)
{
	util_secret_str_free(g->pfx_password);
	g->pfx_password = engine_domain_passphrase(d);
}

void engine_rotate(struct engine_domain *d, struct engine_gen *g)
{
	pthread_rwlock_wrlock(&d->publish_lock);
	engine_notify_rotate(d->engine, d, g);
	pthread_rwlock_unlock(&d->publish_lock);
}

/* A copy of g (its record read back) that takes d's passphrase now. */
static int gen_copy(struct engine_domain *d, const struct engine_gen *g, struct engine_gen **out)
{
	struct util_buf rec;
	char err[300];
	int rc;

	*out = NULL;
	util_buf_init(&rec, ENGINE_RECORD_MAX, true);
	rc = engine_gen_to_record(g, &rec);
	if (!rc)
		rc = engine_gen_from_record(d->engine, rec.data, rec.len, out, err, sizeof(err));
	if (!rc)
		engine_gen_set_passphrase(d, *out);
	util_buf_free(&rec);
	return rc;
}

void engine_domain_refresh_pfx(struct engine_domain *d)
{
	struct engine_gen *g = NULL, *placeholder = NULL;

	/* The same generation (same number, same bytes but cert.pfx), read
	 * anew so that it takes the new passphrase; the front end publishes
	 * it like any rotation, and the deploy hook runs: cert.pfx changed.
	 * store_lock, not d->lock: the state stays put during the read, and
	 * readers of the tree are not held up by store I/O. */
	pthread_mutex_lock(&d->store_lock);
	if (d->stored_gen && !d->removed && engine_domain_read_gen(d, d->stored_gen, &g))
		g = NULL;
	if (!d->stored_gen && !d->removed) {
		/* Only the placeholder is served (issuance pending): it is in
		 * no store, so it is copied, key and certificate kept. */
		pthread_mutex_lock(&d->lock);
		if (d->cur && !d->cur->number)
			placeholder = engine_gen_get(d->cur);
		pthread_mutex_unlock(&d->lock);
		if (placeholder && gen_copy(d, placeholder, &g))
			g = NULL;
		engine_gen_put(placeholder);
	}
	pthread_mutex_unlock(&d->store_lock);
	if (!g)
		return;
	engine_rotate(d, g);
	engine_gen_put(g);
}

int engine_domain_read_gen(struct engine_domain *d, uint64_t n, struct engine_gen **out)
{
	struct util_buf b;
	char key[320], err[300];
	int rc;

	util_buf_init(&b, ENGINE_RECORD_MAX, true);
	snprintf(key, sizeof(key), "%s/gen/%llu", d->key, (unsigned long long)n);
	rc = store_get(d->engine->store, key, &b);
	if (!rc) {
		rc = engine_gen_from_record(d->engine, b.data, b.len, out, err, sizeof(err));
		if (rc)
			util_err("engine: %s: %s: %s", d->name, key, err);
		else
			engine_gen_set_passphrase(d, *out);
	}
	util_buf_free(&b);
	return rc;
}

/*
 * Read the stored generation into d->cur (d->lock held). A domain whose
 * stored generation is unreadable keeps serving a placeholder and says why.
 */
int engine_domain_load_gen(struct engine_domain *d)
{
	struct engine_gen *g = NULL;
	char err[600];
	int rc;

	if (d->gen_loaded)
		return 0;
	d->gen_loaded = true;
	if (!d->stored_gen)
		goto placeholder;
	rc = engine_domain_read_gen(d, d->stored_gen, &g);
	snprintf(err, sizeof(err), "%s", rc ? strerror(-rc) : "");
	if (!rc) {
		d->cur = g;
		d->source = g->source;
		d->not_after = g->info.not_after;
		d->not_before = g->info.not_before;
		return 0;
	}
	util_err("engine: %s: %s", d->name, err);
	engine_domain_set_error(d, "stored generation %llu is unreadable: %s",
				(unsigned long long)d->stored_gen, err);
placeholder:
	rc = engine_placeholder(d, &g);
	if (rc)
		return rc;
	d->cur = g;
	return 0;
}

/*
 * Add the domain stored under stored (its name in the store) with its
 * state (got: 0 with data, or why it could not be read). A domain without
 * a readable state is skipped, not fatal: the rest of the tree must still
 * come up.
 */
static int domain_add(struct engine *e, const char *stored, int got, const void *data,
		      size_t len)
{
	struct util_buf b = {.data = (unsigned char *)(uintptr_t)data, .len = len};
	struct engine_domain *d;
	char name[256], key[320];
	int rc = got;

	engine_name_from_store(stored, name, sizeof(name));
	/* No state and nothing else: a mkdir that failed or was killed before
	 * its first write landed. It was never acknowledged; remove it. */
	if (rc == -ENOENT) {
		snprintf(key, sizeof(key), "domains/%s", stored);
		if (!store_del(e->store, key)) {
			util_info("engine: %s: removed the empty leftover of an unfinished mkdir",
				  name);
			return 0;
		}
	}
	d = domain_new(e, name);
	if (!d)
		return -ENOMEM;
	if (!rc)
		rc = engine_domain_parse_state(d, &b);
	if (rc) {
		util_err("engine: %s: state unreadable (%s), skipped", name, strerror(-rc));
		engine_domain_put(d);
		return rc == -ENOMEM ? rc : 0;
	}
	pthread_rwlock_wrlock(&e->table_lock);
	/* Another node's domain may arrive twice (listing and watch). */
	rc = *table_slot(e, name) ? 0 : table_insert(e, d);
	if (!rc && *table_slot(e, name) == d)
		d = NULL;
	pthread_rwlock_unlock(&e->table_lock);
	engine_domain_put(d);
	return rc;
}

int engine_domain_load(struct engine *e, const char *name)
{
	struct util_buf b;
	char key[320], stored[256];
	int rc;

	name_to_store(name, stored, sizeof(stored));
	util_buf_init(&b, ENGINE_RECORD_MAX, false);
	snprintf(key, sizeof(key), "domains/%s/state", stored);
	/* mkdir_lock: the watch may bring this node's own mkdir back before
	 * that mkdir has put its domain in the table; it must find it there
	 * rather than add a second one. */
	pthread_mutex_lock(&e->mkdir_lock);
	rc = store_get(e->store, key, &b);
	rc = domain_add(e, stored, rc, b.data, b.len);
	pthread_mutex_unlock(&e->mkdir_lock);
	util_buf_free(&b);
	return rc;
}

/* The stored domain names, then their states read in batches. */
struct load_ctx {
	struct engine *e;
	char **names, **keys;
	size_t n, cap;
};

static int collect_cb(const char *name, void *arg)
{
	struct load_ctx *ctx = arg;

	if (ctx->n == ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap * 2 : 256;
		char **nn = realloc(ctx->names, cap * sizeof(*nn));

		if (nn)
			ctx->names = nn;
		nn = nn ? realloc(ctx->keys, cap * sizeof(*nn)) : NULL;
		if (!nn)
			return -ENOMEM;
		ctx->keys = nn;
		ctx->cap = cap;
	}
	ctx->names[ctx->n] = strdup(name);
	if (!ctx->names[ctx->n])
		return -ENOMEM;
	if (asprintf(&ctx->keys[ctx->n], "domains/%s/state", name) < 0) {
		free(ctx->names[ctx->n]);
		return -ENOMEM;
	}
	ctx->n++;
	return 0;
}

static int loaded_cb(size_t i, int got, const void *data, size_t len, void *arg)
{
	struct load_ctx *ctx = arg;
	int rc = domain_add(ctx->e, ctx->names[i], got, data, len);

	return rc < 0 ? rc : 0;
}

int engine_new(const struct conf *c, struct store *s, struct engine **out, char *err,
	       size_t errlen)
{
	struct load_ctx ctx = {0};
	struct engine *e;
	int rc;

	json_set_alloc_funcs(json_secure_malloc, json_secure_free);
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->store = s;
	pthread_mutex_init(&e->conf_lock, NULL);
	pthread_rwlock_init(&e->table_lock, NULL);
	pthread_mutex_init(&e->mkdir_lock, NULL);
	pthread_mutex_init(&e->names_lock, NULL);
	pthread_mutex_init(&e->observer_lock, NULL);
	pthread_mutex_init(&e->ca_lock, NULL);
	pthread_mutex_init(&e->queue_lock, NULL);
	pthread_cond_init(&e->queue_cond, NULL);
	pthread_cond_init(&e->sched_cond, NULL);
	pthread_mutex_init(&e->hook_lock, NULL);
	pthread_mutex_init(&e->acme_lock, NULL);
	pthread_cond_init(&e->hook_cond, NULL);
	rc = conf_dup(c, &e->conf);
	if (rc) {
		snprintf(err, errlen, "out of memory");
		free(e);
		return rc;
	}
	rc = table_grow(e);
	if (rc)
		goto fail;
	ctx.e = e;
	rc = store_list(s, "domains", collect_cb, &ctx);
	if (rc == -ENOENT)
		rc = 0;
	if (!rc)
		rc = store_get_many(s, (const char *const *)ctx.keys, ctx.n, ENGINE_RECORD_MAX,
				    loaded_cb, &ctx);
	engine_names_free(ctx.names, ctx.n);
	engine_names_free(ctx.keys, ctx.n);
	if (rc) {
		snprintf(err, errlen, "store %s: cannot list domains: %s", s->spec, strerror(-rc));
		goto fail;
	}
	*out = e;
	return 0;
fail:
	engine_free(e);
	return rc;
}

void engine_set_observer(struct engine *e, const struct engine_observer *obs)
{
	pthread_mutex_lock(&e->observer_lock);
	if (obs)
		e->observer = *obs;
	else
		memset(&e->observer, 0, sizeof(e->observer));
	pthread_mutex_unlock(&e->observer_lock);
}

int engine_start(struct engine *e)
{
	struct crypto_cert *root;
	bool local;
	int rc;

	pthread_mutex_lock(&e->conf_lock);
	local = e->conf.issuer == CONF_ISSUER_LOCAL;
	pthread_mutex_unlock(&e->conf_lock);
	/* With the local issuer, ca.pem is there from the first moment so a
	 * client can be told to trust it before any domain exists. */
	if (local && engine_ca_get(e, true, &root))
		util_err("engine: local CA: cannot be created or loaded");
	if (engine_hooks_start(e))
		return -EAGAIN;
	if (engine_acme_start(e))
		return -EADDRINUSE;
	if (engine_cluster_start(e))
		return -EAGAIN;
	rc = engine_workers_start(e);
	/* Revocations a previous run left unfinished. */
	if (!rc)
		engine_queue_revoke(e);
	return rc;
}

void engine_cancel(struct engine *e)
{
	atomic_store(&e->cancel, true);
	engine_acme_cancel(e);
}

void engine_stop(struct engine *e)
{
	engine_cancel(e);
	engine_cluster_stop(e);
	engine_workers_stop(e);
	engine_hooks_stop(e);
	engine_acme_stop(e);
}

void engine_set_mountpoint(struct engine *e, const char *path)
{
	free(e->mountpoint);
	e->mountpoint = path ? strdup(path) : NULL;
}

void engine_set_deploy_delay(struct engine *e, uint64_t ms)
{
	pthread_mutex_lock(&e->hook_lock);
	if (ms > e->deploy_delay_ms)
		e->deploy_delay_ms = ms;
	pthread_mutex_unlock(&e->hook_lock);
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	engine_cancel(e);
	engine_workers_stop(e);
	engine_hooks_stop(e);
	engine_acme_stop(e);
	for (size_t i = 0; i < e->table_size; i++) {
		struct engine_domain *d = e->table[i], *next;

		for (; d; d = next) {
			next = d->hnext;
			engine_domain_put(d);
		}
	}
	free(e->table);
	engine_names_free(e->sorted, e->nsorted);
	crypto_key_free(e->ca_key);
	crypto_cert_free(e->ca_cert);
	crypto_key_free(e->int_key);
	crypto_cert_free(e->int_cert);
	conf_clear(&e->conf);
	free(e->mountpoint);
	free(e);
}

int engine_reload(struct engine *e, const struct conf *c)
{
	struct conf copy;
	int rc;

	rc = conf_dup(c, &copy);
	if (rc)
		return rc;
	pthread_mutex_lock(&e->conf_lock);
	engine_acme_reload(e, &e->conf, &copy);
	conf_clear(&e->conf);
	e->conf = copy;
	pthread_mutex_unlock(&e->conf_lock);
	engine_schedule_wake(e);
	return 0;
}

void engine_conf_snapshot(struct engine *e, struct conf *out)
{
	pthread_mutex_lock(&e->conf_lock);
	if (conf_dup(&e->conf, out))
		conf_init(out);
	pthread_mutex_unlock(&e->conf_lock);
}

void engine_key_owner(struct engine *e, uid_t *uid, gid_t *gid, mode_t *mode)
{
	pthread_mutex_lock(&e->conf_lock);
	*uid = e->conf.key_owner;
	*gid = e->conf.key_group;
	*mode = e->conf.key_mode;
	pthread_mutex_unlock(&e->conf_lock);
}

/* ---- mkdir / rmdir ------------------------------------------------------- */

int engine_name_check(struct engine *e, const char *domain, const char *name, char *canon,
		      size_t canonlen, char *why, size_t whylen)
{
	struct crypto_err cerr = {{0}};
	enum conf_issuer issuer;
	char strict[256];

	if (crypto_name_validate_dev(name, canon, canonlen, &cerr)) {
		snprintf(why, whylen, "%s", cerr.msg);
		return -EINVAL;
	}
	pthread_mutex_lock(&e->conf_lock);
	issuer = engine_issuer_of(&e->conf, domain ? domain : canon);
	pthread_mutex_unlock(&e->conf_lock);
	if (issuer == CONF_ISSUER_ACME && crypto_name_validate(canon, strict, sizeof(strict), NULL)) {
		snprintf(why, whylen, "'%s' is a development name (single label, localhost or IP "
			 "address) that an ACME CA does not issue: give it issuer local or selfsigned",
			 canon);
		return -EINVAL;
	}
	return 0;
}

int engine_mkdir(struct engine *e, const char *name, char *canon, size_t canonlen)
{
	struct crypto_err cerr = {{0}};
	struct engine_domain *d;
	struct engine_gen *g = NULL;
	const struct conf_domain *cd;
	bool exists;
	int rc;

	rc = engine_name_check(e, NULL, name, canon, canonlen, cerr.msg, sizeof(cerr.msg));
	if (rc) {
		util_info("engine: mkdir refused: %s", cerr.msg);
		return -EINVAL;
	}
	d = domain_new(e, canon);
	if (!d)
		return -ENOMEM;
	d->created = util_now();
	pthread_mutex_lock(&e->conf_lock);
	cd = conf_domain_find(&e->conf, canon);
	/* names: the domain itself, then any extra SANs the config gives. */
	{
		size_t extra = 0;

		while (cd && cd->names && cd->names[extra])
			extra++;
		d->names = calloc(extra + 2, sizeof(char *));
		if (d->names) {
			d->names[d->nnames++] = strdup(canon);
			for (size_t i = 0; i < extra; i++)
				if (strcmp(cd->names[i], canon))
					d->names[d->nnames++] = strdup(cd->names[i]);
		}
	}
	pthread_mutex_unlock(&e->conf_lock);
	if (!d->names) {
		engine_domain_put(d);
		return -ENOMEM;
	}

	/* Key generation and the store write happen outside the table lock,
	 * which every lookup takes; mkdir_lock keeps two mkdirs of one name
	 * from both writing a generation-1 state. */
	rc = engine_placeholder(d, &g);
	if (rc) {
		engine_domain_put(d);
		return rc;
	}
	d->cur = g;
	d->gen_loaded = true;
	pthread_mutex_lock(&e->mkdir_lock);
	pthread_rwlock_rdlock(&e->table_lock);
	exists = *table_slot(e, canon) != NULL;
	pthread_rwlock_unlock(&e->table_lock);
	if (exists) {
		rc = -EEXIST;
		goto unlock;
	}
	/* Durable before it is visible: a mkdir that returned is never lost. */
	pthread_mutex_lock(&d->store_lock);
	rc = state_write(d, &d->st, d->names, d->nnames, true);
	pthread_mutex_unlock(&d->store_lock);
	if (!rc) {
		pthread_rwlock_wrlock(&e->table_lock);
		rc = *table_slot(e, canon) ? -EEXIST : table_insert(e, d);
		/* Queued before anyone else can see it, so the scheduler cannot
		 * queue it too (which would issue it twice). */
		if (!rc)
			engine_queue(e, d);
		pthread_rwlock_unlock(&e->table_lock);
	}
	/* A refused mkdir leaves nothing behind: no state, no empty level. */
	if (rc && rc != -EEXIST) {
		char key[320];

		int drc;

		snprintf(key, sizeof(key), "%s/state", d->key);
		drc = store_del(e->store, key); /* -ENOENT when the write failed */
		if (!drc || drc == -ENOENT)
			drc = store_del(e->store, d->key);
		if (drc && drc != -ENOENT)
			util_warn("engine: %s: cannot remove the refused domain's store level: %s",
				  canon, strerror(-drc));
	}
unlock:
	pthread_mutex_unlock(&e->mkdir_lock);
	if (rc) {
		engine_domain_put(d);
		/* Made by another node a moment ago: show it here at once. */
		if (rc == -EEXIST && store_shared(e->store))
			(void)!engine_domain_load(e, canon);
		return rc;
	}
	util_info("engine: %s: created", canon);
	return 0;
}

/*
 * With revoke_on_delete, an ACME certificate is revoked when its domain goes.
 * The revocation is a network call, so it is not made inside the RMDIR
 * request (the kernel holds the mount root's lock for as long as that
 * takes, and every lookup would wait): rmdir leaves a record
 * revoke/NAME@TIME naming the archived generation, durable before rmdir
 * returns, and a worker revokes it, again after a failure or a restart
 * until the CA has it. So nothing is left valid and forgotten.
 */
#define REVOKE_PREFIX "revoke"

/* The managed ACME generation d would have revoked, or 0. */
static uint64_t revoke_wanted(struct engine *e, struct engine_domain *d)
{
	uint64_t n = 0;
	bool revoke;

	pthread_mutex_lock(&e->conf_lock);
	revoke = e->conf.acme_revoke_on_delete;
	pthread_mutex_unlock(&e->conf_lock);
	pthread_mutex_lock(&d->lock);
	if (revoke && d->managed_gen && d->source_managed_acme)
		n = d->managed_gen;
	pthread_mutex_unlock(&d->lock);
	return n;
}

/* Write revoke/BASE naming the archived generation n (to is archive/BASE). */
static int revoke_record(struct engine *e, const char *to, uint64_t n)
{
	char key[420], gen[460], *s;
	json_t *o;
	int rc;

	snprintf(key, sizeof(key), REVOKE_PREFIX "/%s", to + strlen("archive/"));
	snprintf(gen, sizeof(gen), "%s/gen/%llu", to, (unsigned long long)n);
	o = json_pack("{s:s}", "gen", gen);
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	rc = s ? store_put(e->store, key, s, strlen(s)) : -ENOMEM;
	free(s);
	return rc;
}

struct name_list {
	char **v;
	size_t n, cap;
};

static int collect_name(const char *name, void *arg)
{
	struct name_list *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = strdup(name);
	return l->v[l->n++] ? 0 : -ENOMEM;
}

/* Revoke what revoke/name names: 0 done (record removed), or -errno. */
static int revoke_one(struct engine *e, const char *name)
{
	struct engine_gen *g = NULL;
	struct util_buf b, rec;
	char key[320], err[300], why[512] = "";
	json_error_t jerr;
	json_t *o = NULL, *v;
	int rc;

	snprintf(key, sizeof(key), REVOKE_PREFIX "/%s", name);
	util_buf_init(&b, 64 * 1024, false);
	util_buf_init(&rec, ENGINE_RECORD_MAX, true);
	rc = store_get(e->store, key, &b);
	if (rc)
		goto out;
	o = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &jerr);
	v = o ? json_object_get(o, "gen") : NULL;
	rc = json_is_string(v) ? store_get(e->store, json_string_value(v), &rec) : -EINVAL;
	if (!rc)
		rc = engine_gen_from_record(e, rec.data, rec.len, &g, err, sizeof(err));
	if (rc) {
		/* Nothing to revoke can be found: say so once and forget it. */
		util_err("engine: %s: revocation impossible, the archived certificate is "
			 "unreadable: %s", name, strerror(-rc));
		rc = store_del(e->store, key);
		goto out;
	}
	rc = engine_acme_revoke(e, g, why, sizeof(why));
	if (rc && strstr(why, "alreadyRevoked"))
		rc = 0;
	if (rc) {
		if (rc != -ECANCELED)
			util_err("engine: %s: revocation failed (tried again later): %s", name, why);
		goto out;
	}
	util_info("engine: %s: certificate revoked", name);
	rc = store_del(e->store, key);
out:
	json_decref(o);
	engine_gen_put(g);
	util_buf_free(&b);
	util_buf_free(&rec);
	return rc;
}

void engine_revoke_pass(struct engine *e)
{
	struct name_list l = {0};
	bool failed = false;
	time_t now;
	int rc;

	rc = store_list(e->store, REVOKE_PREFIX, collect_name, &l);
	if (rc && rc != -ENOENT) {
		util_err("engine: cannot list pending revocations: %s", strerror(-rc));
		failed = true;
	}
	for (size_t i = 0; i < l.n; i++) {
		if (!failed && !atomic_load(&e->cancel) && revoke_one(e, l.v[i]))
			failed = true;
		free(l.v[i]);
	}
	free(l.v);
	now = util_now();
	pthread_mutex_lock(&e->queue_lock);
	if (failed && !atomic_load(&e->cancel)) {
		e->revoke_failures++;
		e->revoke_next = engine_retry_at(e->revoke_failures, now, 0);
	} else {
		e->revoke_failures = 0;
		e->revoke_next = 0;
	}
	e->sched_kick = true;
	pthread_cond_broadcast(&e->sched_cond);
	pthread_mutex_unlock(&e->queue_lock);
}

/* Take d out of the table, if it is still there. */
static void table_remove(struct engine *e, struct engine_domain *d)
{
	struct engine_domain **slot;

	pthread_rwlock_wrlock(&e->table_lock);
	slot = table_slot(e, d->name);
	if (*slot == d) {
		*slot = d->hnext;
		e->count--;
		atomic_fetch_add(&e->version, 1);
		engine_names_free(e->sorted, e->nsorted);
		e->sorted = NULL;
		engine_domain_put(d); /* the table's reference */
	}
	pthread_rwlock_unlock(&e->table_lock);
}

int engine_rmdir(struct engine *e, const char *name)
{
	struct engine_domain *d;
	char to[400], stamp[32], folded[256];
	uint64_t revoke;
	int rc;

	if (!fold_name(name, folded))
		return -ENOENT;
	name = folded;
	d = engine_domain_get(e, name);
	if (!d)
		return -ENOENT;
	/* write_lock: no upload is half judged; store_lock: no record of the
	 * domain is written after the move (a renewal finishing now gets
	 * -ENOENT), so nothing re-creates domains/NAME beside the archive. */
	pthread_mutex_lock(&d->write_lock);
	pthread_mutex_lock(&d->store_lock);
	if (d->removed) {
		rc = -ENOENT;
		goto unlock;
	}
	revoke = revoke_wanted(e, d);
	util_format_time(util_now(), stamp, sizeof(stamp));
	for (char *p = stamp; *p; p++)
		if (*p == ':')
			*p = '-';
	snprintf(to, sizeof(to), "archive/%s@%s", d->key + strlen("domains/"), stamp);
	rc = store_move(e->store, d->key, to);
	for (int i = 2; rc == -EEXIST && i < 100; i++) {
		snprintf(to, sizeof(to), "archive/%s@%s.%d", d->key + strlen("domains/"), stamp, i);
		rc = store_move(e->store, d->key, to);
	}
	if (rc) {
		util_err("engine: %s: archive: %s", name, strerror(-rc));
		goto unlock;
	}
	/* The revocation must not be forgotten: without its record, undo. */
	if (revoke) {
		rc = revoke_record(e, to, revoke);
		if (rc) {
			util_err("engine: %s: cannot record the revocation: %s", name,
				 strerror(-rc));
			if (store_move(e->store, to, d->key))
				util_err("engine: %s: cannot move it back from %s", name, to);
			goto unlock;
		}
	}
	pthread_mutex_lock(&d->lock);
	d->removed = true;
	pthread_mutex_unlock(&d->lock);
unlock:
	pthread_mutex_unlock(&d->store_lock);
	pthread_mutex_unlock(&d->write_lock);
	if (rc) {
		engine_domain_put(d);
		return rc;
	}
	table_remove(e, d);
	util_info("engine: %s: removed (kept as %s)", name, to);
	if (revoke)
		engine_queue_revoke(e);
	engine_domain_put(d);
	return 0;
}

int engine_domain_forget(struct engine *e, const char *name)
{
	struct engine_domain *d = engine_domain_get(e, name);

	if (!d)
		return -ENOENT;
	/* As rmdir: once removed is set under store_lock nothing of this
	 * node writes below domains/NAME again. */
	pthread_mutex_lock(&d->store_lock);
	pthread_mutex_lock(&d->lock);
	d->removed = true;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&d->store_lock);
	table_remove(e, d);
	engine_domain_put(d);
	return 0;
}

/* ---- generations: commit and publish --------------------------------------- */

uint64_t engine_alloc_number(struct engine_domain *d)
{
	uint64_t n;

	/* store_lock too: next_number is part of the state a commit assigns. */
	pthread_mutex_lock(&d->store_lock);
	pthread_mutex_lock(&d->lock);
	n = d->next_number++;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&d->store_lock);
	return n;
}

/* Is the upload still the one to serve? */
static bool upload_servable(const struct engine_state *v, time_t now)
{
	return v->uploaded_gen && v->uploaded_not_after > now;
}

static void engine_publish(struct engine *e, struct engine_domain *d, struct engine_gen *g)
{
	struct engine_gen *old;

	pthread_mutex_lock(&d->lock);
	old = d->cur;
	/* Only what the stored state names is published: a late publication
	 * of a generation that was since replaced is dropped. */
	if (g->number != d->stored_gen) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	d->cur = engine_gen_get(g);
	engine_domain_changed(d);
	pthread_mutex_unlock(&d->lock);
	/* The served certificate changed: tell whoever must reload. */
	if (old && old != g)
		engine_hook_queue(e, d, true, "deploy", g->info.not_after);
	engine_gen_put(old);
	util_info("engine: %s: serving generation %llu (%s, serial %s)", d->name,
		  (unsigned long long)g->number, engine_source_name(g->source), g->info.serial);
}

/* Publish g and tell the front end, which keeps readers' pairs together
 * (d->publish_lock held for writing). */
void engine_notify_rotate(struct engine *e, struct engine_domain *d, struct engine_gen *g)
{
	struct engine_observer obs;

	engine_publish(e, d, g);
	pthread_mutex_lock(&e->observer_lock);
	obs = e->observer;
	pthread_mutex_unlock(&e->observer_lock);
	if (obs.published)
		obs.published(obs.arg, d);
}

void engine_state_apply_gen(struct engine_state *v, const struct engine_gen *g, time_t now,
			    bool *serve)
{
	if (g->number >= v->next_number)
		v->next_number = g->number + 1;
	if (g->source == ENGINE_SOURCE_UPLOADED) {
		v->uploaded_gen = g->number;
		v->uploaded_not_after = g->info.not_after;
		v->uploaded_warned = false;
		*serve = true;
	} else {
		v->managed_gen = g->number;
		v->source_managed_acme = g->source == ENGINE_SOURCE_ACME;
		v->managed_not_before = g->info.not_before;
		v->managed_not_after = g->info.not_after;
		v->last_success = now;
		v->failures = 0;
		v->next_attempt = 0;
		v->last_error[0] = '\0';
		v->last_error_write = false;
		v->issued_total++;
		*serve = !upload_servable(v, now);
	}
	if (*serve) {
		v->stored_gen = g->number;
		v->not_before = g->info.not_before;
		v->not_after = g->info.not_after;
		v->source = g->source;
	}
}

/* Old generation n goes from the store unless a lineage still names it. */
static void prune_gen(struct engine_domain *d, uint64_t n)
{
	char key[360];
	int rc;

	pthread_mutex_lock(&d->store_lock);
	if (n != d->managed_gen && n != d->uploaded_gen && n != d->stored_gen && !d->removed) {
		snprintf(key, sizeof(key), "%s/gen/%llu", d->key, (unsigned long long)n);
		/* Only disk space is at stake: the state no longer names it. */
		rc = store_del(d->engine->store, key);
		if (rc && rc != -ENOENT)
			util_warn("engine: %s: cannot prune generation %llu: %s", d->name,
				  (unsigned long long)n, strerror(-rc));
	}
	pthread_mutex_unlock(&d->store_lock);
}

int engine_commit_gen(struct engine_domain *d, struct engine_gen *g)
{
	struct engine *e = d->engine;
	struct engine_state v;
	struct util_buf rec;
	char key[360];
	bool serve = false;
	int rc;

	util_buf_init(&rec, ENGINE_RECORD_MAX, true);
	rc = engine_gen_to_record(g, &rec);
	if (rc)
		goto out;
	engine_gen_set_passphrase(d, g); /* g is not shared yet */
	/* The record, then the state that names it, both under store_lock:
	 * after rmdir's move (removed) neither is written. Until the state
	 * lands the domain is exactly as it was (an unnamed record is
	 * overwritten by the next commit of that number). */
	engine_state_begin(d, &v);
	if (d->removed) {
		engine_state_abort(d);
		rc = -ENOENT;
		goto out;
	}
	snprintf(key, sizeof(key), "%s/gen/%llu", d->key, (unsigned long long)g->number);
	rc = store_put(e->store, key, rec.data, rec.len);
	if (rc) {
		engine_state_abort(d);
		goto out;
	}
	engine_state_apply_gen(&v, g, util_now(), &serve);
	rc = state_commit_publish(d, &v, serve);
out:
	util_buf_free(&rec);
	if (rc) {
		if (rc != -ENOENT)
			util_err("engine: %s: store generation %llu: %s", d->name,
				 (unsigned long long)g->number, strerror(-rc));
		return rc;
	}
	if (serve) {
		engine_notify_rotate(e, d, g);
		pthread_rwlock_unlock(&d->publish_lock);
	}
	if (g->number > ENGINE_KEEP_GENERATIONS)
		prune_gen(d, g->number - ENGINE_KEEP_GENERATIONS);
	if (g->source != ENGINE_SOURCE_UPLOADED)
		atomic_fetch_add(&e->issued_total, 1);
	return 0;
}

int engine_drop_upload(struct engine_domain *d, const char *why)
{
	struct engine *e = d->engine;
	struct engine_state v;
	struct engine_gen *g = NULL;
	int rc;

	engine_state_begin(d, &v);
	if (!v.uploaded_gen || d->removed) {
		engine_state_abort(d);
		return 0;
	}
	if (v.managed_gen && engine_domain_read_gen(d, v.managed_gen, &g))
		g = NULL;
	v.uploaded_gen = 0;
	if (g) {
		v.stored_gen = g->number;
		v.not_before = g->info.not_before;
		v.not_after = g->info.not_after;
		v.source = g->source;
	}
	rc = state_commit_publish(d, &v, g != NULL);
	if (rc) {
		engine_gen_put(g);
		return rc;
	}
	util_info("engine: %s: uploaded certificate %s; serving the managed one", d->name, why);
	if (g) {
		engine_notify_rotate(e, d, g);
		pthread_rwlock_unlock(&d->publish_lock);
	} else {
		engine_queue(e, d); /* nothing managed (or unreadable): issue now */
	}
	engine_gen_put(g);
	return 0;
}
