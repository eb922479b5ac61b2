/* SPDX-License-Identifier: MIT */
/*
 * certfs: the daemon. Parses the command line (also as called by mount.fuse3:
 * `certfs [SOURCE] MOUNTPOINT -o OPTIONS`, SOURCE being the store), loads the
 * configuration, opens the store, loads the domains, mounts, detaches from
 * the terminal unless -f, and serves until unmounted. SIGTERM and SIGINT
 * unmount and exit 0; SIGHUP reloads the configuration (libfuse's own
 * handler would unmount on SIGHUP, so that signal is taken by a thread of
 * ours instead). Every start-up failure is one line on stderr and exit 1,
 * before anything is mounted or after it is taken down again.
 * Under systemd (Type=notify) it says READY=1 once every mount (the main
 * one and --serve's) serves, a one-line STATUS=, RELOADING=1 around a
 * reload and STOPPING=1 before it unmounts; without NOTIFY_SOCKET those
 * calls do nothing.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "certfs_version.h"
#include "conf/conf.h"
#include "engine/engine.h"
#include "fs/fs.h"
#include "store/store.h"
#include "util/util.h"

#define DEFAULT_CONFIG "/etc/certfs/certfs.conf"
#define MAX_OVERRIDES 32
/* FUSE worker threads: defaults, and the most -o max_threads may ask. */
#define LOOP_IDLE_DEFAULT 10
#define LOOP_THREADS_DEFAULT 16
#define LOOP_THREADS_MAX 1000
/* The serving mount's threads: its requests are lookups and first reads. */
#define SERVE_IDLE_THREADS 2
#define SERVE_MAX_THREADS 4
/* malloc arenas (see main). */
#define MALLOC_ARENAS 2

/* One command-line setting, re-applied on every reload so it keeps winning. */
struct override {
	const char *section, *key, *value, *source;
};

struct options {
	char *config;
	char *source;     /* SOURCE positional: the store */
	char *mountpoint;
	int nonopts;
	bool read_only;
	bool show_help, show_version;
	struct override ov[MAX_OVERRIDES];
	int nov;
	char *store, *issuer, *acme_directory, *acme_email, *acme_ca_bundle, *http01_listen;
	char *serve; /* mountpoint of the serving mount, if any */
	char *tls_alpn01_listen;
};

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_RO,
};

#define OPT(t, p) {t, offsetof(struct options, p), 1}
static const struct fuse_opt opt_spec[] = {
	OPT("-c %s", config),
	OPT("--config=%s", config),
	OPT("--config %s", config),
	OPT("config=%s", config),
	OPT("--store=%s", store),
	OPT("--store %s", store),
	OPT("store=%s", store),
	OPT("--issuer=%s", issuer),
	OPT("--issuer %s", issuer),
	OPT("issuer=%s", issuer),
	OPT("--acme-directory=%s", acme_directory),
	OPT("--acme-directory %s", acme_directory),
	OPT("--acme-email=%s", acme_email),
	OPT("--acme-email %s", acme_email),
	OPT("--acme-ca-bundle=%s", acme_ca_bundle),
	OPT("--acme-ca-bundle %s", acme_ca_bundle),
	OPT("--http01-listen=%s", http01_listen),
	OPT("--http01-listen %s", http01_listen),
	OPT("--serve=%s", serve),
	OPT("--serve %s", serve),
	OPT("serve=%s", serve),
	OPT("--tls-alpn01-listen=%s", tls_alpn01_listen),
	OPT("--tls-alpn01-listen %s", tls_alpn01_listen),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		/* mount.fuse3 passes SOURCE before the mountpoint. */
		o->nonopts++;
		if (!o->mountpoint) {
			o->mountpoint = strdup(arg);
		} else if (!o->source) {
			o->source = o->mountpoint;
			o->mountpoint = strdup(arg);
		}
		return 0;
	case KEY_HELP:
		o->show_help = true;
		return 0;
	case KEY_VERSION:
		o->show_version = true;
		return 0;
	case KEY_RO:
		o->read_only = true;
		return 1; /* libfuse mounts it read-only too */
	default:
		return 1;
	}
}

static void usage(const char *prog)
{
	printf("usage: %s [OPTIONS] [STORE] MOUNTPOINT\n\n"
	       "Serve TLS certificates as files: one directory per domain.\n\n"
	       "  -c, --config FILE          configuration (default " DEFAULT_CONFIG
	       " if present)\n"
	       "  --store DIR                backing store directory\n"
	       "  --store etcd://HOST:PORT[,HOST:PORT...]/PREFIX\n"
	       "                             shared store in an etcd v3 cluster\n"
	       "  --issuer local|acme|selfsigned\n"
	       "                             who issues certificates for new domains\n"
	       "  --acme-directory URL       ACME server directory\n"
	       "  --acme-email ADDR          ACME account contact\n"
	       "  --acme-ca-bundle FILE      trust anchors for the ACME server's TLS\n"
	       "  --http01-listen ADDR:PORT  built-in HTTP-01 responder\n"
	       "  --serve DIR                also mount a read-only serving view on DIR\n"
	       "                             (the fast path for web servers)\n"
	       "  --tls-alpn01-listen ADDR:PORT\n"
	       "                             built-in TLS-ALPN-01 responder (RFC 8737)\n"
	       "  -f                         stay in the foreground\n"
	       "  -d                         debug (implies -f)\n"
	       "  -o OPT[,OPT...]            mount options (allow_other, ro, ...)\n"
	       "  -V, --version              print the version\n"
	       "  -h, --help                 this help\n\n"
	       "See certfs(8) and the README for the tree and the configuration keys.\n",
	       prog);
}

static void add_override(struct options *o, const char *section, const char *key,
			 const char *value, const char *source)
{
	if (value && o->nov < MAX_OVERRIDES)
		o->ov[o->nov++] = (struct override){section, key, value, source};
}

static char *default_store(void)
{
	const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	char buf[4096];

	if (geteuid() == 0)
		return strdup("/var/lib/certfs");
	if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "%s/certfs", xdg);
	else
		snprintf(buf, sizeof(buf), "%s/.local/share/certfs", home ? home : ".");
	return strdup(buf);
}

/* Build the configuration: defaults, the file, then the command line. */
static int load_conf(const struct options *o, struct conf *c, struct conf_err *err)
{
	const char *path = o->config;
	struct stat st;
	int rc;

	conf_init(c);
	if (!path && stat(DEFAULT_CONFIG, &st) == 0)
		path = DEFAULT_CONFIG;
	if (path) {
		rc = conf_load_file(c, path, err);
		if (rc)
			goto fail;
	}
	for (int i = 0; i < o->nov; i++) {
		rc = conf_set(c, o->ov[i].section, o->ov[i].key, o->ov[i].value, o->ov[i].source,
			      err);
		if (rc)
			goto fail;
	}
	if (!c->store) {
		c->store = default_store();
		if (!c->store) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	return 0;
fail:
	conf_clear(c);
	return rc;
}

/* Is path a mount point already? (A FUSE mount may stack on another.) */
static bool is_mounted(const char *path)
{
	char real[4096], line[8192];
	bool found = false;
	FILE *fp;

	if (!realpath(path, real))
		return false;
	fp = fopen("/proc/self/mountinfo", "re");
	if (!fp)
		return false;
	while (!found && fgets(line, sizeof(line), fp)) {
		char mnt[4096];

		/* Field 5 is the mount point (octal escapes for spaces are rare
		 * enough in mount points to compare raw). */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 && !strcmp(mnt, real))
			found = true;
	}
	fclose(fp);
	return found;
}

/* A mountpoint we can use: an existing directory with nothing mounted on it. */
static bool mountpoint_usable(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "certfs: mountpoint %s: %s\n", path, strerror(errno));
		return false;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "certfs: mountpoint %s: not a directory\n", path);
		return false;
	}
	if (is_mounted(path)) {
		fprintf(stderr, "certfs: mountpoint %s is already mounted\n", path);
		return false;
	}
	return true;
}

/*
 * The serving mount: the same libfuse options as the main mount (so
 * allow_other and the like apply to both), read-only.
 */
static int args_copy(const struct fuse_args *from, struct fuse_args *to)
{
	for (int n = 0; n < from->argc; n++)
		if (fuse_opt_add_arg(to, from->argv[n]))
			return -ENOMEM;
	return 0;
}

/* args: a copy of the main mount's, taken before its session consumed them. */
static int serve_new(struct engine *engine, struct fs *primary, struct fuse_args *args,
		     const char *path, struct fs **out)
{
	struct fs_options so = {.serving = true, .primary = primary};
	int rc;

	if (fuse_opt_add_arg(args, "-oro"))
		return -ENOMEM;
	rc = fs_new(engine, &so, args, out);
	if (!rc && fuse_session_mount(fs_session(*out), path) != 0) {
		fprintf(stderr, "certfs: cannot mount on %s\n", path);
		rc = -EIO;
	}
	return rc;
}

/*
 * The serving mount's loop. Several threads: a first read of a domain
 * there loads its generation from the store and builds files (on two CPUs,
 * one thread left half the machine idle while servers started), and a
 * slow request must not hold up every other reader.
 */
static void *serve_loop(void *arg)
{
	struct fs *f = arg;
	struct fuse_loop_config *loop = fuse_loop_cfg_create();

	if (!loop) {
		fuse_session_loop(fs_session(f));
		return NULL;
	}
	fuse_loop_cfg_set_idle_threads(loop, SERVE_IDLE_THREADS);
	fuse_loop_cfg_set_max_threads(loop, SERVE_MAX_THREADS);
	fuse_session_loop_mt(fs_session(f), loop);
	fuse_loop_cfg_destroy(loop);
	return NULL;
}

/* SIGUSR1 only interrupts the serving loop's wait (installed without
 * SA_RESTART, so the wait returns EINTR and the loop sees it must end;
 * the loop then cancels and joins its worker threads). */
static void wake_handler(int sig)
{
	(void)sig;
}

/*
 * End the serving loop before its /dev/fuse descriptor is closed (closing
 * it under a thread that reads it is a race): the session is marked done
 * and the thread's read interrupted until the thread has returned. false
 * when it did not return within a second.
 */
static bool serve_loop_stop(struct fs *serve, pthread_t thread)
{
	fuse_session_exit(fs_session(serve));
	for (int i = 0; i < 20; i++) {
		struct timespec ts;

		pthread_kill(thread, SIGUSR1);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50L * 1000 * 1000;
		if (ts.tv_nsec >= 1000L * 1000 * 1000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000L * 1000 * 1000;
		}
		if (!pthread_timedjoin_np(thread, NULL, &ts))
			return true;
	}
	return false;
}

/*
 * Where a detached daemon logs. Under systemd (JOURNAL_STREAM or
 * INVOCATION_ID set) stderr is the journal, so it stays. Otherwise syslog
 * when a syslog daemon listens; without one (a container, a minimal host)
 * syslog() would drop every line, so the stderr certfs was started with
 * takes them if it is a file or a terminal. A pipe is not kept: whoever
 * started us (`out=$(certfs ...)`, mount(8) run by a supervisor) reads it
 * to its end and would wait for as long as the daemon lives; the console
 * takes the lines then, as it does for syslog's LOG_CONS.
 */
static void log_detached(int saved_stderr)
{
	bool systemd = getenv("JOURNAL_STREAM") || getenv("INVOCATION_ID");
	const char *where = "stderr";
	struct stat st;
	int fd;

	if (!systemd && util_log_syslog_available()) {
		util_log_use_syslog(true);
		return;
	}
	if (saved_stderr < 0)
		return;
	if (systemd || (fstat(saved_stderr, &st) == 0 &&
			(S_ISREG(st.st_mode) || isatty(saved_stderr)))) {
		dup2(saved_stderr, STDERR_FILENO);
	} else {
		fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
		/* No console either: a waiting reader beats a lost line. */
		dup2(fd >= 0 ? fd : saved_stderr, STDERR_FILENO);
		if (fd >= 0) {
			close(fd);
			where = "the console";
		}
	}
	if (!systemd)
		util_info("daemon: no syslog daemon on /dev/log: logging to %s", where);
}

struct reload_ctx {
	struct options *opts;
	struct engine *engine;
	struct fs *fs;
	const char *mountpoint;
	const char *serve; /* the serving mount's, NULL: none */
};

/*
 * Tell systemd (if it is listening) that certfs serves, and what. Called
 * once every mount has its loop running, so a unit ordered after certfs
 * finds both the main and the serving mount.
 */
static void notify_ready(const struct reload_ctx *ctx)
{
	if (ctx->serve)
		sd_notifyf(0, "READY=1\nSTATUS=serving %zu domains on %s and read-only on %s",
			   engine_count(ctx->engine), ctx->mountpoint, ctx->serve);
	else
		sd_notifyf(0, "READY=1\nSTATUS=serving %zu domains on %s",
			   engine_count(ctx->engine), ctx->mountpoint);
}

/* SIGHUP: reload; a bad file keeps the running configuration. */
static void *signal_main(void *arg)
{
	struct reload_ctx *ctx = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	for (;;) {
		struct conf_err err = {{0}};
		struct conf c;

		if (sigwait(&set, &sig))
			continue;
		sd_notify(0, "RELOADING=1");
		if (load_conf(ctx->opts, &c, &err)) {
			util_err("config: reload failed, keeping the running configuration: %s",
				 err.msg);
			notify_ready(ctx);
			continue;
		}
		if (engine_reload(ctx->engine, &c))
			util_err("config: reload failed: out of memory");
		else
			util_info("config: reloaded");
		fs_reload(ctx->fs);
		conf_clear(&c);
		notify_ready(ctx);
	}
	return NULL;
}

struct exit_watch {
	struct fuse_session *se;
	struct engine *engine;
};

/*
 * libfuse ends its loop on SIGTERM, SIGINT or an unmount and then waits for
 * the requests in flight; one of them may be waiting on a CA (rmdir with
 * revoke_on_delete). So the engine is told as soon as the session ends, not
 * after the loop has returned.
 */
static void *exit_watch_main(void *arg)
{
	struct exit_watch *w = arg;
	struct timespec ts = {0, 100 * 1000 * 1000};

	while (!fuse_session_exited(w->se))
		nanosleep(&ts, NULL);
	engine_cancel(w->engine);
	return NULL;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts fopts;
	struct fuse_loop_config *loop;
	struct options o;
	struct conf_err cerr = {{0}};
	struct conf c;
	struct store *store = NULL;
	struct engine *engine = NULL;
	struct fs *fs = NULL, *serve = NULL;
	struct fuse_args serve_args = FUSE_ARGS_INIT(0, NULL);
	struct fs_options fso = {0};
	pthread_t serve_thread;
	bool serve_running = false;
	struct reload_ctx rctx;
	struct exit_watch watch;
	pthread_t sigthread, watcher;
	bool watching = false;
	sigset_t hup;
	char err[512] = "", fsname[4200], owner[4200];
	bool mounted = false, conf_ok = false;
	int rc = 1, ret, saved_stderr = -1;

	/*
	 * Two malloc arenas, not glibc's eight per CPU: each of the many FUSE
	 * threads would otherwise get its own, and what one thread allocated
	 * for a node another frees, so every arena keeps its high-water mark
	 * (measured: 183 instead of 228 MiB after reading 10,000 domains).
	 * MALLOC_ARENA_MAX in the environment still wins.
	 */
	if (!getenv("MALLOC_ARENA_MAX"))
		mallopt(M_ARENA_MAX, MALLOC_ARENAS);
	memset(&o, 0, sizeof(o));
	memset(&fopts, 0, sizeof(fopts));
	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) == -1)
		goto out;
	if (o.show_help) {
		usage(argv[0]);
		rc = 0;
		goto out;
	}
	if (o.show_version) {
		printf("certfs %s (libfuse %s, %s)\n", CERTFS_VERSION, fuse_pkgversion(),
		       "OpenSSL 3");
		rc = 0;
		goto out;
	}
	if (!o.mountpoint || o.nonopts > 2) {
		fprintf(stderr, "certfs: %s\n",
			o.nonopts > 2 ? "too many arguments (expected [STORE] MOUNTPOINT)"
				      : "no mountpoint given (see certfs --help)");
		goto out;
	}
	/* Let libfuse see the mountpoint and its own flags (-f, -d, -o). */
	if (fuse_opt_add_arg(&args, o.mountpoint) || fuse_parse_cmdline(&args, &fopts) != 0)
		goto out;

	add_override(&o, "certfs", "store", o.source, "STORE");
	add_override(&o, "certfs", "store", o.store, "--store");
	add_override(&o, "certfs", "issuer", o.issuer, "--issuer");
	add_override(&o, "acme", "directory", o.acme_directory, "--acme-directory");
	add_override(&o, "acme", "email", o.acme_email, "--acme-email");
	add_override(&o, "acme", "ca_bundle", o.acme_ca_bundle, "--acme-ca-bundle");
	add_override(&o, "acme", "http01_listen", o.http01_listen, "--http01-listen");
	add_override(&o, "acme", "tls_alpn01_listen", o.tls_alpn01_listen, "--tls-alpn01-listen");
	if (load_conf(&o, &c, &cerr)) {
		fprintf(stderr, "certfs: %s\n", cerr.msg);
		goto out;
	}
	conf_ok = true;
	if (fopts.debug)
		util_log_set_level(UTIL_LOG_DEBUG);
	if (c.issuer == CONF_ISSUER_ACME && !c.acme_directory) {
		fprintf(stderr, "certfs: issuer acme needs an ACME directory "
				"(--acme-directory or [acme] directory)\n");
		goto out;
	}

	if (!mountpoint_usable(fopts.mountpoint) || (o.serve && !mountpoint_usable(o.serve)))
		goto out;
	if (o.serve && o.read_only) {
		fprintf(stderr, "certfs: --serve goes with a read-write mount (-o ro already "
				"makes the mount a serving one)\n");
		goto out;
	}

	if (store_open_opts(c.store,
			    &(struct store_opts){.ca_bundle = c.etcd_ca_bundle,
						 .cert = c.etcd_cert,
						 .key = c.etcd_key,
						 .user = c.etcd_user,
						 .password_file = c.etcd_password_file,
						 .key_encryption_key_file = c.etcd_kek_file,
						 .lease_ttl = c.etcd_lease_ttl},
			    &store, err, sizeof(err))) {
		fprintf(stderr, "certfs: %s\n", err);
		goto out;
	}
	/* One writer per store: a second daemon would fork the history. */
	snprintf(owner, sizeof(owner), "pid %d, mounted on %s", (int)getpid(), fopts.mountpoint);
	if (store_lock(store, owner, err, sizeof(err))) {
		fprintf(stderr, "certfs: %s\n", err);
		goto out;
	}
	if (engine_new(&c, store, &engine, err, sizeof(err))) {
		fprintf(stderr, "certfs: %s\n", err);
		goto out;
	}
	engine_set_mountpoint(engine, fopts.mountpoint);
	{
		/* fuse_opt splits -o at commas (an etcd URL has them): escape. */
		size_t n = (size_t)snprintf(fsname, sizeof(fsname), "-ofsname=");

		for (const char *p = c.store; *p && n + 3 < sizeof(fsname); p++) {
			if (*p == ',' || *p == '\\')
				fsname[n++] = '\\';
			fsname[n++] = *p;
		}
		fsname[n] = '\0';
	}
	fso.serving = o.read_only;
	fso.track_readers = c.track_readers;
	if (fuse_opt_add_arg(&args, fsname) || fuse_opt_add_arg(&args, "-osubtype=certfs") ||
	    (o.serve && args_copy(&args, &serve_args)) || fs_new(engine, &fso, &args, &fs)) {
		fprintf(stderr, "certfs: cannot set up the FUSE session (bad -o option?)\n");
		goto out;
	}
	if (fuse_set_signal_handlers(fs_session(fs)) != 0) {
		fprintf(stderr, "certfs: cannot install signal handlers\n");
		goto out;
	}
	if (fuse_session_mount(fs_session(fs), fopts.mountpoint) != 0) {
		fprintf(stderr, "certfs: cannot mount on %s\n", fopts.mountpoint);
		goto out;
	}
	mounted = true;
	if (o.serve && serve_new(engine, fs, &serve_args, o.serve, &serve)) {
		fprintf(stderr, "certfs: cannot set up the serving mount on %s\n", o.serve);
		goto out;
	}
	/* fuse_daemonize() points stderr at /dev/null; keep ours to log to. */
	if (!fopts.foreground)
		saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	/* Returns in the child once the parent has exited: the mount is up. */
	if (fuse_daemonize(fopts.foreground) != 0)
		goto out;
	if (!fopts.foreground) {
		log_detached(saved_stderr);
		if (saved_stderr >= 0)
			close(saved_stderr); /* a pipe must not stay open through it */
		saved_stderr = -1;
	}
	/* The lock came along through the fork; name the pid that holds it now. */
	snprintf(owner, sizeof(owner), "pid %d, mounted on %s", (int)getpid(), fopts.mountpoint);
	if (store_lock(store, owner, err, sizeof(err)))
		util_warn("certfs: %s", err);

	/*
	 * Every thread we start blocks SIGTERM, SIGINT and SIGHUP. libfuse's
	 * handler for TERM and INT only sets a flag and relies on the signal
	 * interrupting the main thread's wait, so those must reach the main
	 * thread and no other; SIGHUP is taken by our reload thread (sigwait).
	 */
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	sigaddset(&hup, SIGTERM);
	sigaddset(&hup, SIGINT);
	pthread_sigmask(SIG_BLOCK, &hup, NULL);
	rctx.opts = &o;
	rctx.engine = engine;
	rctx.fs = fs;
	rctx.mountpoint = fopts.mountpoint;
	rctx.serve = o.serve;
	if (pthread_create(&sigthread, NULL, signal_main, &rctx) == 0)
		pthread_detach(sigthread);
	if (serve) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = wake_handler;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
	}
	if (fs_start(fs) || (serve && fs_start(serve)) || engine_start(engine) ||
	    (serve && pthread_create(&serve_thread, NULL, serve_loop, serve))) {
		util_err("daemon: cannot start worker threads");
		goto out;
	}
	watch.se = fs_session(fs);
	watch.engine = engine;
	watching = pthread_create(&watcher, NULL, exit_watch_main, &watch) == 0;
	sigemptyset(&hup);
	sigaddset(&hup, SIGTERM);
	sigaddset(&hup, SIGINT);
	pthread_sigmask(SIG_UNBLOCK, &hup, NULL);
	util_info("daemon: certfs %s serving %zu domains on %s from %s%s", CERTFS_VERSION,
		  engine_count(engine), fopts.mountpoint, c.store, o.read_only ? " (read-only)" : "");
	serve_running = serve != NULL;
	if (serve)
		util_info("daemon: serving read-only on %s", o.serve);

	loop = fuse_loop_cfg_create();
	if (!loop) {
		util_err("daemon: out of memory");
		goto out;
	}
	fuse_loop_cfg_set_clone_fd(loop, (unsigned)fopts.clone_fd);
	/*
	 * fuse_parse_cmdline() leaves both limits at UINT_MAX ("not given")
	 * unless -o max_idle_threads / max_threads set them, and libfuse 3.14
	 * warns about UINT_MAX instead of taking it as unset: pass only values
	 * it accepts.
	 */
	fuse_loop_cfg_set_idle_threads(loop, fopts.max_idle_threads &&
						     fopts.max_idle_threads <= LOOP_THREADS_MAX
					     ? fopts.max_idle_threads
					     : LOOP_IDLE_DEFAULT);
	fuse_loop_cfg_set_max_threads(loop, fopts.max_threads && fopts.max_threads <= LOOP_THREADS_MAX
						    ? fopts.max_threads
						    : LOOP_THREADS_DEFAULT);
	notify_ready(&rctx);
	ret = fopts.singlethread ? fuse_session_loop(fs_session(fs))
				 : fuse_session_loop_mt(fs_session(fs), loop);
	fuse_loop_cfg_destroy(loop);
	fuse_session_exit(fs_session(fs));
	/* A positive value is the signal that ended the loop: a clean stop. */
	rc = ret < 0 ? 1 : 0;
	util_info("daemon: unmounting %s", fopts.mountpoint);
out:
	/* Before either mount goes, so systemd stops what depends on them. */
	if (mounted)
		sd_notifyf(0, "STOPPING=1\nSTATUS=unmounting %s%s%s", fopts.mountpoint,
			   serve ? " and " : "", serve ? o.serve : "");
	if (watching) {
		fuse_session_exit(fs_session(fs));
		pthread_join(watcher, NULL);
	}
	/* An upload being judged uses the engine: it ends (bounded) first. */
	if (fs)
		fs_stop_judging(fs);
	if (engine)
		engine_stop(engine);
	if (serve) {
		bool stopped = !serve_running || serve_loop_stop(serve, serve_thread);

		/* Else unmounting ends the serving loop (its reads fail). */
		fuse_session_exit(fs_session(serve));
		fuse_session_unmount(fs_session(serve));
		if (!stopped)
			pthread_join(serve_thread, NULL);
		if (!fs_shutdown(serve))
			_exit(rc);
	}
	if (fs) {
		bool clean = fs_shutdown(fs);

		if (mounted)
			fuse_session_unmount(fs_session(fs));
		if (!clean)
			_exit(rc); /* a thread is stuck in the kernel until we are gone */
		fuse_remove_signal_handlers(fs_session(fs));
	}
	engine_free(engine);
	fs_free(serve);
	fs_free(fs);
	store_close(store);
	if (conf_ok)
		conf_clear(&c);
	fuse_opt_free_args(&args);
	fuse_opt_free_args(&serve_args);
	free(fopts.mountpoint);
	free(o.mountpoint);
	free(o.source);
	free(o.config);
	free(o.store);
	free(o.issuer);
	free(o.acme_directory);
	free(o.acme_email);
	free(o.acme_ca_bundle);
	free(o.http01_listen);
	free(o.serve);
	free(o.tls_alpn01_listen);
	if (saved_stderr >= 0)
		close(saved_stderr);
	return rc;
}
