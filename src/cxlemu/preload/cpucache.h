/* The CPU-cache model of cxlemu's device-DAX mappings (see docs/devdax.md).
 *
 * A mapping of /dev/daxX.Y maps the device media files themselves: every
 * store lands on the media.  What the CPU cache model decides is only what a
 * power failure loses.  For that it keeps, per device, in the machine's
 * cpu_cache/ directory:
 *
 *   <media>.lines  a 4096-byte header, then one state byte per 64-byte line
 *                  of the device (0 clean, 1 dirty: its undo data is valid);
 *   <media>.undo   the device-sized sparse file of undo data: for a dirty
 *                  line, what the line held when it was last durable.
 *
 * A writable mapping starts read-only.  The first store to a page takes a
 * SIGSEGV; the handler copies the clean lines of that page (and of the
 * read-only pages around it, up to a trap unit) to the undo file, marks them
 * dirty and makes the pages writable, and the store proceeds: from then on
 * stores to those pages run at memory speed.  A flush (cc_clean /
 * cc_persist: clwb + sfence) write-protects the pages again and marks the
 * lines clean.  A power failure copies the undo data of dirty lines back
 * (data/cpucache.py), an orderly reset drops it.
 *
 * Everything here is async-signal-safe in the way it is used: no allocation
 * in the fault path, a mutex that no code holds while storing to a trapped
 * page, and flock(2) on <dir>/lock between processes.
 */
#ifndef CXLEMU_CPUCACHE_H
#define CXLEMU_CPUCACHE_H

#include <stddef.h>
#include <stdint.h>

#define CC_LINE 64u
#define CC_PAGE 4096u
#define CC_HEADER 4096u
#define CC_MAGIC "CXLEMU-CPUCACHE\001"      /* 16 bytes, the last one the version */
#define CC_MAGIC_LEN 16

/* header of a .lines file (little endian, the rest of the 4 KiB is zero) */
struct cc_header {
    char magic[CC_MAGIC_LEN];
    uint32_t version;       /* 1 */
    uint32_t line;          /* 64 */
    uint64_t capacity;      /* bytes of the device (size of the media file) */
    uint64_t data_offset;   /* 4096: where the state bytes start */
    char media[64];         /* media file name, NUL padded */
};

/* one contiguous, page-aligned piece of a mapping on one device */
struct cc_seg {
    uint64_t off;           /* offset in the mapping */
    uint64_t len;           /* bytes */
    uint64_t dpa;           /* device physical address = media file offset */
    uint32_t dev;           /* cc_device() slot */
    uint32_t pad;
};

/* mapping modes for cc_unregister / the interposer's munmap and exit */
#define CC_KEEP 0           /* unflushed stores stay in the CPU cache */
#define CC_EVICT 1          /* unflushed stores of the mapping become durable */

int cc_dir(const char *cache_dir);
int cc_device(int dir, const char *media_name, uint64_t capacity);
int cc_dir_release(int dir);
int cc_device_release(int dev);
int cc_register(void *addr, uint64_t len, int dir, uint32_t nseg, const struct cc_seg *segs,
                uint32_t unit_pages);
int cc_unregister(int map, int mode);
int cc_unmap_range(void *addr, uint64_t len, int mode);
int cc_protect(void *addr, uint64_t len, int writable);
int cc_clean(int dev, uint64_t dpa, uint64_t len);
int cc_capture_buf(int dev, uint64_t dpa, const void *old, uint64_t len);
int cc_persist(const void *addr, uint64_t len);
int cc_owns(const void *addr);
int cc_lock(int dir);
int cc_unlock(int dir);
int cc_unregister_all(int mode);
uint64_t cc_stat(int what);   /* 0 faults, 1 captured bytes, 2 cleaned lines, 3 maps */
int cc_reinstall(void);

/* set by the interposer so that the handler chains to the program's own
 * SIGSEGV handler; returns 1 when the call was absorbed */
int cc_sigaction_hook(const void *act, void *oldact);

#endif
