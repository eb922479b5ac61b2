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

int store_open(const char *spec, struct store **out, char *err, size_t errlen)
{
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
	if (!strncmp(spec, STORE_ETCD_SCHEME, strlen(STORE_ETCD_SCHEME))) {
		/* The etcd back end will plug in here behind the same ops table. */
		snprintf(err, errlen, "store %s: etcd support is not built yet", spec);
		return -ENOTSUP;
	}
	copy = strdup(spec);
	if (!copy) {
		snprintf(err, errlen, "store %s: out of memory", spec);
		return -ENOMEM;
	}
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
