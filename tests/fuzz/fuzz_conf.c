/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the configuration loader (inih plus certfs's own
 * checks) on any bytes, read from a memfd as from a file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct conf_err err;
	struct conf c;

	if (fd < 0) {
		fd = memfd_create("certfs-fuzz.conf", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	conf_init(&c);
	(void)!conf_load_file(&c, path, &err);
	conf_clear(&c);
	return 0;
}
