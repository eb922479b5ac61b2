/* SPDX-License-Identifier: MIT */
/*
 * fs: the FUSE front end (libfuse low-level API). It turns the engine's
 * domains and generations into a tree of files, keeps the kernel's caches
 * correct without waiting for timeouts, and turns writes into uploads that
 * are judged when the writer closes the file.
 *
 * The read path (see README "How reading stays consistent and fast"):
 * every file of a generation is its own immutable inode, so the kernel may
 * cache pages and attributes without limit; a new generation gets new
 * inodes and the old directory entries are invalidated; and a short fence
 * before each rotation keeps a process that is between reading a domain's
 * certificate and its key on one generation.
 */
#ifndef CERTFS_FS_H
#define CERTFS_FS_H

#include <stdbool.h>

#include "engine/engine.h"

struct fs;
struct fuse_args;
struct fuse_session;

struct fs_options {
	/*
	 * A read-only mount answers OPEN and FLUSH with ENOSYS, so the kernel
	 * stops asking and an open+read+close costs no round trip to us once
	 * cached. Uploads need FLUSH (close(2) reports a rejected upload), so
	 * a read-write mount keeps both.
	 */
	bool read_only;
};

/*
 * Create the FUSE session for engine e (not mounted yet). args are the
 * libfuse arguments (-o ...); default_permissions is always added.
 */
int fs_new(struct engine *e, const struct fs_options *o, struct fuse_args *args,
	   struct fs **out) __attribute__((warn_unused_result));
struct fuse_session *fs_session(struct fs *f);
/* Start the front end's own thread (after any fork). */
int fs_start(struct fs *f) __attribute__((warn_unused_result));
/* After a configuration reload: refresh key-file modes and PFX contents. */
void fs_reload(struct fs *f);
/*
 * Drop every inode (after the session loop ended, before engine_free).
 * false when a kernel notification is stuck: then unmount and _exit().
 */
bool fs_shutdown(struct fs *f);
/* Free the session and what is left (after engine_free). */
void fs_free(struct fs *f);

#endif
