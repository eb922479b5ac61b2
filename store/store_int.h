/* SPDX-License-Identifier: MIT */
/*
 * store: declarations shared between the dispatcher (store.c) and the back
 * ends. Back ends receive keys already checked by store_key_valid(), so they
 * only split on '/' and never see "..", empty or hidden segments.
 */
#ifndef CERTFS_STORE_INT_H
#define CERTFS_STORE_INT_H

#include <stddef.h>

#include "store/store.h"

/* Longest key segment (NAME_MAX on every Linux file system we care about). */
#define STORE_SEG_MAX 255

/*
 * Open a local-directory store at path. On success *out is a struct store
 * whose spec the caller fills in. -errno with a sentence in err.
 */
int store_dir_open(const char *path, struct store **out, char *err, size_t errlen) STORE_WUR;

#endif
