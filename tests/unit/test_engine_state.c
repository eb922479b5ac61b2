/* SPDX-License-Identifier: MIT */
/*
 * engine: the domain state as one value, against an in-memory store that
 * can be told to fail its Nth write. A commit that fails halfway (the
 * generation record written, the state refused, or the record refused)
 * leaves the domain exactly as it was, field by field, and the stored state
 * byte for byte; a commit racing with rmdir writes nothing below the
 * removed domain; a refused mkdir leaves no key; rm of an upload on a store
 * that refuses fails and changes nothing. Also the pure decisions: back-off
 * and Retry-After, due or not due (fraction, ARI window, retry), what
 * happens to an upload near and past its end, and which lineage a new
 * generation joins. No FUSE, no threads of the engine started.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "tests/unit/check.h"

/* ---- an in-memory store ------------------------------------------------------- */

struct mem_entry {
	struct mem_entry *next;
	char *key;
	unsigned char *data;
	size_t len;
};

struct mem_store {
	struct store base; /* first */
	struct mem_entry *head;
	int writes;        /* puts, dels and moves so far */
	int fail_at;       /* this write fails (0: none) */
	int fail_rc;
};

static struct mem_store *to_mem(struct store *s)
{
	return (struct mem_store *)s;
}

static struct mem_entry *mem_find(struct mem_store *m, const char *key)
{
	for (struct mem_entry *x = m->head; x; x = x->next)
		if (!strcmp(x->key, key))
			return x;
	return NULL;
}

static bool under(const char *key, const char *prefix)
{
	size_t n = strlen(prefix);

	return !strncmp(key, prefix, n) && key[n] == '/';
}

static int mem_write_fails(struct mem_store *m)
{
	return ++m->writes == m->fail_at ? m->fail_rc : 0;
}

static int mem_get(struct store *s, const char *key, struct util_buf *out)
{
	struct mem_entry *x = mem_find(to_mem(s), key);

	return x ? util_buf_append(out, x->data, x->len) : -ENOENT;
}

static int mem_put(struct store *s, const char *key, const void *data, size_t len)
{
	struct mem_store *m = to_mem(s);
	struct mem_entry *x;
	int rc = mem_write_fails(m);

	if (rc)
		return rc;
	x = mem_find(m, key);
	if (!x) {
		x = calloc(1, sizeof(*x));
		x->key = strdup(key);
		x->next = m->head;
		m->head = x;
	}
	free(x->data);
	x->data = malloc(len ? len : 1);
	memcpy(x->data, data, len);
	x->len = len;
	return 0;
}

static int mem_del(struct store *s, const char *key)
{
	struct mem_store *m = to_mem(s);
	struct mem_entry **pp, *x;
	int rc = mem_write_fails(m);

	if (rc)
		return rc;
	for (pp = &m->head; (x = *pp); pp = &x->next) {
		if (!strcmp(x->key, key)) {
			*pp = x->next;
			free(x->key);
			free(x->data);
			free(x);
			return 0;
		}
	}
	for (x = m->head; x; x = x->next)
		if (under(x->key, key))
			return -ENOTEMPTY;
	return -ENOENT;
}

static int mem_list(struct store *s, const char *prefix, store_list_cb cb, void *arg)
{
	struct mem_store *m = to_mem(s);
	char seen[64][256];
	size_t nseen = 0, plen = strlen(prefix);

	for (struct mem_entry *x = m->head; x; x = x->next) {
		const char *rest;
		size_t n;
		bool dup = false;

		if (plen && !under(x->key, prefix))
			continue;
		rest = x->key + (plen ? plen + 1 : 0);
		n = strcspn(rest, "/");
		for (size_t i = 0; i < nseen; i++)
			dup |= strlen(seen[i]) == n && !strncmp(seen[i], rest, n);
		if (dup || nseen == 64 || n >= 256)
			continue;
		memcpy(seen[nseen], rest, n);
		seen[nseen++][n] = '\0';
	}
	for (size_t i = 0; i < nseen; i++) {
		int rc = cb(seen[i], arg);

		if (rc)
			return rc < 0 ? rc : 0;
	}
	return nseen ? 0 : -ENOENT;
}

static int mem_move(struct store *s, const char *from, const char *to)
{
	struct mem_store *m = to_mem(s);
	size_t flen = strlen(from);
	int rc = mem_write_fails(m);

	if (rc)
		return rc;
	for (struct mem_entry *x = m->head; x; x = x->next) {
		if (!strcmp(x->key, from) || under(x->key, from)) {
			char *k = malloc(strlen(to) + strlen(x->key) - flen + 1);

			sprintf(k, "%s%s", to, x->key + flen);
			free(x->key);
			x->key = k;
		}
	}
	return 0;
}

static void mem_close(struct store *s)
{
	struct mem_store *m = to_mem(s);

	while (m->head) {
		struct mem_entry *x = m->head;

		m->head = x->next;
		free(x->key);
		free(x->data);
		free(x);
	}
	free(m);
}

static const struct store_ops mem_ops = {
	.name = "mem",
	.get = mem_get,
	.put = mem_put,
	.del = mem_del,
	.list = mem_list,
	.move = mem_move,
	.close = mem_close,
};

static struct mem_store *mem_new(void)
{
	struct mem_store *m = calloc(1, sizeof(*m));

	m->base.ops = &mem_ops;
	m->base.spec = strdup("mem");
	return m;
}

/* Keys of the store below prefix/. */
static int mem_count_under(struct mem_store *m, const char *prefix)
{
	int n = 0;

	for (struct mem_entry *x = m->head; x; x = x->next)
		n += !strcmp(x->key, prefix) || under(x->key, prefix);
	return n;
}

/* ---- helpers ------------------------------------------------------------------------ */

/* Every field of the state value, compared one by one (padding is not state). */
static bool state_equal(const struct engine_state *a, const struct engine_state *b)
{
	return a->stored_gen == b->stored_gen && a->next_number == b->next_number &&
	       a->not_after == b->not_after && a->not_before == b->not_before &&
	       a->source == b->source && a->managed_gen == b->managed_gen &&
	       a->managed_not_before == b->managed_not_before &&
	       a->managed_not_after == b->managed_not_after &&
	       a->source_managed_acme == b->source_managed_acme &&
	       a->uploaded_gen == b->uploaded_gen &&
	       a->uploaded_not_after == b->uploaded_not_after &&
	       a->uploaded_warned == b->uploaded_warned && a->has_csr == b->has_csr &&
	       !strcmp(a->pending, b->pending) && a->issued_total == b->issued_total &&
	       a->errors_total == b->errors_total && a->next_attempt == b->next_attempt &&
	       a->failures == b->failures && !strcmp(a->last_error, b->last_error);
}

static struct engine_state state_of(struct engine_domain *d)
{
	struct engine_state v;

	pthread_mutex_lock(&d->lock);
	v = d->st;
	pthread_mutex_unlock(&d->lock);
	return v;
}

static char *stored(struct mem_store *m, const char *key)
{
	struct mem_entry *x = mem_find(m, key);
	char *s;

	if (!x)
		return NULL;
	s = malloc(x->len + 1);
	memcpy(s, x->data, x->len);
	s[x->len] = '\0';
	return s;
}

/* A new generation for d of source src, from a fresh placeholder's key. */
static struct engine_gen *make_gen(struct engine *e, struct engine_domain *d,
				   enum engine_source src)
{
	struct engine_gen *p = NULL, *g = NULL;
	struct crypto_chain *chain = NULL;
	struct crypto_key *key = NULL;

	if (engine_placeholder(d, &p) || engine_gen_parse(p, &key, &chain) ||
	    engine_gen_new(e, engine_alloc_number(d), util_now(), src, key, chain, &g)) {
		fprintf(stderr, "cannot make a generation\n");
		exit(1);
	}
	engine_gen_put(p);
	return g;
}

/* Give d a retry state that a successful managed commit would clear. */
static void set_failing(struct engine_domain *d)
{
	struct engine_state v;

	engine_state_begin(d, &v);
	v.failures = 2;
	v.errors_total = 7;
	v.next_attempt = util_now() + 600;
	snprintf(v.last_error, sizeof(v.last_error), "the CA said no");
	CHECK_INT(engine_state_commit(d, &v), 0);
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_commit_fails_halfway(struct engine *e, struct mem_store *m)
{
	const char *name = "commit.example.com";
	char canon[256], key[300], *before_rec, *after_rec;
	struct engine_state before;
	struct engine_domain *d;
	struct engine_gen *g, *cur;

	CHECK_INT(engine_mkdir(e, name, canon, sizeof(canon)), 0);
	d = engine_domain_get(e, name);
	if (!d)
		return;
	set_failing(d);
	snprintf(key, sizeof(key), "domains/%s/state", name);

	/* 1: the generation record is refused; 2: the state after it. */
	for (int step = 1; step <= 2; step++) {
		g = make_gen(e, d, ENGINE_SOURCE_LOCAL);
		before = state_of(d);
		before_rec = stored(m, key);
		cur = engine_domain_gen(d);
		m->fail_at = m->writes + step;
		m->fail_rc = step == 1 ? -ENOSPC : -EIO;
		CHECK_INT(engine_commit_gen(d, g), m->fail_rc);
		m->fail_at = 0;
		{
			struct engine_state now = state_of(d);

			CHECK(state_equal(&now, &before));
		}
		after_rec = stored(m, key);
		CHECK_STR(after_rec, before_rec);
		{
			struct engine_gen *cur2 = engine_domain_gen(d);

			CHECK(cur2 == cur);
			engine_gen_put(cur2);
		}
		free(before_rec);
		free(after_rec);
		engine_gen_put(cur);
		engine_gen_put(g);
	}

	/* Then it lands whole: the lineage, and the retry state cleared. */
	g = make_gen(e, d, ENGINE_SOURCE_LOCAL);
	CHECK_INT(engine_commit_gen(d, g), 0);
	before = state_of(d);
	CHECK_INT(before.stored_gen, engine_gen_number(g));
	CHECK_INT(before.managed_gen, engine_gen_number(g));
	CHECK_INT(before.failures, 0);
	CHECK_INT(before.next_attempt, 0);
	CHECK_STR(before.last_error, "");
	CHECK_INT(before.issued_total, 1);
	CHECK(before.next_number > engine_gen_number(g));
	after_rec = stored(m, key);
	CHECK(after_rec && strstr(after_rec, "\"failures\":0"));
	free(after_rec);
	engine_gen_put(g);
	engine_domain_put(d);
}

static void test_commit_after_rmdir_writes_nothing(struct engine *e, struct mem_store *m)
{
	const char *name = "gone.example.com";
	char canon[256], prefix[300];
	struct engine_domain *d;
	struct engine_gen *g;
	int writes;

	CHECK_INT(engine_mkdir(e, name, canon, sizeof(canon)), 0);
	d = engine_domain_get(e, name);
	if (!d)
		return;
	/* A renewal made its generation, then rmdir won the race. */
	g = make_gen(e, d, ENGINE_SOURCE_LOCAL);
	CHECK_INT(engine_rmdir(e, name), 0);
	writes = m->writes;
	CHECK_INT(engine_commit_gen(d, g), -ENOENT);
	CHECK_INT(engine_domain_record_put(d, "order", "{}", 2), -ENOENT);
	CHECK_INT(m->writes, writes);
	snprintf(prefix, sizeof(prefix), "domains/%s", name);
	CHECK_INT(mem_count_under(m, prefix), 0);
	CHECK(engine_domain_get(e, name) == NULL);
	engine_gen_put(g);
	engine_domain_put(d);
}

static void test_refused_mkdir_leaves_nothing(struct engine *e, struct mem_store *m)
{
	char canon[256];

	m->fail_at = m->writes + 1;
	m->fail_rc = -ENOSPC;
	CHECK_INT(engine_mkdir(e, "full.example.com", canon, sizeof(canon)), -ENOSPC);
	m->fail_at = 0;
	CHECK_INT(mem_count_under(m, "domains/full.example.com"), 0);
	CHECK(engine_domain_get(e, "full.example.com") == NULL);
	CHECK_INT(engine_mkdir(e, "full.example.com", canon, sizeof(canon)), 0);
}

static void test_rm_upload_on_refusing_store(struct engine *e, struct mem_store *m)
{
	const char *name = "upload.example.com";
	struct engine_state before, now;
	struct engine_domain *d;
	struct engine_gen *g;
	char canon[256];

	CHECK_INT(engine_mkdir(e, name, canon, sizeof(canon)), 0);
	d = engine_domain_get(e, name);
	if (!d)
		return;
	g = make_gen(e, d, ENGINE_SOURCE_UPLOADED);
	CHECK_INT(engine_commit_gen(d, g), 0);
	before = state_of(d);
	CHECK_INT(before.uploaded_gen, engine_gen_number(g));
	CHECK_INT(before.stored_gen, engine_gen_number(g));
	m->fail_at = m->writes + 1;
	m->fail_rc = -ENOSPC;
	CHECK_INT(engine_unlink(e, d, ENGINE_FILE_FULLCHAIN), -ENOSPC);
	m->fail_at = 0;
	now = state_of(d);
	CHECK_INT(now.uploaded_gen, before.uploaded_gen);
	CHECK_INT(now.stored_gen, before.stored_gen);
	CHECK_CONTAINS(now.last_error, "store is full");
	/* The sentence itself was saved (only the first write failed). */
	CHECK_INT(d->state_unsaved, 0);
	CHECK_INT(engine_unlink(e, d, ENGINE_FILE_FULLCHAIN), 0);
	now = state_of(d);
	CHECK_INT(now.uploaded_gen, 0);
	engine_gen_put(g);
	engine_domain_put(d);
}

static void test_record_failure_is_kept_and_retried(struct engine *e, struct mem_store *m)
{
	const char *name = "retry.example.com";
	struct engine_domain *d;
	struct engine_state v;
	char canon[256], key[300], *rec;

	CHECK_INT(engine_mkdir(e, name, canon, sizeof(canon)), 0);
	d = engine_domain_get(e, name);
	if (!d)
		return;
	engine_state_begin(d, &v);
	snprintf(v.last_error, sizeof(v.last_error), "something to show");
	m->fail_at = m->writes + 1;
	m->fail_rc = -ENOSPC;
	engine_state_record(d, &v);
	m->fail_at = 0;
	CHECK_STR(state_of(d).last_error, "something to show");
	CHECK_INT(d->state_unsaved, -ENOSPC);
	{
		struct util_buf out;

		util_buf_init(&out, 65536, false);
		CHECK_INT(engine_render(e, d, ENGINE_FILE_STATUS, &out), 0);
		CHECK(util_buf_terminate(&out) == 0);
		CHECK_CONTAINS((const char *)out.data, "state not saved: No space left on device");
		util_buf_free(&out);
	}
	engine_state_retry(d);
	CHECK_INT(d->state_unsaved, 0);
	snprintf(key, sizeof(key), "domains/%s/state", name);
	rec = stored(m, key);
	CHECK(rec && strstr(rec, "something to show"));
	free(rec);

	/* Fenced out (another node holds the domain): the copy is dropped,
	 * neither shown nor retried over the other node's state. */
	engine_state_begin(d, &v);
	snprintf(v.last_error, sizeof(v.last_error), "a stale copy");
	m->fail_at = m->writes + 1;
	m->fail_rc = -ESTALE;
	engine_state_record(d, &v);
	m->fail_at = 0;
	CHECK_STR(state_of(d).last_error, "something to show");
	CHECK_INT(d->state_unsaved, 0);
	engine_domain_put(d);
}

/* last_attempt and the failed validations come back from the stored state
 * (a restart must not reset the CA's hourly limit). */
static void test_pacing_state_is_stored(struct engine *e, struct mem_store *m)
{
	const char *name = "paced.example.com";
	struct engine_domain *d;
	struct engine_state v;
	struct util_buf b;
	char canon[256], key[300], *rec;
	time_t t = 1800000000;
	int found;

	CHECK_INT(engine_mkdir(e, name, canon, sizeof(canon)), 0);
	d = engine_domain_get(e, name);
	if (!d)
		return;
	engine_state_begin(d, &v);
	v.last_attempt = t;
	v.requested = t - 5; /* a user's renew, held by the pacing rules */
	/* One more than the limit: the oldest gives way. */
	for (int i = 0; i <= ACME_FAILED_VALIDATIONS_PER_HOUR; i++)
		engine_vfail_add(v.vfail, t - 3000 + i * 100);
	CHECK_INT(engine_state_commit(d, &v), 0);
	snprintf(key, sizeof(key), "domains/%s/state", name);
	rec = stored(m, key);
	CHECK(rec && strstr(rec, "\"last_attempt\":1800000000"));
	CHECK(rec && strstr(rec, "\"failed_validations\":["));
	CHECK(rec && strstr(rec, "\"requested\":1799999995"));

	/* Read back as at start-up. */
	pthread_mutex_lock(&d->store_lock);
	pthread_mutex_lock(&d->lock);
	memset(d->vfail, 0, sizeof(d->vfail));
	d->last_attempt = 0;
	d->requested = 0;
	util_buf_init(&b, 65536, false);
	CHECK_INT(util_buf_append(&b, rec, strlen(rec)), 0);
	CHECK_INT(engine_domain_parse_state(d, &b), 0);
	util_buf_free(&b);
	CHECK(d->last_attempt == t);
	CHECK(d->requested == t - 5);
	found = 0;
	for (int i = 0; i < ACME_FAILED_VALIDATIONS_PER_HOUR; i++) {
		CHECK(d->vfail[i] != t - 3000); /* the oldest was dropped */
		found += d->vfail[i] >= t - 2900 && d->vfail[i] <= t - 3000 +
			 ACME_FAILED_VALIDATIONS_PER_HOUR * 100;
	}
	CHECK_INT(found, ACME_FAILED_VALIDATIONS_PER_HOUR);
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&d->store_lock);
	free(rec);
	engine_domain_put(d);
}

static void test_decisions(struct engine *e)
{
	const char *name = "decide.example.com";
	time_t now = 1800000000, life = 90 * 86400;
	struct engine_domain *d;
	struct engine_state v;
	struct engine_gen *g;
	char canon[256];
	bool serve;

	/* Back-off doubles from 30 s for ten failures (to 30 s * 2^9, under the
	 * 6 h cap); a later Retry-After wins. */
	CHECK_INT(engine_retry_at(1, now, 0), now + 30);
	CHECK_INT(engine_retry_at(2, now, 0), now + 60);
	CHECK_INT(engine_retry_at(5, now, 0), now + 480);
	CHECK_INT(engine_retry_at(40, now, 0), now + (30 << 9));
	CHECK_INT(engine_retry_at(1, now, now + 7200), now + 7200);
	CHECK_INT(engine_retry_at(9, now, now + 10), now + (30 << 8));

	CHECK_INT(engine_mkdir(e, name, canon, sizeof(canon)), 0);
	d = engine_domain_get(e, name);
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->queued = false;
	/* Never issued: due at once; a pending retry waits for its time. */
	d->managed_gen = 0;
	CHECK(engine_domain_due(d, now, 1.0 / 3, CONF_ISSUER_LOCAL));
	d->next_attempt = now + 30;
	CHECK(!engine_domain_due(d, now, 1.0 / 3, CONF_ISSUER_LOCAL));
	CHECK(engine_domain_due(d, now + 30, 1.0 / 3, CONF_ISSUER_LOCAL));
	d->next_attempt = 0;
	/* Issued: due when a third (minus up to 2% jitter) is left. */
	d->managed_gen = 1;
	d->managed_not_before = now - life / 2;
	d->managed_not_after = now + life / 2;
	CHECK(!engine_domain_due(d, now, 1.0 / 3, CONF_ISSUER_LOCAL));
	CHECK(!engine_domain_due(d, d->managed_not_after - life / 3 - 1, 1.0 / 3, CONF_ISSUER_LOCAL));
	CHECK(engine_domain_due(d, d->managed_not_after - (life / 3 - life / 50), 1.0 / 3, CONF_ISSUER_LOCAL));
	/* The CA's renewal window wins over the fraction, both ways. */
	d->ari_renew_at = now + 10;
	CHECK(!engine_domain_due(d, now, 1.0 / 3, CONF_ISSUER_LOCAL));
	CHECK(engine_domain_due(d, now + 10, 1.0 / 3, CONF_ISSUER_LOCAL));
	d->ari_renew_at = d->managed_not_after - life / 10;
	CHECK(!engine_domain_due(d, d->managed_not_after - life / 4, 1.0 / 3, CONF_ISSUER_LOCAL));
	CHECK(engine_domain_due(d, d->ari_renew_at, 1.0 / 3, CONF_ISSUER_LOCAL));
	d->ari_renew_at = 0;
	/* A user's request (renew, names, a CSR) is due at once, and says so;
	 * a retry after a failure still waits for its time. */
	{
		char why[128];

		d->requested = now - 100;
		CHECK(engine_domain_due(d, now, 1.0 / 3, CONF_ISSUER_LOCAL));
		CHECK_INT(engine_domain_renew_at(d, now, 1.0 / 3, CONF_ISSUER_LOCAL, why,
						 sizeof(why)), now);
		CHECK(strstr(why, "requested") != NULL);
		d->next_attempt = now + 30;
		CHECK(!engine_domain_due(d, now, 1.0 / 3, CONF_ISSUER_LOCAL));
		d->next_attempt = 0;
		d->requested = 0;
	}
	d->queued = true;
	CHECK(!engine_domain_due(d, d->managed_not_after, 1.0 / 3, CONF_ISSUER_LOCAL));
	d->queued = false;

	/* An upload: warned once within warn_days, replaced at its end. */
	d->uploaded_gen = d->stored_gen = 5;
	d->uploaded_not_after = now + 10 * 86400;
	d->uploaded_warned = false;
	CHECK_INT(engine_upload_check(d, now, 14), ENGINE_UPLOAD_EXPIRING);
	CHECK_INT(engine_upload_check(d, now, 7), ENGINE_UPLOAD_NONE);
	d->uploaded_warned = true;
	CHECK_INT(engine_upload_check(d, now, 14), ENGINE_UPLOAD_NONE);
	CHECK_INT(engine_upload_check(d, now + 10 * 86400, 14), ENGINE_UPLOAD_EXPIRED);
	d->stored_gen = 4; /* the upload is not what is served */
	CHECK_INT(engine_upload_check(d, now + 10 * 86400, 14), ENGINE_UPLOAD_NONE);
	d->uploaded_gen = 0;
	pthread_mutex_unlock(&d->lock);

	/* A managed generation is served unless a valid upload is. */
	g = make_gen(e, d, ENGINE_SOURCE_LOCAL);
	memset(&v, 0, sizeof(v));
	v.uploaded_gen = 3;
	v.uploaded_not_after = util_now() + 86400;
	v.stored_gen = 3;
	v.failures = 4;
	engine_state_apply_gen(&v, g, util_now(), &serve);
	CHECK(!serve);
	CHECK_INT(v.stored_gen, 3);
	CHECK_INT(v.managed_gen, engine_gen_number(g));
	CHECK_INT(v.failures, 0);
	v.uploaded_not_after = util_now() - 1;
	engine_state_apply_gen(&v, g, util_now(), &serve);
	CHECK(serve);
	CHECK_INT(v.stored_gen, engine_gen_number(g));
	engine_gen_put(g);
	g = make_gen(e, d, ENGINE_SOURCE_UPLOADED);
	v.uploaded_warned = true;
	engine_state_apply_gen(&v, g, util_now(), &serve);
	CHECK(serve);
	CHECK_INT(v.uploaded_gen, engine_gen_number(g));
	CHECK(!v.uploaded_warned);
	CHECK(v.next_number > engine_gen_number(g));
	engine_gen_put(g);
	engine_domain_put(d);
}

/* Pairing of pending halves, then rm falls back to the managed lineage. */
static void test_pending_halves_pair(struct engine *e)
{
	const char *name = "pair.example.com";
	const unsigned char *chain, *key;
	size_t chain_len, key_len;
	struct engine_state v;
	struct engine_domain *d;
	struct engine_gen *g, *managed, *src = NULL;
	char canon[256], why[600];

	CHECK_INT(engine_mkdir(e, name, canon, sizeof(canon)), 0);
	d = engine_domain_get(e, name);
	if (!d)
		return;
	managed = make_gen(e, d, ENGINE_SOURCE_LOCAL);
	CHECK_INT(engine_commit_gen(d, managed), 0);
	/* What a user uploads: another key and certificate for the name. */
	CHECK_INT(engine_placeholder(d, &src), 0);
	if (!src)
		goto out;
	CHECK_INT(engine_gen_content(src, ENGINE_FILE_FULLCHAIN, &chain, &chain_len), 0);
	CHECK_INT(engine_gen_content(src, ENGINE_FILE_PRIVKEY, &key, &key_len), 0);

	/* The key alone waits, and says for what. */
	CHECK_INT(engine_write(e, d, ENGINE_FILE_PRIVKEY, key, key_len, why, sizeof(why)), 0);
	v = state_of(d);
	CHECK_CONTAINS(v.pending, "waiting for its certificate");
	CHECK_INT(v.uploaded_gen, 0);
	CHECK_INT(v.stored_gen, engine_gen_number(managed));
	/* Its certificate completes the pair: served as the upload. */
	CHECK_INT(engine_write(e, d, ENGINE_FILE_FULLCHAIN, chain, chain_len, why, sizeof(why)),
		  0);
	v = state_of(d);
	CHECK_STR(v.pending, "");
	CHECK(v.uploaded_gen > engine_gen_number(managed));
	CHECK_INT(v.stored_gen, v.uploaded_gen);
	CHECK_INT(v.source, ENGINE_SOURCE_UPLOADED);
	CHECK_INT(v.managed_gen, engine_gen_number(managed));
	g = engine_domain_gen(d);
	CHECK(g && engine_gen_number(g) == v.uploaded_gen);
	engine_gen_put(g);
	/* A certificate that does not match the served key waits too. */
	CHECK_INT(engine_write(e, d, ENGINE_FILE_CERT, "junk", 4, why, sizeof(why)), -EINVAL);
	CHECK_CONTAINS(state_of(d).last_error, "cert.pem: ");
	/* rm: the managed certificate, kept ready all along, is served again. */
	CHECK_INT(engine_unlink(e, d, ENGINE_FILE_FULLCHAIN), 0);
	v = state_of(d);
	CHECK_INT(v.uploaded_gen, 0);
	CHECK_INT(v.stored_gen, engine_gen_number(managed));
	CHECK_INT(v.source, ENGINE_SOURCE_LOCAL);
	g = engine_domain_gen(d);
	CHECK(g && engine_gen_number(g) == engine_gen_number(managed));
	engine_gen_put(g);
out:
	engine_gen_put(src);
	engine_gen_put(managed);
	engine_domain_put(d);
}

int main(void)
{
	struct mem_store *m = mem_new();
	struct engine *e = NULL;
	struct conf c;
	char err[512];

	conf_init(&c);
	c.issuer = CONF_ISSUER_SELFSIGNED;
	if (engine_new(&c, &m->base, &e, err, sizeof(err))) {
		fprintf(stderr, "engine_new: %s\n", err);
		return 1;
	}
	test_commit_fails_halfway(e, m);
	test_commit_after_rmdir_writes_nothing(e, m);
	test_refused_mkdir_leaves_nothing(e, m);
	test_rm_upload_on_refusing_store(e, m);
	test_record_failure_is_kept_and_retried(e, m);
	test_pacing_state_is_stored(e, m);
	test_decisions(e);
	test_pending_halves_pair(e);
	engine_free(e);
	store_close(&m->base);
	conf_clear(&c);
	CHECK_DONE();
}
