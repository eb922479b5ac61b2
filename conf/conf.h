/* SPDX-License-Identifier: MIT */
/*
 * conf: the configuration of one certfs mount, from an INI file (inih) and
 * the command line. Every key of the contract's configuration section is
 * here with its default; the command line goes through the same setter as
 * the file, so both are validated the same way and the command line wins
 * simply by being applied last.
 */
#ifndef CERTFS_CONF_H
#define CERTFS_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CONF_WUR __attribute__((warn_unused_result))

struct conf_err {
	char msg[512]; /* "FILE:LINE: what is wrong" */
};

enum conf_issuer {
	CONF_ISSUER_LOCAL,
	CONF_ISSUER_ACME,
	CONF_ISSUER_SELFSIGNED,
	CONF_ISSUER_NONE,    /* [domain NAME] only: no managed certificate (upload only) */
};

enum conf_challenge {
	CONF_CHALLENGE_HTTP01,
	CONF_CHALLENGE_DNS01,
	CONF_CHALLENGE_TLSALPN01,
};

/* [domain NAME]: per-domain overrides; unset fields are NULL / -1. */
struct conf_domain {
	char *name;          /* canonical (lower case) */
	char **names;        /* extra SANs (NULL-terminated) or NULL */
	char *key_type;      /* NULL: inherit */
	char *dns_delegate;  /* dns-01 TXT record name to write instead of _acme-challenge.NAME */
	char *probe;         /* HOST:PORT serving the domain over TLS, asked after rotations */
	int challenge;       /* enum conf_challenge or -1 */
	int issuer;          /* enum conf_issuer or -1 */
};

struct conf {
	char *path;          /* file loaded, NULL when none */

	/* [certfs] */
	char *store;         /* "DIR" or "etcd://HOST:PORT[,..]/PREFIX"; NULL: default */
	enum conf_issuer issuer;       /* local */
	char *key_type;      /* "ec256" (ec256|ec384|rsa2048|rsa3072|rsa4096|ed25519) */
	bool key_reuse;      /* false: new key on every renewal */
	uid_t key_owner;     /* 0 (user name or number) */
	gid_t key_group;     /* 0 (group name or number) */
	mode_t key_mode;     /* 0600 (octal, at most 0777, no execute bits) */
	char *pfx_password;  /* "" (secret) */
	bool pfx_legacy;     /* false: AES-256; true: 3DES/SHA-1 for old Java/Windows */
	int warn_days;       /* 14 (0..365) */
	double renew_fraction; /* 0.3333 (0 < f < 1): renew when this much lifetime is left */
	int workers;         /* 4 (1..64) */
	bool track_readers;  /* true: note which processes read which generation */

	/* [acme] */
	char *acme_directory;    /* NULL */
	char *acme_email;        /* NULL */
	char *acme_eab_kid;      /* NULL */
	char *acme_eab_hmac_key; /* NULL (secret, base64url) */
	char *acme_ca_bundle;    /* NULL: system trust store */
	enum conf_challenge acme_challenge; /* http-01 */
	char *acme_http01_listen;   /* NULL: serve from the mount's .well-known */
	char *acme_tls_alpn01_listen; /* NULL: no tls-alpn-01 responder */
	char *acme_dns_resolver;    /* "IPV4:PORT" for CNAME lookups; NULL: the system's */
	char *acme_preferred_chain; /* NULL: the CA's default chain */
	char *acme_profile;         /* NULL */
	bool acme_revoke_on_delete; /* false */

	/* [hooks]: argv vectors (NULL-terminated) or NULL */
	char **hook_deploy;
	char **hook_notify;
	char **hook_dns;
	char *hook_deploy_dir;   /* NULL; executables run in name order after deploy */
	int hook_stale_after;    /* 600 s (0: never): notify "stale" this long after a
				  * rotation while a process still reads an old generation */

	/* [etcd]: the etcd store (paths checked to exist when set) */
	char *etcd_ca_bundle;     /* NULL: plain http to etcd */
	char *etcd_cert, *etcd_key; /* TLS client certificate, NULL: none */
	char *etcd_user;          /* NULL: etcd auth off */
	char *etcd_password_file; /* first line is the password */
	char *etcd_kek_file;      /* key_encryption_key_file: 32 bytes, root-only */
	int etcd_lease_ttl;       /* 10 (2..300): seconds a dead node keeps its locks */

	/* [local] */
	int local_ca_lifetime_days;   /* 3650 (1..36500) */
	int local_cert_lifetime_days; /* 90 (1..3650) */

	struct conf_domain *domains;
	size_t ndomains;
};

/* Fill c with the defaults above (nothing to free yet besides conf_clear). */
void conf_init(struct conf *c);
/* Free everything c owns (secrets wiped); c can be conf_init'ed again. */
void conf_clear(struct conf *c);

/*
 * Load path on top of c. An unknown section or key, a bad value, a
 * duplicate [domain] or an unreadable file fails with -EINVAL (-ENOENT when
 * the file is missing) and err "FILE:LINE: what is wrong"; c is then left
 * as it was before the call.
 * Syntax (inih): "key = value" or "key: value"; lines starting with ';' or
 * '#' are comments, and " ;" (whitespace, then ';') starts an inline
 * comment. A line holds at most 199 bytes (inih's line buffer); longer
 * lines are refused, not split. A key may appear once per section; an
 * empty value unsets optional keys (hooks, acme strings, store).
 */
int conf_load_file(struct conf *c, const char *path, struct conf_err *err) CONF_WUR;

/*
 * Set one key as the file would ("certfs", "key_type", "rsa2048"); used for
 * command-line options. err reads "SOURCE: what is wrong" with source as
 * given (e.g. "--issuer").
 */
int conf_set(struct conf *c, const char *section, const char *key, const char *value,
	     const char *source, struct conf_err *err) CONF_WUR;

/* Overrides for a domain, or NULL. */
const struct conf_domain *conf_domain_find(const struct conf *c, const char *name);

const char *conf_issuer_name(enum conf_issuer i);     /* "local", "acme", "selfsigned", "none" */
const char *conf_challenge_name(enum conf_challenge ch); /* "http-01", "dns-01", "tls-alpn-01" */

/* Deep copy (for handing a snapshot to worker threads). */
int conf_dup(const struct conf *src, struct conf *dst) CONF_WUR;

#endif
