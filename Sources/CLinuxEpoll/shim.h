#ifndef PROGRESS_BRIDGE_CLINUXEPOLL_SHIM_H
#define PROGRESS_BRIDGE_CLINUXEPOLL_SHIM_H
// What the load client's socket engine and the benchmark's raw fan-out need from Linux that Swift's Glibc module
// leaves out.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

/// Per-thread CPU time (RUSAGE_THREAD needs _GNU_SOURCE, which Swift's Glibc headers may not define).
static inline int bb_thread_rusage(struct rusage *usage) { return getrusage(1 /* RUSAGE_THREAD */, usage); }
#endif
