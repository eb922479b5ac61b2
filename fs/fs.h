/* SPDX-License-Identifier: MIT */
/*
 * fs: the FUSE front end (libfuse low-level API). It turns the engine's
 * domains and generations into a tree of files, keeps the kernel's caches
 * correct without waiting for timeouts, and turns writes into uploads that
 * are judged when the writer closes the file.
 *
 * The read path (see README "How reading stays consistent and fast"): the
 * engine publishes a new generation at once; the fence (fence.h) keeps a
 * thread that is between reading a domain's certificate and its key on the
 * generation it started with. The main mount sees every open and serves
 * stable nodes whose open files read one generation; a serving mount (read
 * only, for servers) never sees opens, serves each generation's files as
 * immutable nodes the kernel caches, and fences at lookup instead.
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
	 * A serving mount is read-only and answers OPEN and FLUSH with ENOSYS,
	 * so the kernel stops asking and an open+read+close costs no round
	 * trip to us once cached. Uploads need FLUSH (close(2) reports a
	 * rejected upload), so the main mount keeps both.
	 */
	bool serving;
	/*
	 * A second mount of the same engine (a serving mount beside the main
	 * one): the primary's observer tells it of every publication.
	 */
	struct fs *primary;
	/*
	 * Note which processes open which generation of the certificate and
	 * key files, to name those still on an old one after a rotation
	 * (status, metrics, hooks). Only a mount that sees opens does.
	 */
	bool track_readers;
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
/*
 * No more judging of uploads (after the session loop ended, before
 * engine_stop): a judgement under way finishes, queued ones are answered
 * ECANCELED and nothing of them is installed.
 */
void fs_stop_judging(struct fs *f);
/* After a configuration reload: refresh key-file modes and PFX contents
 * (of this mount and the mounts made with it as primary). */
void fs_reload(struct fs *f);
/*
 * Drop every inode (after the session loop ended, before engine_free).
 * Secondary mounts are shut down and freed before their primary.
 * false when a kernel notification is stuck: then unmount and _exit().
 */
bool fs_shutdown(struct fs *f);
/* Free the session and what is left (after engine_free). */
void fs_free(struct fs *f);

#endif
