/* device.c — picking the executor's backend by name (contract in model.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kernels/kernels.h"
#include "comm.h"
#include "model.h"

static void emu_to_host(void *dst, const void *src, int64_t bytes) { kern_ops_emu()->to_host(dst, src, bytes); }
static void emu_to_device(void *dst, const void *src, int64_t bytes) { kern_ops_emu()->to_device(dst, src, bytes); }

#if TRIAD_HAVE_CUDA
/* the GPU of this rank's local rank (several ranks may share one) */
static int use_gpu(char *why, int n)
{
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    return kern_cuda_use_device(lr ? atoi(lr) : 0, why, n);
}
#endif

int exec_use_device(const char *name, long *units, char err[SPEC_ERR_LEN])
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (units)
        *units = cores;
    if (!strcmp(name, "auto")) {
#if TRIAD_HAVE_CUDA
        char why[160];
        /* no NVIDIA device node: do not start the CUDA runtime at all */
        if (access("/dev/nvidiactl", F_OK) == 0 && use_gpu(why, (int)sizeof why) >= 0) {
            exec_set_backend(kern_ops_cuda());
            if (units)
                *units = kern_cuda_device_count();
            return 0;
        }
#endif
        name = "cpu";
    }
    if (!strcmp(name, "cpu")) {
        exec_set_backend(kern_ops_cpu());
        return 0;
    }
    if (!strcmp(name, "emu")) {
        static const comm_device_hooks hooks = {kern_emu_is_device, emu_to_host, emu_to_device};
        exec_set_backend(kern_ops_emu());
        comm_set_device_hooks(&hooks);
        return 0;
    }
    if (!strcmp(name, "cuda")) {
#if TRIAD_HAVE_CUDA
        char why[160];
        if (use_gpu(why, (int)sizeof why) < 0) {
            snprintf(err, SPEC_ERR_LEN, "--device cuda: no usable GPU (%s)", why);
            return -1;
        }
        exec_set_backend(kern_ops_cuda()); /* the comm layer stages through CUDA's own copies */
        if (units)
            *units = kern_cuda_device_count();
        return 0;
#else
        snprintf(err, SPEC_ERR_LEN, "--device 'cuda' is not available in this build (no CUDA toolkit at build time)");
        return -1;
#endif
    }
    snprintf(err, SPEC_ERR_LEN, "--device '%s' is not one of cpu, cuda, emu", name);
    return -1;
}

int exec_device_room(int64_t need, char err[SPEC_ERR_LEN])
{
#if TRIAD_HAVE_CUDA
    int64_t fr = 0, tot = 0;
    if (exec_backend() == kern_ops_cuda() && kern_cuda_mem_info(&fr, &tot) == 0 && need > fr) {
        snprintf(err, SPEC_ERR_LEN,
                 "train: the layout needs %.2f GB on each GPU (triad's memory model) and this GPU has %.2f of "
                 "%.2f GB free: a smaller mbs, more tp or pp, or recompute", need / 1e9, fr / 1e9, tot / 1e9);
        return -1;
    }
#else
    (void)need, (void)err;
#endif
    return 0;
}

int exec_comm_name_ok(const char *want)
{
    return !strcmp(want, "auto") || !strcmp(want, "mpi") || !strcmp(want, "nccl");
}

int exec_pick_comm(const char *want, int *nccl, char err[SPEC_ERR_LEN])
{
    *nccl = 0;
    if (!strcmp(want, "mpi"))
        return 0;
#if TRIAD_HAVE_CUDA
    int on_gpu = exec_backend() == kern_ops_cuda();
    /* collective on every rank, whatever it decides */
    int gpus = comm_world_min_int(on_gpu ? kern_cuda_device_count() : 0), ranks = comm_node_ranks();
    int fits = on_gpu && ranks <= gpus; /* NCCL refuses two ranks on one GPU */
    if (!strcmp(want, "auto")) {
        *nccl = fits;
        return 0;
    }
    if (!on_gpu) {
        snprintf(err, SPEC_ERR_LEN, "--comm nccl needs --device cuda (NCCL moves GPU buffers)");
        return -1;
    }
    if (!fits) {
        snprintf(err, SPEC_ERR_LEN,
                 "--comm nccl: %d ranks on one node share %d GPU%s, NCCL needs a GPU per rank "
                 "(--comm mpi stages through the host)", ranks, gpus, gpus == 1 ? "" : "s");
        return -1;
    }
    *nccl = 1;
    return 0;
#else
    if (!strcmp(want, "auto"))
        return 0;
    snprintf(err, SPEC_ERR_LEN, "--comm 'nccl' is not available in this build (no CUDA toolkit at build time)");
    return -1;
#endif
}
