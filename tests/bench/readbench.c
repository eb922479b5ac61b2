/* SPDX-License-Identifier: MIT */
/*
 * readbench: the hot loops of the certfs benchmarks, in C because the
 * operations measured take about a microsecond and an interpreter would
 * measure itself. Driven by tests/bench/bench.py; every mode prints one
 * line of `key=value` pairs on stdout (latencies in nanoseconds).
 *
 *   readbench read PATH SECONDS THREADS WARMUP_SECONDS
 *       each thread loops open + read to EOF + close of PATH; after the
 *       warm-up, every operation is timed for SECONDS. Prints ops, ops/s,
 *       p50/p99/max latency, and how many reads returned another size
 *       than the first one did (a torn or changing file) or failed.
 *   readbench once PATH N
 *       N consecutive open + read to EOF + close in this process; prints
 *       the latency of each (the first one is the cold one).
 *   readbench scan DIR REPEAT
 *       readdir of DIR and fstatat of every entry; for every directory
 *       among them, readdir and fstatat of its entries. Prints the time
 *       of each of the REPEAT passes.
 *   readbench readall DIR COPYDIR|- THREADS [NAMESFILE]
 *       reads every readable regular file of DIR and of each of its
 *       subdirectories once to EOF (each subdirectory by one thread);
 *       with NAMESFILE, the subdirectories named there (one per line)
 *       instead of those readdir lists;
 *       with COPYDIR, writes a copy of the tree there (same modes; files
 *       nobody may read are copied empty).
 *
 * Build: cc -O2 -pthread -o readbench readbench.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ (256 * 1024)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "readbench: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* open + read to EOF + close; returns bytes read, or -errno. */
static long read_file(int dirfd, const char *path, char *buf, size_t bufsz)
{
	long total = 0;
	ssize_t n;
	int fd, saved;

	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf, bufsz)) > 0)
		total += n;
	saved = errno;
	close(fd);
	if (n < 0)
		return -saved;
	return total;
}

/* open + read the whole file into *buf (grown as needed); bytes or -errno. */
static long slurp(int dirfd, const char *path, char **buf, size_t *cap)
{
	size_t len = 0;
	ssize_t n;
	int fd, saved;

	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		if (*cap - len < 65536) {
			char *nb = realloc(*buf, *cap * 2);

			if (!nb)
				die("realloc");
			*buf = nb;
			*cap *= 2;
		}
		n = read(fd, *buf + len, *cap - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	saved = errno;
	close(fd);
	if (n < 0)
		return -saved;
	return (long)len;
}

/* ------------------------------------------------------------ read */

struct samples {
	uint32_t *v;
	size_t n, cap;
};

static void samples_add(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1 << 16;
		uint32_t *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			die("realloc");
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

struct reader {
	pthread_t tid;
	const char *path;
	struct samples s;
	uint64_t bytes, size_changes, errors;
	long first_size;
};

static atomic_int phase; /* 0 warm-up, 1 measure, 2 stop */
static pthread_barrier_t start_barrier;

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	char *buf = malloc(BUFSZ);
	int p;

	if (!buf)
		die("malloc");
	r->first_size = -1;
	pthread_barrier_wait(&start_barrier);
	while ((p = atomic_load_explicit(&phase, memory_order_relaxed)) != 2) {
		uint64_t t0 = now_ns();
		long n = read_file(AT_FDCWD, r->path, buf, BUFSZ);
		uint64_t t1 = now_ns();

		if (n < 0) {
			r->errors++;
			continue;
		}
		if (r->first_size < 0)
			r->first_size = n;
		if (p != 1)
			continue;
		if (n != r->first_size)
			r->size_changes++;
		r->bytes += (uint64_t)n;
		samples_add(&r->s, t1 - t0);
	}
	free(buf);
	return NULL;
}

static void sleep_s(double s)
{
	struct timespec ts;

	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int mode_read(const char *path, double seconds, int threads, double warmup)
{
	struct reader *r = calloc((size_t)threads, sizeof(*r));
	struct samples all = {0};
	uint64_t t0, t1, bytes = 0, changes = 0, errors = 0;
	int i;

	if (!r)
		die("calloc");
	pthread_barrier_init(&start_barrier, NULL, (unsigned)threads + 1);
	for (i = 0; i < threads; i++) {
		r[i].path = path;
		if (pthread_create(&r[i].tid, NULL, reader_main, &r[i]))
			die("pthread_create");
	}
	pthread_barrier_wait(&start_barrier);
	sleep_s(warmup);
	t0 = now_ns();
	atomic_store(&phase, 1);
	sleep_s(seconds);
	atomic_store(&phase, 2);
	t1 = now_ns();
	for (i = 0; i < threads; i++) {
		pthread_join(r[i].tid, NULL);
		bytes += r[i].bytes;
		changes += r[i].size_changes;
		errors += r[i].errors;
		for (size_t k = 0; k < r[i].s.n; k++)
			samples_add(&all, r[i].s.v[k]);
		free(r[i].s.v);
	}
	if (all.n == 0) {
		printf("ops=0 errors=%llu\n", (unsigned long long)errors);
		return 1;
	}
	qsort(all.v, all.n, sizeof(*all.v), cmp_u32);
	printf("ops=%zu seconds=%.3f ops_per_s=%.1f p50_ns=%u p99_ns=%u max_ns=%u "
	       "bytes_per_op=%.1f size_changes=%llu errors=%llu threads=%d\n",
	       all.n, (double)(t1 - t0) / 1e9, (double)all.n * 1e9 / (double)(t1 - t0),
	       all.v[all.n / 2], all.v[(size_t)((double)all.n * 0.99)], all.v[all.n - 1],
	       (double)bytes / (double)all.n, (unsigned long long)changes,
	       (unsigned long long)errors, threads);
	free(all.v);
	free(r);
	return 0;
}

/* ------------------------------------------------------------ once */

static int mode_once(const char *path, int n)
{
	char *buf = malloc(BUFSZ);
	long size = -1;
	int i;

	if (!buf)
		die("malloc");
	printf("ns=");
	for (i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		long got = read_file(AT_FDCWD, path, buf, BUFSZ);
		uint64_t t1 = now_ns();

		if (got < 0) {
			errno = (int)-got;
			die(path);
		}
		size = got;
		printf("%s%llu", i ? "," : "", (unsigned long long)(t1 - t0));
	}
	printf(" bytes=%ld\n", size);
	free(buf);
	return 0;
}

/* ------------------------------------------------------------ scan */

static int mode_scan(const char *dir, int repeat)
{
	int i;

	printf("ns=");
	for (i = 0; i < repeat; i++) {
		uint64_t t0 = now_ns(), entries = 0, files = 0;
		struct dirent *de;
		struct stat st;
		DIR *d = opendir(dir);

		if (!d)
			die(dir);
		while ((de = readdir(d))) {
			DIR *sub;
			struct dirent *se;
			int fd;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			entries++;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				die(de->d_name);
			if (!S_ISDIR(st.st_mode))
				continue;
			fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd < 0)
				die(de->d_name);
			sub = fdopendir(fd);
			if (!sub)
				die("fdopendir");
			while ((se = readdir(sub))) {
				if (!strcmp(se->d_name, ".") || !strcmp(se->d_name, ".."))
					continue;
				if (fstatat(dirfd(sub), se->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
					die(se->d_name);
				files++;
			}
			closedir(sub);
		}
		closedir(d);
		printf("%s%llu", i ? "," : "", (unsigned long long)(now_ns() - t0));
		if (i == repeat - 1)
			printf(" entries=%llu files=%llu\n", (unsigned long long)entries,
			       (unsigned long long)files);
	}
	return 0;
}

/* ------------------------------------------------------------ readall */

struct walk {
	const char *dir;
	const char *copy; /* NULL: no copy */
	char **names;
	size_t n;
	atomic_size_t next;
	atomic_ullong files, bytes, errors;
};

static void copy_out(const char *copydir, const char *sub, const char *name,
		     const char *data, long len, mode_t mode, struct walk *w)
{
	char path[4096];
	int fd;

	if (sub)
		snprintf(path, sizeof(path), "%s/%s/%s", copydir, sub, name);
	else
		snprintf(path, sizeof(path), "%s/%s", copydir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
	if (fd < 0 || write(fd, data, (size_t)len) != len) {
		fprintf(stderr, "readbench: copy %s: %s\n", path, strerror(errno));
		atomic_fetch_add(&w->errors, 1);
	}
	if (fd >= 0)
		close(fd);
}

/* Reads every readable regular file in dirfd (named sub for the copy). */
static void read_dir_files(struct walk *w, int dfd, const char *sub, char **buf,
			   size_t *cap)
{
	DIR *d;
	struct dirent *de;
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || !(d = fdopendir(fd))) {
		atomic_fetch_add(&w->errors, 1);
		return;
	}
	if (w->copy && sub) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s", w->copy, sub);
		mkdir(path, 0755);
	}
	while ((de = readdir(d))) {
		struct stat st;
		long n;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			atomic_fetch_add(&w->errors, 1);
			continue;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		if (!(st.st_mode & 0444)) {
			/* write-only (request.csr, passphrase): not read, but the
			 * copy gets an empty file so both trees list alike */
			if (w->copy)
				copy_out(w->copy, sub, de->d_name, *buf, 0, st.st_mode, w);
			continue;
		}
		n = slurp(dirfd(d), de->d_name, buf, cap);
		if (n < 0) {
			fprintf(stderr, "readbench: read %s/%s: %s\n", sub ? sub : ".",
				de->d_name, strerror((int)-n));
			atomic_fetch_add(&w->errors, 1);
			continue;
		}
		if (n != st.st_size) {
			fprintf(stderr, "readbench: %s/%s: read %ld bytes, stat said %lld\n",
				sub ? sub : ".", de->d_name, n, (long long)st.st_size);
			atomic_fetch_add(&w->errors, 1);
		}
		atomic_fetch_add(&w->files, 1);
		atomic_fetch_add(&w->bytes, (unsigned long long)n);
		if (w->copy)
			copy_out(w->copy, sub, de->d_name, *buf, n, st.st_mode, w);
	}
	closedir(d);
}

static void *walker_main(void *arg)
{
	struct walk *w = arg;
	size_t cap = BUFSZ;
	char *buf = malloc(cap);
	size_t i;

	if (!buf)
		die("malloc");
	while ((i = atomic_fetch_add(&w->next, 1)) < w->n) {
		char path[4096];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", w->dir, w->names[i]);
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			atomic_fetch_add(&w->errors, 1);
			continue;
		}
		read_dir_files(w, fd, w->names[i], &buf, &cap);
		close(fd);
	}
	free(buf);
	return NULL;
}

static void add_name(struct walk *w, size_t *cap, const char *name)
{
	if (w->n == *cap) {
		*cap = *cap ? *cap * 2 : 1024;
		w->names = realloc(w->names, *cap * sizeof(*w->names));
		if (!w->names)
			die("realloc");
	}
	w->names[w->n] = strdup(name);
	if (!w->names[w->n])
		die("strdup");
	w->n++;
}

static int mode_readall(const char *dir, const char *copy, int threads, const char *namesfile)
{
	struct walk w = {.dir = dir, .copy = copy};
	pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
	size_t cap = 0;
	struct dirent *de;
	uint64_t t0 = now_ns();
	size_t bufcap = BUFSZ;
	char *buf = malloc(bufcap);
	DIR *d = opendir(dir);
	int i;

	if (!d || !tids || !buf)
		die(dir);
	if (copy)
		mkdir(copy, 0755);
	if (namesfile) {
		/* the domains to read, one per line, instead of the listing */
		FILE *fp = fopen(namesfile, "re");
		char line[1024];

		if (!fp)
			die(namesfile);
		while (fgets(line, sizeof(line), fp)) {
			line[strcspn(line, "\r\n")] = '\0';
			if (line[0])
				add_name(&w, &cap, line);
		}
		fclose(fp);
	}
	while (!namesfile && (de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.')
			continue; /* ., .., .well-known */
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		add_name(&w, &cap, de->d_name);
	}
	/* the root's own files (status, ca.pem, ...) */
	read_dir_files(&w, dirfd(d), NULL, &buf, &bufcap);
	closedir(d);
	for (i = 0; i < threads; i++)
		if (pthread_create(&tids[i], NULL, walker_main, &w))
			die("pthread_create");
	for (i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	printf("ns=%llu domains=%zu files=%llu bytes=%llu errors=%llu\n",
	       (unsigned long long)(now_ns() - t0), w.n,
	       (unsigned long long)w.files, (unsigned long long)w.bytes,
	       (unsigned long long)w.errors);
	for (size_t k = 0; k < w.n; k++)
		free(w.names[k]);
	free(w.names);
	free(tids);
	free(buf);
	return w.errors ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: readbench read PATH SECONDS THREADS WARMUP_SECONDS\n"
		"       readbench once PATH N\n"
		"       readbench scan DIR REPEAT\n"
		"       readbench readall DIR COPYDIR|- THREADS [NAMESFILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 6 && !strcmp(argv[1], "read"))
		return mode_read(argv[2], atof(argv[3]), atoi(argv[4]), atof(argv[5]));
	if (argc == 4 && !strcmp(argv[1], "once"))
		return mode_once(argv[2], atoi(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "scan"))
		return mode_scan(argv[2], atoi(argv[3]));
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "readall"))
		return mode_readall(argv[2], strcmp(argv[3], "-") ? argv[3] : NULL,
				    atoi(argv[4]), argc == 6 ? argv[5] : NULL);
	usage();
	return 2;
}
