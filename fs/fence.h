/* SPDX-License-Identifier: MIT */
/*
 * The pair fence: which generation of a domain a reader gets, so that a
 * thread reading a domain's certificate and its key, in either order, gets
 * one generation for both while the domain rotates.
 *
 * It works per thread (the caller passes the thread id FUSE reports) and
 * keeps one short-lived record per (thread, domain): the generation the
 * thread's last cycle started on, and which sides of the pair (certificate
 * files, key) it has opened since. Opening the other side within pair_ms of
 * the cycle's start gets the same generation (later, the current one: the
 * cycle still ends there, and a half-open cycle is remembered for forget_ms,
 * so that one slow pair never puts the thread out of phase with its later
 * ones); opening a side the record
 * already has starts a new cycle on the current generation, so a reader of
 * certificates only is never held on an old generation, a reader that looks
 * at status and then at a certificate sees what status says, and nothing
 * ever waits: publication is immediate.
 *
 * Where the caller cannot see every open (a mount whose opens never reach
 * the daemon, answered from cached directory entries), a rotation starts a
 * grace period: a thread without a record is given the generation that was
 * served before, since it may have opened one half through the cache just
 * before the rotation. The fence then lasts until no record can still name
 * an older generation; only then may new entries be cached again. There the
 * kernel may also look one name up twice for one open (a revalidation that
 * fails is followed by a fresh lookup): a second pick of the side that
 * completed a pair, or of the side picked last within retry_ms, gets the
 * same answer as the first.
 *
 * This module knows nothing about FUSE or the engine: generations are
 * opaque pointers, referenced through the ops given at creation, and time is
 * passed in (monotonic milliseconds), so it is tested with a fake clock.
 * Every function is thread-safe (one internal mutex, taken last: callers may
 * hold their own locks, the fence calls nothing outside itself but the ops).
 */
#ifndef CERTFS_FS_FENCE_H
#define CERTFS_FS_FENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The two sides of a pair. */
enum fence_side {
	FENCE_CERT, /* fullchain.pem, cert.pem, chain.pem */
	FENCE_KEY,  /* privkey.pem */
};

struct fence;

struct fence_config {
	uint64_t pair_ms;   /* longest gap between the opens of one pair */
	uint64_t forget_ms; /* a half-open cycle is remembered this long idle
			     * (at least pair_ms), so the thread stays in phase */
	uint64_t grace_ms;  /* 0 where every open is seen */
	uint64_t retry_ms;  /* 0 where each open is asked about once */
	size_t max_records; /* bound on memory: threads tracked at once */
	size_t buckets;     /* hash buckets; 0 for the default */
	void (*gen_ref)(void *gen);
	void (*gen_unref)(void *gen);
};

/*
 * A domain's fence state, embedded in the caller's per-domain object. Its
 * fields belong to the fence (guarded by its mutex); initialise it with
 * fence_dom_init and drop it with fence_dom_clear before freeing it.
 */
struct fence_dom {
	void *cur;          /* generation new readers get */
	void *grace_gen;    /* what cached readers may hold, during grace */
	uint64_t grace_end; /* monotonic ms */
	uint64_t fence_end; /* no record names an older generation after it */
	size_t records;     /* records that point at this domain */
	uint64_t rotations; /* counts fence_rotate calls */
	unsigned expiring;  /* expiries asked for and not yet done */
};

struct fence_stats {
	uint64_t picks;     /* generations handed out */
	uint64_t held_old;  /* of them, an older one, to complete a pair */
	uint64_t late;      /* second halves opened past pair_ms, given the newest */
	uint64_t untracked; /* picks with the record table full */
	size_t records;     /* records alive now */
};

int fence_new(const struct fence_config *cfg, struct fence **out)
	__attribute__((warn_unused_result));
/* Drops every record; domains must be cleared by their owners. */
void fence_free(struct fence *fc);

/* gen: the domain's generation now (a reference is taken). */
void fence_dom_init(struct fence *fc, struct fence_dom *fd, void *gen);
/* Forget the domain: its records and references go (rmdir, last inode). */
void fence_dom_clear(struct fence *fc, struct fence_dom *fd);

/* The domain now serves gen (a reference is taken). */
void fence_rotate(struct fence *fc, struct fence_dom *fd, void *gen, uint64_t now);
/*
 * The caller has asked for the kernel's cached entries of the domain to be
 * expired, which happens later (on another thread): until it says it is
 * done, cached opens of the old generation remain possible, so grace lasts.
 */
void fence_expiry_pending(struct fence *fc, struct fence_dom *fd);
/*
 * The caller has just made the kernel forget its cached entries of the
 * domain: grace runs from now (cached opens were possible until now).
 */
void fence_restart_grace(struct fence *fc, struct fence_dom *fd, uint64_t now);

/*
 * Thread tid opens (or looks up) a file of side `side` (enum fence_side) of
 * the domain, or a file outside pairs (side < 0). Returns a new reference to the generation to
 * serve. *cacheable (if non-NULL) says whether no fence is running, i.e.
 * the answer may be cached by the kernel for everyone.
 */
void *fence_pick(struct fence *fc, struct fence_dom *fd, uint32_t tid, int side, uint64_t now,
		 bool *cacheable);
/* How many rotations the domain has had (to notice one during a lookup). */
uint64_t fence_rotations(struct fence *fc, struct fence_dom *fd);
/* A new reference to the generation new readers get. */
void *fence_current(struct fence *fc, struct fence_dom *fd);

void fence_get_stats(struct fence *fc, struct fence_stats *out);

#endif
