/* SPDX-License-Identifier: MIT */
/*
 * Private to fs/: inodes, the front end's own per-domain state and the mount
 * object.
 *
 * Lock order (outermost first): f->names_lock, f->lock, then the engine's
 * locks (a domain's lock through engine_domain_gen), then the fence's own
 * mutex. f->lock guards the inode list, the domain map and every fs_dom
 * field but `fence` (which the fence guards). Nothing slow runs under
 * f->lock: status files are rendered, generations loaded and PKCS#12 files
 * built before it is taken, and kernel notifications are sent without it.
 */
#ifndef CERTFS_FS_INT_H
#define CERTFS_FS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>

#include "engine/engine.h"
#include "fs/fence.h"
#include "fs/readers.h"

struct fuse_session;

/* Largest rendered file (status.json of a big tree). */
#define FS_RENDER_LIMIT (64u * 1024 * 1024)
/*
 * The pair window: a thread's open of the other side of a pair within it
 * gets the generation its cycle started on. Servers open both back to back,
 * but on an overloaded machine the daemon has been seen to take over two
 * seconds between a reader's two opens; a window much longer would let a
 * reused thread id inherit a dead thread's record.
 */
#define FS_PAIR_MS 10000
/*
 * A thread's half-open cycle is remembered this long after its last open
 * (it holds its generation for FS_PAIR_MS only): forgetting it sooner would
 * put a thread whose pair took longer than FS_PAIR_MS out of phase, pairing
 * each second half with the next first half for good.
 */
#define FS_PAIR_FORGET_MS 60000
/*
 * On a serving mount a lookup of the side a thread looked up last, in a
 * cycle whose pair is not complete, this soon after the first, is taken for
 * the kernel asking again for the same open (see fence.h): a revalidation
 * that fails is followed by a fresh lookup, and with many threads looking
 * one name up at once the kernel may ask a third time; on an overloaded
 * machine those came up to about 130 ms apart. It is also how much later
 * than a new thread a thread that re-reads one file in a loop sees a
 * rotation there (a bind mount of a domain directory polled by a server),
 * so it is kept well under a second.
 */
#define FS_RETRY_MS 300
/*
 * Grace on a serving mount (whose opens certfs never sees): after a rotation
 * a thread with no record gets the previous generation for this long, since
 * it may have opened one half through the kernel's cache just before. It is
 * also how late a new generation reaches new readers there (deploy hooks
 * wait for it).
 */
#define FS_GRACE_MS 500
/* Threads tracked at once (bounds memory: about 64 bytes each). */
#define FS_FENCE_RECORDS 65536
/*
 * Readers of certificate files recorded (see readers.h): processes per
 * domain and in all (about 400 bytes each), and how long a thread id's
 * process is trusted before /proc is asked again.
 */
#define FS_READERS_PER_DOMAIN 64
#define FS_READERS_TOTAL 8192
#define FS_READERS_TID_TTL_MS 10000

/* The haproxy view's directory. Single-label development names are domains
 * too, but this one is found first: `mkdir haproxy` fails with EEXIST. */
#define FS_CRT_DIR "haproxy"

enum fs_kind {
	FS_ROOT,
	FS_DIR,      /* a domain directory */
	FS_GEN_FILE, /* a file of a domain (see struct fs_inode) */
	FS_SNAPSHOT, /* a rendered status file: immutable, one per lookup */
	FS_CONTROL,  /* request.csr, passphrase: write-only, empty */
	FS_WK_DIR,   /* .well-known and .well-known/acme-challenge */
};

struct fs_dom;

/*
 * A node. On the main mount a domain's certificate files are stable nodes
 * (one per name, so a bind mount of one file sees rotations) whose content
 * is chosen at each open; on a serving mount each is the immutable file of
 * one generation (gen set), so the kernel may cache it without asking.
 */
struct fs_inode {
	struct fs_inode *prev, *next; /* all inodes, for shutdown */
	uint64_t nlookup;
	enum fs_kind kind;
	enum engine_file file;
	struct fs_dom *fdom;        /* reference; NULL for root files */
	struct engine_gen *gen;     /* serving mount: the generation served */
	struct util_buf snap;       /* FS_SNAPSHOT bytes */
	const unsigned char *data;  /* what read() serves without a handle */
	size_t size;
	struct stat st;
};

/* The front end's state for one engine domain, owned by fs. */
struct fs_dom {
	struct fs_dom *hnext;            /* f->doms bucket */
	struct engine_domain *d;         /* reference */
	unsigned refs;                   /* inodes and notifications using it */
	struct fence_dom fence;
	bool has_key;                    /* the current generation has a key */
	struct fs_inode *dir;
	struct fs_inode *files[ENGINE_GEN_FILES];
	/* Serving mount: the files of the generation before (one node per
	 * generation and name, so the kernel's revalidations agree). */
	struct fs_inode *old_files[ENGINE_GEN_FILES];
	struct fs_inode *snap[4];        /* status, status.json, names, log */
	uint64_t snap_key[4];
};

/* Kernel notifications sent by the notify thread, never from inside a FUSE
 * request: the kernel may hold the very directory lock they need. */
struct fs_notify {
	struct fs_notify *next;
	struct fs_dom *fdom; /* reference */
	uint64_t dir;        /* node id of the domain directory */
	bool expire;         /* serving mount: expire the certificate entries */
	bool keys;           /* drop the key files' entries (they came or went) */
};

/* An open file: a reader's generation, or a writer's buffered upload. */
struct fs_handle {
	struct engine_domain *dom;  /* reference */
	enum engine_file file;
	bool writer;
	struct engine_gen *gen;     /* reader: reference */
	const unsigned char *data;  /* reader: the bytes, owned by gen */
	size_t size;
	struct util_buf buf;        /* writer: secret, may hold a key */
	bool dirty;                 /* written since the last judgement */
	/* Writer, for empty writes (trunc.c); the first four set under
	 * handles_lock. */
	uint64_t open_seq;          /* orders opens */
	uint64_t ino;               /* the node opened */
	pid_t tid;                  /* the thread that opened it */
	bool truncated;             /* to size 0, by its open or ftruncate */
	bool wrote;                 /* any byte ever written */
	bool empty_flushed;         /* closed with nothing written: judged at RELEASE */
	uint64_t empty_seen;        /* engine_domain_writes at that close */
	int error;                  /* sticky write error (EFBIG) */
	atomic_uint refs;           /* the open file, and a READ in flight */
	struct fs_handle *prev, *next; /* f->handles (handles_lock) */
	struct fs *fs;
};

#define FS_DOM_BUCKETS 4096u

/* Threads that judge uploads (see judge.h); more would only compete for
 * the CPU: a judgement is computation. */
#define FS_JUDGE_THREADS 2

struct fs {
	struct engine *engine;
	struct fuse_session *se;
	struct judge *judge;  /* uploads are judged here, off the FUSE threads */
	bool serving;         /* read-only, opens unseen (see fs.h) */
	bool ready;           /* the kernel has answered INIT */
	struct fs *next_mount; /* another mount of the same engine */
	uid_t uid;
	gid_t gid;
	time_t started;
	struct fence *fence;
	/* Who read which generation: the main mount's, shared with (not
	 * owned by) a serving mount beside it; NULL when not tracked. */
	struct readers *readers;
	bool owns_readers;

	pthread_mutex_t lock;
	struct fs_inode root;
	struct fs_inode wk;      /* .well-known */
	struct fs_inode wk_acme; /* .well-known/acme-challenge (http-01 tokens) */
	struct fs_inode crt_dir; /* haproxy/: DOMAIN.pem, key and chain (crt DIR) */
	struct fs_inode *root_snap[6]; /* status, status.json, metrics, ca.pem, crt-list, log */
	uint64_t root_snap_key[6];
	struct fs_inode *inodes;
	struct fs_dom *doms[FS_DOM_BUCKETS];

	/* Open files, so that those the kernel never released (the session
	 * ended first) are freed at shutdown. Taken alone, never with others. */
	pthread_mutex_t handles_lock;
	struct fs_handle *handles;
	uint64_t seq;         /* orders writers' opens (trunc.c) */

	pthread_mutex_t names_lock; /* cached root listing */
	char **names;
	size_t nnames;
	uint64_t names_version;
	bool names_valid;

	pthread_t notify_thread;
	bool notify_running;
	bool notify_stuck;    /* a notification never came back at shutdown */
	bool stopping;
	pthread_cond_t notify_cond;
	struct fs_notify *notify_head, *notify_tail;
};

int fs_notify_expire_entry(struct fuse_session *se, uint64_t parent, const char *name);

/* trunc.c: empty writes; each takes handles_lock (no other lock held). */
/* Writer h opened node ino in thread tid. */
void fs_note_open(struct fs *f, struct fs_handle *h, uint64_t ino, pid_t tid);
/* A SETATTR of size 0 on node ino by thread tid, with its handle h or NULL. */
void fs_note_truncate(struct fs *f, uint64_t ino, struct fs_handle *h, pid_t tid);
/* Is writer h truncated to nothing with nothing written? */
bool fs_empty_open(struct fs *f, struct fs_handle *h);

#endif
