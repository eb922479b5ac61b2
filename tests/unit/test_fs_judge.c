/* SPDX-License-Identifier: MIT */
/*
 * The judging pool: jobs run in order, never more at once than the pool
 * has threads, and a pool freed with jobs queued answers each of them as
 * cancelled (so every FLUSH gets its reply and every handle its release).
 * Jobs block on a gate the test opens, so nothing depends on timing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "fs/judge.h"
#include "tests/unit/check.h"

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	unsigned running, most, started, done, cancelled;
	int order[64];
	unsigned norder;
};

static struct gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

struct job {
	int id;
};

static void job_fn(void *arg, bool cancelled)
{
	struct job *j = arg;

	pthread_mutex_lock(&g.lock);
	if (cancelled) {
		g.cancelled++;
		pthread_mutex_unlock(&g.lock);
		free(j);
		return;
	}
	g.running++;
	g.started++;
	if (g.running > g.most)
		g.most = g.running;
	if (g.norder < 64)
		g.order[g.norder++] = j->id;
	pthread_cond_broadcast(&g.cond);
	while (!g.open)
		pthread_cond_wait(&g.cond, &g.lock);
	g.running--;
	g.done++;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	free(j);
}

static int submit(struct judge *p, int id)
{
	struct job *j = malloc(sizeof(*j));
	int rc;

	j->id = id;
	rc = judge_submit(p, job_fn, j);
	if (rc)
		free(j);
	return rc;
}

/* Wait until *count (one of g's counters) reaches n. */
static void wait_count(const unsigned *count, unsigned n)
{
	pthread_mutex_lock(&g.lock);
	while (*count < n)
		pthread_cond_wait(&g.cond, &g.lock);
	pthread_mutex_unlock(&g.lock);
}

static void set_open(bool open)
{
	pthread_mutex_lock(&g.lock);
	g.open = open;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
}

static void reset(void)
{
	pthread_mutex_lock(&g.lock);
	g.open = false;
	g.running = g.most = g.started = g.done = g.cancelled = g.norder = 0;
	pthread_mutex_unlock(&g.lock);
}

/* Twenty jobs on two threads: two at a time, all of them. */
static void test_bounded(void)
{
	struct judge *p;

	reset();
	CHECK_INT(judge_new(2, &p), 0);
	for (int i = 0; i < 20; i++)
		CHECK_INT(submit(p, i), 0);
	wait_count(&g.started, 2);
	CHECK_INT(judge_pending(p), 20);
	set_open(true);
	wait_count(&g.done, 20);
	judge_free(p);
	CHECK_INT(g.most, 2);
	CHECK_INT(g.cancelled, 0);
	CHECK_INT(g.norder, 20);
}

/* One thread: jobs run exactly in the order they were submitted. */
static void test_fifo(void)
{
	struct judge *p;

	reset();
	set_open(true);
	CHECK_INT(judge_new(1, &p), 0);
	for (int i = 0; i < 30; i++)
		CHECK_INT(submit(p, i), 0);
	wait_count(&g.done, 30);
	judge_free(p);
	CHECK_INT(g.most, 1);
	CHECK_INT(g.norder, 30);
	for (unsigned i = 0; i < g.norder; i++)
		CHECK_INT(g.order[i], i);
}

static void *free_main(void *p)
{
	judge_free(p);
	return NULL;
}

/* Freed while two run and three wait: the two finish, three cancelled. */
static void test_free_cancels_queued(void)
{
	struct judge *p;
	pthread_t t;

	reset();
	CHECK_INT(judge_new(2, &p), 0);
	for (int i = 0; i < 5; i++)
		CHECK_INT(submit(p, i), 0);
	unsigned extra = 0;
	int rc;

	wait_count(&g.started, 2);
	/* judge_free waits for the running jobs: open the gate once it has
	 * begun (a submission is refused from then on). */
	CHECK_INT(pthread_create(&t, NULL, free_main, p), 0);
	while ((rc = submit(p, 100)) == 0)
		extra++;
	CHECK_INT(rc, -ESHUTDOWN);
	set_open(true);
	pthread_join(t, NULL);
	CHECK_INT(g.done, 2);
	CHECK_INT(g.cancelled, 3 + extra);
}

static void test_bad_arguments(void)
{
	struct judge *p = (struct judge *)1;

	CHECK_INT(judge_new(0, &p), -EINVAL);
	CHECK(p == NULL);
	judge_free(NULL);
}

int main(void)
{
	test_bounded();
	test_fifo();
	test_free_cancels_queued();
	test_bad_arguments();
	return check_failures > 100 ? 100 : check_failures;
}
