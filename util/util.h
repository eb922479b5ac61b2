/* SPDX-License-Identifier: MIT */
/*
 * util: the small pieces every other module leans on: logging, a capped
 * length-carrying buffer (for anything that came from a file, the network or
 * a writer), secret wiping, durable file replacement and the clock.
 *
 * Nothing here knows about certificates, FUSE or the store layout.
 */
#ifndef CERTFS_UTIL_H
#define CERTFS_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define UTIL_WUR __attribute__((warn_unused_result))
#define UTIL_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- logging ---------------------------------------------------------- */

enum util_log_level {
	UTIL_LOG_ERR = 3,
	UTIL_LOG_WARN = 4,
	UTIL_LOG_INFO = 6,
	UTIL_LOG_DEBUG = 7,
};

/* Messages above the level are dropped. Default UTIL_LOG_INFO. */
void util_log_set_level(enum util_log_level level);
/* Send messages to syslog(3) (LOG_DAEMON) instead of stderr. */
void util_log_use_syslog(bool on);
/* Counts the lines kept for util_log_recent: it moves when they change. */
uint64_t util_log_version(void);
/* Does a syslog daemon accept messages on /dev/log right now? */
bool util_log_syslog_available(void);
/*
 * Log one line: "module: object: action: reason". On stderr each line gets
 * the sd-daemon "<N>" priority prefix so journald keeps the level. Never pass
 * secret bytes. Thread-safe.
 */
void util_log(enum util_log_level level, const char *fmt, ...) UTIL_PRINTF(2, 3);
void util_vlog(enum util_log_level level, const char *fmt, va_list ap);
struct util_buf;
/* Append the recent messages (info and above, oldest first), one per line:
 * "TIME LEVEL message"; only those that hold one of the two strings when
 * they are not NULL. Thread-safe. */
int util_log_recent(struct util_buf *out, const char *has, const char *or_has) UTIL_WUR;

#define util_err(...) util_log(UTIL_LOG_ERR, __VA_ARGS__)
#define util_warn(...) util_log(UTIL_LOG_WARN, __VA_ARGS__)
#define util_info(...) util_log(UTIL_LOG_INFO, __VA_ARGS__)
#define util_debug(...) util_log(UTIL_LOG_DEBUG, __VA_ARGS__)

/* ---- memory ------------------------------------------------------------ */

/* Overwrite memory in a way the compiler may not drop. NULL is a no-op. */
void util_wipe(void *p, size_t len);
/* Wipe then free a NUL-terminated secret string (from malloc or
 * util_secret_alloc). NULL is a no-op. */
void util_secret_str_free(char *s);

/*
 * Secret memory, for keys and passphrases: zeroed blocks from a region that
 * core dumps leave out (MADV_DONTDUMP), wiped when freed; from malloc when
 * the region is full. util_secret_free also takes (and wipes) any malloc'd
 * pointer; NULL is a no-op. Thread-safe.
 */
void *util_secret_alloc(size_t n);
void util_secret_free(void *p);
/* A copy of s in secret memory (free with util_secret_str_free); NULL on ENOMEM. */
char *util_secret_strdup(const char *s);
/* Is p inside the region core dumps leave out? (For tests.) */
bool util_secret_kept_from_dumps(const void *p);

/*
 * A growable byte buffer with a hard maximum, like curl's capped dynbuf.
 * Never a C string unless the caller appends the NUL itself. A secret buffer
 * is wiped before its memory is released or moved.
 */
struct util_buf {
	unsigned char *data;
	size_t len;
	size_t cap;
	size_t max;
	bool secret;
};

void util_buf_init(struct util_buf *b, size_t max, bool secret);
/* Append; -EFBIG when len would pass max (nothing appended), -ENOMEM. */
int util_buf_append(struct util_buf *b, const void *p, size_t n) UTIL_WUR;
/* Append a NUL without counting it in len (so data can be read as a string). */
int util_buf_terminate(struct util_buf *b) UTIL_WUR;
int util_buf_printf(struct util_buf *b, const char *fmt, ...) UTIL_PRINTF(2, 3) UTIL_WUR;
/* Drop the contents (wiped if secret), keep the allocation. */
void util_buf_reset(struct util_buf *b);
/* Release the allocation (wiped if secret). The buffer can be reused. */
void util_buf_free(struct util_buf *b);
/* Give back unused capacity (for buffers that live long once filled). */
void util_buf_shrink(struct util_buf *b);
/* Hand the bytes to the caller (who frees them with free(), or with
 * util_secret_free() for a secret buffer); the buffer is emptied. */
unsigned char *util_buf_take(struct util_buf *b, size_t *len);

/* ---- files ------------------------------------------------------------- */

/*
 * Replace dirfd/name durably: write a new temporary file (mode, O_EXCL,
 * O_NOFOLLOW), fsync it, rename it over name, fsync the directory. On any
 * failure the old file is untouched and the temporary is removed.
 * Returns 0 or -errno (-ENOSPC on a full disk).
 */
int util_file_replace(int dirfd, const char *name, const void *data, size_t len,
		      mode_t mode) UTIL_WUR;
/*
 * Read a regular file below dirfd without following symlinks, into b
 * (whose max bounds the size: -EFBIG past it). -ENOENT if missing,
 * -EINVAL if not a regular file.
 */
int util_file_read(int dirfd, const char *name, struct util_buf *b) UTIL_WUR;
/* fsync a directory by fd. */
int util_dir_sync(int dirfd) UTIL_WUR;

/* ---- time -------------------------------------------------------------- */

/*
 * Wall-clock seconds used for every certificate decision (validity, expiry
 * warnings, renewal). It is time(NULL) plus an offset that tests control:
 * when the environment variable CERTFS_CLOCK_FILE names a file, its first
 * line (a signed number of seconds) is added. The file is re-read when its
 * mtime changes, so a test moves the clock by rewriting it.
 */
time_t util_now(void);
/* Monotonic milliseconds, for waits and timeouts. */
uint64_t util_mono_ms(void);
/* Format t as "2025-01-03" (UTC) into out (at least 11 bytes). */
void util_format_date(time_t t, char *out, size_t len);
/* Format t as RFC 3339 "2025-01-03T04:05:06Z" into out (at least 21 bytes). */
void util_format_time(time_t t, char *out, size_t len);

#endif
