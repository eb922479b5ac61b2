/* SPDX-License-Identifier: MIT */
/*
 * The pair fence (see fence.h): per-thread records in a chained hash table
 * with a bounded number of entries. Expired records are dropped as the
 * buckets they sit in are walked, and the whole table is swept when it is
 * full, so memory stays bounded by max_records whatever the readers do.
 *
 * Callers read the clock before they take the lock, so a caller that waited
 * for it may bring a time earlier than records made meanwhile; the fence
 * keeps its own clock that never goes back (see fence_clock), or such a
 * caller would take younger records for expired ones.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "fs/fence.h"

#define FENCE_BUCKETS 1024u

struct fence_record {
	struct fence_record *next;
	struct fence_dom *dom;
	void *gen;      /* reference */
	uint64_t start; /* first open of the cycle */
	uint64_t last;  /* the last pick */
	int last_side;
	uint32_t tid;
	unsigned sides; /* bit per side opened in the cycle */
};

struct fence {
	struct fence_config cfg;
	pthread_mutex_t lock;
	uint64_t now; /* the latest time any caller brought */
	size_t nbuckets;
	size_t nrecords;
	struct fence_stats stats;
	struct fence_record *buckets[];
};

int fence_new(const struct fence_config *cfg, struct fence **out)
{
	size_t nbuckets = cfg->buckets ? cfg->buckets : FENCE_BUCKETS;
	struct fence *fc = calloc(1, sizeof(*fc) + nbuckets * sizeof(fc->buckets[0]));

	if (!fc)
		return -ENOMEM;
	fc->cfg = *cfg;
	if (!fc->cfg.forget_ms || fc->cfg.forget_ms < fc->cfg.pair_ms)
		fc->cfg.forget_ms = fc->cfg.pair_ms;
	fc->nbuckets = nbuckets;
	pthread_mutex_init(&fc->lock, NULL);
	*out = fc;
	return 0;
}

/*
 * The time of a call, never earlier than one already seen (fc->lock held):
 * a caller that read the clock and then waited for the lock while others
 * made records must not find those records older than pair_ms (unsigned,
 * "now - start" would wrap around) and drop them mid-pair.
 */
static uint64_t fence_clock(struct fence *fc, uint64_t now)
{
	if (now > fc->now)
		fc->now = now;
	return fc->now;
}

static void record_free(struct fence *fc, struct fence_record *r)
{
	r->dom->records--;
	fc->cfg.gen_unref(r->gen);
	fc->nrecords--;
	free(r);
}

/* Drop the records for which drop() holds (fc->lock held). */
static void sweep(struct fence *fc, bool (*drop)(const struct fence_record *, const void *),
		  const void *arg)
{
	for (size_t b = 0; b < fc->nbuckets; b++) {
		struct fence_record **pp = &fc->buckets[b];

		while (*pp) {
			struct fence_record *r = *pp;

			if (drop(r, arg)) {
				*pp = r->next;
				record_free(fc, r);
			} else {
				pp = &r->next;
			}
		}
	}
}

static bool drop_all(const struct fence_record *r, const void *arg)
{
	(void)r;
	(void)arg;
	return true;
}

static bool drop_dom(const struct fence_record *r, const void *arg)
{
	return r->dom == arg;
}

struct expiry {
	const struct fence *fc;
	uint64_t now;
};

/*
 * May the record go? A completed cycle is kept pair_ms (a serving mount's
 * second asking for its last lookup needs it; past that a new record
 * behaves the same). A cycle with one side opened is the thread's phase:
 * dropping it would make the fence take the thread's next first half for
 * the second half of the old cycle, and every later pair of the thread
 * would straddle two cycles, torn at each rotation. So it is kept until the
 * thread has been idle forget_ms, though it holds its generation for
 * pair_ms only.
 */
static bool record_stale(const struct fence *fc, const struct fence_record *r, uint64_t now)
{
	if (r->sides == 3u)
		return now - r->start >= fc->cfg.pair_ms;
	return now - r->last >= fc->cfg.forget_ms;
}

static bool drop_expired(const struct fence_record *r, const void *arg)
{
	const struct expiry *x = arg;

	return record_stale(x->fc, r, x->now);
}

/* With the table full: also the half-open cycles that hold nothing any
 * more (their threads may lose phase, but new threads are tracked). */
static bool drop_unholding(const struct fence_record *r, const void *arg)
{
	const struct expiry *x = arg;

	return x->now - r->start >= x->fc->cfg.pair_ms;
}

void fence_free(struct fence *fc)
{
	if (!fc)
		return;
	pthread_mutex_lock(&fc->lock);
	sweep(fc, drop_all, NULL);
	pthread_mutex_unlock(&fc->lock);
	pthread_mutex_destroy(&fc->lock);
	free(fc);
}

void fence_dom_init(struct fence *fc, struct fence_dom *fd, void *gen)
{
	fd->cur = gen;
	fc->cfg.gen_ref(gen);
	fd->grace_gen = NULL;
	fd->grace_end = 0;
	fd->fence_end = 0;
	fd->records = 0;
	fd->rotations = 0;
	fd->expiring = 0;
}

void fence_dom_clear(struct fence *fc, struct fence_dom *fd)
{
	pthread_mutex_lock(&fc->lock);
	if (fd->records)
		sweep(fc, drop_dom, fd);
	if (fd->grace_gen)
		fc->cfg.gen_unref(fd->grace_gen);
	if (fd->cur)
		fc->cfg.gen_unref(fd->cur);
	fd->cur = fd->grace_gen = NULL;
	pthread_mutex_unlock(&fc->lock);
}

/* Is grace running? (fc->lock held) */
static bool in_grace(const struct fence *fc, const struct fence_dom *fd, uint64_t now)
{
	return fc->cfg.grace_ms && fd->grace_gen && (fd->expiring || now < fd->grace_end);
}

void fence_rotate(struct fence *fc, struct fence_dom *fd, void *gen, uint64_t now)
{
	pthread_mutex_lock(&fc->lock);
	now = fence_clock(fc, now);
	fc->cfg.gen_ref(gen);
	if (in_grace(fc, fd, now)) {
		/* Still in the grace of the last rotation: cached readers may
		 * hold the generation before it, not the one being replaced. */
		fc->cfg.gen_unref(fd->cur);
	} else {
		if (fd->grace_gen)
			fc->cfg.gen_unref(fd->grace_gen);
		fd->grace_gen = fc->cfg.grace_ms ? fd->cur : NULL;
		if (!fc->cfg.grace_ms)
			fc->cfg.gen_unref(fd->cur);
	}
	fd->cur = gen;
	fd->rotations++;
	fd->grace_end = now + fc->cfg.grace_ms;
	fd->fence_end = fd->grace_end + fc->cfg.pair_ms;
	pthread_mutex_unlock(&fc->lock);
}

void fence_expiry_pending(struct fence *fc, struct fence_dom *fd)
{
	pthread_mutex_lock(&fc->lock);
	fd->expiring++;
	pthread_mutex_unlock(&fc->lock);
}

void fence_restart_grace(struct fence *fc, struct fence_dom *fd, uint64_t now)
{
	pthread_mutex_lock(&fc->lock);
	now = fence_clock(fc, now);
	if (fd->expiring)
		fd->expiring--;
	if (fd->grace_gen && now + fc->cfg.grace_ms > fd->grace_end) {
		fd->grace_end = now + fc->cfg.grace_ms;
		fd->fence_end = fd->grace_end + fc->cfg.pair_ms;
	}
	pthread_mutex_unlock(&fc->lock);
}

static unsigned bucket_of(uint32_t tid, const struct fence_dom *fd, size_t nbuckets)
{
	uint64_t h = ((uint64_t)tid * 0x9E3779B97F4A7C15ull) ^ (uint64_t)(uintptr_t)fd;

	h ^= h >> 29;
	h *= 0xBF58476D1CE4E5B9ull;
	h ^= h >> 32;
	return (unsigned)(h % nbuckets);
}

/* The thread's record for the domain, dropping expired ones on the way. */
static struct fence_record *record_find(struct fence *fc, unsigned b, uint32_t tid,
					const struct fence_dom *fd, uint64_t now)
{
	struct fence_record **pp = &fc->buckets[b];

	while (*pp) {
		struct fence_record *r = *pp;

		if (record_stale(fc, r, now)) {
			*pp = r->next;
			record_free(fc, r);
			continue;
		}
		if (r->tid == tid && r->dom == fd)
			return r;
		pp = &r->next;
	}
	return NULL;
}

void *fence_pick(struct fence *fc, struct fence_dom *fd, uint32_t tid, int side, uint64_t now,
		 bool *cacheable)
{
	struct fence_record *r;
	unsigned b, bit;
	void *g;

	pthread_mutex_lock(&fc->lock);
	now = fence_clock(fc, now);
	fc->stats.picks++;
	if (side != FENCE_CERT && side != FENCE_KEY) {
		/* Combined and status files are whole on their own. */
		g = fd->cur;
		if (cacheable)
			*cacheable = true;
		goto out;
	}
	if (cacheable)
		*cacheable = now >= fd->fence_end && !fd->expiring;
	bit = 1u << side;
	b = bucket_of(tid, fd, fc->nbuckets);
	r = record_find(fc, b, tid, fd, now);
	if (r && !(r->sides & bit)) {
		/* The other half of a pair: the cycle's generation, or past
		 * pair_ms the current one (the cycle still ends here, so the
		 * thread's next open starts the next one). */
		r->sides |= bit;
		r->last = now;
		r->last_side = side;
		if (now - r->start >= fc->cfg.pair_ms && r->gen != fd->cur) {
			fc->stats.late++;
			fc->cfg.gen_unref(r->gen);
			r->gen = fd->cur;
			fc->cfg.gen_ref(r->gen);
		}
		g = r->gen;
		if (g != fd->cur)
			fc->stats.held_old++;
		goto out;
	}
	if (r && fc->cfg.retry_ms && r->last_side == side &&
	    (r->sides == 3u || now - r->last < fc->cfg.retry_ms)) {
		/*
		 * The same lookup asked again. After a completed pair that is
		 * certain: a thread's next cycle starts with the other side
		 * (cert, key, cert... or key, cert, key...), however late the
		 * kernel asks again on a loaded machine. Within a cycle that is
		 * not complete, only a quick second asking is one, counted from
		 * the first, so that a thread reading one file in a loop still
		 * moves on.
		 */
		g = r->gen;
		goto out;
	}
	g = in_grace(fc, fd, now) ? fd->grace_gen : fd->cur;
	if (g != fd->cur)
		fc->stats.held_old++;
	if (!r && fc->nrecords >= fc->cfg.max_records) {
		struct expiry x = {fc, now};

		sweep(fc, drop_expired, &x);
		if (fc->nrecords >= fc->cfg.max_records)
			sweep(fc, drop_unholding, &x);
	}
	if (!r && fc->nrecords < fc->cfg.max_records && (r = calloc(1, sizeof(*r)))) {
		r->tid = tid;
		r->dom = fd;
		r->next = fc->buckets[b];
		fc->buckets[b] = r;
		fd->records++;
		fc->nrecords++;
	} else if (r) {
		fc->cfg.gen_unref(r->gen); /* a new cycle */
	} else {
		fc->stats.untracked++;
		goto out;
	}
	r->gen = g;
	fc->cfg.gen_ref(g);
	r->start = r->last = now;
	r->last_side = side;
	r->sides = bit;
out:
	fc->cfg.gen_ref(g);
	pthread_mutex_unlock(&fc->lock);
	return g;
}

uint64_t fence_rotations(struct fence *fc, struct fence_dom *fd)
{
	uint64_t n;

	pthread_mutex_lock(&fc->lock);
	n = fd->rotations;
	pthread_mutex_unlock(&fc->lock);
	return n;
}

void *fence_current(struct fence *fc, struct fence_dom *fd)
{
	void *g;

	pthread_mutex_lock(&fc->lock);
	g = fd->cur;
	fc->cfg.gen_ref(g);
	pthread_mutex_unlock(&fc->lock);
	return g;
}

void fence_get_stats(struct fence *fc, struct fence_stats *out)
{
	pthread_mutex_lock(&fc->lock);
	*out = fc->stats;
	out->records = fc->nrecords;
	pthread_mutex_unlock(&fc->lock);
}
