/* SPDX-License-Identifier: MIT */
/*
 * The judging pool (see judge.h): a FIFO of jobs and a fixed set of
 * threads that take them. One mutex guards the queue; a job runs with no
 * lock of the pool held.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "fs/judge.h"

struct judge_job {
	struct judge_job *next;
	judge_fn fn;
	void *arg;
};

struct judge {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct judge_job *head, *tail;
	unsigned pending; /* queued + running */
	bool stopping;
	unsigned nthreads;
	pthread_t *threads;
};

static void *judge_main(void *arg)
{
	struct judge *j = arg;

	pthread_mutex_lock(&j->lock);
	for (;;) {
		struct judge_job *job;

		while (!j->stopping && !j->head)
			pthread_cond_wait(&j->cond, &j->lock);
		if (j->stopping)
			break;
		job = j->head;
		j->head = job->next;
		if (!j->head)
			j->tail = NULL;
		pthread_mutex_unlock(&j->lock);
		job->fn(job->arg, false);
		free(job);
		pthread_mutex_lock(&j->lock);
		j->pending--;
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

int judge_new(unsigned nthreads, struct judge **out)
{
	struct judge *j = calloc(1, sizeof(*j));

	*out = NULL;
	if (!j || !nthreads) {
		free(j);
		return j ? -EINVAL : -ENOMEM;
	}
	j->threads = calloc(nthreads, sizeof(*j->threads));
	if (!j->threads) {
		free(j);
		return -ENOMEM;
	}
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	for (; j->nthreads < nthreads; j->nthreads++) {
		int rc = pthread_create(&j->threads[j->nthreads], NULL, judge_main, j);

		if (rc) {
			judge_free(j);
			return -rc;
		}
	}
	*out = j;
	return 0;
}

int judge_submit(struct judge *j, judge_fn fn, void *arg)
{
	struct judge_job *job = calloc(1, sizeof(*job));

	if (!job)
		return -ENOMEM;
	job->fn = fn;
	job->arg = arg;
	pthread_mutex_lock(&j->lock);
	if (j->stopping) {
		pthread_mutex_unlock(&j->lock);
		free(job);
		return -ESHUTDOWN;
	}
	if (j->tail)
		j->tail->next = job;
	else
		j->head = job;
	j->tail = job;
	j->pending++;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	return 0;
}

unsigned judge_pending(struct judge *j)
{
	unsigned n;

	pthread_mutex_lock(&j->lock);
	n = j->pending;
	pthread_mutex_unlock(&j->lock);
	return n;
}

void judge_free(struct judge *j)
{
	struct judge_job *job;

	if (!j)
		return;
	pthread_mutex_lock(&j->lock);
	j->stopping = true;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	/* A running job finishes (a judgement is bounded); the rest are
	 * answered as cancelled. */
	for (unsigned i = 0; i < j->nthreads; i++)
		pthread_join(j->threads[i], NULL);
	while ((job = j->head)) {
		j->head = job->next;
		job->fn(job->arg, true);
		free(job);
	}
	pthread_cond_destroy(&j->cond);
	pthread_mutex_destroy(&j->lock);
	free(j->threads);
	free(j);
}
