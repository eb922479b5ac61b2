/* SPDX-License-Identifier: MIT */
/*
 * acme-issue: issue one certificate for the given names through the acme/
 * module and write the PEM chain to a file. A test driver for the Pebble
 * integration tests, not an installed program: a fresh P-256 account key
 * and domain key are generated on every run; http-01 is answered by the
 * built-in responder, dns-01 by a hook called as `HOOK add|del RECORD VALUE`.
 * Exit status 0 on success, 1 with the problem sentence on stderr otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "acme/acme.h"
#include "crypto/crypto.h"

struct driver {
	struct acme_http01 *http01;
	const char *dns_hook;
	const char *state_file;
};

static int run_hook(const char *hook, const char *op, const char *record, const char *value)
{
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execl(hook, hook, op, record, value, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "acme-issue: dns hook %s %s %s failed\n", hook, op, record);
		return -EIO;
	}
	return 0;
}

static int dns_add(void *arg, const char *record, const char *value)
{
	struct driver *d = arg;

	return run_hook(d->dns_hook, "add", record, value);
}

static void dns_del(void *arg, const char *record, const char *value)
{
	struct driver *d = arg;

	if (run_hook(d->dns_hook, "del", record, value))
		fprintf(stderr, "acme-issue: could not remove %s\n", record);
}

static int http_publish(void *arg, const char *token, const char *keyauth)
{
	struct driver *d = arg;

	return acme_http01_publish(d->http01, token, keyauth);
}

static void http_unpublish(void *arg, const char *token)
{
	struct driver *d = arg;

	acme_http01_unpublish(d->http01, token);
}

static int save_order(void *arg, const char *url)
{
	struct driver *d = arg;
	FILE *f;

	if (!d->state_file)
		return 0;
	f = fopen(d->state_file, "we");
	if (!f)
		return -errno;
	fprintf(f, "%s\n", url);
	return fclose(f) ? -errno : 0;
}

struct job {
	struct acme_client *client;
	const struct acme_issue_request *req;
	struct util_buf chain;
	struct acme_problem prob;
	int rc;
};

static void *issue_thread(void *arg)
{
	struct job *j = arg;

	j->rc = acme_issue(j->client, j->req, &j->chain, &j->prob);
	return NULL;
}

/* Load a P-256 key from path, or create it there (0600); NULL: fresh key. */
static int load_key(const char *path, struct crypto_key **out)
{
	struct util_buf pem;
	struct crypto_err err;
	char chunk[4096];
	size_t n;
	FILE *f;
	int rc = -EIO, fd = -1;

	util_buf_init(&pem, 64 * 1024, true);
	f = path ? fopen(path, "re") : NULL;
	if (f) {
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			if (util_buf_append(&pem, chunk, n))
				break;
		fclose(f);
		rc = crypto_key_parse_pem(pem.data, pem.len, NULL, out, &err);
		if (rc)
			fprintf(stderr, "acme-issue: %s: %s\n", path, err.msg);
		goto out;
	}
	if ((rc = crypto_key_generate(CRYPTO_KEY_EC256, out)) || !path)
		goto out;
	if ((rc = crypto_key_to_pem(*out, &pem)))
		goto out;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, pem.data, pem.len) != (ssize_t)pem.len) {
		fprintf(stderr, "acme-issue: cannot save %s\n", path);
		rc = -EIO;
	}
	if (fd >= 0)
		close(fd);
out:
	util_buf_free(&pem);
	return rc;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: acme-issue --directory URL --out FILE [options] NAME...\n"
		"  --ca-bundle FILE        trust anchors for the ACME server's TLS\n"
		"  --http01-listen A:P     answer http-01 with the built-in responder\n"
		"  --dns-hook PATH         answer dns-01 with HOOK add|del RECORD VALUE\n"
		"  --challenge http-01|dns-01  preferred type for plain names\n"
		"  --email ADDR, --eab-kid KID, --eab-hmac-key B64URL\n"
		"  --preferred-chain CN, --profile NAME, --timeout SECONDS\n"
		"  --order-state FILE      write the order URL here before finalizing\n"
		"  --resume-order URL      continue a saved order\n"
		"  --account-key FILE      reuse (or create) the account key in FILE\n"
		"  --domain-key FILE       reuse (or create) the domain key in FILE\n"
		"  --threads N             issue N times at once through one client\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "directory", required_argument, NULL, 'd' },
		{ "ca-bundle", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "http01-listen", required_argument, NULL, 'l' },
		{ "dns-hook", required_argument, NULL, 'H' },
		{ "challenge", required_argument, NULL, 't' },
		{ "email", required_argument, NULL, 'e' },
		{ "eab-kid", required_argument, NULL, 'k' },
		{ "eab-hmac-key", required_argument, NULL, 'm' },
		{ "preferred-chain", required_argument, NULL, 'p' },
		{ "profile", required_argument, NULL, 'P' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "order-state", required_argument, NULL, 's' },
		{ "resume-order", required_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "threads", required_argument, NULL, 'n' },
		{ "account-key", required_argument, NULL, 'a' },
		{ "domain-key", required_argument, NULL, 'D' },
		{ NULL, 0, NULL, 0 },
	};
	struct acme_client_config cfg = { 0 };
	struct acme_challenge_ops ops = { 0 };
	struct acme_issue_request req = { 0 };
	struct driver d = { 0 };
	struct acme_client *client = NULL;
	struct crypto_key *account = NULL, *domain = NULL;
	struct crypto_csr *csr = NULL;
	struct acme_problem prob;
	struct util_buf der;
	struct job jobs[16];
	pthread_t tids[16];
	long nthreads = 1, i;
	const char *out = NULL, *listen_addr = NULL, *account_path = NULL, *domain_path = NULL;
	char sentence[1400];
	int c, rc = 1;
	FILE *f;

	util_buf_init(&der, 64 * 1024, false);
	memset(jobs, 0, sizeof(jobs));
	for (i = 0; i < 16; i++)
		util_buf_init(&jobs[i].chain, 1024 * 1024, false);
	acme_problem_clear(&prob);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cfg.directory_url = optarg; break;
		case 'c': cfg.ca_bundle = optarg; break;
		case 'o': out = optarg; break;
		case 'l': listen_addr = optarg; break;
		case 'H': d.dns_hook = optarg; break;
		case 't': ops.prefer = strcmp(optarg, "dns-01") ? ACME_CHALLENGE_HTTP01
							      : ACME_CHALLENGE_DNS01; break;
		case 'e': cfg.email = optarg; break;
		case 'k': cfg.eab_kid = optarg; break;
		case 'm': cfg.eab_hmac_key = optarg; break;
		case 'p': cfg.preferred_chain = optarg; break;
		case 'P': cfg.profile = optarg; break;
		case 'T': cfg.issue_timeout_ms = (unsigned int)strtoul(optarg, NULL, 10) * 1000u; break;
		case 's': d.state_file = optarg; break;
		case 'r': req.resume_order_url = optarg; break;
		case 'v': util_log_set_level(UTIL_LOG_DEBUG); break;
		case 'a': account_path = optarg; break;
		case 'D': domain_path = optarg; break;
		case 'n': nthreads = strtol(optarg, NULL, 10); break;
		default: usage(); return 2;
		}
	}
	if (!cfg.directory_url || !out || optind >= argc || nthreads < 1 || nthreads > 16) {
		usage();
		return 2;
	}
	if (load_key(account_path, &account) || load_key(domain_path, &domain) ||
	    crypto_csr_new(domain, (const char *const *)&argv[optind], (size_t)(argc - optind),
			   &csr) ||
	    crypto_csr_to_der(csr, &der)) {
		fprintf(stderr, "acme-issue: cannot create keys and CSR\n");
		goto out;
	}
	if (listen_addr && acme_http01_start(listen_addr, &d.http01)) {
		fprintf(stderr, "acme-issue: cannot listen on %s\n", listen_addr);
		goto out;
	}
	cfg.account_key = account;
	if (acme_client_new(&cfg, &client, &prob)) {
		fprintf(stderr, "%s\n", acme_problem_sentence(&prob, sentence, sizeof(sentence)));
		goto out;
	}
	ops.arg = &d;
	ops.save_order = save_order;
	if (d.http01) {
		ops.http01_publish = http_publish;
		ops.http01_unpublish = http_unpublish;
	}
	if (d.dns_hook) {
		ops.dns01_add = dns_add;
		ops.dns01_del = dns_del;
	}
	req.names = (const char *const *)&argv[optind];
	req.nnames = (size_t)(argc - optind);
	req.csr_der = der.data;
	req.csr_len = der.len;
	req.ops = &ops;
	for (i = 0; i < nthreads; i++) {
		jobs[i].client = client;
		jobs[i].req = &req;
		if (pthread_create(&tids[i], NULL, issue_thread, &jobs[i])) {
			fprintf(stderr, "acme-issue: cannot start a thread\n");
			nthreads = i;
			jobs[0].rc = -EAGAIN;
			break;
		}
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(tids[i], NULL);
	for (i = 0; i < nthreads; i++) {
		if (jobs[i].rc) {
			fprintf(stderr, "%s\n",
				acme_problem_sentence(&jobs[i].prob, sentence, sizeof(sentence)));
			goto out;
		}
	}
	f = fopen(out, "we");
	if (!f || fwrite(jobs[0].chain.data, 1, jobs[0].chain.len, f) != jobs[0].chain.len) {
		fprintf(stderr, "acme-issue: cannot write %s\n", out);
		if (f)
			fclose(f);
		goto out;
	}
	if (fclose(f)) {
		fprintf(stderr, "acme-issue: cannot write %s\n", out);
		goto out;
	}
	rc = 0;
out:
	acme_client_free(client);
	acme_http01_stop(d.http01);
	crypto_csr_free(csr);
	crypto_key_free(account);
	crypto_key_free(domain);
	util_buf_free(&der);
	for (i = 0; i < 16; i++)
		util_buf_free(&jobs[i].chain);
	return rc;
}
