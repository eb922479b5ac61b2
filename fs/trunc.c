/* SPDX-License-Identifier: MIT */
/*
 * Empty writes. Without FUSE_CAP_ATOMIC_O_TRUNC (see fs_init) an
 * open(O_TRUNC) reaches us as an OPEN without O_TRUNC, then a SETATTR of
 * size 0 that the kernel sends without the file handle. A writer that then
 * writes nothing (`cp /dev/null F`, `: > passphrase`) would leave a handle
 * that looks untouched, and its close would silently succeed. So the
 * truncation is noted on the inode with who made it, and a handle opened
 * by that process before it counts as written (with no bytes) at close.
 */
#include "fs/fs_int.h"

void fs_note_open(struct fs *f, struct fs_handle *h, pid_t pid)
{
	h->open_seq = ++f->seq;
	h->pid = pid;
}

void fs_note_truncate(struct fs *f, struct fs_inode *i, struct fs_handle *h, pid_t pid)
{
	if (h) {
		/* ftruncate(fd, 0): the handle itself is emptied. */
		h->dirty = true;
		return;
	}
	i->trunc_seq = ++f->seq;
	i->trunc_pid = pid;
}

bool fs_truncated(const struct fs_inode *i, const struct fs_handle *h)
{
	return i && i->trunc_pid == h->pid && i->trunc_seq > h->open_seq;
}
