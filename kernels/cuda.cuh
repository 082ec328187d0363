// What makes the OpenCL C kernels of this directory CUDA C, for NVRTC: each kernel file is
// compiled with this text in front of it, and with -default-device, so that its helper
// functions (plain `static` functions in OpenCL C) are device functions.
//
// The kernels are written once, in OpenCL C 1.2 limited to what maps one to one onto
// CUDA: address-space qualifiers on kernel parameters and on arrays declared in a kernel
// (never on a helper's parameters), one-dimensional work-item ids, local barriers, and
// the handful of built-in functions defined below. The same source on every backend is
// what makes their output the same bytes.

// Where a warp primitive does in one instruction what OpenCL C 1.2 needs local memory and
// a barrier for, a kernel may take it under `#ifdef MMH_CUDA`, computing the same numbers.
#define MMH_CUDA 1

typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long long ulong;
#define ULONG_MAX 0xffffffffffffffffull
#define UINT_MAX 0xffffffffu
// The prelude defines every built-in the kernels may use; each file uses a few.
#pragma nv_diag_suppress 177

#define __kernel extern "C" __global__
#define __global
#define __local __shared__
#define __constant __constant__
// OpenCL's required work-group size has no CUDA equivalent that changes the code; the
// host launches with it.
#define reqd_work_group_size(x, y, z)

#define get_global_id(d) ((size_t)blockIdx.x * blockDim.x + threadIdx.x)
#define get_local_id(d) ((size_t)threadIdx.x)
#define get_group_id(d) ((size_t)blockIdx.x)
#define get_local_size(d) ((size_t)blockDim.x)
#define get_num_groups(d) ((size_t)gridDim.x)
#define CLK_LOCAL_MEM_FENCE 0
#define CLK_GLOBAL_MEM_FENCE 0
#define barrier(flags) __syncthreads()

static __device__ __forceinline__ uint rotate(uint x, uint n) { return __funnelshift_l(x, x, n); }
static __device__ __forceinline__ uint bitselect(uint a, uint b, uint c) { return (a & ~c) | (b & c); }
static __device__ __forceinline__ uint popcount(uint x) { return __popc(x); }
static __device__ __forceinline__ uint clz(uint x) { return __clz(x); }
static __device__ __forceinline__ uint mul_hi(uint a, uint b) { return __umulhi(a, b); }
static __device__ __forceinline__ uint atomic_add(uint *p, uint v) { return atomicAdd(p, v); }
static __device__ __forceinline__ uint atomic_inc(uint *p) { return atomicAdd(p, 1u); }
static __device__ __forceinline__ uint atomic_or(uint *p, uint v) { return atomicOr(p, v); }
static __device__ __forceinline__ uchar4 vload4(size_t offset, const uchar *p) {
    return *(const uchar4 *)(p + 4 * offset);
}
static __device__ __forceinline__ void vstore4(uchar4 v, size_t offset, uchar *p) {
    *(uchar4 *)(p + 4 * offset) = v;
}
