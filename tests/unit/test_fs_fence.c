/* SPDX-License-Identifier: MIT */
/*
 * The pair fence as a table of scenarios on a fake clock: pairs in either
 * order across a rotation, threads of one process interleaving, readers of
 * one file, the pair window, grace on mounts whose cached opens are unseen,
 * rotations inside grace, a full record table, a domain removed while
 * its records are alive, a caller whose clock reading is older than records
 * made while it waited for the lock, and a pair slower than the window. Generations are counted references, so every test
 * ends by checking that nothing leaked and nothing was dropped twice.
 */
#include <stdlib.h>

#include "fs/fence.h"
#include "tests/unit/check.h"

#define NGENS 16

struct gen {
	int number;
	int refs;
};

static struct gen gens[NGENS];

static void gen_ref(void *g)
{
	((struct gen *)g)->refs++;
}

static void gen_unref(void *g)
{
	struct gen *x = g;

	if (x->refs <= 0) {
		fprintf(stderr, "generation %d dropped below zero\n", x->number);
		check_failures++;
	}
	x->refs--;
}

enum { FULLCHAIN = FENCE_CERT, CERT = FENCE_CERT, CHAIN = FENCE_CERT, PRIVKEY = FENCE_KEY };

static struct fence *make_buckets(uint64_t grace_ms, size_t max_records, uint64_t retry_ms,
				  size_t buckets)
{
	struct fence_config cfg = {
		.pair_ms = 2000, .forget_ms = 60000, .grace_ms = grace_ms,
		.max_records = max_records, .retry_ms = retry_ms, .buckets = buckets,
		.gen_ref = gen_ref, .gen_unref = gen_unref,
	};
	struct fence *fc = NULL;

	for (int i = 0; i < NGENS; i++) {
		gens[i].number = i;
		gens[i].refs = 0;
	}
	CHECK_INT(fence_new(&cfg, &fc), 0);
	return fc;
}

static struct fence *make_cfg(uint64_t grace_ms, size_t max_records, uint64_t retry_ms)
{
	return make_buckets(grace_ms, max_records, retry_ms, 0);
}

static struct fence *make(uint64_t grace_ms, size_t max_records)
{
	return make_cfg(grace_ms, max_records, 0);
}

/* Pick and return the generation's number, dropping the reference. */
static int pick(struct fence *fc, struct fence_dom *fd, uint32_t tid, int file, uint64_t now)
{
	struct gen *g = fence_pick(fc, fd, tid, file, now, NULL);
	int n = g->number;

	gen_unref(g);
	return n;
}

static void done(struct fence *fc, struct fence_dom *fd)
{
	fence_dom_clear(fc, fd);
	fence_free(fc);
	for (int i = 0; i < NGENS; i++)
		if (gens[i].refs) {
			fprintf(stderr, "generation %d: %d references left\n", i, gens[i].refs);
			check_failures++;
		}
}

static void test_either_order(void)
{
	struct fence *fc = make(0, 100);
	struct fence_dom fd;

	fence_dom_init(fc, &fd, &gens[1]);
	/* Key first, then the chain, with a rotation in between. */
	CHECK_INT(pick(fc, &fd, 10, PRIVKEY, 1000), 1);
	fence_rotate(fc, &fd, &gens[2], 1001);
	CHECK_INT(pick(fc, &fd, 10, FULLCHAIN, 1002), 1);
	/* Certificate first, then the key. */
	CHECK_INT(pick(fc, &fd, 11, CERT, 1003), 2);
	fence_rotate(fc, &fd, &gens[3], 1004);
	CHECK_INT(pick(fc, &fd, 11, PRIVKEY, 1005), 2);
	/* Another certificate file is a new cycle: what status shows now. */
	CHECK_INT(pick(fc, &fd, 11, CHAIN, 1006), 3);
	CHECK_INT(pick(fc, &fd, 11, PRIVKEY, 1006), 3);
	/* A new reader gets the newest at once: nothing waits. */
	CHECK_INT(pick(fc, &fd, 12, PRIVKEY, 1006), 3);
	CHECK_INT(pick(fc, &fd, 12, FULLCHAIN, 1007), 3);
	done(fc, &fd);
}

static void test_threads_interleaved(void)
{
	struct fence *fc = make(0, 100);
	struct fence_dom fd;
	int first[4];

	fence_dom_init(fc, &fd, &gens[1]);
	/* Four threads of one process open their first halves, a rotation
	 * lands, then they open their second halves in reverse order. */
	for (uint32_t t = 0; t < 4; t++)
		first[t] = pick(fc, &fd, 100 + t, t % 2 ? PRIVKEY : FULLCHAIN, 10 + t);
	fence_rotate(fc, &fd, &gens[2], 20);
	for (int t = 3; t >= 0; t--)
		CHECK_INT(pick(fc, &fd, 100 + (uint32_t)t, t % 2 ? FULLCHAIN : PRIVKEY, 30), first[t]);
	for (uint32_t t = 0; t < 4; t++)
		CHECK_INT(first[t], 1);
	done(fc, &fd);
}

static void test_one_file_reader(void)
{
	struct fence *fc = make(0, 100);
	struct fence_dom fd;

	fence_dom_init(fc, &fd, &gens[1]);
	CHECK_INT(pick(fc, &fd, 7, FULLCHAIN, 0), 1);
	fence_rotate(fc, &fd, &gens[2], 5);
	/* Opening the same side again is a new cycle: the new generation. */
	CHECK_INT(pick(fc, &fd, 7, FULLCHAIN, 6), 2);
	CHECK_INT(pick(fc, &fd, 7, PRIVKEY, 7), 2);
	done(fc, &fd);
}

static void test_pair_window(void)
{
	struct fence *fc = make(0, 100);
	struct fence_dom fd;

	fence_dom_init(fc, &fd, &gens[1]);
	CHECK_INT(pick(fc, &fd, 7, PRIVKEY, 0), 1);
	fence_rotate(fc, &fd, &gens[2], 100);
	CHECK_INT(pick(fc, &fd, 7, FULLCHAIN, 1999), 1);
	CHECK_INT(pick(fc, &fd, 8, PRIVKEY, 2000), 2);
	fence_rotate(fc, &fd, &gens[3], 2100);
	/* Past the window the record holds nothing: the current generation. */
	CHECK_INT(pick(fc, &fd, 8, FULLCHAIN, 4000), 3);
	done(fc, &fd);
}

static void test_grace(void)
{
	struct fence *fc = make(300, 100);
	struct fence_dom fd;
	bool cacheable = true;
	struct gen *g;

	fence_dom_init(fc, &fd, &gens[1]);
	g = fence_pick(fc, &fd, 1, FULLCHAIN, 0, &cacheable);
	CHECK(cacheable);
	gen_unref(g);
	fence_rotate(fc, &fd, &gens[2], 1000);
	/* Thread 2 opened the key through the cache before the rotation: its
	 * first visible lookup, inside grace, gets the old certificate. */
	g = fence_pick(fc, &fd, 2, FULLCHAIN, 1100, &cacheable);
	CHECK_INT(g->number, 1);
	CHECK(!cacheable);
	gen_unref(g);
	/* After grace a recordless thread gets the new one. */
	CHECK_INT(pick(fc, &fd, 3, PRIVKEY, 1301), 2);
	CHECK_INT(pick(fc, &fd, 2, PRIVKEY, 1350), 1);
	/* Entries expired late: grace restarts from then. */
	fence_restart_grace(fc, &fd, 1400);
	CHECK_INT(pick(fc, &fd, 4, CERT, 1650), 1);
	CHECK_INT(pick(fc, &fd, 5, CERT, 1701), 2);
	/* The fence lasts until no record can name generation 1. */
	g = fence_pick(fc, &fd, 6, CERT, 1700 + 1999, &cacheable);
	CHECK(!cacheable);
	gen_unref(g);
	g = fence_pick(fc, &fd, 6, CHAIN, 1700 + 2000, &cacheable);
	CHECK(cacheable);
	gen_unref(g);
	/* Combined files are whole: always the current one, cacheable. */
	fence_rotate(fc, &fd, &gens[3], 5000);
	g = fence_pick(fc, &fd, 9, -1, 5001, &cacheable);
	CHECK_INT(g->number, 3);
	CHECK(cacheable);
	gen_unref(g);
	done(fc, &fd);
}

static void test_expiry_late(void)
{
	struct fence *fc = make(300, 100);
	struct fence_dom fd;
	bool cacheable = true;
	struct gen *g;

	fence_dom_init(fc, &fd, &gens[1]);
	fence_rotate(fc, &fd, &gens[2], 1000);
	fence_expiry_pending(fc, &fd);
	/* The kernel has not been told yet (a starved notify thread): cached
	 * opens of 1 are still possible, long after grace would have ended. */
	g = fence_pick(fc, &fd, 1, CERT, 9000, &cacheable);
	CHECK_INT(g->number, 1);
	CHECK(!cacheable);
	gen_unref(g);
	fence_restart_grace(fc, &fd, 9500);
	CHECK_INT(pick(fc, &fd, 2, PRIVKEY, 9799), 1);
	CHECK_INT(pick(fc, &fd, 3, PRIVKEY, 9800), 2);
	done(fc, &fd);
}

static void test_rotation_inside_grace(void)
{
	struct fence *fc = make(300, 100);
	struct fence_dom fd;

	fence_dom_init(fc, &fd, &gens[1]);
	fence_rotate(fc, &fd, &gens[2], 1000);
	fence_rotate(fc, &fd, &gens[3], 1100);
	/* Cached readers can only hold 1: nobody was given 2. */
	CHECK_INT(pick(fc, &fd, 1, PRIVKEY, 1200), 1);
	CHECK_INT(pick(fc, &fd, 2, PRIVKEY, 1401), 3);
	/* A rotation after grace: grace now covers 3, which was served. */
	fence_rotate(fc, &fd, &gens[4], 1500);
	CHECK_INT(pick(fc, &fd, 3, CERT, 1600), 3);
	CHECK_INT(pick(fc, &fd, 1, FULLCHAIN, 1600), 1); /* still its pair */
	done(fc, &fd);
}

static void test_lookup_asked_twice(void)
{
	struct fence *fc = make_cfg(300, 100, 20);
	struct fence_dom fd;

	fence_dom_init(fc, &fd, &gens[1]);
	CHECK_INT(pick(fc, &fd, 1, FULLCHAIN, 0), 1);
	fence_rotate(fc, &fd, &gens[2], 10);
	CHECK_INT(pick(fc, &fd, 1, PRIVKEY, 400), 1);
	/* The kernel looks the key up again for the same open, however late:
	 * same answer (the next cycle starts with the certificate). */
	CHECK_INT(pick(fc, &fd, 1, PRIVKEY, 410), 1);
	CHECK_INT(pick(fc, &fd, 1, PRIVKEY, 900), 1);
	CHECK_INT(pick(fc, &fd, 1, FULLCHAIN, 901), 2);
	/* In a cycle not complete, only a quick second asking is one,
	 * counted from the first: a loop over one file moves on. */
	fence_rotate(fc, &fd, &gens[3], 902);
	CHECK_INT(pick(fc, &fd, 1, FULLCHAIN, 1300), 3);
	fence_rotate(fc, &fd, &gens[4], 1301);
	CHECK_INT(pick(fc, &fd, 1, FULLCHAIN, 1310), 3);
	CHECK_INT(pick(fc, &fd, 1, FULLCHAIN, 1319), 3);
	CHECK_INT(pick(fc, &fd, 1, FULLCHAIN, 1320 + 300), 4);
	done(fc, &fd);
}

static void test_full_table(void)
{
	struct fence *fc = make(0, 3);
	struct fence_stats st;
	struct fence_dom fd;

	fence_dom_init(fc, &fd, &gens[1]);
	for (uint32_t t = 0; t < 5; t++)
		CHECK_INT(pick(fc, &fd, t, FULLCHAIN, 10), 1);
	fence_get_stats(fc, &st);
	CHECK_INT(st.records, 3);
	CHECK_INT(st.untracked, 2);
	/* Expired records make room again. */
	CHECK_INT(pick(fc, &fd, 9, FULLCHAIN, 5000), 1);
	fence_get_stats(fc, &st);
	CHECK_INT(st.records, 1);
	done(fc, &fd);
}

static void test_domain_removed(void)
{
	struct fence *fc = make(300, 100);
	struct fence_dom a, b;

	fence_dom_init(fc, &a, &gens[1]);
	fence_dom_init(fc, &b, &gens[5]);
	CHECK_INT(pick(fc, &a, 1, PRIVKEY, 0), 1);
	CHECK_INT(pick(fc, &b, 1, PRIVKEY, 0), 5);
	fence_rotate(fc, &a, &gens[2], 10);
	/* rmdir in the middle of a fence: a's records and references go,
	 * b's stay. */
	fence_dom_clear(fc, &a);
	CHECK_INT(gens[1].refs, 0);
	CHECK_INT(gens[2].refs, 0);
	CHECK_INT(pick(fc, &b, 1, FULLCHAIN, 20), 5);
	done(fc, &b);
}

static void test_shutdown_mid_fence(void)
{
	struct fence *fc = make(300, 100);
	struct fence_dom fd;

	fence_dom_init(fc, &fd, &gens[1]);
	CHECK_INT(pick(fc, &fd, 1, PRIVKEY, 0), 1);
	fence_rotate(fc, &fd, &gens[2], 10);
	CHECK_INT(pick(fc, &fd, 2, PRIVKEY, 20), 1);
	/* The mount ends with records alive: clearing the domain and freeing
	 * the fence releases everything (done() checks the counts). */
	done(fc, &fd);
}

/*
 * The sequence that tore pairs with 100 readers on a slow (sanitizer) build:
 * a request thread reads the clock, then waits for the fence's lock while
 * another thread's open makes a record; the waiter's "now" is older than
 * that record's start, and walking the shared bucket it took the record for
 * expired (now - start wrapped around) and dropped it. The reader's second
 * half then got the newest generation. One bucket makes every record share
 * the walker's chain, as two threads whose ids hash alike do.
 */
static void test_clock_read_before_lock(void)
{
	struct fence *fc = make_buckets(0, 100, 0, 1);
	struct fence_stats st;
	struct fence_dom fd;

	fence_dom_init(fc, &fd, &gens[1]);
	/* Thread 20's open read the clock at 999 and is waiting for the lock. */
	CHECK_INT(pick(fc, &fd, 10, FULLCHAIN, 1000), 1);
	fence_rotate(fc, &fd, &gens[2], 1001);
	CHECK_INT(pick(fc, &fd, 20, PRIVKEY, 999), 2);
	/* Thread 10's record survived: its key matches its chain. */
	CHECK_INT(pick(fc, &fd, 10, PRIVKEY, 1002), 1);
	fence_get_stats(fc, &st);
	CHECK_INT(st.records, 2);
	/* The same with the record table full: the sweep for room, with an
	 * old reading, drops nobody's live record either. */
	fence_rotate(fc, &fd, &gens[3], 1003);
	CHECK_INT(pick(fc, &fd, 10, CERT, 1004), 3);
	fence_rotate(fc, &fd, &gens[4], 1005);
	done(fc, &fd);

	fc = make_buckets(0, 1, 0, 0);
	fence_dom_init(fc, &fd, &gens[1]);
	CHECK_INT(pick(fc, &fd, 10, FULLCHAIN, 1000), 1);
	fence_rotate(fc, &fd, &gens[2], 1001);
	CHECK_INT(pick(fc, &fd, 20, PRIVKEY, 999), 2); /* untracked: table full */
	CHECK_INT(pick(fc, &fd, 10, PRIVKEY, 1002), 1);
	fence_get_stats(fc, &st);
	CHECK_INT(st.untracked, 1);
	done(fc, &fd);
}

/*
 * A pair slower than the window gets the newest generation for its second
 * half (torn if the domain rotated meanwhile: the window is the promise),
 * but only that one: the thread stays in phase, so its next pairs, key
 * first as before, match across rotations again.
 */
static void test_slow_pair_keeps_phase(void)
{
	struct fence *fc = make(0, 100);
	struct fence_stats st;
	struct fence_dom fd;

	fence_dom_init(fc, &fd, &gens[1]);
	CHECK_INT(pick(fc, &fd, 7, PRIVKEY, 0), 1);
	fence_rotate(fc, &fd, &gens[2], 100);
	CHECK_INT(pick(fc, &fd, 7, FULLCHAIN, 2500), 2);
	fence_get_stats(fc, &st);
	CHECK_INT(st.late, 1);
	for (int n = 0; n < 4; n++) {
		uint64_t t = 3000 + 1000 * (uint64_t)n;
		int k = pick(fc, &fd, 7, PRIVKEY, t);

		fence_rotate(fc, &fd, &gens[3 + n], t + 1);
		CHECK_INT(pick(fc, &fd, 7, FULLCHAIN, t + 2), k);
	}
	/* Idle past forget_ms, the thread starts afresh. */
	fence_rotate(fc, &fd, &gens[8], 8000);
	CHECK_INT(pick(fc, &fd, 7, FULLCHAIN, 8001), 8);
	fence_rotate(fc, &fd, &gens[9], 8002);
	CHECK_INT(pick(fc, &fd, 7, FULLCHAIN, 8001 + 60000), 9);
	fence_get_stats(fc, &st);
	CHECK_INT(st.records, 1);
	done(fc, &fd);
}

int main(void)
{
	test_either_order();
	test_threads_interleaved();
	test_one_file_reader();
	test_pair_window();
	test_grace();
	test_expiry_late();
	test_rotation_inside_grace();
	test_lookup_asked_twice();
	test_full_table();
	test_domain_removed();
	test_shutdown_mid_fence();
	test_clock_read_before_lock();
	test_slow_pair_keeps_phase();
	CHECK_DONE();
}
