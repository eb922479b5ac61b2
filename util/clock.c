/* SPDX-License-Identifier: MIT */
/*
 * The wall clock for certificate decisions, with a test-controlled offset
 * (CERTFS_CLOCK_FILE) so that expiry and renewal can be tested without
 * waiting and without preloading a fake-time library into a sanitizer build.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "util/util.h"

static pthread_mutex_t clock_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timespec clock_mtime;
static long long clock_offset;

static long long clock_file_offset(const char *path)
{
	struct stat st;
	long long off;
	FILE *f;

	if (stat(path, &st) < 0)
		return 0;
	pthread_mutex_lock(&clock_lock);
	if (st.st_mtim.tv_sec != clock_mtime.tv_sec ||
	    st.st_mtim.tv_nsec != clock_mtime.tv_nsec) {
		f = fopen(path, "re");
		if (f) {
			if (fscanf(f, "%lld", &off) == 1)
				clock_offset = off;
			fclose(f);
		}
		clock_mtime = st.st_mtim;
	}
	off = clock_offset;
	pthread_mutex_unlock(&clock_lock);
	return off;
}

time_t util_now(void)
{
	static const char *path;
	static bool looked;
	time_t now = time(NULL);

	if (!looked) {
		path = getenv("CERTFS_CLOCK_FILE");
		looked = true;
	}
	if (path && *path)
		now += (time_t)clock_file_offset(path);
	return now;
}

uint64_t util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void util_deadline_ms(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void util_format_date(time_t t, char *out, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%d", &tm);
}

void util_format_time(time_t t, char *out, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
