/* The CPU-cache model's store trap (see cpucache.h and docs/devdax.md). */
#define _GNU_SOURCE
#include "cpucache.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#define CC_HAVE_NT 1
#endif

#define MAX_DIRS 16
#define MAX_DEVS 256
#define MAX_MAPS 256

#define PG_RO 0     /* write-protected: the next store traps */
#define PG_RW 1     /* captured since the last flush: stores run free */
#define PG_GONE 2   /* unmapped */
#define PG_USER_RO 3 /* the program took write permission away (mprotect) */

struct dir {
    int used;
    int refs;
    int lock_fd;
    int depth;                  /* nesting of cc_lock in this process */
    char path[PATH_MAX];
};

struct dev {
    int used;
    int refs;
    int dir;
    uint64_t capacity;
    uint8_t *state;             /* capacity / 64 bytes */
    uint8_t *undo;              /* capacity bytes */
    char name[256];
};

struct map {
    int used;
    int dir;
    uintptr_t addr;
    uint64_t len;
    uint32_t npages;
    uint32_t unit;              /* pages per trap unit */
    uint32_t nseg;
    struct cc_seg *segs;        /* by offset */
    uint32_t *by_dev;           /* segment indexes ordered by (dev, dpa) */
    uint8_t *prot;              /* PG_* per page */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dir g_dirs[MAX_DIRS];
static struct dev g_devs[MAX_DEVS];
static struct map g_maps[MAX_MAPS];
static int g_installed;
static struct sigaction g_prev;
static volatile uint64_t g_stats[4];

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static sigaction_fn real_sigaction(void)
{
    static sigaction_fn fn;
    if (!fn) {
        fn = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
        if (!fn)
            fn = (sigaction_fn)dlsym(RTLD_DEFAULT, "sigaction");
    }
    return fn;
}

/* raw system calls: inside the interposer, open/mmap/munmap are wrappers that
 * may take the lock this file holds */
static int sys_mprotect(uintptr_t a, uint64_t n, int prot)
{
    return (int)syscall(SYS_mprotect, (void *)a, (size_t)n, prot);
}

static int sys_open(const char *path, int flags, int mode)
{
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

static void *sys_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off)
{
    long r = syscall(SYS_mmap, a, n, prot, flags, fd, off);
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return MAP_FAILED;
    }
    return (void *)r;
}

static int sys_munmap(void *a, size_t n)
{
    return (int)syscall(SYS_munmap, a, n);
}

/* ---- copies ------------------------------------------------------------------------------ */

static void copy_nt(uint8_t *dst, const uint8_t *src, size_t n)
{
#ifdef CC_HAVE_NT
    if ((((uintptr_t)dst | (uintptr_t)src | n) & 63) == 0) {
        __m128i *d = (__m128i *)dst;
        const __m128i *s = (const __m128i *)src;
        for (size_t i = 0; i < n / 16; i += 4) {
            __m128i a = _mm_load_si128(s + i), b = _mm_load_si128(s + i + 1);
            __m128i c = _mm_load_si128(s + i + 2), e = _mm_load_si128(s + i + 3);
            _mm_stream_si128(d + i, a);
            _mm_stream_si128(d + i + 1, b);
            _mm_stream_si128(d + i + 2, c);
            _mm_stream_si128(d + i + 3, e);
        }
        return;
    }
#endif
    memcpy(dst, src, n);
}

static void fence(void)
{
#ifdef CC_HAVE_NT
    _mm_sfence();
#else
    __sync_synchronize();
#endif
}

static int all_zero(const uint8_t *p, size_t n)
{
    const uint64_t *q = (const uint64_t *)p;
    uint64_t acc = 0;
    for (size_t i = 0; i < n / 8; i++)
        acc |= q[i];
    return acc == 0;
}

static int all_zero_any(const uint8_t *p, size_t n)
{
    size_t i = 0;
    for (; i < n && ((uintptr_t)(p + i) & 7); i++)
        if (p[i])
            return 0;
    size_t words = (n - i) / 8;
    if (!all_zero(p + i, words * 8))
        return 0;
    for (i += words * 8; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static int all_set(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!p[i])
            return 0;
    return 1;
}

/* ---- locking ------------------------------------------------------------------------------- */

static void dir_lock(int d)
{
    struct dir *x = &g_dirs[d];
    if (x->depth++ == 0)
        while (flock(x->lock_fd, LOCK_EX) < 0 && errno == EINTR)
            ;
}

static void dir_unlock(int d)
{
    struct dir *x = &g_dirs[d];
    if (--x->depth == 0)
        flock(x->lock_fd, LOCK_UN);
}

int cc_lock(int d)
{
    if (d < 0 || d >= MAX_DIRS || !g_dirs[d].used)
        return -EINVAL;
    pthread_mutex_lock(&g_mu);
    dir_lock(d);
    return 0;
}

int cc_unlock(int d)
{
    if (d < 0 || d >= MAX_DIRS || !g_dirs[d].used)
        return -EINVAL;
    dir_unlock(d);
    pthread_mutex_unlock(&g_mu);
    return 0;
}

/* ---- capture (the store trap) --------------------------------------------------------------- */

/* the segment of map m holding mapping offset off (binary search) */
static const struct cc_seg *seg_at(const struct map *m, uint64_t off)
{
    uint32_t lo = 0, hi = m->nseg;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const struct cc_seg *s = &m->segs[mid];
        if (off < s->off)
            hi = mid;
        else if (off >= s->off + s->len)
            lo = mid + 1;
        else
            return s;
    }
    return NULL;
}

/* save the clean lines of [off, off+n) (inside one segment) to the undo file */
static void capture_range(const struct map *m, const struct cc_seg *s, uint64_t off, uint64_t n)
{
    struct dev *d = &g_devs[s->dev];
    uint64_t dpa = s->dpa + (off - s->off);
    const uint8_t *src = (const uint8_t *)(m->addr + off);
    uint8_t *st = d->state + dpa / CC_LINE;
    uint64_t lines = n / CC_LINE;
    if (all_zero_any(st, lines)) {
        copy_nt(d->undo + dpa, src, n);
        fence();
        memset(st, 1, lines);
        g_stats[1] += n;
        return;
    }
    if (all_set(st, lines))
        return;
    for (uint64_t i = 0; i < lines; i++) {
        if (st[i])
            continue;
        memcpy(d->undo + dpa + i * CC_LINE, src + i * CC_LINE, CC_LINE);
        fence();
        st[i] = 1;
        g_stats[1] += CC_LINE;
    }
}

static void capture_page(const struct map *m, uint32_t page)
{
    uint64_t off = (uint64_t)page * CC_PAGE, end = off + CC_PAGE;
    while (off < end) {
        const struct cc_seg *s = seg_at(m, off);
        if (!s)
            return;
        uint64_t take = s->off + s->len - off;
        if (take > end - off)
            take = end - off;
        capture_range(m, s, off, take);
        off += take;
    }
}

static struct map *map_at(uintptr_t a)
{
    for (int i = 0; i < MAX_MAPS; i++) {
        struct map *m = &g_maps[i];
        if (m->used && a >= m->addr && a < m->addr + m->len)
            return m;
    }
    return NULL;
}

/* 1 when the fault at a was a first store to a trapped page (now writable) */
static int handle_fault(uintptr_t a)
{
    pthread_mutex_lock(&g_mu);
    struct map *m = map_at(a);
    if (!m) {
        pthread_mutex_unlock(&g_mu);
        return 0;
    }
    uint32_t page = (uint32_t)((a - m->addr) / CC_PAGE);
    if (m->prot[page] == PG_GONE || m->prot[page] == PG_USER_RO) {
        pthread_mutex_unlock(&g_mu);
        return 0;
    }
    if (m->prot[page] == PG_RW) {              /* another thread got there first */
        pthread_mutex_unlock(&g_mu);
        return 1;
    }
    g_stats[0]++;
    uint32_t u0 = page - page % m->unit, u1 = u0 + m->unit;
    if (u1 > m->npages)
        u1 = m->npages;
    dir_lock(m->dir);
    for (uint32_t p = u0; p < u1; p++)
        if (m->prot[p] == PG_RO)
            capture_page(m, p);
    dir_unlock(m->dir);
    uint32_t p = u0;
    while (p < u1) {
        if (m->prot[p] != PG_RO) {
            p++;
            continue;
        }
        uint32_t q = p;
        while (q < u1 && m->prot[q] == PG_RO)
            m->prot[q++] = PG_RW;
        sys_mprotect(m->addr + (uint64_t)p * CC_PAGE, (uint64_t)(q - p) * CC_PAGE, PROT_READ | PROT_WRITE);
        p = q;
    }
    pthread_mutex_unlock(&g_mu);
    return 1;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    if (si && si->si_code == SEGV_ACCERR && handle_fault((uintptr_t)si->si_addr)) {
        errno = saved;
        return;
    }
    errno = saved;
    if (g_prev.sa_flags & SA_SIGINFO) {
        if (g_prev.sa_sigaction) {
            g_prev.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler != SIG_IGN) {
        g_prev.sa_handler(sig);
        return;
    }
    /* default action: restore it; the faulting instruction faults again */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    real_sigaction()(SIGSEGV, &dfl, NULL);
    g_installed = 0;
}

static int install(void)
{
    struct sigaction sa, cur;
    if (real_sigaction()(SIGSEGV, NULL, &cur) < 0)
        return -errno;
    if (g_installed && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_segv)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (real_sigaction()(SIGSEGV, &sa, &g_prev) < 0)
        return -errno;
    if ((g_prev.sa_flags & SA_SIGINFO) && g_prev.sa_sigaction == on_segv)
        memset(&g_prev, 0, sizeof g_prev);          /* never chain to ourselves */
    g_installed = 1;
    return 0;
}

int cc_reinstall(void)
{
    pthread_mutex_lock(&g_mu);
    int rc = install();
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int cc_sigaction_hook(const void *act_, void *old_)
{
    const struct sigaction *act = act_;
    struct sigaction *old = old_;
    if (!g_installed)
        return 0;
    if (old)
        *old = g_prev;
    if (act)
        g_prev = *act;
    return 1;
}

/* ---- directories and devices ------------------------------------------------------------------ */

int cc_dir(const char *path)
{
    if (!path || strlen(path) >= PATH_MAX - 8)
        return -EINVAL;
    pthread_mutex_lock(&g_mu);
    int free_slot = -1;
    for (int i = 0; i < MAX_DIRS; i++) {
        if (g_dirs[i].used && strcmp(g_dirs[i].path, path) == 0) {
            g_dirs[i].refs++;
            pthread_mutex_unlock(&g_mu);
            return i;
        }
        if (!g_dirs[i].used && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) {
        pthread_mutex_unlock(&g_mu);
        return -ENOSPC;
    }
    char lock[PATH_MAX];
    strcpy(lock, path);
    strcat(lock, "/lock");
    int fd = sys_open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        pthread_mutex_unlock(&g_mu);
        return -e;
    }
    struct dir *x = &g_dirs[free_slot];
    x->used = 1;
    x->refs = 1;
    x->lock_fd = fd;
    x->depth = 0;
    strcpy(x->path, path);
    pthread_mutex_unlock(&g_mu);
    return free_slot;
}

static void *map_file(const char *path, uint64_t off, uint64_t len, int *err)
{
    int fd = sys_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    void *p = sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
    *err = p == MAP_FAILED ? -errno : 0;
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

int cc_device(int d, const char *name, uint64_t capacity)
{
    if (d < 0 || d >= MAX_DIRS || !g_dirs[d].used || !name || strlen(name) >= 200 || !capacity
        || capacity % CC_PAGE)
        return -EINVAL;
    pthread_mutex_lock(&g_mu);
    int free_slot = -1;
    for (int i = 0; i < MAX_DEVS; i++) {
        if (g_devs[i].used && g_devs[i].dir == d && strcmp(g_devs[i].name, name) == 0) {
            int rc = g_devs[i].capacity == capacity ? i : -EINVAL;
            if (rc >= 0)
                g_devs[i].refs++;
            pthread_mutex_unlock(&g_mu);
            return rc;
        }
        if (!g_devs[i].used && free_slot < 0)
            free_slot = i;
    }
    int rc = -ENOSPC;
    if (free_slot < 0)
        goto out;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.lines", g_dirs[d].path, name);
    int fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    struct cc_header h;
    struct stat st;
    ssize_t got = pread(fd, &h, sizeof h, 0);
    int ok = got == (ssize_t)sizeof h && fstat(fd, &st) == 0 && memcmp(h.magic, CC_MAGIC, CC_MAGIC_LEN) == 0
             && h.version == 1 && h.line == CC_LINE && h.capacity == capacity && h.data_offset == CC_HEADER
             && (uint64_t)st.st_size >= CC_HEADER + capacity / CC_LINE;
    close(fd);
    if (!ok) {
        rc = -EBADMSG;
        goto out;
    }
    int err = 0;
    uint8_t *state = map_file(path, CC_HEADER, capacity / CC_LINE, &err);
    if (!state) {
        rc = err;
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s.undo", g_dirs[d].path, name);
    uint8_t *undo = map_file(path, 0, capacity, &err);
    if (!undo) {
        sys_munmap(state, capacity / CC_LINE);
        rc = err;
        goto out;
    }
    struct dev *x = &g_devs[free_slot];
    x->used = 1;
    x->refs = 1;
    g_dirs[d].refs++;
    x->dir = d;
    x->capacity = capacity;
    x->state = state;
    x->undo = undo;
    strcpy(x->name, name);
    rc = free_slot;
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static void dir_put(int d)
{
    struct dir *x = &g_dirs[d];
    if (x->used && --x->refs == 0 && x->depth == 0) {
        close(x->lock_fd);
        memset(x, 0, sizeof *x);
    }
}

static void dev_put(int i)
{
    struct dev *x = &g_devs[i];
    if (x->used && --x->refs == 0) {
        sys_munmap(x->state, x->capacity / CC_LINE);
        sys_munmap(x->undo, x->capacity);
        int d = x->dir;
        memset(x, 0, sizeof *x);
        dir_put(d);
    }
}

/* drop a reference taken by cc_dir / cc_device */
int cc_dir_release(int d)
{
    if (d < 0 || d >= MAX_DIRS)
        return -EINVAL;
    pthread_mutex_lock(&g_mu);
    dir_put(d);
    pthread_mutex_unlock(&g_mu);
    return 0;
}

int cc_device_release(int i)
{
    if (i < 0 || i >= MAX_DEVS)
        return -EINVAL;
    pthread_mutex_lock(&g_mu);
    dev_put(i);
    pthread_mutex_unlock(&g_mu);
    return 0;
}

/* ---- mappings ------------------------------------------------------------------------------------ */

static const struct cc_seg *g_sort_segs;

static int cmp_by_dev(const void *a, const void *b)
{
    const struct cc_seg *x = &g_sort_segs[*(const uint32_t *)a], *y = &g_sort_segs[*(const uint32_t *)b];
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return x->dpa < y->dpa ? -1 : x->dpa > y->dpa;
}

int cc_register(void *addr, uint64_t len, int d, uint32_t nseg, const struct cc_seg *segs, uint32_t unit)
{
    uintptr_t a = (uintptr_t)addr;
    if (!a || a % CC_PAGE || !len || len % CC_PAGE || !nseg || d < 0 || d >= MAX_DIRS || !g_dirs[d].used)
        return -EINVAL;
    if (len / CC_PAGE > UINT32_MAX)
        return -EINVAL;
    for (uint32_t i = 0; i < nseg; i++) {
        const struct cc_seg *s = &segs[i];
        if (s->off % CC_PAGE || s->len % CC_PAGE || s->dpa % CC_PAGE || s->off + s->len > len
            || (i && s->off < segs[i - 1].off + segs[i - 1].len) || s->dev >= MAX_DEVS
            || !g_devs[s->dev].used || s->dpa + s->len > g_devs[s->dev].capacity)
            return -EINVAL;
    }
    struct cc_seg *copy = malloc(sizeof *copy * nseg);
    uint32_t *idx = malloc(sizeof *idx * nseg);
    uint8_t *prot = calloc(len / CC_PAGE, 1);
    if (!copy || !idx || !prot) {
        free(copy);
        free(idx);
        free(prot);
        return -ENOMEM;
    }
    memcpy(copy, segs, sizeof *copy * nseg);
    for (uint32_t i = 0; i < nseg; i++)
        idx[i] = i;
    pthread_mutex_lock(&g_mu);
    g_sort_segs = copy;
    qsort(idx, nseg, sizeof *idx, cmp_by_dev);
    int slot = -1;
    for (int i = 0; i < MAX_MAPS; i++)
        if (!g_maps[i].used) {
            slot = i;
            break;
        }
    int rc = install();
    if (slot < 0 || rc < 0) {
        pthread_mutex_unlock(&g_mu);
        free(copy);
        free(idx);
        free(prot);
        return slot < 0 ? -ENOSPC : rc;
    }
    if (sys_mprotect(a, len, PROT_READ) < 0) {
        rc = -errno;
        pthread_mutex_unlock(&g_mu);
        free(copy);
        free(idx);
        free(prot);
        return rc;
    }
    struct map *m = &g_maps[slot];
    g_dirs[d].refs++;
    for (uint32_t i = 0; i < nseg; i++)
        g_devs[copy[i].dev].refs++;
    m->used = 1;
    m->dir = d;
    m->addr = a;
    m->len = len;
    m->npages = (uint32_t)(len / CC_PAGE);
    m->unit = unit ? unit : 128;
    m->nseg = nseg;
    m->segs = copy;
    m->by_dev = idx;
    m->prot = prot;
    g_stats[3]++;
    pthread_mutex_unlock(&g_mu);
    return slot;
}

/* lines of every RW page of m in [p0, p1) become clean (their stores durable) */
static void evict_pages(struct map *m, uint32_t p0, uint32_t p1)
{
    for (uint32_t p = p0; p < p1; p++) {
        if (m->prot[p] != PG_RW)
            continue;
        uint64_t off = (uint64_t)p * CC_PAGE, end = off + CC_PAGE;
        while (off < end) {
            const struct cc_seg *s = seg_at(m, off);
            if (!s)
                break;
            uint64_t take = s->off + s->len - off;
            if (take > end - off)
                take = end - off;
            struct dev *d = &g_devs[s->dev];
            memset(d->state + (s->dpa + off - s->off) / CC_LINE, 0, take / CC_LINE);
            off += take;
        }
    }
}

static void free_map(struct map *m)
{
    for (uint32_t i = 0; i < m->nseg; i++)
        dev_put((int)m->segs[i].dev);
    dir_put(m->dir);
    free(m->segs);
    free(m->by_dev);
    free(m->prot);
    memset(m, 0, sizeof *m);
}

int cc_unregister(int i, int mode)
{
    if (i < 0 || i >= MAX_MAPS)
        return -EINVAL;
    pthread_mutex_lock(&g_mu);
    struct map *m = &g_maps[i];
    if (!m->used) {
        pthread_mutex_unlock(&g_mu);
        return -EINVAL;
    }
    if (mode == CC_EVICT) {
        dir_lock(m->dir);
        evict_pages(m, 0, m->npages);
        dir_unlock(m->dir);
    }
    free_map(m);
    pthread_mutex_unlock(&g_mu);
    return 0;
}

int cc_unregister_all(int mode)
{
    for (int i = 0; i < MAX_MAPS; i++)
        if (g_maps[i].used)
            cc_unregister(i, mode);
    return 0;
}

int cc_unmap_range(void *addr, uint64_t len, int mode)
{
    uintptr_t a = (uintptr_t)addr, e = a + len;
    int hit = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < MAX_MAPS; i++) {
        struct map *m = &g_maps[i];
        if (!m->used || e <= m->addr || a >= m->addr + m->len)
            continue;
        hit = 1;
        uintptr_t lo = a > m->addr ? a : m->addr, hi = e < m->addr + m->len ? e : m->addr + m->len;
        uint32_t p0 = (uint32_t)((lo - m->addr) / CC_PAGE);
        uint32_t p1 = (uint32_t)((hi - m->addr + CC_PAGE - 1) / CC_PAGE);
        if (mode == CC_EVICT) {
            dir_lock(m->dir);
            evict_pages(m, p0, p1);
            dir_unlock(m->dir);
        }
        memset(m->prot + p0, PG_GONE, p1 - p0);
        uint32_t live = 0;
        for (uint32_t p = 0; p < m->npages && !live; p++)
            live = m->prot[p] != PG_GONE;
        if (!live)
            free_map(m);
    }
    pthread_mutex_unlock(&g_mu);
    return hit;
}

/* mprotect(2) of a registered range by the program: with write permission
 * its pages trap again (the caller applies PROT_READ); without, a store is
 * the program's own fault */
int cc_protect(void *addr, uint64_t len, int writable)
{
    uintptr_t a = (uintptr_t)addr, e = a + len;
    int hit = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < MAX_MAPS; i++) {
        struct map *m = &g_maps[i];
        if (!m->used || e <= m->addr || a >= m->addr + m->len)
            continue;
        hit = 1;
        uintptr_t lo = a > m->addr ? a : m->addr, hi = e < m->addr + m->len ? e : m->addr + m->len;
        for (uint32_t p = (uint32_t)((lo - m->addr) / CC_PAGE); p < (hi - m->addr + CC_PAGE - 1) / CC_PAGE; p++) {
            if (m->prot[p] == PG_GONE)
                continue;
            /* stores made so far stay as they are (dirty or clean) */
            m->prot[p] = writable ? PG_RO : PG_USER_RO;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return hit;
}

/* ---- flushes --------------------------------------------------------------------------------------- */

/* write-protect the pages of every local mapping that show [dpa, dpa+n) of dev */
static void reprotect(uint32_t dev, uint64_t dpa, uint64_t n, const struct map *skip)
{
    for (int i = 0; i < MAX_MAPS; i++) {
        struct map *m = &g_maps[i];
        if (!m->used || m == skip)
            continue;
        /* first segment of dev whose end is beyond dpa */
        uint32_t lo = 0, hi = m->nseg;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            const struct cc_seg *s = &m->segs[m->by_dev[mid]];
            if (s->dev < dev || (s->dev == dev && s->dpa + s->len <= dpa))
                lo = mid + 1;
            else
                hi = mid;
        }
        for (uint32_t k = lo; k < m->nseg; k++) {
            const struct cc_seg *s = &m->segs[m->by_dev[k]];
            if (s->dev != dev || s->dpa >= dpa + n)
                break;
            uint64_t a = dpa > s->dpa ? dpa : s->dpa;
            uint64_t b = dpa + n < s->dpa + s->len ? dpa + n : s->dpa + s->len;
            uint32_t p0 = (uint32_t)((s->off + a - s->dpa) / CC_PAGE);
            uint32_t p1 = (uint32_t)((s->off + b - s->dpa + CC_PAGE - 1) / CC_PAGE);
            uint32_t p = p0;
            while (p < p1) {
                if (m->prot[p] != PG_RW) {
                    p++;
                    continue;
                }
                uint32_t q = p;
                while (q < p1 && m->prot[q] == PG_RW)
                    m->prot[q++] = PG_RO;
                sys_mprotect(m->addr + (uint64_t)p * CC_PAGE, (uint64_t)(q - p) * CC_PAGE, PROT_READ);
                p = q;
            }
        }
    }
}

static void clean_locked(uint32_t dev, uint64_t dpa, uint64_t n, const struct map *skip)
{
    struct dev *d = &g_devs[dev];
    uint64_t l0 = dpa / CC_LINE, l1 = (dpa + n + CC_LINE - 1) / CC_LINE;
    if (l1 > d->capacity / CC_LINE)
        l1 = d->capacity / CC_LINE;
    if (l1 <= l0)
        return;
    /* write-protect first: a store racing with the flush traps and waits */
    reprotect(dev, l0 * CC_LINE, (l1 - l0) * CC_LINE, skip);
    fence();
    /* clear in 4 KiB chunks, only where something is set (holes stay holes) */
    uint64_t i = l0;
    while (i < l1) {
        uint64_t j = (i / CC_PAGE + 1) * CC_PAGE;
        if (j > l1)
            j = l1;
        if (!all_zero_any(d->state + i, j - i))
            memset(d->state + i, 0, j - i);
        i = j;
    }
    g_stats[2] += l1 - l0;
}

int cc_clean(int dev, uint64_t dpa, uint64_t n)
{
    if (dev < 0 || dev >= MAX_DEVS || !g_devs[dev].used || dpa >= g_devs[dev].capacity)
        return -EINVAL;
    if (!n)
        return 0;
    pthread_mutex_lock(&g_mu);
    int d = g_devs[dev].dir;
    dir_lock(d);
    clean_locked((uint32_t)dev, dpa, n, NULL);
    dir_unlock(d);
    pthread_mutex_unlock(&g_mu);
    return 0;
}

/* lines of [dpa, dpa+n) (line aligned) are about to be stored to by someone
 * who is not a trapped mapping: old holds what they hold now */
int cc_capture_buf(int dev, uint64_t dpa, const void *old, uint64_t n)
{
    if (dev < 0 || dev >= MAX_DEVS || !g_devs[dev].used || dpa % CC_LINE || n % CC_LINE
        || dpa + n > g_devs[dev].capacity)
        return -EINVAL;
    pthread_mutex_lock(&g_mu);
    struct dev *d = &g_devs[dev];
    dir_lock(d->dir);
    for (uint64_t i = 0; i < n / CC_LINE; i++) {
        uint8_t *st = d->state + dpa / CC_LINE + i;
        if (*st)
            continue;
        memcpy(d->undo + dpa + i * CC_LINE, (const uint8_t *)old + i * CC_LINE, CC_LINE);
        fence();
        *st = 1;
    }
    dir_unlock(d->dir);
    pthread_mutex_unlock(&g_mu);
    return 0;
}

/* clwb + sfence of a virtual range: 1 when some of it was a trapped mapping */
int cc_persist(const void *addr, uint64_t n)
{
    uintptr_t a = (uintptr_t)addr, e = a + n;
    int hit = 0;
    if (!n)
        return 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < MAX_MAPS; i++) {
        struct map *m = &g_maps[i];
        if (!m->used || e <= m->addr || a >= m->addr + m->len)
            continue;
        hit = 1;
        uint64_t lo = (a > m->addr ? a : m->addr) - m->addr;
        uint64_t hi = (e < m->addr + m->len ? e : m->addr + m->len) - m->addr;
        lo -= lo % CC_LINE;
        hi = (hi + CC_LINE - 1) / CC_LINE * CC_LINE;
        /* this mapping's pages first, in as few mprotect calls as possible */
        uint32_t p0 = (uint32_t)(lo / CC_PAGE), p1 = (uint32_t)((hi + CC_PAGE - 1) / CC_PAGE);
        uint32_t p = p0;
        while (p < p1) {
            if (m->prot[p] != PG_RW) {
                p++;
                continue;
            }
            uint32_t q = p;
            while (q < p1 && m->prot[q] == PG_RW)
                m->prot[q++] = PG_RO;
            sys_mprotect(m->addr + (uint64_t)p * CC_PAGE, (uint64_t)(q - p) * CC_PAGE, PROT_READ);
            p = q;
        }
        dir_lock(m->dir);
        uint64_t off = lo;
        while (off < hi) {
            const struct cc_seg *s = seg_at(m, off);
            if (!s) {
                off = (off / CC_PAGE + 1) * CC_PAGE;
                continue;
            }
            uint64_t take = s->off + s->len - off;
            if (take > hi - off)
                take = hi - off;
            clean_locked(s->dev, s->dpa + off - s->off, take, m);
            off += take;
        }
        dir_unlock(m->dir);
    }
    pthread_mutex_unlock(&g_mu);
    return hit;
}

int cc_owns(const void *addr)
{
    pthread_mutex_lock(&g_mu);
    int r = map_at((uintptr_t)addr) != NULL;
    pthread_mutex_unlock(&g_mu);
    return r;
}

uint64_t cc_stat(int what)
{
    return what >= 0 && what < 4 ? g_stats[what] : 0;
}
