/* SPDX-License-Identifier: MIT */
/*
 * Readers of certificate and key files, per domain and process (see
 * readers.h). Three tables under one mutex: a direct-mapped cache from
 * thread id to process identity (a collision just costs a /proc read), the
 * domains by name, and the records by (domain, pid, start time), each also
 * on its domain's list. Nothing slow runs under the mutex: /proc is read
 * before it is taken (identify) or after it is dropped (liveness).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/readers.h"
#include "util/util.h"

#define READERS_DOM_BUCKETS 256u

struct rd_dom;

struct rd_rec {
	struct rd_rec *hnext;         /* r->recs bucket */
	struct rd_rec *dprev, *dnext; /* dom->recs */
	struct rd_dom *dom;
	struct readers_ident id;
	uint64_t gen;                 /* newest generation read */
	time_t read_at;               /* when it first read gen */
	time_t since;                 /* stale since (0: not stale when set) */
	uint64_t seen_ms;             /* last open, monotonic */
};

struct rd_dom {
	struct rd_dom *hnext;
	char *name;
	uint64_t cur;      /* newest generation known */
	uint64_t rot_gen;  /* the generation rotated_at is of */
	time_t rotated_at; /* when cur was published (0: unknown) */
	struct rd_rec *recs;
	size_t nrec;
};

struct rd_tid {
	pid_t tid;         /* 0: empty */
	uint64_t seen_ms;  /* when identified */
	struct readers_ident id;
};

struct readers {
	struct readers_config cfg;
	struct readers_ops ops;
	pthread_mutex_t lock;
	struct rd_tid *tids;
	size_t ntids;               /* power of two */
	struct rd_rec **recs;
	size_t nbuckets;            /* power of two */
	struct rd_dom *doms[READERS_DOM_BUCKETS];
	size_t nrec;
	uint64_t version;
	struct readers_stats stats;
};

static size_t pow2_at_least(size_t n)
{
	size_t p = 16;

	while (p < n)
		p <<= 1;
	return p;
}

static size_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)x;
}

static size_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)h;
}

static size_t rec_bucket(const struct readers *r, const struct rd_dom *d, pid_t pid,
			 uint64_t start)
{
	return hash_u64((uint64_t)(uintptr_t)d ^ ((uint64_t)(uint32_t)pid << 32) ^ start) &
	       (r->nbuckets - 1);
}

int readers_new(const struct readers_config *c, const struct readers_ops *ops,
		struct readers **out)
{
	struct readers *r;

	if (!c->per_domain || !c->total || !ops->identify || !ops->alive || !ops->mono_ms ||
	    !ops->now)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cfg = *c;
	r->ops = *ops;
	/* A quarter of the records: servers have a few threads that open
	 * certificates; a miss only costs a /proc read. */
	r->ntids = pow2_at_least(c->total / 4);
	r->nbuckets = pow2_at_least(c->total);
	r->tids = calloc(r->ntids, sizeof(*r->tids));
	r->recs = calloc(r->nbuckets, sizeof(*r->recs));
	if (!r->tids || !r->recs) {
		free(r->tids);
		free(r->recs);
		free(r);
		return -ENOMEM;
	}
	pthread_mutex_init(&r->lock, NULL);
	*out = r;
	return 0;
}

static void rec_unlink(struct readers *r, struct rd_rec *x)
{
	struct rd_rec **pp = &r->recs[rec_bucket(r, x->dom, x->id.pid, x->id.start)];

	while (*pp && *pp != x)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = x->hnext;
	if (x->dprev)
		x->dprev->dnext = x->dnext;
	else
		x->dom->recs = x->dnext;
	if (x->dnext)
		x->dnext->dprev = x->dprev;
	x->dom->nrec--;
	r->nrec--;
	r->version++;
	free(x);
}

static void dom_free(struct readers *r, struct rd_dom *d)
{
	while (d->recs)
		rec_unlink(r, d->recs);
	free(d->name);
	free(d);
}

void readers_free(struct readers *r)
{
	if (!r)
		return;
	for (size_t b = 0; b < READERS_DOM_BUCKETS; b++) {
		while (r->doms[b]) {
			struct rd_dom *d = r->doms[b];

			r->doms[b] = d->hnext;
			dom_free(r, d);
		}
	}
	pthread_mutex_destroy(&r->lock);
	free(r->tids);
	free(r->recs);
	free(r);
}

/* The domain's entry (r->lock held); created when create, NULL on ENOMEM. */
static struct rd_dom *dom_lookup(struct readers *r, const char *name, bool create)
{
	size_t b = hash_str(name) & (READERS_DOM_BUCKETS - 1);
	struct rd_dom *d;

	for (d = r->doms[b]; d; d = d->hnext)
		if (!strcmp(d->name, name))
			return d;
	if (!create)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d || !(d->name = strdup(name))) {
		free(d);
		return NULL;
	}
	d->hnext = r->doms[b];
	r->doms[b] = d;
	return d;
}

static struct rd_rec *rec_lookup(struct readers *r, struct rd_dom *d, pid_t pid, uint64_t start)
{
	struct rd_rec *x = r->recs[rec_bucket(r, d, pid, start)];

	while (x && !(x->dom == d && x->id.pid == pid && x->id.start == start))
		x = x->hnext;
	return x;
}

/*
 * Room for a new record of d (r->lock held): past a cap, the reader least
 * recently seen that is on its domain's newest generation makes way (it
 * cannot be stale now; a dead `cat` is the usual one). false: every
 * candidate is a reader of an older generation, which must be kept.
 */
static bool make_room(struct readers *r, struct rd_dom *d)
{
	struct rd_rec *victim = NULL;

	if (d->nrec >= r->cfg.per_domain) {
		for (struct rd_rec *x = d->recs; x; x = x->dnext)
			if (x->gen >= d->cur && (!victim || x->seen_ms < victim->seen_ms))
				victim = x;
	} else if (r->nrec >= r->cfg.total) {
		for (size_t b = 0; b < READERS_DOM_BUCKETS; b++)
			for (struct rd_dom *e = r->doms[b]; e; e = e->hnext)
				for (struct rd_rec *x = e->recs; x; x = x->dnext)
					if (x->gen >= e->cur &&
					    (!victim || x->seen_ms < victim->seen_ms))
						victim = x;
	} else {
		return true;
	}
	if (!victim)
		return false;
	rec_unlink(r, victim);
	r->stats.evicted++;
	return true;
}

/* Stale since when (r->lock held): the publication past its generation. */
static void rec_mark(struct readers *r, struct rd_dom *d, struct rd_rec *x)
{
	if (x->gen >= d->cur)
		x->since = 0;
	else if (!x->since)
		x->since = d->rotated_at ? d->rotated_at : r->ops.now(r->ops.arg);
}

void readers_note(struct readers *r, const char *domain, uint64_t gen, pid_t tid)
{
	uint64_t now_ms = r->ops.mono_ms(r->ops.arg);
	size_t slot = hash_u64((uint64_t)(uint32_t)tid) & (r->ntids - 1);
	struct readers_ident fresh;
	struct rd_tid *t;
	struct rd_dom *d;
	struct rd_rec *x;

	/* 0: a caller in a pid namespace we cannot see into (FUSE says so). */
	if (tid <= 0)
		return;
	pthread_mutex_lock(&r->lock);
	t = &r->tids[slot];
	if (t->tid != tid || now_ms - t->seen_ms >= r->cfg.tid_ttl_ms) {
		/* Who the thread is comes from /proc: read without the lock,
		 * which every other open needs. */
		pthread_mutex_unlock(&r->lock);
		if (r->ops.identify(r->ops.arg, tid, &fresh))
			return; /* gone already: nothing left to reload */
		pthread_mutex_lock(&r->lock);
		r->stats.lookups++;
		t = &r->tids[slot];
		t->tid = tid;
		t->seen_ms = now_ms;
		t->id = fresh;
	}
	d = dom_lookup(r, domain, true);
	if (!d)
		goto out;
	if (gen > d->cur)
		d->cur = gen; /* an open of what is published before we are told */
	x = rec_lookup(r, d, t->id.pid, t->id.start);
	if (x) {
		x->seen_ms = now_ms;
		if (gen > x->gen) {
			x->gen = gen;
			x->read_at = r->ops.now(r->ops.arg);
			r->version++;
		}
		rec_mark(r, d, x);
		goto out;
	}
	if (!make_room(r, d)) {
		r->stats.dropped++;
		goto out;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		r->stats.dropped++;
		goto out;
	}
	x->dom = d;
	x->id = t->id;
	x->gen = gen;
	x->read_at = r->ops.now(r->ops.arg);
	x->seen_ms = now_ms;
	rec_mark(r, d, x);
	slot = rec_bucket(r, d, x->id.pid, x->id.start);
	x->hnext = r->recs[slot];
	r->recs[slot] = x;
	x->dnext = d->recs;
	if (d->recs)
		d->recs->dprev = x;
	d->recs = x;
	d->nrec++;
	r->nrec++;
	r->version++;
out:
	pthread_mutex_unlock(&r->lock);
}

void readers_rotate(struct readers *r, const char *domain, uint64_t cur)
{
	struct rd_dom *d;

	pthread_mutex_lock(&r->lock);
	d = dom_lookup(r, domain, true);
	if (d && cur >= d->cur && d->rot_gen != cur) {
		d->cur = cur;
		d->rot_gen = cur;
		d->rotated_at = r->ops.now(r->ops.arg);
		for (struct rd_rec *x = d->recs; x; x = x->dnext)
			rec_mark(r, d, x);
		r->version++;
	}
	pthread_mutex_unlock(&r->lock);
}

static int stale_cmp(const void *a, const void *b)
{
	const struct readers_stale *x = a, *y = b;

	if (x->since != y->since)
		return x->since < y->since ? -1 : 1;
	return (x->id.pid > y->id.pid) - (x->id.pid < y->id.pid);
}

size_t readers_stale(struct readers *r, const char *domain, uint64_t cur,
		     struct readers_stale *out, size_t max)
{
	struct readers_stale *c = NULL;
	size_t n = 0, alive = 0;
	struct rd_dom *d;

	pthread_mutex_lock(&r->lock);
	d = dom_lookup(r, domain, false);
	if (d && cur > d->cur) {
		/* A publication we were not told of (yet): it is the rotation. */
		d->cur = cur;
		d->rot_gen = cur;
		d->rotated_at = r->ops.now(r->ops.arg);
	}
	if (d && d->nrec)
		c = calloc(d->nrec, sizeof(*c));
	for (struct rd_rec *x = c ? d->recs : NULL; x; x = x->dnext) {
		if (x->gen >= cur)
			continue;
		rec_mark(r, d, x);
		c[n].id = x->id;
		c[n].gen = x->gen;
		c[n].read_at = x->read_at;
		c[n].since = x->since;
		n++;
	}
	pthread_mutex_unlock(&r->lock);
	if (!n)
		goto out;
	/* Liveness reads /proc: outside the lock. */
	for (size_t i = 0; i < n; i++) {
		if (r->ops.alive(r->ops.arg, c[i].id.pid, c[i].id.start)) {
			c[alive++] = c[i];
			continue;
		}
		pthread_mutex_lock(&r->lock);
		d = dom_lookup(r, domain, false);
		if (d) {
			struct rd_rec *x = rec_lookup(r, d, c[i].id.pid, c[i].id.start);

			if (x)
				rec_unlink(r, x); /* gone: a reused pid is another key */
		}
		pthread_mutex_unlock(&r->lock);
	}
	qsort(c, alive, sizeof(*c), stale_cmp);
	for (size_t i = 0; i < alive && i < max; i++)
		out[i] = c[i];
out:
	free(c);
	return alive;
}

void readers_forget(struct readers *r, const char *name)
{
	char domain[256];
	size_t b, k;

	for (k = 0; name[k] && k < sizeof(domain) - 1; k++)
		domain[k] = (char)tolower((unsigned char)name[k]);
	domain[k] = '\0';
	b = hash_str(domain) & (READERS_DOM_BUCKETS - 1);

	pthread_mutex_lock(&r->lock);
	for (struct rd_dom **pp = &r->doms[b]; *pp; pp = &(*pp)->hnext) {
		struct rd_dom *d = *pp;

		if (!strcmp(d->name, domain)) {
			*pp = d->hnext;
			dom_free(r, d);
			break;
		}
	}
	/* Threads stay cached: who they are does not depend on the domain. */
	r->version++;
	pthread_mutex_unlock(&r->lock);
}

/* Is a process of d on an older generation than d's newest? (r->lock held) */
static bool dom_has_old(const struct rd_dom *d)
{
	for (const struct rd_rec *x = d->recs; x; x = x->dnext)
		if (x->gen < d->cur)
			return true;
	return false;
}

uint64_t readers_version(struct readers *r, const char *domain)
{
	struct rd_dom *one;
	uint64_t v;
	bool old = false;

	pthread_mutex_lock(&r->lock);
	if (domain) {
		one = dom_lookup(r, domain, false);
		old = one && dom_has_old(one);
	}
	for (size_t b = 0; !domain && !old && b < READERS_DOM_BUCKETS; b++)
		for (struct rd_dom *d = r->doms[b]; !old && d; d = d->hnext)
			old = dom_has_old(d);
	if (old)
		r->version++;
	v = r->version;
	pthread_mutex_unlock(&r->lock);
	return v;
}

void readers_get_stats(struct readers *r, struct readers_stats *st)
{
	pthread_mutex_lock(&r->lock);
	*st = r->stats;
	st->records = r->nrec;
	pthread_mutex_unlock(&r->lock);
}

/* ---- the real process table ----------------------------------------------------- */

/* Read a small /proc file into buf (NUL-terminated); 0 or -errno. */
static int proc_read(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, len - 1);
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc)
		return rc == -ENOENT ? -ESRCH : rc;
	buf[n] = '\0';
	return 0;
}

/*
 * /proc/PID/stat: "PID (COMM) S PPID ...": the command may hold spaces and
 * parentheses, so it ends at the last ')'. Field 22 is the start time.
 */
static int proc_stat(pid_t pid, char *comm, size_t commlen, char *state, uint64_t *start)
{
	char path[64], buf[1024], *open_p, *close_p, *p;
	int rc;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	rc = proc_read(path, buf, sizeof(buf));
	if (rc)
		return rc;
	open_p = strchr(buf, '(');
	close_p = strrchr(buf, ')');
	if (!open_p || !close_p || close_p < open_p || close_p[1] != ' ')
		return -EINVAL;
	if (comm) {
		size_t len = (size_t)(close_p - open_p - 1), i;

		if (len >= commlen)
			len = commlen - 1;
		for (i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)open_p[1 + i];

			/* Shown in a one-line status: no blanks, no controls. */
			comm[i] = ch > ' ' && ch < 0x7f ? (char)ch : '?';
		}
		comm[i] = '\0';
	}
	p = close_p + 2; /* field 3 */
	*state = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	*start = strtoull(p, NULL, 10);
	return 0;
}

static int proc_identify(void *arg, pid_t tid, struct readers_ident *out)
{
	char path[64], buf[4096], *p;
	char state;
	ssize_t n;
	int rc;

	(void)arg;
	memset(out, 0, sizeof(*out));
	/* FUSE reports the calling thread; its process is the thread group. */
	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	rc = proc_read(path, buf, sizeof(buf));
	if (rc)
		return rc;
	p = strstr(buf, "\nTgid:");
	if (!p)
		return -EINVAL;
	out->pid = (pid_t)strtol(p + 6, NULL, 10);
	if (out->pid <= 0)
		return -EINVAL;
	rc = proc_stat(out->pid, out->comm, sizeof(out->comm), &state, &out->start);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)out->pid);
	n = readlink(path, out->exe, sizeof(out->exe) - 1);
	out->exe[n > 0 ? n : 0] = '\0';
	return 0;
}

static bool proc_alive(void *arg, pid_t pid, uint64_t start)
{
	uint64_t now_start;
	char state;

	(void)arg;
	return !proc_stat(pid, NULL, 0, &state, &now_start) && now_start == start &&
	       state != 'Z' && state != 'X';
}

static uint64_t proc_mono_ms(void *arg)
{
	(void)arg;
	return util_mono_ms();
}

static time_t proc_now(void *arg)
{
	(void)arg;
	return util_now();
}

const struct readers_ops readers_proc_ops = {
	.identify = proc_identify,
	.alive = proc_alive,
	.mono_ms = proc_mono_ms,
	.now = proc_now,
};
