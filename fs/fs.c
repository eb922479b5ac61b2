/* SPDX-License-Identifier: MIT */
/*
 * The FUSE low-level handlers. Handlers stay thin: resolve the inode, ask
 * the engine or the fence, reply. Node ids are inode pointers (the root is
 * id 1).
 *
 * Two kinds of mount serve one engine (see fs.h and README "How reading
 * stays consistent and fast"):
 *   - the main mount (read-write): a domain's files are stable nodes, and
 *     each open gets its own generation from the fence (fence.h), read
 *     through the open file (direct_io), so a bind mount of a single file
 *     follows rotations and a thread's certificate and key always match;
 *   - a serving mount (read-only): each file of each generation is its own
 *     immutable node the kernel caches with its pages, opens never reach us
 *     (OPEN answered ENOSYS), and the fence answers lookups instead.
 * Status files are rendered into a new node at lookup (cached while nothing
 * they show has changed) and handed out with a zero entry timeout.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/fs_int.h"
#include "fs/judge.h"

#define CACHE_FOREVER 86400.0

_Static_assert(sizeof(fuse_ino_t) >= sizeof(uintptr_t), "node ids are inode pointers");

static const struct fuse_lowlevel_ops fs_ops_rw;
static const struct fuse_lowlevel_ops fs_ops_ro;

/* ---- inodes ------------------------------------------------------------------- */

static struct fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fs_inode *ino_get(struct fs *f, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &f->root;
	return (struct fs_inode *)(uintptr_t)ino;
}

static fuse_ino_t ino_id(struct fs *f, struct fs_inode *i)
{
	return i == &f->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)i;
}

static void dom_put(struct fs *f, struct fs_dom *fd);

/* New inode on the fs list (f->lock held); takes a reference on fd. */
static struct fs_inode *inode_new(struct fs *f, enum fs_kind kind, enum engine_file file,
				  struct fs_dom *fd)
{
	struct fs_inode *i = calloc(1, sizeof(*i));

	if (!i)
		return NULL;
	i->kind = kind;
	i->file = file;
	i->fdom = fd;
	if (fd)
		fd->refs++;
	util_buf_init(&i->snap, FS_RENDER_LIMIT, true);
	i->next = f->inodes;
	if (f->inodes)
		f->inodes->prev = i;
	f->inodes = i;
	i->st.st_nlink = 1;
	i->st.st_uid = f->uid;
	i->st.st_gid = f->gid;
	i->st.st_blksize = 4096;
	return i;
}

/* Unlink and free (f->lock held). */
static void inode_free(struct fs *f, struct fs_inode *i)
{
	struct fs_dom *fd = i->fdom;

	for (size_t k = 0; k < sizeof(f->root_snap) / sizeof(f->root_snap[0]); k++)
		if (f->root_snap[k] == i)
			f->root_snap[k] = NULL;
	if (fd) {
		for (size_t k = 0; k < sizeof(fd->snap) / sizeof(fd->snap[0]); k++)
			if (fd->snap[k] == i)
				fd->snap[k] = NULL;
		if (fd->dir == i)
			fd->dir = NULL;
		for (int k = 0; k < ENGINE_GEN_FILES; k++) {
			if (fd->files[k] == i)
				fd->files[k] = NULL;
			if (fd->old_files[k] == i)
				fd->old_files[k] = NULL;
		}
	}
	if (i->prev)
		i->prev->next = i->next;
	else
		f->inodes = i->next;
	if (i->next)
		i->next->prev = i->prev;
	util_buf_free(&i->snap);
	engine_gen_put(i->gen);
	if (fd)
		dom_put(f, fd);
	free(i);
}

static void set_times(struct stat *st, time_t t)
{
	st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = t;
}

static void set_size(struct stat *st, size_t size)
{
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
}

static bool is_key_file(enum engine_file file)
{
	return file == ENGINE_FILE_PRIVKEY || file == ENGINE_FILE_BUNDLE ||
	       file == ENGINE_FILE_PFX;
}

/* The side of a pair a file is on (enum fence_side), or -1. */
static int pair_index(enum engine_file file)
{
	switch (file) {
	case ENGINE_FILE_FULLCHAIN:
	case ENGINE_FILE_CERT:
	case ENGINE_FILE_CHAIN:
		return FENCE_CERT;
	case ENGINE_FILE_PRIVKEY:
		return FENCE_KEY;
	default:
		return -1; /* bundle.pem and cert.pfx are whole on their own */
	}
}

/* Does file k of a domain (or of the root) take writes? The root's status
 * takes "renew" (every domain); its other files are read-only. */
static bool writable(enum engine_file k, bool in_domain)
{
	if (!in_domain)
		return k == ENGINE_FILE_STATUS;
	return k < ENGINE_GEN_FILES || k == ENGINE_FILE_STATUS || k == ENGINE_FILE_NAMES ||
	       k == ENGINE_FILE_REQUEST_CSR || k == ENGINE_FILE_PASSPHRASE;
}

/*
 * The mode shown says what can be done (the kernel enforces it): a file
 * nobody can write (most root files, anything on a serving mount) is 0444,
 * a write-only one 0200.
 */
static mode_t file_mode(const struct fs *f, enum engine_file file, bool in_domain)
{
	if (file == ENGINE_FILE_REQUEST_CSR || file == ENGINE_FILE_PASSPHRASE)
		return 0200; /* write-only: a passphrase is never readable back */
	return !f->serving && writable(file, in_domain) ? 0644 : 0444;
}

static void apply_key_owner(struct fs *f, struct fs_inode *i)
{
	uid_t uid;
	gid_t gid;
	mode_t mode;

	engine_key_owner(f->engine, &uid, &gid, &mode);
	i->st.st_mode = S_IFREG | mode;
	i->st.st_uid = uid;
	i->st.st_gid = gid;
}

/* ---- per-domain state ----------------------------------------------------------- */

static void gen_ref(void *g)
{
	engine_gen_get(g);
}

static void gen_unref(void *g)
{
	engine_gen_put(g);
}

static unsigned dom_bucket(const struct engine_domain *d)
{
	uint64_t h = (uint64_t)(uintptr_t)d * 0x9E3779B97F4A7C15ull;

	return (unsigned)((h >> 32) % FS_DOM_BUCKETS);
}

/* fs's state for d, or NULL (f->lock held). */
static struct fs_dom *dom_find(struct fs *f, const struct engine_domain *d)
{
	for (struct fs_dom *fd = f->doms[dom_bucket(d)]; fd; fd = fd->hnext)
		if (fd->d == d)
			return fd;
	return NULL;
}

/*
 * fs's state for d, made on first use (f->lock held). The caller has read
 * d's generation once before taking f->lock, so that the read here (under
 * it, which orders it against fs_published) never loads from the store.
 */
static struct fs_dom *dom_get(struct fs *f, struct engine_domain *d)
{
	struct fs_dom *fd = dom_find(f, d);
	struct engine_gen *g;
	unsigned b;

	if (fd)
		return fd;
	g = engine_domain_gen(d);
	if (!g)
		return NULL;
	fd = calloc(1, sizeof(*fd));
	if (!fd) {
		engine_gen_put(g);
		return NULL;
	}
	fd->d = engine_domain_ref(d);
	fence_dom_init(f->fence, &fd->fence, g);
	fd->has_key = engine_gen_has_key(g);
	engine_gen_put(g);
	b = dom_bucket(d);
	fd->hnext = f->doms[b];
	f->doms[b] = fd;
	return fd;
}

/* Drop a reference; the last one frees fs's state (f->lock held). */
static void dom_put(struct fs *f, struct fs_dom *fd)
{
	struct fs_dom **pp;

	if (--fd->refs)
		return;
	for (pp = &f->doms[dom_bucket(fd->d)]; *pp != fd; pp = &(*pp)->hnext)
		;
	*pp = fd->hnext;
	fence_dom_clear(f->fence, &fd->fence);
	engine_domain_put(fd->d);
	free(fd);
}

/*
 * Another node added or removed a domain: the kernel keeps the root's
 * listing and its entries cached, so tell every mount (from the store's
 * watch thread, never inside a request, so the kernel's directory lock is
 * free).
 */
static void fs_names_changed(void *arg, const char *name, bool removed)
{
	for (struct fs *f = arg; f; f = f->next_mount) {
		if (!__atomic_load_n(&f->ready, __ATOMIC_ACQUIRE))
			continue;
		fuse_lowlevel_notify_inval_inode(f->se, FUSE_ROOT_ID, 0, 0);
		if (removed)
			fuse_lowlevel_notify_inval_entry(f->se, FUSE_ROOT_ID, name, strlen(name));
	}
}

/* Reply with an entry for i and count the lookup (f->lock held). */
static void reply_entry(fuse_req_t req, struct fs *f, struct fs_inode *i, double entry_timeout)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = ino_id(f, i);
	e.attr = i->st;
	e.attr.st_ino = e.ino;
	e.attr_timeout = CACHE_FOREVER;
	e.entry_timeout = entry_timeout;
	i->nlookup++;
	if (fuse_reply_entry(req, &e) == -ENOENT)
		i->nlookup--; /* the request was interrupted: the kernel kept nothing */
}

static uint32_t req_tid(fuse_req_t req)
{
	/* FUSE reports the calling thread's id, not its process's. */
	return (uint32_t)fuse_req_ctx(req)->pid;
}

/* ---- rotation ------------------------------------------------------------------- */

/* Queue a notification for the notify thread (f->lock held). */
static void notify_queue(struct fs *f, struct fs_dom *fd, bool expire, bool keys)
{
	struct fs_notify *n;

	if (!fd->dir || (!expire && !keys))
		return; /* nothing of the domain is in the kernel's caches */
	n = calloc(1, sizeof(*n));
	if (!n)
		return; /* the entries then expire no sooner than their timeout */
	n->fdom = fd;
	fd->refs++;
	if (expire)
		fence_expiry_pending(f->fence, &fd->fence);
	n->dir = ino_id(f, fd->dir);
	n->expire = expire;
	n->keys = keys;
	if (f->notify_tail)
		f->notify_tail->next = n;
	else
		f->notify_head = n;
	f->notify_tail = n;
	pthread_cond_signal(&f->notify_cond);
}

static void notify_one(struct fs *f, const struct fs_notify *n)
{
	for (int k = 0; k < ENGINE_GEN_FILES; k++) {
		const char *name = engine_file_name((enum engine_file)k);

		if (n->keys && is_key_file((enum engine_file)k)) {
			/* The files come or go: unhash their names. */
			fuse_lowlevel_notify_inval_entry(f->se, n->dir, name, strlen(name));
		} else if (n->expire) {
			/* Expired, not unhashed: every thread that opens the name
			 * next revalidates it with a lookup of its own, which is
			 * how the fence sees who reads what. Kernels before 6.2
			 * refuse FUSE_EXPIRE_ONLY: unhash instead. */
			if (fs_notify_expire_entry(f->se, n->dir, name) == -EINVAL)
				fuse_lowlevel_notify_inval_entry(f->se, n->dir, name, strlen(name));
		}
	}
	if (n->keys)
		fuse_lowlevel_notify_inval_inode(f->se, n->dir, 0, 0); /* the listing */
	if (n->expire)
		fence_restart_grace(f->fence, &n->fdom->fence, util_mono_ms());
}

static void *notify_main(void *arg)
{
	struct fs *f = arg;

	pthread_mutex_lock(&f->lock);
	while (!f->stopping) {
		struct fs_notify *n = f->notify_head;

		if (!n) {
			pthread_cond_wait(&f->notify_cond, &f->lock);
			continue;
		}
		f->notify_head = n->next;
		if (!f->notify_head)
			f->notify_tail = NULL;
		pthread_mutex_unlock(&f->lock);
		notify_one(f, n);
		pthread_mutex_lock(&f->lock);
		dom_put(f, n->fdom);
		free(n);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

/*
 * A new generation of d is published: readers get it from now on, but a
 * thread between the two halves of a pair keeps its generation (the fence).
 * The main mount's stable nodes get their attributes refreshed (sizes
 * change) at once; on a serving mount the cached entries are expired by the
 * notify thread, and the fence answers lookups until no reader can still
 * hold the old generation.
 */
static void mount_published(struct fs *f, struct engine_domain *d)
{
	fuse_ino_t ids[ENGINE_GEN_FILES];
	struct engine_gen *g;
	struct fs_dom *fd;
	size_t nids = 0;
	bool keys;

	pthread_mutex_lock(&f->lock);
	fd = dom_find(f, d);
	/* Read under f->lock: two publications racing each reach here, and
	 * the later one reads what the engine serves last. */
	g = fd ? engine_domain_gen(d) : NULL;
	if (!g) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	fence_rotate(f->fence, &fd->fence, g, util_mono_ms());
	keys = fd->has_key != engine_gen_has_key(g);
	fd->has_key = engine_gen_has_key(g);
	for (int k = 0; k < ENGINE_GEN_FILES; k++) {
		if (!fd->files[k])
			continue;
		if (f->serving) {
			/* The old node lives on while the kernel has it. */
			fd->old_files[k] = fd->files[k];
			fd->files[k] = NULL;
		} else {
			ids[nids++] = ino_id(f, fd->files[k]);
		}
	}
	notify_queue(f, fd, f->serving, keys);
	pthread_mutex_unlock(&f->lock);
	engine_gen_put(g);
	/* Attributes only (offset -1): takes no lock the kernel may hold for a
	 * request, so it is safe from any thread, including a FLUSH handler. */
	for (size_t n = 0; n < nids; n++)
		fuse_lowlevel_notify_inval_inode(f->se, ids[n], -1, 0);
}

/* engine_observer.published: every mount of the engine. */
static void fs_published(void *arg, struct engine_domain *d)
{
	struct fs *primary = arg;

	if (primary->readers) {
		struct engine_gen *g = engine_domain_gen(d);

		if (g)
			readers_rotate(primary->readers, engine_domain_name(d),
				       engine_gen_number(g));
		engine_gen_put(g);
	}
	for (struct fs *f = arg; f; f = f->next_mount)
		if (__atomic_load_n(&f->ready, __ATOMIC_ACQUIRE))
			mount_published(f, d);
}

/* ---- lookup ---------------------------------------------------------------------- */

/*
 * Which cache slot a rendered file of a domain (or of the root) uses, so
 * that its inode stays the same between the stat and the open of cp -a, tar
 * and rsync while its content has not changed.
 */
static int snap_slot(enum engine_file k, bool in_domain)
{
	switch (k) {
	case ENGINE_FILE_STATUS:
		return 0;
	case ENGINE_FILE_STATUS_JSON:
		return 1;
	case ENGINE_FILE_NAMES:
	case ENGINE_FILE_METRICS:
		return 2;
	case ENGINE_FILE_CA_PEM:
		return in_domain ? -1 : 3; /* root only */
	case ENGINE_FILE_CRT_LIST:
		return in_domain ? -1 : 4; /* root only */
	case ENGINE_FILE_LOG:
		return in_domain ? 3 : 5;
	default:
		return -1;
	}
}

/*
 * A new snapshot inode that takes out's bytes (moved in; freed on failure),
 * shown with mode (f->lock held). NULL when out of memory.
 */
static struct fs_inode *snapshot_new(struct fs *f, enum engine_file k, struct fs_dom *fd,
				     struct util_buf *out, mode_t mode)
{
	struct fs_inode *i = inode_new(f, FS_SNAPSHOT, k, fd);

	if (!i) {
		util_buf_free(out);
		return NULL;
	}
	util_buf_free(&i->snap);
	i->snap = *out; /* moved: the inode owns the bytes */
	/* It lives as long as the kernel caches it: keep only its bytes. */
	util_buf_shrink(&i->snap);
	i->data = i->snap.data;
	i->size = i->snap.len;
	i->st.st_mode = S_IFREG | mode;
	set_size(&i->st, i->size);
	set_times(&i->st, util_now());
	return i;
}

/*
 * A rendered status file, reused while nothing it shows can have changed:
 * the engine's state version and the minute (days_left moves with time).
 * Rendering the root's files walks every domain, and `ls -l` or a scan
 * would otherwise render them again at every lookup. Rendering happens
 * without f->lock; the reply is sent with it (the lookup count).
 */
static void lookup_snapshot(fuse_req_t req, struct fs *f, struct fs_dom *fd, enum engine_file k)
{
	struct engine_domain *d = fd ? fd->d : NULL;
	struct fs_inode *i, **slot = NULL;
	uint64_t key = 0, *slot_key = NULL;
	struct util_buf out;
	int s = snap_slot(k, fd != NULL), rc;

	if (s >= 0) {
		/* A log changes with its lines only; the status files with the
		 * engine's state and with the minute (days_left). */
		key = k == ENGINE_FILE_LOG ? util_log_version()
					   : engine_state_version(f->engine, d) * 1000003u +
						     (uint64_t)(util_now() / 60);
		/* Status shows stale readers too, whose processes may end at
		 * any time: while there are any, this key changes each time. */
		if (k != ENGINE_FILE_LOG && f->readers)
			key = key * 31u + readers_version(f->readers,
							  d ? engine_domain_name(d) : NULL) *
						  1000033u;
		pthread_mutex_lock(&f->lock);
		slot = fd ? &fd->snap[s] : &f->root_snap[s];
		slot_key = fd ? &fd->snap_key[s] : &f->root_snap_key[s];
		if (*slot && *slot_key == key) {
			reply_entry(req, f, *slot, 0);
			pthread_mutex_unlock(&f->lock);
			return;
		}
		pthread_mutex_unlock(&f->lock);
	}
	/* World-readable files, nothing secret: plain memory, which unlike
	 * secret memory is not rounded up to a power of two. */
	util_buf_init(&out, FS_RENDER_LIMIT, false);
	rc = engine_render(f->engine, d, k, &out);
	if (rc) {
		util_buf_free(&out);
		fuse_reply_err(req, -rc);
		return;
	}
	util_buf_shrink(&out);
	pthread_mutex_lock(&f->lock);
	i = snapshot_new(f, k, fd, &out, file_mode(f, k, d != NULL));
	if (!i) {
		pthread_mutex_unlock(&f->lock);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (slot) {
		*slot = i;
		*slot_key = key;
	}
	reply_entry(req, f, i, 0);
	pthread_mutex_unlock(&f->lock);
}

/*
 * File k of generation g: its bytes and length, or for bundle.pem (two
 * pieces, see engine_gen_bundle) NULL and the pieces' total length.
 */
static int gen_bytes(struct engine_gen *g, enum engine_file k, const unsigned char **data,
		     size_t *len)
{
	struct iovec part[2];
	int rc;

	if (k != ENGINE_FILE_BUNDLE)
		return engine_gen_content(g, k, data, len);
	rc = engine_gen_bundle(g, part);
	if (rc)
		return rc;
	*data = NULL;
	*len = part[0].iov_len + part[1].iov_len;
	return 0;
}

/* Stat fields of file k of generation g (size computed outside f->lock). */
static int gen_stat(struct fs *f, struct engine_gen *g, enum engine_file k, struct stat *st,
		    const unsigned char **data)
{
	size_t len;
	int rc = gen_bytes(g, k, data, &len);

	if (rc)
		return rc;
	st->st_mode = S_IFREG | file_mode(f, k, true);
	st->st_nlink = 1;
	st->st_uid = f->uid;
	st->st_gid = f->gid;
	st->st_blksize = 4096;
	set_size(st, len);
	set_times(st, engine_gen_created(g));
	return 0;
}

/* Fill in a file node's attributes (f->lock held). */
static void gen_inode_set(struct fs *f, struct fs_inode *i, const struct stat *st)
{
	i->st = *st;
	if (is_key_file(i->file))
		apply_key_owner(f, i);
	i->size = (size_t)st->st_size;
}

/*
 * Main mount: the stable node of file k, with the current generation's
 * attributes. Which generation an open reads is decided at the open.
 */
static void lookup_file_main(fuse_req_t req, struct fs *f, struct fs_dom *fd, enum engine_file k)
{
	struct engine_gen *g = fence_current(f->fence, &fd->fence);
	const unsigned char *data;
	struct fs_inode *i;
	struct stat st;
	int rc;

	memset(&st, 0, sizeof(st));
	rc = gen_stat(f, g, k, &st, &data);
	engine_gen_put(g);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	pthread_mutex_lock(&f->lock);
	i = fd->files[k];
	if (!i && (i = inode_new(f, FS_GEN_FILE, k, fd)))
		fd->files[k] = i;
	if (i) {
		gen_inode_set(f, i, &st);
		reply_entry(req, f, i, CACHE_FOREVER);
	} else {
		fuse_reply_err(req, ENOMEM);
	}
	pthread_mutex_unlock(&f->lock);
}

/*
 * Serving mount: the immutable node of file k of the generation the fence
 * picks for this thread, cached by the kernel unless a fence is running.
 */
static void lookup_file_serving(fuse_req_t req, struct fs *f, struct fs_dom *fd,
				enum engine_file k)
{
	bool cacheable = true;
	uint64_t rotations = fence_rotations(f->fence, &fd->fence);
	struct engine_gen *g = fence_pick(f->fence, &fd->fence, req_tid(req), pair_index(k),
					  util_mono_ms(), &cacheable);
	struct engine_gen *cur = fence_current(f->fence, &fd->fence);
	const unsigned char *data = NULL;
	struct fs_inode *i = NULL, **slot;
	struct stat st;
	int rc;

	memset(&st, 0, sizeof(st));
	rc = gen_stat(f, g, k, &st, &data);
	if (rc) {
		fuse_reply_err(req, -rc);
		goto out;
	}
	pthread_mutex_lock(&f->lock);
	slot = g == cur ? &fd->files[k] : &fd->old_files[k];
	if (*slot && (*slot)->gen == g)
		i = *slot;
	if (!i && (i = inode_new(f, FS_GEN_FILE, k, fd))) {
		i->gen = engine_gen_get(g);
		i->data = data;
		gen_inode_set(f, i, &st);
		*slot = i;
	}
	if (i)
		reply_entry(req, f, i, cacheable ? CACHE_FOREVER : 0);
	else
		fuse_reply_err(req, ENOMEM);
	/*
	 * A rotation between the pick and the reply: its expiry may reach the
	 * kernel before the entry we just cached for a day. Expire again (and
	 * restart grace), so no old entry outlives the rotation.
	 */
	if (i && cacheable && fence_rotations(f->fence, &fd->fence) != rotations)
		notify_queue(f, fd, true, false);
	pthread_mutex_unlock(&f->lock);
out:
	engine_gen_put(g);
	engine_gen_put(cur);
}

/* A domain directory's node (f->lock held). */
static struct fs_inode *dir_inode(struct fs *f, struct fs_dom *fd)
{
	struct fs_inode *i = fd->dir;

	if (i)
		return i;
	i = inode_new(f, FS_DIR, ENGINE_FILE_COUNT, fd);
	if (!i)
		return NULL;
	i->st.st_mode = S_IFDIR | 0755;
	i->st.st_nlink = 2;
	set_times(&i->st, engine_domain_created(fd->d));
	fd->dir = i;
	return i;
}

static void lookup_domain(fuse_req_t req, struct fs *f, const char *name, double timeout)
{
	struct engine_domain *d = engine_domain_get(f->engine, name);
	struct engine_gen *g;
	struct fs_inode *i = NULL;
	struct fs_dom *fd;

	if (!d) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	/* Loads the generation from the store on first use, before f->lock. */
	g = engine_domain_gen(d);
	engine_gen_put(g);
	pthread_mutex_lock(&f->lock);
	fd = dom_get(f, d);
	if (fd)
		i = dir_inode(f, fd);
	if (i)
		reply_entry(req, f, i, timeout);
	else
		fuse_reply_err(req, g ? ENOMEM : EIO);
	pthread_mutex_unlock(&f->lock);
	engine_domain_put(d);
}

/*
 * .well-known/acme-challenge/TOKEN (a pending http-01 token: the web server
 * serving the mount's root answers the CA from here) and haproxy/DOMAIN.pem
 * (the served key and chain, for haproxy's `crt DIR`). Both are snapshots
 * made at each lookup (entry timeout 0), so an open reads one moment's
 * bytes whole; they are rendered without f->lock.
 */
static void lookup_well_known(fuse_req_t req, struct fs *f, struct fs_inode *p, const char *name)
{
	bool crt = p == &f->crt_dir;
	struct util_buf out;
	struct fs_inode *i;
	mode_t mode = 0444;
	uid_t uid;
	gid_t gid;
	int rc;

	if (p == &f->wk && !strcmp(name, "acme-challenge")) {
		pthread_mutex_lock(&f->lock);
		reply_entry(req, f, &f->wk_acme, CACHE_FOREVER);
		pthread_mutex_unlock(&f->lock);
		return;
	}
	if (p != &f->wk_acme && !crt) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	util_buf_init(&out, FS_RENDER_LIMIT, crt); /* a key is wiped when freed */
	rc = crt ? engine_crt_view_get(f->engine, name, &out)
		 : engine_challenge_get(f->engine, name, &out);
	if (rc) {
		util_buf_free(&out);
		fuse_reply_err(req, rc == -ENOMEM ? ENOMEM : ENOENT);
		return;
	}
	if (crt)
		engine_key_owner(f->engine, &uid, &gid, &mode);
	pthread_mutex_lock(&f->lock);
	i = snapshot_new(f, ENGINE_FILE_COUNT, NULL, &out, mode);
	if (i) {
		if (crt) {
			i->st.st_uid = uid;
			i->st.st_gid = gid;
		}
		reply_entry(req, f, i, 0);
	} else {
		fuse_reply_err(req, ENOMEM);
	}
	pthread_mutex_unlock(&f->lock);
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *f = req_fs(req);
	struct fs_inode *p = ino_get(f, parent), *i;
	enum engine_file k;

	if (p->kind == FS_WK_DIR) {
		lookup_well_known(req, f, p, name);
		return;
	}
	if (p->kind == FS_ROOT) {
		if (!strcmp(name, FS_CRT_DIR)) {
			pthread_mutex_lock(&f->lock);
			reply_entry(req, f, &f->crt_dir, CACHE_FOREVER);
			pthread_mutex_unlock(&f->lock);
			return;
		}
		if (!strcmp(name, ".well-known")) {
			pthread_mutex_lock(&f->lock);
			reply_entry(req, f, &f->wk, CACHE_FOREVER);
			pthread_mutex_unlock(&f->lock);
			return;
		}
		k = engine_file_lookup(name, true);
		if (k == ENGINE_FILE_COUNT)
			/* A name that case folding found is not cached under it. */
			lookup_domain(req, f, name, engine_name_folds(name) ? 0 : CACHE_FOREVER);
		else
			lookup_snapshot(req, f, NULL, k);
		return;
	}
	if (p->kind != FS_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	k = engine_file_lookup(name, false);
	if (k == ENGINE_FILE_COUNT) {
		fuse_reply_err(req, ENOENT);
	} else if (k < ENGINE_GEN_FILES) {
		if (f->serving)
			lookup_file_serving(req, f, p->fdom, k);
		else
			lookup_file_main(req, f, p->fdom, k);
	} else if (k == ENGINE_FILE_REQUEST_CSR || k == ENGINE_FILE_PASSPHRASE) {
		pthread_mutex_lock(&f->lock);
		i = inode_new(f, FS_CONTROL, k, p->fdom);
		if (i) {
			i->st.st_mode = S_IFREG | file_mode(f, k, true);
			set_times(&i->st, engine_domain_created(p->fdom->d));
			reply_entry(req, f, i, 0);
		} else {
			fuse_reply_err(req, ENOMEM);
		}
		pthread_mutex_unlock(&f->lock);
	} else {
		lookup_snapshot(req, f, p->fdom, k);
	}
}

static void forget_one(struct fs *f, fuse_ino_t ino, uint64_t n)
{
	struct fs_inode *i = ino_get(f, ino);

	if (i == &f->root || i == &f->wk || i == &f->wk_acme || i == &f->crt_dir)
		return; /* part of the mount object */
	i->nlookup = i->nlookup > n ? i->nlookup - n : 0;
	if (!i->nlookup)
		inode_free(f, i);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs *f = req_fs(req);

	pthread_mutex_lock(&f->lock);
	forget_one(f, ino, nlookup);
	pthread_mutex_unlock(&f->lock);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *f = req_fs(req);

	pthread_mutex_lock(&f->lock);
	for (size_t n = 0; n < count; n++)
		forget_one(f, forgets[n].ino, forgets[n].nlookup);
	pthread_mutex_unlock(&f->lock);
	fuse_reply_none(req);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *f = req_fs(req);
	struct fs_inode *i = ino_get(f, ino);
	struct stat st;

	(void)fi;
	if (i->kind == FS_GEN_FILE && !i->gen) {
		/* A stable node: the current generation's attributes. */
		struct engine_gen *g = fence_current(f->fence, &i->fdom->fence);
		const unsigned char *data;
		int rc;

		memset(&st, 0, sizeof(st));
		rc = gen_stat(f, g, i->file, &st, &data);
		engine_gen_put(g);
		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
		pthread_mutex_lock(&f->lock);
		gen_inode_set(f, i, &st);
		st = i->st;
		pthread_mutex_unlock(&f->lock);
	} else {
		pthread_mutex_lock(&f->lock);
		st = i->st;
		pthread_mutex_unlock(&f->lock);
	}
	st.st_ino = ino;
	fuse_reply_attr(req, &st, CACHE_FOREVER);
}

/* ---- directories --------------------------------------------------------------- */

/* The sorted domain list, copied only when the tree changed. */
static void names_refresh(struct fs *f)
{
	uint64_t v = engine_version(f->engine);

	if (f->names_valid && f->names_version == v)
		return;
	engine_names_free(f->names, f->nnames);
	f->names_version = v;
	f->nnames = engine_names(f->engine, &f->names);
	f->names_valid = true;
}

/*
 * The inode number a directory entry shows. Node ids are made at lookup, so
 * readdir cannot give the real one; any number will do but 0, which glibc's
 * readdir() takes for a deleted entry and silently skips.
 */
static ino_t dirent_ino(const char *name)
{
	uint64_t h = 1469598103934665603ull;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return (ino_t)(h | 1);
}

/* A directory listing being filled; full once an entry does not fit. */
struct listing {
	fuse_req_t req;
	char *buf;
	size_t size, used;
	off_t off, idx;
	bool full;
};

static void listing_add(struct listing *l, const char *name, mode_t mode)
{
	struct stat st;
	size_t need;

	l->idx++;
	if (l->full || l->idx <= l->off)
		return;
	memset(&st, 0, sizeof(st));
	st.st_ino = dirent_ino(name);
	st.st_mode = mode;
	need = fuse_add_direntry(l->req, l->buf + l->used, l->size - l->used, name, &st, l->idx);
	if (need > l->size - l->used)
		l->full = true;
	else
		l->used += need;
}

static void list_root(struct fs *f, struct listing *l)
{
	static const enum engine_file root_files[] = {
		ENGINE_FILE_STATUS, ENGINE_FILE_STATUS_JSON, ENGINE_FILE_METRICS,
		ENGINE_FILE_CA_PEM, ENGINE_FILE_CRT_LIST, ENGINE_FILE_LOG};

	for (size_t r = 0; r < sizeof(root_files) / sizeof(root_files[0]); r++)
		if (engine_root_file_exists(f->engine, root_files[r]))
			listing_add(l, engine_file_name(root_files[r]), S_IFREG);
	/* haproxy/ (like .well-known) is reached by name but not listed: its
	 * files are snapshots made at each lookup, which cp -a and tar of the
	 * whole mount would take as replaced while copied, and it repeats
	 * every domain's key. */
	pthread_mutex_lock(&f->names_lock);
	names_refresh(f);
	for (size_t d = 0; d < f->nnames && !l->full; d++)
		listing_add(l, f->names[d], S_IFDIR);
	pthread_mutex_unlock(&f->names_lock);
}

static void list_domain(struct fs_inode *i, struct listing *l)
{
	struct engine_gen *g = engine_domain_gen(i->fdom->d);
	bool key = g && engine_gen_has_key(g);

	engine_gen_put(g);
	for (int k = 0; k <= ENGINE_FILE_PASSPHRASE; k++) {
		if (!key && is_key_file((enum engine_file)k))
			continue;
		/* Write-only files take writes but are not listed, so cp -r,
		 * tar and rsync copy what can be read. */
		if (k == ENGINE_FILE_REQUEST_CSR || k == ENGINE_FILE_PASSPHRASE)
			continue;
		listing_add(l, engine_file_name((enum engine_file)k), S_IFREG);
	}
	listing_add(l, engine_file_name(ENGINE_FILE_LOG), S_IFREG);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs *f = req_fs(req);
	struct fs_inode *i = ino_get(f, ino);
	struct listing l = {.req = req, .size = size, .off = off};

	(void)fi;
	if (i->kind != FS_ROOT && i->kind != FS_DIR && i->kind != FS_WK_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	l.buf = malloc(size);
	if (!l.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	listing_add(&l, ".", S_IFDIR);
	listing_add(&l, "..", S_IFDIR);
	if (i == &f->wk) {
		listing_add(&l, "acme-challenge", S_IFDIR);
	} else if (i == &f->wk_acme || i == &f->crt_dir) {
		char **tokens;
		size_t nt = i == &f->crt_dir ? engine_crt_view_names(f->engine, &tokens)
					      : engine_challenge_tokens(f->engine, &tokens);

		for (size_t t = 0; t < nt; t++)
			listing_add(&l, tokens[t], S_IFREG);
		engine_names_free(tokens, nt);
	} else if (i->kind == FS_ROOT) {
		list_root(f, &l);
	} else {
		list_domain(i, &l);
	}
	fuse_reply_buf(req, l.buf, l.used);
	free(l.buf);
}

/*
 * Directory listings may be cached by the kernel: it drops its copy itself
 * after a mkdir or rmdir through the mount, and we drop it when a domain's
 * key files come or go.
 */
static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs *f = req_fs(req);
	char canon[256];
	int rc;

	(void)mode;
	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, EPERM);
		return;
	}
	rc = engine_mkdir(f->engine, name, canon, sizeof(canon));
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* A folded name ("EXAMPLE.COM") must not stay cached under the name
	 * the caller typed: the directory is known by its canonical name. */
	lookup_domain(req, f, canon, strcmp(canon, name) ? 0 : CACHE_FOREVER);
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *f = req_fs(req);
	int rc;

	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	/* fs's state for the domain lives on while the kernel holds its
	 * nodes: open files keep reading what they opened. */
	rc = engine_rmdir(f->engine, name);
	if (!rc && f->readers)
		readers_forget(f->readers, name);
	fuse_reply_err(req, -rc);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *f = req_fs(req);
	struct fs_inode *p = ino_get(f, parent);
	enum engine_file k = engine_file_lookup(name, false);
	int rc;

	if (p->kind != FS_DIR || k == ENGINE_FILE_COUNT) {
		fuse_reply_err(req, p->kind == FS_ROOT ? EPERM : ENOENT);
		return;
	}
	/* Removing the certificate removes an upload; the managed certificate
	 * is published through the same path as any rotation. The other files
	 * are views of the generation: removing them changes nothing but
	 * succeeds, so `rm -r DOMAIN` reaches rmdir. */
	rc = engine_unlink(f->engine, p->fdom->d, k);
	fuse_reply_err(req, -rc);
}

/* ---- files ------------------------------------------------------------------------ */

/* A new open file of i, on the mount's list; replies ENOMEM on failure. */
static struct fs_handle *handle_new(fuse_req_t req, struct fs *f, struct fs_inode *i, bool writer)
{
	struct fs_handle *h = calloc(1, sizeof(*h));

	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	atomic_init(&h->refs, 1);
	h->writer = writer;
	h->dom = i->fdom ? engine_domain_ref(i->fdom->d) : NULL;
	h->file = i->file;
	util_buf_init(&h->buf, writer ? ENGINE_UPLOAD_MAX : 0, true);
	h->fs = f;
	pthread_mutex_lock(&f->handles_lock);
	h->next = f->handles;
	if (f->handles)
		f->handles->prev = h;
	f->handles = h;
	pthread_mutex_unlock(&f->handles_lock);
	return h;
}

static void handle_free(struct fs_handle *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->fs->handles_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		h->fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&h->fs->handles_lock);
	engine_domain_put(h->dom);
	engine_gen_put(h->gen);
	util_buf_free(&h->buf);
	free(h);
}

/* Drop a reference to a handle (RELEASE holds one, a READ in flight one). */
static void handle_put(struct fs_handle *h)
{
	if (h && atomic_fetch_sub(&h->refs, 1) == 1)
		handle_free(h);
}

/*
 * A reader of a main-mount file: the fence picks the generation for this
 * thread, and the open file reads it to the end (direct_io: the pages of a
 * stable node would mix generations), whatever rotates meanwhile.
 */
static void open_reader(fuse_req_t req, struct fs *f, struct fs_inode *i,
			struct fuse_file_info *fi)
{
	struct fs_handle *h;
	size_t len;
	int rc;

	if (i->kind != FS_GEN_FILE) {
		/* Snapshots never change under their node: cache them. */
		fi->keep_cache = 1;
		fi->noflush = 1;
		fuse_reply_open(req, fi);
		return;
	}
	h = handle_new(req, f, i, false);
	if (!h)
		return;
	h->gen = fence_pick(f->fence, &i->fdom->fence, req_tid(req), pair_index(i->file),
			    util_mono_ms(), NULL);
	rc = gen_bytes(h->gen, i->file, &h->data, &len);
	if (rc) {
		handle_free(h);
		fuse_reply_err(req, -rc);
		return;
	}
	h->size = len;
	if (f->readers)
		readers_note(f->readers, engine_domain_name(i->fdom->d), engine_gen_number(h->gen),
			     fuse_req_ctx(req)->pid);
	fi->direct_io = 1;
	fi->noflush = 1;
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_open(req, fi) == -ENOENT)
		handle_free(h);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *f = req_fs(req);
	struct fs_inode *i = ino_get(f, ino);
	struct fs_handle *h;

	if (i->kind == FS_ROOT || i->kind == FS_DIR || i->kind == FS_WK_DIR) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) == O_RDONLY) {
		if (i->kind == FS_CONTROL)
			fuse_reply_err(req, EACCES);
		else
			open_reader(req, f, i, fi);
		return;
	}
	if (!writable(i->file, i->fdom != NULL)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	h = handle_new(req, f, i, true);
	if (!h)
		return;
	fs_note_open(f, h, ino, fuse_req_ctx(req)->pid);
	/* Written bytes go to the handle, never to a page cache. */
	fi->direct_io = 1;
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_open(req, fi) == -ENOENT)
		handle_free(h);
}

/* Reply with [off, off + size) of the pieces (an empty reply past their end). */
static void reply_pieces(fuse_req_t req, const struct iovec *part, int nparts, size_t size,
			 off_t off)
{
	struct iovec out[2];
	size_t skip = (size_t)off;
	int n = 0;

	for (int k = 0; off >= 0 && k < nparts && size > 0; k++) {
		size_t take;

		if (skip >= part[k].iov_len) {
			skip -= part[k].iov_len;
			continue;
		}
		take = part[k].iov_len - skip;
		if (take > size)
			take = size;
		out[n].iov_base = (char *)part[k].iov_base + skip;
		out[n].iov_len = take;
		n++;
		size -= take;
		skip = 0;
	}
	if (n == 0)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_iov(req, out, n);
}

/* A read of file k of generation g, whose bytes are data (NULL: bundle.pem). */
static void reply_gen(fuse_req_t req, struct engine_gen *g, enum engine_file k,
		      const unsigned char *data, size_t len, size_t size, off_t off)
{
	struct iovec part[2];

	if (!data && g && k == ENGINE_FILE_BUNDLE && !engine_gen_bundle(g, part)) {
		reply_pieces(req, part, 2, size, off);
		return;
	}
	part[0].iov_base = (void *)data;
	part[0].iov_len = data ? len : 0;
	reply_pieces(req, part, 1, size, off);
}

/*
 * Reads of a node's own bytes (a serving mount's generation file, a
 * snapshot): the kernel may forget the node as soon as our reply has been
 * copied, before the reply call returns here. A generation node's bytes
 * belong to its generation, held for the reply; a snapshot's belong to the
 * node, so the slice asked for is replied from a copy (in secret memory:
 * the haproxy view holds keys).
 */
static void reply_node_gen(fuse_req_t req, struct fs_inode *i, size_t size, off_t off)
{
	struct engine_gen *g = engine_gen_get(i->gen);

	reply_gen(req, g, i->file, i->data, i->size, size, off);
	engine_gen_put(g);
}

static void reply_snapshot(fuse_req_t req, struct fs_inode *i, size_t size, off_t off)
{
	size_t n;
	void *copy;

	if (off < 0 || (size_t)off >= i->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	n = i->size - (size_t)off < size ? i->size - (size_t)off : size;
	copy = util_secret_alloc(n);
	if (!copy) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(copy, i->data + off, n);
	fuse_reply_buf(req, copy, n);
	util_secret_free(copy);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *f = req_fs(req);
	struct fs_inode *i = ino_get(f, ino);
	struct fs_handle *h = fi ? (struct fs_handle *)(uintptr_t)fi->fh : NULL;

	if (i->kind == FS_ROOT || i->kind == FS_DIR || i->kind == FS_WK_DIR) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (h && !h->writer) {
		/* The reader may close the file as soon as the kernel has
		 * copied our reply, before writev returns here, and RELEASE
		 * then runs on another thread: the read holds the handle. */
		atomic_fetch_add(&h->refs, 1);
		reply_gen(req, h->gen, h->file, h->data, h->size, size, off);
		handle_put(h);
	}
	else if (h)
		fuse_reply_buf(req, NULL, 0); /* a writer reads nothing back */
	else if (i->gen)
		reply_node_gen(req, i, size, off);
	else
		reply_snapshot(req, i, size, off);
}

static int handle_resize(struct fs_handle *h, size_t len)
{
	static const unsigned char zeros[4096];

	if (len < h->buf.len) {
		util_wipe(h->buf.data + len, h->buf.len - len);
		h->buf.len = len;
		return 0;
	}
	while (h->buf.len < len) {
		size_t n = len - h->buf.len;
		int rc = util_buf_append(&h->buf, zeros, n < sizeof(zeros) ? n : sizeof(zeros));

		if (rc)
			return rc;
	}
	return 0;
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	int rc;

	(void)ino;
	if (!h || !h->writer) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (off < 0 || (size_t)off > ENGINE_UPLOAD_MAX || size > ENGINE_UPLOAD_MAX - (size_t)off) {
		h->error = EFBIG;
		fuse_reply_err(req, EFBIG);
		return;
	}
	rc = handle_resize(h, (size_t)off > h->buf.len ? (size_t)off : h->buf.len);
	if (!rc && (size_t)off + size > h->buf.len)
		rc = handle_resize(h, (size_t)off + size);
	if (rc) {
		h->error = -rc;
		fuse_reply_err(req, -rc);
		return;
	}
	memcpy(h->buf.data + off, data, size);
	/* libfuse reuses its request buffer: no uploaded key may stay behind there. */
	util_wipe((void *)data, size);
	h->dirty = true;
	pthread_mutex_lock(&h->fs->handles_lock);
	h->wrote = true;
	pthread_mutex_unlock(&h->fs->handles_lock);
	fuse_reply_write(req, size);
}

/*
 * Was the writer killed? Its last FLUSH comes from inside the kernel's
 * do_exit(), after the task's exit code is set: /proc/TID/stat then shows
 * PF_EXITING in the flags (field 9) and the killing signal in exit_code
 * (field 52). A process that exits normally has a zero signal part, and one
 * that closes the file itself is not exiting at all. Returns the signal, or 0.
 */
static int writer_killed_by(pid_t tid)
{
	char path[64], buf[2048];
	unsigned long flags = 0;
	long code = 0;
	char *p;
	int field;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)tid);
	fp = fopen(path, "re");
	if (!fp)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (!p)
		return 0;
	/* After ") " come field 3 (state) onwards. */
	for (field = 3, p += 2; *p && field < 52; field++) {
		if (field == 9)
			flags = strtoul(p, NULL, 10);
		p = strchr(p, ' ');
		if (!p)
			return 0;
		p++;
	}
	if (field == 52)
		code = strtol(p, NULL, 10);
	if (!(flags & 0x4)) /* PF_EXITING */
		return 0;
	return (int)(code & 0x7f);
}

struct upload_job {
	struct fs *f;
	fuse_req_t req;
	struct fs_handle *h; /* reference */
};

/* On the judging pool: the verdict on h's bytes answers the FLUSH req. */
static void upload_judged(void *arg, bool cancelled)
{
	struct upload_job *u = arg;
	struct fs_handle *h = u->h;
	char why[512] = "";
	int rc = -ECANCELED;

	/* A writer that gave up waiting (killed in close) is not judged. */
	if (!cancelled && fuse_req_interrupted(u->req)) {
		rc = -EINTR;
		util_info("fs: %s/%s: its writer stopped waiting; not judged",
			  engine_domain_name(h->dom), engine_file_name(h->file));
	} else if (!cancelled) {
		rc = engine_write(u->f->engine, h->dom, h->file, h->buf.data, h->buf.len, why,
				  sizeof(why));
		if (rc)
			util_info("fs: %s/%s: write refused: %s", engine_domain_name(h->dom),
				  engine_file_name(h->file), why);
	}
	h->dirty = false;
	fuse_reply_err(u->req, -rc);
	handle_put(h);
	free(u);
}

/* Queue h's upload for judging; 0 when req will be answered from there. */
static int upload_judge(struct fs *f, fuse_req_t req, struct fs_handle *h)
{
	struct upload_job *u = calloc(1, sizeof(*u));
	int rc;

	if (!u || !f->judge) {
		free(u);
		return -ENOMEM;
	}
	u->f = f;
	u->req = req;
	u->h = h;
	atomic_fetch_add(&h->refs, 1);
	rc = judge_submit(f->judge, upload_judged, u);
	if (rc) {
		handle_put(h);
		free(u);
	}
	return rc;
}

/*
 * close(2) of a writer: the upload is judged whole and the verdict is what
 * close returns. A FLUSH from a writer being killed (or from a killed child
 * that inherited the descriptor) judges nothing: whatever it wrote may be a
 * prefix that happens to parse, and a live process holding the same open
 * file may still finish and close it. What no close ever judged is refused
 * at RELEASE.
 */
static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *f = req_fs(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	char why[512] = "";
	int rc = 0, sig;

	(void)ino;
	if (!h || !h->writer) {
		fuse_reply_err(req, 0);
		return;
	}
	if (!h->dirty && h->dom && fs_empty_open(f, h)) {
		/*
		 * `cp /dev/null F`, `: > F`: truncated, nothing written. FUSE
		 * does not say which close is an open file's last (a shell
		 * redirection closes a first descriptor before its command
		 * writes into the second), so the empty write is judged when
		 * the open file is released; each close answers now what that
		 * verdict will be, and a close followed by writes is no upload.
		 * A writer killed before it wrote (`cat > passphrase`, then
		 * ^C) meant no empty write: nothing is judged then.
		 */
		h->empty_flushed = !writer_killed_by(fuse_req_ctx(req)->pid);
		if (h->empty_flushed)
			h->empty_seen = engine_domain_writes(h->dom);
		fuse_reply_err(req, engine_empty_write_ok(h->file) ? 0 : EINVAL);
		return;
	}
	if (!h->dom) {
		/* MOUNT/status: judged like a domain's, for every domain. */
		rc = h->error ? -h->error
			      : h->dirty ? engine_renew_all(f->engine, h->buf.data, h->buf.len, why,
							    sizeof(why))
					 : 0;
		h->dirty = false;
		fuse_reply_err(req, -rc);
		return;
	}
	if (h->error == EFBIG) {
		engine_write_refused(h->dom, h->file, "larger than 1 MiB");
		rc = -EFBIG;
	} else if (h->error) {
		rc = -h->error;
	} else if (h->dirty && (sig = writer_killed_by(fuse_req_ctx(req)->pid))) {
		util_info("fs: %s/%s: a writer was killed (signal %d) before closing the file; "
			  "not judged", engine_domain_name(h->dom), engine_file_name(h->file), sig);
		rc = -EIO;
		fuse_reply_err(req, -rc);
		return;
	} else if (h->dirty) {
		/* Answered from the judging pool: a costly upload must not
		 * hold a FUSE thread that other readers need. */
		if (!upload_judge(f, req, h))
			return;
		rc = -ENOMEM;
	}
	h->dirty = false;
	fuse_reply_err(req, -rc);
}

/* On the judging pool: the empty write of released handle h (a reference). */
static void empty_judged(void *arg, bool cancelled)
{
	struct fs_handle *h = arg;
	char why[512] = "";

	if (!cancelled && engine_write_empty(h->fs->engine, h->dom, h->file, h->empty_seen, why,
					     sizeof(why)))
		util_info("fs: %s/%s: write refused: %s", engine_domain_name(h->dom),
			  engine_file_name(h->file), why);
	handle_put(h);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	struct fs *f = req_fs(req);

	(void)ino;
	if (h && h->writer && h->dom && h->empty_flushed && !h->dirty && fs_empty_open(f, h)) {
		/* Closed with nothing written, and now released: the empty
		 * write each close answered (see fs_flush) is judged, on the
		 * pool, since another write of the domain may be judged now. */
		atomic_fetch_add(&h->refs, 1);
		if (!f->judge || judge_submit(f->judge, empty_judged, h))
			handle_put(h);
	} else if (h && h->writer && h->dirty && h->dom) {
		engine_write_refused(h->dom, h->file,
				     "the writer was killed before closing the file; nothing "
				     "was changed");
		util_info("fs: %s/%s: upload dropped: its writer was killed",
			  engine_domain_name(h->dom), engine_file_name(h->file));
	}
	handle_put(h);
	fuse_reply_err(req, 0);
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *f = req_fs(req);
	struct fs_inode *i = ino_get(f, ino);
	struct fs_handle *h = fi ? (struct fs_handle *)(uintptr_t)fi->fh : NULL;
	struct stat st;

	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		/* Modes and owners come from the configuration. */
		fuse_reply_err(req, EPERM);
		return;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && h && h->writer) {
		if (attr->st_size < 0 || (size_t)attr->st_size > ENGINE_UPLOAD_MAX) {
			fuse_reply_err(req, EFBIG);
			return;
		}
		if (handle_resize(h, (size_t)attr->st_size)) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	/* Without a writer's handle (open with O_TRUNC, truncate(1)) a size
	 * change is answered with the size unchanged: what a writer sends is
	 * judged when it closes. */
	if ((to_set & FUSE_SET_ATTR_SIZE) && !attr->st_size) {
		/* ftruncate(fd, 0) empties the handle itself. */
		if (h && h->writer)
			h->dirty = true;
		fs_note_truncate(f, ino, h && h->writer ? h : NULL, fuse_req_ctx(req)->pid);
	}
	/* Times are accepted and ignored, so `touch` works. */
	pthread_mutex_lock(&f->lock);
	st = i->st;
	pthread_mutex_unlock(&f->lock);
	st.st_ino = ino;
	fuse_reply_attr(req, &st, CACHE_FOREVER);
}

/*
 * The tree's names are fixed: no new files, links, nodes or renames. One
 * clear EPERM for all of them (libfuse would answer ENOSYS, "Function not
 * implemented"), so an editor that saves through a temporary file and a
 * rename fails at once and can fall back to writing in place.
 */
static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	fuse_reply_err(req, EPERM);
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)fi;
	fuse_reply_err(req, EPERM);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, EPERM);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	(void)flags;
	fuse_reply_err(req, EPERM);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *f = req_fs(req);
	struct statvfs sv;

	(void)ino;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_namemax = 255;
	sv.f_files = engine_count(f->engine);
	fuse_reply_statfs(req, &sv);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *f = userdata;

	/* A serving mount's nodes never change content, and a main mount's
	 * files are read through their open file: mtime-driven page cache
	 * invalidation would only cost reads. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	/*
	 * With atomic O_TRUNC the kernel would set the size of the node a
	 * writer opens to 0 for every reader. Without it the kernel asks with
	 * SETATTR first, and we answer with the size unchanged: a writer's
	 * bytes go to its handle.
	 */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	__atomic_store_n(&f->ready, true, __ATOMIC_RELEASE);
}

static const struct fuse_lowlevel_ops fs_ops_rw = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.setattr = fs_setattr,
	.mkdir = fs_mkdir,
	.rmdir = fs_rmdir,
	.unlink = fs_unlink,
	.mknod = fs_mknod,
	.create = fs_create,
	.symlink = fs_symlink,
	.link = fs_link,
	.rename = fs_rename,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.release = fs_release,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.statfs = fs_statfs,
};

/*
 * Serving mounts: OPEN and OPENDIR are answered ENOSYS (libfuse would
 * answer them itself, with no caching flags, if the handlers were missing)
 * and FLUSH is not implemented. The kernel remembers all three and from
 * then on treats every file as kept in the page cache and every directory
 * listing as cacheable: opening and closing a cached file costs no request.
 */
static void fs_enosys_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS);
}

static const struct fuse_lowlevel_ops fs_ops_ro = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.open = fs_enosys_open,
	.opendir = fs_enosys_open,
	.read = fs_read,
	.readdir = fs_readdir,
	.statfs = fs_statfs,
};

/* ---- the mount object ----------------------------------------------------------------- */

/* engine_observer.stale_readers: from the readers the main mount saw. */
static size_t fs_stale_readers(void *arg, struct engine_domain *d, uint64_t cur,
			       struct engine_stale_reader *out, size_t max)
{
	struct fs *f = arg;
	struct readers_stale *rs = max ? calloc(max, sizeof(*rs)) : NULL;
	size_t n;

	if (!rs)
		max = 0;
	n = readers_stale(f->readers, engine_domain_name(d), cur, rs, max);
	for (size_t i = 0; i < n && i < max; i++) {
		out[i].pid = rs[i].id.pid;
		snprintf(out[i].command, sizeof(out[i].command), "%s", rs[i].id.comm);
		snprintf(out[i].exe, sizeof(out[i].exe), "%s", rs[i].id.exe);
		out[i].generation = rs[i].gen;
		out[i].since = rs[i].since;
	}
	free(rs);
	return n;
}

static int readers_setup(struct fs *f, const struct fs_options *o)
{
	struct readers_config rc = {
		.per_domain = FS_READERS_PER_DOMAIN,
		.total = FS_READERS_TOTAL,
		.tid_ttl_ms = FS_READERS_TID_TTL_MS,
	};

	if (o->primary) {
		f->readers = o->primary->readers;
		return 0;
	}
	/* A mount that never sees opens has nothing to note. */
	if (o->serving || !o->track_readers)
		return 0;
	f->owns_readers = true;
	return readers_new(&rc, &readers_proc_ops, &f->readers);
}

int fs_new(struct engine *e, const struct fs_options *o, struct fuse_args *args,
	   struct fs **out)
{
	struct fence_config fcfg = {
		.pair_ms = FS_PAIR_MS,
		.forget_ms = FS_PAIR_FORGET_MS,
		.grace_ms = o->serving ? FS_GRACE_MS : 0,
		.retry_ms = o->serving ? FS_RETRY_MS : 0,
		.max_records = FS_FENCE_RECORDS,
		.gen_ref = gen_ref,
		.gen_unref = gen_unref,
	};
	struct engine_observer obs = {0};
	struct fs *f;
	int rc;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	rc = fence_new(&fcfg, &f->fence);
	if (rc) {
		free(f);
		return rc;
	}
	rc = readers_setup(f, o);
	if (rc) {
		fence_free(f->fence);
		free(f);
		return rc;
	}
	f->engine = e;
	f->serving = o->serving;
	f->uid = getuid();
	f->gid = getgid();
	f->started = util_now();
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->names_lock, NULL);
	pthread_mutex_init(&f->handles_lock, NULL);
	pthread_cond_init(&f->notify_cond, NULL);
	f->root.kind = FS_ROOT;
	f->root.st.st_mode = S_IFDIR | 0755;
	f->root.st.st_nlink = 2;
	f->root.st.st_blksize = 4096;
	f->root.st.st_uid = f->uid;
	f->root.st.st_gid = f->gid;
	set_times(&f->root.st, f->started);
	f->wk = f->root;
	f->wk.kind = FS_WK_DIR;
	f->wk_acme = f->wk;
	f->crt_dir = f->wk;

	/* The kernel enforces the modes we report: without this, allow_other
	 * would let every local user read private keys. */
	if (fuse_opt_add_arg(args, "-odefault_permissions")) {
		fs_free(f);
		return -ENOMEM;
	}
	f->se = fuse_session_new(args, o->serving ? &fs_ops_ro : &fs_ops_rw,
				 sizeof(struct fuse_lowlevel_ops), f);
	if (!f->se) {
		fs_free(f);
		return -EINVAL;
	}
	if (o->serving)
		engine_set_deploy_delay(e, FS_GRACE_MS + 500);
	if (o->primary) {
		/* The primary mount's observer tells every mount of the engine. */
		f->next_mount = o->primary->next_mount;
		o->primary->next_mount = f;
	} else {
		obs.arg = f;
		obs.published = fs_published;
		obs.names_changed = fs_names_changed;
		obs.stale_readers = f->readers ? fs_stale_readers : NULL;
		engine_set_observer(e, &obs);
	}
	*out = f;
	return 0;
}

struct fuse_session *fs_session(struct fs *f)
{
	return f->se;
}

int fs_start(struct fs *f)
{
	int rc;

	if (!f->serving) {
		rc = judge_new(FS_JUDGE_THREADS, &f->judge);
		if (rc)
			return rc;
	}
	rc = pthread_create(&f->notify_thread, NULL, notify_main, f);
	if (rc)
		return -rc;
	f->notify_running = true;
	return 0;
}

void fs_stop_judging(struct fs *f)
{
	struct judge *j = f->judge;

	f->judge = NULL;
	judge_free(j);
}

void fs_reload(struct fs *f)
{
	fuse_ino_t *ids = NULL, *dirs = NULL;
	size_t nids = 0, ndirs = 0, cap = 0;

	pthread_mutex_lock(&f->lock);
	for (struct fs_inode *i = f->inodes; i; i = i->next)
		cap++;
	ids = calloc(cap + 1, sizeof(*ids));
	dirs = calloc(cap + 1, sizeof(*dirs));
	for (struct fs_inode *i = f->inodes; ids && dirs && i; i = i->next) {
		if (i->kind == FS_GEN_FILE && is_key_file(i->file)) {
			apply_key_owner(f, i);
			ids[nids++] = ino_id(f, i);
		}
		if (i->kind == FS_DIR && f->serving) {
			/* The PKCS#12 depends on the password: a new node. */
			i->fdom->files[ENGINE_FILE_PFX] = NULL;
			dirs[ndirs++] = ino_id(f, i);
		}
	}
	pthread_mutex_unlock(&f->lock);
	for (size_t n = 0; n < nids; n++)
		fuse_lowlevel_notify_inval_inode(f->se, ids[n], -1, 0);
	for (size_t n = 0; n < ndirs; n++) {
		const char *pfx = engine_file_name(ENGINE_FILE_PFX);

		fuse_lowlevel_notify_inval_entry(f->se, dirs[n], pfx, strlen(pfx));
	}
	free(ids);
	free(dirs);
	if (f->next_mount)
		fs_reload(f->next_mount);
}

bool fs_shutdown(struct fs *f)
{
	fs_stop_judging(f);
	if (f->notify_running) {
		struct timespec ts;

		pthread_mutex_lock(&f->lock);
		f->stopping = true;
		pthread_cond_signal(&f->notify_cond);
		pthread_mutex_unlock(&f->lock);
		/*
		 * A notification waits for a directory lock that a request in
		 * flight holds; once the session loop has stopped, that request
		 * is never answered and the notification never returns. Only
		 * the end of the process (which aborts the connection) frees it.
		 */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 3;
		if (pthread_timedjoin_np(f->notify_thread, NULL, &ts)) {
			util_err("fs: a kernel notification is stuck at shutdown");
			f->notify_stuck = true;
			return false;
		}
		f->notify_running = false;
	}
	pthread_mutex_lock(&f->lock);
	while (f->notify_head) {
		struct fs_notify *n = f->notify_head;

		f->notify_head = n->next;
		dom_put(f, n->fdom);
		free(n);
	}
	f->notify_tail = NULL;
	while (f->inodes)
		inode_free(f, f->inodes);
	pthread_mutex_unlock(&f->lock);
	/* Files the kernel never released: the session ended first. */
	while (f->handles)
		handle_free(f->handles);
	return true;
}

void fs_free(struct fs *f)
{
	if (!f || f->notify_stuck || !fs_shutdown(f))
		return; /* the notify thread still uses it: the process is ending */
	engine_names_free(f->names, f->nnames);
	if (f->se)
		fuse_session_destroy(f->se);
	fence_free(f->fence);
	if (f->owns_readers)
		readers_free(f->readers);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->names_lock);
	pthread_mutex_destroy(&f->handles_lock);
	pthread_cond_destroy(&f->notify_cond);
	free(f);
}
