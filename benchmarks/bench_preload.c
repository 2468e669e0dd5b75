/* Stores and loads through an emulated /dev/daxX.Y under the LD_PRELOAD
 * interposer, against memcpy of the same size in the same program
 * (benchmarks/bench_preload.py compiles and runs it).
 *
 *   bench_preload DEV SIZE REPS      -> one JSON object on stdout
 *
 * store:          memcpy(map, src) with the pages already written since the
 *                 last flush;
 * store_persist:  memcpy(map, src) then msync(MS_SYNC) of the mapping (the
 *                 flush the CPU-cache model sees): every round the first
 *                 store to each page traps and saves its old lines;
 * load:           memcpy(dst, map);
 * memcpy:         memcpy(dst, src) between malloc'ed buffers.
 * Each is the best of REPS rounds, interleaved.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench_preload DEV SIZE REPS\n");
        return 2;
    }
    size_t size = strtoull(argv[2], NULL, 0);
    int reps = atoi(argv[3]);
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    unsigned char *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "mmap: %s\n", strerror(errno));
        return 1;
    }
    unsigned char *src = aligned_alloc(4096, size), *dst = aligned_alloc(4096, size);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < size / 8; i++) {          /* xorshift: incompressible data */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((uint64_t *)src)[i] = x;
    }
    memset(dst, 0, size);
    memcpy(map, src, size);                            /* first touch */
    msync(map, size, MS_SYNC);
    double best[4] = {1e9, 1e9, 1e9, 1e9};            /* memcpy, store, store_persist, load */
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < 7; k++) {
            int what = (int[]){0, 2, 0, -1, 1, 0, 3}[k];
            double t = now();
            switch (what) {
            case -1:                                   /* warm: after a flush the pages trap again */
                memcpy(map, src, size);
                KEEP(map);
                continue;
            case 0:
                memcpy(dst, src, size);
                KEEP(dst);
                break;
            case 1:
                memcpy(map, src, size);
                KEEP(map);
                break;
            case 2:
                memcpy(map, src, size);
                KEEP(map);
                msync(map, size, MS_SYNC);
                break;
            case 3:
                memcpy(dst, map, size);
                KEEP(dst);
                break;
            }
            t = now() - t;
            if (t < best[what])
                best[what] = t;
        }
    }
    int ok = memcmp(dst, src, size) == 0;
    munmap(map, size);
    close(fd);
    printf("{\"size\": %zu, \"memcpy_gbps\": %.3f, \"store_ratio\": %.3f, \"store_persist_ratio\": %.3f, "
           "\"load_ratio\": %.3f, \"verified\": %s}\n", size, size / best[0] / 1e9, best[0] / best[1],
           best[0] / best[2], best[0] / best[3], ok ? "true" : "false");
    return ok ? 0 : 1;
}
