/* SPDX-License-Identifier: MIT */
/*
 * The configuration: defaults, one table of every key with its section and
 * type, value checks shared by the INI file and the command line, and the
 * INI loader. inih does the key = value splitting and the comments; the
 * loader feeds it one line at a time through its own reader so that it
 * knows the line number, refuses over-long lines instead of letting inih
 * split them, and parses [section] headers itself (inih truncates section
 * names at 50 bytes, a domain name may have 253). A load works on a copy
 * that replaces the caller's configuration only when the whole file is good.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ini.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "util/util.h"

/* A configuration file is small; anything bigger is a mistake. */
#define CONF_FILE_MAX (1024u * 1024)
/* Longest domain name (RFC 1035 presentation form without the root dot). */
#define CONF_NAME_MAX 253

enum conf_sect {
	SECT_NONE,
	SECT_CERTFS,
	SECT_ACME,
	SECT_HOOKS,
	SECT_LOCAL,
	SECT_ETCD,
	SECT_DOMAIN,
};

enum conf_type {
	T_STORE,
	T_ISSUER,
	T_KEYTYPE,
	T_BOOL,
	T_UID,
	T_GID,
	T_MODE,
	T_SECRET,
	T_INT,
	T_FRACTION,
	T_URL,
	T_EMAIL,
	T_STR,
	T_B64URL,
	T_PATH,
	T_DIR,
	T_FILE, /* a path that must name a readable regular file */
	T_CHALLENGE,
	T_LISTEN,
	T_HOSTPORT,
	T_ARGV,
	T_NAMES,
};

struct conf_key {
	enum conf_sect sect;
	const char *name;
	enum conf_type type;
	size_t off; /* in struct conf, or struct conf_domain for SECT_DOMAIN */
	int min, max;
};

#define K(s, n, t, f) { s, n, t, offsetof(struct conf, f), 0, 0 }
#define KI(s, n, f, lo, hi) { s, n, T_INT, offsetof(struct conf, f), lo, hi }
#define KD(n, t, f) { SECT_DOMAIN, n, t, offsetof(struct conf_domain, f), 0, 0 }

static const struct conf_key conf_keys[] = {
	K(SECT_CERTFS, "store", T_STORE, store),
	K(SECT_CERTFS, "issuer", T_ISSUER, issuer),
	K(SECT_CERTFS, "key_type", T_KEYTYPE, key_type),
	K(SECT_CERTFS, "key_reuse", T_BOOL, key_reuse),
	K(SECT_CERTFS, "key_owner", T_UID, key_owner),
	K(SECT_CERTFS, "key_group", T_GID, key_group),
	K(SECT_CERTFS, "key_mode", T_MODE, key_mode),
	K(SECT_CERTFS, "pfx_password", T_SECRET, pfx_password),
	K(SECT_CERTFS, "pfx_legacy", T_BOOL, pfx_legacy),
	KI(SECT_CERTFS, "warn_days", warn_days, 0, 365),
	K(SECT_CERTFS, "renew_fraction", T_FRACTION, renew_fraction),
	KI(SECT_CERTFS, "workers", workers, 1, 64),
	K(SECT_CERTFS, "track_readers", T_BOOL, track_readers),

	K(SECT_ACME, "directory", T_URL, acme_directory),
	K(SECT_ACME, "email", T_EMAIL, acme_email),
	K(SECT_ACME, "eab_kid", T_STR, acme_eab_kid),
	K(SECT_ACME, "eab_hmac_key", T_B64URL, acme_eab_hmac_key),
	K(SECT_ACME, "ca_bundle", T_PATH, acme_ca_bundle),
	K(SECT_ACME, "challenge", T_CHALLENGE, acme_challenge),
	K(SECT_ACME, "http01_listen", T_LISTEN, acme_http01_listen),
	K(SECT_ACME, "tls_alpn01_listen", T_LISTEN, acme_tls_alpn01_listen),
	K(SECT_ACME, "dns_resolver", T_LISTEN, acme_dns_resolver),
	K(SECT_ACME, "preferred_chain", T_STR, acme_preferred_chain),
	K(SECT_ACME, "profile", T_STR, acme_profile),
	K(SECT_ACME, "revoke_on_delete", T_BOOL, acme_revoke_on_delete),

	K(SECT_HOOKS, "deploy", T_ARGV, hook_deploy),
	K(SECT_HOOKS, "deploy_dir", T_DIR, hook_deploy_dir),
	K(SECT_HOOKS, "notify", T_ARGV, hook_notify),
	K(SECT_HOOKS, "dns", T_ARGV, hook_dns),
	KI(SECT_HOOKS, "stale_after", hook_stale_after, 0, 30 * 86400),

	KI(SECT_LOCAL, "ca_lifetime_days", local_ca_lifetime_days, 1, 36500),
	KI(SECT_LOCAL, "cert_lifetime_days", local_cert_lifetime_days, 1, 3650),

	K(SECT_ETCD, "ca_bundle", T_FILE, etcd_ca_bundle),
	K(SECT_ETCD, "cert", T_FILE, etcd_cert),
	K(SECT_ETCD, "key", T_FILE, etcd_key),
	K(SECT_ETCD, "user", T_STR, etcd_user),
	K(SECT_ETCD, "password_file", T_FILE, etcd_password_file),
	K(SECT_ETCD, "key_encryption_key_file", T_FILE, etcd_kek_file),
	KI(SECT_ETCD, "lease_ttl", etcd_lease_ttl, 2, 300),

	KD("names", T_NAMES, names),
	KD("key_type", T_KEYTYPE, key_type),
	KD("challenge", T_CHALLENGE, challenge),
	KD("issuer", T_ISSUER, issuer),
	KD("dns_delegate", T_STR, dns_delegate),
	KD("probe", T_HOSTPORT, probe),
};

#define CONF_NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

static const char *const conf_key_types[] = {
	"ec256", "ec384", "rsa2048", "rsa3072", "rsa4096", "ed25519",
};

static const char *const conf_issuers[] = {
	[CONF_ISSUER_LOCAL] = "local",
	[CONF_ISSUER_ACME] = "acme",
	[CONF_ISSUER_SELFSIGNED] = "selfsigned",
	[CONF_ISSUER_NONE] = "none",
};

static const char *const conf_challenges[] = {
	[CONF_CHALLENGE_HTTP01] = "http-01",
	[CONF_CHALLENGE_DNS01] = "dns-01",
	[CONF_CHALLENGE_TLSALPN01] = "tls-alpn-01",
};

const char *conf_issuer_name(enum conf_issuer i)
{
	if ((unsigned)i >= sizeof(conf_issuers) / sizeof(conf_issuers[0]))
		return "?";
	return conf_issuers[i];
}

const char *conf_challenge_name(enum conf_challenge ch)
{
	if ((unsigned)ch >= sizeof(conf_challenges) / sizeof(conf_challenges[0]))
		return "?";
	return conf_challenges[ch];
}

/* ---- init, clear, copy --------------------------------------------------- */

void conf_init(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->issuer = CONF_ISSUER_LOCAL;
	c->key_reuse = false;
	c->key_owner = 0;
	c->key_group = 0;
	c->key_mode = 0600;
	c->pfx_legacy = false;
	c->warn_days = 14;
	c->renew_fraction = 1.0 / 3.0;
	c->workers = 4;
	c->track_readers = true;
	c->hook_stale_after = 600;
	c->acme_challenge = CONF_CHALLENGE_HTTP01;
	c->acme_revoke_on_delete = false;
	c->local_ca_lifetime_days = 3650;
	c->etcd_lease_ttl = 10;
	c->local_cert_lifetime_days = 90;
	/*
	 * key_type and pfx_password have non-NULL defaults ("ec256", ""); they
	 * are allocated so that every string in the struct is owned the same
	 * way. On allocation failure here they stay NULL, which readers treat
	 * as the default too.
	 */
	c->key_type = strdup("ec256");
	c->pfx_password = strdup("");
}

static void argv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static void domain_clear(struct conf_domain *d)
{
	free(d->name);
	argv_free(d->names);
	free(d->key_type);
	free(d->dns_delegate);
	free(d->probe);
	memset(d, 0, sizeof(*d));
	d->challenge = -1;
	d->issuer = -1;
}

void conf_clear(struct conf *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->store);
	free(c->key_type);
	util_secret_str_free(c->pfx_password);
	free(c->acme_directory);
	free(c->acme_email);
	free(c->acme_eab_kid);
	util_secret_str_free(c->acme_eab_hmac_key);
	free(c->acme_ca_bundle);
	free(c->acme_http01_listen);
	free(c->acme_tls_alpn01_listen);
	free(c->acme_dns_resolver);
	free(c->acme_preferred_chain);
	free(c->acme_profile);
	free(c->etcd_ca_bundle);
	free(c->etcd_cert);
	free(c->etcd_key);
	free(c->etcd_user);
	free(c->etcd_password_file);
	free(c->etcd_kek_file);
	argv_free(c->hook_deploy);
	argv_free(c->hook_notify);
	argv_free(c->hook_dns);
	free(c->hook_deploy_dir);
	for (size_t i = 0; i < c->ndomains; i++)
		domain_clear(&c->domains[i]);
	free(c->domains);
	memset(c, 0, sizeof(*c));
}

static int str_dup(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int argv_dup(char *const *src, char ***out)
{
	size_t n = 0;
	char **v;

	*out = NULL;
	if (!src)
		return 0;
	while (src[n])
		n++;
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i] = strdup(src[i]);
		if (!v[i]) {
			argv_free(v);
			return -ENOMEM;
		}
	}
	*out = v;
	return 0;
}

int conf_dup(const struct conf *src, struct conf *dst)
{
	struct conf d;
	int rc = -ENOMEM;

	/* Scalars first, then every pointer replaced by an owned copy. */
	d = *src;
	d.path = d.store = d.key_type = d.pfx_password = NULL;
	d.acme_directory = d.acme_email = d.acme_eab_kid = NULL;
	d.acme_eab_hmac_key = d.acme_ca_bundle = d.acme_http01_listen = NULL;
	d.acme_tls_alpn01_listen = NULL;
	d.acme_dns_resolver = NULL;
	d.acme_preferred_chain = d.acme_profile = NULL;
	d.etcd_ca_bundle = d.etcd_cert = d.etcd_key = d.etcd_user = NULL;
	d.etcd_password_file = d.etcd_kek_file = NULL;
	d.hook_deploy = d.hook_notify = d.hook_dns = NULL;
	d.hook_deploy_dir = NULL;
	d.domains = NULL;
	d.ndomains = 0;

	if (str_dup(src->path, &d.path) || str_dup(src->store, &d.store) ||
	    str_dup(src->key_type, &d.key_type) ||
	    str_dup(src->pfx_password, &d.pfx_password) ||
	    str_dup(src->acme_directory, &d.acme_directory) ||
	    str_dup(src->acme_email, &d.acme_email) ||
	    str_dup(src->acme_eab_kid, &d.acme_eab_kid) ||
	    str_dup(src->acme_eab_hmac_key, &d.acme_eab_hmac_key) ||
	    str_dup(src->acme_ca_bundle, &d.acme_ca_bundle) ||
	    str_dup(src->acme_http01_listen, &d.acme_http01_listen) ||
	    str_dup(src->acme_tls_alpn01_listen, &d.acme_tls_alpn01_listen) ||
	    str_dup(src->acme_dns_resolver, &d.acme_dns_resolver) ||
	    str_dup(src->acme_preferred_chain, &d.acme_preferred_chain) ||
	    str_dup(src->acme_profile, &d.acme_profile) ||
	    str_dup(src->etcd_ca_bundle, &d.etcd_ca_bundle) ||
	    str_dup(src->etcd_cert, &d.etcd_cert) || str_dup(src->etcd_key, &d.etcd_key) ||
	    str_dup(src->etcd_user, &d.etcd_user) ||
	    str_dup(src->etcd_password_file, &d.etcd_password_file) ||
	    str_dup(src->etcd_kek_file, &d.etcd_kek_file) ||
	    argv_dup(src->hook_deploy, &d.hook_deploy) ||
	    argv_dup(src->hook_notify, &d.hook_notify) ||
	    argv_dup(src->hook_dns, &d.hook_dns) ||
	    str_dup(src->hook_deploy_dir, &d.hook_deploy_dir))
		goto out;
	if (src->ndomains) {
		d.domains = calloc(src->ndomains, sizeof(*d.domains));
		if (!d.domains)
			goto out;
		for (size_t i = 0; i < src->ndomains; i++) {
			const struct conf_domain *s = &src->domains[i];
			struct conf_domain *t = &d.domains[i];

			t->challenge = s->challenge;
			t->issuer = s->issuer;
			d.ndomains = i + 1;
			if (str_dup(s->name, &t->name) ||
			    argv_dup(s->names, &t->names) ||
			    str_dup(s->key_type, &t->key_type) ||
			    str_dup(s->dns_delegate, &t->dns_delegate) ||
			    str_dup(s->probe, &t->probe))
				goto out;
		}
	}
	*dst = d;
	memset(&d, 0, sizeof(d));
	rc = 0;
out:
	conf_clear(&d);
	return rc;
}

const struct conf_domain *conf_domain_find(const struct conf *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->ndomains; i++)
		if (c->domains[i].name && !strcasecmp(c->domains[i].name, name))
			return &c->domains[i];
	return NULL;
}

/* ---- value checks -------------------------------------------------------- */

/* A short reason into why; values are quoted only where they are not secret. */
static int why_set(char *why, size_t len, const char *fmt, ...) UTIL_PRINTF(3, 4);
static int why_set(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool has_ctl(const char *s, bool tab_ok)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch < 0x20 && !(tab_ok && ch == '\t')) || ch == 0x7f)
			return true;
	}
	return false;
}

static bool has_space(const char *s)
{
	for (; *s; s++)
		if (isspace((unsigned char)*s))
			return true;
	return false;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(v, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_long(const char *v, long lo, long hi, long *out)
{
	char *end;
	long n;

	if (!*v || isspace((unsigned char)*v))
		return -EINVAL;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end)
		return -EINVAL;
	if (n < lo || n > hi)
		return -ERANGE;
	*out = n;
	return 0;
}

static int lookup_enum(const char *v, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcasecmp(v, names[i]))
			return (int)i;
	return -1;
}

/*
 * A numeric id: decimal digits only, below (uid_t)-1, which the kernel
 * reserves as "no change" in chown(2) and so can never name an owner.
 */
static int parse_id(const char *v, unsigned long *out)
{
	unsigned long long n;
	char *end;

	if (!*v)
		return -EINVAL;
	for (const char *p = v; *p; p++)
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || *end || n >= 4294967295ull)
		return -ERANGE;
	*out = (unsigned long)n;
	return 0;
}

static bool all_digits(const char *v)
{
	const char *p = v;

	if (*p == '-' || *p == '+')
		p++;
	if (!*p)
		return false;
	for (; *p; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	return true;
}

static int lookup_user(const char *v, uid_t *out, char *why, size_t wl)
{
	struct passwd pw, *res = NULL;
	size_t blen = 16384;
	unsigned long id;
	char *buf = NULL;
	int rc;

	if (all_digits(v)) {
		if (parse_id(v, &id))
			return why_set(why, wl, "key_owner: \"%.32s\" is not a valid user id", v);
		*out = (uid_t)id;
		return 0;
	}
	for (;;) {
		buf = malloc(blen);
		if (!buf)
			return -ENOMEM;
		rc = getpwnam_r(v, &pw, buf, blen, &res);
		if (rc != ERANGE || blen >= 1024 * 1024)
			break;
		free(buf);
		blen *= 4;
	}
	if (res)
		*out = res->pw_uid;
	free(buf);
	if (!res)
		return why_set(why, wl, "key_owner: no such user \"%.64s\"", v);
	return 0;
}

static int lookup_group(const char *v, gid_t *out, char *why, size_t wl)
{
	struct group gr, *res = NULL;
	size_t blen = 16384;
	unsigned long id;
	char *buf = NULL;
	int rc;

	if (all_digits(v)) {
		if (parse_id(v, &id))
			return why_set(why, wl, "key_group: \"%.32s\" is not a valid group id", v);
		*out = (gid_t)id;
		return 0;
	}
	for (;;) {
		buf = malloc(blen);
		if (!buf)
			return -ENOMEM;
		rc = getgrnam_r(v, &gr, buf, blen, &res);
		if (rc != ERANGE || blen >= 1024 * 1024)
			break;
		free(buf);
		blen *= 4;
	}
	if (res)
		*out = res->gr_gid;
	free(buf);
	if (!res)
		return why_set(why, wl, "key_group: no such group \"%.64s\"", v);
	return 0;
}

static int parse_mode(const char *v, mode_t *out, char *why, size_t wl)
{
	unsigned long m = 0;
	size_t n = strlen(v);

	if (n == 0 || n > 4)
		return why_set(why, wl, "key_mode: \"%.32s\" is not an octal mode like 0640", v);
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '7')
			return why_set(why, wl, "key_mode: \"%.32s\" is not an octal mode like 0640", v);
		m = m * 8 + (unsigned long)(*p - '0');
	}
	if (m > 0777)
		return why_set(why, wl, "key_mode: %s is above 0777", v);
	/* A private key is data, never a program. */
	if (m & 0111)
		return why_set(why, wl, "key_mode: %s has execute bits; keys are not programs", v);
	*out = (mode_t)m;
	return 0;
}

/* Lower-case and check one DNS name in place: labels of [a-z0-9-], "*." first. */
static int check_dns_name(char *name)
{
	size_t len = strlen(name), lab = 0;
	char *p = name;

	if (len == 0 || len > CONF_NAME_MAX)
		return -EINVAL;
	for (char *q = name; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	if (p[0] == '*') {
		if (p[1] != '.')
			return -EINVAL;
		p += 2;
		if (!*p)
			return -EINVAL;
	}
	for (char *q = p;; q++) {
		if (*q == '.' || *q == '\0') {
			/* Empty labels, a leading/trailing '-' and 64+ bytes are invalid. */
			if (lab == 0 || lab > 63 || q[-1] == '-' || q[-(long)lab] == '-')
				return -EINVAL;
			if (*q == '\0')
				break;
			lab = 0;
			continue;
		}
		if (!(islower((unsigned char)*q) || isdigit((unsigned char)*q) || *q == '-'))
			return -EINVAL;
		lab++;
	}
	return 0;
}

/*
 * Split a hook command into an argv without a shell: whitespace separates
 * words, double quotes group them (and may produce an empty word), and a
 * backslash inside quotes takes the next character literally. The first
 * word must be an absolute path so that $PATH never decides what runs.
 */
static int split_argv(const char *key, const char *v, char ***out, char *why, size_t wl)
{
	size_t len = strlen(v), n = 0;
	char **argv = NULL, *word = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	/* At most len/2+1 words; one buffer per word sized for the whole value. */
	argv = calloc(len / 2 + 2, sizeof(*argv));
	if (!argv)
		goto out;
	for (const char *p = v; *p;) {
		size_t wlen = 0;
		bool quoted = false;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		word = malloc(len + 1);
		if (!word)
			goto out;
		while (*p && (quoted || (*p != ' ' && *p != '\t'))) {
			if (*p == '"') {
				quoted = !quoted;
				p++;
				continue;
			}
			if (quoted && *p == '\\') {
				p++;
				if (!*p)
					break;
			}
			word[wlen++] = *p++;
		}
		if (quoted) {
			rc = why_set(why, wl, "%s: unterminated double quote", key);
			goto out;
		}
		word[wlen] = '\0';
		argv[n++] = word;
		word = NULL;
	}
	if (n == 0) {
		/* An empty value switches the hook off. */
		rc = 0;
		goto out;
	}
	if (argv[0][0] != '/') {
		rc = why_set(why, wl, "%s: \"%.64s\" is not an absolute path (hooks run without a shell or $PATH)",
			     key, argv[0]);
		goto out;
	}
	*out = argv;
	argv = NULL;
	rc = 0;
out:
	free(word);
	argv_free(argv);
	return rc;
}

/* "names": comma or whitespace separated DNS names. */
static int split_names(const char *v, char ***out, char *why, size_t wl)
{
	size_t len = strlen(v), n = 0;
	char **names = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	names = calloc(len / 2 + 2, sizeof(*names));
	if (!names)
		goto out;
	for (const char *p = v; *p;) {
		size_t l;

		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		l = strcspn(p, ", \t\r\n\v\f");
		names[n] = strndup(p, l);
		if (!names[n])
			goto out;
		if (check_dns_name(names[n])) {
			rc = why_set(why, wl, "names: \"%.*s\" is not a valid DNS name",
				     (int)(l > 64 ? 64 : l), p);
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			if (!strcmp(names[i], names[n])) {
				rc = why_set(why, wl, "names: \"%.64s\" is listed twice", names[n]);
				goto out;
			}
		}
		n++;
		p += l;
	}
	if (n == 0) {
		rc = why_set(why, wl, "names: empty list");
		goto out;
	}
	*out = names;
	names = NULL;
	rc = 0;
out:
	argv_free(names);
	return rc;
}

/* ADDR:PORT with ADDR an IPv4 address, [IPv6], "localhost" or empty (all). */
static int check_listen(const char *key, const char *v, char *why, size_t wl)
{
	const char *colon = strrchr(v, ':');
	unsigned char bin[16];
	char addr[64];
	bool ok = false;
	size_t alen;
	long port;

	if (!colon || (size_t)(colon - v) >= sizeof(addr))
		return why_set(why, wl, "%s: \"%.64s\" is not ADDR:PORT (e.g. 0.0.0.0:80, [::1]:5002)", key, v);
	alen = (size_t)(colon - v);
	memcpy(addr, v, alen);
	addr[alen] = '\0';
	if (parse_long(colon + 1, 1, 65535, &port))
		return why_set(why, wl, "%s: \"%.64s\" has no port in 1..65535", key, v);
	if (alen == 0 || !strcmp(addr, "localhost"))
		ok = true;
	else if (addr[0] == '[' && alen >= 3 && addr[alen - 1] == ']') {
		addr[alen - 1] = '\0';
		ok = inet_pton(AF_INET6, addr + 1, bin) == 1;
	} else
		ok = inet_pton(AF_INET, addr, bin) == 1;
	if (!ok)
		return why_set(why, wl, "%s: \"%.64s\" is not ADDR:PORT (e.g. 0.0.0.0:80, [::1]:5002)", key, v);
	return 0;
}

/* HOST:PORT or [IPV6]:PORT of a server to connect to (a name is resolved then). */
static int check_hostport(const char *key, const char *v, char *why, size_t wl)
{
	const char *colon = strrchr(v, ':');
	long port;

	if (!colon || colon == v || has_space(v) || (colon - v) > 255 ||
	    (v[0] == '[' && colon[-1] != ']') || (v[0] != '[' && memchr(v, ':', (size_t)(colon - v))))
		return why_set(why, wl, "%s: \"%.64s\" is not HOST:PORT (e.g. www.example.com:443, "
				 "127.0.0.1:443, [::1]:443)", key, v);
	if (parse_long(colon + 1, 1, 65535, &port))
		return why_set(why, wl, "%s: \"%.64s\" has no port in 1..65535", key, v);
	return 0;
}

static int check_url(const char *v, char *why, size_t wl)
{
	/* RFC 8555 section 6.1: ACME is spoken over HTTPS only. */
	if (strncasecmp(v, "https://", 8) || !v[8] || v[8] == '/' || has_space(v))
		return why_set(why, wl, "directory: \"%.64s\" is not an https:// URL", v);
	return 0;
}

static int check_email(const char *v, char *why, size_t wl)
{
	const char *at = strchr(v, '@');

	if (!at || at == v || !at[1] || strchr(at + 1, '@') || has_space(v) ||
	    strchr(v, ',') || strchr(at + 1, '.') == NULL)
		return why_set(why, wl, "email: \"%.64s\" is not an e-mail address", v);
	return 0;
}

static int check_b64url(const char *v, char *why, size_t wl)
{
	size_t n = strlen(v);

	while (n && v[n - 1] == '=')
		n--;
	if (!n)
		return why_set(why, wl, "eab_hmac_key: empty");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];

		/* No value in the message: this is a secret. */
		if (!isalnum(ch) && ch != '-' && ch != '_')
			return why_set(why, wl, "eab_hmac_key: not base64url");
	}
	return 0;
}

/*
 * A file (dir false: a CA bundle, readable and not empty) or a directory
 * (dir true: deploy_dir, listable) certfs will use: checked at start, not
 * at first use, so a typo stops start-up with the line that has it.
 */
static int check_path(const char *key, const char *v, bool dir, char *why, size_t wl)
{
	struct stat st;

	if (v[0] != '/')
		return why_set(why, wl, "%s: \"%.64s\" is not an absolute path", key, v);
	if (stat(v, &st))
		return why_set(why, wl, "%s: %.200s: %s", key, v, strerror(errno));
	if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
		return why_set(why, wl, "%s: %.200s is not a %s", key, v,
			       dir ? "directory" : "regular file");
	if (access(v, dir ? R_OK | X_OK : R_OK))
		return why_set(why, wl, "%s: %.200s: %s", key, v, strerror(errno));
	if (!dir && st.st_size == 0)
		return why_set(why, wl, "%s: %.200s is empty", key, v);
	return 0;
}

/* A hook's program: an executable regular file. */
static int check_program(const char *key, const char *v, char *why, size_t wl)
{
	struct stat st;

	if (stat(v, &st))
		return why_set(why, wl, "%s: %.200s: %s", key, v, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return why_set(why, wl, "%s: %.200s is not a regular file", key, v);
	if (access(v, X_OK))
		return why_set(why, wl, "%s: %.200s is not executable", key, v);
	return 0;
}

/* Replace a string field with a copy of v (NULL when v is NULL). */
static int set_str(char **field, const char *v, bool secret)
{
	char *n = NULL;

	if (v) {
		n = strdup(v);
		if (!n)
			return -ENOMEM;
	}
	if (secret)
		util_secret_str_free(*field);
	else
		free(*field);
	*field = n;
	return 0;
}

/*
 * Check and apply one value. base is the struct conf or the struct
 * conf_domain the key's offset refers to. Nothing is changed on failure.
 */
static int apply(const struct conf_key *k, void *base, const char *v, char *why, size_t wl)
{
	char *fp = (char *)base + k->off;
	bool dom = k->sect == SECT_DOMAIN;
	long n;
	int i, rc;

	if (has_ctl(v, k->type == T_ARGV || k->type == T_NAMES))
		return why_set(why, wl, "%s: contains a control character", k->name);

	switch (k->type) {
	case T_STORE:
		if (!*v)
			return set_str((char **)(void *)fp, NULL, false);
		return set_str((char **)(void *)fp, v, false);
	case T_ISSUER:
		i = lookup_enum(v, conf_issuers, sizeof(conf_issuers) / sizeof(conf_issuers[0]));
		if (i < 0)
			return why_set(why, wl, "issuer: \"%.64s\" is not local, acme, selfsigned%s", v,
				       dom ? " or none" : "");
		/* Every domain needs some issuer; "none" opts single domains out. */
		if (i == CONF_ISSUER_NONE && !dom)
			return why_set(why, wl, "issuer: none is only for [domain NAME] sections");
		if (dom)
			*(int *)(void *)fp = i;
		else
			*(enum conf_issuer *)(void *)fp = (enum conf_issuer)i;
		return 0;
	case T_CHALLENGE:
		i = lookup_enum(v, conf_challenges, sizeof(conf_challenges) / sizeof(conf_challenges[0]));
		if (i < 0)
			return why_set(why, wl, "challenge: \"%.64s\" is not http-01, dns-01 or tls-alpn-01", v);
		if (dom)
			*(int *)(void *)fp = i;
		else
			*(enum conf_challenge *)(void *)fp = (enum conf_challenge)i;
		return 0;
	case T_KEYTYPE:
		i = lookup_enum(v, conf_key_types, sizeof(conf_key_types) / sizeof(conf_key_types[0]));
		if (i < 0)
			return why_set(why, wl,
				       "key_type: \"%.64s\" is not one of ec256, ec384, rsa2048, rsa3072, rsa4096, ed25519",
				       v);
		return set_str((char **)(void *)fp, conf_key_types[i], false);
	case T_BOOL:
		if (parse_bool(v, (bool *)(void *)fp))
			return why_set(why, wl, "%s: \"%.64s\" is not a boolean (true/false, yes/no, on/off, 1/0)",
				       k->name, v);
		return 0;
	case T_UID:
		return lookup_user(v, (uid_t *)(void *)fp, why, wl);
	case T_GID:
		return lookup_group(v, (gid_t *)(void *)fp, why, wl);
	case T_MODE:
		return parse_mode(v, (mode_t *)(void *)fp, why, wl);
	case T_SECRET:
		return set_str((char **)(void *)fp, v, true);
	case T_INT:
		rc = parse_long(v, k->min, k->max, &n);
		if (rc == -ERANGE)
			return why_set(why, wl, "%s: %s is out of range %d..%d", k->name, v, k->min, k->max);
		if (rc)
			return why_set(why, wl, "%s: \"%.64s\" is not a number", k->name, v);
		*(int *)(void *)fp = (int)n;
		return 0;
	case T_FRACTION: {
		char *end;
		double d;

		errno = 0;
		d = strtod(v, &end);
		if (!*v || isspace((unsigned char)*v) || errno || *end || !isfinite(d))
			return why_set(why, wl, "%s: \"%.64s\" is not a number", k->name, v);
		if (d <= 0.0 || d >= 1.0)
			return why_set(why, wl, "%s: %s must be between 0 and 1 (exclusive)", k->name, v);
		*(double *)(void *)fp = d;
		return 0;
	}
	case T_URL:
		if (!*v)
			return set_str((char **)(void *)fp, NULL, false);
		rc = check_url(v, why, wl);
		return rc ? rc : set_str((char **)(void *)fp, v, false);
	case T_EMAIL:
		if (!strncasecmp(v, "mailto:", 7))
			v += 7;
		if (!*v)
			return set_str((char **)(void *)fp, NULL, false);
		rc = check_email(v, why, wl);
		return rc ? rc : set_str((char **)(void *)fp, v, false);
	case T_B64URL:
		if (!*v)
			return set_str((char **)(void *)fp, NULL, true);
		rc = check_b64url(v, why, wl);
		return rc ? rc : set_str((char **)(void *)fp, v, true);
	case T_STR:
		return set_str((char **)(void *)fp, *v ? v : NULL, false);
	case T_HOSTPORT:
		if (*v && (rc = check_hostport(k->name, v, why, wl)))
			return rc;
		return set_str((char **)(void *)fp, *v ? v : NULL, false);
	case T_PATH:
		if (*v && (rc = check_path(k->name, v, false, why, wl)))
			return rc;
		return set_str((char **)(void *)fp, *v ? v : NULL, false);
	case T_DIR:
		if (*v && (rc = check_path(k->name, v, true, why, wl)))
			return rc;
		return set_str((char **)(void *)fp, *v ? v : NULL, false);
	case T_FILE: {
		struct stat st;

		if (*v && stat(v, &st))
			return why_set(why, wl, "%s: %.128s: %s", k->name, v, strerror(errno));
		if (*v && !S_ISREG(st.st_mode))
			return why_set(why, wl, "%s: %.128s: not a regular file", k->name, v);
		return set_str((char **)(void *)fp, *v ? v : NULL, false);
	}
	case T_LISTEN:
		if (!*v)
			return set_str((char **)(void *)fp, NULL, false);
		rc = check_listen(k->name, v, why, wl);
		/* A server to ask, not a place to listen: a numeric address. */
		if (!rc && !strcmp(k->name, "dns_resolver") &&
		    (v[0] == ':' || !strncmp(v, "localhost:", 10)))
			rc = why_set(why, wl, "dns_resolver: \"%.64s\" is not IPV4:PORT or "
				     "[IPV6]:PORT", v);
		return rc ? rc : set_str((char **)(void *)fp, v, false);
	case T_ARGV: {
		char **argv;

		rc = split_argv(k->name, v, &argv, why, wl);
		if (!rc && argv && argv[0] && (rc = check_program(k->name, argv[0], why, wl)))
			argv_free(argv);
		if (rc)
			return rc;
		argv_free(*(char ***)(void *)fp);
		*(char ***)(void *)fp = argv;
		return 0;
	}
	case T_NAMES: {
		char **names;

		rc = split_names(v, &names, why, wl);
		if (rc)
			return rc;
		argv_free(*(char ***)(void *)fp);
		*(char ***)(void *)fp = names;
		return 0;
	}
	}
	return why_set(why, wl, "%s: unsupported key", k->name);
}

static const struct conf_key *key_find(enum conf_sect s, const char *name, size_t *idx)
{
	for (size_t i = 0; i < CONF_NKEYS; i++) {
		if (conf_keys[i].sect == s && !strcmp(conf_keys[i].name, name)) {
			*idx = i;
			return &conf_keys[i];
		}
	}
	return NULL;
}

static const char *sect_name(enum conf_sect s)
{
	switch (s) {
	case SECT_CERTFS:
		return "certfs";
	case SECT_ACME:
		return "acme";
	case SECT_HOOKS:
		return "hooks";
	case SECT_LOCAL:
		return "local";
	case SECT_ETCD:
		return "etcd";
	case SECT_DOMAIN:
		return "domain";
	case SECT_NONE:
		break;
	}
	return "";
}

/*
 * Parse a section header's inside ("certfs", "domain example.com"). For a
 * domain, *dname gets the checked, lower-cased name (caller frees).
 */
static int sect_parse(const char *s, enum conf_sect *out, char **dname, char *why, size_t wl)
{
	static const enum conf_sect fixed[] = { SECT_CERTFS, SECT_ACME, SECT_HOOKS, SECT_LOCAL,
						SECT_ETCD };
	char *name;

	*dname = NULL;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if (!strcmp(s, sect_name(fixed[i]))) {
			*out = fixed[i];
			return 0;
		}
	}
	if (strncmp(s, "domain", 6) || (s[6] && !isspace((unsigned char)s[6])))
		return why_set(why, wl, "unknown section [%.64s]", s);
	s += 6;
	while (isspace((unsigned char)*s))
		s++;
	if (!*s)
		return why_set(why, wl, "[domain] needs a name: [domain example.com]");
	name = strdup(s);
	if (!name)
		return -ENOMEM;
	if (check_dns_name(name)) {
		free(name);
		return why_set(why, wl, "[domain %.64s]: not a valid domain name", s);
	}
	*out = SECT_DOMAIN;
	*dname = name;
	return 0;
}

/* Find or add the domain entry; *idx is its index. Takes name on success. */
static int domain_get(struct conf *c, char *name, size_t *idx, bool *added)
{
	struct conf_domain *d;

	for (size_t i = 0; i < c->ndomains; i++) {
		if (!strcmp(c->domains[i].name, name)) {
			free(name);
			*idx = i;
			*added = false;
			return 0;
		}
	}
	d = realloc(c->domains, (c->ndomains + 1) * sizeof(*d));
	if (!d)
		return -ENOMEM;
	c->domains = d;
	d = &c->domains[c->ndomains];
	memset(d, 0, sizeof(*d));
	d->name = name;
	d->challenge = -1;
	d->issuer = -1;
	*idx = c->ndomains++;
	*added = true;
	return 0;
}

int conf_set(struct conf *c, const char *section, const char *key, const char *value,
	     const char *source, struct conf_err *err)
{
	char why[400];
	const struct conf_key *k;
	enum conf_sect s;
	char *dname = NULL;
	size_t idx, di = 0;
	bool added = false;
	void *base = c;
	int rc;

	why[0] = '\0';
	if (!section || !key || !value) {
		rc = why_set(why, sizeof(why), "missing section, key or value");
		goto out;
	}
	rc = sect_parse(section, &s, &dname, why, sizeof(why));
	if (rc)
		goto out;
	k = key_find(s, key, &idx);
	if (!k) {
		rc = why_set(why, sizeof(why), "unknown key \"%.64s\" in [%.64s]", key, section);
		goto out;
	}
	if (s == SECT_DOMAIN) {
		rc = domain_get(c, dname, &di, &added);
		if (rc)
			goto out;
		dname = NULL;
		base = &c->domains[di];
	}
	rc = apply(k, base, value, why, sizeof(why));
	if (rc && added) {
		/* The entry was only made for this key: take it back out. */
		domain_clear(&c->domains[di]);
		c->ndomains--;
	}
out:
	free(dname);
	if (rc == -ENOMEM)
		snprintf(why, sizeof(why), "out of memory");
	if (rc && err)
		snprintf(err->msg, sizeof(err->msg), "%s: %s", source ? source : "", why);
	return rc;
}

/* ---- the INI loader ---------------------------------------------------- */

struct conf_load {
	struct conf *c;        /* the copy being filled */
	const char *file;
	const char *data;
	size_t len, pos;
	unsigned lineno;       /* line last handed to inih */
	enum conf_sect sect;
	size_t dom;            /* index into c->domains when sect is SECT_DOMAIN */
	uint64_t seen[SECT_DOMAIN]; /* keys set, per fixed section (bit = key index) */
	uint64_t *dseen;       /* per domain: keys set; bit 63 = header seen */
	size_t ndseen;
	unsigned key_line[CONF_NKEYS]; /* where each fixed-section key was set */
	unsigned dns01_line;   /* first "challenge = dns-01", global or per domain */
	unsigned err_line;     /* first error, 0 if none */
	int err_rc;
	char err[512];
};

#define DSEEN_HEADER (1ull << 63)

static void load_fail(struct conf_load *ld, int rc, const char *fmt, ...) UTIL_PRINTF(3, 4);
static void load_fail(struct conf_load *ld, int rc, const char *fmt, ...)
{
	char why[400];
	va_list ap;

	if (ld->err_line)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	ld->err_line = ld->lineno ? ld->lineno : 1;
	ld->err_rc = rc;
	snprintf(ld->err, sizeof(ld->err), "%s:%u: %s", ld->file, ld->err_line, why);
}

static int load_section(struct conf_load *ld, const char *line)
{
	const char *end = strchr(line, ']');
	char why[400], inner[512], *dname = NULL;
	const char *p;
	size_t n;
	bool added;
	int rc;

	if (!end) {
		load_fail(ld, -EINVAL, "section header without closing ']'");
		return -EINVAL;
	}
	for (p = end + 1; isspace((unsigned char)*p); p++)
		;
	if (*p && *p != ';' && *p != '#') {
		load_fail(ld, -EINVAL, "unexpected text after the section header");
		return -EINVAL;
	}
	/* Trim the inside: "[ certfs ]" is [certfs]. */
	for (line++; isspace((unsigned char)*line); line++)
		;
	n = (size_t)(end - line);
	while (n && isspace((unsigned char)line[n - 1]))
		n--;
	if (n >= sizeof(inner)) {
		load_fail(ld, -EINVAL, "section name too long");
		return -EINVAL;
	}
	memcpy(inner, line, n);
	inner[n] = '\0';
	rc = sect_parse(inner, &ld->sect, &dname, why, sizeof(why));
	if (rc) {
		load_fail(ld, rc, "%s", rc == -ENOMEM ? "out of memory" : why);
		return rc;
	}
	if (ld->sect != SECT_DOMAIN)
		return 0;
	rc = domain_get(ld->c, dname, &ld->dom, &added);
	if (rc) {
		free(dname);
		load_fail(ld, rc, "out of memory");
		return rc;
	}
	if (ld->dom >= ld->ndseen) {
		uint64_t *s = realloc(ld->dseen, (ld->dom + 1) * sizeof(*s));

		if (!s) {
			load_fail(ld, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		memset(s + ld->ndseen, 0, (ld->dom + 1 - ld->ndseen) * sizeof(*s));
		ld->dseen = s;
		ld->ndseen = ld->dom + 1;
	}
	if (ld->dseen[ld->dom] & DSEEN_HEADER) {
		load_fail(ld, -EINVAL, "duplicate section [domain %s]", ld->c->domains[ld->dom].name);
		return -EINVAL;
	}
	ld->dseen[ld->dom] |= DSEEN_HEADER;
	return 0;
}

/*
 * inih's fgets-style reader. Hands out one line per call (so inih's line
 * count is ours), without leading whitespace (which inih would otherwise
 * take as a continuation of the previous value, silently joining lines),
 * and with section headers already consumed (an empty line goes to inih).
 * Any error stops the parse by returning NULL.
 */
static char *load_reader(char *str, int num, void *stream)
{
	struct conf_load *ld = stream;
	const char *start, *nl;
	size_t n, skip = 0;

	if (ld->err_line || ld->pos >= ld->len)
		return NULL;
	start = ld->data + ld->pos;
	nl = memchr(start, '\n', ld->len - ld->pos);
	n = nl ? (size_t)(nl - start) : ld->len - ld->pos;
	ld->pos += n + (nl ? 1 : 0);
	ld->lineno++;
	if (ld->lineno == 1 && n >= 3 && !memcmp(start, "\xef\xbb\xbf", 3))
		skip = 3; /* UTF-8 byte order mark */
	if (memchr(start, '\0', n)) {
		load_fail(ld, -EINVAL, "NUL byte in line");
		return NULL;
	}
	if (num < 2 || n >= (size_t)num) {
		load_fail(ld, -EINVAL, "line longer than %d bytes", num > 1 ? num - 1 : 0);
		return NULL;
	}
	while (skip < n && isspace((unsigned char)start[skip]))
		skip++;
	memcpy(str, start + skip, n - skip);
	str[n - skip] = '\0';
	if (str[0] == '[') {
		if (load_section(ld, str))
			return NULL;
		str[0] = '\0';
	}
	return str;
}

static int load_handler(void *user, const char *section, const char *name, const char *value)
{
	struct conf_load *ld = user;
	const struct conf_key *k;
	char why[400];
	uint64_t *seen;
	size_t idx;
	void *base = ld->c;
	int rc;

	(void)section; /* ours, not inih's truncated copy */
	if (ld->err_line)
		return 0;
	if (ld->sect == SECT_NONE) {
		load_fail(ld, -EINVAL, "\"%.64s\" outside of any section (start with [certfs])", name);
		return 0;
	}
	k = key_find(ld->sect, name, &idx);
	if (!k) {
		load_fail(ld, -EINVAL, "unknown key \"%.64s\" in [%s]", name, sect_name(ld->sect));
		return 0;
	}
	if (ld->sect == SECT_DOMAIN) {
		seen = &ld->dseen[ld->dom];
		base = &ld->c->domains[ld->dom];
	} else {
		seen = &ld->seen[ld->sect];
	}
	if (*seen & (1ull << idx)) {
		load_fail(ld, -EINVAL, "duplicate key \"%s\" in [%s]", name, sect_name(ld->sect));
		return 0;
	}
	*seen |= 1ull << idx;
	why[0] = '\0';
	rc = apply(k, base, value, why, sizeof(why));
	if (rc) {
		load_fail(ld, rc, "%s", rc == -ENOMEM ? "out of memory" : why);
		return 0;
	}
	if (ld->sect != SECT_DOMAIN)
		ld->key_line[idx] = ld->lineno;
	if (k->type == T_CHALLENGE && !ld->dns01_line &&
	    !strcasecmp(value, conf_challenges[CONF_CHALLENGE_DNS01]))
		ld->dns01_line = ld->lineno;
	return 1;
}

/* The line where key of section s was set in this file (0: not set here). */
static unsigned key_line(const struct conf_load *ld, enum conf_sect s, const char *key)
{
	size_t idx;

	return key_find(s, key, &idx) ? ld->key_line[idx] : 0;
}

/* Keys that are only right together, checked once the whole file is read. */
static void load_check(struct conf_load *ld)
{
	const struct conf *c = ld->c;
	unsigned line;

	if (!!c->acme_eab_kid != !!c->acme_eab_hmac_key) {
		line = key_line(ld, SECT_ACME, c->acme_eab_kid ? "eab_kid" : "eab_hmac_key");
		ld->lineno = line;
		load_fail(ld, -EINVAL, "%s needs %s too (External Account Binding takes both)",
			  c->acme_eab_kid ? "eab_kid" : "eab_hmac_key",
			  c->acme_eab_kid ? "eab_hmac_key" : "eab_kid");
		return;
	}
	if (ld->dns01_line && !c->hook_dns) {
		ld->lineno = ld->dns01_line;
		load_fail(ld, -EINVAL, "challenge: dns-01 needs the dns hook ([hooks] dns)");
	}
}

static int read_file(const char *path, struct util_buf *b, struct conf_err *err)
{
	unsigned char chunk[4096];
	int fd, rc = 0, e;

	/* Symlinks are fine here: /etc/certfs/certfs.conf is often managed that way. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		e = errno;
		snprintf(err->msg, sizeof(err->msg), "%s: cannot open: %s", path, strerror(e));
		return e == ENOENT ? -ENOENT : -EINVAL;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err->msg, sizeof(err->msg), "%s: cannot read: %s", path, strerror(errno));
			rc = -EINVAL;
			break;
		}
		if (n == 0)
			break;
		rc = util_buf_append(b, chunk, (size_t)n);
		if (rc) {
			snprintf(err->msg, sizeof(err->msg), "%s: %s", path,
				 rc == -EFBIG ? "larger than 1 MiB, not a configuration file" : "out of memory");
			rc = rc == -EFBIG ? -EINVAL : rc;
			break;
		}
	}
	util_wipe(chunk, sizeof(chunk));
	close(fd);
	return rc;
}

int conf_load_file(struct conf *c, const char *path, struct conf_err *err)
{
	struct conf_err dummy;
	struct conf_load ld;
	struct conf copy;
	struct util_buf b;
	bool have_copy = false;
	int rc, r;

	if (!err)
		err = &dummy;
	err->msg[0] = '\0';
	memset(&ld, 0, sizeof(ld));
	/* The file holds secrets (pfx_password, eab_hmac_key): wipe it after. */
	util_buf_init(&b, CONF_FILE_MAX, true);
	rc = read_file(path, &b, err);
	if (rc)
		goto out;
	rc = conf_dup(c, &copy);
	if (rc) {
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", path);
		goto out;
	}
	have_copy = true;
	ld.c = &copy;
	ld.file = path;
	ld.data = (const char *)b.data;
	ld.len = b.len;
	r = ini_parse_stream(load_reader, &ld, load_handler, &ld);
	if (r < 0) {
		rc = -ENOMEM;
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", path);
		goto out;
	}
	if (r > 0 && (!ld.err_line || (unsigned)r < ld.err_line)) {
		/* inih's own complaint: a line that is neither [section] nor key = value. */
		rc = -EINVAL;
		snprintf(err->msg, sizeof(err->msg), "%s:%d: expected \"[section]\" or \"key = value\"",
			 path, r);
		goto out;
	}
	if (!ld.err_line)
		load_check(&ld);
	if (ld.err_line) {
		rc = ld.err_rc ? ld.err_rc : -EINVAL;
		if (rc != -ENOMEM)
			rc = -EINVAL;
		snprintf(err->msg, sizeof(err->msg), "%s", ld.err);
		goto out;
	}
	rc = set_str(&copy.path, path, false);
	if (rc) {
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", path);
		goto out;
	}
	conf_clear(c);
	*c = copy;
	have_copy = false;
	rc = 0;
out:
	if (have_copy)
		conf_clear(&copy);
	free(ld.dseen);
	util_buf_free(&b);
	return rc;
}
