/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr (with sd-daemon priority prefixes, so journald keeps the
 * level when certfs runs in the foreground under systemd) or to syslog once
 * the daemon has detached from its terminal.
 */
#include <pthread.h>
#include <stdio.h>
#include <syslog.h>

#include "util/util.h"

static enum util_log_level log_level = UTIL_LOG_INFO;
static bool log_syslog;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void util_log_set_level(enum util_log_level level)
{
	log_level = level;
}

void util_log_use_syslog(bool on)
{
	if (on && !log_syslog)
		openlog("certfs", LOG_PID, LOG_DAEMON);
	log_syslog = on;
}

void util_vlog(enum util_log_level level, const char *fmt, va_list ap)
{
	char line[1024];

	if (level > log_level)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	/* Control characters from names or peers must not forge log lines. */
	for (char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (log_syslog) {
		syslog((int)level, "%s", line);
		return;
	}
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "<%d>certfs: %s\n", (int)level, line);
	pthread_mutex_unlock(&log_lock);
}

void util_log(enum util_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	util_vlog(level, fmt, ap);
	va_end(ap);
}
