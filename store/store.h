/* SPDX-License-Identifier: MIT */
/*
 * store: where certfs keeps everything that must survive a restart. A store
 * is a small key/value space with '/'-separated keys ("domains/example.com/
 * state"), values of at most STORE_VALUE_MAX bytes, and back ends behind one
 * ops table (like curl's vtls): a local directory (store_dir.c) now, an etcd
 * v3 cluster later. The engine decides what the keys mean.
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

#include "util/util.h"

#define STORE_WUR __attribute__((warn_unused_result))
#define STORE_VALUE_MAX (4u * 1024 * 1024)

struct store;

/* Called once per child name of a prefix; return non-zero to stop. */
typedef int (*store_list_cb)(const char *name, void *arg);

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
void store_close(struct store *s);

/* Value of key appended to out (-ENOENT if missing, -EFBIG past out->max). */
int store_get(struct store *s, const char *key, struct util_buf *out) STORE_WUR;
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
