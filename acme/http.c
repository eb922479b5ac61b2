/* SPDX-License-Identifier: MIT */
/*
 * HTTPS transport for the ACME client. One CURLSH per client shares the
 * connection cache, DNS cache and TLS sessions between the worker threads,
 * so concurrent issuances reuse connections; the CA bundle is read once and
 * handed to every request as a blob. Every request is bounded: body size
 * (write callback and CURLOPT_MAXFILESIZE), connect and total time, and a
 * low-speed cut-off. TLS verification is never relaxed, and only https is
 * allowed, without redirects (RFC 8555 6.1).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "acme/acme_int.h"
#include "certfs_version.h"

#define ACME_CA_BUNDLE_MAX (8 * 1024 * 1024)
#define ACME_HEADER_MAX 8192

struct acme_http {
	CURLSH *share;
	pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
	struct util_buf ca;
	bool has_ca;
	long timeout_ms;
	atomic_bool cancelled;   /* shutdown: stop every transfer */
	const atomic_bool *cancel_flag; /* the caller's, or NULL */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *e, curl_lock_data d, curl_lock_access a, void *arg)
{
	struct acme_http *h = arg;

	if ((int)d >= 0 && d < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&h->locks[d]);
}

static void share_unlock(CURL *e, curl_lock_data d, void *arg)
{
	struct acme_http *h = arg;

	if ((int)d >= 0 && d < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&h->locks[d]);
}

static int read_file(const char *path, struct util_buf *b, char *detail, size_t dlen)
{
	FILE *f = fopen(path, "rbe");
	char chunk[8192];
	size_t n;
	int rc = 0;

	if (!f) {
		rc = -errno;
		snprintf(detail, dlen, "CA bundle %s: %s", path, strerror(-rc));
		return rc;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		rc = util_buf_append(b, chunk, n);
		if (rc) {
			snprintf(detail, dlen, "CA bundle %s: %s", path,
				 rc == -EFBIG ? "file too large" : strerror(-rc));
			goto out;
		}
	}
	if (ferror(f)) {
		rc = -EIO;
		snprintf(detail, dlen, "CA bundle %s: read error", path);
		goto out;
	}
	if (b->len == 0) {
		rc = -EINVAL;
		snprintf(detail, dlen, "CA bundle %s is empty", path);
		goto out;
	}
	rc = 0;
out:
	fclose(f);
	return rc;
}

int acme_http_new(const char *ca_bundle, unsigned int request_timeout_ms,
		  struct acme_http **out, char *detail, size_t dlen)
{
	struct acme_http *h = NULL;
	int rc;
	size_t i;

	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		snprintf(detail, dlen, "libcurl initialisation failed");
		return -ENOMEM;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&h->locks[i], NULL);
	util_buf_init(&h->ca, ACME_CA_BUNDLE_MAX, false);
	h->timeout_ms = request_timeout_ms ? (long)request_timeout_ms : 30000;
	if (ca_bundle && *ca_bundle) {
		rc = read_file(ca_bundle, &h->ca, detail, dlen);
		if (rc)
			goto out;
		h->has_ca = true;
	}
	h->share = curl_share_init();
	if (!h->share) {
		rc = -ENOMEM;
		goto out;
	}
	if (curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock) ||
	    curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
	    curl_share_setopt(h->share, CURLSHOPT_USERDATA, h) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT)) {
		snprintf(detail, dlen, "libcurl refused to share connections");
		rc = -ENOMEM;
		goto out;
	}
	*out = h;
	h = NULL;
	rc = 0;
out:
	acme_http_free(h);
	return rc;
}

void acme_http_free(struct acme_http *h)
{
	if (!h)
		return;
	if (h->share)
		curl_share_cleanup(h->share);
	for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&h->locks[i]);
	util_buf_free(&h->ca);
	free(h);
}

void acme_http_cancel(struct acme_http *h)
{
	atomic_store(&h->cancelled, true);
}

void acme_http_set_cancel(struct acme_http *h, const atomic_bool *flag)
{
	h->cancel_flag = flag;
}

bool acme_http_cancelled(struct acme_http *h)
{
	return atomic_load(&h->cancelled) || (h->cancel_flag && atomic_load(h->cancel_flag));
}

/*
 * libcurl calls this often while data moves and about once a second when
 * nothing does (a CA that accepted and never answers): a non-zero return
 * ends the transfer with CURLE_ABORTED_BY_CALLBACK.
 */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return acme_http_cancelled(arg);
}

void acme_response_init(struct acme_response *r)
{
	memset(r, 0, sizeof(*r));
	util_buf_init(&r->body, ACME_BODY_MAX, false);
}

void acme_response_clear(struct acme_response *r)
{
	if (!r)
		return;
	util_buf_free(&r->body);
	free(r->location);
	free(r->content_type);
	free(r->retry_after);
	for (size_t i = 0; i < r->nlinks; i++)
		free(r->links[i]);
	acme_response_init(r);
}

struct xfer {
	struct acme_response *r;
	bool too_big;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;

	if (util_buf_append(&x->r->body, p, len)) {
		x->too_big = true;
		return 0; /* abort the transfer */
	}
	return len;
}

static char *trimmed_dup(const char *v, size_t n)
{
	while (n && (v[0] == ' ' || v[0] == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return strndup(v, n);
}

static void replace(char **slot, char *v)
{
	free(*slot);
	*slot = v;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	struct acme_response *r = x->r;
	size_t len = size * n;
	const char *colon;
	size_t nl;

	if (len > ACME_HEADER_MAX)
		return len; /* ignore absurd header lines */
	if (len >= 5 && !strncmp(p, "HTTP/", 5)) {
		/* A new response (e.g. after 100 Continue): forget the old headers. */
		replace(&r->location, NULL);
		replace(&r->content_type, NULL);
		replace(&r->retry_after, NULL);
		for (size_t i = 0; i < r->nlinks; i++)
			free(r->links[i]);
		r->nlinks = 0;
		r->has_nonce = false;
		return len;
	}
	colon = memchr(p, ':', len);
	if (!colon)
		return len;
	nl = (size_t)(colon - p);
	colon++;
#define IS(name) (nl == strlen(name) && !strncasecmp(p, name, nl))
	if (IS("location")) {
		replace(&r->location, trimmed_dup(colon, len - nl - 1));
	} else if (IS("content-type")) {
		replace(&r->content_type, trimmed_dup(colon, len - nl - 1));
	} else if (IS("retry-after")) {
		replace(&r->retry_after, trimmed_dup(colon, len - nl - 1));
	} else if (IS("link")) {
		if (r->nlinks < sizeof(r->links) / sizeof(r->links[0])) {
			char *v = trimmed_dup(colon, len - nl - 1);

			if (v)
				r->links[r->nlinks++] = v;
		}
	} else if (IS("replay-nonce")) {
		char *v = trimmed_dup(colon, len - nl - 1);

		/* 6.5.1: the nonce is base64url; anything else is ignored. */
		r->has_nonce = v && *v && strlen(v) < sizeof(r->nonce) &&
			       acme_token_ok(v);
		if (r->has_nonce)
			snprintf(r->nonce, sizeof(r->nonce), "%s", v);
		free(v);
	}
#undef IS
	return len;
}

int acme_http_request(struct acme_http *h, const char *method, const char *url,
		      const void *body, size_t len, const char *accept,
		      struct acme_response *r, struct acme_problem *prob)
{
	CURL *e = NULL;
	struct curl_slist *hdrs = NULL, *tmp;
	struct curl_blob blob;
	struct xfer x = { .r = r };
	char errbuf[CURL_ERROR_SIZE] = "";
	char line[256];
	CURLcode cc;
	long status = 0;
	int rc;

	acme_response_clear(r);
	if (acme_http_cancelled(h)) {
		acme_problem_clear(prob);
		snprintf(prob->detail, sizeof(prob->detail), "%s: cancelled (shutting down)", url);
		rc = -ECANCELED;
		goto out;
	}
	e = curl_easy_init();
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	if (accept) {
		snprintf(line, sizeof(line), "Accept: %s", accept);
		if (!(tmp = curl_slist_append(hdrs, line))) {
			rc = -ENOMEM;
			goto out;
		}
		hdrs = tmp;
	}
	if (!strcmp(method, "POST")) {
		/* RFC 8555 6.2: JWS requests use application/jose+json. */
		if (!(tmp = curl_slist_append(hdrs, "Content-Type: application/jose+json"))) {
			rc = -ENOMEM;
			goto out;
		}
		hdrs = tmp;
		if (!(tmp = curl_slist_append(hdrs, "Expect:"))) {
			rc = -ENOMEM;
			goto out;
		}
		hdrs = tmp;
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_SHARE, h->share);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->has_ca) {
		blob.data = h->ca.data;
		blob.len = h->ca.len;
		blob.flags = CURL_BLOB_NOCOPY;
		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
	}
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->timeout_ms < 10000 ? h->timeout_ms : 10000L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 15L);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE, (long)ACME_BODY_MAX);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "certfs/" CERTFS_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, h);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	if (!strcmp(method, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(method, "POST")) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	cc = curl_easy_perform(e);
	if (cc != CURLE_OK) {
		acme_problem_clear(prob);
		if (cc == CURLE_ABORTED_BY_CALLBACK) {
			snprintf(prob->detail, sizeof(prob->detail), "%s: cancelled (shutting down)",
				 url);
			rc = -ECANCELED;
			goto out;
		}
		if (x.too_big || cc == CURLE_FILESIZE_EXCEEDED)
			snprintf(prob->detail, sizeof(prob->detail),
				 "%s: response larger than %d bytes", url, ACME_BODY_MAX);
		else
			snprintf(prob->detail, sizeof(prob->detail), "%s: %s", url,
				 errbuf[0] ? errbuf : curl_easy_strerror(cc));
		rc = (cc == CURLE_OPERATION_TIMEDOUT) ? -ETIMEDOUT : -EIO;
		goto out;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	r->status = (int)status;
	rc = 0;
out:
	curl_slist_free_all(hdrs);
	if (e)
		curl_easy_cleanup(e);
	return rc;
}

int acme_url_resolve(const char *base, const char *ref, char **out)
{
	CURLU *u = curl_url();
	char *s = NULL;
	int rc = -EINVAL;

	*out = NULL;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, base, 0) ||
	    curl_url_set(u, CURLUPART_URL, ref, 0) ||
	    curl_url_get(u, CURLUPART_URL, &s, 0))
		goto out;
	if (strncmp(s, "https://", 8) || strlen(s) > ACME_URL_MAX)
		goto out;
	*out = strdup(s);
	rc = *out ? 0 : -ENOMEM;
out:
	curl_free(s);
	curl_url_cleanup(u);
	return rc;
}
