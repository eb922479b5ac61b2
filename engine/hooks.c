/* SPDX-License-Identifier: MIT */
/*
 * Hooks: the deploy, notify and dns commands of the configuration, run
 * without a shell (posix_spawn with the configured argv) and with a fixed
 * environment (CERTFS_DOMAIN, CERTFS_EVENT, CERTFS_MOUNT, ..., and
 * certbot's RENEWED_LINEAGE and RENEWED_DOMAINS, so certbot deploy hooks
 * work unchanged). After the deploy command, every executable of
 * deploy_dir runs, in name order, like certbot's renewal-hooks/deploy.
 * Deploy and notify run on their own thread, in order, so a slow
 * `systemctl reload` never holds up a FUSE request or an issuance; dns
 * hooks run synchronously because the ACME challenge must wait for the
 * record.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_int.h"

extern char **environ;

/* A hook that runs longer than this is killed and reported as failed. */
#define HOOK_TIMEOUT_MS 120000

/* Stale readers named in a hook's environment and log line. */
#define HOOK_STALE_MAX 64
/*
 * A probe runs this long after a rotation's deploy hook is due (a reload
 * takes a moment), then again every PROBE_AGAIN_MS while the server shows
 * an older certificate, for at most stale_after (or PROBE_DEFAULT_MS).
 */
#define PROBE_FIRST_MS 1000
#define PROBE_AGAIN_MS 5000
#define PROBE_DEFAULT_MS (600 * 1000)

struct hook_item {
	struct hook_item *next;
	char **argv;                /* NULL: none configured */
	char *dir;                  /* deploy_dir, NULL: none */
	char *env[10];
	struct engine_domain *d;
	uint64_t not_before; /* monotonic ms */
	bool deploy;         /* the deploy hook: it gets CERTFS_STALE_PIDS */
	bool if_stale;       /* the "stale" notify: runs only if one is left */
	bool probe;          /* ask the domain's probe endpoint what it serves */
	uint64_t probe_end;  /* monotonic ms: stop asking again after it */
};

/* Files a package manager or an editor leaves beside a hook: not hooks. */
static int hook_dir_filter(const struct dirent *de)
{
	static const char *const skip_suffix[] = {"~", ".dpkg-old", ".dpkg-dist", ".dpkg-new",
						   ".dpkg-tmp", ".swp"};
	size_t len = strlen(de->d_name);

	if (de->d_name[0] == '.')
		return 0;
	for (size_t i = 0; i < sizeof(skip_suffix) / sizeof(skip_suffix[0]); i++) {
		size_t sl = strlen(skip_suffix[i]);

		if (len >= sl && !strcmp(de->d_name + len - sl, skip_suffix[i]))
			return 0;
	}
	return 1;
}

/* Sorted by bytes (alphasort would follow the locale). */
static int hook_dir_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/*
 * Record one run's outcome on d: a failure is logged, counted and shown in
 * status; success (ok, once every hook of an event ran) clears it.
 */
static void hook_done(struct engine_domain *d, bool ok, const char *why)
{
	pthread_mutex_lock(&d->lock);
	if (!ok) {
		d->hook_failures++;
		free(d->hook_error);
		d->hook_error = strdup(why); /* NULL when out of memory: only shown less */
		util_err("engine: %s: %s", d->name, why);
	} else {
		free(d->hook_error);
		d->hook_error = NULL;
	}
	engine_domain_changed(d);
	pthread_mutex_unlock(&d->lock);
}

/*
 * Run every executable regular file of dir, in name order, with env. A
 * failing one is reported and the next still runs (run-parts and certbot
 * do the same): one broken hook must not keep the others from reloading
 * their servers. Returns whether all succeeded.
 */
static bool hook_run_dir(struct engine_domain *d, const char *dir, char *const *env)
{
	struct dirent **list = NULL;
	bool ok = true;
	int n = scandir(dir, &list, hook_dir_filter, hook_dir_cmp);

	if (n < 0) {
		char why[512];

		snprintf(why, sizeof(why), "deploy_dir %.200s: %s", dir, strerror(errno));
		hook_done(d, false, why);
		return false;
	}
	for (int i = 0; i < n; i++) {
		char path[4096], why[512] = "";
		char *argv[2] = {path, NULL};
		struct stat st;
		int rc;

		snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0) {
			rc = engine_hook_exec(d->engine, argv, env, why, sizeof(why));
			if (rc) {
				ok = false;
				hook_done(d, false, why);
			}
		}
		free(list[i]);
	}
	free(list);
	return ok;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static char **strv_dup(char *const *v, const char *const *extra)
{
	size_t n = 0, m = 0;
	char **out;

	while (v[n])
		n++;
	while (extra && extra[m])
		m++;
	out = calloc(n + m + 1, sizeof(*out));
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		out[i] = strdup(v[i]);
	for (size_t i = 0; i < m; i++)
		out[n + i] = strdup(extra[i]);
	return out;
}

/* Is entry ("NAME=value") one of env's names? */
static bool env_overridden(const char *entry, char *const *env)
{
	const char *eq = strchr(entry, '=');
	size_t len = eq ? (size_t)(eq - entry) : strlen(entry);

	for (size_t i = 0; env && env[i]; i++)
		if (!strncmp(env[i], entry, len) && env[i][len] == '=')
			return true;
	return false;
}

/*
 * Run argv with the daemon's environment plus env (whose CERTFS_* entries
 * win); wait for it (bounded). Hooks need what the administrator gave the
 * daemon: PATH, a DNS hook's server and credentials, proxies. A hook runs
 * in a process group of its own, so that at shutdown (e->cancel) it is
 * killed with whatever it started and never holds the daemon up.
 * Returns 0 on exit status 0; otherwise -1 with a sentence in why.
 */
int engine_hook_exec(struct engine *e, char *const *argv, char *const *env, char *why,
		     size_t whylen)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	uint64_t deadline = util_mono_ms() + HOOK_TIMEOUT_MS;
	size_t n = 0, cap = 1;
	char **envp;
	pid_t pid;
	int status, rc;

	for (size_t i = 0; environ[i]; i++)
		cap++;
	for (size_t i = 0; env && env[i]; i++)
		cap++;
	envp = calloc(cap, sizeof(*envp));
	if (!envp) {
		snprintf(why, whylen, "hook %s: out of memory", argv[0]);
		return -1;
	}
	for (size_t i = 0; environ[i]; i++)
		if (!env_overridden(environ[i], env))
			envp[n++] = environ[i];
	for (size_t i = 0; env && env[i]; i++)
		envp[n++] = env[i];
	envp[n] = NULL;

	posix_spawn_file_actions_init(&fa);
	/* Hooks must not inherit stdin; their output goes to our log stream. */
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
	rc = atomic_load(&e->cancel) ? ECANCELED
				     : posix_spawn(&pid, argv[0], &fa, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	free(envp); /* the strings belong to environ and the caller */
	if (rc) {
		snprintf(why, whylen, "hook %s could not start: %s", argv[0], strerror(rc));
		return -1;
	}
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			snprintf(why, whylen, "hook %s: wait failed", argv[0]);
			return -1;
		}
		if (util_mono_ms() > deadline || atomic_load(&e->cancel)) {
			bool timeout = !atomic_load(&e->cancel);

			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			snprintf(why, whylen, "hook %s %s", argv[0],
				 timeout ? "timed out" : "was killed at shutdown");
			return -1;
		}
		/* Poll gently: hooks take milliseconds to seconds. */
		{
			struct timespec ts = {0, 2 * 1000 * 1000};

			nanosleep(&ts, NULL);
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		snprintf(why, whylen, "hook %s exited with status %d", argv[0],
			 WEXITSTATUS(status));
	else
		snprintf(why, whylen, "hook %s was killed by signal %d", argv[0],
			 WTERMSIG(status));
	return -1;
}

/* "RENEWED_DOMAINS=a b c" from d's names (the domain first). */
static int renewed_domains(struct engine_domain *d, char **out)
{
	struct util_buf b;
	int rc;

	util_buf_init(&b, 64 * 1024, false);
	rc = util_buf_printf(&b, "RENEWED_DOMAINS=");
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; !rc && i < d->nnames; i++)
		rc = util_buf_printf(&b, "%s%s", i ? " " : "", d->names[i]);
	if (!rc && !d->nnames)
		rc = util_buf_printf(&b, "%s", d->name);
	pthread_mutex_unlock(&d->lock);
	if (!rc)
		rc = util_buf_append(&b, "", 1);
	*out = rc ? NULL : strndup((const char *)b.data, b.len);
	util_buf_free(&b);
	return *out ? 0 : -ENOMEM;
}

size_t engine_stale_readers(struct engine *e, struct engine_domain *d, uint64_t cur,
			    struct engine_stale_reader *out, size_t max)
{
	struct engine_observer obs;

	pthread_mutex_lock(&e->observer_lock);
	obs = e->observer;
	pthread_mutex_unlock(&e->observer_lock);
	return obs.stale_readers ? obs.stale_readers(obs.arg, d, cur, out, max) : 0;
}

/*
 * "CERTFS_STALE_PIDS=1 2" into *env: the processes still on an older
 * generation than the served one, which the hook is there to reload. For
 * the "stale" notify it is logged too; 0 when there are none.
 */
static size_t stale_env(struct engine *e, struct engine_domain *d, bool log, char **env)
{
	struct engine_stale_reader *sr = calloc(HOOK_STALE_MAX, sizeof(*sr));
	struct engine_gen *g = engine_domain_gen(d);
	struct util_buf b, who;
	size_t n = 0;
	int rc;

	*env = NULL;
	if (sr && g)
		n = engine_stale_readers(e, d, g->number, sr, HOOK_STALE_MAX);
	util_buf_init(&b, 64 * 1024, false);
	util_buf_init(&who, 64 * 1024, false);
	rc = util_buf_printf(&b, "CERTFS_STALE_PIDS=");
	for (size_t i = 0; !rc && i < n && i < HOOK_STALE_MAX; i++) {
		rc = util_buf_printf(&b, "%s%d", i ? " " : "", (int)sr[i].pid);
		if (!rc && log)
			rc = util_buf_printf(&who, "%s%s (pid %d, generation %llu)", i ? ", " : "",
					     sr[i].command, (int)sr[i].pid,
					     (unsigned long long)sr[i].generation);
	}
	if (!rc)
		rc = util_buf_append(&b, "", 1);
	if (!rc)
		rc = util_buf_append(&who, "", 1);
	if (!rc)
		*env = strndup((const char *)b.data, b.len);
	if (!rc && log && n)
		util_warn("engine: %s: %zu process%s still on an older certificate than "
			  "generation %llu: %s", d->name, n, n == 1 ? "" : "es",
			  (unsigned long long)g->number, (const char *)who.data);
	util_buf_free(&b);
	util_buf_free(&who);
	engine_gen_put(g);
	free(sr);
	return n;
}

static void hook_item_free(struct hook_item *it)
{
	strv_free(it->argv);
	free(it->dir);
	for (size_t i = 0; it->env[i]; i++)
		free(it->env[i]);
	engine_domain_put(it->d);
	free(it);
}

/* Queue it to run no sooner than delay_ms from now (and the deploy delay,
 * for the deploy hook), in order of time. */
static void hook_insert(struct engine *e, struct hook_item *it, uint64_t delay_ms)
{
	struct hook_item **pp;

	pthread_mutex_lock(&e->hook_lock);
	it->not_before = util_mono_ms() + delay_ms +
			 (it->deploy || it->probe ? e->deploy_delay_ms : 0);
	for (pp = &e->hook_head; *pp && (*pp)->not_before <= it->not_before; pp = &(*pp)->next)
		;
	it->next = *pp;
	*pp = it;
	if (!it->next)
		e->hook_tail = it;
	pthread_cond_signal(&e->hook_cond);
	pthread_mutex_unlock(&e->hook_lock);
}

static void *hook_main(void *arg)
{
	struct engine *e = arg;

	pthread_mutex_lock(&e->hook_lock);
	for (;;) {
		struct hook_item *it;
		char why[512] = "";
		size_t n;
		bool ok;
		int rc;

		while (!e->hook_stopping && !e->hook_head)
			pthread_cond_wait(&e->hook_cond, &e->hook_lock);
		/* At shutdown queued hooks are dropped: they would only be killed. */
		if (e->hook_stopping)
			break;
		if (!e->hook_stopping && util_mono_ms() < e->hook_head->not_before) {
			/* The queue is in order of not_before: the head is due first. */
			struct timespec ts;
			uint64_t wait = e->hook_head->not_before - util_mono_ms();

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += (time_t)(wait / 1000);
			ts.tv_nsec += (long)(wait % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&e->hook_cond, &e->hook_lock, &ts);
			continue;
		}
		it = e->hook_head;
		e->hook_head = it->next;
		if (!e->hook_head)
			e->hook_tail = NULL;
		pthread_mutex_unlock(&e->hook_lock);

		if (it->probe) {
			/* Until the server shows the new certificate (a reload). */
			if (!engine_probe_run(e, it->d) && util_mono_ms() < it->probe_end)
				hook_insert(e, it, PROBE_AGAIN_MS);
			else
				hook_item_free(it);
			pthread_mutex_lock(&e->hook_lock);
			continue;
		}
		for (n = 0; n < sizeof(it->env) / sizeof(it->env[0]) - 1 && it->env[n]; n++)
			;
		if (n < sizeof(it->env) / sizeof(it->env[0]) - 1 &&
		    !renewed_domains(it->d, &it->env[n]))
			n++;
		/* Who is on an old certificate now, not when it was queued. */
		if ((it->deploy || it->if_stale) &&
		    !stale_env(e, it->d, it->if_stale, &it->env[n]) && it->if_stale) {
			hook_item_free(it); /* everyone reloaded: nothing to say */
			pthread_mutex_lock(&e->hook_lock);
			continue;
		}
		ok = true;
		if (it->argv) {
			rc = engine_hook_exec(e, it->argv, it->env, why, sizeof(why));
			if (rc) {
				ok = false;
				hook_done(it->d, false, why);
			}
		}
		if (it->dir && !hook_run_dir(it->d, it->dir, it->env))
			ok = false;
		if (ok && (it->argv || it->dir))
			hook_done(it->d, true, NULL);
		hook_item_free(it);
		pthread_mutex_lock(&e->hook_lock);
	}
	pthread_mutex_unlock(&e->hook_lock);
	return NULL;
}

/*
 * An item running argv (and dir) for event on d, with its environment but
 * for what the hook thread adds; NULL when nothing is configured (unless
 * always: then an item that runs nothing) or out of memory (then logged).
 * Takes e->conf_lock.
 */
static struct hook_item *hook_item_new(struct engine *e, struct engine_domain *d, bool deploy,
				       const char *event, time_t not_after, bool always)
{
	struct hook_item *it;
	char **argv_conf, *dir_conf, nabuf[32];
	size_t n = 0;

	pthread_mutex_lock(&e->conf_lock);
	argv_conf = deploy ? e->conf.hook_deploy : e->conf.hook_notify;
	dir_conf = deploy ? e->conf.hook_deploy_dir : NULL;
	it = argv_conf || dir_conf || always ? calloc(1, sizeof(*it)) : NULL;
	if (it) {
		it->argv = argv_conf ? strv_dup(argv_conf, NULL) : NULL;
		it->dir = dir_conf ? strdup(dir_conf) : NULL;
	}
	pthread_mutex_unlock(&e->conf_lock);
	if (!it)
		return NULL;
	if ((argv_conf && !it->argv) || (dir_conf && !it->dir)) {
		util_err("engine: %s: %s hook not run: out of memory", d->name, event);
		strv_free(it->argv);
		free(it->dir);
		free(it);
		return NULL;
	}
	it->deploy = deploy;
	util_format_time(not_after, nabuf, sizeof(nabuf));
	if (asprintf(&it->env[n], "CERTFS_DOMAIN=%s", d->name) > 0)
		n++;
	if (asprintf(&it->env[n], "CERTFS_EVENT=%s", event) > 0)
		n++;
	if (asprintf(&it->env[n], "CERTFS_MOUNT=%s", e->mountpoint ? e->mountpoint : "") > 0)
		n++;
	if (not_after && asprintf(&it->env[n], "CERTFS_NOT_AFTER=%s", nabuf) > 0)
		n++;
	/* certbot's names: the lineage is the directory holding fullchain.pem
	 * and privkey.pem, the domains the certificate's names. */
	if (asprintf(&it->env[n], "RENEWED_LINEAGE=%s/%s", e->mountpoint ? e->mountpoint : "",
		     d->name) > 0)
		n++;
	/* RENEWED_DOMAINS is added by the hook thread: callers may hold
	 * d->lock here, and the names are read under it. */
	it->d = engine_domain_ref(d);
	return it;
}

void engine_hook_queue(struct engine *e, struct engine_domain *d, bool deploy,
		       const char *event, time_t not_after)
{
	struct hook_item *it = hook_item_new(e, d, deploy, event, not_after, false);
	char *probe;
	int stale_after;

	if (it)
		hook_insert(e, it, 0);
	if (!deploy)
		return;
	pthread_mutex_lock(&e->conf_lock);
	stale_after = e->conf.hook_stale_after;
	pthread_mutex_unlock(&e->conf_lock);
	probe = engine_probe_target(e, d->name);
	it = probe ? calloc(1, sizeof(*it)) : NULL;
	free(probe);
	if (it) {
		it->probe = true;
		it->d = engine_domain_ref(d);
		it->probe_end = util_mono_ms() +
				(stale_after > 0 ? (uint64_t)stale_after * 1000u : PROBE_DEFAULT_MS);
		hook_insert(e, it, PROBE_FIRST_MS);
	}
	/* A rotation: if a reader of the old certificate is still on it
	 * stale_after from now, the log and the notify hook (if any) say so. */
	if (stale_after <= 0)
		return;
	it = hook_item_new(e, d, false, "stale", not_after, true);
	if (!it)
		return;
	it->if_stale = true;
	hook_insert(e, it, (uint64_t)stale_after * 1000u);
}

int engine_hooks_start(struct engine *e)
{
	int rc = pthread_create(&e->hook_thread, NULL, hook_main, e);

	if (rc)
		return -rc;
	e->hook_running = true;
	return 0;
}

void engine_hooks_stop(struct engine *e)
{
	if (e->hook_running) {
		pthread_mutex_lock(&e->hook_lock);
		e->hook_stopping = true;
		pthread_cond_signal(&e->hook_cond);
		pthread_mutex_unlock(&e->hook_lock);
		pthread_join(e->hook_thread, NULL);
		e->hook_running = false;
	}
	/* Queued items hold their domains (also when the thread never ran:
	 * every rotation queues the stale check). */
	while (e->hook_head) {
		struct hook_item *it = e->hook_head;

		e->hook_head = it->next;
		hook_item_free(it);
	}
	e->hook_tail = NULL;
}
