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
