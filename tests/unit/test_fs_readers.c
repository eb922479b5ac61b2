/* SPDX-License-Identifier: MIT */
/*
 * Readers of certificate files, on a fake process table and a fake clock:
 * threads of one process are one reader, a rotation makes readers of the
 * old generation stale until they read the new one, an exited process is
 * never listed, a pid reused by another program is not the old reader, the
 * caps hold, and /proc is read once per thread until its answer is old.
 * Last, the real /proc functions against this very process and a child.
 */
#include <pthread.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs/readers.h"
#include "tests/unit/check.h"

#define NTHREADS 64

/* The fake process table: thread id -> process, and which processes run. */
struct fake_thread {
	pid_t tid, pid;
	uint64_t start;
	const char *comm;
	bool alive;
};

static struct fake_thread threads[NTHREADS];
static size_t nthreads;
static uint64_t clock_ms;
static time_t clock_wall = 1000000;
static unsigned identify_calls;

static void fake_reset(void)
{
	nthreads = 0;
	clock_ms = 0;
	clock_wall = 1000000;
	identify_calls = 0;
}

/* A thread tid of process pid (started at start), running. */
static void fake_thread(pid_t tid, pid_t pid, uint64_t start, const char *comm)
{
	for (size_t i = 0; i < nthreads; i++) {
		if (threads[i].tid == tid) {
			threads[i] = (struct fake_thread){tid, pid, start, comm, true};
			return;
		}
	}
	threads[nthreads++] = (struct fake_thread){tid, pid, start, comm, true};
}

static void fake_exit(pid_t pid, uint64_t start)
{
	for (size_t i = 0; i < nthreads; i++)
		if (threads[i].pid == pid && threads[i].start == start)
			threads[i].alive = false;
}

static int fake_identify(void *arg, pid_t tid, struct readers_ident *out)
{
	(void)arg;
	identify_calls++;
	for (size_t i = 0; i < nthreads; i++) {
		if (threads[i].tid == tid && threads[i].alive) {
			memset(out, 0, sizeof(*out));
			out->pid = threads[i].pid;
			out->start = threads[i].start;
			snprintf(out->comm, sizeof(out->comm), "%s", threads[i].comm);
			snprintf(out->exe, sizeof(out->exe), "/usr/sbin/%s", threads[i].comm);
			return 0;
		}
	}
	return -ESRCH;
}

static bool fake_alive(void *arg, pid_t pid, uint64_t start)
{
	(void)arg;
	for (size_t i = 0; i < nthreads; i++)
		if (threads[i].pid == pid && threads[i].start == start && threads[i].alive)
			return true;
	return false;
}

static uint64_t fake_mono(void *arg)
{
	(void)arg;
	return clock_ms;
}

static time_t fake_now(void *arg)
{
	(void)arg;
	return clock_wall;
}

static const struct readers_ops fake_ops = {
	.identify = fake_identify,
	.alive = fake_alive,
	.mono_ms = fake_mono,
	.now = fake_now,
};

static struct readers *make(size_t per_domain, size_t total)
{
	struct readers_config c = {.per_domain = per_domain, .total = total,
				   .tid_ttl_ms = 10000};
	struct readers *r = NULL;

	fake_reset();
	CHECK_INT(readers_new(&c, &fake_ops, &r), 0);
	return r;
}

static size_t stale(struct readers *r, const char *dom, uint64_t cur, struct readers_stale *out)
{
	return readers_stale(r, dom, cur, out, 8);
}

static void test_rotation_makes_stale(void)
{
	struct readers *r = make(64, 4096);
	struct readers_stale s[8];

	fake_thread(100, 100, 50, "nginx");
	fake_thread(300, 300, 70, "haproxy");
	readers_rotate(r, "a.example", 1);
	readers_note(r, "a.example", 1, 100);
	readers_note(r, "a.example", 1, 300);
	readers_note(r, "b.example", 4, 100);
	CHECK_INT(stale(r, "a.example", 1, s), 0);

	clock_wall += 60;
	clock_ms += 60000;
	readers_rotate(r, "a.example", 2);
	CHECK_INT(stale(r, "a.example", 2, s), 2);
	CHECK_INT(s[0].id.pid, 100);
	CHECK_STR(s[0].id.comm, "nginx");
	CHECK_STR(s[0].id.exe, "/usr/sbin/nginx");
	CHECK_INT(s[0].gen, 1);
	CHECK_INT(s[0].since, 1000060);
	CHECK_INT(s[0].read_at, 1000000);
	/* Another domain's rotation is its own. */
	CHECK_INT(stale(r, "b.example", 4, s), 0);

	/* Reading the new generation (a reload) ends it. */
	clock_wall += 5;
	readers_note(r, "a.example", 2, 100);
	CHECK_INT(stale(r, "a.example", 2, s), 1);
	CHECK_INT(s[0].id.pid, 300);
	/* An open of the old generation afterwards (the other half of a pair
	 * started before the rotation) does not make it stale again. */
	readers_note(r, "a.example", 1, 100);
	CHECK_INT(stale(r, "a.example", 2, s), 1);

	/* The engine may know of a newer generation than we were told of. */
	CHECK_INT(stale(r, "a.example", 3, s), 2);
	CHECK_INT(s[0].id.pid, 300);
	CHECK_INT(s[0].since, 1000060);
	CHECK_INT(s[1].id.pid, 100);
	CHECK_INT(s[1].since, 1000065);
	/* An unknown domain has none. */
	CHECK_INT(stale(r, "c.example", 9, s), 0);
	readers_free(r);
}

static void test_threads_are_one_process(void)
{
	struct readers *r = make(64, 4096);
	struct readers_stale s[8];
	struct readers_stats st;

	fake_thread(100, 100, 50, "nginx");
	fake_thread(101, 100, 50, "nginx");
	fake_thread(102, 100, 50, "nginx");
	for (int round = 0; round < 3; round++)
		for (pid_t t = 100; t <= 102; t++)
			readers_note(r, "a.example", 1, t);
	readers_get_stats(r, &st);
	CHECK_INT(st.records, 1);
	/* /proc is read once per thread, not per open. */
	CHECK_INT(identify_calls, 3);
	CHECK_INT(st.lookups, 3);
	readers_rotate(r, "a.example", 2);
	CHECK_INT(stale(r, "a.example", 2, s), 1);
	/* One thread of the process reading the new one covers the process. */
	readers_note(r, "a.example", 2, 102);
	CHECK_INT(stale(r, "a.example", 2, s), 0);
	/* Past the cache's lifetime a thread is asked about again. */
	clock_ms += 10000;
	readers_note(r, "a.example", 2, 102);
	CHECK_INT(identify_calls, 4);
	readers_free(r);
}

static void test_exited_never_listed(void)
{
	struct readers *r = make(64, 4096);
	struct readers_stale s[8];
	struct readers_stats st;

	fake_thread(100, 100, 50, "nginx");
	fake_thread(200, 200, 60, "cat");
	readers_note(r, "a.example", 1, 100);
	readers_note(r, "a.example", 1, 200);
	fake_exit(200, 60);
	readers_rotate(r, "a.example", 2);
	CHECK_INT(stale(r, "a.example", 2, s), 1);
	CHECK_INT(s[0].id.pid, 100);
	/* The dead one is forgotten. */
	readers_get_stats(r, &st);
	CHECK_INT(st.records, 1);
	/* A thread that is gone before it is identified is not recorded. */
	readers_note(r, "a.example", 1, 999);
	readers_get_stats(r, &st);
	CHECK_INT(st.records, 1);
	/* Nor is a caller FUSE cannot name (pid 0: another pid namespace),
	 * and nobody asks /proc about it. */
	identify_calls = 0;
	readers_note(r, "a.example", 1, 0);
	CHECK_INT(identify_calls, 0);
	readers_get_stats(r, &st);
	CHECK_INT(st.records, 1);
	readers_free(r);
}

static void test_reused_pid(void)
{
	struct readers *r = make(64, 4096);
	struct readers_stale s[8];

	/* nginx (pid 100, started at 50) reads generation 1, then exits; the
	 * kernel hands pid 100 to a shell that never reads anything. */
	fake_thread(100, 100, 50, "nginx");
	readers_note(r, "a.example", 1, 100);
	readers_rotate(r, "a.example", 2);
	CHECK_INT(stale(r, "a.example", 2, s), 1);
	fake_exit(100, 50);
	fake_thread(100, 100, 90, "bash");
	CHECK_INT(stale(r, "a.example", 2, s), 0);

	/* The other way round: the old reader lives on as far as the table
	 * knows, and the new program with its pid reads the new generation;
	 * that is not the old reader reloading. */
	fake_thread(500, 500, 10, "postfix");
	readers_note(r, "a.example", 2, 500);
	readers_rotate(r, "a.example", 3);
	fake_exit(500, 10);
	fake_thread(500, 500, 20, "openssl");
	clock_ms += 10000; /* the thread cache no longer vouches for tid 500 */
	readers_note(r, "a.example", 3, 500);
	fake_thread(600, 600, 30, "postfix");
	readers_note(r, "a.example", 2, 600);
	CHECK_INT(stale(r, "a.example", 3, s), 1);
	CHECK_INT(s[0].id.pid, 600);
	readers_free(r);
}

static void test_caps(void)
{
	struct readers *r = make(2, 3);
	struct readers_stale s[8];
	struct readers_stats st;

	for (pid_t p = 1; p <= 8; p++)
		fake_thread(p * 10, p * 10, (uint64_t)p, "proc");
	/* Per domain: two readers of the newest generation; a third takes the
	 * place of the one seen least recently. */
	readers_note(r, "a.example", 1, 10);
	clock_ms += 1;
	readers_note(r, "a.example", 1, 20);
	clock_ms += 1;
	readers_note(r, "a.example", 1, 10);
	clock_ms += 1;
	readers_note(r, "a.example", 1, 30);
	readers_get_stats(r, &st);
	CHECK_INT(st.records, 2);
	CHECK_INT(st.evicted, 1);
	readers_rotate(r, "a.example", 2);
	CHECK_INT(stale(r, "a.example", 2, s), 2);
	CHECK_INT(s[0].id.pid == 10 || s[1].id.pid == 10, 1);
	CHECK_INT(s[0].id.pid == 30 || s[1].id.pid == 30, 1);
	/* Both slots hold stale readers: a new reader is not recorded. */
	readers_note(r, "a.example", 2, 40);
	readers_get_stats(r, &st);
	CHECK_INT(st.dropped, 1);
	CHECK_INT(stale(r, "a.example", 2, s), 2);
	/* Overall: one more record fits, then the oldest reader of a newest
	 * generation anywhere makes way. */
	readers_note(r, "b.example", 1, 50);
	clock_ms += 1;
	readers_note(r, "c.example", 1, 60);
	readers_get_stats(r, &st);
	CHECK_INT(st.records, 3);
	CHECK_INT(st.evicted, 2);
	CHECK_INT(stale(r, "a.example", 2, s), 2);
	readers_free(r);
}

static void test_forget_and_version(void)
{
	struct readers *r = make(64, 4096);
	struct readers_stale s[8];
	uint64_t v1, v2;

	fake_thread(100, 100, 50, "nginx");
	readers_note(r, "a.example", 1, 100);
	v1 = readers_version(r, NULL);
	readers_note(r, "a.example", 1, 100);
	CHECK_INT(readers_version(r, NULL), v1); /* nothing new */
	readers_rotate(r, "a.example", 2);
	v2 = readers_version(r, NULL);
	CHECK(v2 != v1);
	/* While someone is on an old generation, every call differs. */
	CHECK(readers_version(r, NULL) != v2);
	readers_forget(r, "b.example");
	CHECK(readers_version(r, NULL) != v2);
	/* Per domain: only that domain's processes count. */
	CHECK(readers_version(r, "a.example") != readers_version(r, "a.example"));
	v2 = readers_version(r, "b.example");
	CHECK_INT(readers_version(r, "b.example"), v2);
	CHECK_INT(stale(r, "a.example", 2, s), 1);
	readers_forget(r, "A.Example"); /* as rmdir takes it */
	CHECK_INT(stale(r, "a.example", 2, s), 0);
	v1 = readers_version(r, NULL);
	CHECK_INT(readers_version(r, NULL), v1);
	readers_free(r);
}

static void test_bad_config(void)
{
	struct readers_config c = {.per_domain = 0, .total = 10, .tid_ttl_ms = 1};
	struct readers *r = NULL;

	CHECK_INT(readers_new(&c, &fake_ops, &r), -EINVAL);
	CHECK(r == NULL);
	readers_free(NULL);
}

/* ---- the real /proc ---------------------------------------------------------------- */

struct thread_arg {
	pid_t tid;
};

static void *report_tid(void *arg)
{
	struct thread_arg *a = arg;

	a->tid = gettid();
	return NULL;
}

static void test_proc(void)
{
	struct readers_ident id, tid_id;
	struct thread_arg ta = {0};
	pthread_t th;
	pid_t child;
	int status, fds[2];

	CHECK_INT(readers_proc_ops.identify(NULL, getpid(), &id), 0);
	CHECK_INT(id.pid, getpid());
	CHECK(id.start > 0);
	CHECK_STR(id.comm, "test_fs_readers");
	CHECK(strstr(id.exe, "test_fs_readers") != NULL);
	CHECK(readers_proc_ops.alive(NULL, getpid(), id.start));
	CHECK(!readers_proc_ops.alive(NULL, getpid(), id.start + 1));

	/* Another thread of this process is this process. */
	CHECK_INT(pthread_create(&th, NULL, report_tid, &ta), 0);
	pthread_join(th, NULL);
	/* The thread has ended: its tid is gone. */
	CHECK(readers_proc_ops.identify(NULL, ta.tid, &tid_id) != 0);

	/* A child that has exited (reaped) is not alive, and is gone. */
	CHECK_INT(pipe(fds), 0);
	child = fork();
	if (child == 0) {
		char c;

		close(fds[1]);
		_exit(read(fds[0], &c, 1) < 0);
	}
	close(fds[0]);
	CHECK_INT(readers_proc_ops.identify(NULL, child, &tid_id), 0);
	CHECK_INT(tid_id.pid, child);
	CHECK(readers_proc_ops.alive(NULL, child, tid_id.start));
	close(fds[1]);
	waitpid(child, &status, 0);
	CHECK(!readers_proc_ops.alive(NULL, child, tid_id.start));
	CHECK_INT(readers_proc_ops.identify(NULL, child, &tid_id), -ESRCH);
}

/* A live thread's tid maps to this process. */
static void *identify_self(void *arg)
{
	struct readers_ident *id = arg;

	if (readers_proc_ops.identify(NULL, gettid(), id))
		id->pid = -1;
	return NULL;
}

static void test_proc_thread(void)
{
	struct readers_ident id = {0}, me;
	pthread_t th;

	CHECK_INT(readers_proc_ops.identify(NULL, getpid(), &me), 0);
	CHECK_INT(pthread_create(&th, NULL, identify_self, &id), 0);
	pthread_join(th, NULL);
	CHECK_INT(id.pid, getpid());
	CHECK_INT(id.start, me.start);
}

int main(void)
{
	test_rotation_makes_stale();
	test_threads_are_one_process();
	test_exited_never_listed();
	test_reused_pid();
	test_caps();
	test_forget_and_version();
	test_bad_config();
	test_proc();
	test_proc_thread();
	return check_failures > 100 ? 100 : check_failures;
}
