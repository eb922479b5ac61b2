/* SPDX-License-Identifier: MIT */
/*
 * store_dir: the local-directory back end. A key "a/b/c" is the file c in
 * the directory a/b below the store root. Every path is walked one segment
 * at a time with openat(O_NOFOLLOW | O_DIRECTORY) from the root's fd, so a
 * symlink planted in the store (or a root renamed under us) can never send a
 * read or a write elsewhere; such a key is -EINVAL. Values are written with
 * util_file_replace (temp, fsync, rename, fsync dir); new directories are
 * fsynced into their parent, so an acknowledged put survives kill -9 and
 * power loss. Modes are set with fchmod, not left to the umask.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"

#define DIR_MODE 0700
#define FILE_MODE 0600
#define TMP_PREFIX ".tmp."
/* Keys are a few levels deep; a deeper tree was not made by us. */
#define SWEEP_DEPTH_MAX 32
/* Hidden, so no key can name it and no listing shows it. */
#define LOCK_NAME ".lock"
#define LOCK_OWNER_MAX 512

struct store_dir {
	struct store base; /* first: a struct store * is a struct store_dir * */
	int rootfd;
	int lockfd;        /* holds the flock while open; -1 until store_lock */
};

static struct store_dir *to_dir(struct store *s)
{
	return (struct store_dir *)s;
}

/* After a failed openat(O_DIRECTORY | O_NOFOLLOW): a symlink or not a level. */
static int not_dir_errno(int dirfd, const char *name, int e)
{
	struct stat st;

	if (e == ELOOP)
		return -EINVAL;
	if (e == ENOTDIR && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return -EINVAL;
	return -e;
}

/*
 * A new open file description of a directory fd. dup() would share the
 * readdir position with every other user of the root fd (so a second
 * listing would start at the end, and threads would race on it).
 */
static int reopen_dir(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static int open_level(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return not_dir_errno(dirfd, name, errno);
	return fd;
}

/* Open or create (0700, fsynced into dirfd) the level name below dirfd. */
static int make_level(int dirfd, const char *name)
{
	int fd, rc;

	fd = open_level(dirfd, name);
	if (fd != -ENOENT)
		return fd;
	if (mkdirat(dirfd, name, DIR_MODE) < 0 && errno != EEXIST)
		return -errno;
	fd = open_level(dirfd, name);
	if (fd < 0)
		return fd;
	/* The umask may have narrowed the mode; it must be exactly 0700. */
	if (fchmod(fd, DIR_MODE) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	/* The new entry must be durable before anything below it is. */
	rc = util_dir_sync(dirfd);
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

/*
 * Walk key's parent levels from the root. Returns an fd of the parent level
 * (caller closes) and points *leaf at the last segment (inside buf, which
 * holds a copy of key). With create, missing levels are made.
 */
static int walk_parent(struct store_dir *d, const char *key, bool create, char *buf,
		       size_t buflen, const char **leaf)
{
	char *seg, *slash;
	int fd, next;

	if (strlen(key) >= buflen)
		return -ENAMETOOLONG;
	strcpy(buf, key);
	fd = reopen_dir(d->rootfd);
	if (fd < 0)
		return fd;
	seg = buf;
	while ((slash = strchr(seg, '/')) != NULL) {
		*slash = '\0';
		next = create ? make_level(fd, seg) : open_level(fd, seg);
		close(fd);
		if (next < 0)
			return next;
		fd = next;
		seg = slash + 1;
	}
	*leaf = seg;
	return fd;
}

/* For reads, "a/b" below a value "a" simply does not exist. */
static int lookup_errno(int rc)
{
	return rc == -ENOTDIR ? -ENOENT : rc;
}

static int leaf_stat(int dirfd, const char *leaf, struct stat *st)
{
	if (fstatat(dirfd, leaf, st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISLNK(st->st_mode))
		return -EINVAL;
	return 0;
}

static int dir_get(struct store *s, const char *key, struct util_buf *out)
{
	char buf[PATH_MAX];
	const char *leaf;
	int fd, rc;

	fd = walk_parent(to_dir(s), key, false, buf, sizeof(buf), &leaf);
	if (fd < 0)
		return lookup_errno(fd);
	/* util_file_read refuses symlinks and anything but a regular file. */
	rc = util_file_read(fd, leaf, out);
	close(fd);
	return rc;
}

static int dir_put(struct store *s, const char *key, const void *data, size_t len)
{
	char buf[PATH_MAX];
	const char *leaf;
	struct stat st;
	int fd, rc;

	fd = walk_parent(to_dir(s), key, true, buf, sizeof(buf), &leaf);
	if (fd < 0)
		return fd;
	/* rename(2) would replace a planted symlink silently; refuse it instead. */
	rc = leaf_stat(fd, leaf, &st);
	if (rc == -EINVAL)
		goto out;
	if (rc == 0 && S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto out;
	}
	rc = util_file_replace(fd, leaf, data, len, FILE_MODE);
out:
	close(fd);
	return rc;
}

static int dir_del(struct store *s, const char *key)
{
	char buf[PATH_MAX];
	const char *leaf;
	struct stat st;
	int fd, rc;

	fd = walk_parent(to_dir(s), key, false, buf, sizeof(buf), &leaf);
	if (fd < 0)
		return lookup_errno(fd);
	rc = leaf_stat(fd, leaf, &st);
	if (rc)
		goto out;
	if (unlinkat(fd, leaf, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0) {
		rc = -errno;
		goto out;
	}
	rc = util_dir_sync(fd);
out:
	close(fd);
	return rc;
}

static int dir_list(struct store *s, const char *prefix, store_list_cb cb, void *arg)
{
	struct store_dir *d = to_dir(s);
	char buf[PATH_MAX];
	const char *leaf;
	struct dirent *de;
	DIR *dir = NULL;
	int fd = -1, pfd, rc, n = 0;

	if (!*prefix) {
		fd = reopen_dir(d->rootfd);
		if (fd < 0)
			return fd;
	} else {
		pfd = walk_parent(d, prefix, false, buf, sizeof(buf), &leaf);
		if (pfd < 0)
			return lookup_errno(pfd);
		fd = open_level(pfd, leaf);
		close(pfd);
		if (fd < 0)
			return lookup_errno(fd);
	}
	dir = fdopendir(fd);
	if (!dir) {
		rc = -errno;
		close(fd);
		return rc;
	}
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (!de) {
			rc = -errno;
			if (rc)
				goto out;
			break;
		}
		/* Hidden names: ".", "..", and temporaries of a put in flight. */
		if (de->d_name[0] == '.')
			continue;
		n++;
		rc = cb(de->d_name, arg);
		if (rc) {
			/* A callback's error is passed on; a positive value just stops. */
			rc = rc < 0 ? rc : 0;
			goto out;
		}
	}
	/* An empty level does not exist, as in a key/value store like etcd. */
	rc = n ? 0 : -ENOENT;
out:
	closedir(dir);
	return rc;
}

static int dir_move(struct store *s, const char *from, const char *to)
{
	struct store_dir *d = to_dir(s);
	char fbuf[PATH_MAX], tbuf[PATH_MAX];
	const char *fleaf, *tleaf;
	struct stat st;
	int ffd = -1, tfd = -1, rc;

	ffd = walk_parent(d, from, false, fbuf, sizeof(fbuf), &fleaf);
	if (ffd < 0) {
		rc = lookup_errno(ffd);
		ffd = -1;
		goto out;
	}
	rc = leaf_stat(ffd, fleaf, &st);
	if (rc)
		goto out;
	tfd = walk_parent(d, to, true, tbuf, sizeof(tbuf), &tleaf);
	if (tfd < 0) {
		rc = tfd;
		tfd = -1;
		goto out;
	}
	/* RENAME_NOREPLACE makes "target must not exist" atomic. */
	if (renameat2(ffd, fleaf, tfd, tleaf, RENAME_NOREPLACE) < 0) {
		rc = -errno;
		if (rc != -EINVAL && rc != -ENOSYS)
			goto out;
		/* A file system without RENAME_NOREPLACE: check, then rename. */
		if (fstatat(tfd, tleaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			rc = -EEXIST;
			goto out;
		}
		if (renameat(ffd, fleaf, tfd, tleaf) < 0) {
			rc = -errno;
			goto out;
		}
	}
	rc = util_dir_sync(tfd);
	if (rc)
		goto out;
	rc = util_dir_sync(ffd);
out:
	if (ffd >= 0)
		close(ffd);
	if (tfd >= 0)
		close(tfd);
	return rc;
}

/*
 * One writer per directory: flock(2) on ROOT/.lock. The lock belongs to the
 * open file description, so it survives fuse_daemonize()'s fork, is dropped
 * by the kernel when the process dies however it dies (a file left by a
 * SIGKILLed daemon blocks nobody), and conflicts between two opens in one
 * process too. The file is never removed: unlinking it would let a second
 * daemon lock a new file while a third still holds the old one. Its text
 * only names the holder for the refusal message.
 */
static int dir_lock(struct store *s, const char *owner, char *err, size_t errlen)
{
	struct store_dir *d = to_dir(s);
	char held[LOCK_OWNER_MAX];
	size_t len = strlen(owner);
	ssize_t n;
	int fd = d->lockfd, rc;

	if (fd < 0) {
		fd = openat(d->rootfd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
			    FILE_MODE);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "store %s: cannot open its lock file: %s", s->spec,
				 strerror(-rc));
			return rc;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			rc = -errno;
			if (rc == -EWOULDBLOCK) {
				n = pread(fd, held, sizeof(held) - 1, 0);
				held[n > 0 ? n : 0] = '\0';
				held[strcspn(held, "\n")] = '\0';
				snprintf(err, errlen, "store %s is in use by another certfs (%s)",
					 s->spec, held[0] ? held : "owner unknown");
				rc = -EBUSY;
			} else {
				snprintf(err, errlen, "store %s: cannot lock: %s", s->spec,
					 strerror(-rc));
			}
			close(fd);
			return rc;
		}
		d->lockfd = fd;
	}
	/* Write, then cut: a reader sees the old or the new line up to '\n'.
	 * A full disk costs only the name in a later refusal, not the lock. */
	if (pwrite(fd, owner, len, 0) != (ssize_t)len || pwrite(fd, "\n", 1, (off_t)len) != 1 ||
	    ftruncate(fd, (off_t)len + 1) < 0)
		util_warn("store %s: cannot record the lock's owner: %m", s->spec);
	return 0;
}

static void dir_close(struct store *s)
{
	struct store_dir *d = to_dir(s);

	if (d->rootfd >= 0)
		close(d->rootfd);
	if (d->lockfd >= 0)
		close(d->lockfd);
	free(d);
}

static const struct store_ops store_dir_ops = {
	.name = "dir",
	.get = dir_get,
	.put = dir_put,
	.del = dir_del,
	.list = dir_list,
	.move = dir_move,
	.lock = dir_lock,
	.close = dir_close,
};

/*
 * Remove ".tmp.*" files a crash left behind. One readdir per level and no
 * stat unless the file system does not fill in d_type, so a store with ten
 * thousand domains is swept quickly. Failures only cost disk space: they
 * are logged, never fatal.
 */
static void sweep(int dirfd, const char *where, int depth)
{
	struct dirent *de;
	DIR *dir;
	int fd;

	fd = reopen_dir(dirfd);
	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		unsigned char type = de->d_type;
		struct stat st;

		if (type == DT_UNKNOWN) {
			if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
		}
		if (de->d_name[0] == '.') {
			if (type == DT_REG && !strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) &&
			    unlinkat(dirfd, de->d_name, 0) < 0)
				util_warn("store %s: %s: cannot remove leftover temporary: %m",
					  where, de->d_name);
			continue;
		}
		if (type == DT_DIR && depth < SWEEP_DEPTH_MAX) {
			int sub = open_level(dirfd, de->d_name);

			if (sub >= 0) {
				sweep(sub, where, depth + 1);
				close(sub);
			}
		}
	}
	closedir(dir);
}

/* fsync the directory that holds path, so a newly made root is durable. */
static int sync_parent(const char *path)
{
	char *copy = strdup(path), *slash;
	const char *parent;
	int fd, rc;

	if (!copy)
		return -ENOMEM;
	slash = copy + strlen(copy);
	while (slash > copy + 1 && slash[-1] == '/')
		*--slash = '\0';
	slash = strrchr(copy, '/');
	if (!slash)
		parent = ".";
	else if (slash == copy)
		parent = "/";
	else {
		*slash = '\0';
		parent = copy;
	}
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = util_dir_sync(fd);
	close(fd);
out:
	free(copy);
	return rc;
}

int store_dir_open(const char *path, struct store **out, char *err, size_t errlen)
{
	struct store_dir *d = NULL;
	bool made = false;
	int fd = -1, rc, e;

	*out = NULL;
	/* The root itself may be a symlink: that is the administrator's choice. */
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (mkdir(path, DIR_MODE) < 0 && errno != EEXIST) {
			e = errno;
			if (e == ENOENT)
				snprintf(err, errlen, "store %s: parent directory does not exist", path);
			else
				snprintf(err, errlen, "store %s: cannot create: %s", path, strerror(e));
			rc = -e;
			goto out;
		}
		made = true;
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (fd < 0) {
		e = errno;
		if (e == ENOTDIR)
			snprintf(err, errlen, "store %s: not a directory", path);
		else if (e == EACCES)
			snprintf(err, errlen, "store %s: permission denied", path);
		else
			snprintf(err, errlen, "store %s: cannot open: %s", path, strerror(e));
		rc = -e;
		goto out;
	}
	if (made) {
		/* Exactly 0700 whatever the umask, and durable in its parent. */
		rc = fchmod(fd, DIR_MODE) < 0 ? -errno : sync_parent(path);
		if (rc) {
			snprintf(err, errlen, "store %s: cannot create: %s", path, strerror(-rc));
			goto out;
		}
	}
	/* Writes happen much later; say now that they cannot succeed. */
	if (faccessat(fd, ".", W_OK | X_OK, AT_EACCESS) < 0) {
		e = errno;
		if (e == EACCES || e == EPERM)
			snprintf(err, errlen, "store %s: permission denied", path);
		else if (e == EROFS)
			snprintf(err, errlen, "store %s: read-only file system", path);
		else
			snprintf(err, errlen, "store %s: not writable: %s", path, strerror(e));
		rc = -e;
		goto out;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "store %s: out of memory", path);
		rc = -ENOMEM;
		goto out;
	}
	sweep(fd, path, 0);
	d->base.ops = &store_dir_ops;
	d->rootfd = fd;
	d->lockfd = -1;
	fd = -1;
	*out = &d->base;
	d = NULL;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(d);
	return rc;
}
