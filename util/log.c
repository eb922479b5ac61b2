/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr (with sd-daemon priority prefixes, so journald keeps the
 * level when certfs runs in the foreground under systemd) or to syslog once
 * the daemon has detached from its terminal and a syslog daemon listens.
 * The last LOG_RECENT messages of level info and above are also kept in
 * memory, so that the tree can show them (MOUNT/log): a user whose mkdir was
 * refused reads why there, without access to the daemon's stderr or the
 * journal.
 */
#include <paths.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "util/util.h"

static enum util_log_level log_level = UTIL_LOG_INFO;
static bool log_syslog;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

#define LOG_RECENT 200
#define LOG_LINE 512
static struct {
	time_t when;
	enum util_log_level level;
	char line[LOG_LINE];
} recent[LOG_RECENT];
static size_t recent_next, recent_count; /* guarded by log_lock */
static uint64_t recent_total;             /* guarded by log_lock */

static void remember(enum util_log_level level, const char *line)
{
	pthread_mutex_lock(&log_lock);
	recent[recent_next].when = util_now();
	recent[recent_next].level = level;
	snprintf(recent[recent_next].line, LOG_LINE, "%.*s", LOG_LINE - 1, line);
	recent_next = (recent_next + 1) % LOG_RECENT;
	if (recent_count < LOG_RECENT)
		recent_count++;
	recent_total++;
	pthread_mutex_unlock(&log_lock);
}

uint64_t util_log_version(void)
{
	uint64_t v;

	pthread_mutex_lock(&log_lock);
	v = recent_total;
	pthread_mutex_unlock(&log_lock);
	return v;
}

int util_log_recent(struct util_buf *out, const char *has, const char *or_has)
{
	static const char *const names[] = {"emerg", "alert", "crit", "error",
					    "warning", "notice", "info", "debug"};
	int rc = 0;

	pthread_mutex_lock(&log_lock);
	for (size_t i = 0; !rc && i < recent_count; i++) {
		size_t k = (recent_next + LOG_RECENT - recent_count + i) % LOG_RECENT;
		char when[32];

		if (has && !strstr(recent[k].line, has) && (!or_has || !strstr(recent[k].line, or_has)))
			continue;
		util_format_time(recent[k].when, when, sizeof(when));
		rc = util_buf_printf(out, "%s %s %s\n", when,
				     names[recent[k].level & 7], recent[k].line);
	}
	pthread_mutex_unlock(&log_lock);
	return rc;
}

void util_log_set_level(enum util_log_level level)
{
	log_level = level;
}

void util_log_use_syslog(bool on)
{
	/* LOG_CONS: should the syslog daemon go away later, glibc writes to
	 * the console rather than dropping the line. */
	if (on && !log_syslog)
		openlog("certfs", LOG_PID | LOG_CONS | LOG_NDELAY, LOG_DAEMON);
	log_syslog = on;
}

bool util_log_syslog_available(void)
{
	/* What glibc's syslog() does: a datagram socket first, a stream one
	 * when the daemon listens that way (rsyslog can, journald does not). */
	static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	bool ok = false;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", _PATH_LOG);
	for (size_t i = 0; !ok && i < sizeof(types) / sizeof(types[0]); i++) {
		int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);

		if (fd < 0)
			continue;
		ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
	}
	return ok;
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
	if (level <= UTIL_LOG_INFO)
		remember(level, line);
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
