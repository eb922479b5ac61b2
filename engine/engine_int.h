/* SPDX-License-Identifier: MIT */
/*
 * Private to engine/: the structures behind the opaque handles and the
 * helpers shared by the engine's files. Never included from another module.
 *
 * Lock order: a thread holding a lock takes only locks to its right.
 *
 *   d->write_lock -> d->store_lock -> d->publish_lock -> e->table_lock -> d->lock
 *     -> leaf locks
 *   e->mkdir_lock -> d->store_lock (mkdir; a domain another node added)
 *
 * leaf locks: e->conf_lock, e->names_lock, e->queue_lock, e->hook_lock,
 * e->observer_lock, e->acme_lock, e->ca_lock (-> conf_lock), g->lazy_lock.
 * fs's own lock (f->lock) is taken under d->write_lock when an upload is
 * published and itself takes table_lock, d->lock and leaf locks; it is
 * never held while an engine function takes write_lock, store_lock or
 * publish_lock.
 *
 * What may be done under each lock:
 *  - d->write_lock: one writer of the domain at a time (an upload's whole
 *    judgement, rmdir); store I/O, never network.
 *  - d->store_lock: every change of the domain's records (the state, a
 *    generation, the order, pending halves, the rmdir move). It orders
 *    state writes, and once `removed` is set under it nothing is written
 *    below domains/NAME again. Store I/O, never network.
 *  - d->publish_lock: held for writing from the assignment of a state that
 *    names a new generation until every mount serves it (the observer
 *    runs under it and takes f->lock), for reading while status is
 *    rendered. Memory only; store_lock may be released while it is held.
 *  - e->table_lock, d->lock and the leaf locks are what readers of the tree
 *    take: memory only (no store write or fsync, no network, no hook). The
 *    exceptions are one-time: the lazy first read of a generation (a store
 *    read under d->lock), creating the local CA (ca_lock) and the ACME
 *    account key (acme_lock).
 */
#ifndef CERTFS_ENGINE_INT_H
#define CERTFS_ENGINE_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "acme/acme.h"
#include "crypto/crypto.h"
#include "engine/engine.h"

/* Generations kept in the store besides the published one (rollback). */
#define ENGINE_KEEP_GENERATIONS 5
/* A stored record (JSON with PEM inside) is never larger than this. */
#define ENGINE_RECORD_MAX (2u * 1024 * 1024)

struct engine_pfx {
	struct engine_pfx *next;
	char *password;
	bool legacy;
	struct util_buf der;
};

struct engine_gen {
	atomic_int refs;
	uint64_t number;
	time_t created;
	enum engine_source source;
	/*
	 * Only the bytes and a summary are kept: parsed OpenSSL objects cost
	 * about 14 KB a generation and are needed only for rare operations
	 * (PKCS#12, pairing an upload, ARI, revocation), which parse them
	 * again with engine_gen_parse().
	 */
	bool has_key;               /* false for a CSR issuance */
	struct crypto_cert_info info;
	struct util_buf key_pem;    /* secret, PKCS#8 */
	struct util_buf fullchain;  /* leaf + intermediates */
	size_t leaf_len;            /* cert.pem is fullchain[0, leaf_len) */
	pthread_mutex_t lazy_lock;  /* guards the lazily made files below */
	struct engine_pfx *pfx;     /* one per (password, algorithm) asked for */
	char *pfx_password;         /* secret: the domain's passphrase, NULL: pfx_password */
	struct engine *engine;      /* for the PFX password */
};

enum engine_job {
	ENGINE_JOB_NONE,
	ENGINE_JOB_ISSUE, /* mkdir, renew, names */
};

/*
 * What the domain's state record holds (besides names and created): the
 * two lineages, the retry state and the counters. It changes only as one
 * value: engine_state_begin() copies it, the caller edits the copy, and
 * engine_state_commit() writes the copy and, only if that worked, assigns
 * it whole (so a failed commit leaves the domain exactly as it was).
 *
 * The members are also reachable by name directly in the domain (d->failures
 * is d->st.failures) through an anonymous struct in a union: the same list,
 * so the layout is the same, and readers all over the engine stay as they
 * were.
 */
#define ENGINE_STATE_FIELDS                                                          \
	uint64_t stored_gen;         /* generation named by the stored state */    \
	uint64_t next_number;        /* next generation number to use */           \
	time_t not_after;            /* of the served generation */                \
	time_t not_before;                                                          \
	enum engine_source source;   /* of the served generation */                \
	/* Two lineages: what the issuer made, and what a user uploaded. The      \
	 * upload is served while it is valid; the managed one stays ready. */    \
	uint64_t managed_gen;                                                       \
	time_t managed_not_before, managed_not_after;                               \
	bool source_managed_acme;    /* the managed lineage came from ACME */       \
	uint64_t uploaded_gen;                                                      \
	time_t uploaded_not_after;                                                  \
	bool uploaded_warned;        /* the expiring notice was sent */             \
	bool has_csr;                /* managed issuance uses the stored CSR */    \
	char pending[128];           /* what an upload waits for, "" when nothing */ \
	uint64_t issued_total;                                                      \
	uint64_t errors_total;                                                      \
	time_t next_attempt;         /* retry after a failure; 0 = none */          \
	time_t last_success;         /* the last managed issuance landed; 0: unknown */ \
	time_t last_attempt;         /* start of the last issuance attempt, 0: none */ \
	/* A user asked for a new certificate (names, CSR, renew) at this time,  \
	 * 0 once one begun after it landed: a request held by the pacing rules \
	 * or cut by a restart is still made. */                                \
	time_t requested;                                                           \
	/* Recent failed validations, for the CA's per-name hourly limit: kept  \
	 * across a restart, or a restart loop would reset the count. */        \
	time_t vfail[ACME_FAILED_VALIDATIONS_PER_HOUR];                             \
	int failures;                                                               \
	char last_error[512];                                                       \
	bool last_error_write;       /* last_error is a refused write's */

struct engine_state {
	ENGINE_STATE_FIELDS
};

struct engine_domain {
	atomic_int refs;
	struct engine *engine;
	struct engine_domain *hnext;
	/* Allocated to their length: a daemon keeps 10,000 domains or more,
	 * and fixed arrays for every string cost it 2 KB a domain. */
	char *name;
	char *key;     /* "domains/NAME" */

	pthread_mutex_t write_lock;  /* one writer at a time (held across a judgement) */
	uint64_t writes;             /* writes judged: bumped under write_lock, read atomically */
	/*
	 * Held for writing from the moment the stored state names a new
	 * generation until every mount serves it, and for reading while the
	 * domain's status is rendered: status never says "valid" for a
	 * generation the files do not yet hold. Taken before lock.
	 */
	pthread_rwlock_t publish_lock;
	pthread_mutex_t store_lock;  /* the domain's store records (see the lock order) */
	pthread_mutex_t lock;        /* everything below */
	union {
		struct engine_state st;  /* changed whole, under store_lock and lock */
		struct {
			ENGINE_STATE_FIELDS
		};
	};
	int state_unsaved;           /* -errno of a state write still to retry, or 0 */
	struct engine_gen *cur;      /* published */
	bool gen_loaded;             /* stored_gen read from the store */
	time_t created;
	char **names;                /* SANs; names[0] is the domain (store_lock to change) */
	size_t nnames;
	bool queued;                 /* an issuance job is queued or running */
	bool again;                  /* asked again while it ran: run once more */
	bool removed;                /* set under store_lock too: no store write after it */
	/* Since this process started (metrics counters may reset). */
	uint64_t issue_failures;
	uint64_t upload_refusals;
	uint64_t hook_failures;
	char *hook_error;            /* last failed hook, shown in status; NULL: none */
	/* The probe's last answer (probe.c); NULL: none yet. */
	struct engine_probe_answer *probe;
	/* RFC 9773 renewal information for the managed ACME certificate. */
	bool ari_unsupported;        /* the directory has no renewalInfo */
	time_t ari_renew_at;         /* chosen inside the suggested window; 0 = none */
	time_t ari_next_check;       /* when to ask the CA again */
	unsigned jitter;             /* random per domain: spreads renewals */
	bool ari_queued;
	/* Pacing (the rules are in acme/acme.h); last_attempt and vfail are
	 * in the stored state, the hold is kept in memory. */
	bool job_auto;               /* the queued job was started by the daemon */
	bool held_job;               /* a job was held: run it at hold_until */
	bool held_auto;              /* ... and it was the daemon's own (job_auto) */
	time_t hold_until;           /* no order before this (0: none) */
	char hold_reason[200];       /* why, for status */
	time_t ari_last_fetch;       /* last renewalInfo request */
	/* cluster.c: managed_gen when the issuance job was queued (to see
	 * that another node issued meanwhile), and when to ask for the
	 * domain's lock again after another node held it. */
	uint64_t cluster_queued_gen;
	time_t cluster_retry_at;
	int64_t cluster_state_rev;   /* store revision of the last state applied */
	uint64_t state_version;      /* bumped on every change status shows */
};

struct engine_probe_answer {
	char target[264];
	char fp[100];                /* "" on error */
	char error[300];
	int64_t gen;                 /* the generation served there, -1: unknown */
	bool current;
	time_t at;
};

struct engine_job_item {
	struct engine_job_item *next;
	struct engine_domain *d;
	bool ari;                    /* ask for renewal information, not issue */
	bool revoke;                 /* d is NULL: revoke what removed domains left */
};

struct engine {
	struct store *store;
	pthread_mutex_t conf_lock;
	struct conf conf;

	pthread_mutex_t mkdir_lock;  /* one mkdir at a time: check, write, insert */
	pthread_rwlock_t table_lock; /* table, count; sorted is reset under the write lock */
	struct engine_domain **table;
	size_t table_size;
	size_t count;
	pthread_mutex_t names_lock;  /* sorted, filled under the table's read lock */
	char **sorted;               /* cached sorted names, NULL when stale */
	size_t nsorted;

	pthread_mutex_t observer_lock;
	struct engine_observer observer;

	pthread_mutex_t ca_lock;
	struct crypto_key *ca_key;
	struct crypto_cert *ca_cert;   /* root */
	struct crypto_key *int_key;
	struct crypto_cert *int_cert;  /* intermediate that signs leaves */

	pthread_mutex_t queue_lock;
	pthread_cond_t queue_cond;
	struct engine_job_item *queue_head, *queue_tail;
	bool stopping;
	pthread_t *workers;
	size_t nworkers;
	pthread_t scheduler;
	bool scheduler_running;
	bool revoke_queued;          /* queue_lock: a revocation pass is queued */
	int revoke_failures;         /* queue_lock: passes failed in a row */
	time_t revoke_next;          /* queue_lock: retry the pass then; 0 = none */
	pthread_cond_t sched_cond;
	bool sched_kick;             /* queue_lock: look again before sleeping */
	double auto_tokens;          /* automatic orders left in the bucket (queue_lock) */
	time_t auto_tokens_at;       /* when the bucket was last filled */

	atomic_bool cancel;          /* shutting down: long waits end now */
	pthread_mutex_t acme_lock;   /* acme, tokens */
	struct engine_acme *acme;    /* client of the running configuration */
	struct acme_http01 *http01;
	struct acme_tlsalpn01 *tlsalpn01;
	struct engine_token *tokens;

	pthread_mutex_t hook_lock;
	pthread_cond_t hook_cond;
	struct hook_item *hook_head, *hook_tail;
	pthread_t hook_thread;
	bool hook_running, hook_stopping;
	uint64_t deploy_delay_ms;    /* hook_lock: see engine_set_deploy_delay */
	char *mountpoint;

	atomic_ulong version;
	atomic_ulong state_version;  /* bumped when any domain's status changes */
	atomic_ulong issued_total;
	atomic_ulong errors_total;
};

/* gen.c */
/* Parse the generation's key (NULL when it has none) and chain, owned. */
int engine_gen_parse(const struct engine_gen *g, struct crypto_key **key,
		     struct crypto_chain **chain);
int engine_gen_new(struct engine *e, uint64_t number, time_t created, enum engine_source src,
		   struct crypto_key *key, struct crypto_chain *chain, struct engine_gen **out);
/* The issuer that applies to name under c (e->conf_lock held if c is e's). */
enum conf_issuer engine_issuer_of(const struct conf *c, const char *name);
int engine_gen_to_record(const struct engine_gen *g, struct util_buf *out);
int engine_gen_from_record(struct engine *e, const void *data, size_t len,
			   struct engine_gen **out, char *err, size_t errlen);

/* engine.c */
/*
 * Validate name (a directory, or a SAN of domain) into canon (>= 254 bytes)
 * for the issuer that serves domain (NULL: the name itself): the local and
 * self-signed issuers also take development names (localhost, single
 * labels, IP addresses), ACME refuses them. -EINVAL with why.
 */
int engine_name_check(struct engine *e, const char *domain, const char *name, char *canon,
		      size_t canonlen, char *why, size_t whylen);
/* The domain's passphrase, or NULL (caller frees with util_secret_str_free). */
char *engine_domain_passphrase(struct engine_domain *d);
/* Give g the domain's passphrase for its PKCS#12 (before g is shared). */
void engine_gen_set_passphrase(struct engine_domain *d, struct engine_gen *g);
/* Hand g (a new generation of d, or a new placeholder) to the observer to publish. */
void engine_rotate(struct engine_domain *d, struct engine_gen *g);
/* The passphrase changed: serve the stored generation anew, cert.pfx remade. */
void engine_domain_refresh_pfx(struct engine_domain *d);
/*
 * A change of d's stored state: begin takes d->store_lock and copies the
 * state into *v; the caller edits *v (it may do store I/O, never network)
 * and ends with exactly one of:
 *  - engine_state_commit: write *v; on success it becomes d's state whole,
 *    on failure d is unchanged. Returns 0 or -errno.
 *  - engine_state_record: d's state becomes *v whatever the write does (for
 *    what status must show: an error, a pending half); a failed write is
 *    shown in status and retried by the scheduler until it lands.
 *  - engine_state_abort: no change.
 * Each releases d->store_lock.
 */
void engine_state_begin(struct engine_domain *d, struct engine_state *v);
int engine_state_commit(struct engine_domain *d, const struct engine_state *v) ENGINE_WUR;
void engine_state_record(struct engine_domain *d, const struct engine_state *v);
void engine_state_abort(struct engine_domain *d);
/* Commit *v with new names; on success *names and *n get the old ones. */
int engine_state_commit_names(struct engine_domain *d, const struct engine_state *v,
			      char ***names, size_t *n) ENGINE_WUR;
/* Write a state the scheduler found unsaved again (no lock held). */
void engine_state_retry(struct engine_domain *d);
/*
 * Put or delete the record domains/NAME/what (order, pending, csr, ...),
 * under d->store_lock: -ENOENT once the domain is removed, so nothing is
 * ever re-created beside the archive. del of a missing record is 0.
 */
int engine_domain_record_put(struct engine_domain *d, const char *what, const void *data,
			     size_t len) ENGINE_WUR;
int engine_domain_record_del(struct engine_domain *d, const char *what) ENGINE_WUR;
/* Parse a stored state record into d (d->store_lock and d->lock held, or d
 * not yet shared). */
int engine_domain_parse_state(struct engine_domain *d, const struct util_buf *b);
/* Add the domain name, stored in the store, to the table (no-op if there;
 * skipped with a log line if its state is unreadable). */
int engine_domain_load(struct engine *e, const char *name);
/* Take name out of the table without touching the store (removed elsewhere). */
int engine_domain_forget(struct engine *e, const char *name);
/* Publish g and hand it to the observer (d->publish_lock held for writing). */
void engine_notify_rotate(struct engine *e, struct engine_domain *d, struct engine_gen *g);
/* The domain name of a store key's NAME part (domains/NAME). */
void engine_name_from_store(const char *key, char *out, size_t len);
int engine_domain_load_gen(struct engine_domain *d);
/* A change status shows (d->lock held). */
void engine_domain_changed(struct engine_domain *d);
void engine_domain_set_error(struct engine_domain *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Store g as d's newest generation and hand it to the observer. */
int engine_commit_gen(struct engine_domain *d, struct engine_gen *g);
/* Next generation number of d (takes d->store_lock and d->lock). */
uint64_t engine_alloc_number(struct engine_domain *d);
/*
 * Stop serving the upload (removed or expired) and serve the managed one.
 * 0 (also when there was no upload) or -errno when the store refused: then
 * the upload is still served.
 */
int engine_drop_upload(struct engine_domain *d, const char *why) ENGINE_WUR;
/*
 * What committing g does to a domain's state v at time now: the lineage it
 * joins, the counters, and whether it is the one to serve (*serve).
 */
void engine_state_apply_gen(struct engine_state *v, const struct engine_gen *g, time_t now,
			    bool *serve);
/* Read generation number n of d from the store (no lock needed). */
int engine_domain_read_gen(struct engine_domain *d, uint64_t n, struct engine_gen **out);
void engine_conf_snapshot(struct engine *e, struct conf *out);

/* write.c */
/* The public key of the stored CSR (for CSR-based issuance). */
int engine_domain_csr_key(struct engine_domain *d, struct crypto_key **key);

/* acme_issuer.c */
struct engine_acme;
struct acme_http01;
struct engine_token;
/* validation: the CA found an authorization invalid (a failed validation). */
int engine_issue_acme(struct engine_domain *d, const struct conf *c, enum crypto_key_type kt,
		      struct crypto_key *reuse, struct engine_gen **out, time_t *retry_after,
		      bool *validation, char *why, size_t whylen);
int engine_acme_start(struct engine *e);
/* Has d an order saved before a restart, which the next issuance resumes
 * (store I/O: not under d->lock)? */
bool engine_acme_saved_order(struct engine_domain *d);
/* Fetch renewal information for d's managed ACME certificate (worker thread). */
void engine_acme_check_ari(struct engine_domain *d);
/* The ARI id of d's managed ACME certificate, for "replaces" (caller frees). */
char *engine_acme_replaces(struct engine_domain *d);
/* Revoke the certificate of g (before the domain is removed). */
int engine_acme_revoke(struct engine *e, struct engine_gen *g, char *why, size_t whylen);
/*
 * Revoke the certificates that removed domains left for revocation
 * (revoke/NAME@TIME records, made by rmdir with revoke_on_delete); a
 * failure is logged and the pass retried later (worker thread).
 */
void engine_revoke_pass(struct engine *e);
/* Cancel the client's requests in flight and refuse new ones (shutdown). */
void engine_acme_cancel(struct engine *e);
void engine_acme_stop(struct engine *e);
/* SIGHUP: drop the client so the next request uses c; log what needs a restart. */
void engine_acme_reload(struct engine *e, const struct conf *old, const struct conf *c);

/* cluster.c: several nodes on one shared (etcd) store; no-ops otherwise */
/* Follow other nodes' changes (after the workers could be started). */
int engine_cluster_start(struct engine *e);
void engine_cluster_stop(struct engine *e);
/*
 * Before issuing d: take the domain's cluster-wide lock and fence this
 * thread's writes on it, and re-read d's state. 0: go on (*lock to give to
 * engine_cluster_issue_end, NULL on a local store); -EBUSY: another node
 * issues it (retried shortly); -EALREADY: another node issued it since this
 * job was queued.
 */
int engine_cluster_issue_begin(struct engine_domain *d, struct store_lock **lock);
void engine_cluster_issue_end(struct engine_domain *d, struct store_lock *lock);
/* Is the shared store reachable (always true for a local one)? */
bool engine_cluster_reachable(struct engine *e);
/* http-01 tokens kept in a shared store, so any node answers the CA. */
int engine_cluster_token_put(struct engine *e, const char *token, const char *keyauth);
void engine_cluster_token_del(struct engine *e, const char *token);
int engine_cluster_token_get(struct engine *e, const char *token, struct util_buf *out);

/* hooks.c */
struct hook_item;
/* Run a hook and wait (bounded; killed with its process group at shutdown). */
int engine_hook_exec(struct engine *e, char *const *argv, char *const *env, char *why,
		     size_t whylen);
/* Queue the deploy (deploy=true) or notify hook for d, if configured. */
void engine_hook_queue(struct engine *e, struct engine_domain *d, bool deploy,
		       const char *event, time_t not_after);
int engine_hooks_start(struct engine *e);
void engine_hooks_stop(struct engine *e);
/* The observer's stale readers of d, which serves generation cur (see
 * struct engine_observer); 0 when none or unseen. No engine lock held. */
size_t engine_stale_readers(struct engine *e, struct engine_domain *d, uint64_t cur,
			    struct engine_stale_reader *out, size_t max);

/* probe.c */
/* d's probe endpoint (caller frees), NULL when it has none. */
char *engine_probe_target(struct engine *e, const char *name);
/* Ask d's endpoint what it serves and record it (hook thread: it blocks,
 * bounded). true when it serves the current generation or has no probe. */
bool engine_probe_run(struct engine *e, struct engine_domain *d);
/* Add the last answer to status.json's object o (takes d->lock). */
void engine_probe_json(struct engine_domain *d, json_t *o);

/* issue.c */
/* The renewal fraction and the issuer configured for the domain name
 * (takes e->conf_lock: not under d->lock). */
void engine_renewal_conf(struct engine *e, const char *name, double *fraction,
			 enum conf_issuer *issuer);
/*
 * When d's managed certificate is next issued, renewed or retried, with the
 * reason in why (optional), by the rules the scheduler follows; 0 when
 * nothing is planned (d->lock held). Status, status.json and metrics all
 * show this one time.
 */
time_t engine_domain_renew_at(const struct engine_domain *d, time_t now, double fraction,
			      enum conf_issuer issuer, char *why, size_t wl);
int engine_placeholder(struct engine_domain *d, struct engine_gen **out);
/*
 * When to try again after the failures-th failure in a row at now:
 * exponential back-off from 30 s to 6 h, or the CA's Retry-After when later.
 */
time_t engine_retry_at(int failures, time_t now, time_t retry_after);
/* Does d need a new managed certificate from issuer now? (d->lock held) */
bool engine_domain_due(const struct engine_domain *d, time_t now, double fraction,
		       enum conf_issuer issuer);
enum engine_upload_event {
	ENGINE_UPLOAD_NONE,
	ENGINE_UPLOAD_EXPIRING, /* within warn_days of its end, not yet told */
	ENGINE_UPLOAD_EXPIRED,  /* to be replaced by the managed certificate */
	ENGINE_PLACEHOLDER_DUE, /* no upload: the placeholder itself is due for renewal */
};
/* What happens to a served upload now? (d->lock held) */
enum engine_upload_event engine_upload_check(const struct engine_domain *d, time_t now,
					     int warn_days);
/* Note a failed validation at t in vfail (a state's), replacing the oldest. */
void engine_vfail_add(time_t *vfail, time_t t);
void engine_queue(struct engine *e, struct engine_domain *d);
/*
 * Make the scheduler look again now (something may be due sooner than it
 * planned). Never lost: a wake while it is busy makes it look once more
 * before it sleeps. Takes e->queue_lock (a leaf lock).
 */
void engine_schedule_wake(struct engine *e);
void engine_queue_ari(struct engine *e, struct engine_domain *d);
/* Status fields: next renewal and why, last attempt, failures, next retry. */
void engine_schedule_json(struct engine_domain *d, json_t *o);
/* Queue an order the daemon starts by itself (paced, see acme/acme.h). */
void engine_queue_auto(struct engine *e, struct engine_domain *d);
/* Queue a revocation pass (engine_revoke_pass) on a worker. */
void engine_queue_revoke(struct engine *e);
int engine_workers_start(struct engine *e);
void engine_workers_stop(struct engine *e);
int engine_ca_get(struct engine *e, bool create, struct crypto_cert **root);

#endif
