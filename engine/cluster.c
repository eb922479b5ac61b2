/* SPDX-License-Identifier: MIT */
/*
 * Several certfs nodes on one shared (etcd) store. Every node serves every
 * domain: the store's watch brings other nodes' changes here, and a
 * changed state record is applied to the domain and its new generation
 * handed to the observer, the same rotation path a local change takes (so
 * the front end's pair fence and cache invalidation apply alike). A
 * domain that appears is loaded, one that goes is forgotten, and when the
 * store lost the history the watch needed (compaction, a long outage)
 * everything is read again.
 *
 * Exactly one issuer: before issuing, a node takes the domain's lock in
 * the store (a lease the store keeps alive) and fences its thread's
 * writes on it, so a node that died lets go within one lease TTL and a
 * node paused past its lease cannot write over its successor's work. A
 * node that finds the lock taken tries again a second later; by then the
 * holder's certificate has usually arrived through the watch, and the
 * job is dropped.
 *
 * On a local store every function here is a no-op.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/engine_int.h"

/* How soon a node asks again for a lock another node held. */
#define CLUSTER_RETRY_S 1
#define STATE_SUFFIX "/state"
#define DOMAINS "domains/"
#define CHALLENGES "challenges/"

static void names_changed(struct engine *e, const char *name, bool gone)
{
	struct engine_observer obs;

	pthread_mutex_lock(&e->observer_lock);
	obs = e->observer;
	pthread_mutex_unlock(&e->observer_lock);
	if (obs.names_changed)
		obs.names_changed(obs.arg, name, gone);
}

/* "domains/NAME/state" -> NAME in out; false for any other key. */
static bool state_key(const char *key, char *out, size_t outlen)
{
	size_t n, s = strlen(STATE_SUFFIX);
	char stored[256];

	if (strncmp(key, DOMAINS, strlen(DOMAINS)))
		return false;
	key += strlen(DOMAINS);
	n = strlen(key);
	if (n <= s || strcmp(key + n - s, STATE_SUFFIX) || n - s >= sizeof(stored))
		return false;
	memcpy(stored, key, n - s);
	stored[n - s] = '\0';
	if (strchr(stored, '/'))
		return false;
	engine_name_from_store(stored, out, outlen);
	return true;
}

/* The generation a state record names (0 when unreadable or none). */
static uint64_t state_generation(const void *value, size_t len)
{
	json_t *o = json_loadb(value, len, 0, NULL);
	json_t *g = o ? json_object_get(o, "generation") : NULL;
	uint64_t n = json_is_integer(g) && json_integer_value(g) > 0
			     ? (uint64_t)json_integer_value(g)
			     : 0;

	json_decref(o);
	return n;
}

/*
 * Another node stored a new state for name (value, at revision rev; rev 0
 * when re-read after a resync). Apply it unless this node wrote the key
 * since, and hand a newly named generation to the observer. The same
 * locks as a local change: the generation is read from the store under
 * store_lock only (readers of the tree are not held up by the network),
 * and the state and its publication go together under publish_lock, so
 * status never names a generation the files do not hold.
 */
static void apply_state(struct engine *e, const char *name, const void *value, size_t len,
			int64_t rev)
{
	struct engine_domain *d = engine_domain_get(e, name);
	struct engine_gen *g = NULL;
	struct util_buf b;
	char key[320];
	uint64_t want;
	bool publish = false;
	int rc;

	if (!d) {
		if (!engine_domain_load(e, name) && (d = engine_domain_get(e, name))) {
			util_info("engine: %s: added by another node", name);
			engine_domain_put(d);
			names_changed(e, name, false);
			engine_schedule_wake(e);
		}
		return;
	}
	snprintf(key, sizeof(key), "%s" STATE_SUFFIX, d->key);
	util_buf_init(&b, ENGINE_RECORD_MAX, false);
	rc = util_buf_append(&b, value, len);
	/* Under store_lock, which a local writer holds across its put: an
	 * older event never undoes this node's newer write. */
	pthread_mutex_lock(&d->store_lock);
	if (rc || d->removed || (rev && store_superseded(e->store, key, rev)))
		goto unlock;
	/* Nor does a state read earlier undo one applied since (a re-read
	 * that raced the watch). */
	if (rev && rev <= d->cluster_state_rev)
		goto unlock;
	want = state_generation(value, len);
	pthread_mutex_lock(&d->lock);
	publish = want && want != d->stored_gen && d->gen_loaded;
	pthread_mutex_unlock(&d->lock);
	if (publish && engine_domain_read_gen(d, want, &g)) {
		/* Not readable (yet): the state still applies; the files
		 * follow at the next change or restart. */
		g = NULL;
		publish = false;
	}
	if (publish)
		pthread_rwlock_wrlock(&d->publish_lock);
	pthread_mutex_lock(&d->lock);
	if (rev)
		d->cluster_state_rev = rev;
	rc = engine_domain_parse_state(d, &b);
	if (rc)
		util_err("engine: %s: state from another node unreadable (%s)", name,
			 strerror(-rc));
	engine_domain_changed(d);
	pthread_mutex_unlock(&d->lock);
unlock:
	pthread_mutex_unlock(&d->store_lock);
	util_buf_free(&b);
	if (publish) {
		if (!rc) {
			util_info("engine: %s: generation %llu from another node", name,
				  (unsigned long long)g->number);
			engine_notify_rotate(e, d, g);
		}
		pthread_rwlock_unlock(&d->publish_lock);
	}
	engine_gen_put(g);
	engine_schedule_wake(e);
	engine_domain_put(d);
}

static void removed(struct engine *e, const char *name)
{
	if (engine_domain_forget(e, name))
		return;
	util_info("engine: %s: removed by another node", name);
	names_changed(e, name, true);
}

struct resync_ctx {
	struct engine *e;
	char **names;
	size_t n, cap;
};

static int resync_one(const char *name, void *arg)
{
	struct resync_ctx *ctx = arg;
	struct util_buf b;
	char key[320], domain[256];
	int64_t rev = 0;
	char **v;

	if (ctx->n == ctx->cap) {
		ctx->cap = ctx->cap ? ctx->cap * 2 : 64;
		v = realloc(ctx->names, ctx->cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ctx->names = v;
	}
	engine_name_from_store(name, domain, sizeof(domain));
	ctx->names[ctx->n] = strdup(domain);
	if (!ctx->names[ctx->n])
		return -ENOMEM;
	ctx->n++;
	util_buf_init(&b, ENGINE_RECORD_MAX, false);
	snprintf(key, sizeof(key), DOMAINS "%s" STATE_SUFFIX, name);
	if (!store_get_rev(ctx->e->store, key, &b, &rev))
		apply_state(ctx->e, domain, b.data, b.len, rev);
	util_buf_free(&b);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The watch lost history: read every domain again, forget the gone ones. */
static void resync(struct engine *e)
{
	struct resync_ctx ctx = {.e = e};
	char **local = NULL;
	size_t nlocal;
	int rc;

	rc = store_list(e->store, "domains", resync_one, &ctx);
	if (rc && rc != -ENOENT) {
		util_err("engine: cluster: re-reading the store failed: %s", strerror(-rc));
		goto out;
	}
	qsort(ctx.names, ctx.n, sizeof(*ctx.names), name_cmp);
	nlocal = engine_names(e, &local);
	for (size_t i = 0; i < nlocal; i++)
		if (!ctx.n || !bsearch(&local[i], ctx.names, ctx.n, sizeof(*ctx.names), name_cmp))
			removed(e, local[i]);
	engine_names_free(local, nlocal);
	util_info("engine: cluster: re-read %zu domains from the store", ctx.n);
out:
	engine_names_free(ctx.names, ctx.n);
}

static void on_event(const struct store_event *ev, void *arg)
{
	struct engine *e = arg;
	char name[256];

	switch (ev->type) {
	case STORE_EVENT_PUT:
		if (state_key(ev->key, name, sizeof(name)))
			apply_state(e, name, ev->value, ev->len, ev->rev);
		break;
	case STORE_EVENT_DEL:
		if (state_key(ev->key, name, sizeof(name)) &&
		    !store_superseded(e->store, ev->key, ev->rev))
			removed(e, name);
		break;
	case STORE_EVENT_RESYNC:
		resync(e);
		break;
	case STORE_EVENT_DOWN:
		util_err("engine: cluster: store unreachable; serving what is known, refusing "
			 "changes");
		atomic_fetch_add(&e->state_version, 1);
		break;
	case STORE_EVENT_UP:
		util_info("engine: cluster: store reachable again; catching up");
		atomic_fetch_add(&e->state_version, 1);
		break;
	}
}

int engine_cluster_start(struct engine *e)
{
	int rc;

	if (!store_shared(e->store))
		return 0;
	rc = store_watch_start(e->store, "", on_event, e);
	if (rc)
		util_err("engine: cluster: cannot follow the store: %s", strerror(-rc));
	return rc;
}

void engine_cluster_stop(struct engine *e)
{
	if (store_shared(e->store))
		store_watch_stop(e->store);
}

bool engine_cluster_reachable(struct engine *e)
{
	return store_reachable(e->store);
}

int engine_cluster_issue_begin(struct engine_domain *d, struct store_lock **lock)
{
	struct engine *e = d->engine;
	struct store_lock *l = NULL;
	struct util_buf b;
	char name[320];
	int64_t rev = 0;
	bool issued_elsewhere;
	int rc;

	*lock = NULL;
	if (!store_shared(e->store))
		return 0;
	snprintf(name, sizeof(name), "issue/%s", d->name);
	rc = store_lock_try(e->store, name, &l);
	if (rc) {
		pthread_mutex_lock(&d->lock);
		d->cluster_retry_at = util_now() + CLUSTER_RETRY_S;
		pthread_mutex_unlock(&d->lock);
		if (rc != -EBUSY)
			util_err("engine: %s: cannot take the issuance lock: %s", d->name,
				 strerror(-rc));
		else
			util_debug("engine: %s: another node is issuing", d->name);
		engine_schedule_wake(e);
		return rc;
	}
	/* Holding the lock, read the state as it is now: the watch may not
	 * have brought the last holder's certificate yet. */
	util_buf_init(&b, ENGINE_RECORD_MAX, false);
	snprintf(name, sizeof(name), "%s" STATE_SUFFIX, d->key);
	if (!store_get_rev(e->store, name, &b, &rev))
		apply_state(e, d->name, b.data, b.len, rev);
	util_buf_free(&b);
	pthread_mutex_lock(&d->lock);
	d->cluster_retry_at = 0;
	issued_elsewhere = d->managed_gen != d->cluster_queued_gen;
	pthread_mutex_unlock(&d->lock);
	if (issued_elsewhere) {
		util_info("engine: %s: already issued by another node", d->name);
		store_lock_release(l);
		return -EALREADY;
	}
	store_fence_set(l);
	*lock = l;
	return 0;
}

void engine_cluster_issue_end(struct engine_domain *d, struct store_lock *lock)
{
	if (!lock)
		return;
	store_fence_set(NULL);
	store_lock_release(lock);
}

/* ---- http-01 tokens in the store: any node answers the CA ------------------ */

int engine_cluster_token_put(struct engine *e, const char *token, const char *keyauth)
{
	char key[300];

	if (!store_shared(e->store))
		return 0;
	if (snprintf(key, sizeof(key), CHALLENGES "%s", token) >= (int)sizeof(key))
		return -EINVAL;
	return store_put(e->store, key, keyauth, strlen(keyauth));
}

void engine_cluster_token_del(struct engine *e, const char *token)
{
	char key[300];

	if (!store_shared(e->store))
		return;
	if (snprintf(key, sizeof(key), CHALLENGES "%s", token) < (int)sizeof(key))
		(void)!store_del(e->store, key);
}

int engine_cluster_token_get(struct engine *e, const char *token, struct util_buf *out)
{
	char key[300];

	if (!store_shared(e->store))
		return -ENOENT;
	if (snprintf(key, sizeof(key), CHALLENGES "%s", token) >= (int)sizeof(key))
		return -ENOENT;
	return store_key_valid(key) ? store_get(e->store, key, out) : -ENOENT;
}
