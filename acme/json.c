/* SPDX-License-Identifier: MIT */
/*
 * Parsers for what an ACME server sends: the directory (RFC 8555 7.1.1),
 * orders (7.1.3), authorizations and challenges (7.1.4, 8), problem
 * documents (6.7), renewal information (RFC 9773 4.2) and the Retry-After
 * and Link headers. The server is not trusted: every member is type-checked,
 * arrays are bounded, and a wrong type is a clean -EINVAL, never a crash.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "acme/acme_int.h"

#define ACME_ERR_PREFIX "urn:ietf:params:acme:error:"

static void set_detail(char *detail, size_t dlen, const char *fmt, ...)
	UTIL_PRINTF(3, 4);

static void set_detail(char *detail, size_t dlen, const char *fmt, ...)
{
	va_list ap;

	if (!detail || !dlen)
		return;
	va_start(ap, fmt);
	vsnprintf(detail, dlen, fmt, ap);
	va_end(ap);
}

static json_t *load(const void *body, size_t len, char *detail, size_t dlen, const char *what)
{
	json_error_t jerr;
	json_t *j;

	if (!body || len == 0 || len > ACME_BODY_MAX) {
		set_detail(detail, dlen, "%s: empty or oversized response (%zu bytes)", what, len);
		return NULL;
	}
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		set_detail(detail, dlen, "%s: response is not JSON: %s", what, jerr.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		set_detail(detail, dlen, "%s: response is not a JSON object", what);
		json_decref(j);
		return NULL;
	}
	return j;
}

/* A member that must be a string, if present; NULL when absent or mistyped. */
static const char *get_str(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int dup_str(const json_t *obj, const char *key, bool required, char **out,
		   char *detail, size_t dlen, const char *what)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required) {
			set_detail(detail, dlen, "%s: \"%s\" is missing", what, key);
			return -EINVAL;
		}
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > ACME_URL_MAX ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		set_detail(detail, dlen, "%s: \"%s\" is not a usable string", what, key);
		return -EINVAL;
	}
	*out = strdup(json_string_value(v));
	return *out ? 0 : -ENOMEM;
}

/* URLs must be absolute http(s) (RFC 8555 7.1: resources are URLs). */
static int dup_url(const json_t *obj, const char *key, bool required, char **out,
		   char *detail, size_t dlen, const char *what)
{
	int rc = dup_str(obj, key, required, out, detail, dlen, what);

	if (rc == 0 && *out && strncmp(*out, "https://", 8) && strncmp(*out, "http://", 7)) {
		set_detail(detail, dlen, "%s: \"%s\" is not an http(s) URL", what, key);
		free(*out);
		*out = NULL;
		rc = -EINVAL;
	}
	return rc;
}

void acme_strv_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static const char *const status_names[] = {
	[ACME_STATUS_UNKNOWN] = "unknown",
	[ACME_STATUS_PENDING] = "pending",
	[ACME_STATUS_READY] = "ready",
	[ACME_STATUS_PROCESSING] = "processing",
	[ACME_STATUS_VALID] = "valid",
	[ACME_STATUS_INVALID] = "invalid",
	[ACME_STATUS_EXPIRED] = "expired",
	[ACME_STATUS_DEACTIVATED] = "deactivated",
	[ACME_STATUS_REVOKED] = "revoked",
};

enum acme_status acme_status_parse(const char *s)
{
	if (!s)
		return ACME_STATUS_UNKNOWN;
	for (size_t i = 1; i < sizeof(status_names) / sizeof(status_names[0]); i++)
		if (!strcmp(s, status_names[i]))
			return (enum acme_status)i;
	return ACME_STATUS_UNKNOWN;
}

const char *acme_status_name(enum acme_status s)
{
	if ((size_t)s >= sizeof(status_names) / sizeof(status_names[0]))
		return "unknown";
	return status_names[s];
}

/* ---- problem documents (RFC 8555 6.7, RFC 7807) ------------------------ */

void acme_problem_clear(struct acme_problem *p)
{
	if (p)
		memset(p, 0, sizeof(*p));
}

bool acme_problem_is(const struct acme_problem *p, const char *short_type)
{
	size_t n = strlen(ACME_ERR_PREFIX);

	return p && short_type && !strncmp(p->type, ACME_ERR_PREFIX, n) &&
	       !strcmp(p->type + n, short_type);
}

const char *acme_problem_sentence(const struct acme_problem *p, char *out, size_t len)
{
	if (!out || !len)
		return out;
	if (!p) {
		snprintf(out, len, "acme: unknown error");
	} else if (p->type[0] && p->detail[0]) {
		snprintf(out, len, "acme: %s: %s", p->type, p->detail);
	} else if (p->type[0]) {
		snprintf(out, len, "acme: %s (HTTP %d)", p->type, p->status);
	} else if (p->detail[0]) {
		snprintf(out, len, "acme: %s", p->detail);
	} else if (p->status) {
		snprintf(out, len, "acme: HTTP status %d", p->status);
	} else {
		snprintf(out, len, "acme: unknown error");
	}
	return out;
}

/* Copy printable text, replacing control bytes, truncating with "...". */
static void copy_text(char *dst, size_t dlen, const char *src)
{
	size_t i, j = 0;

	if (!dlen)
		return;
	for (i = 0; src && src[i] && j + 1 < dlen; i++)
		dst[j++] = ((unsigned char)src[i] < 0x20 || src[i] == 0x7f) ? ' ' : src[i];
	dst[j] = '\0';
	if (src && src[i] && dlen > 4)
		memcpy(dst + dlen - 4, "...", 4);
}

static void append_text(char *dst, size_t dlen, const char *src)
{
	size_t n = strnlen(dst, dlen);

	if (n + 1 < dlen)
		copy_text(dst + n, dlen - n, src);
}

void acme_problem_parse(const void *body, size_t len, int status, struct acme_problem *p)
{
	json_t *j = NULL, *subs;
	const char *type, *detail;
	size_t i;
	json_t *sp;

	acme_problem_clear(p);
	p->status = status;
	if (body && len && len <= ACME_BODY_MAX)
		j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(j)) {
		snprintf(p->detail, sizeof(p->detail), "the server answered HTTP status %d", status);
		goto out;
	}
	type = get_str(j, "type");
	detail = get_str(j, "detail");
	copy_text(p->type, sizeof(p->type), type ? type : "");
	copy_text(p->detail, sizeof(p->detail), detail ? detail : "");
	if (!detail && !type)
		snprintf(p->detail, sizeof(p->detail), "the server answered HTTP status %d", status);
	/* 6.7.1: subproblems carry their own type, detail and identifier. */
	subs = json_object_get(j, "subproblems");
	if (json_is_array(subs)) {
		json_array_foreach(subs, i, sp) {
			const char *st, *sd, *iv = NULL;
			json_t *id;

			if (i >= 10) {
				append_text(p->detail, sizeof(p->detail), "; ...");
				break;
			}
			if (!json_is_object(sp))
				continue;
			st = get_str(sp, "type");
			sd = get_str(sp, "detail");
			id = json_object_get(sp, "identifier");
			if (json_is_object(id))
				iv = get_str(id, "value");
			append_text(p->detail, sizeof(p->detail), "; ");
			if (iv) {
				append_text(p->detail, sizeof(p->detail), iv);
				append_text(p->detail, sizeof(p->detail), ": ");
			}
			if (st) {
				append_text(p->detail, sizeof(p->detail),
					    strncmp(st, ACME_ERR_PREFIX, strlen(ACME_ERR_PREFIX)) ?
						    st : st + strlen(ACME_ERR_PREFIX));
				if (sd)
					append_text(p->detail, sizeof(p->detail), ": ");
			}
			if (sd)
				append_text(p->detail, sizeof(p->detail), sd);
		}
	}
out:
	json_decref(j);
}

/* Problem object embedded in an order/challenge "error" member. */
static void embedded_problem(const json_t *v, struct acme_problem *p, bool *has)
{
	char *s;

	*has = false;
	if (!json_is_object(v))
		return;
	s = json_dumps(v, JSON_COMPACT);
	if (!s)
		return;
	acme_problem_parse(s, strlen(s), 0, p);
	free(s);
	*has = true;
}

/* ---- Retry-After (RFC 9110 10.2.3) ------------------------------------- */

int acme_retry_after_parse(const char *value, time_t now, time_t *out)
{
	const char *s = value;
	long long delta;
	char *end;

	if (!value)
		return -EINVAL;
	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return -EINVAL;
	if (isdigit((unsigned char)*s) || ((*s == '-' || *s == '+') && isdigit((unsigned char)s[1]))) {
		errno = 0;
		delta = strtoll(s, &end, 10);
		while (*end == ' ' || *end == '\t')
			end++;
		if (*end)
			return -EINVAL;
		if (errno == ERANGE)
			delta = delta < 0 ? -1 : ACME_RETRY_AFTER_MAX_S;
	} else {
		time_t t;

		/* Only an IMF-fixdate/RFC 850/asctime starts with a letter. */
		if (!isalpha((unsigned char)*s))
			return -EINVAL;
		t = curl_getdate(s, NULL);
		if (t == (time_t)-1)
			return -EINVAL;
		delta = (long long)t - (long long)now;
	}
	if (delta < 0)
		delta = ACME_RETRY_AFTER_MIN_S;
	if (delta > ACME_RETRY_AFTER_MAX_S)
		delta = ACME_RETRY_AFTER_MAX_S;
	*out = now + (time_t)delta;
	return 0;
}

/* ---- Link (RFC 8288) ----------------------------------------------------- */

/* Does the rel value (space-separated list, RFC 8288 3.3) contain rel? */
static bool rel_has(const char *v, size_t n, const char *rel)
{
	size_t rl = strlen(rel), i = 0;

	while (i < n) {
		size_t s;

		while (i < n && v[i] == ' ')
			i++;
		s = i;
		while (i < n && v[i] != ' ')
			i++;
		if (i - s == rl && !strncasecmp(v + s, rel, rl))
			return true;
	}
	return false;
}

int acme_link_parse(const char *value, const char *rel, char **urls, size_t max, size_t *n)
{
	const char *p = value;

	if (!value || !rel)
		return -EINVAL;
	for (;;) {
		const char *u, *ue;
		bool match = false;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			return 0;
		if (*p != '<')
			return -EINVAL;
		u = ++p;
		ue = strchr(u, '>');
		if (!ue)
			return -EINVAL;
		p = ue + 1;
		/* Parameters: ; name [= token | quoted-string] */
		for (;;) {
			const char *nm, *nme, *v = NULL;
			size_t vl = 0;

			while (*p == ' ' || *p == '\t')
				p++;
			if (*p != ';')
				break;
			p++;
			while (*p == ' ' || *p == '\t')
				p++;
			nm = p;
			while (*p && *p != '=' && *p != ';' && *p != ',' && *p != ' ')
				p++;
			nme = p;
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '=') {
				p++;
				while (*p == ' ' || *p == '\t')
					p++;
				if (*p == '"') {
					v = ++p;
					while (*p && *p != '"') {
						if (*p == '\\' && p[1])
							p++;
						p++;
					}
					if (*p != '"')
						return -EINVAL;
					vl = (size_t)(p - v);
					p++;
				} else {
					v = p;
					while (*p && *p != ';' && *p != ',' && *p != ' ')
						p++;
					vl = (size_t)(p - v);
				}
			}
			if (nme - nm == 3 && !strncasecmp(nm, "rel", 3) && v)
				match = match || rel_has(v, vl, rel);
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p && *p != ',')
			return -EINVAL;
		if (match && ue > u && *n < max) {
			char *s = strndup(u, (size_t)(ue - u));

			if (!s)
				return -ENOMEM;
			urls[(*n)++] = s;
		}
	}
}

/* ---- directory (7.1.1) ------------------------------------------------- */

void acme_directory_clear(struct acme_directory *d)
{
	if (!d)
		return;
	free(d->new_nonce);
	free(d->new_account);
	free(d->new_order);
	free(d->revoke_cert);
	free(d->key_change);
	free(d->renewal_info);
	free(d->terms_of_service);
	acme_strv_free(d->profiles, d->nprofiles);
	memset(d, 0, sizeof(*d));
}

int acme_directory_parse(const void *body, size_t len, struct acme_directory *d,
			 char *detail, size_t dlen)
{
	const char *w = "directory";
	json_t *j, *meta, *v;
	int rc;

	memset(d, 0, sizeof(*d));
	j = load(body, len, detail, dlen, w);
	if (!j)
		return -EINVAL;
	if ((rc = dup_url(j, "newNonce", true, &d->new_nonce, detail, dlen, w)) ||
	    (rc = dup_url(j, "newAccount", true, &d->new_account, detail, dlen, w)) ||
	    (rc = dup_url(j, "newOrder", true, &d->new_order, detail, dlen, w)) ||
	    (rc = dup_url(j, "revokeCert", false, &d->revoke_cert, detail, dlen, w)) ||
	    (rc = dup_url(j, "keyChange", false, &d->key_change, detail, dlen, w)) ||
	    (rc = dup_url(j, "renewalInfo", false, &d->renewal_info, detail, dlen, w)))
		goto out;
	meta = json_object_get(j, "meta");
	if (meta && !json_is_object(meta)) {
		set_detail(detail, dlen, "directory: \"meta\" is not an object");
		rc = -EINVAL;
		goto out;
	}
	if (meta) {
		if ((rc = dup_str(meta, "termsOfService", false, &d->terms_of_service,
				  detail, dlen, w)))
			goto out;
		v = json_object_get(meta, "externalAccountRequired");
		if (v && !json_is_boolean(v)) {
			set_detail(detail, dlen,
				   "directory: \"externalAccountRequired\" is not a boolean");
			rc = -EINVAL;
			goto out;
		}
		d->eab_required = json_is_true(v);
		/* draft-ietf-acme-profiles: meta.profiles maps name -> description. */
		v = json_object_get(meta, "profiles");
		if (json_is_object(v)) {
			const char *k;
			json_t *x;
			size_t n = json_object_size(v);

			d->has_profiles = true;
			if (n > 64)
				n = 64;
			d->profiles = calloc(n ? n : 1, sizeof(char *));
			if (!d->profiles) {
				rc = -ENOMEM;
				goto out;
			}
			json_object_foreach(v, k, x) {
				if (d->nprofiles >= n)
					break;
				if (!(d->profiles[d->nprofiles] = strdup(k))) {
					rc = -ENOMEM;
					goto out;
				}
				d->nprofiles++;
			}
		}
	}
	rc = 0;
out:
	if (rc)
		acme_directory_clear(d);
	json_decref(j);
	return rc;
}

/* ---- order (7.1.3) ----------------------------------------------------- */

void acme_order_clear(struct acme_order *o)
{
	if (!o)
		return;
	acme_strv_free(o->authzs, o->nauthzs);
	acme_strv_free(o->identifiers, o->nidentifiers);
	free(o->finalize);
	free(o->certificate);
	memset(o, 0, sizeof(*o));
}

int acme_order_parse(const void *body, size_t len, struct acme_order *o, char *detail,
		     size_t dlen)
{
	const char *w = "order";
	json_t *j, *a, *v;
	size_t i;
	int rc = -EINVAL;

	memset(o, 0, sizeof(*o));
	j = load(body, len, detail, dlen, w);
	if (!j)
		return -EINVAL;
	o->status = acme_status_parse(get_str(j, "status"));
	if (o->status == ACME_STATUS_UNKNOWN) {
		set_detail(detail, dlen, "order: \"status\" is missing or unknown");
		goto out;
	}
	a = json_object_get(j, "authorizations");
	if (!json_is_array(a) || json_array_size(a) > ACME_MAX_AUTHZ) {
		set_detail(detail, dlen, "order: \"authorizations\" is not an array of at most %d",
			   ACME_MAX_AUTHZ);
		goto out;
	}
	o->authzs = calloc(json_array_size(a) + 1, sizeof(char *));
	if (!o->authzs) {
		rc = -ENOMEM;
		goto out;
	}
	json_array_foreach(a, i, v) {
		const char *s = json_string_value(v);

		if (!json_is_string(v) || (strncmp(s, "https://", 8) && strncmp(s, "http://", 7)) ||
		    json_string_length(v) > ACME_URL_MAX || strlen(s) != json_string_length(v)) {
			set_detail(detail, dlen, "order: authorization %zu is not a URL", i);
			goto out;
		}
		if (!(o->authzs[o->nauthzs] = strdup(s))) {
			rc = -ENOMEM;
			goto out;
		}
		o->nauthzs++;
	}
	a = json_object_get(j, "identifiers");
	if (!json_is_array(a) || json_array_size(a) == 0 ||
	    json_array_size(a) > ACME_MAX_AUTHZ) {
		set_detail(detail, dlen, "order: \"identifiers\" is not a non-empty array");
		goto out;
	}
	o->identifiers = calloc(json_array_size(a), sizeof(char *));
	if (!o->identifiers) {
		rc = -ENOMEM;
		goto out;
	}
	json_array_foreach(a, i, v) {
		const char *t = json_is_object(v) ? get_str(v, "type") : NULL;
		const char *val = json_is_object(v) ? get_str(v, "value") : NULL;

		if (!t || !val || strcmp(t, "dns") || !*val || strlen(val) > 253) {
			set_detail(detail, dlen, "order: identifier %zu is not a dns identifier", i);
			goto out;
		}
		if (!(o->identifiers[o->nidentifiers] = strdup(val))) {
			rc = -ENOMEM;
			goto out;
		}
		o->nidentifiers++;
	}
	if ((rc = dup_url(j, "finalize", true, &o->finalize, detail, dlen, w)) ||
	    (rc = dup_url(j, "certificate", false, &o->certificate, detail, dlen, w)))
		goto out;
	if (o->status == ACME_STATUS_VALID && !o->certificate) {
		set_detail(detail, dlen, "order: valid but without \"certificate\"");
		rc = -EINVAL;
		goto out;
	}
	embedded_problem(json_object_get(j, "error"), &o->error, &o->has_error);
	rc = 0;
out:
	if (rc)
		acme_order_clear(o);
	json_decref(j);
	return rc;
}

/* ---- authorization (7.1.4) --------------------------------------------- */

bool acme_token_ok(const char *token)
{
	size_t n;

	if (!token)
		return false;
	n = strlen(token);
	if (n == 0 || n > 256)
		return false;
	/* 8.1: base64url alphabet only, so it is safe in a path and a file name. */
	return strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			     "0123456789-_") == n;
}

void acme_authz_clear(struct acme_authz *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nchallenges; i++) {
		free(a->challenges[i].type);
		free(a->challenges[i].url);
		free(a->challenges[i].token);
	}
	free(a->challenges);
	free(a->identifier);
	memset(a, 0, sizeof(*a));
}

int acme_authz_parse(const void *body, size_t len, struct acme_authz *a, char *detail,
		     size_t dlen)
{
	const char *w = "authorization";
	json_t *j, *id, *arr, *v;
	const char *t, *val;
	size_t i;
	int rc = -EINVAL;

	memset(a, 0, sizeof(*a));
	j = load(body, len, detail, dlen, w);
	if (!j)
		return -EINVAL;
	a->status = acme_status_parse(get_str(j, "status"));
	if (a->status == ACME_STATUS_UNKNOWN) {
		set_detail(detail, dlen, "authorization: \"status\" is missing or unknown");
		goto out;
	}
	id = json_object_get(j, "identifier");
	t = json_is_object(id) ? get_str(id, "type") : NULL;
	val = json_is_object(id) ? get_str(id, "value") : NULL;
	if (!t || !val || strcmp(t, "dns") || !*val || strlen(val) > 253) {
		set_detail(detail, dlen, "authorization: \"identifier\" is not a dns identifier");
		goto out;
	}
	if (!(a->identifier = strdup(val))) {
		rc = -ENOMEM;
		goto out;
	}
	v = json_object_get(j, "wildcard");
	if (v && !json_is_boolean(v)) {
		set_detail(detail, dlen, "authorization: \"wildcard\" is not a boolean");
		goto out;
	}
	a->wildcard = json_is_true(v);
	arr = json_object_get(j, "challenges");
	if (!json_is_array(arr) || json_array_size(arr) > ACME_MAX_CHALLENGES) {
		set_detail(detail, dlen,
			   "authorization: \"challenges\" is not an array of at most %d",
			   ACME_MAX_CHALLENGES);
		goto out;
	}
	a->challenges = calloc(json_array_size(arr) + 1, sizeof(*a->challenges));
	if (!a->challenges) {
		rc = -ENOMEM;
		goto out;
	}
	json_array_foreach(arr, i, v) {
		struct acme_challenge *c = &a->challenges[a->nchallenges];

		if (!json_is_object(v)) {
			set_detail(detail, dlen, "authorization: challenge %zu is not an object", i);
			goto out;
		}
		a->nchallenges++;
		if ((rc = dup_str(v, "type", true, &c->type, detail, dlen, "challenge")) ||
		    (rc = dup_url(v, "url", true, &c->url, detail, dlen, "challenge")) ||
		    (rc = dup_str(v, "token", false, &c->token, detail, dlen, "challenge")))
			goto out;
		rc = -EINVAL;
		c->status = acme_status_parse(get_str(v, "status"));
		if (c->token && !acme_token_ok(c->token)) {
			set_detail(detail, dlen, "challenge: \"token\" has characters outside base64url");
			goto out;
		}
		embedded_problem(json_object_get(v, "error"), &c->error, &c->has_error);
	}
	rc = 0;
out:
	if (rc)
		acme_authz_clear(a);
	json_decref(j);
	return rc;
}

int acme_account_parse_status(const void *body, size_t len, enum acme_status *out)
{
	json_t *j = load(body, len, NULL, 0, "account");

	if (!j)
		return -EINVAL;
	*out = acme_status_parse(get_str(j, "status"));
	json_decref(j);
	return *out == ACME_STATUS_UNKNOWN ? -EINVAL : 0;
}

/* ---- renewal information (RFC 9773 4.2) -------------------------------- */

static int rfc3339(const char *s, time_t *out)
{
	/* curl_getdate() does not read RFC 3339, which RFC 9773 uses. */
	time_t t;
	int y, mo, d, h, mi, sec, n = 0;
	struct tm tm;

	if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
		return -EINVAL;
	s += n;
	if (*s == '.') {
		s++;
		while (isdigit((unsigned char)*s))
			s++;
	}
	if (strcmp(s, "Z") && strcmp(s, "z") && strcmp(s, "+00:00"))
		return -EINVAL;
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = t;
	return 0;
}

int acme_renewal_info_parse(const void *body, size_t len, struct acme_renewal_info *out,
			    char *detail, size_t dlen)
{
	json_t *j, *w;
	const char *u;
	int rc = -EINVAL;

	memset(out, 0, sizeof(*out));
	j = load(body, len, detail, dlen, "renewalInfo");
	if (!j)
		return -EINVAL;
	w = json_object_get(j, "suggestedWindow");
	if (!json_is_object(w) || rfc3339(get_str(w, "start"), &out->window_start) ||
	    rfc3339(get_str(w, "end"), &out->window_end)) {
		set_detail(detail, dlen, "renewalInfo: \"suggestedWindow\" is missing or malformed");
		goto out;
	}
	if (out->window_end < out->window_start) {
		set_detail(detail, dlen, "renewalInfo: the suggested window ends before it starts");
		goto out;
	}
	u = get_str(j, "explanationURL");
	if (u && strlen(u) < sizeof(out->explanation_url))
		copy_text(out->explanation_url, sizeof(out->explanation_url), u);
	rc = 0;
out:
	json_decref(j);
	return rc;
}

void acme_dn_cn(const char *dn, char *out, size_t len)
{
	const char *p = dn;
	bool at_start = true;
	size_t j = 0;

	if (!len)
		return;
	out[0] = '\0';
	if (!dn)
		return;
	/* Walk attribute by attribute; "\," inside a value is not a separator. */
	while (*p) {
		if (at_start && !strncmp(p, "CN=", 3)) {
			for (p += 3; *p && *p != ',' && j + 1 < len; p++) {
				if (*p == '\\' && p[1])
					p++;
				out[j++] = *p;
			}
			out[j] = '\0';
			return;
		}
		at_start = false;
		if (*p == '\\' && p[1]) {
			p += 2;
			continue;
		}
		if (*p == ',') {
			p++;
			while (*p == ' ')
				p++;
			at_start = true;
			continue;
		}
		p++;
	}
}
