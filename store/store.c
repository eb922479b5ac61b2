/* SPDX-License-Identifier: MIT */
/*
 * store: picks the back end named by the user's store spec and checks every
 * key before a back end sees it, so that no back end has to worry about a
 * name escaping the store ("..", "/abs", hidden or control characters).
 * The public functions are thin wrappers around the ops table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"

#define STORE_ETCD_SCHEME "etcd://"

static bool seg_char_ok(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '*' ||
	       ch == '@' || ch == '+' || ch == '=' || ch == '-';
}

bool store_key_valid(const char *key)
{
	size_t seg = 0;

	if (!key || !*key)
		return false;
	for (const char *p = key;; p++) {
		if (*p == '/' || *p == '\0') {
			/* Empty segments ("a//b", "/abs", "a/") are refused. */
			if (seg == 0 || seg > STORE_SEG_MAX)
				return false;
			if (*p == '\0')
				return true;
			seg = 0;
			continue;
		}
		/* A leading '.' also covers "." and ".." and the ".tmp." files. */
		if (seg == 0 && *p == '.')
			return false;
		if (!seg_char_ok((unsigned char)*p))
			return false;
		seg++;
	}
}

/* Writes of this thread are fenced on this lock (see store_lock_try). */
static __thread struct store_lock *thread_fence;

bool store_spec_is_etcd(const char *spec)
{
	return spec && !strncmp(spec, STORE_ETCD_SCHEME, strlen(STORE_ETCD_SCHEME));
}

int store_open(const char *spec, struct store **out, char *err, size_t errlen)
{
	return store_open_opts(spec, NULL, out, err, errlen);
}

int store_open_opts(const char *spec, const struct store_opts *o, struct store **out,
		    char *err, size_t errlen)
{
	static const struct store_opts none;
	struct store *s = NULL;
	char *copy = NULL;
	int rc;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!spec || !*spec) {
		snprintf(err, errlen, "store: no path given");
		return -EINVAL;
	}
	copy = strdup(spec);
	if (!copy) {
		snprintf(err, errlen, "store %s: out of memory", spec);
		return -ENOMEM;
	}
	if (store_spec_is_etcd(spec))
		rc = store_etcd_open(spec + strlen(STORE_ETCD_SCHEME), o ? o : &none, &s, err,
				     errlen);
	else
		rc = store_dir_open(spec, &s, err, errlen);
	if (rc)
		goto out;
	s->spec = copy;
	copy = NULL;
	*out = s;
	rc = 0;
out:
	free(copy);
	return rc;
}

int store_lock(struct store *s, const char *owner, char *err, size_t errlen)
{
	if (!s->ops->lock)
		return 0;
	return s->ops->lock(s, owner, err, errlen);
}

void store_close(struct store *s)
{
	if (!s)
		return;
	free(s->spec);
	s->spec = NULL;
	s->ops->close(s);
}

int store_get(struct store *s, const char *key, struct util_buf *out)
{
	if (!store_key_valid(key))
		return -EINVAL;
	return s->ops->get(s, key, out);
}

int store_get_many(struct store *s, const char *const *keys, size_t n, size_t max,
		   store_value_cb cb, void *arg)
{
	struct util_buf b;
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		if (!store_key_valid(keys[i]))
			return -EINVAL;
	if (s->ops->get_many)
		return s->ops->get_many(s, keys, n, max, cb, arg);
	util_buf_init(&b, max, true);
	for (size_t i = 0; !rc && i < n; i++) {
		int got;

		util_buf_reset(&b);
		got = s->ops->get(s, keys[i], &b);
		rc = cb(i, got, b.data, b.len, arg);
	}
	util_buf_free(&b);
	return rc < 0 ? rc : 0;
}

int store_put(struct store *s, const char *key, const void *data, size_t len)
{
	if (!store_key_valid(key))
		return -EINVAL;
	if (len > STORE_VALUE_MAX)
		return -EFBIG;
	if (len && !data)
		return -EINVAL;
	return s->ops->put(s, key, data, len);
}

int store_del(struct store *s, const char *key)
{
	if (!store_key_valid(key))
		return -EINVAL;
	return s->ops->del(s, key);
}

int store_list(struct store *s, const char *prefix, store_list_cb cb, void *arg)
{
	if (!prefix || (*prefix && !store_key_valid(prefix)) || !cb)
		return -EINVAL;
	return s->ops->list(s, prefix, cb, arg);
}

int store_move(struct store *s, const char *from, const char *to)
{
	if (!store_key_valid(from) || !store_key_valid(to))
		return -EINVAL;
	return s->ops->move(s, from, to);
}

bool store_shared(const struct store *s)
{
	return s->ops->watch_start != NULL;
}

int store_get_rev(struct store *s, const char *key, struct util_buf *out, int64_t *rev)
{
	if (!store_key_valid(key))
		return -EINVAL;
	if (!s->ops->get_rev) {
		*rev = 0;
		return s->ops->get(s, key, out);
	}
	return s->ops->get_rev(s, key, out, rev);
}

int store_put_if(struct store *s, const char *key, const void *data, size_t len, int64_t rev)
{
	struct util_buf b;
	int rc;

	if (!store_key_valid(key) || rev < 0)
		return -EINVAL;
	if (len > STORE_VALUE_MAX)
		return -EFBIG;
	if (len && !data)
		return -EINVAL;
	if (s->ops->put_if)
		return s->ops->put_if(s, key, data, len, rev);
	if (rev)
		return -ENOTSUP;
	/* A directory store has one writer (its lock), so look, then put. */
	util_buf_init(&b, STORE_VALUE_MAX, true);
	rc = s->ops->get(s, key, &b);
	util_buf_free(&b);
	if (!rc || rc == -EFBIG)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	return s->ops->put(s, key, data, len);
}

int store_watch_start(struct store *s, const char *prefix, store_watch_cb cb, void *arg)
{
	if (!prefix || (*prefix && !store_key_valid(prefix)) || !cb)
		return -EINVAL;
	if (!s->ops->watch_start)
		return -ENOTSUP;
	return s->ops->watch_start(s, prefix, cb, arg);
}

void store_watch_stop(struct store *s)
{
	if (s && s->ops->watch_stop)
		s->ops->watch_stop(s);
}

bool store_superseded(struct store *s, const char *key, int64_t rev)
{
	return s->ops->superseded ? s->ops->superseded(s, key, rev) : false;
}

int store_lock_try(struct store *s, const char *name, struct store_lock **out)
{
	*out = NULL;
	if (!store_key_valid(name))
		return -EINVAL;
	if (!s->ops->lock_try)
		return -ENOTSUP;
	return s->ops->lock_try(s, name, out);
}

void store_lock_release(struct store_lock *l)
{
	if (!l)
		return;
	if (thread_fence == l)
		thread_fence = NULL;
	l->store->ops->lock_release(l);
}

void store_fence_set(struct store_lock *l)
{
	thread_fence = l;
}

struct store_lock *store_fence_get(void)
{
	return thread_fence;
}

bool store_reachable(struct store *s)
{
	return s->ops->reachable ? s->ops->reachable(s) : true;
}
