/* SPDX-License-Identifier: MIT */
/*
 * store_etcd: the etcd v3 back end, shared by every certfs node that names
 * the same cluster and prefix. There is no C gRPC client for etcd, so this
 * speaks etcd's JSON gateway (/v3/kv/range, put, txn, deleterange, /v3/watch,
 * /v3/lease/grant and keepalive, /v3/auth/authenticate) with libcurl and
 * jansson; keys and values travel base64-encoded and 64-bit numbers as
 * strings. A key "a/b" is the etcd key "PREFIX/a/b"; a level has no key of
 * its own (as in etcd), it exists while something lives below it.
 *
 * What etcd guarantees and this file relies on: every request is strictly
 * serializable and every txn gets one revision; a watch delivers changes in
 * revision order from any revision not yet compacted. What it does not, and
 * this file handles: a compacted history (the watcher is told to re-list),
 * a member that stops answering (the next endpoint is tried, and a watch
 * resumes from the last revision it saw), a lock holder paused past its
 * lease (every fenced write is a txn comparing the lock key's create
 * revision, so a late write fails with -ESTALE instead of landing).
 *
 * Every value is sealed (AES-256-GCM, crypto_seal) with the key from
 * key_encryption_key_file, its name as associated data: read access to etcd
 * gives no private key, and a value moved to another name does not open.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "crypto/crypto.h"
#include "store/store_int.h"

#define ETCD_CONNECT_MS 1000L
#define ETCD_TIMEOUT_MS 5000L
/* A keys-only listing of a large tree, or a value near etcd's 1.5 MiB cap
 * in base64 inside JSON, fits with room to spare. */
#define ETCD_RESPONSE_MAX (256u * 1024 * 1024)
#define ETCD_EVENT_MAX (16u * 1024 * 1024)
#define ETCD_HANDLES_MAX 16
#define ETCD_LOCKS "locks/"
/* etcd's default --max-txn-ops is 128. */
#define ETCD_TXN_OPS_MAX 120
#define OWN_BUCKETS 4096

struct own_write {
	struct own_write *next;
	int64_t rev;
	char key[];
};

struct store_etcd {
	struct store base; /* first */
	char **urls;       /* "http://HOST:PORT", one per endpoint */
	size_t nurls;
	atomic_size_t cur; /* endpoint that answered last */
	char *prefix;      /* "PREFIX/" */
	size_t prefix_len;
	char *ca_bundle, *cert, *key;
	char *user, *password; /* password secret */
	unsigned char kek[CRYPTO_SEAL_KEY_LEN];
	int ttl;
	char holder[300]; /* "HOST PID": a lock's value, so people can see who holds it */
	atomic_bool reachable;
	int64_t open_rev;

	pthread_mutex_t lock; /* token, handles, lease */
	char *token;
	CURL *handles[ETCD_HANDLES_MAX];
	size_t nhandles;

	int64_t lease;
	bool keepalive_running, keepalive_stop;
	pthread_t keepalive;
	pthread_cond_t keepalive_cond;

	pthread_mutex_t own_lock;
	struct own_write *own[OWN_BUCKETS];

	/* watch */
	pthread_t watcher;
	bool watching;
	atomic_bool watch_stop;
	char *watch_prefix; /* full, "PREFIX/..." */
	store_watch_cb watch_cb;
	void *watch_arg;
	pthread_mutex_t watch_lock;
	pthread_cond_t watch_cond;
};

static struct store_etcd *to_etcd(struct store *s)
{
	return (struct store_etcd *)s;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers ------------------------------------------------------------ */

/* etcd's JSON gateway writes int64 as strings; accept both forms. */
static int64_t jint(const json_t *v)
{
	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}

static json_t *jstr64(int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	return json_string(buf);
}

/* base64 of bytes as a new JSON string. */
static json_t *jb64(const void *data, size_t len)
{
	struct util_buf b;
	json_t *j = NULL;

	util_buf_init(&b, ETCD_RESPONSE_MAX, false);
	if (!crypto_b64(data, len, &b))
		j = json_stringn(b.len ? (const char *)b.data : "", b.len);
	util_buf_free(&b);
	return j;
}

static int unb64(const json_t *v, struct util_buf *out)
{
	if (!v)
		return 0; /* etcd omits empty values */
	if (!json_is_string(v))
		return -EINVAL;
	return crypto_b64_decode(json_string_value(v), json_string_length(v), out);
}

/* The full etcd key of a relative one (caller frees). */
static char *full_key(struct store_etcd *s, const char *rel, const char *suffix)
{
	char *k = NULL;

	if (asprintf(&k, "%s%s%s", s->prefix, rel, suffix ? suffix : "") < 0)
		return NULL;
	return k;
}

/* The first key after every key that starts with p (etcd's range_end). */
static json_t *jrange_end(const char *p)
{
	size_t n = strlen(p);
	char *e = strdup(p);
	json_t *j;

	if (!e || !n) {
		free(e);
		return NULL;
	}
	e[n - 1]++;
	j = jb64(e, n);
	free(e);
	return j;
}

/* ---- own writes: so the watch skips this process's echoes ------------------------ */

static size_t own_hash(const char *k)
{
	size_t h = 5381;

	while (*k)
		h = h * 33 + (unsigned char)*k++;
	return h % OWN_BUCKETS;
}

static void own_note(struct store_etcd *s, const char *rel, int64_t rev)
{
	struct own_write **pp, *w;
	size_t n = strlen(rel);

	pthread_mutex_lock(&s->own_lock);
	for (pp = &s->own[own_hash(rel)]; (w = *pp); pp = &w->next)
		if (!strcmp(w->key, rel))
			break;
	if (!w) {
		w = calloc(1, sizeof(*w) + n + 1);
		if (w) {
			memcpy(w->key, rel, n + 1);
			*pp = w;
		}
	}
	if (w && rev > w->rev)
		w->rev = rev;
	pthread_mutex_unlock(&s->own_lock);
}

static bool etcd_superseded(struct store *st, const char *rel, int64_t rev)
{
	struct store_etcd *s = to_etcd(st);
	struct own_write *w;
	bool r = false;

	pthread_mutex_lock(&s->own_lock);
	for (w = s->own[own_hash(rel)]; w; w = w->next)
		if (!strcmp(w->key, rel)) {
			r = w->rev >= rev;
			break;
		}
	pthread_mutex_unlock(&s->own_lock);
	return r;
}

/* ---- HTTP ----------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct util_buf *b = arg;

	return util_buf_append(b, p, size * n) ? 0 : size * n;
}

static CURL *handle_get(struct store_etcd *s)
{
	CURL *h = NULL;

	pthread_mutex_lock(&s->lock);
	if (s->nhandles)
		h = s->handles[--s->nhandles];
	pthread_mutex_unlock(&s->lock);
	return h ? h : curl_easy_init();
}

static void handle_put(struct store_etcd *s, CURL *h)
{
	pthread_mutex_lock(&s->lock);
	if (s->nhandles < ETCD_HANDLES_MAX) {
		s->handles[s->nhandles++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	curl_easy_cleanup(h);
}

/* Options every request shares: TLS, timeouts, headers. */
static void handle_setup(struct store_etcd *s, CURL *h, const char *url, const char *body,
			 size_t len, struct curl_slist *hdrs, long timeout_ms)
{
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (s->ca_bundle)
		curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_bundle);
	if (s->cert)
		curl_easy_setopt(h, CURLOPT_SSLCERT, s->cert);
	if (s->key)
		curl_easy_setopt(h, CURLOPT_SSLKEY, s->key);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ETCD_CONNECT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "certfs");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
}

static struct curl_slist *headers(struct store_etcd *s)
{
	struct curl_slist *h = NULL, *t;
	char *auth = NULL;

	h = curl_slist_append(NULL, "Content-Type: application/json");
	pthread_mutex_lock(&s->lock);
	if (h && s->token && asprintf(&auth, "Authorization: %s", s->token) < 0)
		auth = NULL;
	pthread_mutex_unlock(&s->lock);
	if (h && auth) {
		t = curl_slist_append(h, auth);
		if (!t) {
			curl_slist_free_all(h);
			h = NULL;
		} else {
			h = t;
		}
	}
	if (auth) {
		util_wipe(auth, strlen(auth));
		free(auth);
	}
	return h;
}

enum call_result {
	CALL_OK,
	CALL_NEXT,    /* this endpoint cannot serve: try another */
	CALL_AUTH,    /* the token expired: authenticate again */
	CALL_FAILED,  /* the request itself failed (rc says how) */
};

/* Map an error body of the gateway ({"error", "code", "message"}). */
static enum call_result judge_error(long status, const struct util_buf *b, int *rc, char *why,
				    size_t whylen)
{
	json_t *o = json_loadb((const char *)b->data, b->len, 0, NULL);
	const char *msg = json_string_value(json_object_get(o, "message"));
	int code = (int)json_integer_value(json_object_get(o, "code"));
	enum call_result r = CALL_FAILED;

	if (!msg)
		msg = json_string_value(json_object_get(o, "error"));
	snprintf(why, whylen, "HTTP %ld: %s", status, msg ? msg : "no message");
	*rc = -EIO;
	if (msg && (strstr(msg, "invalid auth token") || strstr(msg, "user name is empty"))) {
		r = CALL_AUTH;
		*rc = -EACCES;
	}
	else if (code == 14 || status == 503 || (msg && (strstr(msg, "no leader") ||
							 strstr(msg, "timed out") ||
							 strstr(msg, "not capable"))))
		r = CALL_NEXT;
	else if (msg && strstr(msg, "too large"))
		*rc = -EFBIG;
	else if (msg && strstr(msg, "compacted"))
		*rc = -ERANGE;
	else if (msg && strstr(msg, "lease not found"))
		*rc = -ENOLINK;
	else if (code == 7 || code == 16 || status == 401 || status == 403)
		*rc = -EACCES;
	json_decref(o);
	return r;
}

static int authenticate(struct store_etcd *s);

/*
 * POST req to path on the endpoints in turn, starting with the one that
 * answered last. *resp gets the parsed answer. -EHOSTUNREACH when no
 * endpoint answers; other -errno as judge_error() maps them.
 */
static int call_ex(struct store_etcd *s, const char *path, json_t *req, json_t **resp,
		   bool may_auth)
{
	struct curl_slist *hdrs = NULL;
	struct util_buf b;
	char *body = NULL, url[512], why[300] = "no endpoint";
	size_t start = atomic_load(&s->cur), blen;
	bool reauth = false;
	CURL *h = NULL;
	int rc = -EHOSTUNREACH;

	*resp = NULL;
	body = json_dumps(req, JSON_COMPACT);
	if (!body)
		return -ENOMEM;
	blen = strlen(body);
	util_buf_init(&b, ETCD_RESPONSE_MAX, true);
	h = handle_get(s);
	hdrs = headers(s);
	if (!h || !hdrs) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < s->nurls; i++) {
		size_t ep = (start + i) % s->nurls;
		enum call_result r;
		long status = 0;
		CURLcode cc;

		snprintf(url, sizeof(url), "%s%s", s->urls[ep], path);
		util_buf_reset(&b);
		handle_setup(s, h, url, body, blen, hdrs, ETCD_TIMEOUT_MS);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
		cc = curl_easy_perform(h);
		if (cc != CURLE_OK) {
			snprintf(why, sizeof(why), "%s: %s", s->urls[ep], curl_easy_strerror(cc));
			rc = cc == CURLE_WRITE_ERROR ? -EFBIG : -EHOSTUNREACH;
			if (rc == -EFBIG)
				goto out;
			continue;
		}
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		if (status == 200) {
			atomic_store(&s->cur, ep);
			atomic_store(&s->reachable, true);
			*resp = json_loadb((const char *)b.data, b.len, 0, NULL);
			rc = *resp ? 0 : -EIO;
			if (rc)
				util_err("store etcd: %s: unreadable answer", url);
			goto out;
		}
		r = judge_error(status, &b, &rc, why, sizeof(why));
		if (r == CALL_AUTH && may_auth && !reauth && s->user) {
			reauth = true;
			curl_slist_free_all(hdrs);
			hdrs = NULL;
			rc = authenticate(s);
			if (!rc)
				hdrs = headers(s);
			if (rc || !hdrs) {
				rc = rc ? rc : -ENOMEM;
				goto out;
			}
			i--; /* the same endpoint again, with the new token */
			continue;
		}
		if (r == CALL_NEXT) {
			rc = -EHOSTUNREACH;
			continue;
		}
		atomic_store(&s->reachable, true);
		/* (At open the caller reports the failure in one line.) */
		if (rc != -ERANGE && rc != -ENOLINK && s->base.spec)
			util_err("store etcd: %s: %s", path, why);
		goto out;
	}
	/* Every endpoint failed: the store is unreachable. */
	/* (At open there is no spec yet: the caller reports it in one line.) */
	if (atomic_exchange(&s->reachable, false) && s->base.spec)
		util_err("store %s: unreachable: %s", s->base.spec, why);
out:
	curl_slist_free_all(hdrs);
	if (h)
		handle_put(s, h);
	util_buf_free(&b);
	util_wipe(body, blen);
	free(body);
	return rc;
}

static int call(struct store_etcd *s, const char *path, json_t *req, json_t **resp)
{
	return call_ex(s, path, req, resp, true);
}

static int authenticate(struct store_etcd *s)
{
	json_t *req, *resp = NULL;
	const char *tok;
	int rc;

	req = json_pack("{s:s, s:s}", "name", s->user, "password", s->password);
	if (!req)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	free(s->token);
	s->token = NULL;
	pthread_mutex_unlock(&s->lock);
	rc = call_ex(s, "/v3/auth/authenticate", req, &resp, false);
	json_decref(req);
	if (rc)
		return rc;
	tok = json_string_value(json_object_get(resp, "token"));
	rc = -EACCES;
	if (tok) {
		pthread_mutex_lock(&s->lock);
		s->token = strdup(tok);
		rc = s->token ? 0 : -ENOMEM;
		pthread_mutex_unlock(&s->lock);
	}
	json_decref(resp);
	return rc;
}

/* ---- sealing ------------------------------------------------------------------------ */

static int seal_value(struct store_etcd *s, const char *rel, const void *data, size_t len,
		      json_t **out)
{
	struct util_buf b;
	int rc;

	*out = NULL;
	util_buf_init(&b, STORE_VALUE_MAX + CRYPTO_SEAL_OVERHEAD, false);
	rc = crypto_seal(s->kek, rel, strlen(rel), data, len, &b);
	if (!rc) {
		*out = jb64(b.data, b.len);
		rc = *out ? 0 : -ENOMEM;
	}
	util_buf_free(&b);
	return rc;
}

/* Unseal the base64 value v stored under rel, appended to out. */
static int open_value(struct store_etcd *s, const char *rel, const json_t *v,
		      struct util_buf *out)
{
	struct util_buf raw;
	int rc;

	util_buf_init(&raw, ETCD_EVENT_MAX, false);
	rc = unb64(v, &raw);
	if (!rc && !raw.len)
		rc = -EINVAL;
	if (!rc) {
		/* Check the size before opening: out's cap applies to plaintext. */
		if (raw.len - CRYPTO_SEAL_OVERHEAD > out->max - out->len)
			rc = -EFBIG;
		else
			rc = crypto_unseal(s->kek, rel, strlen(rel), raw.data, raw.len, out);
		if (rc == -EINVAL)
			util_err("store etcd: %s: value does not open with this "
				 "key_encryption_key (wrong key, or altered)", rel);
	}
	util_buf_free(&raw);
	return rc;
}

/* ---- key/value -------------------------------------------------------------------------- */

static int etcd_get_rev(struct store *st, const char *rel, struct util_buf *out, int64_t *rev)
{
	struct store_etcd *s = to_etcd(st);
	json_t *req = NULL, *resp = NULL, *kv;
	char *k = full_key(s, rel, NULL);
	int rc = -ENOMEM;

	if (rev)
		*rev = 0;
	if (!k)
		goto out;
	req = json_pack("{s:o}", "key", jb64(k, strlen(k)));
	if (!req)
		goto out;
	rc = call(s, "/v3/kv/range", req, &resp);
	if (rc)
		goto out;
	kv = json_array_get(json_object_get(resp, "kvs"), 0);
	rc = -ENOENT;
	if (!kv)
		goto out;
	rc = open_value(s, rel, json_object_get(kv, "value"), out);
	if (!rc && rev)
		*rev = jint(json_object_get(kv, "mod_revision"));
out:
	json_decref(req);
	json_decref(resp);
	free(k);
	return rc;
}

static int etcd_get(struct store *st, const char *rel, struct util_buf *out)
{
	return etcd_get_rev(st, rel, out, NULL);
}

/* Keys per read-only txn: under etcd's default --max-txn-ops (128). */
#define ETCD_BATCH 100

static int etcd_get_many(struct store *st, const char *const *keys, size_t n, size_t max,
			 store_value_cb cb, void *arg)
{
	struct store_etcd *s = to_etcd(st);
	struct util_buf b;
	int rc = 0;

	util_buf_init(&b, max, true);
	for (size_t at = 0; !rc && at < n; at += ETCD_BATCH) {
		size_t k = n - at < ETCD_BATCH ? n - at : ETCD_BATCH;
		json_t *ops = json_array(), *req = NULL, *resp = NULL, *rs;

		for (size_t j = 0; ops && j < k; j++) {
			char *full = full_key(s, keys[at + j], NULL);

			if (!full || json_array_append_new(ops, json_pack("{s:{s:o}}", "request_range",
								      "key", jb64(full, strlen(full))))) {
				free(full);
				json_decref(ops);
				ops = NULL;
				break;
			}
			free(full);
		}
		req = ops ? json_pack("{s:o}", "success", ops) : NULL;
		rc = req ? call(s, "/v3/kv/txn", req, &resp) : -ENOMEM;
		json_decref(req);
		rs = json_object_get(resp, "responses");
		for (size_t j = 0; !rc && j < k; j++) {
			json_t *kv = json_array_get(
				json_object_get(json_object_get(json_array_get(rs, j), "response_range"),
						"kvs"),
				0);
			int got = -ENOENT;

			util_buf_reset(&b);
			if (kv)
				got = open_value(s, keys[at + j], json_object_get(kv, "value"), &b);
			rc = cb(at + j, got, b.data, b.len, arg);
		}
		json_decref(resp);
	}
	util_buf_free(&b);
	return rc < 0 ? rc : 0;
}

/* A compare that holds while the calling thread's fence lock is held. */
static json_t *fence_compare(struct store_etcd *s)
{
	struct store_lock *l = store_fence_get();

	if (!l || l->store != &s->base)
		return NULL;
	return json_pack("{s:o, s:s, s:s, s:o}", "key", jb64(l->key, strlen(l->key)), "target",
			 "CREATE", "result", "EQUAL", "create_revision", jstr64(l->rev));
}

static void fence_refused(struct store_etcd *s, const char *rel)
{
	struct store_lock *l = store_fence_get();

	util_warn("store etcd: %s: write refused: lock %s (revision %lld) is no longer held",
		  rel, l ? l->key + s->prefix_len : "?", l ? (long long)l->rev : 0LL);
}

/*
 * Run a txn: compares (array, consumed) and success ops (consumed), plus
 * the thread's fence. 0 when it succeeded (*rev = its revision), -ESTALE
 * when the fence failed, -ECANCELED when another compare failed.
 */
static int txn(struct store_etcd *s, json_t *cmp, json_t *ops, int64_t *rev, const char *what)
{
	json_t *req = NULL, *resp = NULL, *fence = fence_compare(s), *fence_check = NULL;
	int rc = -ENOMEM;

	if (!cmp || !ops)
		goto out;
	if (fence) {
		json_array_append(cmp, fence);
		/* On failure, read the lock key to tell a lost fence from a
		 * lost race. */
		fence_check = json_pack("[{s:{s:O}}]", "request_range", "key",
					json_object_get(fence, "key"));
	}
	req = json_pack("{s:O, s:O, s:o?}", "compare", cmp, "success", ops, "failure",
			fence_check);
	fence_check = NULL;
	if (!req)
		goto out;
	rc = call(s, "/v3/kv/txn", req, &resp);
	if (rc)
		goto out;
	if (rev)
		*rev = jint(json_object_get(json_object_get(resp, "header"), "revision"));
	if (json_is_true(json_object_get(resp, "succeeded"))) {
		rc = 0;
		goto out;
	}
	rc = -ECANCELED;
	if (fence) {
		json_t *r = json_array_get(json_object_get(resp, "responses"), 0);
		json_t *kv = json_array_get(
			json_object_get(json_object_get(r, "response_range"), "kvs"), 0);

		if (!kv || jint(json_object_get(kv, "create_revision")) !=
				   jint(json_object_get(fence, "create_revision"))) {
			fence_refused(s, what);
			rc = -ESTALE;
		}
	}
out:
	json_decref(fence);
	json_decref(fence_check);
	json_decref(cmp);
	json_decref(ops);
	json_decref(req);
	json_decref(resp);
	return rc;
}

static json_t *op_put(const char *k, json_t *value)
{
	return json_pack("{s:{s:o, s:o}}", "request_put", "key", jb64(k, strlen(k)), "value",
			 value);
}

static json_t *op_del(const char *k, bool prefix)
{
	json_t *o = json_pack("{s:o}", "key", jb64(k, strlen(k)));

	if (o && prefix)
		json_object_set_new(o, "range_end", jrange_end(k));
	return o ? json_pack("{s:o}", "request_delete_range", o) : NULL;
}

static int put_cmp(struct store_etcd *s, const char *rel, const void *data, size_t len,
		   json_t *cmp)
{
	json_t *value = NULL;
	char *k = full_key(s, rel, NULL);
	int64_t rev = 0;
	int rc;

	rc = k ? seal_value(s, rel, data, len, &value) : -ENOMEM;
	if (rc) {
		json_decref(cmp);
		free(k);
		return rc;
	}
	rc = txn(s, cmp, json_pack("[o]", op_put(k, value)), &rev, rel);
	if (!rc)
		own_note(s, rel, rev);
	free(k);
	return rc;
}

static int etcd_put(struct store *st, const char *rel, const void *data, size_t len)
{
	return put_cmp(to_etcd(st), rel, data, len, json_array());
}

static int etcd_put_if(struct store *st, const char *rel, const void *data, size_t len,
		       int64_t rev)
{
	struct store_etcd *s = to_etcd(st);
	char *k = full_key(s, rel, NULL);
	json_t *cmp;
	int rc;

	if (!k)
		return -ENOMEM;
	cmp = json_pack("[{s:o, s:s, s:s, s:o}]", "key", jb64(k, strlen(k)), "target",
			rev ? "MOD" : "CREATE", "result", "EQUAL",
			rev ? "mod_revision" : "create_revision", jstr64(rev));
	free(k);
	rc = put_cmp(s, rel, data, len, cmp);
	if (rc == -ECANCELED)
		rc = rev ? -ESTALE : -EEXIST;
	return rc;
}

/* Count keys that are k or below k/ ; -errno on failure. */
static int64_t count_below(struct store_etcd *s, const char *k, json_t **kvs)
{
	json_t *req, *resp = NULL;
	char *sub = NULL;
	int64_t n = 0;
	int rc;

	/* k itself, then k/..: two ranges, since "k0" sorts between them. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass && asprintf(&sub, "%s/", k) < 0)
			return -ENOMEM;
		req = json_pack("{s:o}", "key", jb64(pass ? sub : k, strlen(pass ? sub : k)));
		if (req && pass)
			json_object_set_new(req, "range_end", jrange_end(sub));
		if (req && !kvs)
			json_object_set_new(req, "count_only", json_true());
		rc = req ? call(s, "/v3/kv/range", req, &resp) : -ENOMEM;
		json_decref(req);
		if (rc) {
			free(sub);
			return rc;
		}
		n += jint(json_object_get(resp, "count"));
		if (kvs) {
			json_t *a = json_object_get(resp, "kvs");

			if (json_is_array(a))
				json_array_extend(*kvs, a);
		}
		json_decref(resp);
		resp = NULL;
	}
	free(sub);
	return n;
}

static int etcd_del(struct store *st, const char *rel)
{
	struct store_etcd *s = to_etcd(st);
	json_t *cmp;
	char *k = full_key(s, rel, NULL);
	int64_t rev = 0;
	int rc;

	if (!k)
		return -ENOMEM;
	/* Only an existing value is deleted (a level has no value in etcd). */
	cmp = json_pack("[{s:o, s:s, s:s, s:s}]", "key", jb64(k, strlen(k)), "target", "CREATE",
			"result", "GREATER", "create_revision", "0");
	rc = txn(s, cmp, json_pack("[o]", op_del(k, false)), &rev, rel);
	if (rc == -ECANCELED)
		rc = -ENOENT;
	if (!rc)
		own_note(s, rel, rev);
	free(k);
	return rc;
}

static int etcd_list(struct store *st, const char *rel, store_list_cb cb, void *arg)
{
	struct store_etcd *s = to_etcd(st);
	json_t *req = NULL, *resp = NULL, *kvs, *kv;
	struct util_buf name;
	char *p = NULL, *last = NULL;
	size_t plen, i;
	int rc = -ENOMEM, found = 0;

	util_buf_init(&name, ETCD_EVENT_MAX, false);
	p = *rel ? full_key(s, rel, "/") : strdup(s->prefix);
	if (!p)
		goto out;
	plen = strlen(p);
	req = json_pack("{s:o, s:o, s:b}", "key", jb64(p, plen), "range_end", jrange_end(p),
			"keys_only", 1);
	if (!req)
		goto out;
	rc = call(s, "/v3/kv/range", req, &resp);
	if (rc)
		goto out;
	kvs = json_object_get(resp, "kvs");
	/* Keys come sorted, so a child's keys are adjacent: report each once. */
	json_array_foreach(kvs, i, kv) {
		char *slash;

		util_buf_reset(&name);
		rc = unb64(json_object_get(kv, "key"), &name);
		if (!rc)
			rc = util_buf_terminate(&name);
		if (rc)
			goto out;
		if (name.len <= plen || memchr(name.data, '\0', name.len))
			continue;
		slash = strchr((char *)name.data + plen, '/');
		if (slash)
			*slash = '\0';
		if (last && !strcmp(last, (char *)name.data + plen))
			continue;
		free(last);
		last = strdup((char *)name.data + plen);
		if (!last) {
			rc = -ENOMEM;
			goto out;
		}
		if (!store_key_valid(last))
			continue; /* not ours (written by hand): never handed on */
		found++;
		rc = cb(last, arg);
		if (rc) {
			rc = rc < 0 ? rc : 0;
			goto out;
		}
	}
	rc = found ? 0 : -ENOENT;
out:
	free(last);
	free(p);
	util_buf_free(&name);
	json_decref(req);
	json_decref(resp);
	return rc;
}

/*
 * Rename from (a value, or everything below it) to the unused name to, in
 * one txn: every source key must still be at the revision read, the target
 * must not exist, and values are sealed again under their new names.
 */
static int move_once(struct store_etcd *s, const char *from, const char *to)
{
	json_t *kvs = json_array(), *cmp = json_array(), *ops = json_array(), *kv;
	struct util_buf key, val;
	char *kf = full_key(s, from, NULL), *kt = full_key(s, to, NULL), *nk = NULL;
	size_t flen = kf ? strlen(kf) : 0, i;
	int64_t n, rev = 0;
	int rc = -ENOMEM;

	util_buf_init(&key, ETCD_EVENT_MAX, false);
	util_buf_init(&val, STORE_VALUE_MAX, true);
	if (!kvs || !cmp || !ops || !kf || !kt)
		goto out;
	n = count_below(s, kt, NULL);
	if (n) {
		rc = n > 0 ? -EEXIST : (int)n;
		goto out;
	}
	n = count_below(s, kf, &kvs);
	if (n <= 0) {
		rc = n ? (int)n : -ENOENT;
		goto out;
	}
	if (json_array_size(kvs) * 2 + 4 > ETCD_TXN_OPS_MAX) {
		util_err("store etcd: move %s: %zu keys is more than one txn holds", from,
			 json_array_size(kvs));
		rc = -E2BIG;
		goto out;
	}
	json_array_append_new(cmp, json_pack("{s:o, s:s, s:s, s:s}", "key", jb64(kt, strlen(kt)),
					     "target", "CREATE", "result", "EQUAL",
					     "create_revision", "0"));
	json_array_foreach(kvs, i, kv) {
		json_t *value = NULL;

		util_buf_reset(&key);
		util_buf_reset(&val);
		rc = unb64(json_object_get(kv, "key"), &key);
		if (!rc)
			rc = util_buf_terminate(&key);
		if (rc)
			goto out;
		json_array_append_new(cmp, json_pack("{s:O, s:s, s:s, s:o}", "key",
						     json_object_get(kv, "key"), "target", "MOD",
						     "result", "EQUAL", "mod_revision",
						     jstr64(jint(json_object_get(kv,
										 "mod_revision")))));
		free(nk);
		nk = NULL;
		if (asprintf(&nk, "%s%s", kt, (char *)key.data + flen) < 0) {
			nk = NULL;
			rc = -ENOMEM;
			goto out;
		}
		rc = open_value(s, (char *)key.data + s->prefix_len, json_object_get(kv, "value"),
				&val);
		if (!rc)
			rc = seal_value(s, nk + s->prefix_len, val.data, val.len, &value);
		if (rc)
			goto out;
		json_array_append_new(ops, op_put(nk, value));
	}
	json_array_append_new(ops, op_del(kf, false));
	{
		char *sub = NULL;

		if (asprintf(&sub, "%s/", kf) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		json_array_append_new(ops, op_del(sub, true));
		free(sub);
	}
	rc = txn(s, cmp, ops, &rev, from);
	cmp = ops = NULL;
	if (!rc) {
		own_note(s, from, rev);
		own_note(s, to, rev);
		json_array_foreach(kvs, i, kv) {
			util_buf_reset(&key);
			if (unb64(json_object_get(kv, "key"), &key) || util_buf_terminate(&key))
				continue;
			own_note(s, (char *)key.data + s->prefix_len, rev);
			free(nk);
			if (asprintf(&nk, "%s%s", to, (char *)key.data + flen) < 0)
				nk = NULL;
			else
				own_note(s, nk, rev);
		}
	}
out:
	free(nk);
	free(kf);
	free(kt);
	json_decref(kvs);
	json_decref(cmp);
	json_decref(ops);
	util_buf_free(&key);
	util_buf_free(&val);
	return rc;
}

static int etcd_move(struct store *st, const char *from, const char *to)
{
	int rc;

	/* A source changed between the read and the txn: read again. */
	for (int i = 0; i < 5; i++) {
		rc = move_once(to_etcd(st), from, to);
		if (rc != -ECANCELED)
			return rc;
	}
	return -EAGAIN;
}

/* ---- leases and locks ---------------------------------------------------------------- */

static int lease_grant(struct store_etcd *s, int64_t *id)
{
	json_t *req = json_pack("{s:i}", "TTL", s->ttl), *resp = NULL;
	int rc;

	rc = req ? call(s, "/v3/lease/grant", req, &resp) : -ENOMEM;
	json_decref(req);
	if (!rc) {
		*id = jint(json_object_get(resp, "ID"));
		rc = *id ? 0 : -EIO;
	}
	json_decref(resp);
	return rc;
}

/* 0 when the lease lives on; -ENOLINK when it is gone (expired). */
static int lease_keepalive(struct store_etcd *s, int64_t id)
{
	json_t *req = json_pack("{s:o}", "ID", jstr64(id)), *resp = NULL, *r;
	int rc;

	rc = req ? call(s, "/v3/lease/keepalive", req, &resp) : -ENOMEM;
	json_decref(req);
	if (!rc) {
		r = json_object_get(resp, "result");
		rc = jint(json_object_get(r, "TTL")) > 0 ? 0 : -ENOLINK;
	}
	json_decref(resp);
	return rc;
}

static void *keepalive_main(void *arg)
{
	struct store_etcd *s = arg;
	uint64_t last_ok = util_mono_ms();

	pthread_mutex_lock(&s->lock);
	while (!s->keepalive_stop) {
		struct timespec ts;
		int64_t id = s->lease;
		long wait_ms = (long)s->ttl * 1000 / 3;
		int rc;

		pthread_mutex_unlock(&s->lock);
		rc = id ? lease_keepalive(s, id) : 0;
		pthread_mutex_lock(&s->lock);
		if (!rc) {
			last_ok = util_mono_ms();
		} else if (rc == -ENOLINK ||
			   util_mono_ms() - last_ok > (uint64_t)s->ttl * 1000) {
			/* Expired (paused, or unreachable for a whole TTL): the
			 * locks on it are gone; a new lease is granted when the
			 * next lock is taken. Fenced writes already fail. */
			if (s->lease == id && id) {
				util_warn("store etcd: lease %llx lost; its locks are released",
					  (unsigned long long)id);
				s->lease = 0;
			}
		} else {
			wait_ms = 200; /* unreachable for now: ask again soon */
		}
		util_deadline_ms(&ts, wait_ms);
		if (!s->keepalive_stop)
			pthread_cond_timedwait(&s->keepalive_cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* The process's lease (granted on first use, kept alive by a thread). */
static int lease_get(struct store_etcd *s, int64_t *id)
{
	int64_t got = 0;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	*id = s->lease;
	pthread_mutex_unlock(&s->lock);
	if (*id)
		return 0;
	rc = lease_grant(s, &got);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	if (!s->lease)
		s->lease = got;
	else
		got = 0; /* another thread was quicker; ours expires unused */
	*id = s->lease;
	if (!s->keepalive_running) {
		rc = -pthread_create(&s->keepalive, NULL, keepalive_main, s);
		s->keepalive_running = !rc;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int etcd_lock_try(struct store *st, const char *name, struct store_lock **out)
{
	struct store_etcd *s = to_etcd(st);
	struct store_lock *l = NULL;
	json_t *cmp, *ops, *req = NULL, *resp = NULL;
	char *k = NULL;
	int64_t lease = 0;
	int rc;

	if (asprintf(&k, "%s" ETCD_LOCKS "%s", s->prefix, name) < 0)
		return -ENOMEM;
	for (int attempt = 0; attempt < 2; attempt++) {
		rc = lease_get(s, &lease);
		if (rc)
			goto out;
		cmp = json_pack("[{s:o, s:s, s:s, s:s}]", "key", jb64(k, strlen(k)), "target",
				"CREATE", "result", "EQUAL", "create_revision", "0");
		ops = json_pack("[{s:{s:o, s:o, s:o}}]", "request_put", "key", jb64(k, strlen(k)),
				"value", jb64(s->holder, strlen(s->holder)), "lease",
				jstr64(lease));
		req = cmp && ops ? json_pack("{s:o, s:o}", "compare", cmp, "success", ops) : NULL;
		if (!req) {
			json_decref(cmp);
			json_decref(ops);
			rc = -ENOMEM;
			goto out;
		}
		rc = call(s, "/v3/kv/txn", req, &resp);
		json_decref(req);
		req = NULL;
		if (rc == -ENOLINK) {
			/* Our lease expired under us: take a new one. */
			pthread_mutex_lock(&s->lock);
			if (s->lease == lease)
				s->lease = 0;
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		break;
	}
	if (rc)
		goto out;
	if (!json_is_true(json_object_get(resp, "succeeded"))) {
		rc = -EBUSY;
		goto out;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		rc = -ENOMEM;
		goto out;
	}
	l->store = st;
	l->key = k;
	k = NULL;
	/* The txn's revision is the key's create revision: the fencing token. */
	l->rev = jint(json_object_get(json_object_get(resp, "header"), "revision"));
	l->lease = lease;
	*out = l;
	rc = 0;
out:
	json_decref(resp);
	free(k);
	return rc;
}

static void etcd_lock_release(struct store_lock *l)
{
	struct store_etcd *s = to_etcd(l->store);
	json_t *cmp, *ops;

	cmp = json_pack("[{s:o, s:s, s:s, s:o}]", "key", jb64(l->key, strlen(l->key)), "target",
			"CREATE", "result", "EQUAL", "create_revision", jstr64(l->rev));
	ops = json_pack("[o]", op_del(l->key, false));
	/* Unfenced on purpose: it compares its own revision. If it fails the
	 * lease ends the lock within a TTL anyway. */
	{
		struct store_lock *fence = store_fence_get();

		store_fence_set(NULL);
		(void)!txn(s, cmp, ops, NULL, l->key + s->prefix_len);
		store_fence_set(fence == l ? NULL : fence);
	}
	free(l->key);
	free(l);
}

static bool etcd_reachable(struct store *st)
{
	return atomic_load(&to_etcd(st)->reachable);
}

/* ---- watch ------------------------------------------------------------------------------ */

struct watch_ctx {
	struct store_etcd *s;
	struct util_buf line;
	int64_t next_rev;     /* first revision not yet delivered */
	int64_t compacted;    /* > 0: history before it is gone */
	bool created;
	bool was_down;
	uint64_t started;     /* when the request went out (monotonic ms) */
};

static void deliver(struct store_etcd *s, enum store_event_type t, const char *rel,
		    const void *v, size_t len, int64_t rev)
{
	struct store_event ev = {.type = t, .key = rel, .value = v, .len = len, .rev = rev};

	s->watch_cb(&ev, s->watch_arg);
}

static void watch_event(struct watch_ctx *w, const json_t *e)
{
	struct store_etcd *s = w->s;
	const json_t *kv = json_object_get(e, "kv");
	bool del = json_is_string(json_object_get(e, "type")) &&
		   !strcmp(json_string_value(json_object_get(e, "type")), "DELETE");
	int64_t rev = jint(json_object_get(kv, "mod_revision"));
	struct util_buf key, val;

	util_buf_init(&key, ETCD_EVENT_MAX, false);
	util_buf_init(&val, STORE_VALUE_MAX, true);
	if (rev >= w->next_rev)
		w->next_rev = rev + 1;
	if (unb64(json_object_get(kv, "key"), &key) || util_buf_terminate(&key) ||
	    key.len <= s->prefix_len || memchr(key.data, '\0', key.len))
		goto out;
	{
		const char *rel = (const char *)key.data + s->prefix_len;

		if (!store_key_valid(rel) || !strncmp(rel, ETCD_LOCKS, strlen(ETCD_LOCKS)))
			goto out;
		/* Our own write (or older than it): nothing to learn. */
		if (etcd_superseded(&s->base, rel, rev))
			goto out;
		if (del) {
			deliver(s, STORE_EVENT_DEL, rel, NULL, 0, rev);
		} else if (!open_value(s, rel, json_object_get(kv, "value"), &val)) {
			deliver(s, STORE_EVENT_PUT, rel, val.data, val.len, rev);
		}
	}
out:
	util_buf_free(&key);
	util_buf_free(&val);
}

static void watch_message(struct watch_ctx *w, const char *p, size_t n)
{
	json_t *o = json_loadb(p, n, 0, NULL), *r, *evs, *e;
	size_t i;

	r = json_object_get(o, "result");
	if (!r) {
		json_decref(o);
		return;
	}
	if (json_is_true(json_object_get(r, "created")) && !w->created) {
		w->created = true;
		atomic_store(&w->s->reachable, true);
		if (w->was_down) {
			w->was_down = false;
			deliver(w->s, STORE_EVENT_UP, NULL, NULL, 0, 0);
		}
	}
	if (jint(json_object_get(r, "compact_revision")) > 0)
		w->compacted = jint(json_object_get(r, "compact_revision"));
	evs = json_object_get(r, "events");
	json_array_foreach(evs, i, e)
		watch_event(w, e);
	json_decref(o);
}

static size_t on_watch(char *p, size_t size, size_t n, void *arg)
{
	struct watch_ctx *w = arg;
	size_t len = size * n;
	unsigned char *nl;

	if (util_buf_append(&w->line, p, len))
		return 0;
	/* The gateway writes one JSON message per line. */
	while ((nl = memchr(w->line.data, '\n', w->line.len))) {
		size_t one = (size_t)(nl - w->line.data);

		watch_message(w, (const char *)w->line.data, one);
		memmove(w->line.data, nl + 1, w->line.len - one - 1);
		w->line.len -= one + 1;
	}
	return w->compacted ? 0 : len;
}

static int on_watch_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
			     curl_off_t un)
{
	struct watch_ctx *w = arg;

	if (atomic_load(&w->s->watch_stop))
		return 1;
	/*
	 * A member that is still starting (no leader yet) takes the request
	 * and may never answer it: without "created" in time, try the next
	 * endpoint, or the node would neither follow nor notice the store.
	 */
	return !w->created && util_mono_ms() - w->started > ETCD_TIMEOUT_MS ? 1 : 0;
}

/* The store's current revision (header of an empty range). */
static int current_revision(struct store_etcd *s, int64_t *rev)
{
	json_t *req = json_pack("{s:o, s:b}", "key", jb64(s->prefix, s->prefix_len),
				"count_only", 1),
	       *resp = NULL;
	int rc;

	rc = req ? call(s, "/v3/kv/range", req, &resp) : -ENOMEM;
	if (!rc)
		*rev = jint(json_object_get(json_object_get(resp, "header"), "revision"));
	json_decref(req);
	json_decref(resp);
	return rc;
}

/* Sleep up to ms, or less when the watch is being stopped. */
static void watch_pause(struct store_etcd *s, long ms)
{
	struct timespec ts;

	util_deadline_ms(&ts, ms);
	pthread_mutex_lock(&s->watch_lock);
	if (!atomic_load(&s->watch_stop))
		pthread_cond_timedwait(&s->watch_cond, &s->watch_lock, &ts);
	pthread_mutex_unlock(&s->watch_lock);
}

static void *watch_main(void *arg)
{
	struct store_etcd *s = arg;
	struct watch_ctx w = {.s = s, .next_rev = s->open_rev + 1};
	CURL *h = curl_easy_init();
	size_t failures = 0;

	util_buf_init(&w.line, ETCD_EVENT_MAX * 2, true);
	while (h && !atomic_load(&s->watch_stop)) {
		struct curl_slist *hdrs = headers(s);
		json_t *req;
		char *body = NULL, url[512];
		size_t ep = atomic_load(&s->cur) % s->nurls;

		req = json_pack("{s:{s:o, s:o, s:o}}", "create_request", "key",
				jb64(s->watch_prefix, strlen(s->watch_prefix)), "range_end",
				jrange_end(s->watch_prefix), "start_revision", jstr64(w.next_rev));
		body = req ? json_dumps(req, JSON_COMPACT) : NULL;
		json_decref(req);
		if (!body || !hdrs) {
			free(body);
			curl_slist_free_all(hdrs);
			watch_pause(s, 1000);
			continue;
		}
		snprintf(url, sizeof(url), "%s/v3/watch", s->urls[ep]);
		handle_setup(s, h, url, body, strlen(body), hdrs, 0L);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_watch);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &w);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_watch_progress);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, &w);
		w.created = false;
		w.started = util_mono_ms();
		w.compacted = 0;
		util_buf_reset(&w.line);
		(void)curl_easy_perform(h);
		curl_slist_free_all(hdrs);
		free(body);
		if (atomic_load(&s->watch_stop))
			break;
		if (w.compacted) {
			int64_t rev = 0;

			/* History is gone: read everything again, then follow
			 * from where that reading stands. */
			util_warn("store etcd: watch: history compacted at %lld; re-reading",
				  (long long)w.compacted);
			if (current_revision(s, &rev)) {
				watch_pause(s, 500);
				continue;
			}
			deliver(s, STORE_EVENT_RESYNC, NULL, NULL, 0, rev);
			w.next_rev = rev + 1;
			continue;
		}
		if (w.created) {
			failures = 0;
			continue; /* the stream ended (member restart): resume at once */
		}
		/* This endpoint did not answer: the next one, and after a full
		 * round without an answer the store is down for us. */
		atomic_store(&s->cur, (ep + 1) % s->nurls);
		if (++failures >= s->nurls && !w.was_down) {
			w.was_down = true;
			atomic_store(&s->reachable, false);
			deliver(s, STORE_EVENT_DOWN, NULL, NULL, 0, 0);
		}
		watch_pause(s, failures >= s->nurls ? 500 : 50);
	}
	util_buf_free(&w.line);
	curl_easy_cleanup(h);
	return NULL;
}

static int etcd_watch_start(struct store *st, const char *rel, store_watch_cb cb, void *arg)
{
	struct store_etcd *s = to_etcd(st);
	int rc;

	if (s->watching)
		return -EBUSY;
	s->watch_prefix = *rel ? full_key(s, rel, NULL) : strdup(s->prefix);
	if (!s->watch_prefix)
		return -ENOMEM;
	s->watch_cb = cb;
	s->watch_arg = arg;
	atomic_store(&s->watch_stop, false);
	rc = -pthread_create(&s->watcher, NULL, watch_main, s);
	if (rc) {
		free(s->watch_prefix);
		s->watch_prefix = NULL;
		return rc;
	}
	s->watching = true;
	return 0;
}

static void etcd_watch_stop(struct store *st)
{
	struct store_etcd *s = to_etcd(st);

	if (!s->watching)
		return;
	pthread_mutex_lock(&s->watch_lock);
	atomic_store(&s->watch_stop, true);
	pthread_cond_broadcast(&s->watch_cond);
	pthread_mutex_unlock(&s->watch_lock);
	pthread_join(s->watcher, NULL);
	s->watching = false;
	free(s->watch_prefix);
	s->watch_prefix = NULL;
}

/* ---- open and close ---------------------------------------------------------------------- */

static void etcd_close(struct store *st)
{
	struct store_etcd *s = to_etcd(st);
	int64_t lease;

	etcd_watch_stop(st);
	pthread_mutex_lock(&s->lock);
	s->keepalive_stop = true;
	pthread_cond_broadcast(&s->keepalive_cond);
	lease = s->lease;
	pthread_mutex_unlock(&s->lock);
	if (s->keepalive_running)
		pthread_join(s->keepalive, NULL);
	if (lease) {
		/* Give our locks up now rather than a TTL later. */
		json_t *req = json_pack("{s:o}", "ID", jstr64(lease)), *resp = NULL;

		if (req && !call(s, "/v3/lease/revoke", req, &resp))
			json_decref(resp);
		json_decref(req);
	}
	for (size_t i = 0; i < s->nhandles; i++)
		curl_easy_cleanup(s->handles[i]);
	for (size_t i = 0; i < OWN_BUCKETS; i++) {
		struct own_write *w, *next;

		for (w = s->own[i]; w; w = next) {
			next = w->next;
			free(w);
		}
	}
	for (size_t i = 0; i < s->nurls; i++)
		free(s->urls[i]);
	free(s->urls);
	free(s->prefix);
	free(s->ca_bundle);
	free(s->cert);
	free(s->key);
	free(s->user);
	util_secret_str_free(s->password);
	util_secret_str_free(s->token);
	util_wipe(s->kek, sizeof(s->kek));
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->own_lock);
	pthread_mutex_destroy(&s->watch_lock);
	pthread_cond_destroy(&s->watch_cond);
	pthread_cond_destroy(&s->keepalive_cond);
	free(s);
}

static const struct store_ops etcd_ops = {
	.name = "etcd",
	.get = etcd_get,
	.put = etcd_put,
	.del = etcd_del,
	.list = etcd_list,
	.move = etcd_move,
	.close = etcd_close,
	.get_rev = etcd_get_rev,
	.put_if = etcd_put_if,
	.watch_start = etcd_watch_start,
	.watch_stop = etcd_watch_stop,
	.superseded = etcd_superseded,
	.lock_try = etcd_lock_try,
	.lock_release = etcd_lock_release,
	.reachable = etcd_reachable,
	.get_many = etcd_get_many,
};

/*
 * Read a secret file that only its owner (root, or the daemon's user) may
 * read: a key or a password readable by others is refused, not used.
 */
static int read_private_file(const char *path, struct util_buf *out, const char *what,
			     char *err, size_t errlen)
{
	struct stat st;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "%s %s: not a regular file", what, path);
		return -EINVAL;
	}
	if ((st.st_mode & 077) || (st.st_uid != 0 && st.st_uid != geteuid())) {
		close(fd);
		snprintf(err, errlen,
			 "%s %s: readable by others (mode %03o, owner %u): make it 0600 and owned "
			 "by root",
			 what, path, (unsigned)(st.st_mode & 0777), (unsigned)st.st_uid);
		return -EACCES;
	}
	rc = 0;
	for (;;) {
		char buf[1024];
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : 0;
			break;
		}
		rc = util_buf_append(out, buf, (size_t)n);
		util_wipe(buf, sizeof(buf));
		if (rc)
			break;
	}
	close(fd);
	if (rc)
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(-rc));
	return rc;
}

static void trim(struct util_buf *b)
{
	while (b->len && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r' ||
			  b->data[b->len - 1] == ' ' || b->data[b->len - 1] == '\t'))
		b->len--;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The key encryption key: 32 bytes as base64 (openssl rand -base64 32) or hex. */
static int load_kek(struct store_etcd *s, const char *path, char *err, size_t errlen)
{
	struct util_buf f, k;
	int rc;

	util_buf_init(&f, 4096, true);
	util_buf_init(&k, 4096, true);
	rc = read_private_file(path, &f, "key_encryption_key_file", err, errlen);
	if (rc)
		goto out;
	trim(&f);
	rc = -EINVAL;
	if (f.len == 2 * CRYPTO_SEAL_KEY_LEN) {
		for (size_t i = 0; i < CRYPTO_SEAL_KEY_LEN; i++) {
			int hi = hexval(f.data[2 * i]), lo = hexval(f.data[2 * i + 1]);

			if (hi < 0 || lo < 0)
				break;
			s->kek[i] = (unsigned char)(hi << 4 | lo);
			if (i == CRYPTO_SEAL_KEY_LEN - 1)
				rc = 0;
		}
	}
	if (rc && !crypto_b64_decode((const char *)f.data, f.len, &k) &&
	    k.len == CRYPTO_SEAL_KEY_LEN) {
		memcpy(s->kek, k.data, CRYPTO_SEAL_KEY_LEN);
		rc = 0;
	}
	if (rc)
		snprintf(err, errlen,
			 "key_encryption_key_file %s: not 32 bytes in base64 or hex (make one "
			 "with: openssl rand -base64 32)",
			 path);
out:
	util_buf_free(&f);
	util_buf_free(&k);
	return rc;
}

static int parse_spec(struct store_etcd *s, const char *spec, bool tls, char *err,
		      size_t errlen)
{
	const char *slash = strchr(spec, '/');
	char *hosts = NULL, *save = NULL, *tok;
	int rc = -EINVAL;

	if (!slash || slash == spec || !slash[1] || !store_key_valid(slash + 1)) {
		snprintf(err, errlen,
			 "store etcd://%s: expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX with a "
			 "PREFIX of letters, digits and . _ - (segments separated by /)",
			 spec);
		return -EINVAL;
	}
	if (asprintf(&s->prefix, "%s/", slash + 1) < 0) {
		s->prefix = NULL;
		return -ENOMEM;
	}
	s->prefix_len = strlen(s->prefix);
	hosts = strndup(spec, (size_t)(slash - spec));
	if (!hosts)
		return -ENOMEM;
	for (tok = strtok_r(hosts, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const char *colon = strrchr(tok, ':');
		char **v;

		if (!colon || colon == tok || !colon[1] || strspn(colon + 1, "0123456789") !=
								   strlen(colon + 1) ||
		    atoi(colon + 1) < 1 || atoi(colon + 1) > 65535 ||
		    strcspn(tok, "/@?#% ") != strlen(tok)) {
			snprintf(err, errlen, "store etcd://%s: endpoint \"%s\" is not HOST:PORT",
				 spec, tok);
			goto out;
		}
		v = realloc(s->urls, (s->nurls + 1) * sizeof(*v));
		if (!v) {
			rc = -ENOMEM;
			goto out;
		}
		s->urls = v;
		if (asprintf(&s->urls[s->nurls], "%s://%s", tls ? "https" : "http", tok) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		s->nurls++;
	}
	rc = s->nurls ? 0 : -EINVAL;
	if (rc)
		snprintf(err, errlen, "store etcd://%s: no endpoint", spec);
out:
	free(hosts);
	return rc;
}

static char *dup_opt(const char *v)
{
	return v && *v ? strdup(v) : NULL;
}

int store_etcd_open(const char *spec, const struct store_opts *o, struct store **out,
		    char *err, size_t errlen)
{
	struct store_etcd *s;
	struct util_buf pw;
	int rc;

	*out = NULL;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		snprintf(err, errlen, "store etcd://%s: libcurl failed to initialise", spec);
		return -EIO;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base.ops = &etcd_ops;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->own_lock, NULL);
	pthread_mutex_init(&s->watch_lock, NULL);
	pthread_cond_init(&s->watch_cond, NULL);
	pthread_cond_init(&s->keepalive_cond, NULL);
	atomic_store(&s->reachable, true);
	s->ttl = o->lease_ttl > 0 ? o->lease_ttl : STORE_LEASE_TTL_DEFAULT;
	{
		char host[256] = "";

		(void)gethostname(host, sizeof(host) - 1);
		snprintf(s->holder, sizeof(s->holder), "%s %ld", host, (long)getpid());
	}
	util_buf_init(&pw, 4096, true);
	rc = parse_spec(s, spec, o->ca_bundle || o->cert, err, errlen);
	if (rc)
		goto fail;
	s->ca_bundle = dup_opt(o->ca_bundle);
	s->cert = dup_opt(o->cert);
	s->key = dup_opt(o->key);
	s->user = dup_opt(o->user);
	if (!o->key_encryption_key_file || !*o->key_encryption_key_file) {
		snprintf(err, errlen,
			 "store etcd://%s: [etcd] key_encryption_key_file is required (private "
			 "keys are encrypted at rest; make one with: openssl rand -base64 32)",
			 spec);
		rc = -EINVAL;
		goto fail;
	}
	rc = load_kek(s, o->key_encryption_key_file, err, errlen);
	if (rc)
		goto fail;
	if (s->user) {
		if (!o->password_file || !*o->password_file) {
			snprintf(err, errlen, "store etcd://%s: [etcd] user needs password_file",
				 spec);
			rc = -EINVAL;
			goto fail;
		}
		rc = read_private_file(o->password_file, &pw, "password_file", err, errlen);
		if (rc)
			goto fail;
		trim(&pw);
		rc = util_buf_terminate(&pw);
		s->password = rc ? NULL : strdup((const char *)pw.data);
		if (!s->password) {
			rc = -ENOMEM;
			goto fail;
		}
		rc = authenticate(s);
		if (rc) {
			snprintf(err, errlen, "store etcd://%s: %s", spec,
				 rc == -EHOSTUNREACH ? "no endpoint answers"
						     : "authentication refused (user, password)");
			goto fail;
		}
	}
	rc = current_revision(s, &s->open_rev);
	if (rc) {
		snprintf(err, errlen, "store etcd://%s: %s", spec,
			 rc == -EHOSTUNREACH ? "no endpoint answers (is etcd running? TLS and "
					       "ca_bundle right?)"
			 : rc == -EACCES ? "access refused (set [etcd] user and password_file)"
					 : strerror(-rc));
		goto fail;
	}
	util_buf_free(&pw);
	*out = &s->base;
	return 0;
fail:
	util_buf_free(&pw);
	etcd_close(&s->base);
	return rc;
}
