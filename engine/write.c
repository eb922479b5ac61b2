/* SPDX-License-Identifier: MIT */
/*
 * Writes into a domain directory, judged whole when the writer closes the
 * file: certificate and key uploads (PEM, bundle, PKCS#12), CSRs, the SAN
 * list, the passphrase, and "renew" into status. One writer at a time per
 * domain (the last valid upload wins whole); a refused write changes nothing
 * but the domain's last_error, which says why in one sentence.
 *
 * A certificate whose key is not known yet (or a key whose certificate is
 * not) is kept as pending in the store, and installed as soon as its other
 * half arrives.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

/* Allowance for clocks that disagree a little with the issuer's. */
#define VALIDITY_SKEW 300

/* Strip trailing white space (an `echo` adds a newline). */
static size_t trim_len(const char *s, size_t len)
{
	while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' ||
		       s[len - 1] == '\t'))
		len--;
	return len;
}

/* The domain's passphrase, or NULL (caller frees with util_secret_str_free). */
static char *read_passphrase(struct engine_domain *d)
{
	struct util_buf b;
	char key[320], *s = NULL;

	util_buf_init(&b, 64 * 1024, true);
	snprintf(key, sizeof(key), "%s/passphrase", d->key);
	if (!store_get(d->engine->store, key, &b)) {
		s = calloc(1, b.len + 1);
		if (s)
			memcpy(s, b.data, b.len);
	}
	util_buf_free(&b);
	return s;
}

/* Does name belong to the domain (itself, its wildcard, a subdomain)? */
static bool name_belongs(const char *domain, const char *name)
{
	const char *base = strncmp(domain, "*.", 2) ? domain : domain + 2;
	size_t nb = strlen(base), nn = strlen(name);

	if (!strcmp(name, domain) || !strcmp(name, base))
		return true;
	return nn > nb + 1 && name[nn - nb - 1] == '.' && !strcmp(name + nn - nb, base);
}

/* ---- the pending half of a pair ------------------------------------------------ */

struct pending {
	struct crypto_chain *chain; /* sorted */
	struct crypto_key *key;
};

static void pending_clear(struct pending *p)
{
	crypto_chain_free(p->chain);
	crypto_key_free(p->key);
	memset(p, 0, sizeof(*p));
}

static int pending_load(struct engine_domain *d, struct pending *p)
{
	struct crypto_err cerr = {{0}};
	struct util_buf b;
	json_t *o = NULL, *v;
	json_error_t jerr;
	char key[320];
	int rc;

	memset(p, 0, sizeof(*p));
	util_buf_init(&b, ENGINE_RECORD_MAX, true);
	snprintf(key, sizeof(key), "%s/pending", d->key);
	rc = store_get(d->engine->store, key, &b);
	if (rc) {
		util_buf_free(&b);
		return rc == -ENOENT ? 0 : rc;
	}
	o = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &jerr);
	util_buf_free(&b);
	if (!o)
		return -EINVAL;
	v = json_object_get(o, "chain");
	if (json_is_string(v))
		(void)!crypto_chain_parse(json_string_value(v), json_string_length(v), &p->chain,
					  &cerr);
	v = json_object_get(o, "key");
	if (json_is_string(v))
		(void)!crypto_key_parse_pem(json_string_value(v), json_string_length(v), NULL,
					    &p->key, &cerr);
	json_decref(o);
	return 0;
}

/* Persist p (empty: remove the record) and the sentence status shows. */
static int pending_store(struct engine_domain *d, const struct pending *p)
{
	struct util_buf chain, key;
	json_t *o;
	char *s = NULL;
	int rc = 0;

	if (!p->chain && !p->key)
		return engine_domain_record_del(d, "pending");
	util_buf_init(&chain, ENGINE_RECORD_MAX, false);
	util_buf_init(&key, 64 * 1024, true);
	if (p->chain)
		rc = crypto_chain_to_pem(p->chain, &chain);
	if (!rc && p->key)
		rc = crypto_key_to_pem(p->key, &key);
	o = json_object();
	if (!rc && o) {
		if (p->chain)
			json_object_set_new(o, "chain",
					    json_stringn((const char *)chain.data, chain.len));
		if (p->key)
			json_object_set_new(o, "key", json_stringn((const char *)key.data, key.len));
		s = json_dumps(o, JSON_COMPACT);
	}
	if (!rc)
		rc = s ? engine_domain_record_put(d, "pending", s, strlen(s)) : -ENOMEM;
	if (s) {
		util_wipe(s, strlen(s));
		free(s);
	}
	json_decref(o);
	util_buf_free(&chain);
	util_buf_free(&key);
	return rc;
}

static void pending_describe(struct engine_domain *d, const struct pending *p)
{
	struct engine_state v;

	engine_state_begin(d, &v);
	if (p->chain && p->key)
		snprintf(v.pending, sizeof(v.pending),
			 "certificate and private key that do not match each other");
	else if (p->chain)
		snprintf(v.pending, sizeof(v.pending),
			 "certificate waiting for its private key (write privkey.pem)");
	else if (p->key)
		snprintf(v.pending, sizeof(v.pending),
			 "private key waiting for its certificate (write fullchain.pem)");
	else
		v.pending[0] = '\0';
	engine_state_record(d, &v); /* status shows it after a restart too */
}

/* ---- validation and installation -------------------------------------------------- */

/* Sort and judge an uploaded chain for d; *sorted on success. */
static int judge_chain(struct engine_domain *d, const struct crypto_chain *in,
		       struct crypto_chain **sorted, char *why, size_t whylen)
{
	struct crypto_err cerr = {{0}};
	struct crypto_cert *leaf;
	int rc;

	rc = crypto_chain_sort(in, sorted, &cerr);
	if (rc)
		goto fail;
	leaf = crypto_chain_get0(*sorted, 0);
	rc = crypto_cert_check_covers(leaf, d->name, &cerr);
	if (!rc)
		rc = crypto_cert_check_validity(leaf, util_now(), VALIDITY_SKEW, &cerr);
	if (!rc)
		rc = crypto_cert_check_key_policy(leaf, &cerr);
	if (!rc)
		return 0;
	crypto_chain_free(*sorted);
	*sorted = NULL;
fail:
	snprintf(why, whylen, "%s", cerr.msg[0] ? cerr.msg : "certificate is not valid");
	return rc ? rc : -EINVAL;
}

static int judge_key(const struct crypto_key *key, char *why, size_t whylen)
{
	struct crypto_err cerr = {{0}};
	int rc = crypto_key_check_policy(key, &cerr);

	if (rc)
		snprintf(why, whylen, "%s", cerr.msg);
	return rc;
}

/*
 * Install key + sorted chain as a new generation of the given source. Takes
 * both (a key reference and the chain), whatever the outcome.
 */
static int install(struct engine_domain *d, struct crypto_key *key, struct crypto_chain *chain,
		   enum engine_source src, char *why, size_t whylen)
{
	struct engine_gen *g = NULL;
	int rc;

	if (key && !crypto_cert_matches_key(crypto_chain_get0(chain, 0), key)) {
		snprintf(why, whylen, "private key does not match the certificate");
		crypto_key_free(key);
		crypto_chain_free(chain);
		return -EINVAL;
	}
	rc = engine_gen_new(d->engine, engine_alloc_number(d), util_now(), src, key, chain, &g);
	if (rc) {
		snprintf(why, whylen, "cannot build the files of the new certificate");
		crypto_key_free(key);
		crypto_chain_free(chain);
		return rc;
	}
	rc = engine_commit_gen(d, g);
	engine_gen_put(g);
	if (rc) {
		snprintf(why, whylen, rc == -ENOSPC ? "store is full" : "cannot store the certificate: %s",
			 strerror(-rc));
		return rc;
	}
	util_info("engine: %s: %s certificate installed", d->name, engine_source_name(src));
	return 0;
}

/*
 * The served generation and its parsed key and chain, for pairing an upload
 * with what is served. Both objects are owned by the caller (NULL if absent).
 */
static struct engine_gen *served_gen(struct engine_domain *d, struct crypto_key **key,
				     struct crypto_chain **chain)
{
	struct engine_gen *g = engine_domain_gen(d);

	*key = NULL;
	*chain = NULL;
	if (g && engine_gen_parse(g, key, chain)) {
		*key = NULL;
		*chain = NULL;
	}
	return g;
}

static int upload_chain(struct engine_domain *d, const void *data, size_t len, char *why,
			size_t whylen)
{
	struct crypto_chain *in = NULL, *sorted = NULL;
	struct crypto_err cerr = {{0}};
	struct engine_gen *cur = NULL;
	struct crypto_key *ckey = NULL;
	struct crypto_chain *cchain = NULL;
	struct pending p;
	int rc;

	rc = crypto_chain_parse(data, len, &in, &cerr);
	if (rc) {
		snprintf(why, whylen, "%s", cerr.msg);
		return -EINVAL;
	}
	rc = judge_chain(d, in, &sorted, why, whylen);
	crypto_chain_free(in);
	if (rc)
		return -EINVAL;
	rc = pending_load(d, &p);
	if (rc)
		goto out;
	cur = served_gen(d, &ckey, &cchain);
	if (p.key && crypto_cert_matches_key(crypto_chain_get0(sorted, 0), p.key)) {
		rc = install(d, crypto_key_up_ref(p.key), sorted, ENGINE_SOURCE_UPLOADED, why,
			     whylen);
		sorted = NULL;
		if (!rc) {
			crypto_key_free(p.key);
			p.key = NULL;
		}
	} else if (ckey && crypto_cert_matches_key(crypto_chain_get0(sorted, 0), ckey)) {
		rc = install(d, crypto_key_up_ref(ckey), sorted, ENGINE_SOURCE_UPLOADED, why,
			     whylen);
		sorted = NULL;
	} else {
		/* Keep it until its key arrives. */
		crypto_chain_free(p.chain);
		p.chain = sorted;
		sorted = NULL;
		rc = pending_store(d, &p);
		if (rc)
			snprintf(why, whylen, "cannot store the pending certificate: %s",
				 strerror(-rc));
		goto describe;
	}
	if (!rc) {
		crypto_chain_free(p.chain);
		p.chain = NULL;
		rc = pending_store(d, &p);
	}
describe:
	pending_describe(d, &p);
out:
	engine_gen_put(cur);
	crypto_key_free(ckey);
	crypto_chain_free(cchain);
	crypto_chain_free(sorted);
	pending_clear(&p);
	return rc;
}

static int parse_key(struct engine_domain *d, const void *data, size_t len,
		     struct crypto_key **key, char *why, size_t whylen)
{
	struct crypto_err cerr = {{0}};
	char *pass = read_passphrase(d);
	int rc;

	rc = crypto_key_parse_pem(data, len, pass, key, &cerr);
	util_secret_str_free(pass);
	if (rc) {
		snprintf(why, whylen, "%s", cerr.msg);
		return -EINVAL;
	}
	rc = judge_key(*key, why, whylen);
	if (rc) {
		crypto_key_free(*key);
		*key = NULL;
		return -EINVAL;
	}
	return 0;
}

static int upload_key(struct engine_domain *d, const void *data, size_t len, char *why,
		      size_t whylen)
{
	struct crypto_key *key = NULL, *ckey = NULL;
	struct crypto_chain *cchain = NULL;
	struct engine_gen *cur = NULL;
	struct pending p;
	int rc;

	rc = parse_key(d, data, len, &key, why, whylen);
	if (rc)
		return rc;
	rc = pending_load(d, &p);
	if (rc)
		goto out;
	cur = served_gen(d, &ckey, &cchain);
	if (p.chain && crypto_cert_matches_key(crypto_chain_get0(p.chain, 0), key)) {
		rc = install(d, crypto_key_up_ref(key), p.chain, ENGINE_SOURCE_UPLOADED, why,
			     whylen);
		p.chain = NULL;
		if (!rc) {
			crypto_key_free(p.key);
			p.key = NULL;
			rc = pending_store(d, &p);
		}
	} else if (cchain && crypto_cert_matches_key(crypto_chain_get0(cchain, 0), key)) {
		if (!ckey) {
			/* The key of a certificate issued from the user's CSR:
			 * the same certificate, now with its key files. */
			rc = install(d, crypto_key_up_ref(key), cchain, cur->source, why, whylen);
			cchain = NULL;
		}
		/* Otherwise it is the key already served: nothing to do. */
	} else {
		crypto_key_free(p.key);
		p.key = crypto_key_up_ref(key);
		rc = pending_store(d, &p);
		if (rc)
			snprintf(why, whylen, "cannot store the pending key: %s", strerror(-rc));
	}
	pending_describe(d, &p);
out:
	engine_gen_put(cur);
	crypto_key_free(ckey);
	crypto_chain_free(cchain);
	crypto_key_free(key);
	pending_clear(&p);
	return rc;
}

/* Key and certificates together: bundle.pem, or a PEM with both anywhere. */
static int upload_pair(struct engine_domain *d, struct crypto_key *key, struct crypto_chain *in,
		       char *why, size_t whylen)
{
	struct crypto_chain *sorted = NULL;
	struct pending p;
	int rc;

	rc = judge_chain(d, in, &sorted, why, whylen);
	if (rc)
		return -EINVAL;
	rc = install(d, crypto_key_up_ref(key), sorted, ENGINE_SOURCE_UPLOADED, why, whylen);
	if (!rc && !pending_load(d, &p)) {
		pending_clear(&p);
		rc = pending_store(d, &p); /* a complete upload settles any pending half */
		pending_describe(d, &p);
	}
	return rc;
}

static int upload_bundle(struct engine_domain *d, const void *data, size_t len, char *why,
			 size_t whylen)
{
	struct crypto_err cerr = {{0}};
	struct crypto_chain *in = NULL;
	struct crypto_key *key = NULL;
	int rc;

	if (!crypto_pem_has_key(data, len)) {
		snprintf(why, whylen, "bundle.pem holds no private key");
		return -EINVAL;
	}
	if (!crypto_pem_has_cert(data, len)) {
		snprintf(why, whylen, "bundle.pem holds no certificate");
		return -EINVAL;
	}
	rc = parse_key(d, data, len, &key, why, whylen);
	if (rc)
		return rc;
	rc = crypto_chain_parse(data, len, &in, &cerr);
	if (rc) {
		snprintf(why, whylen, "%s", cerr.msg);
		rc = -EINVAL;
	} else {
		rc = upload_pair(d, key, in, why, whylen);
	}
	crypto_chain_free(in);
	crypto_key_free(key);
	return rc;
}

static int upload_pfx(struct engine_domain *d, const void *data, size_t len, char *why,
		      size_t whylen)
{
	struct crypto_err cerr = {{0}};
	struct crypto_chain *in = NULL;
	struct crypto_key *key = NULL;
	char *pass = read_passphrase(d);
	int rc;

	rc = crypto_p12_parse(data, len, pass, &key, &in, &cerr);
	util_secret_str_free(pass);
	if (rc) {
		snprintf(why, whylen, "%s", cerr.msg);
		return -EINVAL;
	}
	rc = judge_key(key, why, whylen);
	if (!rc)
		rc = upload_pair(d, key, in, why, whylen);
	else
		rc = -EINVAL;
	crypto_chain_free(in);
	crypto_key_free(key);
	return rc;
}

/* Replace d's names (d->lock held by nobody). */
static int set_names(struct engine_domain *d, char **names, size_t n, bool csr)
{
	struct engine_state v;
	int rc;

	engine_state_begin(d, &v);
	v.has_csr = csr;
	v.next_attempt = 0;
	v.failures = 0;
	/* On success names and n become the old ones, freed here. */
	rc = engine_state_commit_names(d, &v, &names, &n);
	if (!rc)
		crypto_strv_free(names, n);
	return rc;
}

int engine_domain_csr_key(struct engine_domain *d, struct crypto_key **key)
{
	struct crypto_err cerr = {{0}};
	struct crypto_csr *csr = NULL;
	struct util_buf b;
	char skey[320];
	int rc;

	util_buf_init(&b, ENGINE_UPLOAD_MAX, false);
	snprintf(skey, sizeof(skey), "%s/csr", d->key);
	rc = store_get(d->engine->store, skey, &b);
	if (!rc)
		rc = crypto_csr_parse(b.data, b.len, &csr, &cerr);
	if (!rc)
		rc = crypto_csr_get1_key(csr, key);
	crypto_csr_free(csr);
	util_buf_free(&b);
	return rc;
}

static int upload_csr(struct engine *e, struct engine_domain *d, const void *data, size_t len,
		      char *why, size_t whylen)
{
	struct crypto_err cerr = {{0}};
	struct crypto_csr *csr = NULL;
	char **names = NULL;
	size_t n = 0;
	int rc;

	rc = crypto_csr_parse(data, len, &csr, &cerr);
	if (rc) {
		snprintf(why, whylen, "%s", cerr.msg);
		return -EINVAL;
	}
	rc = crypto_csr_names(csr, &names, &n);
	if (rc || !n) {
		snprintf(why, whylen, "CSR names no DNS name");
		rc = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!name_belongs(d->name, names[i])) {
			/* Before anything is ordered: a CSR for someone else's name. */
			snprintf(why, whylen, "CSR name %.253s does not belong to %.253s", names[i],
				 d->name);
			rc = -EACCES;
			goto out;
		}
	}
	{
		struct crypto_key *pub = NULL;

		rc = crypto_csr_get1_key(csr, &pub);
		if (!rc)
			rc = judge_key(pub, why, whylen) ? -EINVAL : 0;
		crypto_key_free(pub);
		if (rc)
			goto out;
	}
	rc = engine_domain_record_put(d, "csr", data, len);
	if (!rc)
		rc = set_names(d, names, n, true);
	if (rc) {
		snprintf(why, whylen, "cannot store the CSR: %s", strerror(-rc));
		goto out;
	}
	names = NULL;
	engine_queue(e, d);
	util_info("engine: %s: CSR accepted, issuing", d->name);
out:
	crypto_strv_free(names, n);
	crypto_csr_free(csr);
	return rc;
}

static int write_names(struct engine *e, struct engine_domain *d, const char *data, size_t len,
		       char *why, size_t whylen)
{
	struct crypto_err cerr = {{0}};
	char **names = NULL, *copy, *tok, *save = NULL;
	size_t n = 0;
	int rc = 0;

	copy = calloc(1, len + 1);
	names = calloc(len / 2 + 3, sizeof(char *));
	if (!copy || !names) {
		free(copy);
		free(names);
		return -ENOMEM;
	}
	memcpy(copy, data, len);
	names[n++] = strdup(d->name); /* the directory's own name always comes first */
	for (tok = strtok_r(copy, " \t\r\n,", &save); tok; tok = strtok_r(NULL, " \t\r\n,", &save)) {
		char canon[256];
		bool dup = false;

		rc = crypto_name_validate(tok, canon, sizeof(canon), &cerr);
		if (rc) {
			snprintf(why, whylen, "%s", cerr.msg);
			rc = -EINVAL;
			goto out;
		}
		if (!name_belongs(d->name, canon)) {
			snprintf(why, whylen, "name %.253s does not belong to %.253s", canon, d->name);
			rc = -EACCES;
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			dup |= !strcmp(names[i], canon);
		if (!dup)
			names[n++] = strdup(canon);
	}
	rc = set_names(d, names, n, false);
	if (rc) {
		snprintf(why, whylen, "cannot store the names: %s", strerror(-rc));
		goto out;
	}
	names = NULL;
	engine_queue(e, d);
out:
	crypto_strv_free(names, n);
	util_wipe(copy, len);
	free(copy);
	return rc;
}

static int write_passphrase(struct engine *e, struct engine_domain *d, const char *data,
			    size_t len, char *why, size_t whylen)
{
	size_t n = trim_len(data, len);
	int rc;

	if (!n)
		return engine_domain_record_del(d, "passphrase");
	if (memchr(data, '\0', n)) {
		snprintf(why, whylen, "passphrase contains a NUL byte");
		return -EINVAL;
	}
	rc = engine_domain_record_put(d, "passphrase", data, n);
	if (rc)
		snprintf(why, whylen, "cannot store the passphrase: %s", strerror(-rc));
	return rc;
}

int engine_write(struct engine *e, struct engine_domain *d, enum engine_file f,
		 const void *data, size_t len, char *why, size_t whylen)
{
	const char *s = data;
	char reason[1024] = "";
	size_t n;
	int rc;

	if (len > ENGINE_UPLOAD_MAX) {
		snprintf(reason, sizeof(reason), "larger than 1 MiB");
		rc = -EFBIG;
		goto done;
	}
	pthread_mutex_lock(&d->write_lock);
	switch (f) {
	case ENGINE_FILE_STATUS:
		n = trim_len(s, len);
		if (n == 5 && !memcmp(s, "renew", 5)) {
			pthread_mutex_lock(&d->lock);
			/* A forced renewal ignores any retry back-off. */
			d->next_attempt = 0;
			pthread_mutex_unlock(&d->lock);
			engine_queue(e, d);
			util_info("engine: %s: renewal requested", d->name);
			rc = 0;
		} else {
			snprintf(reason, sizeof(reason), "status accepts only the word renew");
			rc = -EINVAL;
		}
		break;
	case ENGINE_FILE_FULLCHAIN:
	case ENGINE_FILE_CERT:
		if (crypto_pem_has_key(data, len))
			rc = upload_bundle(d, data, len, reason, sizeof(reason));
		else
			rc = upload_chain(d, data, len, reason, sizeof(reason));
		break;
	case ENGINE_FILE_PRIVKEY:
		if (crypto_pem_has_cert(data, len))
			rc = upload_bundle(d, data, len, reason, sizeof(reason));
		else
			rc = upload_key(d, data, len, reason, sizeof(reason));
		break;
	case ENGINE_FILE_BUNDLE:
		rc = upload_bundle(d, data, len, reason, sizeof(reason));
		break;
	case ENGINE_FILE_PFX:
		rc = upload_pfx(d, data, len, reason, sizeof(reason));
		break;
	case ENGINE_FILE_REQUEST_CSR:
		rc = upload_csr(e, d, data, len, reason, sizeof(reason));
		break;
	case ENGINE_FILE_NAMES:
		rc = write_names(e, d, data, len, reason, sizeof(reason));
		break;
	case ENGINE_FILE_PASSPHRASE:
		rc = write_passphrase(e, d, data, len, reason, sizeof(reason));
		break;
	default:
		snprintf(reason, sizeof(reason), "%s cannot be written (write fullchain.pem)",
			 engine_file_name(f));
		rc = -EINVAL;
		break;
	}
	pthread_mutex_unlock(&d->write_lock);
done:
	if (rc)
		engine_write_refused(d, f, reason[0] ? reason : strerror(-rc));
	if (why)
		snprintf(why, whylen, "%.480s", reason);
	return rc;
}

void engine_write_refused(struct engine_domain *d, enum engine_file f, const char *why)
{
	struct engine_state v;

	engine_state_begin(d, &v);
	snprintf(v.last_error, sizeof(v.last_error), "%s: %.480s", engine_file_name(f), why);
	v.errors_total++;
	engine_state_record(d, &v);
}

int engine_unlink(struct engine *e, struct engine_domain *d, enum engine_file f)
{
	struct pending p;
	int rc = 0;

	(void)e;
	if (f != ENGINE_FILE_FULLCHAIN && f != ENGINE_FILE_CERT)
		return 0;
	pthread_mutex_lock(&d->write_lock);
	/* Removing the certificate removes an upload (and any pending one).
	 * A store that refuses makes rm fail: nothing changed. */
	if (!pending_load(d, &p) && p.chain) {
		crypto_chain_free(p.chain);
		p.chain = NULL;
		rc = pending_store(d, &p);
		if (!rc)
			pending_describe(d, &p);
	}
	pending_clear(&p);
	if (!rc)
		rc = engine_drop_upload(d, "removed");
	pthread_mutex_unlock(&d->write_lock);
	if (rc)
		engine_write_refused(d, f, rc == -ENOSPC ? "cannot remove: store is full"
							 : "cannot remove: the store refused");
	return rc == -ENOENT ? 0 : rc;
}
