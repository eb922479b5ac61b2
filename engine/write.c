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

/* Keep *sorted (taken) as p's pending certificate, in the store too. */
static int pending_keep_chain(struct engine_domain *d, struct pending *p,
			      struct crypto_chain **sorted, char *why, size_t whylen)
{
	int rc;

	crypto_chain_free(p->chain);
	p->chain = *sorted;
	*sorted = NULL;
	rc = pending_store(d, p);
	if (rc)
		snprintf(why, whylen, "cannot store the pending certificate: %s", strerror(-rc));
	return rc;
}

/* ---- validation and installation -------------------------------------------------- */

/* The local CA's certificates (intermediate, root), or NULL before it exists. */
static struct crypto_chain *local_ca_chain(struct engine *e)
{
	struct crypto_cert *root = NULL;
	struct crypto_chain *ch;

	if (engine_ca_get(e, false, &root) || !root)
		return NULL;
	ch = crypto_chain_new();
	pthread_mutex_lock(&e->ca_lock);
	if (ch && ((e->int_cert && crypto_chain_push(ch, e->int_cert)) ||
		   crypto_chain_push(ch, e->ca_cert))) {
		crypto_chain_free(ch);
		ch = NULL;
	}
	pthread_mutex_unlock(&e->ca_lock);
	return ch;
}

/* Sort and judge an uploaded chain for d; *sorted on success. */
static int judge_chain(struct engine_domain *d, const struct crypto_chain *in,
		       struct crypto_chain **sorted, char *why, size_t whylen)
{
	struct crypto_err cerr = {{0}};
	struct crypto_chain *known;
	struct crypto_cert *leaf;
	int rc;

	rc = crypto_chain_sort(in, sorted, &cerr);
	if (rc)
		goto fail;
	/* A leaf without its issuer would be served as valid and fail in
	 * every client that does not fetch intermediates itself. */
	known = local_ca_chain(d->engine);
	rc = crypto_chain_complete(*sorted, known, &cerr);
	crypto_chain_free(known);
	if (rc) {
		crypto_chain_free(*sorted);
		*sorted = NULL;
		goto fail;
	}
	leaf = crypto_chain_get0(*sorted, 0);
	rc = crypto_cert_check_covers(leaf, d->name, &cerr);
	if (!rc)
		rc = crypto_cert_check_validity(leaf, util_now(), VALIDITY_SKEW, &cerr);
	if (!rc)
		rc = crypto_cert_check_key_policy(leaf, &cerr);
	if (!rc)
		rc = crypto_chain_check_tls(*sorted, &cerr);
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
 * The generation the stored state names (what is served, or about to be
 * once a rotation fence ends), with a reference; NULL before the first one.
 */
static struct engine_gen *stored_gen(struct engine_domain *d)
{
	struct engine_gen *g = NULL;

	pthread_mutex_lock(&d->lock);
	if (!d->gen_loaded)
		(void)!engine_domain_load_gen(d);
	if (d->cur && d->cur->number == d->stored_gen)
		g = engine_gen_get(d->cur);
	else if (d->stored_gen && engine_domain_read_gen(d, d->stored_gen, &g))
		g = NULL;
	pthread_mutex_unlock(&d->lock);
	return g;
}

/*
 * Does the stored generation already serve this certificate (the same leaf
 * with its key, and the same intermediates unless only the leaf was given)?
 * Then writing it again, or copying a domain's own files back, is a no-op:
 * no new generation, no deploy hook, and a managed certificate stays managed.
 */
static bool already_served(struct engine_domain *d, const struct crypto_chain *chain)
{
	struct engine_gen *g = stored_gen(d);
	struct util_buf leaf, full;
	bool same = false;

	util_buf_init(&leaf, ENGINE_RECORD_MAX, false);
	util_buf_init(&full, ENGINE_RECORD_MAX, false);
	if (g && g->has_key && !crypto_cert_to_pem(crypto_chain_get0(chain, 0), &leaf) &&
	    leaf.len == g->leaf_len && !memcmp(leaf.data, g->fullchain.data, leaf.len)) {
		same = crypto_chain_count(chain) == 1 ||
		       (!crypto_chain_to_pem(chain, &full) && full.len == g->fullchain.len &&
			!memcmp(full.data, g->fullchain.data, full.len));
	}
	util_buf_free(&leaf);
	util_buf_free(&full);
	engine_gen_put(g);
	return same;
}

/*
 * Install key + sorted chain as a new generation of the given source. Takes
 * both (a key reference and the chain), whatever the outcome. What is
 * already served is left as it is (0).
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
	/* The key matches the leaf, so the same leaf means the same key too. */
	if (key && already_served(d, chain)) {
		util_info("engine: %s: the certificate written is the one served; nothing changed",
			  d->name);
		crypto_key_free(key);
		crypto_chain_free(chain);
		return 0;
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
		rc = pending_keep_chain(d, &p, &sorted, why, whylen);
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

/*
 * chain.pem: intermediates that complete the leaf waiting for its key, or
 * the uploaded leaf served. The leaf itself need not be written again.
 */
static int upload_intermediates(struct engine_domain *d, const void *data, size_t len,
				char *why, size_t whylen)
{
	struct crypto_chain *in = NULL, *both = NULL, *sorted = NULL, *cchain = NULL;
	struct crypto_err cerr = {{0}};
	struct crypto_key *ckey = NULL;
	struct engine_gen *cur = NULL;
	struct crypto_cert *leaf;
	struct pending p;
	int rc;

	memset(&p, 0, sizeof(p));
	rc = crypto_chain_parse(data, len, &in, &cerr);
	if (rc) {
		snprintf(why, whylen, "%s", cerr.msg);
		return -EINVAL;
	}
	rc = pending_load(d, &p);
	if (rc)
		goto out;
	cur = stored_gen(d);
	if (!p.chain && cur && engine_gen_parse(cur, &ckey, &cchain))
		cchain = NULL;
	leaf = crypto_chain_get0(p.chain ? p.chain : cchain, 0);
	if (!leaf) {
		snprintf(why, whylen, "no certificate to complete (write fullchain.pem)");
		rc = -EINVAL;
		goto out;
	}
	both = crypto_chain_new();
	rc = both ? crypto_chain_push(both, leaf) : -ENOMEM;
	for (size_t i = 0; !rc && i < crypto_chain_count(in); i++)
		rc = crypto_chain_push(both, crypto_chain_get0(in, i));
	if (rc)
		goto out;
	/* A second leaf in chain.pem is refused here ("more than one leaf"). */
	rc = judge_chain(d, both, &sorted, why, whylen);
	if (!p.chain && (cur->source != ENGINE_SOURCE_UPLOADED || !ckey)) {
		/* A managed certificate's intermediates come from its issuer:
		 * only its own chain.pem copied back is accepted (no-op). */
		if (!rc && already_served(d, sorted))
			goto out;
		snprintf(why, whylen, "chain.pem completes an uploaded certificate, and %s serves "
			 "a %s one (write the whole chain to fullchain.pem)", d->name,
			 engine_source_name(cur->source));
		rc = -EINVAL;
		goto out;
	}
	if (rc) {
		rc = -EINVAL;
		goto out;
	}
	if (p.chain) {
		/* The pending leaf, now with its intermediates. */
		rc = pending_keep_chain(d, &p, &sorted, why, whylen);
		pending_describe(d, &p);
	} else {
		rc = install(d, crypto_key_up_ref(ckey), sorted, ENGINE_SOURCE_UPLOADED, why,
			     whylen);
		sorted = NULL;
	}
out:
	if (rc == -ENOMEM && !why[0])
		snprintf(why, whylen, "out of memory");
	engine_gen_put(cur);
	crypto_key_free(ckey);
	crypto_chain_free(cchain);
	crypto_chain_free(in);
	crypto_chain_free(both);
	crypto_chain_free(sorted);
	pending_clear(&p);
	return rc;
}

static int parse_key(struct engine_domain *d, const void *data, size_t len,
		     struct crypto_key **key, char *why, size_t whylen)
{
	struct crypto_err cerr = {{0}};
	char *pass = engine_domain_passphrase(d);
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
		/* Otherwise it is the key already served: nothing to install,
		 * but a wrong key written before it is no longer waiting. */
		if (!rc && p.key) {
			crypto_key_free(p.key);
			p.key = NULL;
			rc = pending_store(d, &p);
		}
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

static int upload_bundle(struct engine_domain *d, enum engine_file f, const void *data,
			 size_t len, char *why, size_t whylen)
{
	struct crypto_err cerr = {{0}};
	struct crypto_chain *in = NULL;
	struct crypto_key *key = NULL;
	int rc;

	if (!crypto_pem_has_key(data, len)) {
		snprintf(why, whylen, "%s holds no private key", engine_file_name(f));
		return -EINVAL;
	}
	if (!crypto_pem_has_cert(data, len)) {
		/* Most often a key written to the certificate's file. */
		snprintf(why, whylen, "%s holds a private key but no certificate%s",
			 engine_file_name(f),
			 f == ENGINE_FILE_BUNDLE ? "" : " (write a key alone to privkey.pem)");
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
	char *pass = engine_domain_passphrase(d);
	int rc;

	rc = crypto_p12_parse(data, len, pass, &key, &in, &cerr);
	if (rc && !pass && strstr(cerr.msg, "password is wrong"))
		/* As for an encrypted PEM key: say where the password goes. */
		snprintf(why, whylen, "PFX is protected by a password: write it to %s/passphrase "
			 "first", d->name);
	else if (rc)
		snprintf(why, whylen, "%s", cerr.msg);
	util_secret_str_free(pass);
	if (rc)
		return -EINVAL;
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
	v.requested = util_now(); /* kept until a certificate with these names lands */
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
	enum conf_issuer issuer;
	char **names = NULL;
	size_t n = 0;
	int rc;

	pthread_mutex_lock(&e->conf_lock);
	issuer = engine_issuer_of(&e->conf, d->name);
	pthread_mutex_unlock(&e->conf_lock);
	if (issuer == CONF_ISSUER_SELFSIGNED || issuer == CONF_ISSUER_NONE) {
		/* A self-signed certificate is signed by its own key, which a
		 * CSR leaves with its writer: nothing here could sign it. */
		snprintf(why, whylen, "issuer %s cannot issue for a CSR (the key stays with "
			 "you): give %.253s issuer local or acme", conf_issuer_name(issuer),
			 d->name);
		return -EINVAL;
	}
	rc = crypto_csr_parse(data, len, &csr, &cerr);
	if (rc) {
		snprintf(why, whylen, "%s", cerr.msg);
		return -EINVAL;
	}
	/* Development names (IP addresses, single labels) are read as names
	 * here and refused below, as at mkdir, where the issuer is ACME. */
	rc = crypto_csr_names(csr, true, &names, &n, &cerr);
	if (rc) {
		snprintf(why, whylen, "%s", cerr.msg[0] ? cerr.msg : "CSR names cannot be read");
		rc = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char canon[256], reason[512];

		if (engine_name_check(e, d->name, names[i], canon, sizeof(canon), reason,
				      sizeof(reason))) {
			snprintf(why, whylen, "CSR name: %s", reason);
			rc = -EINVAL;
			goto out;
		}
		if (!name_belongs(d->name, names[i])) {
			/* Before anything is ordered: a CSR for someone else's name. */
			snprintf(why, whylen, "CSR name %.253s does not belong to %.253s", names[i],
				 d->name);
			rc = -EINVAL; /* bad content, not a question of rights */
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
	char **names = NULL, *copy, *tok, *save = NULL;
	size_t n = 0;
	int rc = 0;

	/* strtok would end the list at a NUL and drop the rest unseen. */
	if (memchr(data, '\0', len)) {
		snprintf(why, whylen, "names contains a NUL byte");
		return -EINVAL;
	}
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

		rc = engine_name_check(e, d->name, tok, canon, sizeof(canon), why, whylen);
		if (rc)
			goto out;
		if (!name_belongs(d->name, canon)) {
			snprintf(why, whylen, "name %.253s does not belong to %.253s", canon, d->name);
			rc = -EINVAL;
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			dup |= !strcmp(names[i], canon);
		if (!dup && n >= CRYPTO_NAMES_MAX) {
			snprintf(why, whylen, "names lists more than %d names (the limit)",
				 CRYPTO_NAMES_MAX);
			rc = -EINVAL;
			goto out;
		}
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
	char *old;
	size_t n = trim_len(data, len);
	bool same;
	int rc;

	if (n && memchr(data, '\0', n)) {
		snprintf(why, whylen, "passphrase contains a NUL byte");
		return -EINVAL;
	}
	if (n > CRYPTO_PASS_MAX) {
		snprintf(why, whylen, "passphrase is longer than %d bytes (the limit)",
			 CRYPTO_PASS_MAX);
		return -EINVAL;
	}
	old = engine_domain_passphrase(d);
	same = old ? strlen(old) == n && crypto_secret_equal(old, data, n) : !n;
	util_secret_str_free(old);
	if (!n)
		rc = engine_domain_record_del(d, "passphrase");
	else
		rc = engine_domain_record_put(d, "passphrase", data, n);
	if (rc) {
		snprintf(why, whylen, "cannot store the passphrase: %s", strerror(-rc));
		return rc;
	}
	/* cert.pfx is exported with it: remake it (once per change). */
	if (!same)
		engine_domain_refresh_pfx(d);
	return 0;
}

/*
 * last_error is one line of status: whatever a sentence quotes from an
 * upload, no control byte of it may start a line of its own there.
 */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

/*
 * A refused write is history once a later one succeeds (an issuance error
 * stays until an issuance succeeds).
 */
static void write_error_clear(struct engine_domain *d)
{
	struct engine_state v;
	bool set;

	pthread_mutex_lock(&d->lock);
	set = d->last_error_write;
	pthread_mutex_unlock(&d->lock);
	if (!set)
		return;
	engine_state_begin(d, &v);
	if (!v.last_error_write) {
		engine_state_abort(d);
		return;
	}
	v.last_error[0] = '\0';
	v.last_error_write = false;
	engine_state_record(d, &v);
}

bool engine_empty_write_ok(enum engine_file f)
{
	return f == ENGINE_FILE_PASSPHRASE || f == ENGINE_FILE_NAMES;
}

uint64_t engine_domain_writes(struct engine_domain *d)
{
	/* Not under write_lock, which a costly judgement holds for long:
	 * the front end asks from a thread that answers readers. */
	return __atomic_load_n(&d->writes, __ATOMIC_ACQUIRE);
}

/* engine_write, or with seen an empty write that a later one supersedes. */
static int write_judge(struct engine *e, struct engine_domain *d, enum engine_file f,
		       const void *data, size_t len, const uint64_t *seen, char *why,
		       size_t whylen)
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
	if (seen && *seen != d->writes) {
		/* `: > passphrase; echo new > passphrase`: the first open
		 * file may be released after the second was judged. */
		pthread_mutex_unlock(&d->write_lock);
		if (why)
			snprintf(why, whylen, "superseded by a later write");
		return 0;
	}
	__atomic_add_fetch(&d->writes, 1, __ATOMIC_RELEASE);
	if (!len && !engine_empty_write_ok(f) && f != ENGINE_FILE_STATUS) {
		/* `cp /dev/null fullchain.pem`: nothing to install, and saying
		 * so beats a silent success. */
		snprintf(reason, sizeof(reason), "empty file");
		rc = -EINVAL;
		goto unlock;
	}
	switch (f) {
	case ENGINE_FILE_CHAIN:
		rc = upload_intermediates(d, data, len, reason, sizeof(reason));
		break;
	case ENGINE_FILE_STATUS:
		n = trim_len(s, len);
		if (n == 5 && !memcmp(s, "renew", 5)) {
			struct engine_state v;

			/* A forced renewal ignores any retry back-off; the
			 * request is stored, so a restart does not drop it. */
			engine_state_begin(d, &v);
			v.next_attempt = 0;
			v.requested = util_now();
			rc = engine_state_commit(d, &v);
			if (rc) {
				snprintf(reason, sizeof(reason), "cannot store the request: %s",
					 strerror(-rc));
				goto unlock;
			}
			engine_queue(e, d);
			util_info("engine: %s: renewal requested", d->name);
		} else {
			snprintf(reason, sizeof(reason), "status accepts only the word renew");
			rc = -EINVAL;
		}
		break;
	case ENGINE_FILE_FULLCHAIN:
	case ENGINE_FILE_CERT:
		if (crypto_pem_has_key(data, len))
			rc = upload_bundle(d, f, data, len, reason, sizeof(reason));
		else
			rc = upload_chain(d, data, len, reason, sizeof(reason));
		break;
	case ENGINE_FILE_PRIVKEY:
		if (crypto_pem_has_cert(data, len))
			rc = upload_bundle(d, f, data, len, reason, sizeof(reason));
		else
			rc = upload_key(d, data, len, reason, sizeof(reason));
		break;
	case ENGINE_FILE_BUNDLE:
		rc = upload_bundle(d, f, data, len, reason, sizeof(reason));
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
unlock:
	pthread_mutex_unlock(&d->write_lock);
done:
	one_line(reason);
	if (rc)
		engine_write_refused(d, f, reason[0] ? reason : strerror(-rc));
	else
		write_error_clear(d);
	if (why)
		snprintf(why, whylen, "%.480s", reason);
	return rc;
}

int engine_write(struct engine *e, struct engine_domain *d, enum engine_file f,
		 const void *data, size_t len, char *why, size_t whylen)
{
	return write_judge(e, d, f, data, len, NULL, why, whylen);
}

int engine_write_empty(struct engine *e, struct engine_domain *d, enum engine_file f,
		       uint64_t seen, char *why, size_t whylen)
{
	return write_judge(e, d, f, "", 0, &seen, why, whylen);
}

void engine_write_refused(struct engine_domain *d, enum engine_file f, const char *why)
{
	struct engine_state v;

	engine_state_begin(d, &v);
	snprintf(v.last_error, sizeof(v.last_error), "%s: %.480s", engine_file_name(f), why);
	one_line(v.last_error);
	v.last_error_write = true;
	v.errors_total++;
	util_info("engine: %s: %s", d->name, v.last_error);
	engine_state_record(d, &v);
	pthread_mutex_lock(&d->lock);
	d->upload_refusals++;
	pthread_mutex_unlock(&d->lock);
}

int engine_unlink(struct engine *e, struct engine_domain *d, enum engine_file f)
{
	bool key = f == ENGINE_FILE_PRIVKEY || f == ENGINE_FILE_BUNDLE || f == ENGINE_FILE_PFX;
	bool cert = f == ENGINE_FILE_FULLCHAIN || f == ENGINE_FILE_CERT ||
		    f == ENGINE_FILE_BUNDLE || f == ENGINE_FILE_PFX;
	struct pending p;
	int rc = 0;

	(void)e;
	/* Every file that an upload can be written to removes it; chain.pem
	 * and the status files are views, and removing them changes nothing. */
	if (!key && !cert && f != ENGINE_FILE_PRIVKEY)
		return 0;
	pthread_mutex_lock(&d->write_lock);
	/* Removing a file an upload is written to removes the upload, and with
	 * it the pending half that file would hold. A store that refuses makes
	 * rm fail: nothing changed. */
	if (!pending_load(d, &p) && ((cert && p.chain) || (key && p.key))) {
		if (cert) {
			crypto_chain_free(p.chain);
			p.chain = NULL;
		}
		if (key) {
			crypto_key_free(p.key);
			p.key = NULL;
		}
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
