/* SPDX-License-Identifier: MIT */
/*
 * Durable file replacement: the only way certfs writes anything to disk.
 * A reader (or a restart after kill -9) sees the old file or the new one,
 * never a mix and never a zero-length file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

int util_dir_sync(int dirfd)
{
	if (fsync(dirfd) < 0)
		return -errno;
	return 0;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int util_file_replace(int dirfd, const char *name, const void *data, size_t len,
		      mode_t mode)
{
	static unsigned counter;
	char tmp[300];
	int fd = -1, rc;

	/*
	 * pid and counter make the name unique; the name itself is only a
	 * hint for whoever finds a leftover, cut so that the temporary of a
	 * 255-byte name still fits in NAME_MAX.
	 */
	rc = snprintf(tmp, sizeof(tmp), ".tmp.%ld.%u.%.200s", (long)getpid(),
		      __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED), name);
	if (rc < 0 || (size_t)rc >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    mode);
	if (fd < 0)
		return -errno;
	/* The umask may have narrowed the mode; secrets must never widen it. */
	if (fchmod(fd, mode) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = write_all(fd, data, len);
	if (rc)
		goto fail;
	if (fsync(fd) < 0) {
		rc = -errno;
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = -errno;
		goto fail;
	}
	fd = -1;
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		rc = -errno;
		goto fail;
	}
	return util_dir_sync(dirfd);
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	return rc;
}

int util_file_read(int dirfd, const char *name, struct util_buf *b)
{
	unsigned char chunk[16384];
	size_t start = b->len;
	struct stat st;
	int fd, rc = 0;

	/*
	 * O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	 * writer before fstat could refuse it. It has no effect on the regular
	 * files that pass the check.
	 */
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno == ELOOP ? -EINVAL : -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out;
	}
	if ((uintmax_t)st.st_size > b->max - b->len) {
		rc = -EFBIG;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		rc = util_buf_append(b, chunk, (size_t)n);
		if (rc)
			break;
	}
	util_wipe(chunk, sizeof(chunk));
out:
	/* All or nothing: a failed read leaves b as it was. */
	if (rc) {
		if (b->secret && b->data)
			util_wipe(b->data + start, b->len - start);
		b->len = start;
	}
	close(fd);
	return rc;
}
