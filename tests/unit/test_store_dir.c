/* SPDX-License-Identifier: MIT */
/*
 * store: the local-directory back end. Round trips of every operation,
 * modes on disk under umask 0, key checks, symlinks planted in the store,
 * leftover temporaries, size limits, open failures, and kill -9 in the
 * middle of a stream of puts (every value found afterwards is complete and
 * no acknowledged value is lost), and the one-writer lock (a second holder
 * is refused with the first one's name; a killed holder frees it). A full disk is left to the integration
 * suite: a small file system needs root to mount.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/unit/check.h"

static char tmpdir[] = "/tmp/certfs-test-store.XXXXXX";
static char root[4096];

static void path_in(char *out, size_t len, const char *rel)
{
	snprintf(out, len, "%s/%s", root, rel);
}

static mode_t mode_of(const char *rel)
{
	char p[4200];
	struct stat st;

	path_in(p, sizeof(p), rel);
	if (lstat(p, &st) < 0)
		return (mode_t)-1;
	return st.st_mode & 07777;
}

static bool exists(const char *rel)
{
	char p[4200];
	struct stat st;

	path_in(p, sizeof(p), rel);
	return lstat(p, &st) == 0;
}

static void write_raw(const char *rel, const char *data)
{
	char p[4200];
	int fd;

	path_in(p, sizeof(p), rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data)) {
		perror(p);
		exit(99);
	}
	close(fd);
}

/* get key as a string into out; returns the store's rc. */
static int get_str(struct store *s, const char *key, char *out, size_t len)
{
	struct util_buf b;
	int rc;

	util_buf_init(&b, STORE_VALUE_MAX, false);
	rc = store_get(s, key, &b);
	out[0] = '\0';
	if (rc == 0) {
		size_t n = b.len < len - 1 ? b.len : len - 1;

		if (n)
			memcpy(out, b.data, n);
		out[n] = '\0';
	}
	util_buf_free(&b);
	return rc;
}

struct names {
	char seen[16][64];
	int n;
	int stop_after;
};

static int collect(const char *name, void *arg)
{
	struct names *ns = arg;

	if (ns->n < 16)
		snprintf(ns->seen[ns->n], sizeof(ns->seen[0]), "%s", name);
	ns->n++;
	return ns->stop_after && ns->n >= ns->stop_after;
}

static bool has_name(const struct names *ns, const char *name)
{
	for (int i = 0; i < ns->n && i < 16; i++)
		if (!strcmp(ns->seen[i], name))
			return true;
	return false;
}

static void test_keys(void)
{
	char seg[300];

	CHECK(store_key_valid("a"));
	CHECK(store_key_valid("domains/example.com/state"));
	CHECK(store_key_valid("domains/*.example.com/fullchain.pem"));
	CHECK(store_key_valid("A-Z_0.9@x+y=z"));
	CHECK(store_key_valid("a/b..c"));
	CHECK(!store_key_valid(NULL));
	CHECK(!store_key_valid(""));
	CHECK(!store_key_valid(".."));
	CHECK(!store_key_valid("."));
	CHECK(!store_key_valid("a/../b"));
	CHECK(!store_key_valid("a/./b"));
	CHECK(!store_key_valid("/abs"));
	CHECK(!store_key_valid("a/"));
	CHECK(!store_key_valid("a//b"));
	CHECK(!store_key_valid(".hidden"));
	CHECK(!store_key_valid("a/.b"));
	CHECK(!store_key_valid(".tmp.1.2.x"));
	CHECK(!store_key_valid("a\nb"));
	CHECK(!store_key_valid("a\tb"));
	CHECK(!store_key_valid("a\x7f"));
	CHECK(!store_key_valid("a b"));
	CHECK(!store_key_valid("a\\b"));
	CHECK(!store_key_valid("a:b"));
	CHECK(!store_key_valid("caf\xc3\xa9"));
	memset(seg, 'x', sizeof(seg));
	seg[255] = '\0';
	CHECK(store_key_valid(seg));
	seg[255] = 'x';
	seg[256] = '\0';
	CHECK(!store_key_valid(seg));
}

static void test_round_trips(struct store *s)
{
	char v[256], seg[256];
	struct names ns;

	/* put / get / overwrite */
	CHECK_INT(store_put(s, "a", "hello", 5), 0);
	CHECK_INT(get_str(s, "a", v, sizeof(v)), 0);
	CHECK_STR(v, "hello");
	CHECK_INT(store_put(s, "a", "bye", 3), 0);
	CHECK_INT(get_str(s, "a", v, sizeof(v)), 0);
	CHECK_STR(v, "bye");
	CHECK_INT(store_put(s, "empty", "", 0), 0);
	CHECK_INT(get_str(s, "empty", v, sizeof(v)), 0);
	CHECK_STR(v, "");

	/* nested levels, modes exact even under umask 0 */
	CHECK_INT(store_put(s, "domains/example.com/state", "issued", 6), 0);
	CHECK_INT(store_put(s, "domains/*.example.org/state", "pending", 7), 0);
	CHECK_INT(get_str(s, "domains/example.com/state", v, sizeof(v)), 0);
	CHECK_STR(v, "issued");
	CHECK_INT(mode_of("a"), 0600);
	CHECK_INT(mode_of("domains"), 0700);
	CHECK_INT(mode_of("domains/example.com"), 0700);
	CHECK_INT(mode_of("domains/example.com/state"), 0600);

	/* a 255-byte segment fits, temporary file name included */
	memset(seg, 'k', 255);
	seg[255] = '\0';
	CHECK_INT(store_put(s, seg, "long", 4), 0);
	CHECK_INT(get_str(s, seg, v, sizeof(v)), 0);
	CHECK_STR(v, "long");
	CHECK_INT(store_del(s, seg), 0);

	/* -ENOENT */
	CHECK_INT(get_str(s, "missing", v, sizeof(v)), -ENOENT);
	CHECK_INT(get_str(s, "nolevel/x", v, sizeof(v)), -ENOENT);
	CHECK_INT(get_str(s, "a/below-a-value", v, sizeof(v)), -ENOENT);
	CHECK_INT(store_del(s, "missing"), -ENOENT);
	CHECK_INT(store_del(s, "nolevel/x"), -ENOENT);
	CHECK_INT(store_move(s, "missing", "other"), -ENOENT);
	memset(&ns, 0, sizeof(ns));
	CHECK_INT(store_list(s, "nolevel", collect, &ns), -ENOENT);
	CHECK_INT(ns.n, 0);

	/* list */
	memset(&ns, 0, sizeof(ns));
	CHECK_INT(store_list(s, "", collect, &ns), 0);
	CHECK_INT(ns.n, 3);
	CHECK(has_name(&ns, "a") && has_name(&ns, "empty") && has_name(&ns, "domains"));
	memset(&ns, 0, sizeof(ns));
	CHECK_INT(store_list(s, "domains", collect, &ns), 0);
	CHECK_INT(ns.n, 2);
	CHECK(has_name(&ns, "example.com") && has_name(&ns, "*.example.org"));
	memset(&ns, 0, sizeof(ns));
	ns.stop_after = 1;
	CHECK_INT(store_list(s, "domains", collect, &ns), 0);
	CHECK_INT(ns.n, 1);

	/* move: creates the target's levels, refuses an existing target */
	CHECK_INT(store_move(s, "domains/example.com", "archive/2025/example.com"), 0);
	CHECK(!exists("domains/example.com"));
	CHECK_INT(get_str(s, "archive/2025/example.com/state", v, sizeof(v)), 0);
	CHECK_STR(v, "issued");
	CHECK_INT(mode_of("archive"), 0700);
	CHECK_INT(mode_of("archive/2025"), 0700);
	CHECK_INT(store_move(s, "a", "empty"), -EEXIST);
	CHECK_INT(get_str(s, "a", v, sizeof(v)), 0);
	CHECK_STR(v, "bye");
	CHECK_INT(get_str(s, "empty", v, sizeof(v)), 0);
	CHECK_STR(v, "");
	CHECK_INT(store_move(s, "domains/*.example.org", "archive/2025/example.com"), -EEXIST);
	CHECK_INT(store_move(s, "a", "b"), 0);
	CHECK_INT(get_str(s, "b", v, sizeof(v)), 0);
	CHECK_STR(v, "bye");
	CHECK_INT(get_str(s, "a", v, sizeof(v)), -ENOENT);

	/* del: a value, then a level once it is empty */
	CHECK_INT(store_del(s, "archive/2025"), -ENOTEMPTY);
	CHECK_INT(store_del(s, "archive/2025/example.com/state"), 0);
	CHECK_INT(get_str(s, "archive/2025/example.com/state", v, sizeof(v)), -ENOENT);
	memset(&ns, 0, sizeof(ns));
	CHECK_INT(store_list(s, "archive/2025/example.com", collect, &ns), -ENOENT);
	CHECK_INT(store_del(s, "archive/2025/example.com"), 0);
	CHECK_INT(store_del(s, "archive/2025"), 0);
	CHECK_INT(store_del(s, "archive"), 0);
	CHECK(!exists("archive"));

	/* bad keys reach no back end */
	{
		static const char *const bad[] = { "..", "a/../b", "/abs", "a//b", "", ".hidden",
						   "a/.b", "a\x01", "a b", "a/" };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			struct util_buf b;

			util_buf_init(&b, 100, false);
			CHECK_INT(store_put(s, bad[i], "x", 1), -EINVAL);
			CHECK_INT(store_get(s, bad[i], &b), -EINVAL);
			CHECK_INT(store_del(s, bad[i]), -EINVAL);
			CHECK_INT(store_move(s, bad[i], "ok"), -EINVAL);
			CHECK_INT(store_move(s, "b", bad[i]), -EINVAL);
			if (*bad[i])
				CHECK_INT(store_list(s, bad[i], collect, &ns), -EINVAL);
			util_buf_free(&b);
		}
		CHECK_INT(store_put(s, "ok", "x", 1), 0);
		{
			char k[300];

			memset(k, 'y', sizeof(k));
			k[256] = '\0';
			CHECK_INT(store_put(s, k, "x", 1), -EINVAL);
		}
		CHECK_INT(store_del(s, "ok"), 0);
	}
}

static void test_symlinks(struct store *s)
{
	char target[4200], link[4200], v[256];
	struct util_buf b;
	struct names ns;

	/* A directory and a file outside the store that a symlink points at. */
	snprintf(target, sizeof(target), "%s/outside", tmpdir);
	CHECK_INT(mkdir(target, 0700), 0);
	snprintf(target, sizeof(target), "%s/outside/secret", tmpdir);
	{
		int fd = open(target, O_WRONLY | O_CREAT, 0600);

		CHECK(fd >= 0 && write(fd, "outside", 7) == 7);
		if (fd >= 0)
			close(fd);
	}
	snprintf(target, sizeof(target), "%s/outside", tmpdir);
	path_in(link, sizeof(link), "evil");
	CHECK_INT(symlink(target, link), 0);
	snprintf(target, sizeof(target), "%s/outside/secret", tmpdir);
	path_in(link, sizeof(link), "evilfile");
	CHECK_INT(symlink(target, link), 0);
	CHECK_INT(store_put(s, "lvl/x", "1", 1), 0);
	snprintf(target, sizeof(target), "%s/outside", tmpdir);
	path_in(link, sizeof(link), "lvl/evil");
	CHECK_INT(symlink(target, link), 0);

	util_buf_init(&b, 1000, false);
	CHECK_INT(store_get(s, "evil/secret", &b), -EINVAL);
	CHECK_INT(store_get(s, "evilfile", &b), -EINVAL);
	CHECK_INT(store_get(s, "lvl/evil/secret", &b), -EINVAL);
	CHECK_INT(b.len, 0);
	util_buf_free(&b);
	CHECK_INT(store_put(s, "evil/secret", "pwned", 5), -EINVAL);
	CHECK_INT(store_put(s, "evil/new", "pwned", 5), -EINVAL);
	CHECK_INT(store_put(s, "evilfile", "pwned", 5), -EINVAL);
	CHECK_INT(store_put(s, "lvl/evil/secret", "pwned", 5), -EINVAL);
	memset(&ns, 0, sizeof(ns));
	CHECK_INT(store_list(s, "evil", collect, &ns), -EINVAL);
	CHECK_INT(ns.n, 0);
	CHECK_INT(store_del(s, "evil/secret"), -EINVAL);
	CHECK_INT(store_del(s, "evilfile"), -EINVAL);
	CHECK_INT(store_move(s, "evilfile", "moved"), -EINVAL);
	CHECK_INT(store_move(s, "lvl/x", "evil/x"), -EINVAL);

	/* Nothing outside changed, and nothing was created there. */
	{
		char p[4200];
		int fd;
		ssize_t n;

		snprintf(p, sizeof(p), "%s/outside/secret", tmpdir);
		fd = open(p, O_RDONLY);
		n = fd >= 0 ? read(fd, v, sizeof(v) - 1) : -1;
		if (fd >= 0)
			close(fd);
		v[n > 0 ? n : 0] = '\0';
		CHECK_STR(v, "outside");
		snprintf(p, sizeof(p), "%s/outside/new", tmpdir);
		CHECK(access(p, F_OK) < 0);
		snprintf(p, sizeof(p), "%s/outside/x", tmpdir);
		CHECK(access(p, F_OK) < 0);
	}
	path_in(link, sizeof(link), "evil");
	unlink(link);
	path_in(link, sizeof(link), "evilfile");
	unlink(link);
	path_in(link, sizeof(link), "lvl/evil");
	unlink(link);
	CHECK_INT(store_del(s, "lvl/x"), 0);
	CHECK_INT(store_del(s, "lvl"), 0);
}

static void test_sizes(struct store *s)
{
	unsigned char *big = malloc(STORE_VALUE_MAX + 1);
	struct util_buf b;

	if (!big) {
		CHECK(!"out of memory");
		return;
	}
	for (size_t i = 0; i < STORE_VALUE_MAX + 1; i++)
		big[i] = (unsigned char)(i * 7 + (i >> 12));
	CHECK_INT(store_put(s, "big", big, STORE_VALUE_MAX), 0);
	CHECK_INT(store_put(s, "toobig", big, STORE_VALUE_MAX + 1), -EFBIG);
	CHECK(!exists("toobig"));
	util_buf_init(&b, STORE_VALUE_MAX, false);
	CHECK_INT(store_get(s, "big", &b), 0);
	CHECK_INT(b.len, STORE_VALUE_MAX);
	CHECK(b.len == STORE_VALUE_MAX && !memcmp(b.data, big, STORE_VALUE_MAX));
	util_buf_free(&b);
	/* A reader's cap is honoured and leaves its buffer as it was. */
	util_buf_init(&b, 1000, false);
	CHECK_INT(util_buf_append(&b, "pre", 3), 0);
	CHECK_INT(store_get(s, "big", &b), -EFBIG);
	CHECK_INT(b.len, 3);
	util_buf_free(&b);
	CHECK_INT(store_del(s, "big"), 0);
	free(big);
}

static void test_open_errors(void)
{
	char p[4200], err[256];
	struct store *s = NULL;
	int rc;

	/* A file is not a store. */
	snprintf(p, sizeof(p), "%s/plainfile", tmpdir);
	close(open(p, O_WRONLY | O_CREAT, 0600));
	rc = store_open(p, &s, err, sizeof(err));
	CHECK_INT(rc, -ENOTDIR);
	CHECK(s == NULL);
	CHECK_CONTAINS(err, "not a directory");
	CHECK(!strncmp(err, "store ", 6));
	/* The parent must exist: only the last level is created. */
	snprintf(p, sizeof(p), "%s/no/such/parent", tmpdir);
	rc = store_open(p, &s, err, sizeof(err));
	CHECK_INT(rc, -ENOENT);
	CHECK_CONTAINS(err, "parent directory does not exist");
	snprintf(p, sizeof(p), "%s/no", tmpdir);
	CHECK(access(p, F_OK) < 0);
	/* Not yet: etcd. */
	rc = store_open("etcd://127.0.0.1:2379/certfs", &s, err, sizeof(err));
	CHECK_INT(rc, -ENOTSUP);
	CHECK_STR(err, "store etcd://127.0.0.1:2379/certfs: etcd support is not built yet");
	rc = store_open("", &s, err, sizeof(err));
	CHECK_INT(rc, -EINVAL);
	/* A directory we cannot write (root may write anywhere: skipped then). */
	if (geteuid() != 0) {
		snprintf(p, sizeof(p), "%s/readonly", tmpdir);
		CHECK_INT(mkdir(p, 0500), 0);
		rc = store_open(p, &s, err, sizeof(err));
		CHECK_INT(rc, -EACCES);
		CHECK_CONTAINS(err, "permission denied");
		rmdir(p);
	}
	store_close(NULL);
}

static void test_tmp_cleanup(void)
{
	char err[256];
	struct store *s = NULL;
	struct names ns;

	CHECK_INT(store_open(root, &s, err, sizeof(err)), 0);
	CHECK_INT(store_put(s, "domains/x.example/state", "ok", 2), 0);
	store_close(s);
	s = NULL;
	/* What a crash between create and rename leaves behind. */
	write_raw(".tmp.123.1.state", "partial");
	write_raw("domains/.tmp.99.7.x.example", "partial");
	write_raw("domains/x.example/.tmp.4242.3.state", "par");
	write_raw(".keep", "not ours");
	{
		char p[4200];

		path_in(p, sizeof(p), ".tmp.dir");
		CHECK_INT(mkdir(p, 0700), 0);
	}
	CHECK_INT(store_open(root, &s, err, sizeof(err)), 0);
	CHECK(!exists(".tmp.123.1.state"));
	CHECK(!exists("domains/.tmp.99.7.x.example"));
	CHECK(!exists("domains/x.example/.tmp.4242.3.state"));
	CHECK(exists(".keep"));
	CHECK(exists(".tmp.dir"));
	{
		char v[64];

		CHECK_INT(get_str(s, "domains/x.example/state", v, sizeof(v)), 0);
		CHECK_STR(v, "ok");
	}
	/* Listing never shows a temporary of a put in flight. */
	memset(&ns, 0, sizeof(ns));
	write_raw("domains/.tmp.1.1.y", "in flight");
	CHECK_INT(store_list(s, "domains", collect, &ns), 0);
	CHECK_INT(ns.n, 2);
	CHECK(has_name(&ns, "x.example") && has_name(&ns, "*.example.org"));
	store_close(s);
	{
		char p[4200];

		path_in(p, sizeof(p), ".tmp.dir");
		rmdir(p);
		path_in(p, sizeof(p), ".keep");
		unlink(p);
		path_in(p, sizeof(p), "domains/.tmp.1.1.y");
		unlink(p);
	}
}

/*
 * The value of generation g: a header with its own length, then a fill
 * byte derived from g, so a torn or mixed file is always detected.
 */
static size_t make_value(unsigned g, char *buf, size_t cap)
{
	size_t len = 200 + (g * 7919u) % 60000u, h;

	if (len > cap)
		len = cap;
	h = (size_t)snprintf(buf, cap, "gen=%u len=%zu\n", g, len);
	memset(buf + h, 'a' + (int)(g % 26), len - h);
	return len;
}

static bool check_value(const unsigned char *p, size_t n, unsigned *gen)
{
	unsigned g;
	size_t len, h;
	char head[64];

	if (n < 40)
		return false;
	memcpy(head, p, 40);
	head[40] = '\0';
	if (sscanf(head, "gen=%u len=%zu\n", &g, &len) != 2 || len != n)
		return false;
	h = (size_t)(strchr(head, '\n') - head) + 1;
	for (size_t i = h; i < n; i++)
		if (p[i] != 'a' + g % 26)
			return false;
	*gen = g;
	return true;
}

static void test_kill9(void)
{
	static char buf[70000];
	char err[256];
	int rounds = 12;

	for (int r = 0; r < rounds; r++) {
		int pfd[2];
		pid_t pid;
		unsigned acked = 0, got = 0, gen = 0;
		ssize_t n;
		struct store *s = NULL;
		struct util_buf b;
		struct timespec ts;

		CHECK_INT(pipe(pfd), 0);
		pid = fork();
		if (pid < 0) {
			CHECK(!"fork");
			return;
		}
		if (pid == 0) {
			struct store *cs = NULL;

			close(pfd[0]);
			if (store_open(root, &cs, err, sizeof(err)))
				_exit(3);
			/* Each acknowledged generation is reported after put returned. */
			for (unsigned g = (unsigned)r * 100000u + 1;; g++) {
				size_t len = make_value(g, buf, sizeof(buf));

				if (store_put(cs, "kill/value", buf, len))
					_exit(4);
				if (write(pfd[1], &g, sizeof(g)) != sizeof(g))
					_exit(5);
			}
		}
		close(pfd[1]);
		/* Let a few puts through, then kill at a varying point. */
		for (int i = 0; i < 3; i++) {
			n = read(pfd[0], &got, sizeof(got));
			if (n == sizeof(got))
				acked = got;
		}
		ts.tv_sec = 0;
		ts.tv_nsec = (long)(r * 1700 + 300) * 1000L;
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		while ((n = read(pfd[0], &got, sizeof(got))) == sizeof(got))
			acked = got;
		close(pfd[0]);

		CHECK_INT(store_open(root, &s, err, sizeof(err)), 0);
		if (!s)
			return;
		util_buf_init(&b, STORE_VALUE_MAX, false);
		CHECK_INT(store_get(s, "kill/value", &b), 0);
		if (!check_value(b.data, b.len, &gen)) {
			fprintf(stderr, "round %d: torn value of %zu bytes\n", r, b.len);
			check_failures++;
		} else if (gen < acked) {
			fprintf(stderr, "round %d: acknowledged %u, found %u\n", r, acked, gen);
			check_failures++;
		}
		util_buf_free(&b);
		store_close(s);
		/* The reopen swept the temporary the kill may have left. */
		{
			char p[4200];
			int leftovers = 0;
			FILE *f;

			snprintf(p, sizeof(p), "ls -A '%s/kill' | grep -c '^\\.tmp\\.'", root);
			f = popen(p, "r");
			if (f) {
				if (fscanf(f, "%d", &leftovers) != 1)
					leftovers = -1;
				pclose(f);
			}
			CHECK_INT(leftovers, 0);
		}
	}
}

static void rm_rf(const char *path)
{
	char cmd[4300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", path);
}

static void test_lock(void)
{
	struct store *a = NULL, *b = NULL;
	char err[600] = "";
	pid_t pid;
	int status, pipefd[2];

	CHECK_INT(store_open(root, &a, err, sizeof(err)), 0);
	CHECK_INT(store_open(root, &b, err, sizeof(err)), 0);
	if (!a || !b)
		goto out;
	CHECK_INT(store_lock(a, "pid 1, mounted on /first", err, sizeof(err)), 0);
	/* Again, with a new owner line (after a fork): still held. */
	CHECK_INT(store_lock(a, "pid 2, mounted on /a", err, sizeof(err)), 0);
	CHECK_INT(store_lock(b, "pid 3, mounted on /b", err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, "in use by another certfs (pid 2, mounted on /a)") != NULL);
	/* The lock file is not a key. */
	CHECK_INT(mode_of(".lock"), 0600);
	store_close(a);
	a = NULL;
	CHECK_INT(store_lock(b, "pid 3, mounted on /b", err, sizeof(err)), 0);
	store_close(b);
	b = NULL;

	/* A holder killed with SIGKILL leaves the file but not the lock. */
	if (pipe(pipefd) < 0)
		goto out;
	pid = fork();
	if (pid == 0) {
		struct store *c = NULL;
		char e2[600];

		if (store_open(root, &c, e2, sizeof(e2)) || store_lock(c, "pid x", e2, sizeof(e2)))
			_exit(1);
		if (write(pipefd[1], "l", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(pipefd[1]);
	{
		char ch = 0;

		CHECK_INT((int)read(pipefd[0], &ch, 1), 1);
	}
	close(pipefd[0]);
	CHECK_INT(store_open(root, &b, err, sizeof(err)), 0);
	CHECK_INT(store_lock(b, "pid 4", err, sizeof(err)), -EBUSY);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	CHECK_INT(store_lock(b, "pid 4", err, sizeof(err)), 0);
out:
	store_close(a);
	store_close(b);
}

int main(void)
{
	char err[256];
	struct store *s = NULL;

	/* Modes must come from the store, not from a permissive umask. */
	umask(0);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 99;
	}
	snprintf(root, sizeof(root), "%s/store", tmpdir);

	test_keys();
	CHECK_INT(store_open(root, &s, err, sizeof(err)), 0);
	if (!s) {
		fprintf(stderr, "%s\n", err);
		CHECK_DONE();
	}
	CHECK_INT(mode_of(""), 0700);
	CHECK_STR(s->spec, root);
	test_round_trips(s);
	test_symlinks(s);
	test_sizes(s);
	store_close(s);
	/* Opening an existing store again is fine. */
	CHECK_INT(store_open(root, &s, err, sizeof(err)), 0);
	store_close(s);
	test_open_errors();
	test_tmp_cleanup();
	test_kill9();
	test_lock();
	rm_rf(tmpdir);
	CHECK_DONE();
}
