#ifndef BRIDGE_BENCHMARK_CLINUXEPOLL_SHIM_H
#define BRIDGE_BENCHMARK_CLINUXEPOLL_SHIM_H
// What the raw fan-out floor of the benchmark needs from Linux that Swift's Glibc module leaves out.
#include <sys/epoll.h>
#include <sys/resource.h>

/// Per-thread CPU time (RUSAGE_THREAD needs _GNU_SOURCE, which Swift's Glibc headers may not define).
static inline int bb_thread_rusage(struct rusage *usage) { return getrusage(1 /* RUSAGE_THREAD */, usage); }
#endif
