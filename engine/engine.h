/* SPDX-License-Identifier: MIT */
/*
 * engine: the domains certfs serves and their lifecycle. A domain has a
 * series of immutable generations (key + certificate chain + where it came
 * from); exactly one is published at a time. The engine persists every
 * change in the store before acknowledging it, issues certificates on a pool
 * of worker threads (never inside a FUSE request), renews them, and renders
 * the status files. It knows nothing about FUSE: a front end (fs/) is told
 * of each published generation through struct engine_observer (and keeps
 * each reader's pairs together itself).
 *
 * Threads: every function is thread-safe. Generations and domains are
 * reference counted; a generation never changes after creation, so its bytes
 * can be served without locks.
 */
#ifndef CERTFS_ENGINE_H
#define CERTFS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "conf/conf.h"
#include "store/store.h"
#include "util/util.h"

#define ENGINE_WUR __attribute__((warn_unused_result))
/* Uploads larger than this are refused with EFBIG. */
#define ENGINE_UPLOAD_MAX (1024u * 1024u)

struct engine;
struct engine_domain;
struct engine_gen;

/* The files of a domain directory, and the root's own files. */
enum engine_file {
	ENGINE_FILE_FULLCHAIN,
	ENGINE_FILE_CERT,
	ENGINE_FILE_CHAIN,
	ENGINE_FILE_PRIVKEY,
	ENGINE_FILE_BUNDLE,
	ENGINE_FILE_PFX,
	ENGINE_FILE_STATUS,
	ENGINE_FILE_STATUS_JSON,
	ENGINE_FILE_NAMES,
	ENGINE_FILE_REQUEST_CSR,
	ENGINE_FILE_PASSPHRASE,
	/* root only */
	ENGINE_FILE_METRICS,
	ENGINE_FILE_CA_PEM,
	ENGINE_FILE_CRT_LIST,     /* haproxy crt-list of every domain's bundle.pem */
	/* root and domain */
	ENGINE_FILE_LOG,
	ENGINE_FILE_COUNT,
};

/* Per-generation content: the first ENGINE_GEN_FILES kinds. */
#define ENGINE_GEN_FILES (ENGINE_FILE_PFX + 1)

enum engine_source {
	ENGINE_SOURCE_SELFSIGNED,
	ENGINE_SOURCE_LOCAL,
	ENGINE_SOURCE_ACME,
	ENGINE_SOURCE_UPLOADED,
};

const char *engine_file_name(enum engine_file f);
/* ENGINE_FILE_COUNT when name is not a file of a domain directory. */
enum engine_file engine_file_lookup(const char *name, bool root);
const char *engine_source_name(enum engine_source s);

/*
 * A stale reader: a process that read an older generation of a domain than
 * the one served, still runs, and has not read the served one since (a
 * server renewed for but never reloaded). Seen by the front end.
 */
struct engine_stale_reader {
	pid_t pid;
	char command[16];
	char exe[256];
	uint64_t generation; /* the newest it read */
	time_t since;        /* stale since: the rotation past that generation */
};

struct engine_observer {
	void *arg;
	/*
	 * d has just published a new generation (engine_domain_gen returns
	 * it): the front end refreshes what it has cached. Called on the
	 * thread that made the change (an engine thread, or the request that
	 * uploaded or removed a certificate) with no engine lock held.
	 */
	void (*published)(void *arg, struct engine_domain *d);
	/* Another node added or removed a domain (cached listings and, when
	 * removed, the name's entry must go). Called on the store's thread. */
	void (*names_changed)(void *arg, const char *name, bool removed);
	/*
	 * The stale readers of d, which serves generation cur: up to max into
	 * out (oldest first); returns how many there are. NULL when the front
	 * end does not see who reads. Called with no engine lock held; may
	 * read /proc.
	 */
	size_t (*stale_readers)(void *arg, struct engine_domain *d, uint64_t cur,
				struct engine_stale_reader *out, size_t max);
};

/*
 * Load every domain from the store (generations are read lazily) and get
 * ready to serve. err gets one sentence on failure.
 */
int engine_new(const struct conf *c, struct store *s, struct engine **out, char *err,
	       size_t errlen) ENGINE_WUR;
void engine_set_observer(struct engine *e, const struct engine_observer *obs);
/* Where the tree is mounted (CERTFS_MOUNT for hooks). */
void engine_set_mountpoint(struct engine *e, const char *path);
/*
 * Run deploy hooks no sooner than ms after the publication that queued
 * them: a serving mount shows a new generation to new readers only once
 * its grace is over, and a reload before then would load the old one.
 */
void engine_set_deploy_delay(struct engine *e, uint64_t ms);
/* Start the worker pool and the scheduler (after any fork). */
int engine_start(struct engine *e) ENGINE_WUR;
/*
 * Shutdown is coming: ACME requests and polling in flight end within about
 * a second (-ECANCELED; a saved order stays resumable), hooks are killed,
 * and nothing new starts. Any thread; irreversible. engine_stop() does it
 * first too.
 */
void engine_cancel(struct engine *e);
/* Stop threads; queued work is dropped (it is redone after a restart). */
void engine_stop(struct engine *e);
void engine_free(struct engine *e);
/* Swap in a new configuration (copied). */
int engine_reload(struct engine *e, const struct conf *c) ENGINE_WUR;
/* uid/gid/mode for key files, from the configuration. */
void engine_key_owner(struct engine *e, uid_t *uid, gid_t *gid, mode_t *mode);

/* ---- domains ------------------------------------------------------------ */

/* The domain or NULL; the caller owns a reference. Upper case in name is
 * folded, as mkdir folds it. */
struct engine_domain *engine_domain_get(struct engine *e, const char *name);
/* Does name hold upper case (found by engine_domain_get, but not its name)? */
bool engine_name_folds(const char *name);
/* Is root file f there to list (ca.pem only once the local CA exists)? */
bool engine_root_file_exists(struct engine *e, enum engine_file f);
/* Take another reference. */
struct engine_domain *engine_domain_ref(struct engine_domain *d);
void engine_domain_put(struct engine_domain *d);
const char *engine_domain_name(const struct engine_domain *d);
/* Published generation with a reference, or NULL before the first one. */
struct engine_gen *engine_domain_gen(struct engine_domain *d);
/* Creation time of the domain (directory mtime). */
time_t engine_domain_created(const struct engine_domain *d);

/*
 * mkdir: validate and fold the name (canonical form into canon, >= 254
 * bytes), persist the domain, serve a self-signed placeholder at once and
 * queue issuance. -EINVAL bad name, -EEXIST duplicate, -ENOSPC/-EIO store.
 */
int engine_mkdir(struct engine *e, const char *name, char *canon, size_t canonlen) ENGINE_WUR;
/* rmdir: remove from the tree, keep in the store's archive. */
int engine_rmdir(struct engine *e, const char *name) ENGINE_WUR;
/* Sorted snapshot of domain names; free with engine_names_free. */
size_t engine_names(struct engine *e, char ***names);
void engine_names_free(char **names, size_t n);
size_t engine_count(struct engine *e);
/* Changes whenever a domain is added or removed (to cache listings). */
uint64_t engine_version(struct engine *e);
/*
 * Changes whenever anything a status file shows may have changed: of d, or
 * of any domain (d == NULL). Rendered status can be reused while it holds.
 */
uint64_t engine_state_version(struct engine *e, struct engine_domain *d);


/*
 * A write into DOMAIN/file, judged as a whole (the front end calls this
 * when the writer closes the file). Returns 0 when applied (or kept as
 * pending), or -EINVAL/-EACCES/-EFBIG/-ENOSPC; the reason is recorded as
 * the domain's last_error and copied into why (if non-NULL).
 */
int engine_write(struct engine *e, struct engine_domain *d, enum engine_file f,
		 const void *data, size_t len, char *why, size_t whylen) ENGINE_WUR;

/*
 * Does an empty write into file mean something (passphrase: clear it;
 * names: the domain alone)? Any other file refuses it: "empty file".
 */
bool engine_empty_write_ok(enum engine_file f);
/*
 * How many writes into d were judged so far: an empty write is known only
 * when its open file is released, after later writes may have been judged.
 */
uint64_t engine_domain_writes(struct engine_domain *d);
/*
 * An empty write into DOMAIN/file, judged like engine_write unless another
 * write into d was judged since engine_domain_writes returned seen (then it
 * is superseded: 0, nothing recorded).
 */
int engine_write_empty(struct engine *e, struct engine_domain *d, enum engine_file f,
		       uint64_t seen, char *why, size_t whylen) ENGINE_WUR;

/*
 * "renew" written to MOUNT/status: renew every domain, paced by the ACME
 * rate-limit rules. -EINVAL (why says so) for anything else.
 */
int engine_renew_all(struct engine *e, const void *data, size_t len, char *why,
		     size_t whylen) ENGINE_WUR;

/*
 * Record a write refused before it reached the engine (the writer died, it
 * was too large) as the domain's last_error: "FILE: why".
 */
void engine_write_refused(struct engine_domain *d, enum engine_file f, const char *why);

/*
 * rm DOMAIN/FILE: removing fullchain.pem or cert.pem removes an uploaded
 * certificate (the managed one is served at once); other files are views and
 * removing them changes nothing. Returns 0, or -ENOSPC/-EIO when the store
 * refuses (then nothing changed, and last_error says so).
 */
int engine_unlink(struct engine *e, struct engine_domain *d, enum engine_file f);

/* ---- http-01 challenges served by the mount ------------------------------- */

/* Key authorization of a pending http-01 token into out; -ENOENT if none. */
int engine_challenge_get(struct engine *e, const char *token, struct util_buf *out) ENGINE_WUR;
/* Pending tokens (for a listing); free with engine_names_free. */
size_t engine_challenge_tokens(struct engine *e, char ***tokens);

/* ---- generations --------------------------------------------------------- */

struct engine_gen *engine_gen_get(struct engine_gen *g);
void engine_gen_put(struct engine_gen *g);
uint64_t engine_gen_number(const struct engine_gen *g);
time_t engine_gen_created(const struct engine_gen *g);
bool engine_gen_has_key(const struct engine_gen *g);
/*
 * The bytes of one file of the generation (computed once, then kept).
 * -ENOENT when the generation has no such file (no private key for a CSR
 * issuance). data stays valid while the caller holds the generation.
 * bundle.pem is not one buffer (-EINVAL): see engine_gen_bundle.
 */
int engine_gen_content(struct engine_gen *g, enum engine_file f, const unsigned char **data,
		       size_t *len) ENGINE_WUR;
/*
 * bundle.pem as its two pieces, the key then the full chain (the order
 * Postfix requires and haproxy accepts): never copied into one buffer, so
 * a generation costs no second copy of its key however it is read. Valid
 * while the caller holds the generation; -ENOENT without a key.
 */
int engine_gen_bundle(const struct engine_gen *g, struct iovec part[2]) ENGINE_WUR;

/* ---- rendered files -------------------------------------------------------- */

/*
 * Render a dynamic file into out: for d == NULL the root's status,
 * status.json, metrics, ca.pem or log (recent events); otherwise the
 * domain's status, status.json, names or log (its own recent events).
 * -ENOENT when there is no such file (ca.pem before the CA exists).
 */
int engine_render(struct engine *e, struct engine_domain *d, enum engine_file f,
		  struct util_buf *out) ENGINE_WUR;

/*
 * The haproxy view (MOUNT/haproxy/, loaded with `crt DIR`): "DOMAIN.pem"
 * holds the served generation's key and full chain (bundle.pem). get
 * copies the bytes into out (a secret buffer); -ENOENT for a name that is
 * not a domain with a key. names lists the view's file names (free with
 * engine_names_free).
 */
int engine_crt_view_get(struct engine *e, const char *file, struct util_buf *out) ENGINE_WUR;
size_t engine_crt_view_names(struct engine *e, char ***names);

#endif
