"""Programs above the kernel: workload generators, the workload file format
and trace replay.  They use the machine only through a process's system
calls (mmap, munmap, set_mempolicy, mbind, madvise, pin ...) and produce
batches of virtual page accesses."""
