/* SPDX-License-Identifier: MIT */
/*
 * Empty writes: `cp /dev/null F`, `: > F`, a program that opens F with
 * O_TRUNC and closes it. Such an open file is told by its own state (the
 * FUSE file handle), never by a guess about the process: it was truncated
 * to nothing and has written nothing.
 *
 * Without FUSE_CAP_ATOMIC_O_TRUNC (see fs_init) an open(O_TRUNC) reaches
 * us as an OPEN without O_TRUNC, then a SETATTR of size 0 that the kernel
 * sends without the file handle (fs/fuse/dir.c drops it for ATTR_OPEN),
 * from the same thread, inside the same open(2), after the OPEN was
 * answered. So that truncation belongs to the newest writer that thread
 * opened on that node. ftruncate(fd, 0) comes with its handle.
 */
#include "fs/fs_int.h"

void fs_note_open(struct fs *f, struct fs_handle *h, uint64_t ino, pid_t tid)
{
	pthread_mutex_lock(&f->handles_lock);
	h->open_seq = ++f->seq;
	h->ino = ino;
	h->tid = tid;
	pthread_mutex_unlock(&f->handles_lock);
}

void fs_note_truncate(struct fs *f, uint64_t ino, struct fs_handle *h, pid_t tid)
{
	struct fs_handle *best = NULL;

	pthread_mutex_lock(&f->handles_lock);
	if (h) {
		best = h;
	} else {
		for (h = f->handles; h; h = h->next)
			if (h->writer && h->ino == ino && h->tid == tid &&
			    (!best || h->open_seq > best->open_seq))
				best = h;
	}
	if (best)
		best->truncated = true;
	pthread_mutex_unlock(&f->handles_lock);
}

bool fs_empty_open(struct fs *f, struct fs_handle *h)
{
	bool empty;

	pthread_mutex_lock(&f->handles_lock);
	empty = h->writer && h->truncated && !h->wrote;
	pthread_mutex_unlock(&f->handles_lock);
	return empty;
}
