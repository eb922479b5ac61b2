/* SPDX-License-Identifier: MIT */
/*
 * Private to fs/: inodes, per-domain front-end state and the mount object.
 */
#ifndef CERTFS_FS_INT_H
#define CERTFS_FS_INT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "engine/engine.h"

struct fuse_session;

/* Largest rendered file (status.json of a big tree). */
#define ENGINE_RECORD_LIMIT (64u * 1024 * 1024)
/*
 * The pair fence. A rotation waits at least FS_FENCE_MS after the cached
 * entries are expired, so that a process which opened a domain's
 * certificate just before (unseen) opens its key inside the fence and gets
 * the old one too: the longest gap between the two opens that certfs
 * protects. Then it is published at the first moment no process is between
 * the halves of a pair, and at the latest after FS_FENCE_MAX_MS.
 */
#define FS_FENCE_MS 100
#define FS_FENCE_MAX_MS 1000
#define FS_MAX_PINS 64

enum fs_kind {
	FS_ROOT,
	FS_DIR,      /* a domain directory */
	FS_GEN_FILE, /* a file of one generation: immutable */
	FS_SNAPSHOT, /* a rendered status file: immutable, one per lookup */
	FS_CONTROL,  /* request.csr, passphrase: write-only, empty */
	FS_WK_DIR,   /* .well-known and .well-known/acme-challenge */
};

struct fs_inode {
	struct fs_inode *prev, *next; /* all inodes, for shutdown */
	uint64_t nlookup;             /* guarded by fs->lock */
	enum fs_kind kind;
	enum engine_file file;
	struct engine_domain *dom;    /* reference; NULL for root files */
	struct engine_gen *gen;       /* reference for FS_GEN_FILE */
	struct util_buf snap;         /* FS_SNAPSHOT bytes */
	const unsigned char *data;    /* what read() serves */
	size_t size;
	struct stat st;
};

/* A process seen in a fence, and the files of its current cycle of opens. */
/* A request whose reply waits for the rotation: a lookup that would start
 * a new pair (see lookup_gen_file), or the close of an upload (fs_flush). */
struct fs_held {
	struct fs_held *next;
	void *req; /* fuse_req_t */
	enum engine_file file;
	bool flush; /* reply 0 to a FLUSH, not an entry */
};

/* Kernel notifications to send from the fence thread, never from inside a
 * FUSE request: the kernel may hold the very directory lock they need. */
struct fs_notify {
	struct fs_notify *next;
	uint64_t dir;     /* node id of the domain directory */
	bool entries;     /* expire the entries of the generation's files */
	bool listing;     /* drop the cached directory listing */
};

struct fs_pin {
	pid_t tgid;
	bool mid;          /* opened a certificate file, not yet the key */
	bool repeater;     /* opens the same certificate file again: no pair */
	bool held;         /* its lookup waits for the new generation */
	unsigned opened;   /* certificate files opened in this cycle */
	int last_file;
	uint64_t cert_ms;  /* when the cycle's certificate was looked up */
};

/* Per-domain state, hung on the engine's domain slot (guarded by fs->lock). */
struct fs_dom {
	struct fs_inode *dir;
	struct engine_gen *served;       /* what lookups hand out */
	struct fs_inode *files[ENGINE_GEN_FILES];
	struct engine_gen *pending;      /* waiting for the fence to end */
	struct engine_domain *pending_dom;
	bool handed_out;                 /* a cached entry of served exists */
	uint64_t fence_until;            /* monotonic ms: earliest publication */
	uint64_t fence_deadline;         /* latest publication */
	struct fs_pin *pins;             /* FS_MAX_PINS, only while a fence runs */
	struct fs_held *held;            /* lookups waiting for the publication */
	struct fs_inode *snap[3];        /* status, status.json, names */
	uint64_t snap_key[3];
	int npins;
	struct fs_dom *fence_next;       /* on the fence list */
	bool on_fence_list;
};

/* An open file being written (read-write mounts only). */
struct fs_handle {
	struct engine_domain *dom;
	enum engine_file file;
	struct util_buf buf; /* secret: may hold a key */
	bool dirty;          /* written since the last judgement */
	int error;           /* sticky write error (EFBIG) */
};

struct fs {
	struct engine *engine;
	struct fuse_session *se;
	bool read_only;
	bool ready;           /* the kernel has answered INIT */
	uid_t uid;
	gid_t gid;
	time_t started;

	pthread_mutex_t lock; /* inodes, fs_dom, pins */
	struct fs_inode root;
	struct fs_inode wk;      /* .well-known */
	struct fs_inode wk_acme; /* .well-known/acme-challenge (http-01 tokens) */
	struct fs_inode *root_snap[4]; /* status, status.json, metrics, ca.pem */
	uint64_t root_snap_key[4];
	struct fs_inode *inodes;

	pthread_mutex_t names_lock; /* cached root listing */
	char **names;
	size_t nnames;
	uint64_t names_version;
	bool names_valid;

	pthread_t fence_thread;
	bool fence_running;
	bool fence_stuck;     /* a notification never came back at shutdown */
	bool stopping;
	pthread_cond_t fence_cond;
	struct fs_dom *fence_list;
	struct fs_notify *notify_head, *notify_tail;
};

int fs_notify_expire_entry(struct fuse_session *se, uint64_t parent, const char *name);

#endif
