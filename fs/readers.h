/* SPDX-License-Identifier: MIT */
/*
 * Readers: which processes opened which generation of a domain's
 * certificate and key files, so that certfs can name the ones still on an
 * old certificate after a rotation (renewed, but never reloaded). Every
 * open of those files on the main mount reaches certfs with the caller's
 * thread id; this module maps it once to its process (thread group id,
 * start time, command, executable), so a pid the kernel reuses for another
 * program is never taken for the old reader, and keeps per domain the
 * newest generation each process has read.
 *
 * A *stale reader* of a domain is a process that read an older generation
 * than the one served, is still running (same pid, same start time) and has
 * not read the served one since.
 *
 * Memory is bounded: at most per_domain processes per domain and total
 * records in all. Past a domain's cap a new reader takes the place of the
 * reader least recently seen that is on the newest generation (one that
 * cannot be stale now); when every slot holds a reader of an older
 * generation, the new one is not recorded and counted as dropped.
 *
 * The per-open cost is two hash lookups under one mutex; who a thread is
 * (/proc) is read without it, the first time a thread id is seen and again
 * once its cached answer is older than tid_ttl_ms (so a reused thread id is
 * noticed). This module knows nothing about FUSE or the engine; /proc and
 * the clocks come through struct readers_ops, so it is tested with fakes.
 * Every function is thread-safe.
 */
#ifndef CERTFS_FS_READERS_H
#define CERTFS_FS_READERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define READERS_WUR __attribute__((warn_unused_result))

/* Who a process is: pid and start time tell it apart from a later one that
 * reuses its pid. */
struct readers_ident {
	pid_t pid;          /* thread group id */
	uint64_t start;     /* clock ticks after boot (/proc/PID/stat field 22) */
	char comm[16];      /* command name, spaces and controls made '?' */
	char exe[256];      /* executable path, "" when unreadable; may be cut short */
};

struct readers_ops {
	void *arg;
	/* Who is thread tid: its process's identity; 0, or -errno (-ESRCH:
	 * gone). Never called with the module's lock held. */
	int (*identify)(void *arg, pid_t tid, struct readers_ident *out);
	/* Is process pid with this start time still running (not a zombie)? */
	bool (*alive)(void *arg, pid_t pid, uint64_t start);
	uint64_t (*mono_ms)(void *arg);
	time_t (*now)(void *arg);
};

/* The real ones: /proc, util_mono_ms() and util_now(). */
extern const struct readers_ops readers_proc_ops;

struct readers_config {
	size_t per_domain;   /* processes recorded per domain */
	size_t total;        /* records in all (also sizes the thread cache) */
	uint64_t tid_ttl_ms; /* how long a thread id's identity is trusted */
};

/* One stale reader. */
struct readers_stale {
	struct readers_ident id;
	uint64_t gen;    /* the newest generation it read */
	time_t read_at;  /* when it last opened a file of the domain */
	time_t since;    /* when it became stale: the rotation past gen */
};

struct readers;

/* A new, empty table; ops is copied. 0 or -ENOMEM/-EINVAL. */
int readers_new(const struct readers_config *c, const struct readers_ops *ops,
		struct readers **out) READERS_WUR;
void readers_free(struct readers *r);

/*
 * Thread tid opened a certificate or key file of generation gen of domain.
 * May read /proc (through ops->identify) without holding the lock.
 */
void readers_note(struct readers *r, const char *domain, uint64_t gen, pid_t tid);

/* domain now serves generation cur: readers of older ones become stale. */
void readers_rotate(struct readers *r, const char *domain, uint64_t cur);

/*
 * The stale readers of domain, which serves generation cur, oldest first:
 * up to max into out; returns how many there are. Processes found gone are
 * forgotten. Checks liveness (ops->alive) without holding the lock.
 */
size_t readers_stale(struct readers *r, const char *domain, uint64_t cur,
		     struct readers_stale *out, size_t max);

/* domain (upper case folded, as rmdir folds it) was removed: forget its readers. */
void readers_forget(struct readers *r, const char *name);

/*
 * Changes whenever what readers_stale could return may have changed; while
 * any recorded process is on an older generation than its domain's newest
 * it changes at every call (whether it is still running is not an event).
 * With a domain, only that domain's processes are looked at (a domain's
 * status is looked up per domain: walking every record there made reading
 * 10,000 domains' files quadratic); NULL looks at every domain.
 */
uint64_t readers_version(struct readers *r, const char *domain);

struct readers_stats {
	size_t records;     /* processes recorded now, all domains */
	uint64_t dropped;   /* opens not recorded: a cap was reached */
	uint64_t evicted;   /* readers of the newest generation replaced at a cap */
	uint64_t lookups;   /* identities read (ops->identify calls) */
};
void readers_get_stats(struct readers *r, struct readers_stats *st);

#endif
