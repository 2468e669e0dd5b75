/* cxlemu's LD_PRELOAD interposer: device nodes of an emulated machine that
 * work for unmodified programs (Debian's cxl/ndctl/daxctl, C programs).
 *
 * With CXLEMU_DEV_SOCKET=<machine>/dev.sock in the environment, open(2) of a
 * character or block device whose major is one of cxlemu's (60-63, the
 * LOCAL/EXPERIMENTAL majors the kernel model gives /dev/cxl/memN, /dev/daxX.Y,
 * /dev/ndctlN, /dev/nmemN) or of /dev/mem (1:1) returns a connection to the
 * machine's device server instead; ioctl, fstat, read/write, mmap, msync and
 * close on that descriptor are emulated:
 *
 *   /dev/cxl/memN   CXL_MEM_QUERY_COMMANDS, CXL_MEM_SEND_COMMAND -> the mailbox
 *   /dev/nmemN      ND_IOCTL_GET_CONFIG_SIZE/_DATA, SET_CONFIG_DATA -> the nvdimm
 *   /dev/daxX.Y     mmap of the device media files at the right offsets, with
 *                   the CPU-cache model (cpucache.c) and libpmem's flushes
 *   /dev/mem        pread/pwrite at host physical addresses
 *
 * Everything else goes straight to libc.  See docs/devdax.md.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include "cpucache.h"
#include "protocol.h"

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* uapi: linux/cxl_mem.h, linux/ndctl.h */
#define CXL_MEM_QUERY_COMMANDS 0x8008CE01UL
#define CXL_MEM_SEND_COMMAND 0xC030CE02UL
#define ND_CMD_GET_CONFIG_SIZE 4
#define ND_CMD_GET_CONFIG_DATA 5
#define ND_CMD_SET_CONFIG_DATA 6
#define ND_IOCTL_GET_CONFIG_SIZE 0xC00C4E04UL
#define ND_IOCTL_GET_CONFIG_DATA 0xC00C4E05UL
#define ND_IOCTL_SET_CONFIG_DATA 0xC0084E06UL
#define ND_IOCTL_MAX_BUFLEN (4u << 20)

#define EMU_MAJOR_MIN 60
#define EMU_MAJOR_MAX 63
#define MAX_FD 65536
#define MAX_SHADOWS 64

struct cxl_command_info {
    uint32_t id, flags;
    int32_t size_in, size_out;
};

struct cxl_send_command {
    uint32_t id, flags;
    union {
        struct {
            uint16_t opcode, rsvd;
        } raw;
        uint32_t rsvd;
    };
    uint32_t retval;
    struct {
        uint32_t size, rsvd;
        uint64_t payload;
    } in, out;
};

struct efd {
    int refs;                       /* descriptors sharing it (dup) */
    int kind;
    unsigned major, minor;
    struct stat64 st;
    off64_t pos;
    uint64_t size, align;
    char *cache_dir;
    pthread_mutex_t mu;
};

struct shadow {
    int used;
    uintptr_t addr;
    uint64_t len;
    int dir;
    uint32_t nfiles, npieces;
    char **paths;
    int *devs;
    struct cxld_piece *pieces;
};

/* ---- the real libc functions ---------------------------------------------------------------------- */

#define REAL(ret, name, args) static ret(*real_##name) args
REAL(int, open, (const char *, int, ...));
REAL(int, open64, (const char *, int, ...));
REAL(int, openat, (int, const char *, int, ...));
REAL(int, openat64, (int, const char *, int, ...));
REAL(int, __open_2, (const char *, int));
REAL(int, __open64_2, (const char *, int));
REAL(int, __openat_2, (int, const char *, int));
REAL(int, __openat64_2, (int, const char *, int));
REAL(int, close, (int));
REAL(int, dup, (int));
REAL(int, dup2, (int, int));
REAL(int, dup3, (int, int, int));
REAL(int, fcntl, (int, int, ...));
REAL(int, fcntl64, (int, int, ...));
REAL(int, ioctl, (int, unsigned long, ...));
REAL(void *, mmap, (void *, size_t, int, int, int, off_t));
REAL(void *, mmap64, (void *, size_t, int, int, int, off64_t));
REAL(int, munmap, (void *, size_t));
REAL(int, msync, (void *, size_t, int));
REAL(int, mprotect, (void *, size_t, int));
REAL(ssize_t, read, (int, void *, size_t));
REAL(ssize_t, write, (int, const void *, size_t));
REAL(ssize_t, pread, (int, void *, size_t, off_t));
REAL(ssize_t, pread64, (int, void *, size_t, off64_t));
REAL(ssize_t, pwrite, (int, const void *, size_t, off_t));
REAL(ssize_t, pwrite64, (int, const void *, size_t, off64_t));
REAL(off_t, lseek, (int, off_t, int));
REAL(off64_t, lseek64, (int, off64_t, int));
REAL(int, fstat, (int, struct stat *));
REAL(int, fstat64, (int, struct stat64 *));
REAL(int, __fxstat, (int, int, struct stat *));
REAL(int, __fxstat64, (int, int, struct stat64 *));
REAL(int, fstatat, (int, const char *, struct stat *, int));
REAL(int, fstatat64, (int, const char *, struct stat64 *, int));
REAL(int, sigaction, (int, const struct sigaction *, struct sigaction *));
REAL(void, pmem_persist, (const void *, size_t));
REAL(void, pmem_flush, (const void *, size_t));
REAL(void, pmem_drain, (void));
REAL(int, pmem_msync, (const void *, size_t));
REAL(int, pmem_is_pmem, (const void *, size_t));

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_sock[PATH_MAX];
static int g_active;
static int g_mode = CC_EVICT;
static uint32_t g_unit = 512;
static long g_max_pieces = 16384;
static struct efd **g_fds;
static char g_dirs[1024] = "/dev/";        /* CXLEMU_DEV_DIRS: where device nodes are */
static struct shadow g_shadows[MAX_SHADOWS];

static void *sym(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

static void resolve(void)
{
#define R(name) real_##name = sym(#name)
    R(open); R(open64); R(openat); R(openat64); R(__open_2); R(__open64_2); R(__openat_2); R(__openat64_2);
    R(close); R(dup); R(dup2); R(dup3); R(fcntl); R(fcntl64); R(ioctl); R(mmap); R(mmap64); R(munmap); R(msync); R(mprotect);
    R(read); R(write); R(pread); R(pread64); R(pwrite); R(pwrite64); R(lseek); R(lseek64);
    R(fstat); R(fstat64); R(__fxstat); R(__fxstat64); R(fstatat); R(fstatat64); R(sigaction);
    R(pmem_persist); R(pmem_flush); R(pmem_drain); R(pmem_msync); R(pmem_is_pmem);
#undef R
    const char *s = getenv("CXLEMU_DEV_SOCKET");
    if (s && *s && strlen(s) < sizeof g_sock && strrchr(s, '/')) {
        strcpy(g_sock, s);
        g_active = 1;
    }
    const char *dd = getenv("CXLEMU_DEV_DIRS");
    if (dd && *dd && strlen(dd) < sizeof g_dirs)
        strcpy(g_dirs, dd);
    const char *m = getenv("CXLEMU_PMEM_UNFLUSHED");
    if (m && strcmp(m, "keep") == 0)
        g_mode = CC_KEEP;
    const char *u = getenv("CXLEMU_TRAP_UNIT");
    if (u && *u) {
        unsigned long v = strtoul(u, NULL, 0) / CC_PAGE;
        if (v >= 1 && v <= (1u << 20))
            g_unit = (uint32_t)v;
    }
    long mc = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    if (f) {
        if (fscanf(f, "%ld", &mc) != 1)
            mc = 65530;
        fclose(f);
    }
    g_max_pieces = mc / 2 < 32768 ? mc / 2 : 32768;
    const char *p = getenv("CXLEMU_MAX_MAP_PIECES");
    if (p && *p)
        g_max_pieces = strtol(p, NULL, 0);
}

static void init(void)
{
    pthread_once(&g_once, resolve);
}

/* ---- the emulated descriptor table ----------------------------------------------------------------- */

static struct efd *efd_get(int fd)
{
    if (fd < 0 || fd >= MAX_FD || !g_fds)
        return NULL;
    return __atomic_load_n(&g_fds[fd], __ATOMIC_ACQUIRE);
}

static int efd_put(int fd, struct efd *e)
{
    if (fd < 0 || fd >= MAX_FD)
        return -1;
    pthread_mutex_lock(&g_mu);
    if (!g_fds)
        g_fds = calloc(MAX_FD, sizeof *g_fds);
    int ok = g_fds != NULL;
    if (ok)
        __atomic_store_n(&g_fds[fd], e, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_mu);
    return ok ? 0 : -1;
}

static void efd_drop(int fd)
{
    pthread_mutex_lock(&g_mu);
    struct efd *e = efd_get(fd);
    if (e) {
        __atomic_store_n(&g_fds[fd], NULL, __ATOMIC_RELEASE);
        if (--e->refs > 0)
            e = NULL;
    }
    pthread_mutex_unlock(&g_mu);
    if (!e)
        return;
    free(e->cache_dir);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* newfd now refers to what oldfd refers to (dup family) */
static void efd_dup(int oldfd, int newfd)
{
    if (newfd < 0 || newfd == oldfd)
        return;
    efd_drop(newfd);
    struct efd *e = efd_get(oldfd);
    if (!e)
        return;
    pthread_mutex_lock(&g_mu);
    e->refs++;
    pthread_mutex_unlock(&g_mu);
    if (efd_put(newfd, e) < 0) {
        pthread_mutex_lock(&g_mu);
        e->refs--;
        pthread_mutex_unlock(&g_mu);
    }
}

/* ---- talking to the server ---------------------------------------------------------------------------- */

static int send_all(int s, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = send(s, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all(int s, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t r = recv(s, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* one request: header + a + b out, reply into *rep (malloc'ed, *rlen bytes);
 * returns 0 or -errno (the reply's status, or EIO when the server is gone) */
static int call(int s, uint16_t op, const void *a, size_t alen, const void *b, size_t blen, void **rep,
                size_t *rlen)
{
    struct cxld_hdr h = {CXLD_MAGIC, op, CXLD_VERSION, (uint32_t)(alen + blen), 0};
    *rep = NULL;
    *rlen = 0;
    if (send_all(s, &h, sizeof h) || (alen && send_all(s, a, alen)) || (blen && send_all(s, b, blen)))
        return -EIO;
    if (recv_all(s, &h, sizeof h) || h.magic != CXLD_MAGIC || h.len > CXLD_MAX_PAYLOAD)
        return -EIO;
    void *buf = malloc(h.len + 1);
    if (!buf)
        return -ENOMEM;
    if (h.len && recv_all(s, buf, h.len)) {
        free(buf);
        return -EIO;
    }
    ((char *)buf)[h.len] = 0;
    if (h.status) {
        free(buf);
        return h.status < 0 ? h.status : -EIO;
    }
    *rep = buf;
    *rlen = h.len;
    return 0;
}

static int call_fd(int fd, struct efd *e, uint16_t op, const void *a, size_t alen, const void *b, size_t blen,
                   void **rep, size_t *rlen)
{
    pthread_mutex_lock(&e->mu);
    int rc = call(fd, op, a, alen, b, blen, rep, rlen);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* ---- open -------------------------------------------------------------------------------------------------- */

/* is an absolute path under one of CXLEMU_DEV_DIRS (colon separated)? */
static int in_dev_dirs(const char *path)
{
    const char *p = g_dirs;
    while (*p) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n && strncmp(path, p, n) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int emulated_node(int dirfd, const char *path, struct stat64 *st)
{
    init();
    if (!g_active || !path || !*path)
        return 0;
    if (path[0] == '/' && !in_dev_dirs(path))
        return 0;
    if (path[0] != '/') {
        /* relative: only when it resolves under /dev */
        char buf[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(buf, sizeof buf) || strncmp(buf, "/dev", 4) != 0)
                return 0;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(link, buf, sizeof buf - 1);
            if (n < 4)
                return 0;
            buf[n] = 0;
            if (strncmp(buf, "/dev", 4) != 0)
                return 0;
        }
    }
    if (fstatat64(dirfd, path, st, 0) < 0)
        return 0;
    if (!S_ISCHR(st->st_mode) && !S_ISBLK(st->st_mode))
        return 0;
    unsigned ma = major(st->st_rdev), mi = minor(st->st_rdev);
    if (ma >= EMU_MAJOR_MIN && ma <= EMU_MAJOR_MAX)
        return 1;
    return S_ISCHR(st->st_mode) && ma == 1 && mi == 1;       /* /dev/mem */
}

static int emulated_open(const struct stat64 *st, int flags)
{
    int s = socket(AF_UNIX, SOCK_STREAM | ((flags & O_CLOEXEC) ? SOCK_CLOEXEC : 0), 0);
    if (s < 0)
        return -1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    int crc = -1;
    if (strlen(g_sock) < sizeof sa.sun_path) {
        strcpy(sa.sun_path, g_sock);
        crc = connect(s, (struct sockaddr *)&sa, sizeof sa);
    } else {
        /* too long for sun_path: through an O_PATH descriptor of the directory */
        const char *slash = strrchr(g_sock, '/');
        char dir[PATH_MAX];
        size_t n = (size_t)(slash - g_sock);
        memcpy(dir, g_sock, n ? n : 1);
        dir[n ? n : 1] = 0;
        int dfd = real_open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dfd, slash + 1);
            crc = connect(s, (struct sockaddr *)&sa, sizeof sa);
            real_close(dfd);
        }
    }
    if (crc < 0) {
        real_close(s);
        errno = ENXIO;
        return -1;
    }
    struct cxld_open req = {major(st->st_rdev), minor(st->st_rdev), st->st_mode & S_IFMT, (uint32_t)flags};
    void *rep;
    size_t rlen;
    int rc = call(s, CXLD_OPEN, &req, sizeof req, NULL, 0, &rep, &rlen);
    if (rc == 0 && rlen < sizeof(struct cxld_open_reply)) {
        free(rep);
        rc = -EIO;
    }
    if (rc < 0) {
        real_close(s);
        errno = -rc;
        return -1;
    }
    struct efd *e = calloc(1, sizeof *e);
    const struct cxld_open_reply *r = rep;
    if (!e) {
        free(rep);
        real_close(s);
        errno = ENOMEM;
        return -1;
    }
    e->refs = 1;
    e->kind = (int)r->kind;
    e->major = req.major;
    e->minor = req.minor;
    e->st = *st;
    e->size = r->size;
    e->align = r->align;
    e->cache_dir = strdup((const char *)rep + sizeof *r);
    pthread_mutex_init(&e->mu, NULL);
    free(rep);
    if (efd_put(s, e) < 0) {
        free(e->cache_dir);
        free(e);
        real_close(s);
        errno = EMFILE;
        return -1;
    }
    return s;
}

#define OPEN_MODE(flags)                                                         \
    mode_t mode = 0;                                                             \
    if ((flags) & O_CREAT || ((flags) & O_TMPFILE) == O_TMPFILE) {               \
        va_list ap;                                                              \
        va_start(ap, flags);                                                     \
        mode = (mode_t)va_arg(ap, int);                                          \
        va_end(ap);                                                              \
    }

int open(const char *path, int flags, ...)
{
    OPEN_MODE(flags);
    struct stat64 st;
    if (emulated_node(AT_FDCWD, path, &st))
        return emulated_open(&st, flags);
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    OPEN_MODE(flags);
    struct stat64 st;
    if (emulated_node(AT_FDCWD, path, &st))
        return emulated_open(&st, flags);
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    OPEN_MODE(flags);
    struct stat64 st;
    if (emulated_node(dirfd, path, &st))
        return emulated_open(&st, flags);
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    OPEN_MODE(flags);
    struct stat64 st;
    if (emulated_node(dirfd, path, &st))
        return emulated_open(&st, flags);
    return real_openat64(dirfd, path, flags, mode);
}

int __open_2(const char *path, int flags)
{
    struct stat64 st;
    if (emulated_node(AT_FDCWD, path, &st))
        return emulated_open(&st, flags);
    return real___open_2(path, flags);
}

int __open64_2(const char *path, int flags)
{
    struct stat64 st;
    if (emulated_node(AT_FDCWD, path, &st))
        return emulated_open(&st, flags);
    return real___open64_2(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags)
{
    struct stat64 st;
    if (emulated_node(dirfd, path, &st))
        return emulated_open(&st, flags);
    return real___openat_2(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
    struct stat64 st;
    if (emulated_node(dirfd, path, &st))
        return emulated_open(&st, flags);
    return real___openat64_2(dirfd, path, flags);
}

int close(int fd)
{
    init();
    if (efd_get(fd))
        efd_drop(fd);
    return real_close(fd);
}

int dup(int fd)
{
    init();
    int r = real_dup(fd);
    if (r >= 0 && efd_get(fd))
        efd_dup(fd, r);
    return r;
}

int dup2(int fd, int newfd)
{
    init();
    int r = real_dup2(fd, newfd);
    if (r >= 0 && fd != newfd) {
        if (efd_get(fd))
            efd_dup(fd, r);
        else
            efd_drop(r);
    }
    return r;
}

int dup3(int fd, int newfd, int flags)
{
    init();
    int r = real_dup3(fd, newfd, flags);
    if (r >= 0) {
        if (efd_get(fd))
            efd_dup(fd, r);
        else
            efd_drop(r);
    }
    return r;
}

static int do_fcntl(int (*fn)(int, int, ...), int fd, int cmd, va_list ap)
{
    init();
    long arg = va_arg(ap, long);
    int r = fn(fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && efd_get(fd))
        efd_dup(fd, r);
    return r;
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    init();
    int r = do_fcntl(real_fcntl, fd, cmd, ap);
    va_end(ap);
    return r;
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    init();
    int r = do_fcntl(real_fcntl64 ? real_fcntl64 : real_fcntl, fd, cmd, ap);
    va_end(ap);
    return r;
}

/* ---- fstat ------------------------------------------------------------------------------------------------- */

int fstat64(int fd, struct stat64 *buf)
{
    init();
    struct efd *e = efd_get(fd);
    if (e) {
        *buf = e->st;
        return 0;
    }
    return real_fstat64(fd, buf);
}

int fstat(int fd, struct stat *buf)
{
    init();
    struct efd *e = efd_get(fd);
    if (e) {
        memcpy(buf, &e->st, sizeof *buf < sizeof e->st ? sizeof *buf : sizeof e->st);
        return 0;
    }
    return real_fstat(fd, buf);
}

int __fxstat64(int ver, int fd, struct stat64 *buf)
{
    init();
    struct efd *e = efd_get(fd);
    if (e) {
        *buf = e->st;
        return 0;
    }
    return real___fxstat64(ver, fd, buf);
}

int __fxstat(int ver, int fd, struct stat *buf)
{
    init();
    struct efd *e = efd_get(fd);
    if (e) {
        memcpy(buf, &e->st, sizeof *buf < sizeof e->st ? sizeof *buf : sizeof e->st);
        return 0;
    }
    return real___fxstat(ver, fd, buf);
}

int fstatat64(int dirfd, const char *path, struct stat64 *buf, int flags)
{
    init();
    struct efd *e = (flags & AT_EMPTY_PATH) && !*path ? efd_get(dirfd) : NULL;
    if (e) {
        *buf = e->st;
        return 0;
    }
    return real_fstatat64(dirfd, path, buf, flags);
}

int fstatat(int dirfd, const char *path, struct stat *buf, int flags)
{
    init();
    struct efd *e = (flags & AT_EMPTY_PATH) && !*path ? efd_get(dirfd) : NULL;
    if (e) {
        memcpy(buf, &e->st, sizeof *buf < sizeof e->st ? sizeof *buf : sizeof e->st);
        return 0;
    }
    return real_fstatat(dirfd, path, buf, flags);
}

/* ---- ioctl -------------------------------------------------------------------------------------------------- */

static int cxl_ioctl(int fd, struct efd *e, unsigned long req, void *arg)
{
    void *rep;
    size_t rlen;
    if (req == CXL_MEM_QUERY_COMMANDS) {
        uint32_t *q = arg;
        int rc = call_fd(fd, e, CXLD_CXL_QUERY, NULL, 0, NULL, 0, &rep, &rlen);
        if (rc < 0)
            return rc;
        uint32_t total = rlen >= 8 ? ((uint32_t *)rep)[0] : 0;
        if (rlen < 8 + (size_t)total * sizeof(struct cxl_command_info)) {
            free(rep);
            return -EIO;
        }
        if (q[0] == 0) {                        /* the count only */
            q[0] = total;
        } else {
            uint32_t n = q[0] < total ? q[0] : total;
            memcpy(q + 2, (char *)rep + 8, (size_t)n * sizeof(struct cxl_command_info));
        }
        free(rep);
        return 0;
    }
    if (req == CXL_MEM_SEND_COMMAND) {
        struct cxl_send_command *c = arg;
        if (c->in.size > CXLD_MAX_PAYLOAD / 2)
            return -EINVAL;
        const void *in = c->in.size ? (const void *)(uintptr_t)c->in.payload : NULL;
        if (c->in.size && !in)
            return -EFAULT;
        int rc = call_fd(fd, e, CXLD_CXL_SEND, c, sizeof *c, in, c->in.size, &rep, &rlen);
        if (rc < 0)
            return rc;
        if (rlen < 8) {
            free(rep);
            return -EIO;
        }
        uint32_t retval = ((uint32_t *)rep)[0], n = ((uint32_t *)rep)[1];
        if (n > rlen - 8)
            n = (uint32_t)(rlen - 8);
        if (n > c->out.size)
            n = c->out.size;
        if (n && !c->out.payload) {
            free(rep);
            return -EFAULT;
        }
        if (n)
            memcpy((void *)(uintptr_t)c->out.payload, (char *)rep + 8, n);
        c->retval = retval;
        c->out.size = n;
        free(rep);
        return 0;
    }
    return -ENOTTY;
}

static int nd_ioctl(int fd, struct efd *e, unsigned long req, void *arg)
{
    void *rep;
    size_t rlen;
    uint32_t *w = arg;
    struct cxld_nd q = {0, 0, 0, 0};
    int rc;
    switch (req) {
    case ND_IOCTL_GET_CONFIG_SIZE:
        q.cmd = ND_CMD_GET_CONFIG_SIZE;
        rc = call_fd(fd, e, CXLD_ND_CMD, &q, sizeof q, NULL, 0, &rep, &rlen);
        if (rc < 0)
            return rc;
        if (rlen < 12) {
            free(rep);
            return -EIO;
        }
        memcpy(w, rep, 12);                     /* status, config_size, max_xfer */
        free(rep);
        return 0;
    case ND_IOCTL_GET_CONFIG_DATA:
        q.cmd = ND_CMD_GET_CONFIG_DATA;
        q.offset = w[0];
        q.length = w[1];
        if (q.length > ND_IOCTL_MAX_BUFLEN)
            return -EINVAL;
        rc = call_fd(fd, e, CXLD_ND_CMD, &q, sizeof q, NULL, 0, &rep, &rlen);
        if (rc < 0)
            return rc;
        if (rlen < 4 || rlen - 4 > q.length) {
            free(rep);
            return -EIO;
        }
        w[2] = ((uint32_t *)rep)[0];
        memcpy(w + 3, (char *)rep + 4, rlen - 4);
        free(rep);
        return 0;
    case ND_IOCTL_SET_CONFIG_DATA:
        q.cmd = ND_CMD_SET_CONFIG_DATA;
        q.offset = w[0];
        q.length = w[1];
        if (q.length > ND_IOCTL_MAX_BUFLEN)
            return -EINVAL;
        rc = call_fd(fd, e, CXLD_ND_CMD, &q, sizeof q, w + 2, q.length, &rep, &rlen);
        if (rc < 0)
            return rc;
        if (rlen < 4) {
            free(rep);
            return -EIO;
        }
        memcpy((char *)(w + 2) + q.length, rep, 4);     /* status after the data */
        free(rep);
        return 0;
    }
    return -ENOTTY;
}

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    init();
    struct efd *e = efd_get(fd);
    if (!e)
        return real_ioctl(fd, req, arg);
    /* the kernel's ioctl(2) takes an unsigned int command: callers that
     * pass an int (libcxl's do_cmd) sign-extend it */
    unsigned long cmd = (unsigned int)req;
    int rc = -ENOTTY;
    if (e->kind == CXLD_KIND_MEMDEV)
        rc = cxl_ioctl(fd, e, cmd, arg);
    else if (e->kind == CXLD_KIND_NMEM)
        rc = nd_ioctl(fd, e, cmd, arg);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

/* ---- read / write / lseek -------------------------------------------------------------------------------------- */

static ssize_t mem_pread(int fd, struct efd *e, void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        size_t take = n - done > (1u << 20) ? (1u << 20) : n - done;
        struct cxld_rw q = {off + done, (uint32_t)take, 0};
        void *rep;
        size_t rlen;
        int rc = call_fd(fd, e, CXLD_MEM_READ, &q, sizeof q, NULL, 0, &rep, &rlen);
        if (rc < 0) {
            if (done)
                break;
            errno = -rc;
            return -1;
        }
        if (rlen > take)
            rlen = take;
        memcpy((char *)buf + done, rep, rlen);
        free(rep);
        done += rlen;
        if (rlen < take)
            break;
    }
    return (ssize_t)done;
}

static ssize_t mem_pwrite(int fd, struct efd *e, const void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        size_t take = n - done > (1u << 20) ? (1u << 20) : n - done;
        struct cxld_rw q = {off + done, (uint32_t)take, 0};
        void *rep;
        size_t rlen;
        int rc = call_fd(fd, e, CXLD_MEM_WRITE, &q, sizeof q, (const char *)buf + done, take, &rep, &rlen);
        if (rc < 0) {
            if (done)
                break;
            errno = -rc;
            return -1;
        }
        free(rep);
        done += take;
    }
    return (ssize_t)done;
}

static ssize_t emu_pread(int fd, struct efd *e, void *buf, size_t n, off64_t off)
{
    if (e->kind != CXLD_KIND_MEM) {
        errno = EINVAL;
        return -1;
    }
    return mem_pread(fd, e, buf, n, (uint64_t)off);
}

static ssize_t emu_pwrite(int fd, struct efd *e, const void *buf, size_t n, off64_t off)
{
    if (e->kind != CXLD_KIND_MEM) {
        errno = EINVAL;
        return -1;
    }
    return mem_pwrite(fd, e, buf, n, (uint64_t)off);
}

ssize_t read(int fd, void *buf, size_t n)
{
    init();
    struct efd *e = efd_get(fd);
    if (!e)
        return real_read(fd, buf, n);
    ssize_t r = emu_pread(fd, e, buf, n, e->pos);
    if (r > 0)
        e->pos += r;
    return r;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    init();
    struct efd *e = efd_get(fd);
    if (!e)
        return real_write(fd, buf, n);
    ssize_t r = emu_pwrite(fd, e, buf, n, e->pos);
    if (r > 0)
        e->pos += r;
    return r;
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    init();
    struct efd *e = efd_get(fd);
    return e ? emu_pread(fd, e, buf, n, off) : real_pread(fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
    init();
    struct efd *e = efd_get(fd);
    return e ? emu_pread(fd, e, buf, n, off) : real_pread64(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    init();
    struct efd *e = efd_get(fd);
    return e ? emu_pwrite(fd, e, buf, n, off) : real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    init();
    struct efd *e = efd_get(fd);
    return e ? emu_pwrite(fd, e, buf, n, off) : real_pwrite64(fd, buf, n, off);
}

static off64_t emu_lseek(struct efd *e, off64_t off, int whence)
{
    if (e->kind != CXLD_KIND_MEM)
        return e->pos;                          /* noop_llseek */
    off64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? e->pos : -1;
    if (base < 0 || base + off < 0) {
        errno = EINVAL;
        return -1;
    }
    e->pos = base + off;
    return e->pos;
}

off_t lseek(int fd, off_t off, int whence)
{
    init();
    struct efd *e = efd_get(fd);
    return e ? (off_t)emu_lseek(e, off, whence) : real_lseek(fd, off, whence);
}

off64_t lseek64(int fd, off64_t off, int whence)
{
    init();
    struct efd *e = efd_get(fd);
    return e ? emu_lseek(e, off, whence) : real_lseek64(fd, off, whence);
}

/* ---- mmap of /dev/daxX.Y ----------------------------------------------------------------------------------------- */

struct layout {
    uint32_t nfiles, npieces;
    uint64_t granule;
    uint64_t *caps;
    char **paths;
    struct cxld_piece *pieces;
};

static void layout_free(struct layout *l)
{
    for (uint32_t i = 0; l->paths && i < l->nfiles; i++)
        free(l->paths[i]);
    free(l->paths);
    free(l->caps);
    free(l->pieces);
    memset(l, 0, sizeof *l);
}

static int layout_parse(const void *rep, size_t rlen, struct layout *l)
{
    const char *p = rep, *end = p + rlen;
    memset(l, 0, sizeof *l);
    if (rlen < sizeof(struct cxld_layout))
        return -EIO;
    const struct cxld_layout *h = rep;
    l->nfiles = h->nfiles;
    l->npieces = h->npieces;
    l->granule = h->granule;
    p += sizeof *h;
    if (!l->nfiles || l->nfiles > 4096 || !l->npieces)
        return -EIO;
    l->caps = calloc(l->nfiles, sizeof *l->caps);
    l->paths = calloc(l->nfiles, sizeof *l->paths);
    l->pieces = malloc(sizeof *l->pieces * l->npieces);
    if (!l->caps || !l->paths || !l->pieces)
        return -ENOMEM;
    for (uint32_t i = 0; i < l->nfiles; i++) {
        struct cxld_file f;
        if (end - p < (ptrdiff_t)sizeof f)
            return -EIO;
        memcpy(&f, p, sizeof f);
        p += sizeof f;
        size_t padded = (f.path_len + 7u) & ~7u;
        if (f.path_len == 0 || f.path_len >= PATH_MAX || end - p < (ptrdiff_t)padded)
            return -EIO;
        l->caps[i] = f.capacity;
        l->paths[i] = strndup(p, f.path_len);
        if (!l->paths[i])
            return -ENOMEM;
        p += padded;
    }
    if ((size_t)(end - p) < sizeof *l->pieces * l->npieces)
        return -EIO;
    memcpy(l->pieces, p, sizeof *l->pieces * l->npieces);
    for (uint32_t i = 0; i < l->npieces; i++)
        if (l->pieces[i].file >= l->nfiles)
            return -EIO;
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* cache-model device slots of the layout's files */
static int cache_devices(const char *cache_dir, const struct layout *l, int *dir, int *devs)
{
    *dir = cc_dir(cache_dir);
    if (*dir < 0)
        return *dir;
    for (uint32_t i = 0; i < l->nfiles; i++) {
        devs[i] = cc_device(*dir, base_name(l->paths[i]), l->caps[i]);
        if (devs[i] < 0) {
            int rc = devs[i];
            for (uint32_t k = 0; k < i; k++)
                cc_device_release(devs[k]);
            cc_dir_release(*dir);
            return rc;
        }
    }
    return 0;
}

static int shadow_writeback(struct shadow *sh, uint64_t lo, uint64_t hi, int flush);
static int shadow_range(uintptr_t a, uint64_t n, int flush, int unmap);

static void *dax_shadow(void *addr, size_t len, int prot, int flags, struct layout *l, int dir, int *devs)
{
    int slot = -1;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < MAX_SHADOWS; i++)
        if (!g_shadows[i].used) {
            slot = i;
            g_shadows[i].used = 1;
            break;
        }
    pthread_mutex_unlock(&g_mu);
    if (slot < 0) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    int fl = MAP_PRIVATE | MAP_ANONYMOUS | (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_POPULATE));
    void *p = real_mmap(addr, len, prot | PROT_WRITE, fl, -1, 0);
    if (p == MAP_FAILED) {
        g_shadows[slot].used = 0;
        return MAP_FAILED;
    }
    for (uint32_t i = 0; i < l->npieces; i++) {
        const struct cxld_piece *pc = &l->pieces[i];
        int fd = real_open(l->paths[pc->file], O_RDONLY | O_CLOEXEC);
        if (fd < 0 || real_pread(fd, (char *)p + pc->off, pc->len, (off_t)pc->file_off) != (ssize_t)pc->len) {
            int e = errno ? errno : EIO;
            if (fd >= 0)
                real_close(fd);
            real_munmap(p, len);
            g_shadows[slot].used = 0;
            errno = e;
            return MAP_FAILED;
        }
        real_close(fd);
    }
    if (!(prot & PROT_WRITE))
        real_mprotect(p, len, prot);
    struct shadow *sh = &g_shadows[slot];
    sh->addr = (uintptr_t)p;
    sh->len = len;
    sh->dir = dir;
    sh->nfiles = l->nfiles;
    sh->npieces = l->npieces;
    sh->paths = l->paths;
    sh->pieces = l->pieces;
    sh->devs = malloc(sizeof(int) * l->nfiles);
    if (sh->devs)
        memcpy(sh->devs, devs, sizeof(int) * l->nfiles);
    l->paths = NULL;                         /* owned by the shadow now */
    l->pieces = NULL;
    return p;
}

static void *dax_mmap(int fd, struct efd *e, void *addr, size_t len, int prot, int flags, off64_t off)
{
    int type = flags & 0x0f;
    if (type != MAP_SHARED && type != MAP_SHARED_VALIDATE) {
        errno = EINVAL;                     /* device-dax: "fail, attempted private mapping" */
        return MAP_FAILED;
    }
    struct cxld_map q = {(uint64_t)off, (uint64_t)len, (uint32_t)prot, (uint32_t)flags};
    void *rep;
    size_t rlen;
    int rc = call_fd(fd, e, CXLD_DAX_MAP, &q, sizeof q, NULL, 0, &rep, &rlen);
    if (rc < 0) {
        errno = -rc;
        return MAP_FAILED;
    }
    struct layout l;
    rc = layout_parse(rep, rlen, &l);
    free(rep);
    int dir = -1;
    int *devs = rc == 0 ? calloc(l.nfiles, sizeof(int)) : NULL;
    if (rc == 0 && !devs)
        rc = -ENOMEM;
    if (rc == 0)
        rc = cache_devices(e->cache_dir, &l, &dir, devs);
    if (rc < 0) {
        layout_free(&l);
        free(devs);
        errno = -rc;
        return MAP_FAILED;
    }
    int aligned = 1;
    for (uint32_t i = 0; i < l.npieces && aligned; i++)
        aligned = (l.pieces[i].off | l.pieces[i].len | l.pieces[i].file_off) % CC_PAGE == 0;
    if (!aligned || (long)l.npieces > g_max_pieces) {
        void *p = dax_shadow(addr, len, prot, flags, &l, dir, devs);
        if (p == MAP_FAILED) {                  /* else the shadow keeps the references */
            int e2 = errno;
            for (uint32_t i = 0; i < l.nfiles; i++)
                cc_device_release(devs[i]);
            cc_dir_release(dir);
            errno = e2;
        }
        layout_free(&l);
        free(devs);
        return p;
    }
    int trap = (prot & PROT_WRITE) != 0;
    int eprot = trap ? prot & ~PROT_WRITE : prot;
    int oflags = (prot & PROT_WRITE) ? O_RDWR : O_RDONLY;
    int keep = flags & (MAP_POPULATE | MAP_NORESERVE | MAP_LOCKED);
    int *fds = calloc(l.nfiles, sizeof(int));
    void *p = MAP_FAILED;
    int err = 0;
    for (uint32_t i = 0; fds && i < l.nfiles; i++) {
        fds[i] = real_open(l.paths[i], oflags | O_CLOEXEC);
        if (fds[i] < 0) {
            err = errno;
            for (uint32_t k = 0; k < i; k++)
                real_close(fds[k]);
            free(fds);
            fds = NULL;
        }
    }
    if (!fds) {
        err = err ? err : ENOMEM;
    } else if (l.npieces == 1) {
        p = real_mmap(addr, len, eprot, MAP_SHARED | keep | (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)),
                      fds[l.pieces[0].file], (off_t)l.pieces[0].file_off);
        err = errno;
    } else {
        p = real_mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
                                                | (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)), -1, 0);
        err = errno;
        for (uint32_t i = 0; p != MAP_FAILED && i < l.npieces; i++) {
            const struct cxld_piece *pc = &l.pieces[i];
            void *r = real_mmap((char *)p + pc->off, pc->len, eprot, MAP_SHARED | MAP_FIXED | keep,
                                fds[pc->file], (off_t)pc->file_off);
            if (r == MAP_FAILED) {
                err = errno;
                real_munmap(p, len);
                p = MAP_FAILED;
            }
        }
    }
    for (uint32_t i = 0; fds && i < l.nfiles; i++)
        real_close(fds[i]);
    free(fds);
    if (p != MAP_FAILED && trap) {
        struct cc_seg *segs = malloc(sizeof *segs * l.npieces);
        rc = segs ? 0 : -ENOMEM;
        for (uint32_t i = 0; segs && i < l.npieces; i++) {
            segs[i].off = l.pieces[i].off;
            segs[i].len = l.pieces[i].len;
            segs[i].dpa = l.pieces[i].file_off;
            segs[i].dev = (uint32_t)devs[l.pieces[i].file];
            segs[i].pad = 0;
        }
        if (segs)
            rc = cc_register(p, len, dir, l.npieces, segs, g_unit);   /* takes its own references */
        free(segs);
        if (rc < 0) {
            real_munmap(p, len);
            p = MAP_FAILED;
            err = -rc;
        }
    }
    for (uint32_t i = 0; i < l.nfiles; i++)
        cc_device_release(devs[i]);
    cc_dir_release(dir);
    layout_free(&l);
    free(devs);
    if (p == MAP_FAILED)
        errno = err ? err : ENOMEM;
    return p;
}

static void *do_mmap(void *addr, size_t len, int prot, int flags, int fd, off64_t off, int is64)
{
    init();
    if (g_active && (flags & MAP_FIXED) && addr) {   /* whatever was mapped there is gone */
        shadow_range((uintptr_t)addr, len, 0, 1);
        cc_unmap_range(addr, len, g_mode);
    }
    struct efd *e = (flags & MAP_ANONYMOUS) ? NULL : efd_get(fd);
    if (!e)
        return is64 ? real_mmap64(addr, len, prot, flags, fd, off) : real_mmap(addr, len, prot, flags, fd, (off_t)off);
    if (e->kind == CXLD_KIND_DAX)
        return dax_mmap(fd, e, addr, len, prot, flags, off);
    errno = ENODEV;
    return MAP_FAILED;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return do_mmap(addr, len, prot, flags, fd, off, 0);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
    return do_mmap(addr, len, prot, flags, fd, off, 1);
}

/* ---- shadow mappings (sub-page interleave): written back on msync/munmap/exit ------------------------------------ */

static int shadow_writeback(struct shadow *sh, uint64_t lo, uint64_t hi, int flush)
{
    int rc = 0;
    for (uint32_t i = 0; i < sh->npieces; i++) {
        const struct cxld_piece *pc = &sh->pieces[i];
        uint64_t a = pc->off > lo ? pc->off : lo, b = pc->off + pc->len < hi ? pc->off + pc->len : hi;
        if (a >= b)
            continue;
        uint64_t dpa = pc->file_off + (a - pc->off), n = b - a;
        const char *src = (const char *)sh->addr + a;
        int fd = real_open(sh->paths[pc->file], O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        char old[CC_LINE];
        uint64_t l0 = dpa / CC_LINE * CC_LINE;
        /* lines that changed: in keep mode their old content goes to the undo log first */
        for (uint64_t x = l0; x < dpa + n; x += CC_LINE) {
            uint64_t s = x > dpa ? x : dpa, t = x + CC_LINE < dpa + n ? x + CC_LINE : dpa + n;
            if (real_pread(fd, old, t - s, (off_t)s) != (ssize_t)(t - s))
                break;
            if (memcmp(old, src + (s - dpa), t - s) == 0)
                continue;
            if (!flush && g_mode == CC_KEEP) {
                char line[CC_LINE];
                if (real_pread(fd, line, CC_LINE, (off_t)x) == CC_LINE)
                    cc_capture_buf(sh->devs[pc->file], x, line, CC_LINE);
            }
            if (real_pwrite(fd, src + (s - dpa), t - s, (off_t)s) != (ssize_t)(t - s))
                rc = -EIO;
        }
        real_close(fd);
        if (flush || g_mode == CC_EVICT)
            cc_clean(sh->devs[pc->file], dpa, n);
    }
    return rc;
}

static int shadow_range(uintptr_t a, uint64_t n, int flush, int unmap)
{
    int hit = 0;
    for (int i = 0; i < MAX_SHADOWS; i++) {
        struct shadow *sh = &g_shadows[i];
        if (!sh->used || a + n <= sh->addr || a >= sh->addr + sh->len)
            continue;
        hit = 1;
        uint64_t lo = a > sh->addr ? a - sh->addr : 0;
        uint64_t hi = a + n < sh->addr + sh->len ? a + n - sh->addr : sh->len;
        shadow_writeback(sh, lo, hi, flush);
        if (unmap && lo == 0 && hi == sh->len) {
            for (uint32_t k = 0; k < sh->nfiles; k++) {
                free(sh->paths[k]);
                if (sh->devs)
                    cc_device_release(sh->devs[k]);
            }
            cc_dir_release(sh->dir);
            free(sh->paths);
            free(sh->pieces);
            free(sh->devs);
            memset(sh, 0, sizeof *sh);
        }
    }
    return hit;
}

int munmap(void *addr, size_t len)
{
    init();
    if (g_active) {
        shadow_range((uintptr_t)addr, len, 0, 1);
        cc_unmap_range(addr, len, g_mode);
    }
    return real_munmap(addr, len);
}

int msync(void *addr, size_t len, int flags)
{
    init();
    if (g_active) {
        int hit = shadow_range((uintptr_t)addr, len, 1, 0);
        hit |= cc_persist(addr, len);
        if (hit)
            return 0;
    }
    return real_msync(addr, len, flags);
}

int mprotect(void *addr, size_t len, int prot)
{
    init();
    if (g_active && cc_protect(addr, len, (prot & PROT_WRITE) != 0))
        prot &= ~PROT_WRITE;                 /* stores trap again (cpucache.c) */
    return real_mprotect(addr, len, prot);
}

/* ---- signals: the CPU-cache trap stays first in line for SIGSEGV --------------------------------------------------- */

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    init();
    if (sig == SIGSEGV && cc_sigaction_hook(act, old))
        return 0;
    return real_sigaction(sig, act, old);
}

sighandler_t signal(int sig, sighandler_t h)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, &old) < 0)
        return SIG_ERR;
    return old.sa_handler;
}

/* ---- libpmem: flushes the model can see ---------------------------------------------------------------------------- */

static int persist_range(const void *addr, size_t len)
{
    init();
    int hit = shadow_range((uintptr_t)addr, len, 1, 0);
    hit |= cc_persist(addr, len);
    return hit;
}

void pmem_persist(const void *addr, size_t len)
{
    if (!persist_range(addr, len) && real_pmem_persist)
        real_pmem_persist(addr, len);
}

void pmem_flush(const void *addr, size_t len)
{
    if (!persist_range(addr, len) && real_pmem_flush)
        real_pmem_flush(addr, len);
}

void pmem_drain(void)
{
    init();
    if (real_pmem_drain)
        real_pmem_drain();
}

int pmem_msync(const void *addr, size_t len)
{
    if (persist_range(addr, len))
        return 0;
    if (real_pmem_msync)
        return real_pmem_msync(addr, len);
    return real_msync((void *)((uintptr_t)addr & ~(uintptr_t)(CC_PAGE - 1)),
                      len + ((uintptr_t)addr & (CC_PAGE - 1)), MS_SYNC);
}

int pmem_is_pmem(const void *addr, size_t len)
{
    init();
    if (cc_owns(addr))
        return 1;
    return real_pmem_is_pmem ? real_pmem_is_pmem(addr, len) : 0;
}

void *pmem_memcpy_persist(void *dst, const void *src, size_t len)
{
    memcpy(dst, src, len);
    pmem_persist(dst, len);
    return dst;
}

void *pmem_memmove_persist(void *dst, const void *src, size_t len)
{
    memmove(dst, src, len);
    pmem_persist(dst, len);
    return dst;
}

void *pmem_memset_persist(void *dst, int c, size_t len)
{
    memset(dst, c, len);
    pmem_persist(dst, len);
    return dst;
}

void *pmem_memcpy_nodrain(void *dst, const void *src, size_t len)
{
    memcpy(dst, src, len);
    pmem_flush(dst, len);
    return dst;
}

void *pmem_memmove_nodrain(void *dst, const void *src, size_t len)
{
    memmove(dst, src, len);
    pmem_flush(dst, len);
    return dst;
}

void *pmem_memset_nodrain(void *dst, int c, size_t len)
{
    memset(dst, c, len);
    pmem_flush(dst, len);
    return dst;
}

#define PMEM_F_MEM_NOFLUSH (1u << 5)

void *pmem_memcpy(void *dst, const void *src, size_t len, unsigned flags)
{
    memcpy(dst, src, len);
    if (!(flags & PMEM_F_MEM_NOFLUSH))
        pmem_flush(dst, len);
    return dst;
}

void *pmem_memmove(void *dst, const void *src, size_t len, unsigned flags)
{
    memmove(dst, src, len);
    if (!(flags & PMEM_F_MEM_NOFLUSH))
        pmem_flush(dst, len);
    return dst;
}

void *pmem_memset(void *dst, int c, size_t len, unsigned flags)
{
    memset(dst, c, len);
    if (!(flags & PMEM_F_MEM_NOFLUSH))
        pmem_flush(dst, len);
    return dst;
}

/* ---- process lifetime ------------------------------------------------------------------------------------------------ */

__attribute__((constructor)) static void cxlemu_preload_init(void)
{
    init();
}

/* exit(3): mappings go away; what the CPU cache model does with the
 * program's unflushed stores is CXLEMU_PMEM_UNFLUSHED (evict by default) */
__attribute__((destructor)) static void cxlemu_preload_fini(void)
{
    if (!g_active)
        return;
    shadow_range(0, UINTPTR_MAX, 0, 1);
    cc_unregister_all(g_mode);
}
