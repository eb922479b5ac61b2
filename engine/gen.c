/* SPDX-License-Identifier: MIT */
/*
 * Generations: one immutable snapshot of a domain's key and chain, with
 * every file of the directory derived from it. PEM files are made when the
 * generation is built; the PKCS#12 is made on first use and kept, so a
 * file's bytes are computed once per generation, not per read. bundle.pem
 * is served as its two pieces (key, chain), never copied into one buffer:
 * a daemon serving 10,000 domains would otherwise keep a second copy of
 * every key ever read as a bundle.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

/* A new generation with no content yet, one reference; NULL: no memory. */
static struct engine_gen *gen_alloc(struct engine *e, uint64_t number, time_t created,
				    enum engine_source src)
{
	struct engine_gen *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	atomic_init(&g->refs, 1);
	g->number = number;
	g->created = created;
	g->source = src;
	g->engine = e;
	pthread_mutex_init(&g->lazy_lock, NULL);
	util_buf_init(&g->key_pem, 64 * 1024, true);
	util_buf_init(&g->fullchain, ENGINE_RECORD_MAX, false);
	return g;
}

int engine_gen_new(struct engine *e, uint64_t number, time_t created, enum engine_source src,
		   struct crypto_key *key, struct crypto_chain *chain, struct engine_gen **out)
{
	struct engine_gen *g = gen_alloc(e, number, created, src);
	struct util_buf leaf;
	int rc;

	if (!g)
		return -ENOMEM;
	util_buf_init(&leaf, ENGINE_RECORD_MAX, false);

	rc = crypto_chain_to_pem(chain, &g->fullchain);
	if (rc)
		goto fail;
	rc = crypto_cert_to_pem(crypto_chain_get0(chain, 0), &leaf);
	if (rc)
		goto fail;
	g->leaf_len = leaf.len;
	util_buf_free(&leaf);
	if (key) {
		rc = crypto_key_to_pem(key, &g->key_pem);
		if (rc)
			goto fail;
	}
	rc = crypto_cert_info(crypto_chain_get0(chain, 0), &g->info);
	if (rc)
		goto fail;
	g->has_key = key != NULL;
	/* A generation lives long: keep only the bytes it needs. */
	util_buf_shrink(&g->fullchain);
	util_buf_shrink(&g->key_pem);
	/* The bytes are made: the objects are no longer needed (we own them). */
	crypto_key_free(key);
	crypto_chain_free(chain);
	*out = g;
	return 0;
fail:
	util_buf_free(&leaf);
	util_buf_free(&g->key_pem);
	util_buf_free(&g->fullchain);
	free(g);
	return rc;
}

struct engine_gen *engine_gen_get(struct engine_gen *g)
{
	if (g)
		atomic_fetch_add(&g->refs, 1);
	return g;
}

void engine_gen_put(struct engine_gen *g)
{
	struct engine_pfx *p, *next;

	if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
		return;
	crypto_cert_info_clear(&g->info);
	util_secret_str_free(g->pfx_password);
	util_buf_free(&g->key_pem);
	util_buf_free(&g->fullchain);
	for (p = g->pfx; p; p = next) {
		next = p->next;
		util_secret_str_free(p->password);
		util_buf_free(&p->der);
		free(p);
	}
	pthread_mutex_destroy(&g->lazy_lock);
	free(g);
}

uint64_t engine_gen_number(const struct engine_gen *g)
{
	return g->number;
}

time_t engine_gen_created(const struct engine_gen *g)
{
	return g->created;
}

bool engine_gen_has_key(const struct engine_gen *g)
{
	return g->has_key;
}

int engine_gen_parse(const struct engine_gen *g, struct crypto_key **key,
		     struct crypto_chain **chain)
{
	struct crypto_err cerr = {{0}};
	int rc;

	*key = NULL;
	*chain = NULL;
	rc = crypto_chain_parse(g->fullchain.data, g->fullchain.len, chain, &cerr);
	if (!rc && g->has_key)
		rc = crypto_key_parse_pem(g->key_pem.data, g->key_pem.len, NULL, key, &cerr);
	if (rc) {
		crypto_chain_free(*chain);
		*chain = NULL;
	}
	return rc;
}

/* The PKCS#12 for the configured password; made once per password. */
static int gen_pfx(struct engine_gen *g, const unsigned char **data, size_t *len)
{
	struct engine *e = g->engine;
	struct engine_pfx *p;
	char *password;
	bool legacy;
	int rc = 0;

	pthread_mutex_lock(&e->conf_lock);
	/* The domain's passphrase wins over the global pfx_password. */
	password = util_secret_strdup(g->pfx_password ? g->pfx_password
						     : e->conf.pfx_password ? e->conf.pfx_password : "");
	legacy = e->conf.pfx_legacy;
	pthread_mutex_unlock(&e->conf_lock);
	if (!password)
		return -ENOMEM;

	pthread_mutex_lock(&g->lazy_lock);
	for (p = g->pfx; p; p = p->next)
		if (p->legacy == legacy && !strcmp(p->password, password))
			break;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p) {
			rc = -ENOMEM;
			goto out;
		}
		struct crypto_chain *chain;
		struct crypto_key *key;

		util_buf_init(&p->der, ENGINE_RECORD_MAX, true);
		rc = engine_gen_parse(g, &key, &chain);
		if (!rc)
			rc = crypto_p12_build(key, chain, password,
					      legacy ? CRYPTO_P12_LEGACY : CRYPTO_P12_AES256,
					      &p->der);
		crypto_key_free(key);
		crypto_chain_free(chain);
		if (rc) {
			util_buf_free(&p->der);
			free(p);
			goto out;
		}
		util_buf_shrink(&p->der);
		p->password = password;
		p->legacy = legacy;
		password = NULL;
		p->next = g->pfx;
		g->pfx = p;
	}
	*data = p->der.data;
	*len = p->der.len;
out:
	pthread_mutex_unlock(&g->lazy_lock);
	util_secret_str_free(password);
	return rc;
}

int engine_gen_content(struct engine_gen *g, enum engine_file f, const unsigned char **data,
		       size_t *len)
{
	switch (f) {
	case ENGINE_FILE_FULLCHAIN:
		*data = g->fullchain.data;
		*len = g->fullchain.len;
		return 0;
	case ENGINE_FILE_CERT:
		*data = g->fullchain.data;
		*len = g->leaf_len;
		return 0;
	case ENGINE_FILE_CHAIN:
		*data = g->fullchain.data + g->leaf_len;
		*len = g->fullchain.len - g->leaf_len;
		return 0;
	case ENGINE_FILE_PRIVKEY:
		if (!g->has_key)
			return -ENOENT;
		*data = g->key_pem.data;
		*len = g->key_pem.len;
		return 0;
	case ENGINE_FILE_BUNDLE:
		return -EINVAL; /* two pieces: engine_gen_bundle */
	case ENGINE_FILE_PFX:
		if (!g->has_key)
			return -ENOENT;
		return gen_pfx(g, data, len);
	default:
		return -ENOENT;
	}
}

int engine_gen_bundle(const struct engine_gen *g, struct iovec part[2])
{
	if (!g->has_key)
		return -ENOENT;
	part[0].iov_base = g->key_pem.data;
	part[0].iov_len = g->key_pem.len;
	part[1].iov_base = g->fullchain.data;
	part[1].iov_len = g->fullchain.len;
	return 0;
}

int engine_gen_to_record(const struct engine_gen *g, struct util_buf *out)
{
	json_t *o;
	char *s;
	int rc;

	o = json_pack("{s:I, s:s, s:I, s:s%}", "generation", (json_int_t)g->number, "source",
		      engine_source_name(g->source), "created", (json_int_t)g->created, "chain",
		      (const char *)g->fullchain.data, g->fullchain.len);
	if (!o)
		return -ENOMEM;
	if (g->has_key && json_object_set_new(o, "key", json_stringn((const char *)g->key_pem.data,
								  g->key_pem.len))) {
		json_decref(o);
		return -ENOMEM;
	}
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	rc = util_buf_append(out, s, strlen(s));
	util_wipe(s, strlen(s));
	free(s);
	return rc;
}

static int source_parse(const char *s, enum engine_source *out)
{
	for (int i = ENGINE_SOURCE_SELFSIGNED; i <= ENGINE_SOURCE_UPLOADED; i++) {
		if (!strcmp(s, engine_source_name((enum engine_source)i))) {
			*out = (enum engine_source)i;
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * A generation from its stored record, whose PEM text is what
 * engine_gen_new made when it was built: the text is kept as stored once
 * key and chain have parsed (encoding them again would cost more than the
 * parse, and a daemon loads thousands of generations). key and chain are
 * the parsed record; the caller frees them.
 */
static int gen_from_pem(struct engine *e, uint64_t number, time_t created,
			enum engine_source src, struct crypto_key *key, struct crypto_chain *chain,
			json_t *jkey, json_t *jchain, struct engine_gen **out)
{
	static const char end[] = "-----END CERTIFICATE-----";
	const char *text = json_string_value(jchain), *leaf_end;
	size_t len = json_string_length(jchain);
	struct engine_gen *g;
	int rc;

	leaf_end = memmem(text, len, end, sizeof(end) - 1);
	if (!leaf_end)
		return -EINVAL;
	g = gen_alloc(e, number, created, src);
	if (!g)
		return -ENOMEM;
	g->leaf_len = (size_t)(leaf_end - text) + sizeof(end) - 1;
	if (g->leaf_len < len && text[g->leaf_len] == '\n')
		g->leaf_len++;
	rc = util_buf_append(&g->fullchain, text, len);
	if (!rc && key)
		rc = util_buf_append(&g->key_pem, json_string_value(jkey), json_string_length(jkey));
	if (!rc)
		rc = crypto_cert_info(crypto_chain_get0(chain, 0), &g->info);
	if (rc) {
		util_buf_free(&g->key_pem);
		util_buf_free(&g->fullchain);
		pthread_mutex_destroy(&g->lazy_lock);
		free(g);
		return rc;
	}
	g->has_key = key != NULL;
	util_buf_shrink(&g->fullchain);
	util_buf_shrink(&g->key_pem);
	*out = g;
	return 0;
}

int engine_gen_from_record(struct engine *e, const void *data, size_t len,
			   struct engine_gen **out, char *err, size_t errlen)
{
	struct crypto_chain *chain = NULL;
	struct crypto_key *key = NULL;
	struct crypto_err cerr = {{0}};
	json_t *o, *jkey, *jchain, *jsrc;
	json_error_t jerr;
	enum engine_source src;
	int rc = -EINVAL;

	o = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o)) {
		snprintf(err, errlen, "generation record is not valid JSON");
		goto out;
	}
	jchain = json_object_get(o, "chain");
	jkey = json_object_get(o, "key");
	jsrc = json_object_get(o, "source");
	if (!json_is_string(jchain) || !json_is_string(jsrc) ||
	    !json_is_integer(json_object_get(o, "generation")) ||
	    !json_is_integer(json_object_get(o, "created")) || (jkey && !json_is_string(jkey)) ||
	    source_parse(json_string_value(jsrc), &src)) {
		snprintf(err, errlen, "generation record is missing fields");
		goto out;
	}
	rc = crypto_chain_parse(json_string_value(jchain), json_string_length(jchain), &chain,
				&cerr);
	if (rc) {
		snprintf(err, errlen, "generation record: %s", cerr.msg);
		goto out;
	}
	if (jkey) {
		rc = crypto_key_parse_pem(json_string_value(jkey), json_string_length(jkey), NULL,
					  &key, &cerr);
		if (rc) {
			snprintf(err, errlen, "generation record: %s", cerr.msg);
			goto out;
		}
	}
	rc = gen_from_pem(e, (uint64_t)json_integer_value(json_object_get(o, "generation")),
			  (time_t)json_integer_value(json_object_get(o, "created")), src, key, chain,
			  jkey, jchain, out);
	if (rc) {
		snprintf(err, errlen, "generation record: cannot rebuild files");
		goto out;
	}
out:
	crypto_key_free(key);
	crypto_chain_free(chain);
	json_decref(o);
	return rc;
}
