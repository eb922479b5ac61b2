/* SPDX-License-Identifier: MIT */
/*
 * Secret memory: where private keys, passphrases and the JSON records that
 * carry them live. Blocks come from one region of address space reserved at
 * first use and marked MADV_DONTDUMP, so a core dump (the kernel's, or
 * gcore's, which honours the same flag) leaves them out; every block is
 * wiped when it is freed. The region is carved into power-of-two size
 * classes with a free list each: secrets are small and few, and a freed
 * block is reused by the next one of its size. Large freed blocks give
 * their pages back with MADV_DONTNEED, which also zeroes them.
 *
 * When the region cannot be reserved or is full, blocks come from malloc
 * (still wiped on free, but no longer kept out of dumps): running out of
 * secret memory must never stop certfs from serving.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/util.h"

#define CLASS_MIN_SHIFT 5  /* 32-byte blocks, header included */
#define CLASS_MAX_SHIFT 23 /* 8 MiB: past any upload or record certfs keeps */
#define NCLASSES (CLASS_MAX_SHIFT - CLASS_MIN_SHIFT + 1)
#define HDR 16             /* keeps payloads 16-byte aligned, like malloc */

/* Sizes tried for the region, largest first (address space, not memory). */
static const size_t region_sizes[] = { (size_t)1 << 32, (size_t)1 << 30, (size_t)1 << 28,
				       (size_t)1 << 26 };

static struct {
	pthread_mutex_t lock;
	pthread_once_t once;
	unsigned char *base, *top, *end;
	void *free_list[NCLASSES];
} sec = { .lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT };

static void region_init(void)
{
	void *p;
	size_t i;

	for (i = 0; i < sizeof(region_sizes) / sizeof(region_sizes[0]); i++) {
		/* NORESERVE: untouched pages cost neither memory nor commit charge. */
		p = mmap(NULL, region_sizes[i], PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			continue;
		if (madvise(p, region_sizes[i], MADV_DONTDUMP) != 0) {
			munmap(p, region_sizes[i]);
			return;
		}
		sec.base = sec.top = p;
		sec.end = sec.base + region_sizes[i];
		return;
	}
}

static bool in_region(const void *p)
{
	const unsigned char *c = p;

	pthread_once(&sec.once, region_init);
	return sec.base && c >= sec.base && c < sec.end;
}

static int class_of(size_t n)
{
	int c = 0;

	if (n > ((size_t)1 << CLASS_MAX_SHIFT) - HDR)
		return -1;
	while (((size_t)1 << (CLASS_MIN_SHIFT + c)) - HDR < n)
		c++;
	return c;
}

/* Wipe a block's payload; big blocks give their pages back instead. */
static void block_wipe(unsigned char *blk, size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo, hi;

	if (size >= 16 * page) {
		lo = ((uintptr_t)blk + HDR + page - 1) & ~(uintptr_t)(page - 1);
		hi = ((uintptr_t)blk + size) & ~(uintptr_t)(page - 1);
		util_wipe(blk + HDR, lo - (uintptr_t)blk - HDR);
		util_wipe((void *)hi, (uintptr_t)blk + size - hi);
		/* Anonymous private pages read back as zeroes after this. */
		if (madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0)
			util_wipe((void *)lo, hi - lo);
		return;
	}
	util_wipe(blk + HDR, size - HDR);
}

void *util_secret_alloc(size_t n)
{
	unsigned char *blk = NULL;
	size_t size;
	int c;

	pthread_once(&sec.once, region_init);
	c = class_of(n ? n : 1);
	if (c < 0 || !sec.base)
		return calloc(1, n ? n : 1);
	size = (size_t)1 << (CLASS_MIN_SHIFT + c);
	pthread_mutex_lock(&sec.lock);
	if (sec.free_list[c]) {
		blk = sec.free_list[c];
		memcpy(&sec.free_list[c], blk + HDR, sizeof(void *));
		memset(blk + HDR, 0, sizeof(void *));
	} else if ((size_t)(sec.end - sec.top) >= size) {
		blk = sec.top;
		sec.top += size;
	}
	if (blk)
		memcpy(blk, &c, sizeof(c));
	pthread_mutex_unlock(&sec.lock);
	/* Region full: serving matters more than keeping this one out of a dump. */
	if (!blk)
		return calloc(1, n);
	return blk + HDR;
}

void util_secret_free(void *p)
{
	unsigned char *blk;
	int c;

	if (!p)
		return;
	if (!in_region(p)) {
		util_wipe(p, malloc_usable_size(p));
		free(p);
		return;
	}
	blk = (unsigned char *)p - HDR;
	memcpy(&c, blk, sizeof(c));
	block_wipe(blk, (size_t)1 << (CLASS_MIN_SHIFT + c));
	pthread_mutex_lock(&sec.lock);
	memcpy(blk + HDR, &sec.free_list[c], sizeof(void *));
	sec.free_list[c] = blk;
	pthread_mutex_unlock(&sec.lock);
}

bool util_secret_kept_from_dumps(const void *p)
{
	return in_region(p);
}

char *util_secret_strdup(const char *s)
{
	size_t n = strlen(s);
	char *p = util_secret_alloc(n + 1);

	if (p)
		memcpy(p, s, n + 1);
	return p;
}
