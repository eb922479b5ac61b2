/* SPDX-License-Identifier: MIT */
/*
 * store-tool: drives one store (any back end) from stdin, one command per
 * line, for tests/integration/test_store_etcd.py. Each command answers one
 * line on stdout, "ok [RESULT]" or "err ERRNAME"; a watch adds lines
 * "event put KEY VALUE", "event del KEY", "event resync", "event down",
 * "event up" as changes arrive. Values are text without spaces or newlines
 * (the tests choose them). Never installed.
 *
 *   store-tool STORE [KEK_FILE [LEASE_TTL]]
 *   get KEY | getrev KEY | put KEY VALUE | putif KEY REV VALUE | del KEY
 *   list PREFIX|- | move FROM TO | watch PREFIX|- | lock NAME | unlock NAME
 *   fence NAME | unfence | reachable | quit
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

#define LOCKS_MAX 16

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char *name;
	struct store_lock *l;
} locks[LOCKS_MAX];

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static void result(int rc)
{
	if (rc)
		say("err %s", strerrorname_np(-rc));
	else
		say("ok");
}

static void on_event(const struct store_event *ev, void *arg)
{
	switch (ev->type) {
	case STORE_EVENT_PUT:
		say("event put %s %.*s", ev->key, (int)ev->len, (const char *)ev->value);
		break;
	case STORE_EVENT_DEL:
		say("event del %s", ev->key);
		break;
	case STORE_EVENT_RESYNC:
		say("event resync");
		break;
	case STORE_EVENT_DOWN:
		say("event down");
		break;
	case STORE_EVENT_UP:
		say("event up");
		break;
	}
}

static int print_child(const char *name, void *arg)
{
	struct util_buf *b = arg;

	return util_buf_printf(b, " %s", name);
}

static struct store_lock **lock_slot(const char *name, bool make)
{
	for (int i = 0; i < LOCKS_MAX; i++)
		if (locks[i].name && !strcmp(locks[i].name, name))
			return &locks[i].l;
	for (int i = 0; make && i < LOCKS_MAX; i++)
		if (!locks[i].name) {
			locks[i].name = strdup(name);
			return &locks[i].l;
		}
	return NULL;
}

static void run(struct store *s, char *line)
{
	char *save = NULL, *cmd = strtok_r(line, " \n", &save);
	char *a = strtok_r(NULL, " \n", &save), *b = strtok_r(NULL, " \n", &save);
	char *c = strtok_r(NULL, " \n", &save);
	struct util_buf buf;
	int64_t rev = 0;
	int rc;

	util_buf_init(&buf, STORE_VALUE_MAX, true);
	if (!cmd) {
		goto out;
	} else if (!strcmp(cmd, "get") && a) {
		rc = store_get(s, a, &buf);
		if (rc)
			result(rc);
		else
			say("ok %.*s", (int)buf.len, (const char *)buf.data);
	} else if (!strcmp(cmd, "getrev") && a) {
		rc = store_get_rev(s, a, &buf, &rev);
		if (rc)
			result(rc);
		else
			say("ok %lld %.*s", (long long)rev, (int)buf.len, (const char *)buf.data);
	} else if (!strcmp(cmd, "put") && b) {
		result(store_put(s, a, b, strlen(b)));
	} else if (!strcmp(cmd, "putif") && c) {
		result(store_put_if(s, a, c, strlen(c), strtoll(b, NULL, 10)));
	} else if (!strcmp(cmd, "del") && a) {
		result(store_del(s, a));
	} else if (!strcmp(cmd, "list") && a) {
		rc = store_list(s, strcmp(a, "-") ? a : "", print_child, &buf);
		if (rc)
			result(rc);
		else
			say("ok%.*s", (int)buf.len, (const char *)buf.data);
	} else if (!strcmp(cmd, "move") && b) {
		result(store_move(s, a, b));
	} else if (!strcmp(cmd, "watch") && a) {
		result(store_watch_start(s, strcmp(a, "-") ? a : "", on_event, NULL));
	} else if (!strcmp(cmd, "lock") && a) {
		struct store_lock **slot = lock_slot(a, true);

		/* Taken again (after its lease was lost): the old handle goes. */
		if (slot && *slot) {
			store_lock_release(*slot);
			*slot = NULL;
		}
		rc = slot ? store_lock_try(s, a, slot) : -ENOSPC;
		if (rc)
			result(rc);
		else
			say("ok");
	} else if (!strcmp(cmd, "unlock") && a) {
		struct store_lock **slot = lock_slot(a, false);

		if (slot) {
			store_lock_release(*slot);
			*slot = NULL;
		}
		result(slot ? 0 : -ENOENT);
	} else if (!strcmp(cmd, "fence") && a) {
		struct store_lock **slot = lock_slot(a, false);

		if (slot && *slot)
			store_fence_set(*slot);
		result(slot && *slot ? 0 : -ENOENT);
	} else if (!strcmp(cmd, "unfence")) {
		store_fence_set(NULL);
		result(0);
	} else if (!strcmp(cmd, "reachable")) {
		say("ok %d", store_reachable(s) ? 1 : 0);
	} else {
		say("err EINVAL");
	}
out:
	util_buf_free(&buf);
}

int main(int argc, char **argv)
{
	struct store_opts o = {0};
	struct store *s = NULL;
	char err[512], line[4096];

	if (argc < 2) {
		fprintf(stderr, "usage: store-tool STORE [KEK_FILE [LEASE_TTL]]\n");
		return 2;
	}
	o.key_encryption_key_file = argc > 2 ? argv[2] : NULL;
	o.lease_ttl = argc > 3 ? atoi(argv[3]) : 0;
	o.ca_bundle = getenv("STORE_TOOL_CA");
	o.user = getenv("STORE_TOOL_USER");
	o.password_file = getenv("STORE_TOOL_PASSWORD_FILE");
	if (store_open_opts(argv[1], &o, &s, err, sizeof(err))) {
		fprintf(stderr, "store-tool: %s\n", err);
		return 1;
	}
	say("ready");
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "quit", 4))
			break;
		run(s, line);
	}
	store_fence_set(NULL);
	for (int i = 0; i < LOCKS_MAX; i++) {
		store_lock_release(locks[i].l);
		free(locks[i].name);
	}
	store_close(s);
	return 0;
}
