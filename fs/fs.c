/* SPDX-License-Identifier: MIT */
/*
 * The FUSE low-level handlers. Handlers stay thin: resolve the inode, ask
 * the engine, reply. Node ids are inode pointers (the root is id 1), and
 * every inode is immutable once made, which is what lets the kernel cache
 * pages and attributes for as long as it likes:
 *   - a certificate file is (generation, file) -> bytes that never change;
 *   - status files are rendered into a new inode at each lookup and handed
 *     out with a zero entry timeout, so every open sees a fresh snapshot.
 *
 * Rotation and the pair fence (fs_rotate): when a new generation arrives
 * for a domain whose files have been handed out, the cached entries are
 * expired and lookups are answered from the old generation without caching,
 * so every open reaches us and we see which process opens which file. The
 * new generation is published after at least FS_FENCE_MS, at a moment when
 * no process is between opening a domain's certificate and its key. Every
 * process gets the same answer at any instant: the kernel shares directory
 * entries between processes, so per-process answers cannot be relied on.
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

#define CACHE_FOREVER 86400.0

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

/* New inode on the fs list (f->lock held). */
static struct fs_inode *inode_new(struct fs *f, enum fs_kind kind, enum engine_file file)
{
	struct fs_inode *i = calloc(1, sizeof(*i));

	if (!i)
		return NULL;
	i->kind = kind;
	i->file = file;
	util_buf_init(&i->snap, ENGINE_RECORD_LIMIT, true);
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
	struct fs_dom *fd = i->dom ? *engine_domain_slot(i->dom) : NULL;

	for (int k = 0; k < 4; k++)
		if (f->root_snap[k] == i)
			f->root_snap[k] = NULL;
	if (fd) {
		for (int k = 0; k < 3; k++)
			if (fd->snap[k] == i)
				fd->snap[k] = NULL;
		if (fd->dir == i)
			fd->dir = NULL;
		for (int k = 0; k < ENGINE_GEN_FILES; k++)
			if (fd->files[k] == i)
				fd->files[k] = NULL;
	}
	if (i->prev)
		i->prev->next = i->next;
	else
		f->inodes = i->next;
	if (i->next)
		i->next->prev = i->prev;
	util_buf_free(&i->snap);
	engine_gen_put(i->gen);
	engine_domain_put(i->dom);
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

static mode_t file_mode(enum engine_file file)
{
	switch (file) {
	case ENGINE_FILE_REQUEST_CSR:
	case ENGINE_FILE_PASSPHRASE:
		return 0200; /* write-only: a passphrase is never readable back */
	case ENGINE_FILE_METRICS:
	case ENGINE_FILE_CA_PEM:
		return 0444;
	default:
		return 0644;
	}
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

/* The per-domain front-end state, made on first use (f->lock held). */
static struct fs_dom *dom_state(struct engine_domain *d)
{
	void **slot = engine_domain_slot(d);
	struct fs_dom *fd = *slot;

	if (fd)
		return fd;
	fd = calloc(1, sizeof(*fd));
	if (!fd)
		return NULL;
	fd->served = engine_domain_gen(d);
	if (!fd->served) {
		free(fd);
		return NULL;
	}
	__atomic_store_n(slot, fd, __ATOMIC_RELEASE); /* read without the lock in fs_open */
	return fd;
}

static void fs_slot_free(void *arg, void *slot)
{
	struct fs_dom *fd = slot;

	/* The domain is gone and no inode refers to it: no lock needed. */
	(void)arg;
	engine_gen_put(fd->served);
	engine_gen_put(fd->pending);
	free(fd->pins);
	free(fd);
}

/* The inode of file k of generation g (f->lock held); one per (g, k). */
static struct fs_inode *gen_inode(struct fs *f, struct engine_domain *d, struct engine_gen *g,
				  struct fs_inode **slots, enum engine_file k, int *err)
{
	const unsigned char *data;
	struct fs_inode *i = slots ? slots[k] : NULL;
	size_t len;
	int rc;

	if (i)
		return i;
	rc = engine_gen_content(g, k, &data, &len);
	if (rc) {
		*err = -rc;
		return NULL;
	}
	i = inode_new(f, FS_GEN_FILE, k);
	if (!i) {
		*err = ENOMEM;
		return NULL;
	}
	i->gen = engine_gen_get(g);
	i->dom = engine_domain_ref(d);
	i->data = data;
	i->size = len;
	i->st.st_mode = S_IFREG | file_mode(k);
	if (is_key_file(k))
		apply_key_owner(f, i);
	set_size(&i->st, len);
	set_times(&i->st, engine_gen_created(g));
	if (slots)
		slots[k] = i;
	return i;
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

/* ---- the fence ------------------------------------------------------------------ */

/* Thread group of a thread id: pairs are per process, not per thread. */
static pid_t tgid_of(pid_t pid)
{
	char path[64], line[128];
	pid_t tgid = pid;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fp = fopen(path, "re");
	if (!fp)
		return pid;
	while (fgets(line, sizeof(line), fp)) {
		if (!strncmp(line, "Tgid:", 5)) {
			tgid = (pid_t)atoi(line + 5);
			break;
		}
	}
	fclose(fp);
	return tgid;
}

static struct fs_pin *pin_find(struct fs_dom *fd, pid_t tgid)
{
	for (int i = 0; i < fd->npins; i++)
		if (fd->pins[i].tgid == tgid)
			return &fd->pins[i];
	return NULL;
}

static bool is_cert_file(enum engine_file k)
{
	return k == ENGINE_FILE_FULLCHAIN || k == ENGINE_FILE_CERT || k == ENGINE_FILE_CHAIN;
}

/*
 * Record that a process looks up (or, on a read-write mount, opens) file k
 * during a fence (f->lock held). A pair is what the contract names: a
 * certificate file, then the key. A process is mid-pair from the lookup of
 * a certificate file until the lookup of the key; *starts is set when the
 * lookup begins a new pair. Combined files (bundle, PKCS#12) are whole on
 * their own and change nothing.
 *
 * A process that opens the same certificate file twice without the key in
 * between reads certificates only and is never mid-pair. On a read-write
 * mount OPEN tells us that; a read-only mount has no OPEN, so there a second
 * lookup of the same file counts (the kernel may also look a name up twice
 * when a revalidation fails, which is why OPEN is preferred).
 */
static struct fs_pin *fence_record(struct fs *f, struct fs_dom *fd, pid_t tgid,
				   enum engine_file k, uint64_t now, bool is_open, bool *starts)
{
	struct fs_pin *p = pin_find(fd, tgid);
	unsigned bit = 1u << k;

	*starts = false;
	if (!p) {
		if (!fd->pins)
			fd->pins = calloc(FS_MAX_PINS, sizeof(*fd->pins));
		if (!fd->pins || fd->npins == FS_MAX_PINS)
			return NULL; /* untracked: the deadline still bounds the fence */
		p = &fd->pins[fd->npins++];
		memset(p, 0, sizeof(*p));
		p->tgid = tgid;
		p->last_file = -1;
	}
	if (k == ENGINE_FILE_PRIVKEY) {
		if (!is_open) {
			p->mid = false; /* the pair is complete */
			p->repeater = false;
			p->opened = 0;
		}
	} else if (is_cert_file(k)) {
		if (is_open) {
			if (p->mid && (p->opened & bit))
				p->repeater = true;
			p->opened |= bit;
		} else if (!p->mid || p->repeater) {
			*starts = true;
			p->mid = true;
			p->opened = 0;
			p->cert_ms = now;
		} else if (f->read_only && p->last_file == (int)k) {
			p->repeater = true;
		}
	}
	p->last_file = (int)k;
	return p;
}

/* Is some process between the certificate and the key of a pair? */
static bool fence_busy(const struct fs_dom *fd, uint64_t now)
{
	for (int i = 0; i < fd->npins; i++) {
		const struct fs_pin *p = &fd->pins[i];

		if (p->mid && !p->held && !p->repeater && now - p->cert_ms < FS_FENCE_MS)
			return true;
	}
	return false;
}

/* Publish the pending generation (f->lock held). */
static void fence_flip(struct fs *f, struct fs_dom *fd)
{
	struct engine_domain *d = fd->pending_dom;

	engine_gen_put(fd->served);
	memset(fd->files, 0, sizeof(fd->files));
	fd->served = fd->pending;
	__atomic_store_n(&fd->pending, NULL, __ATOMIC_RELEASE);
	fd->pending_dom = NULL;
	fd->handed_out = false;
	fd->npins = 0;
	free(fd->pins); /* most domains never see a fence: keep them small */
	fd->pins = NULL;
	engine_publish(f->engine, d, fd->served);
	/* Lookups that waited start their cycle on the new generation. */
	while (fd->held) {
		struct fs_held *h = fd->held;
		struct fs_inode *i;
		int err = 0;

		fd->held = h->next;
		if (h->flush) {
			fuse_reply_err(h->req, 0);
			free(h);
			continue;
		}
		i = gen_inode(f, d, fd->served, fd->files, h->file, &err);
		if (i) {
			fd->handed_out = true;
			reply_entry(h->req, f, i, CACHE_FOREVER);
		} else {
			fuse_reply_err(h->req, err);
		}
		free(h);
	}
	engine_domain_put(d);
}

/* Publish now if the fence allows it (f->lock held). */
static bool fence_try_flip(struct fs *f, struct fs_dom *fd, uint64_t now)
{
	if (!fd->pending || now < fd->fence_until)
		return false;
	if (now < fd->fence_deadline && fence_busy(fd, now))
		return false;
	fence_flip(f, fd);
	return true;
}

static void expire_domain_entries(struct fs *f, fuse_ino_t dir);

/* Queue a notification for the fence thread (f->lock held). */
static void notify_queue(struct fs *f, fuse_ino_t dir, bool entries, bool listing)
{
	struct fs_notify *n;

	if (!dir || (!entries && !listing))
		return;
	n = calloc(1, sizeof(*n));
	if (!n)
		return; /* the entries then expire no sooner than their timeout */
	n->dir = dir;
	n->entries = entries;
	n->listing = listing;
	if (f->notify_tail)
		f->notify_tail->next = n;
	else
		f->notify_head = n;
	f->notify_tail = n;
	pthread_cond_signal(&f->fence_cond);
}

/* Send queued notifications (f->lock held; dropped while sending). */
static void notify_send(struct fs *f)
{
	while (f->notify_head && !f->stopping) {
		struct fs_notify *n = f->notify_head;

		f->notify_head = n->next;
		if (!f->notify_head)
			f->notify_tail = NULL;
		pthread_mutex_unlock(&f->lock);
		if (n->entries)
			expire_domain_entries(f, n->dir);
		if (n->listing)
			fuse_lowlevel_notify_inval_inode(f->se, n->dir, 0, 0);
		free(n);
		pthread_mutex_lock(&f->lock);
	}
}

static void *fence_main(void *arg)
{
	struct fs *f = arg;

	pthread_mutex_lock(&f->lock);
	while (!f->stopping) {
		uint64_t now, next = 0;
		struct fs_dom **pp = &f->fence_list;

		notify_send(f);
		now = util_mono_ms();

		while (*pp) {
			struct fs_dom *fd = *pp;

			if (!fd->pending || fence_try_flip(f, fd, now)) {
				*pp = fd->fence_next;
				fd->on_fence_list = false;
			} else {
				/* Before the minimum, wake at it; after, look again
				 * shortly for a moment between pairs. */
				uint64_t at = now < fd->fence_until ? fd->fence_until : now + 2;

				if (!next || at < next)
					next = at;
				pp = &fd->fence_next;
			}
		}
		if (next) {
			struct timespec ts;
			uint64_t wait = next - now;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += (time_t)(wait / 1000);
			ts.tv_nsec += (long)(wait % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			if (!f->notify_head)
				pthread_cond_timedwait(&f->fence_cond, &f->lock, &ts);
		} else if (!f->notify_head) {
			pthread_cond_wait(&f->fence_cond, &f->lock);
		}
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

static void expire_domain_entries(struct fs *f, fuse_ino_t dir)
{
	for (int k = 0; k < ENGINE_GEN_FILES; k++) {
		const char *name = engine_file_name((enum engine_file)k);

		/* Kernels before 6.2 refuse FUSE_EXPIRE_ONLY: unhash instead. */
		if (fs_notify_expire_entry(f->se, dir, name) == -EINVAL)
			fuse_lowlevel_notify_inval_entry(f->se, dir, name, strlen(name));
	}
}

/*
 * Set while an UNLINK is handled: removing an upload publishes the managed
 * certificate at once. Its reply cannot wait for a fence, because the
 * kernel holds the directory's lock until it comes and the fence's
 * notifications need that lock; the kernel drops the removed name's entry
 * itself, and the other entries are expired right after.
 */
static __thread bool rotate_now;

/* engine_observer.rotate: a new generation is stored; publish or fence. */
static void fs_rotate(void *arg, struct engine_domain *d, struct engine_gen *g)
{
	struct fs *f = arg;
	struct fs_dom *fd;
	fuse_ino_t dir = 0;
	bool fence, keys_changed = false;
	uint64_t now = util_mono_ms();

	pthread_mutex_lock(&f->lock);
	if (!engine_gen_current(d, g)) {
		/* Rotations of one domain can reach us out of order from two
		 * threads; only the one the engine stored last counts. */
		pthread_mutex_unlock(&f->lock);
		return;
	}
	fd = *engine_domain_slot(d);
	if (fd && fd->pending) {
		/* A fence is already running: the newer generation replaces the
		 * one waiting behind it. */
		engine_gen_put(fd->pending);
		__atomic_store_n(&fd->pending, engine_gen_get(g), __ATOMIC_RELEASE);
		pthread_mutex_unlock(&f->lock);
		return;
	}
	fence = f->ready && fd && fd->handed_out && !rotate_now;
	if (fd && fd->dir)
		dir = ino_id(f, fd->dir);
	if (!fence) {
		if (fd) {
			keys_changed = engine_gen_has_key(fd->served) != engine_gen_has_key(g);
			engine_gen_put(fd->served);
			fd->served = engine_gen_get(g);
			memset(fd->files, 0, sizeof(fd->files));
			fd->handed_out = false;
		}
		engine_publish(f->engine, d, g);
		/* Entries handed out uncached need no invalidation (cached ones
		 * exist only when publishing at once on removal); the directory
		 * listing does when the key files come or go. */
		notify_queue(f, dir, rotate_now, keys_changed);
		pthread_mutex_unlock(&f->lock);
		return;
	}
	keys_changed = engine_gen_has_key(fd->served) != engine_gen_has_key(g);
	__atomic_store_n(&fd->pending, engine_gen_get(g), __ATOMIC_RELEASE);
	fd->pending_dom = engine_domain_ref(d);
	fd->fence_until = now + FS_FENCE_MS;
	fd->fence_deadline = now + FS_FENCE_MAX_MS;
	fd->npins = 0;
	if (!fd->on_fence_list) {
		fd->fence_next = f->fence_list;
		f->fence_list = fd;
		fd->on_fence_list = true;
	}
	notify_queue(f, dir, true, keys_changed);
	pthread_cond_signal(&f->fence_cond);
	pthread_mutex_unlock(&f->lock);
}

/* ---- lookup ---------------------------------------------------------------------- */

/* Which cache slot a status file of a domain (or the root) uses. */
static int snap_slot(enum engine_file k)
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
		return 3;
	default:
		return -1;
	}
}

/*
 * A rendered status file, reused while nothing it shows can have changed:
 * the engine's state version and the minute (days_left moves with time).
 * Rendering the root's files walks every domain, and `ls -l` or a scan
 * would otherwise render them again at every lookup.
 */
static struct fs_inode *snapshot_inode(struct fs *f, struct engine_domain *d,
				       enum engine_file k, int *err)
{
	struct fs_inode *i, **slot = NULL;
	uint64_t key = 0, *slot_key = NULL;
	struct fs_dom *fd = d ? dom_state(d) : NULL;
	int s = snap_slot(k), rc;

	if (s >= 0 && (!d || (fd && s < 3))) {
		slot = d ? &fd->snap[s] : &f->root_snap[s];
		slot_key = d ? &fd->snap_key[s] : &f->root_snap_key[s];
		key = engine_state_version(f->engine, d) * 1000003u + (uint64_t)(util_now() / 60);
		if (*slot && *slot_key == key)
			return *slot;
	}

	i = inode_new(f, FS_SNAPSHOT, k);
	if (!i) {
		*err = ENOMEM;
		return NULL;
	}
	i->dom = engine_domain_ref(d);
	rc = engine_render(f->engine, d, k, &i->snap);
	if (rc) {
		*err = -rc;
		inode_free(f, i);
		return NULL;
	}
	util_buf_shrink(&i->snap);
	i->data = i->snap.data;
	i->size = i->snap.len;
	i->st.st_mode = S_IFREG | file_mode(k);
	set_size(&i->st, i->size);
	set_times(&i->st, util_now());
	if (slot) {
		*slot = i;
		*slot_key = key;
	}
	return i;
}

/*
 * Look up file k of a domain (f->lock held). Outside a fence: the served
 * generation, cached for a day. In a fence: the old generation, uncached,
 * and the process is recorded so the fence knows who is mid-pair. Once the
 * fence has lasted FS_FENCE_MS, a lookup that would start a new cycle is
 * held (its reply deferred) until the publication, so that the processes
 * still mid-pair can finish on the old generation while nobody starts one.
 */
static void lookup_gen_file(fuse_req_t req, struct fs *f, struct engine_domain *d,
			    struct fs_dom *fd, enum engine_file k)
{
	uint64_t now = util_mono_ms();
	struct fs_inode *i;
	bool cached = true;
	int err = 0;

	if (fd->pending) {
		bool new_cycle;
		struct fs_pin *p = fence_record(f, fd, tgid_of(fuse_req_ctx(req)->pid), k, now,
						false, &new_cycle);
		struct fs_held *h;

		if (new_cycle && now >= fd->fence_until && (h = calloc(1, sizeof(*h)))) {
			h->req = req;
			h->file = k;
			h->next = fd->held;
			fd->held = h;
			if (p)
				p->held = true;
			fence_try_flip(f, fd, now);
			return;
		}
		cached = false;
	} else {
		fd->handed_out = true;
	}
	i = gen_inode(f, d, fd->served, fd->files, k, &err);
	if (!i) {
		fuse_reply_err(req, err);
		return;
	}
	reply_entry(req, f, i, cached ? CACHE_FOREVER : 0);
	/* This lookup may have completed the last open pair. */
	if (fd->pending)
		fence_try_flip(f, fd, now);
}

static struct fs_inode *dir_inode(struct fs *f, struct engine_domain *d, struct fs_dom *fd)
{
	struct fs_inode *i = fd->dir;

	if (i)
		return i;
	i = inode_new(f, FS_DIR, ENGINE_FILE_COUNT);
	if (!i)
		return NULL;
	i->dom = engine_domain_ref(d);
	i->st.st_mode = S_IFDIR | 0755;
	i->st.st_nlink = 2;
	set_times(&i->st, engine_domain_created(d));
	fd->dir = i;
	return i;
}

static void lookup_domain(fuse_req_t req, struct fs *f, const char *name, double timeout)
{
	struct engine_domain *d = engine_domain_get(f->engine, name);
	struct fs_inode *i = NULL;
	struct fs_dom *fd;

	if (!d) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	pthread_mutex_lock(&f->lock);
	fd = dom_state(d);
	if (fd)
		i = dir_inode(f, d, fd);
	if (i)
		reply_entry(req, f, i, timeout);
	else
		fuse_reply_err(req, ENOMEM);
	pthread_mutex_unlock(&f->lock);
	engine_domain_put(d);
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *f = req_fs(req);
	struct fs_inode *p = ino_get(f, parent), *i;
	enum engine_file k;
	struct fs_dom *fd;
	int err = 0;

	if (p->kind == FS_WK_DIR) {
		pthread_mutex_lock(&f->lock);
		if (p == &f->wk && !strcmp(name, "acme-challenge")) {
			reply_entry(req, f, &f->wk_acme, CACHE_FOREVER);
		} else if (p == &f->wk_acme) {
			/* A pending http-01 token: the web server serving the
			 * mount's root answers the CA from here. */
			i = inode_new(f, FS_SNAPSHOT, ENGINE_FILE_COUNT);
			if (i && !engine_challenge_get(f->engine, name, &i->snap)) {
				i->data = i->snap.data;
				i->size = i->snap.len;
				i->st.st_mode = S_IFREG | 0444;
				set_size(&i->st, i->size);
				set_times(&i->st, util_now());
				reply_entry(req, f, i, 0);
			} else {
				if (i)
					inode_free(f, i);
				fuse_reply_err(req, ENOENT);
			}
		} else {
			fuse_reply_err(req, ENOENT);
		}
		pthread_mutex_unlock(&f->lock);
		return;
	}
	if (p->kind == FS_ROOT) {
		if (!strcmp(name, ".well-known")) {
			pthread_mutex_lock(&f->lock);
			reply_entry(req, f, &f->wk, CACHE_FOREVER);
			pthread_mutex_unlock(&f->lock);
			return;
		}
		k = engine_file_lookup(name, true);
		if (k == ENGINE_FILE_COUNT) {
			lookup_domain(req, f, name, CACHE_FOREVER);
			return;
		}
		pthread_mutex_lock(&f->lock);
		i = snapshot_inode(f, NULL, k, &err);
		if (i)
			reply_entry(req, f, i, 0);
		else
			fuse_reply_err(req, err);
		pthread_mutex_unlock(&f->lock);
		return;
	}
	if (p->kind != FS_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	k = engine_file_lookup(name, false);
	if (k == ENGINE_FILE_COUNT) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	pthread_mutex_lock(&f->lock);
	fd = dom_state(p->dom);
	if (!fd) {
		fuse_reply_err(req, ENOMEM);
	} else if (k < ENGINE_GEN_FILES) {
		lookup_gen_file(req, f, p->dom, fd, k);
	} else if (k == ENGINE_FILE_REQUEST_CSR || k == ENGINE_FILE_PASSPHRASE) {
		i = inode_new(f, FS_CONTROL, k);
		if (i) {
			i->dom = engine_domain_ref(p->dom);
			i->st.st_mode = S_IFREG | file_mode(k);
			set_times(&i->st, engine_domain_created(p->dom));
			reply_entry(req, f, i, 0);
		} else {
			fuse_reply_err(req, ENOMEM);
		}
	} else {
		i = snapshot_inode(f, p->dom, k, &err);
		if (i)
			reply_entry(req, f, i, 0);
		else
			fuse_reply_err(req, err);
	}
	pthread_mutex_unlock(&f->lock);
}

static void forget_one(struct fs *f, fuse_ino_t ino, uint64_t n)
{
	struct fs_inode *i = ino_get(f, ino);

	if (i == &f->root || i == &f->wk || i == &f->wk_acme)
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

	pthread_mutex_lock(&f->lock);
	st = i->st;
	pthread_mutex_unlock(&f->lock);
	st.st_ino = ino;
	(void)fi;
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

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs *f = req_fs(req);
	struct fs_inode *i = ino_get(f, ino);
	struct util_buf out;
	char *buf;
	size_t used = 0;
	off_t idx = 0;
	struct stat st;
	int n;

	(void)fi;
	if (i->kind != FS_ROOT && i->kind != FS_DIR && i->kind != FS_WK_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	util_buf_init(&out, 0, false);
	memset(&st, 0, sizeof(st));

#define ADD(nm, mode)                                                                   \
	do {                                                                            \
		idx++;                                                                  \
		if (idx > off) {                                                        \
			size_t need;                                                    \
			st.st_ino = dirent_ino(nm);                                     \
			st.st_mode = (mode);                                            \
			need = fuse_add_direntry(req, buf + used, size - used, (nm), &st, idx); \
			if (need > size - used)                                         \
				goto full;                                              \
			used += need;                                                   \
		}                                                                       \
	} while (0)

	ADD(".", S_IFDIR);
	ADD("..", S_IFDIR);
	if (i == &f->wk) {
		ADD("acme-challenge", S_IFDIR);
	} else if (i == &f->wk_acme) {
		char **tokens;
		size_t nt = engine_challenge_tokens(f->engine, &tokens);

		for (size_t t = 0; t < nt; t++) {
			idx++;
			if (idx <= off)
				continue;
			st.st_ino = dirent_ino(tokens[t]);
			st.st_mode = S_IFREG;
			n = (int)fuse_add_direntry(req, buf + used, size - used, tokens[t], &st, idx);
			if ((size_t)n > size - used)
				break;
			used += (size_t)n;
		}
		engine_names_free(tokens, nt);
	} else if (i->kind == FS_ROOT) {
		static const enum engine_file root_files[] = {
			ENGINE_FILE_STATUS, ENGINE_FILE_STATUS_JSON, ENGINE_FILE_METRICS,
			ENGINE_FILE_CA_PEM};

		for (size_t r = 0; r < sizeof(root_files) / sizeof(root_files[0]); r++)
			ADD(engine_file_name(root_files[r]), S_IFREG);
		pthread_mutex_lock(&f->names_lock);
		names_refresh(f);
		for (size_t d = 0; d < f->nnames; d++) {
			idx++;
			if (idx <= off)
				continue;
			st.st_ino = dirent_ino(f->names[d]);
			st.st_mode = S_IFDIR;
			n = (int)fuse_add_direntry(req, buf + used, size - used, f->names[d], &st,
						   idx);
			if ((size_t)n > size - used)
				break;
			used += (size_t)n;
		}
		pthread_mutex_unlock(&f->names_lock);
	} else {
		struct engine_gen *g = engine_domain_gen(i->dom);
		bool key = g && engine_gen_has_key(g);

		engine_gen_put(g);
		for (int k = 0; k <= ENGINE_FILE_PASSPHRASE; k++) {
			if (!key && is_key_file((enum engine_file)k))
				continue;
			ADD(engine_file_name((enum engine_file)k), S_IFREG);
		}
	}
#undef ADD
full:
	fuse_reply_buf(req, buf, used);
	free(buf);
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
	rc = engine_rmdir(f->engine, name);
	fuse_reply_err(req, -rc);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *f = req_fs(req);
	struct fs_inode *p = ino_get(f, parent);
	int rc;

	if (p->kind != FS_DIR || engine_file_lookup(name, false) == ENGINE_FILE_COUNT) {
		fuse_reply_err(req, p->kind == FS_ROOT ? EPERM : ENOENT);
		return;
	}
	/* Removing the certificate removes an upload; the other files are views
	 * of the generation, so removing them changes nothing but succeeds, and
	 * `rm -r DOMAIN` reaches rmdir. */
	rotate_now = true;
	rc = engine_unlink(f->engine, p->dom, engine_file_lookup(name, false));
	rotate_now = false;
	fuse_reply_err(req, -rc);
}

/* ---- files ------------------------------------------------------------------------ */

static bool writable(enum engine_file k)
{
	return k < ENGINE_GEN_FILES || k == ENGINE_FILE_STATUS || k == ENGINE_FILE_NAMES ||
	       k == ENGINE_FILE_REQUEST_CSR || k == ENGINE_FILE_PASSPHRASE;
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
		if (i->kind == FS_CONTROL) {
			fuse_reply_err(req, EACCES);
			return;
		}
		/* Immutable inode: keep the page cache, and no FLUSH at close. */
		fi->keep_cache = 1;
		fi->noflush = 1;
		/* Every certificate open passes here: take the lock only when a
		 * fence may be running for the domain (checked without it). */
		struct fs_dom *fd = i->kind == FS_GEN_FILE ?
			__atomic_load_n((struct fs_dom **)engine_domain_slot(i->dom),
					__ATOMIC_ACQUIRE) : NULL;

		if (fd && __atomic_load_n(&fd->pending, __ATOMIC_ACQUIRE)) {
			uint64_t now = util_mono_ms();

			pthread_mutex_lock(&f->lock);
			if (fd->pending && i->gen == fd->served) {
				bool new_cycle;

				fence_record(f, fd, tgid_of(fuse_req_ctx(req)->pid), i->file, now,
					     true, &new_cycle);
			}
			pthread_mutex_unlock(&f->lock);
		}
		fuse_reply_open(req, fi);
		return;
	}
	/* The root's status takes "renew" (every domain); its other files are read-only. */
	if ((!i->dom && i->file != ENGINE_FILE_STATUS) || !writable(i->file)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->dom = i->dom ? engine_domain_ref(i->dom) : NULL;
	h->file = i->file;
	util_buf_init(&h->buf, ENGINE_UPLOAD_MAX, true);
	/* Written bytes go to the handle, never to the generation's pages. */
	fi->direct_io = 1;
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		engine_domain_put(h->dom);
		util_buf_free(&h->buf);
		free(h);
	}
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *f = req_fs(req);
	struct fs_inode *i = ino_get(f, ino);

	(void)fi;
	if (i->kind == FS_ROOT || i->kind == FS_DIR || i->kind == FS_WK_DIR) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (off < 0 || (size_t)off >= i->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > i->size - (size_t)off)
		size = i->size - (size_t)off;
	fuse_reply_buf(req, (const char *)i->data + off, size);
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
	if (!h) {
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
	h->dirty = true;
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

static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *f = req_fs(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	char why[512] = "";
	int rc = 0;

	(void)ino;
	if (!h) {
		fuse_reply_err(req, 0);
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
	} else if (h->dirty && writer_killed_by(fuse_req_ctx(req)->pid)) {
		/* Whatever it wrote may be a prefix that happens to parse. */
		snprintf(why, sizeof(why), "the writer was killed (signal %d) before closing "
			 "the file; nothing was changed", writer_killed_by(fuse_req_ctx(req)->pid));
		engine_write_refused(h->dom, h->file, why);
		util_info("fs: %s/%s: %s", engine_domain_name(h->dom), engine_file_name(h->file),
			  why);
		rc = -EIO;
	} else if (h->dirty) {
		/* Judged whole at close; what close(2) returns is the verdict. */
		rc = engine_write(f->engine, h->dom, h->file, h->buf.data, h->buf.len, why,
				  sizeof(why));
		if (rc)
			util_info("fs: %s/%s: write refused: %s", engine_domain_name(h->dom),
				  engine_file_name(h->file), why);
	}
	h->dirty = false;
	if (!rc) {
		struct fs_dom *fd;
		struct fs_held *held;

		/* An accepted upload may wait behind a fence: close(2) returns
		 * once it is published, so the writer's next open sees it. */
		pthread_mutex_lock(&f->lock);
		fd = *engine_domain_slot(h->dom);
		if (fd && fd->pending && (held = calloc(1, sizeof(*held)))) {
			held->req = req;
			held->flush = true;
			held->next = fd->held;
			fd->held = held;
			pthread_mutex_unlock(&f->lock);
			return;
		}
		pthread_mutex_unlock(&f->lock);
	}
	fuse_reply_err(req, -rc);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;

	(void)ino;
	if (h) {
		engine_domain_put(h->dom);
		util_buf_free(&h->buf);
		free(h);
	}
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
	if ((to_set & FUSE_SET_ATTR_SIZE) && h) {
		if (attr->st_size < 0 || (size_t)attr->st_size > ENGINE_UPLOAD_MAX) {
			fuse_reply_err(req, EFBIG);
			return;
		}
		if (handle_resize(h, (size_t)attr->st_size)) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	/* Without a handle (open with O_TRUNC, truncate(1)) a size change is
	 * answered with the size unchanged: a generation never changes, and
	 * what a writer sends is judged when it closes. */
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

	/* Content never changes under an inode, so mtime-driven page cache
	 * invalidation would only cost reads. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	/*
	 * With atomic O_TRUNC the kernel would set the size of the inode a
	 * writer opens to 0, and every reader of that generation would see an
	 * empty file. Without it the kernel asks with SETATTR first, and we
	 * answer with the size unchanged: a writer's bytes go to its handle.
	 */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	pthread_mutex_lock(&f->lock);
	f->ready = true;
	pthread_mutex_unlock(&f->lock);
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
 * Read-only mounts: OPEN and OPENDIR are answered ENOSYS (libfuse would
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

int fs_new(struct engine *e, const struct fs_options *o, struct fuse_args *args,
	   struct fs **out)
{
	struct engine_observer obs;
	struct fs *f;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->engine = e;
	f->read_only = o->read_only;
	f->uid = getuid();
	f->gid = getgid();
	f->started = util_now();
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->names_lock, NULL);
	pthread_cond_init(&f->fence_cond, NULL);
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

	/* The kernel enforces the modes we report: without this, allow_other
	 * would let every local user read private keys. */
	if (fuse_opt_add_arg(args, "-odefault_permissions")) {
		free(f);
		return -ENOMEM;
	}
	f->se = fuse_session_new(args, o->read_only ? &fs_ops_ro : &fs_ops_rw,
				 sizeof(struct fuse_lowlevel_ops), f);
	if (!f->se) {
		free(f);
		return -EINVAL;
	}
	obs.arg = f;
	obs.rotate = fs_rotate;
	obs.slot_free = fs_slot_free;
	engine_set_observer(e, &obs);
	*out = f;
	return 0;
}

struct fuse_session *fs_session(struct fs *f)
{
	return f->se;
}

int fs_start(struct fs *f)
{
	int rc = pthread_create(&f->fence_thread, NULL, fence_main, f);

	if (rc)
		return -rc;
	f->fence_running = true;
	return 0;
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
		if (i->kind == FS_DIR) {
			struct fs_dom *fd = *engine_domain_slot(i->dom);

			/* The PKCS#12 depends on the password: make it anew. */
			if (fd)
				fd->files[ENGINE_FILE_PFX] = NULL;
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
}

bool fs_shutdown(struct fs *f)
{
	if (f->fence_running) {
		struct timespec ts;

		pthread_mutex_lock(&f->lock);
		f->stopping = true;
		pthread_cond_signal(&f->fence_cond);
		pthread_mutex_unlock(&f->lock);
		/*
		 * A notification waits for a directory lock that a request in
		 * flight holds; once the session loop has stopped, that request
		 * is never answered and the notification never returns. Only
		 * the end of the process (which aborts the connection) frees it.
		 */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 3;
		if (pthread_timedjoin_np(f->fence_thread, NULL, &ts)) {
			util_err("fs: a kernel notification is stuck at shutdown");
			f->fence_stuck = true;
			return false;
		}
		f->fence_running = false;
	}
	pthread_mutex_lock(&f->lock);
	for (struct fs_dom *fd = f->fence_list; fd; fd = fd->fence_next) {
		while (fd->held) {
			struct fs_held *h = fd->held;

			fd->held = h->next;
			/* An accepted upload is stored: its close succeeded. */
			fuse_reply_err(h->req, h->flush ? 0 : EINTR);
			free(h);
		}
		engine_gen_put(fd->pending);
		fd->pending = NULL;
		engine_domain_put(fd->pending_dom);
		fd->pending_dom = NULL;
	}
	f->fence_list = NULL;
	while (f->notify_head) {
		struct fs_notify *n = f->notify_head;

		f->notify_head = n->next;
		free(n);
	}
	f->notify_tail = NULL;
	while (f->inodes)
		inode_free(f, f->inodes);
	pthread_mutex_unlock(&f->lock);
	return true;
}

void fs_free(struct fs *f)
{
	if (!f || f->fence_stuck || !fs_shutdown(f))
		return; /* the fence thread still uses it: the process is ending */
	engine_names_free(f->names, f->nnames);
	if (f->se)
		fuse_session_destroy(f->se);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->names_lock);
	pthread_cond_destroy(&f->fence_cond);
	free(f);
}
