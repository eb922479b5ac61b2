/* SPDX-License-Identifier: MIT */
/*
 * Kernel notifications libfuse 3.14 has no call for. FUSE_EXPIRE_ONLY
 * (kernel 6.2, protocol 7.38) marks a directory entry expired without
 * unhashing it: every process that uses it next revalidates with a LOOKUP
 * of its own. An unhashed entry would instead be looked up afresh, and the
 * VFS merges concurrent fresh lookups of one name into one request, hiding
 * all but one of the processes from the pair fence.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <string.h>
#include <sys/uio.h>

#include "fs/fs_int.h"

int fs_notify_expire_entry(struct fuse_session *se, uint64_t parent, const char *name)
{
	struct fuse_out_header out;
	struct fuse_notify_inval_entry_out arg;
	size_t namelen = strlen(name);
	struct iovec iov[3];
	ssize_t n;

	memset(&out, 0, sizeof(out));
	memset(&arg, 0, sizeof(arg));
	arg.parent = parent;
	arg.namelen = (uint32_t)namelen;
	arg.flags = FUSE_EXPIRE_ONLY;
	out.error = FUSE_NOTIFY_INVAL_ENTRY;
	out.unique = 0;
	iov[0].iov_base = &out;
	iov[0].iov_len = sizeof(out);
	iov[1].iov_base = &arg;
	iov[1].iov_len = sizeof(arg);
	iov[2].iov_base = (void *)name;
	iov[2].iov_len = namelen + 1;
	out.len = (uint32_t)(sizeof(out) + sizeof(arg) + namelen + 1);
	n = writev(fuse_session_fd(se), iov, 3);
	if (n < 0)
		return -errno;
	return 0;
}
