/* SPDX-License-Identifier: MIT */
/*
 * conf: loading INI files and setting keys from the command line. Good files
 * with every key, the defaults, and many bad files, each of which must be
 * refused with the exact "FILE:LINE: " prefix, a message naming the problem,
 * and the configuration left exactly as it was before the call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "tests/unit/check.h"

static char tmpdir[] = "/tmp/certfs-test-conf.XXXXXX";
static int nfiles;

/* Write content (len bytes, or strlen) into a new file; returns its path (static). */
static const char *write_conf_len(const char *content, size_t len)
{
	static char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/c%d.conf", tmpdir, nfiles++);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(99);
	}
	if (fwrite(content, 1, len, f) != len) {
		perror(path);
		exit(99);
	}
	fclose(f);
	return path;
}

static const char *write_conf(const char *content)
{
	return write_conf_len(content, strlen(content));
}

/* Files the configuration names, made in tmpdir (programs are executable). */
static const char *const fixtures[] = { "acme-ca.pem", "systemctl", "notify", "dns hook/run" };

static const char *fixture(const char *name)
{
	static char paths[4][4200];

	for (size_t i = 0; i < 4; i++) {
		if (strcmp(fixtures[i], name))
			continue;
		snprintf(paths[i], sizeof(paths[i]), "%s/%s", tmpdir, name);
		return paths[i];
	}
	return NULL;
}

static void fixtures_make(void)
{
	char dir[4200];

	snprintf(dir, sizeof(dir), "%s/dns hook", tmpdir);
	if (mkdir(dir, 0700)) {
		perror(dir);
		exit(99);
	}
	for (size_t i = 0; i < 4; i++) {
		const char *p = fixture(fixtures[i]);
		FILE *f = fopen(p, "w");

		if (!f || fputs(i ? "#!/bin/sh\n" : "not checked\n", f) < 0 || fclose(f) ||
		    chmod(p, i ? 0700 : 0600)) {
			perror(p);
			exit(99);
		}
	}
}

static bool argv_eq(char **a, const char *const *b)
{
	size_t i;

	if (!a || !b)
		return a == NULL && b == NULL;
	for (i = 0; a[i] && b[i]; i++)
		if (strcmp(a[i], b[i]))
			return false;
	return a[i] == NULL && b[i] == NULL;
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return !strcmp(a, b);
}

static bool argv_same(char **a, char **b)
{
	size_t i;

	if (!a || !b)
		return a == b;
	for (i = 0; a[i] && b[i]; i++)
		if (strcmp(a[i], b[i]))
			return false;
	return a[i] == NULL && b[i] == NULL;
}

/* Deep equality of two configurations. */
static bool conf_same(const struct conf *a, const struct conf *b)
{
	if (!str_eq(a->path, b->path) || !str_eq(a->store, b->store) ||
	    a->issuer != b->issuer || !str_eq(a->key_type, b->key_type) ||
	    a->key_reuse != b->key_reuse || a->key_owner != b->key_owner ||
	    a->key_group != b->key_group || a->key_mode != b->key_mode ||
	    !str_eq(a->pfx_password, b->pfx_password) || a->pfx_legacy != b->pfx_legacy ||
	    a->warn_days != b->warn_days || a->renew_fraction != b->renew_fraction ||
	    a->workers != b->workers || !str_eq(a->acme_directory, b->acme_directory) ||
	    !str_eq(a->acme_email, b->acme_email) || !str_eq(a->acme_eab_kid, b->acme_eab_kid) ||
	    !str_eq(a->acme_eab_hmac_key, b->acme_eab_hmac_key) ||
	    !str_eq(a->acme_ca_bundle, b->acme_ca_bundle) ||
	    a->acme_challenge != b->acme_challenge ||
	    !str_eq(a->acme_http01_listen, b->acme_http01_listen) ||
	    !str_eq(a->acme_preferred_chain, b->acme_preferred_chain) ||
	    !str_eq(a->acme_profile, b->acme_profile) ||
	    a->acme_revoke_on_delete != b->acme_revoke_on_delete ||
	    !argv_same(a->hook_deploy, b->hook_deploy) ||
	    !argv_same(a->hook_notify, b->hook_notify) || !argv_same(a->hook_dns, b->hook_dns) ||
	    a->local_ca_lifetime_days != b->local_ca_lifetime_days ||
	    a->local_cert_lifetime_days != b->local_cert_lifetime_days ||
	    a->ndomains != b->ndomains)
		return false;
	for (size_t i = 0; i < a->ndomains; i++) {
		const struct conf_domain *x = &a->domains[i], *y = &b->domains[i];

		if (!str_eq(x->name, y->name) || !argv_same(x->names, y->names) ||
		    !str_eq(x->key_type, y->key_type) || x->challenge != y->challenge ||
		    x->issuer != y->issuer)
			return false;
	}
	return true;
}

static void test_defaults(void)
{
	struct conf c;

	conf_init(&c);
	CHECK(c.path == NULL);
	CHECK(c.store == NULL);
	CHECK_INT(c.issuer, CONF_ISSUER_LOCAL);
	CHECK_STR(c.key_type, "ec256");
	CHECK(!c.key_reuse);
	CHECK_INT(c.key_owner, 0);
	CHECK_INT(c.key_group, 0);
	CHECK_INT(c.key_mode, 0600);
	CHECK_STR(c.pfx_password, "");
	CHECK(!c.pfx_legacy);
	CHECK_INT(c.warn_days, 14);
	CHECK(c.renew_fraction > 0.333 && c.renew_fraction < 0.334);
	CHECK_INT(c.workers, 4);
	CHECK(c.track_readers);
	CHECK_INT(c.hook_stale_after, 600);
	CHECK(c.acme_directory == NULL && c.acme_email == NULL && c.acme_eab_kid == NULL);
	CHECK(c.acme_eab_hmac_key == NULL && c.acme_ca_bundle == NULL);
	CHECK_INT(c.acme_challenge, CONF_CHALLENGE_HTTP01);
	CHECK(c.acme_http01_listen == NULL && c.acme_preferred_chain == NULL);
	CHECK(c.acme_profile == NULL && !c.acme_revoke_on_delete);
	CHECK(c.hook_deploy == NULL && c.hook_notify == NULL && c.hook_dns == NULL);
	CHECK_INT(c.local_ca_lifetime_days, 3650);
	CHECK_INT(c.local_cert_lifetime_days, 90);
	CHECK(c.domains == NULL && c.ndomains == 0);
	CHECK_STR(conf_issuer_name(CONF_ISSUER_ACME), "acme");
	CHECK_STR(conf_issuer_name(CONF_ISSUER_SELFSIGNED), "selfsigned");
	CHECK_STR(conf_challenge_name(CONF_CHALLENGE_DNS01), "dns-01");
	conf_clear(&c);
	conf_clear(&c); /* twice is harmless */
}

static void test_good_all_keys(void)
{
	/* The programs and the CA bundle must exist: they are checked at load. */
	const char *deploy[] = { fixture("systemctl"), "reload", "nginx service", "a \"b\" c", "",
				 "x\\y", NULL };
	const char *notify[] = { fixture("notify"), "--to=ops", NULL };
	const char *dns[] = { fixture("dns hook/run"), "add", NULL };
	char text[4096];
	static const char *const names1[] = { "www.example.com", "api.example.com",
					      "mail.example.com", NULL };
	struct conf_err err;
	struct conf c;
	const struct conf_domain *d;
	const char *path;
	int rc;

	/* A byte order mark, comments, indentation, inline comments, "key: value". */
	snprintf(text, sizeof(text), "\xef\xbb\xbf# certfs test configuration\n"
			  "[certfs]\n"
			  "store = /srv/certfs-store\n"
			  "issuer = acme ; inline comment\n"
			  "   key_type = RSA3072\n"
			  "key_reuse = yes\n"
			  "key_owner = root\n"
			  "key_group = 1234\n"
			  "key_mode = 0640\n"
			  "pfx_password = s3cr=t;x\n"
			  "pfx_legacy = on\n"
			  "warn_days = 30\n"
			  "renew_fraction = 0.25\n"
			  "workers: 16\n"
			  "track_readers = off\n"
			  "\n"
			  "; the ACME account\n"
			  "[ acme ]\n"
			  "directory = https://acme.example.net/dir\n"
			  "email = mailto:admin@example.com\n"
			  "eab_kid = kid-1\n"
			  "eab_hmac_key = abc_DEF-123\n"
			  "ca_bundle = %s\n"
			  "challenge = dns-01\n"
			  "http01_listen = [::1]:5002\n"
			  "preferred_chain = ISRG Root X1\n"
			  "profile = shortlived\n"
			  "revoke_on_delete = true\n"
			  "[hooks]\n"
			  "deploy = %s reload \"nginx service\" \"a \\\"b\\\" c\" \"\" x\\y\n"
			  "notify = %s --to=ops\n"
			  "dns = \"%s\" add\n"
			  "stale_after = 30\n"
			  "[local]\n"
			  "ca_lifetime_days = 7300\n"
			  "cert_lifetime_days = 30\n"
			  "[domain WWW.Example.com]\n"
			  "names = www.Example.com, api.example.com  mail.example.com\n"
			  "key_type = ed25519\n"
			  "challenge = http-01\n"
			  "issuer = local\n"
			  "probe = www.example.com:8443\n"
			  "[domain *.example.org] # a wildcard\n"
			  "issuer = selfsigned\n", fixture("acme-ca.pem"), deploy[0], notify[0], dns[0]);
	path = write_conf(text);
	conf_init(&c);
	rc = conf_load_file(&c, path, &err);
	CHECK_INT(rc, 0);
	if (rc)
		fprintf(stderr, "  %s\n", err.msg);
	CHECK_STR(c.path, path);
	CHECK_STR(c.store, "/srv/certfs-store");
	CHECK_INT(c.issuer, CONF_ISSUER_ACME);
	CHECK_STR(c.key_type, "rsa3072");
	CHECK(c.key_reuse);
	CHECK_INT(c.key_owner, 0);
	CHECK_INT(c.key_group, 1234);
	CHECK_INT(c.key_mode, 0640);
	CHECK_STR(c.pfx_password, "s3cr=t;x");
	CHECK(c.pfx_legacy);
	CHECK_INT(c.warn_days, 30);
	CHECK(c.renew_fraction == 0.25);
	CHECK_INT(c.workers, 16);
	CHECK(!c.track_readers);
	CHECK_INT(c.hook_stale_after, 30);
	CHECK_STR(c.acme_directory, "https://acme.example.net/dir");
	CHECK_STR(c.acme_email, "admin@example.com");
	CHECK_STR(c.acme_eab_kid, "kid-1");
	CHECK_STR(c.acme_eab_hmac_key, "abc_DEF-123");
	CHECK_STR(c.acme_ca_bundle, fixture("acme-ca.pem"));
	CHECK_INT(c.acme_challenge, CONF_CHALLENGE_DNS01);
	CHECK_STR(c.acme_http01_listen, "[::1]:5002");
	CHECK_STR(c.acme_preferred_chain, "ISRG Root X1");
	CHECK_STR(c.acme_profile, "shortlived");
	CHECK(c.acme_revoke_on_delete);
	CHECK(argv_eq(c.hook_deploy, deploy));
	CHECK(argv_eq(c.hook_notify, notify));
	CHECK(argv_eq(c.hook_dns, dns));
	CHECK_INT(c.local_ca_lifetime_days, 7300);
	CHECK_INT(c.local_cert_lifetime_days, 30);
	CHECK_INT(c.ndomains, 2);
	d = conf_domain_find(&c, "www.example.com");
	CHECK(d != NULL);
	if (d) {
		CHECK_STR(d->name, "www.example.com");
		CHECK(argv_eq(d->names, names1));
		CHECK_STR(d->key_type, "ed25519");
		CHECK_INT(d->challenge, CONF_CHALLENGE_HTTP01);
		CHECK_INT(d->issuer, CONF_ISSUER_LOCAL);
		CHECK_STR(d->probe, "www.example.com:8443");
	}
	d = conf_domain_find(&c, "*.EXAMPLE.org");
	CHECK(d != NULL);
	if (d) {
		CHECK_STR(d->name, "*.example.org");
		CHECK(d->names == NULL);
		CHECK(d->key_type == NULL);
		CHECK_INT(d->challenge, -1);
		CHECK_INT(d->issuer, CONF_ISSUER_SELFSIGNED);
		CHECK(d->probe == NULL);
	}
	CHECK(conf_domain_find(&c, "other.example.com") == NULL);

	/* A deep copy is equal and independent. */
	{
		struct conf copy;

		CHECK_INT(conf_dup(&c, &copy), 0);
		CHECK(conf_same(&c, &copy));
		CHECK(copy.hook_deploy != c.hook_deploy);
		CHECK(copy.domains != c.domains);
		conf_clear(&copy);
	}
	conf_clear(&c);
}

static void test_layering(void)
{
	struct conf_err err;
	struct conf c;
	char p1[4200], p2[4200];

	conf_init(&c);
	/* write_conf returns a static buffer: keep copies of both paths. */
	snprintf(p1, sizeof(p1), "%s",
		 write_conf("[certfs]\nworkers = 8\nwarn_days = 20\n[domain a.example]\nissuer = acme\n"));
	snprintf(p2, sizeof(p2), "%s",
		 write_conf("[certfs]\nworkers = 2\n[domain a.example]\nkey_type = ec384\n"));
	CHECK_INT(conf_load_file(&c, p1, &err), 0);
	/* A second file applies on top: its keys win, the others stay. */
	CHECK_INT(conf_load_file(&c, p2, &err), 0);
	CHECK_INT(c.workers, 2);
	CHECK_INT(c.warn_days, 20);
	CHECK_STR(c.path, p2);
	CHECK_INT(c.ndomains, 1);
	CHECK_INT(c.domains[0].issuer, CONF_ISSUER_ACME);
	CHECK_STR(c.domains[0].key_type, "ec384");

	/* Comment-only and empty files are fine. */
	CHECK_INT(conf_load_file(&c, write_conf(""), &err), 0);
	CHECK_INT(conf_load_file(&c, write_conf("# nothing\n;\n\n"), &err), 0);
	/* CRLF line ends, no final newline. */
	CHECK_INT(conf_load_file(&c, write_conf("[certfs]\r\nworkers = 3\r\nkey_mode = 400"), &err), 0);
	CHECK_INT(c.workers, 3);
	CHECK_INT(c.key_mode, 0400);
	/* Empty values switch optional things off again. */
	CHECK_INT(conf_load_file(&c, write_conf("[hooks]\ndeploy = /bin/true\n"), &err), 0);
	CHECK(c.hook_deploy != NULL);
	CHECK_INT(conf_load_file(&c, write_conf("[hooks]\ndeploy =\n[acme]\nemail =\n"), &err), 0);
	CHECK(c.hook_deploy == NULL);
	CHECK(c.acme_email == NULL);
	conf_clear(&c);
}

static void test_conf_set(void)
{
	struct conf_err err;
	struct conf c, before;

	conf_init(&c);
	CHECK_INT(conf_set(&c, "certfs", "issuer", "selfsigned", "--issuer", &err), 0);
	CHECK_INT(c.issuer, CONF_ISSUER_SELFSIGNED);
	CHECK_INT(conf_set(&c, "certfs", "store", "etcd://127.0.0.1:2379/certfs", "--store", &err), 0);
	CHECK_STR(c.store, "etcd://127.0.0.1:2379/certfs");
	CHECK_INT(conf_set(&c, "acme", "http01_listen", "127.0.0.1:80", "--http01-listen", &err), 0);
	CHECK_INT(conf_set(&c, "acme", "http01_listen", ":8080", "--http01-listen", &err), 0);
	CHECK_INT(conf_set(&c, "acme", "dns_resolver", "[::1]:53", "test", &err), 0);
	CHECK_STR(c.acme_dns_resolver, "[::1]:53");
	CHECK_INT(conf_set(&c, "acme", "dns_resolver", "192.0.2.53:5353", "test", &err), 0);
	CHECK_STR(c.acme_dns_resolver, "192.0.2.53:5353");
	CHECK_INT(conf_set(&c, "domain Example.COM", "names", "a.example.com", "test", &err), 0);
	CHECK(conf_domain_find(&c, "example.com") != NULL);

	CHECK_INT(conf_dup(&c, &before), 0);
	CHECK_INT(conf_set(&c, "certfs", "issuer", "letsencrypt", "--issuer", &err), -EINVAL);
	CHECK(!strncmp(err.msg, "--issuer: ", 10));
	CHECK_CONTAINS(err.msg, "letsencrypt");
	CHECK_INT(conf_set(&c, "acme", "http01_listen", "1.2.3.4", "--http01-listen", &err), -EINVAL);
	CHECK(!strncmp(err.msg, "--http01-listen: ", 17));
	CHECK_INT(conf_set(&c, "acme", "directory", "http://insecure.example/dir",
			   "--acme-directory", &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "https://");
	CHECK_INT(conf_set(&c, "acme", "email", "not-an-address", "--acme-email", &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "--acme-email: ");
	CHECK_INT(conf_set(&c, "certfs", "nope", "1", "-x", &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "unknown key");
	CHECK_INT(conf_set(&c, "nosection", "workers", "1", "-x", &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "unknown section");
	/* A bad value for a new domain must not leave an empty entry behind. */
	CHECK_INT(conf_set(&c, "domain new.example", "issuer", "bogus", "-x", &err), -EINVAL);
	CHECK(conf_domain_find(&c, "new.example") == NULL);
	CHECK(conf_same(&c, &before));
	conf_clear(&before);
	conf_clear(&c);
}

struct bad_case {
	const char *text;
	int line;
	const char *what; /* substring the message must contain */
};

static const struct bad_case bad_cases[] = {
	{ "[certfs]\nworkers = 4\n[foo]\n", 3, "unknown section [foo]" },
	{ "[certfs]\nworker = 4\n", 2, "unknown key \"worker\" in [certfs]" },
	{ "[acme]\nwarn_days = 3\n", 2, "unknown key \"warn_days\" in [acme]" },
	{ "[certfs]\nkey_reuse = maybe\n", 2, "not a boolean" },
	{ "[certfs]\nwarn_days = 400\n", 2, "out of range 0..365" },
	{ "[certfs]\nwarn_days = 10d\n", 2, "not a number" },
	{ "[certfs]\nworkers = 0\n", 2, "out of range 1..64" },
	{ "[certfs]\nworkers = 65\n", 2, "out of range 1..64" },
	{ "[hooks]\nstale_after = -1\n", 2, "out of range 0..2592000" },
	{ "[domain a.example]\nprobe = a.example\n", 2, "is not HOST:PORT" },
	{ "[domain a.example]\nprobe = a.example:0\n", 2, "no port in 1..65535" },
	{ "[domain a.example]\nprobe = ::1:443\n", 2, "is not HOST:PORT" },
	{ "[domain a.example]\nprobe = :443\n", 2, "is not HOST:PORT" },
	{ "[hooks]\nstale_after = 10m\n", 2, "stale_after" },
	{ "[certfs]\ntrack_readers = maybe\n", 2, "not a boolean" },
	{ "[certfs]\nrenew_fraction = 1.0\n", 2, "between 0 and 1" },
	{ "[certfs]\nrenew_fraction = 0\n", 2, "between 0 and 1" },
	{ "[certfs]\nrenew_fraction = nan\n", 2, "renew_fraction" },
	{ "[certfs]\nworkers = 4\n\n# c\nworkers = 5\n", 5, "duplicate key \"workers\" in [certfs]" },
	{ "[certfs]\nworkers = 4\n[acme]\n[certfs]\nworkers = 5\n", 5, "duplicate key" },
	{ "[domain a.example]\nissuer = acme\n[domain A.Example]\n", 3,
	  "duplicate section [domain a.example]" },
	{ "[domain a.example]\nissuer = acme\nissuer = local\n", 3, "duplicate key \"issuer\"" },
	{ "[certfs]\n[domain ]\n", 2, "[domain] needs a name" },
	{ "[domain]\n", 1, "[domain] needs a name" },
	{ "[domain bad_name.example]\n", 1, "not a valid domain name" },
	{ "[domain a..example]\n", 1, "not a valid domain name" },
	{ "[domain -a.example]\n", 1, "not a valid domain name" },
	{ "[domain a.*.example]\n", 1, "not a valid domain name" },
	{ "[domainx]\n", 1, "unknown section" },
	{ "workers = 4\n", 1, "outside of any section" },
	{ "[certfs]\nthis line has no equals sign\n", 2, "expected" },
	{ "[certfs\nworkers = 4\n", 1, "without closing ']'" },
	{ "[certfs] workers = 4\n", 1, "after the section header" },
	{ "[certfs]\nkey_owner = -1\n", 2, "not a valid user id" },
	{ "[certfs]\nkey_owner = 4294967295\n", 2, "not a valid user id" },
	{ "[certfs]\nkey_owner = 99999999999999999999\n", 2, "not a valid user id" },
	{ "[certfs]\nkey_owner = no-such-user-certfs\n", 2, "no such user" },
	{ "[certfs]\nkey_group = 4294967296\n", 2, "not a valid group id" },
	{ "[certfs]\nkey_group = no-such-group-certfs\n", 2, "no such group" },
	{ "[certfs]\nkey_mode = 0755\n", 2, "execute bits" },
	{ "[certfs]\nkey_mode = 0641\n", 2, "execute bits" },
	{ "[certfs]\nkey_mode = 0648\n", 2, "not an octal mode" },
	{ "[certfs]\nkey_mode = rw-r-----\n", 2, "not an octal mode" },
	{ "[certfs]\nkey_mode = 1600\n", 2, "above 0777" },
	{ "[certfs]\nkey_type = dsa1024\n", 2, "key_type: \"dsa1024\"" },
	{ "[certfs]\nissuer = letsencrypt\n", 2, "not local, acme, selfsigned" },
	{ "[certfs]\nissuer = none\n", 2, "issuer: none is only for [domain NAME]" },
	{ "[acme]\nca_bundle = /nonexistent/ca.pem\n", 2, "ca_bundle: /nonexistent/ca.pem: No such file" },
	{ "[acme]\nca_bundle = /dev/null\n", 2, "/dev/null is not a regular file" },
	{ "[acme]\nca_bundle = ca.pem\n", 2, "not an absolute path" },
	{ "[hooks]\ndeploy = /nonexistent/reload nginx\n", 2, "deploy: /nonexistent/reload: No such file" },
	{ "[hooks]\nnotify = /etc/passwd\n", 2, "notify: /etc/passwd is not executable" },
	{ "[hooks]\ndns = /\n", 2, "dns: / is not a regular file" },
	{ "[acme]\n\neab_kid = kid-1\n", 3, "eab_kid needs eab_hmac_key too" },
	{ "[acme]\neab_hmac_key = abc\n", 2, "eab_hmac_key needs eab_kid too" },

	{ "[domain a.example]\nissuer = nobody\n", 2, "selfsigned or none" },
	{ "[acme]\nchallenge = tls-alpn-02\n", 2, "not http-01, dns-01 or tls-alpn-01" },
	{ "[acme]\ntls_alpn01_listen = 443\n", 2, "tls_alpn01_listen: \"443\" is not ADDR:PORT" },
	{ "[acme]\ndns_resolver = :53\n", 2, "dns_resolver: \":53\" is not IPV4:PORT or [IPV6]:PORT" },
	{ "[acme]\ndns_resolver = localhost:53\n", 2, "is not IPV4:PORT or [IPV6]:PORT" },
	{ "[acme]\ndns_resolver = ::1:53\n", 2, "dns_resolver: \"::1:53\" is not ADDR:PORT" },
	{ "[acme]\ndns_resolver = [::1]\n", 2, "dns_resolver" },
	{ "[acme]\nhttp01_listen = 0.0.0.0\n", 2, "http01_listen" },
	{ "[acme]\nhttp01_listen = 1.2.3:80\n", 2, "not ADDR:PORT" },
	{ "[acme]\nhttp01_listen = [::1]:70000\n", 2, "port in 1..65535" },
	{ "[acme]\nhttp01_listen = ::1:80\n", 2, "not ADDR:PORT" },
	{ "[acme]\ndirectory = http://acme.example/dir\n", 2, "not an https:// URL" },
	{ "[acme]\nemail = admin\n", 2, "not an e-mail address" },
	{ "[hooks]\ndeploy = systemctl reload nginx\n", 2, "not an absolute path" },
	{ "[hooks]\nnotify = /bin/echo \"unterminated\n", 2, "unterminated double quote" },
	{ "[local]\nca_lifetime_days = 0\n", 2, "out of range 1..36500" },
	{ "[local]\ncert_lifetime_days = 3651\n", 2, "out of range 1..3650" },
	{ "[domain a.example]\nnames = ok.example, bad..example\n", 2, "not a valid DNS name" },
	{ "[domain a.example]\nnames = x.example x.example\n", 2, "listed twice" },
	{ "[domain a.example]\nnames = ,\n", 2, "empty list" },
	{ "[domain a.example]\nwarn_days = 3\n", 2, "unknown key \"warn_days\" in [domain]" },
	{ "[certfs]\nstore = /x\x01y\n", 2, "control character" },
};

static void test_bad_files(void)
{
	struct conf_err err;
	struct conf c, before;
	char prefix[4200];

	conf_init(&c);
	/* Start from a non-default configuration so "unchanged" means something. */
	CHECK_INT(conf_load_file(&c, write_conf("[certfs]\nworkers = 7\n[domain keep.example]\n"
						"issuer = acme\n[hooks]\ndns = /bin/true x\n"),
				 &err), 0);
	CHECK_INT(conf_dup(&c, &before), 0);
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *bc = &bad_cases[i];
		const char *path = write_conf(bc->text);
		int rc;

		memset(err.msg, 'X', sizeof(err.msg) - 1);
		err.msg[sizeof(err.msg) - 1] = '\0';
		rc = conf_load_file(&c, path, &err);
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, bc->line);
		if (rc != -EINVAL || strncmp(err.msg, prefix, strlen(prefix)) ||
		    !strstr(err.msg, bc->what)) {
			fprintf(stderr, "bad case %zu: rc %d, message \"%s\", want \"%s...%s\"\n", i,
				rc, err.msg, prefix, bc->what);
			check_failures++;
		}
		if (!conf_same(&c, &before)) {
			fprintf(stderr, "bad case %zu changed the configuration\n", i);
			check_failures++;
		}
	}
	conf_clear(&before);
	conf_clear(&c);
}

/* dns-01 without a dns hook (the bad-file base configuration has one). */
static void test_dns01_needs_hook(void)
{
	static const char *const texts[] = { "[acme]\nchallenge = dns-01\n",
					     "[certfs]\n[domain a.example]\nchallenge = DNS-01\n" };
	struct conf_err err;
	struct conf c;

	for (size_t i = 0; i < 2; i++) {
		const char *path;
		char want[4400];

		conf_init(&c);
		path = write_conf(texts[i]);
		snprintf(want, sizeof(want), "%s:%zu: challenge: dns-01 needs the dns hook", path,
			 i + 2);
		CHECK_INT(conf_load_file(&c, path, &err), -EINVAL);
		CHECK(!strncmp(err.msg, want, strlen(want)));
		conf_clear(&c);
	}
}

static void test_special_failures(void)
{
	struct conf_err err;
	struct conf c, before;
	char prefix[4200], line[400];
	const char *path;
	int rc;

	conf_init(&c);
	CHECK_INT(conf_dup(&c, &before), 0);

	/* Over-long line: refused with its own line number, never split. */
	memset(line, 'a', sizeof(line));
	memcpy(line, "store = /", 9);
	line[sizeof(line) - 1] = '\0';
	{
		char text[600];

		snprintf(text, sizeof(text), "[certfs]\n# comment\n%s\nworkers = 3\n", line);
		path = write_conf(text);
	}
	rc = conf_load_file(&c, path, &err);
	CHECK_INT(rc, -EINVAL);
	snprintf(prefix, sizeof(prefix), "%s:3: ", path);
	CHECK(!strncmp(err.msg, prefix, strlen(prefix)));
	CHECK_CONTAINS(err.msg, "line longer than");
	CHECK(conf_same(&c, &before));

	/* A NUL byte would cut the line short in a C-string parser. */
	path = write_conf_len("[certfs]\nworkers = 3\0 9\n", 24);
	rc = conf_load_file(&c, path, &err);
	CHECK_INT(rc, -EINVAL);
	snprintf(prefix, sizeof(prefix), "%s:2: ", path);
	CHECK(!strncmp(err.msg, prefix, strlen(prefix)));
	CHECK_CONTAINS(err.msg, "NUL");

	/* Everything before the error was valid and must still not be applied. */
	path = write_conf("[certfs]\nworkers = 9\nissuer = acme\n[domain z.example]\n"
			  "issuer = acme\n[hooks]\ndeploy = /bin/true\n[local]\nnope = 1\n");
	rc = conf_load_file(&c, path, &err);
	CHECK_INT(rc, -EINVAL);
	snprintf(prefix, sizeof(prefix), "%s:9: ", path);
	CHECK(!strncmp(err.msg, prefix, strlen(prefix)));
	CHECK(conf_same(&c, &before));
	CHECK_INT(c.workers, 4);
	CHECK(c.hook_deploy == NULL);
	CHECK_INT(c.ndomains, 0);

	/* A secret never appears in a message. */
	path = write_conf("[acme]\neab_hmac_key = very$secret!value\n");
	rc = conf_load_file(&c, path, &err);
	CHECK_INT(rc, -EINVAL);
	CHECK_CONTAINS(err.msg, "eab_hmac_key");
	CHECK(strstr(err.msg, "secret") == NULL);

	/* A missing file is -ENOENT and names the file. */
	{
		char missing[4200];

		snprintf(missing, sizeof(missing), "%s/does-not-exist.conf", tmpdir);
		rc = conf_load_file(&c, missing, &err);
		CHECK_INT(rc, -ENOENT);
		CHECK(!strncmp(err.msg, missing, strlen(missing)));
	}
	/* A directory is not a configuration file. */
	rc = conf_load_file(&c, tmpdir, &err);
	CHECK_INT(rc, -EINVAL);
	CHECK(!strncmp(err.msg, tmpdir, strlen(tmpdir)));
	/* Larger than the cap. */
	{
		size_t big = 1024 * 1024 + 10;
		char *text = malloc(big);

		if (text) {
			memset(text, '#', big);
			text[big - 1] = '\n';
			for (size_t i = 100; i < big; i += 100)
				text[i] = '\n';
			path = write_conf_len(text, big);
			rc = conf_load_file(&c, path, &err);
			CHECK_INT(rc, -EINVAL);
			CHECK_CONTAINS(err.msg, "larger than");
			free(text);
		}
	}
	CHECK(conf_same(&c, &before));
	conf_clear(&before);
	conf_clear(&c);
}

static void cleanup(void)
{
	char path[4200];

	for (int i = 0; i < nfiles; i++) {
		snprintf(path, sizeof(path), "%s/c%d.conf", tmpdir, i);
		unlink(path);
	}
	for (size_t i = 0; i < 4; i++)
		unlink(fixture(fixtures[i]));
	snprintf(path, sizeof(path), "%s/dns hook", tmpdir);
	rmdir(path);
	rmdir(tmpdir);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 99;
	}
	fixtures_make();
	test_defaults();
	test_good_all_keys();
	test_layering();
	test_conf_set();
	test_bad_files();
	test_special_failures();
	test_dns01_needs_hook();
	cleanup();
	CHECK_DONE();
}
