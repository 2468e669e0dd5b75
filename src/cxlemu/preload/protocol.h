/* The device socket protocol between the interposer and the machine
 * (machine/devserver.py; documented in docs/devdax.md).
 *
 * A Unix stream socket <machine>/dev.sock.  The interposer opens one
 * connection per emulated file descriptor: open(2) of a device node connects
 * and sends OPEN, which binds the connection to that device; close(2) closes
 * it.  Every message is a 16-byte header and `len` payload bytes, native
 * byte order (both ends run on the same host).  A reply carries status 0 or
 * a negative errno.  All structures are naturally aligned, no padding.
 */
#ifndef CXLEMU_PROTOCOL_H
#define CXLEMU_PROTOCOL_H

#include <stdint.h>

#define CXLD_MAGIC 0x444c5843u      /* "CXLD" */
#define CXLD_VERSION 1
#define CXLD_MAX_PAYLOAD (64u << 20)

struct cxld_hdr {
    uint32_t magic;
    uint16_t op;
    uint16_t version;
    uint32_t len;                   /* payload bytes after the header */
    int32_t status;                 /* requests: 0; replies: 0 or -errno */
};

enum cxld_op {
    CXLD_OPEN = 1,                  /* struct cxld_open -> struct cxld_open_reply + cache dir (NUL-terminated) */
    CXLD_CXL_QUERY = 2,             /* - -> u32 n, u32 0, n x struct cxl_command_info (16 bytes) */
    CXLD_CXL_SEND = 3,              /* struct cxl_send_command (48 bytes) + in payload -> u32 retval, u32 out size, out */
    CXLD_ND_CMD = 4,                /* struct cxld_nd + data (SET) -> u32 status + (GET_SIZE) u32 size, u32 max_xfer | (GET_DATA) data */
    CXLD_DAX_MAP = 5,               /* struct cxld_map -> struct cxld_layout, files, pieces */
    CXLD_MEM_READ = 6,              /* struct cxld_rw -> data */
    CXLD_MEM_WRITE = 7,             /* struct cxld_rw + data -> u32 written */
};

enum cxld_kind {
    CXLD_KIND_MEMDEV = 1,           /* /dev/cxl/memN */
    CXLD_KIND_DAX = 2,              /* /dev/daxX.Y */
    CXLD_KIND_NMEM = 3,             /* /dev/nmemN */
    CXLD_KIND_NDBUS = 4,            /* /dev/ndctlN */
    CXLD_KIND_MEM = 5,              /* /dev/mem */
};

struct cxld_open {
    uint32_t major;
    uint32_t minor;
    uint32_t mode;                  /* S_IFCHR or S_IFBLK */
    uint32_t flags;                 /* open(2) flags */
};

struct cxld_open_reply {
    uint32_t kind;                  /* enum cxld_kind */
    uint32_t pad;
    uint64_t size;                  /* dax: device size */
    uint64_t align;                 /* dax: mapping alignment */
};

struct cxld_nd {
    uint32_t cmd;                   /* ND_CMD_GET_CONFIG_SIZE (4), _DATA (5), SET_CONFIG_DATA (6) */
    uint32_t offset;
    uint32_t length;
    uint32_t pad;
};

struct cxld_map {
    uint64_t offset;                /* mmap offset in the device */
    uint64_t length;
    uint32_t prot;
    uint32_t flags;
};

struct cxld_layout {
    uint32_t nfiles;
    uint32_t npieces;
    uint64_t granule;               /* interleave granule (0: not interleaved) */
    /* then nfiles x { u64 capacity; u32 path_len; u32 0; path bytes padded to 8 },
     * then npieces x struct cxld_piece, in mapping order */
};

struct cxld_file {
    uint64_t capacity;
    uint32_t path_len;
    uint32_t pad;
};

struct cxld_piece {
    uint64_t off;                   /* offset in the mapping */
    uint64_t len;
    uint64_t file_off;              /* DPA: offset in the media file */
    uint32_t file;
    uint32_t pad;
};

struct cxld_rw {
    uint64_t addr;                  /* /dev/mem: host physical address */
    uint32_t length;
    uint32_t pad;
};

#endif
