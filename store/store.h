/* SPDX-License-Identifier: MIT */
/*
 * store: where certfs keeps everything that must survive a restart. A store
 * is a small key/value space with '/'-separated keys ("domains/example.com/
 * state"), values of at most STORE_VALUE_MAX bytes, and back ends behind one
 * ops table (like curl's vtls): a local directory (store_dir.c) and an etcd
 * v3 cluster (store_etcd.c), which several certfs nodes share. The engine
 * decides what the keys mean.
 *
 * Guarantees every back end gives:
 *  - put() is atomic and durable: after it returns 0 a crash (kill -9, power
 *    loss) leaves the new value; before that, the old one. Never a mix.
 *  - values are private: files 0600 and directories 0700 on disk.
 *  - keys are checked: each segment is 1..255 bytes of [A-Za-z0-9._*@+=-],
 *    not "." or "..", not starting with '.'; anything else is -EINVAL, so a
 *    name can never escape the store.
 * All functions are thread-safe.
 */
#ifndef CERTFS_STORE_H
#define CERTFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define STORE_WUR __attribute__((warn_unused_result))
#define STORE_VALUE_MAX (4u * 1024 * 1024)

struct store;
struct store_lock;

/* Called once per child name of a prefix; return non-zero to stop. */
typedef int (*store_list_cb)(const char *name, void *arg);

/* What a watch reports (shared stores only). */
enum store_event_type {
	STORE_EVENT_PUT,    /* key now holds value (another node wrote it) */
	STORE_EVENT_DEL,    /* key was removed */
	/* History was lost (compaction, or the store was unreachable too
	 * long): the watcher must re-read everything it cares about. */
	STORE_EVENT_RESYNC,
	STORE_EVENT_UP,     /* the store answers again after STORE_EVENT_DOWN */
	STORE_EVENT_DOWN,   /* no endpoint answers */
};

struct store_event {
	enum store_event_type type;
	const char *key;    /* PUT, DEL: relative to the store, checked */
	const void *value;  /* PUT: plaintext, wiped after the callback */
	size_t len;
	int64_t rev;        /* PUT, DEL: the store revision of the change */
};

/*
 * One value of store_get_many: i is the key's index, rc 0 (data, len: the
 * value, valid during the call) or -errno (-ENOENT when missing). Return
 * non-zero to stop (a negative value is returned by store_get_many).
 */
typedef int (*store_value_cb)(size_t i, int rc, const void *data, size_t len, void *arg);

/* Runs on the store's watch thread, one event at a time, in order. */
typedef void (*store_watch_cb)(const struct store_event *ev, void *arg);

/* Options of a shared store (the [etcd] section); all may be NULL/0. */
struct store_opts {
	const char *ca_bundle;       /* https to etcd, verified with these roots */
	const char *cert, *key;      /* TLS client certificate */
	const char *user;            /* etcd user (auth enabled) */
	const char *password_file;   /* its password, first line */
	const char *key_encryption_key_file; /* 32 bytes, base64 or hex; root-only */
	int lease_ttl;               /* seconds; 0: STORE_LEASE_TTL_DEFAULT */
};

#define STORE_LEASE_TTL_DEFAULT 10

struct store_ops {
	const char *name;
	int (*get)(struct store *s, const char *key, struct util_buf *out);
	int (*put)(struct store *s, const char *key, const void *data, size_t len);
	int (*del)(struct store *s, const char *key);
	int (*list)(struct store *s, const char *prefix, store_list_cb cb, void *arg);
	int (*move)(struct store *s, const char *from, const char *to);
	/* One writer per store; NULL when the back end lets many share it. */
	int (*lock)(struct store *s, const char *owner, char *err, size_t errlen);
	void (*close)(struct store *s);
	/* Shared stores only; NULL in a local back end. */
	int (*get_rev)(struct store *s, const char *key, struct util_buf *out, int64_t *rev);
	int (*put_if)(struct store *s, const char *key, const void *data, size_t len,
		      int64_t rev);
	int (*watch_start)(struct store *s, const char *prefix, store_watch_cb cb, void *arg);
	void (*watch_stop)(struct store *s);
	bool (*superseded)(struct store *s, const char *key, int64_t rev);
	int (*lock_try)(struct store *s, const char *name, struct store_lock **out);
	void (*lock_release)(struct store_lock *l);
	bool (*reachable)(struct store *s);
	int (*get_many)(struct store *s, const char *const *keys, size_t n, size_t max,
			store_value_cb cb, void *arg);
};

struct store {
	const struct store_ops *ops;
	char *spec; /* what the user named, for messages */
};

/*
 * Open the store named by spec: a directory path (created 0700 if missing;
 * its parent must exist) or "etcd://HOST:PORT[,HOST:PORT...]/PREFIX".
 * -errno with a sentence in err ("store /x: not a directory", ...).
 */
int store_open(const char *spec, struct store **out, char *err, size_t errlen) STORE_WUR;
/* The same with the options of a shared store (ignored by a directory). */
int store_open_opts(const char *spec, const struct store_opts *o, struct store **out,
		    char *err, size_t errlen) STORE_WUR;
void store_close(struct store *s);
/* Is this a store several certfs nodes share (etcd)? */
bool store_shared(const struct store *s);
/* Is spec an etcd store URL? */
bool store_spec_is_etcd(const char *spec);

/* Value of key appended to out (-ENOENT if missing, -EFBIG past out->max). */
int store_get(struct store *s, const char *key, struct util_buf *out) STORE_WUR;
/*
 * The values of n keys (each at most max bytes), handed to cb in key order:
 * what start-up reads for every domain. A shared store asks for many keys
 * per round trip; a directory store reads them one by one.
 */
int store_get_many(struct store *s, const char *const *keys, size_t n, size_t max,
		   store_value_cb cb, void *arg) STORE_WUR;
/* Atomically replace key's value; creates intermediate levels. -ENOSPC when full. */
int store_put(struct store *s, const char *key, const void *data, size_t len) STORE_WUR;
/* Remove key (a value, or an empty level). -ENOENT if missing. */
int store_del(struct store *s, const char *key) STORE_WUR;
/*
 * Children of prefix ("" for the top), in no particular order. -ENOENT if
 * none (a level without children does not exist, as in etcd). A callback
 * returning a negative value stops the listing with that value; a positive
 * one stops it with 0.
 */
int store_list(struct store *s, const char *prefix, store_list_cb cb, void *arg) STORE_WUR;
/* Atomically rename a key or a whole prefix to a new, unused name (-EEXIST). */
int store_move(struct store *s, const char *from, const char *to) STORE_WUR;

/* ---- shared stores ---------------------------------------------------------
 * A directory store answers these with -ENOTSUP (it has one writer), except
 * store_put_if() with rev 0, which it emulates, and store_reachable().
 */

/* store_get() that also gives the key's revision (its last change). */
int store_get_rev(struct store *s, const char *key, struct util_buf *out,
		  int64_t *rev) STORE_WUR;
/*
 * Compare-and-swap: put only if key's revision is still rev (0: only if key
 * does not exist). -EEXIST when rev is 0 and key exists, -ESTALE when it
 * changed since rev.
 */
int store_put_if(struct store *s, const char *key, const void *data, size_t len,
		 int64_t rev) STORE_WUR;
/*
 * Report every change below prefix ("" for all) made since the store was
 * opened, except this process's own writes, on a thread of the store, until
 * store_watch_stop(). One watch per store.
 */
int store_watch_start(struct store *s, const char *prefix, store_watch_cb cb,
		      void *arg) STORE_WUR;
void store_watch_stop(struct store *s);
/*
 * Has this process written key at a revision after rev? A watcher applies
 * a change only when not, so its own newer write is never undone by an
 * older event that arrives late.
 */
bool store_superseded(struct store *s, const char *key, int64_t rev);
/*
 * Try to take the named lock, held while this process lives and answers
 * (a lease of lease_ttl seconds, kept alive by the store). -EBUSY when
 * another holder has it. While a thread has it set as its fence
 * (store_fence_set), every put, del and move of that thread succeeds only
 * if the lock is still held by this acquisition: a holder paused past its
 * lease gets -ESTALE instead of overwriting the next holder's work.
 */
int store_lock_try(struct store *s, const char *name, struct store_lock **out) STORE_WUR;
/* Release and free (NULL is a no-op). */
void store_lock_release(struct store_lock *l);
/* Fence the calling thread's writes on l (NULL: unfenced again). */
void store_fence_set(struct store_lock *l);
/* Does some endpoint of the store answer? (Always true for a directory.) */
bool store_reachable(struct store *s);

/*
 * Make this process the store's only writer, until store_close() or the
 * process ends (a crash or SIGKILL frees it at once: no stale lock).
 * owner is one line saying who holds it ("pid 12, mounted on /x"); calling
 * again updates it (after a fork). -EBUSY when another process holds the
 * store, with a sentence naming that owner in err. A back end that lets
 * several daemons share a store coherently has no lock op: 0.
 */
int store_lock(struct store *s, const char *owner, char *err, size_t errlen) STORE_WUR;
/*
 * Check a key as above. Besides these checks, a symlink found inside a
 * directory store is never followed: the operation fails with -EINVAL.
 */
bool store_key_valid(const char *key);

#endif
