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
		return ENGINE_FILE_COUNT;
	}
	for (int f = 0; f <= ENGINE_FILE_PASSPHRASE; f++)
		if (!strcmp(name, file_names[f]))
			return (enum engine_file)f;
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

static struct engine_domain *domain_new(struct engine *e, const char *name)
{
	struct engine_domain *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	atomic_init(&d->refs, 1);
	d->engine = e;
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->key, sizeof(d->key), "domains/%s", name);
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->write_lock, NULL);
	d->next_number = 1;
	if (crypto_random(&d->jitter, sizeof(d->jitter)))
		d->jitter = (unsigned)name_hash(name);
	return d;
}

struct engine_domain *engine_domain_get(struct engine *e, const char *name)
{
	struct engine_domain *d;

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
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->write_lock);
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
		(void)!engine_domain_load_gen(d);
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

	pthread_rwlock_wrlock(&e->table_lock);
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

	if (!d)
		return atomic_load(&e->state_version) + atomic_load(&e->version);
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
	engine_domain_changed(d);
}

static int state_put(struct engine_domain *d, bool create);

/* Write the domain's state record (d->lock held). */
int engine_domain_store_state(struct engine_domain *d)
{
	return state_put(d, false);
}

/*
 * create: only if no state is stored yet (mkdir), so that two nodes of a
 * shared store making the same domain at once cannot both succeed.
 */
static int state_put(struct engine_domain *d, bool create)
{
	char key[320];
	json_t *o, *names;
	char *s;
	int rc;

	names = json_array();
	for (size_t i = 0; names && i < d->nnames; i++)
		json_array_append_new(names, json_string(d->names[i]));
	o = json_pack("{s:o?, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:I}", "names", names,
		      "created", (json_int_t)d->created, "generation", (json_int_t)d->stored_gen,
		      "not_before", (json_int_t)d->not_before, "not_after",
		      (json_int_t)d->not_after, "source", engine_source_name(d->source),
		      "issued_total", (json_int_t)d->issued_total, "errors_total",
		      (json_int_t)d->errors_total, "next_attempt", (json_int_t)d->next_attempt,
		      "failures", (json_int_t)d->failures);
	if (!o)
		return -ENOMEM;
	json_object_set_new(o, "managed_gen", json_integer((json_int_t)d->managed_gen));
	json_object_set_new(o, "managed_not_before",
			    json_integer((json_int_t)d->managed_not_before));
	json_object_set_new(o, "managed_not_after", json_integer((json_int_t)d->managed_not_after));
	json_object_set_new(o, "uploaded_gen", json_integer((json_int_t)d->uploaded_gen));
	json_object_set_new(o, "uploaded_not_after",
			    json_integer((json_int_t)d->uploaded_not_after));
	json_object_set_new(o, "uploaded_warned", json_boolean(d->uploaded_warned));
	json_object_set_new(o, "csr", json_boolean(d->has_csr));
	json_object_set_new(o, "managed_acme", json_boolean(d->source_managed_acme));
	json_object_set_new(o, "next_number", json_integer((json_int_t)d->next_number));
	if (d->pending[0])
		json_object_set_new(o, "pending", json_string(d->pending));
	if (d->last_error[0])
		json_object_set_new(o, "last_error", json_string(d->last_error));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	engine_domain_changed(d);
	snprintf(key, sizeof(key), "%s/state", d->key);
	rc = create ? store_put_if(d->engine->store, key, s, strlen(s), 0)
		    : store_put(d->engine->store, key, s, strlen(s));
	free(s);
	if (rc && rc != -EEXIST)
		util_err("engine: %s: store state: %s", d->name, strerror(-rc));
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
	d->created = (time_t)json_integer_value(json_object_get(o, "created"));
	d->stored_gen = (uint64_t)json_integer_value(json_object_get(o, "generation"));
	d->not_before = (time_t)json_integer_value(json_object_get(o, "not_before"));
	d->not_after = (time_t)json_integer_value(json_object_get(o, "not_after"));
	d->issued_total = (uint64_t)json_integer_value(json_object_get(o, "issued_total"));
	d->errors_total = (uint64_t)json_integer_value(json_object_get(o, "errors_total"));
	d->next_attempt = (time_t)json_integer_value(json_object_get(o, "next_attempt"));
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
 * Add name with its stored state (got: 0 with data, or why it could not be
 * read). A domain without a readable state is skipped, not fatal: the rest
 * of the tree must still come up.
 */
static int domain_add(struct engine *e, const char *name, int got, const void *data,
		      size_t len)
{
	struct util_buf b = {.data = (unsigned char *)(uintptr_t)data, .len = len};
	struct engine_domain *d;
	int rc = got;

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
	char key[320];
	int rc;

	util_buf_init(&b, ENGINE_RECORD_MAX, false);
	snprintf(key, sizeof(key), "domains/%s/state", name);
	rc = store_get(e->store, key, &b);
	rc = domain_add(e, name, rc, b.data, b.len);
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
	return engine_workers_start(e);
}

void engine_stop(struct engine *e)
{
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
	pthread_mutex_lock(&e->queue_lock);
	pthread_cond_broadcast(&e->sched_cond);
	pthread_mutex_unlock(&e->queue_lock);
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

int engine_mkdir(struct engine *e, const char *name, char *canon, size_t canonlen)
{
	struct crypto_err cerr = {{0}};
	struct engine_domain *d, **slot;
	struct engine_gen *g = NULL;
	const struct conf_domain *cd;
	int rc;

	rc = crypto_name_validate(name, canon, canonlen, &cerr);
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

	pthread_rwlock_wrlock(&e->table_lock);
	slot = table_slot(e, canon);
	if (*slot) {
		pthread_rwlock_unlock(&e->table_lock);
		engine_domain_put(d);
		return -EEXIST;
	}
	/* Durable before it is visible: a mkdir that returned is never lost. */
	pthread_mutex_lock(&d->lock);
	rc = state_put(d, true);
	if (!rc)
		rc = engine_placeholder(d, &g);
	if (!rc) {
		d->cur = g;
		d->gen_loaded = true;
		rc = table_insert(e, d);
	}
	pthread_mutex_unlock(&d->lock);
	/* Queued before anyone else can see it, so the scheduler cannot
	 * queue it too (which would issue it twice). */
	if (!rc)
		engine_queue(e, d);
	pthread_rwlock_unlock(&e->table_lock);
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
 * With revoke_on_delete, an ACME certificate is revoked before its domain
 * goes: if the CA cannot be reached the domain stays (and says why), so
 * nothing is left valid and forgotten.
 */
static int revoke_first(struct engine *e, struct engine_domain *d)
{
	struct engine_gen *g = NULL;
	char why[512] = "";
	bool revoke;
	int rc;

	pthread_mutex_lock(&e->conf_lock);
	revoke = e->conf.acme_revoke_on_delete;
	pthread_mutex_unlock(&e->conf_lock);
	if (!revoke)
		return 0;
	pthread_mutex_lock(&d->lock);
	if (d->managed_gen && d->source_managed_acme &&
	    engine_domain_read_gen(d, d->managed_gen, &g))
		g = NULL;
	pthread_mutex_unlock(&d->lock);
	if (!g)
		return 0;
	rc = engine_acme_revoke(e, g, why, sizeof(why));
	engine_gen_put(g);
	pthread_mutex_lock(&d->lock);
	if (rc)
		engine_domain_set_error(d, "not removed: revocation failed: %.400s", why);
	pthread_mutex_unlock(&d->lock);
	if (rc)
		util_err("engine: %s: revocation failed: %s", d->name, why);
	else
		util_info("engine: %s: certificate revoked", d->name);
	return rc;
}

/* Take *slot's domain out of the table (write lock held, released here). */
static void table_remove(struct engine *e, struct engine_domain **slot)
{
	struct engine_domain *d = *slot;

	*slot = d->hnext;
	e->count--;
	atomic_fetch_add(&e->version, 1);
	engine_names_free(e->sorted, e->nsorted);
	e->sorted = NULL;
	pthread_rwlock_unlock(&e->table_lock);
	pthread_mutex_lock(&d->lock);
	d->removed = true;
	pthread_mutex_unlock(&d->lock);
	engine_domain_put(d);
}

int engine_rmdir(struct engine *e, const char *name)
{
	struct engine_domain *d, **slot;
	char to[400], stamp[32];
	int rc;

	pthread_rwlock_wrlock(&e->table_lock);
	slot = e->table_size ? table_slot(e, name) : NULL;
	d = slot ? *slot : NULL;
	if (!d) {
		pthread_rwlock_unlock(&e->table_lock);
		return -ENOENT;
	}
	if (revoke_first(e, d)) {
		pthread_rwlock_unlock(&e->table_lock);
		return -EIO;
	}
	util_format_time(util_now(), stamp, sizeof(stamp));
	for (char *p = stamp; *p; p++)
		if (*p == ':')
			*p = '-';
	snprintf(to, sizeof(to), "archive/%s@%s", d->name, stamp);
	rc = store_move(e->store, d->key, to);
	for (int i = 2; rc == -EEXIST && i < 100; i++) {
		snprintf(to, sizeof(to), "archive/%s@%s.%d", d->name, stamp, i);
		rc = store_move(e->store, d->key, to);
	}
	if (rc) {
		pthread_rwlock_unlock(&e->table_lock);
		util_err("engine: %s: archive: %s", name, strerror(-rc));
		return rc;
	}
	table_remove(e, slot);
	util_info("engine: %s: removed (kept as %s)", name, to);
	return 0;
}

int engine_domain_forget(struct engine *e, const char *name)
{
	struct engine_domain **slot;

	pthread_rwlock_wrlock(&e->table_lock);
	slot = e->table_size ? table_slot(e, name) : NULL;
	if (!slot || !*slot) {
		pthread_rwlock_unlock(&e->table_lock);
		return -ENOENT;
	}
	table_remove(e, slot);
	return 0;
}

/* ---- generations: commit and publish --------------------------------------- */

uint64_t engine_alloc_number(struct engine_domain *d)
{
	uint64_t n;

	pthread_mutex_lock(&d->lock);
	n = d->next_number++;
	pthread_mutex_unlock(&d->lock);
	return n;
}

/* Is the upload still the one to serve? (d->lock held) */
static bool upload_servable(const struct engine_domain *d, time_t now)
{
	return d->uploaded_gen && d->uploaded_not_after > now;
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

/* Publish g and tell the front end, which keeps readers' pairs together. */
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

int engine_commit_gen(struct engine_domain *d, struct engine_gen *g)
{
	struct engine *e = d->engine;
	struct engine_domain saved;
	struct util_buf rec;
	char key[360];
	bool serve;
	int rc;

	util_buf_init(&rec, ENGINE_RECORD_MAX, true);
	rc = engine_gen_to_record(g, &rec);
	pthread_mutex_lock(&d->lock);
	if (d->removed) {
		pthread_mutex_unlock(&d->lock);
		util_buf_free(&rec);
		return -ENOENT;
	}
	if (!rc) {
		snprintf(key, sizeof(key), "%s/gen/%llu", d->key, (unsigned long long)g->number);
		rc = store_put(e->store, key, rec.data, rec.len);
	}
	if (!rc) {
		memcpy(&saved, d, sizeof(saved));
		if (g->number >= d->next_number)
			d->next_number = g->number + 1;
		if (g->source == ENGINE_SOURCE_UPLOADED) {
			d->uploaded_gen = g->number;
			d->uploaded_not_after = g->info.not_after;
			d->uploaded_warned = false;
			serve = true;
		} else {
			d->managed_gen = g->number;
			d->source_managed_acme = g->source == ENGINE_SOURCE_ACME;
			d->managed_not_before = g->info.not_before;
			d->managed_not_after = g->info.not_after;
			d->failures = 0;
			d->next_attempt = 0;
			d->last_error[0] = '\0';
			d->issued_total++;
			serve = !upload_servable(d, util_now());
		}
		if (serve) {
			d->stored_gen = g->number;
			d->not_before = g->info.not_before;
			d->not_after = g->info.not_after;
			d->source = g->source;
		}
		rc = engine_domain_store_state(d);
		if (rc) {
			/* Put the counters back; the new record stays unnamed. */
			d->stored_gen = saved.stored_gen;
			d->not_before = saved.not_before;
			d->not_after = saved.not_after;
			d->source = saved.source;
			d->managed_gen = saved.managed_gen;
			d->managed_not_before = saved.managed_not_before;
			d->managed_not_after = saved.managed_not_after;
			d->uploaded_gen = saved.uploaded_gen;
			d->uploaded_not_after = saved.uploaded_not_after;
			d->uploaded_warned = saved.uploaded_warned;
			d->issued_total = saved.issued_total;
		} else if (g->number > ENGINE_KEEP_GENERATIONS) {
			uint64_t old = g->number - ENGINE_KEEP_GENERATIONS;

			if (old != d->managed_gen && old != d->uploaded_gen) {
				snprintf(key, sizeof(key), "%s/gen/%llu", d->key,
					 (unsigned long long)old);
				(void)!store_del(e->store, key);
			}
		}
	}
	pthread_mutex_unlock(&d->lock);
	util_buf_free(&rec);
	if (rc) {
		util_err("engine: %s: store generation %llu: %s", d->name,
			 (unsigned long long)g->number, strerror(-rc));
		return rc;
	}
	if (g->source != ENGINE_SOURCE_UPLOADED)
		atomic_fetch_add(&e->issued_total, 1);
	if (serve)
		engine_notify_rotate(e, d, g);
	return 0;
}

void engine_drop_upload(struct engine_domain *d, const char *why)
{
	struct engine *e = d->engine;
	struct engine_gen *g = NULL;
	uint64_t prev;

	pthread_mutex_lock(&d->lock);
	if (!d->uploaded_gen || d->removed) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	prev = d->uploaded_gen;
	if (d->managed_gen && engine_domain_read_gen(d, d->managed_gen, &g))
		g = NULL;
	d->uploaded_gen = 0;
	if (g) {
		d->stored_gen = g->number;
		d->not_before = g->info.not_before;
		d->not_after = g->info.not_after;
		d->source = g->source;
	}
	if (engine_domain_store_state(d)) {
		d->uploaded_gen = prev;
		pthread_mutex_unlock(&d->lock);
		engine_gen_put(g);
		return;
	}
	pthread_mutex_unlock(&d->lock);
	util_info("engine: %s: uploaded certificate %s; serving the managed one", d->name, why);
	if (g)
		engine_notify_rotate(e, d, g);
	else
		engine_queue(e, d); /* nothing managed (or unreadable): issue now */
	engine_gen_put(g);
}
