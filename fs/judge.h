/* SPDX-License-Identifier: MIT */
/*
 * judge: a small pool of threads on which fs judges uploads, so that a
 * costly upload (a PFX at the iteration cap, a long chain) occupies one of
 * these threads, never a FUSE worker: while any number of uploads wait for
 * their verdict, every other request of the mount is answered at once. The
 * FLUSH that carries the upload is answered from the pool when its verdict
 * is known (libfuse lets any thread reply to a request).
 *
 * No FUSE and no engine calls in here: a job is a function and its
 * argument. Jobs run in the order they were submitted, at most nthreads at
 * a time. judge_free() runs every job still queued with cancelled set, so
 * that each one's owner can answer its request and free what it holds.
 */
#ifndef CERTFS_FS_JUDGE_H
#define CERTFS_FS_JUDGE_H

#include <stdbool.h>

struct judge;

/* cancelled: the pool is being freed and the job was never started. */
typedef void (*judge_fn)(void *arg, bool cancelled);

/* A pool of nthreads (>= 1) threads. 0 or -errno. */
int judge_new(unsigned nthreads, struct judge **out);
/* Queue fn(arg). -ESHUTDOWN once judge_free has begun, -ENOMEM. */
int judge_submit(struct judge *j, judge_fn fn, void *arg);
/* Jobs queued or running now (for tests and status). */
unsigned judge_pending(struct judge *j);
/* Wait for running jobs, cancel queued ones, join the threads, free. */
void judge_free(struct judge *j);

#endif
