/* SPDX-License-Identifier: MIT */
/*
 * Empty writes. Without FUSE_CAP_ATOMIC_O_TRUNC (see fs_init) an
 * open(O_TRUNC) reaches us as an OPEN without O_TRUNC, then a SETATTR of
 * size 0 that the kernel sends without the file handle. A writer that then
 * writes nothing (`cp /dev/null F`, `: > passphrase`) would leave a handle
 * that looks untouched, and its close would silently succeed. So the
 * truncation is noted on the inode with who made it, and a handle opened
 * by that process before it counts as written (with no bytes) when its
 * last descriptor is closed.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/*
 * Does process pid still hold a descriptor of node ino? A FLUSH comes at
 * every close(2), and the closed descriptor is already gone from
 * /proc/PID/fdinfo then. A shell redirection (`cmd > F`) opens F, dup2()s
 * it and closes the first descriptor before cmd writes: that FLUSH must not
 * be judged as an empty write. fdinfo is read, never the file itself, so
 * nothing here calls back into this filesystem.
 */
static bool still_open(pid_t pid, uint64_t ino)
{
	struct dirent *de;
	char path[64], entry[64 + sizeof(de->d_name)], line[128];
	bool found = false;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!found && (de = readdir(dir))) {
		FILE *fp;

		if (de->d_name[0] == '.')
			continue;
		snprintf(entry, sizeof(entry), "%s/%s", path, de->d_name);
		fp = fopen(entry, "re");
		if (!fp)
			continue;
		while (fgets(line, sizeof(line), fp)) {
			if (!strncmp(line, "ino:", 4)) {
				found = strtoull(line + 4, NULL, 10) == ino;
				break;
			}
		}
		fclose(fp);
	}
	closedir(dir);
	return found;
}

bool fs_empty_write(struct fs *f, struct fs_inode *i, uint64_t ino, struct fs_handle *h,
		    pid_t pid)
{
	bool truncated;

	pthread_mutex_lock(&f->lock);
	truncated = i && i->trunc_pid == h->pid && i->trunc_seq > h->open_seq;
	pthread_mutex_unlock(&f->lock);
	if (!truncated || still_open(pid, ino))
		return false;
	pthread_mutex_lock(&f->lock);
	i->trunc_pid = 0; /* judged once */
	pthread_mutex_unlock(&f->lock);
	return true;
}
