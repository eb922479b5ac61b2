/* SPDX-License-Identifier: MIT */
/*
 * util: durable file replacement and bounded, symlink-refusing reads. Modes
 * are exact whatever the umask, a replacement leaves no temporary behind,
 * a symlink is replaced rather than followed, and reads refuse symlinks,
 * directories, devices and FIFOs (without blocking on the FIFO) and honour
 * the buffer's cap without changing it on failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"
#include "tests/unit/check.h"

static char tmpdir[] = "/tmp/certfs-test-file.XXXXXX";
static int dfd = -1;

static mode_t mode_of(const char *name)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return (mode_t)-1;
	return st.st_mode & 07777;
}

static int count_tmp(void)
{
	struct dirent *de;
	int n = 0, fd;
	DIR *d;

	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (!strncmp(de->d_name, ".tmp.", 5))
			n++;
	closedir(d);
	return n;
}

static int read_str(const char *name, char *out, size_t len)
{
	struct util_buf b;
	int rc;

	util_buf_init(&b, 1 << 20, false);
	rc = util_file_read(dfd, name, &b);
	out[0] = '\0';
	if (!rc) {
		size_t n = b.len < len - 1 ? b.len : len - 1;

		if (n)
			memcpy(out, b.data, n);
		out[n] = '\0';
	}
	util_buf_free(&b);
	return rc;
}

static void test_replace(void)
{
	char v[300], name[256];

	umask(0);
	CHECK_INT(util_file_replace(dfd, "a", "one", 3, 0600), 0);
	CHECK_INT(mode_of("a"), 0600);
	CHECK_INT(read_str("a", v, sizeof(v)), 0);
	CHECK_STR(v, "one");
	CHECK_INT(util_file_replace(dfd, "a", "second", 6, 0600), 0);
	CHECK_INT(read_str("a", v, sizeof(v)), 0);
	CHECK_STR(v, "second");
	CHECK_INT(count_tmp(), 0);

	/* The mode is exactly what was asked, whatever the umask says. */
	umask(077);
	CHECK_INT(util_file_replace(dfd, "b", "x", 1, 0644), 0);
	CHECK_INT(mode_of("b"), 0644);
	umask(0);
	CHECK_INT(util_file_replace(dfd, "b", "", 0, 0400), 0);
	CHECK_INT(mode_of("b"), 0400);
	CHECK_INT(read_str("b", v, sizeof(v)), 0);
	CHECK_STR(v, "");

	/* A 255-byte name: the temporary must fit NAME_MAX as well. */
	memset(name, 'n', 255);
	name[255] = '\0';
	CHECK_INT(util_file_replace(dfd, name, "long", 4, 0600), 0);
	CHECK_INT(read_str(name, v, sizeof(v)), 0);
	CHECK_STR(v, "long");
	CHECK_INT(unlinkat(dfd, name, 0), 0);

	/* A symlink at the name is replaced, its target never written. */
	CHECK_INT(util_file_replace(dfd, "target", "untouched", 9, 0600), 0);
	CHECK_INT(symlinkat("target", dfd, "link"), 0);
	CHECK_INT(util_file_replace(dfd, "link", "new", 3, 0600), 0);
	CHECK_INT(read_str("target", v, sizeof(v)), 0);
	CHECK_STR(v, "untouched");
	CHECK_INT(mode_of("link"), 0600); /* a regular file now */
	CHECK_INT(read_str("link", v, sizeof(v)), 0);
	CHECK_STR(v, "new");

	/* A failed replacement (a directory is in the way) leaves no temporary. */
	CHECK_INT(mkdirat(dfd, "dir", 0700), 0);
	CHECK(util_file_replace(dfd, "dir", "x", 1, 0600) < 0);
	CHECK_INT(mode_of("dir"), 0700);
	CHECK_INT(count_tmp(), 0);

	/* A bad directory fd is an error, not a crash. */
	CHECK_INT(util_file_replace(-1, "x", "x", 1, 0600), -EBADF);
	CHECK_INT(util_dir_sync(dfd), 0);
	CHECK_INT(util_dir_sync(-1), -EBADF);
}

static void test_read(void)
{
	struct util_buf b;
	char v[64];
	int devfd;

	CHECK_INT(read_str("missing", v, sizeof(v)), -ENOENT);
	CHECK_INT(symlinkat("a", dfd, "link-to-a"), 0);
	CHECK_INT(read_str("link-to-a", v, sizeof(v)), -EINVAL);
	CHECK_INT(symlinkat("nowhere", dfd, "dangling"), 0);
	CHECK_INT(read_str("dangling", v, sizeof(v)), -EINVAL);
	CHECK_INT(read_str("dir", v, sizeof(v)), -EINVAL);
	/* A FIFO must be refused at once, not wait for a writer. */
	CHECK_INT(mkfifoat(dfd, "fifo", 0600), 0);
	alarm(10);
	CHECK_INT(read_str("fifo", v, sizeof(v)), -EINVAL);
	alarm(0);
	devfd = open("/dev", O_RDONLY | O_DIRECTORY);
	if (devfd >= 0) {
		util_buf_init(&b, 100, false);
		CHECK_INT(util_file_read(devfd, "null", &b), -EINVAL);
		util_buf_free(&b);
		close(devfd);
	}

	/* Appends to what is there; the cap counts the whole buffer. */
	CHECK_INT(util_file_replace(dfd, "ten", "0123456789", 10, 0600), 0);
	util_buf_init(&b, 13, false);
	CHECK_INT(util_buf_append(&b, "ab", 2), 0);
	CHECK_INT(util_file_read(dfd, "ten", &b), 0);
	CHECK_INT(b.len, 12);
	CHECK(!memcmp(b.data, "ab0123456789", 12));
	/* Past the cap: -EFBIG and the buffer as it was. */
	CHECK_INT(util_file_read(dfd, "ten", &b), -EFBIG);
	CHECK_INT(b.len, 12);
	util_buf_free(&b);
	util_buf_init(&b, 10, true);
	CHECK_INT(util_file_read(dfd, "ten", &b), 0);
	CHECK_INT(b.len, 10);
	util_buf_free(&b);
	util_buf_init(&b, 9, true);
	CHECK_INT(util_file_read(dfd, "ten", &b), -EFBIG);
	CHECK_INT(b.len, 0);
	util_buf_free(&b);

	/* A larger file, read in several chunks. */
	{
		size_t n = 100000;
		unsigned char *p = malloc(n);

		if (p) {
			for (size_t i = 0; i < n; i++)
				p[i] = (unsigned char)(i % 251);
			CHECK_INT(util_file_replace(dfd, "large", p, n, 0600), 0);
			util_buf_init(&b, n, false);
			CHECK_INT(util_file_read(dfd, "large", &b), 0);
			CHECK_INT(b.len, n);
			CHECK(b.len == n && !memcmp(b.data, p, n));
			util_buf_free(&b);
			free(p);
		}
	}
}

int main(void)
{
	char cmd[200];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 99;
	}
	dfd = open(tmpdir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0) {
		perror(tmpdir);
		return 99;
	}
	test_replace();
	test_read();
	close(dfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", tmpdir);
	CHECK_DONE();
}
