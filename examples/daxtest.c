/* daxtest: the seed's device-DAX program (BiscuitOS-CXL-DEVDAX), written
 * fresh: open /dev/daxX.Y, mmap it MAP_SHARED, store a pattern, load it back.
 *
 *   daxtest /dev/dax0.0 write OFF LEN PATTERN [persist]
 *   daxtest /dev/dax0.0 read OFF LEN
 *
 * OFF and LEN are byte counts (decimal or 0x hex).  PATTERN is 0x-prefixed
 * hex (its bytes, most significant first, repeated: 0xC0DE gives c0 de c0
 * de ...) or a string (repeated).  "persist" flushes the stores with
 * msync(MS_SYNC) before unmapping, so that they survive a power failure;
 * without it they sit in the CPU cache (see docs/devdax.md).  "read" prints
 * the bytes in hex.
 *
 * The mapping covers the device-aligned window around [OFF, OFF+LEN): a
 * device-DAX mapping must start and end on the device's alignment
 * (/sys/dev/char/MAJ:MIN/align, 2 MiB by default).
 *
 * Build: cc -O2 -o daxtest examples/daxtest.c
 * Run on an emulated machine: cxlemu real NAME -- ./daxtest /dev/dax0.0 write 0 64 0xC0DE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int usage(void)
{
    fprintf(stderr, "usage: daxtest DEV write OFF LEN PATTERN [persist]\n"
                    "       daxtest DEV read OFF LEN\n");
    return 2;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

static uint64_t device_align(int fd)
{
    struct stat st;
    uint64_t align = 2u << 20;
    if (fstat(fd, &st) == 0 && S_ISCHR(st.st_mode)) {
        char path[128];
        snprintf(path, sizeof path, "/sys/dev/char/%u:%u/align", major(st.st_rdev), minor(st.st_rdev));
        FILE *f = fopen(path, "r");
        if (f) {
            unsigned long long v;
            if (fscanf(f, "%llu", &v) == 1 && v)
                align = v;
            fclose(f);
        }
    }
    return align;
}

/* the pattern's bytes: hex digits after 0x, or the string itself */
static size_t pattern_bytes(const char *p, unsigned char *out, size_t cap)
{
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && p[2]) {
        const char *h = p + 2;
        size_t nd = strlen(h), n = 0;
        if (nd % 2)
            out[n++] = (unsigned char)strtoul((char[]){h[0], 0}, NULL, 16), h++, nd--;
        for (size_t i = 0; i < nd && n < cap; i += 2) {
            char b[3] = {h[i], h[i + 1], 0};
            char *end;
            unsigned long v = strtoul(b, &end, 16);
            if (*end)
                return 0;
            out[n++] = (unsigned char)v;
        }
        return n;
    }
    size_t n = strlen(p);
    if (n > cap)
        n = cap;
    memcpy(out, p, n);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return usage();
    const char *dev = argv[1], *op = argv[2];
    int writing = strcmp(op, "write") == 0;
    if (!writing && strcmp(op, "read") != 0)
        return usage();
    if ((writing && argc != 6 && argc != 7) || (!writing && argc != 5))
        return usage();
    uint64_t off, len;
    if (parse_u64(argv[3], &off) || parse_u64(argv[4], &len) || !len) {
        fprintf(stderr, "daxtest: bad offset or length\n");
        return 2;
    }
    int persist = writing && argc == 7 && strcmp(argv[6], "persist") == 0;
    if (writing && argc == 7 && !persist)
        return usage();
    unsigned char pat[256];
    size_t npat = writing ? pattern_bytes(argv[5], pat, sizeof pat) : 0;
    if (writing && !npat) {
        fprintf(stderr, "daxtest: bad pattern %s\n", argv[5]);
        return 2;
    }

    int fd = open(dev, O_RDWR);                                /* open("/dev/dax0.0") */
    if (fd < 0) {
        fprintf(stderr, "daxtest: open %s: %s\n", dev, strerror(errno));
        return 1;
    }
    uint64_t align = device_align(fd);
    uint64_t start = off / align * align;
    uint64_t size = (off + len + align - 1) / align * align - start;
    unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)start);
    if (mem == MAP_FAILED) {
        fprintf(stderr, "daxtest: mmap %s: %s\n", dev, strerror(errno));
        close(fd);
        return 1;
    }
    unsigned char *p = mem + (off - start);
    if (writing) {
        for (uint64_t i = 0; i < len; i++)                     /* plain stores */
            p[i] = pat[i % npat];
        if (persist && msync(mem, size, MS_SYNC) < 0) {
            fprintf(stderr, "daxtest: msync: %s\n", strerror(errno));
            return 1;
        }
        printf("wrote %llu bytes at %#llx%s\n", (unsigned long long)len, (unsigned long long)off,
               persist ? " (persisted)" : "");
    } else {
        printf("read %llu bytes at %#llx: ", (unsigned long long)len, (unsigned long long)off);
        for (uint64_t i = 0; i < len; i++)                     /* plain loads */
            printf("%02x", p[i]);
        printf("\n");
    }
    munmap(mem, size);
    close(fd);
    return 0;
}
