/*
 * The few GPU operations the window-attention kernel bodies use, as device functions.
 *
 * The bodies (escWindowAttentionSimt.cuh, escWindowAttentionMma.cuh) call only these and plain C++, so the same
 * source also runs on the CPU against tests/engines/emulation/cudaEmulation.h, which defines the same names.
 */
#pragma once

#include <cstdint>
#include <cuda_fp16.h>

#define ESC_DEVICE __device__ __forceinline__

namespace esc
{
namespace device
{

ESC_DEVICE int32_t threadRank()
{
    return static_cast<int32_t>(threadIdx.x);
}

ESC_DEVICE int32_t blockSize()
{
    return static_cast<int32_t>(blockDim.x);
}

ESC_DEVICE int32_t blockX()
{
    return static_cast<int32_t>(blockIdx.x);
}

ESC_DEVICE int32_t blockY()
{
    return static_cast<int32_t>(blockIdx.y);
}

ESC_DEVICE int32_t blockZ()
{
    return static_cast<int32_t>(blockIdx.z);
}

ESC_DEVICE void syncBlock()
{
    __syncthreads();
}

//! The dynamic shared memory of the block (16-byte aligned).
ESC_DEVICE void* sharedMemory()
{
    extern __shared__ float4 escDynamicShared[];
    return escDynamicShared;
}

//! `v`, hidden from the optimiser: what derives from it is computed where it is used, not hoisted out of a loop
//! into registers of its own (which would spill).
ESC_DEVICE int32_t opaqueValue(int32_t v)
{
    asm volatile("" : "+r"(v));
    return v;
}

template <typename T>
ESC_DEVICE T loadReadOnly(T const* p)
{
    return __ldg(p);
}

//! Value of `v` held by lane (lane ^ laneMask) of the same warp; every lane of the warp takes part.
ESC_DEVICE float shuffleXor(float v, int32_t laneMask)
{
    return __shfl_xor_sync(0xffffffffU, v, laneMask);
}

//! Whether `predicate` holds in any lane of the warp; every lane of the warp takes part.
ESC_DEVICE bool anyInWarp(bool predicate)
{
    return __any_sync(0xffffffffU, predicate) != 0;
}

//! Asynchronous copy of 16 bytes from global to shared memory (cp.async.cg, L2 only), both 16-byte aligned. The
//! copy joins this thread's open group; it is complete (for this thread) after waitAsyncGroups lets its group go.
ESC_DEVICE void copyAsync16(void* sharedDestination, void const* globalSource)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    auto const destination = static_cast<uint32_t>(__cvta_generic_to_shared(sharedDestination));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(destination), "l"(globalSource) : "memory");
#else
    __trap(); // the launcher takes the tensor-core body only on sm_80 and newer
#endif
}

//! Closes this thread's open group of asynchronous copies (an empty group where it has none).
ESC_DEVICE void commitAsyncGroup()
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

//! Waits until at most kPending of this thread's committed groups are still in flight (the newest ones). Other
//! threads see the copied data only after a barrier that follows their issuers' waits.
template <int32_t kPending>
ESC_DEVICE void waitAsyncGroups()
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
#endif
}

//! ldmatrix.x4 (b16): lanes 8i..8i+7 give the shared-memory addresses of the 8 rows (16 bytes each, 16-byte
//! aligned) of matrix i; lane l receives in r[i] row l/4, columns 2(l%4) and 2(l%4)+1 of matrix i or, with kTranspose,
//! rows 2(l%4) and 2(l%4)+1 of column l/4 (lower half first).
template <bool kTranspose>
ESC_DEVICE void loadMatrices(uint32_t (&r)[4], void const* sharedRow)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    auto const address = static_cast<uint32_t>(__cvta_generic_to_shared(sharedRow));
    if constexpr (kTranspose)
    {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(address));
    }
    else
    {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(address));
    }
#else
    __trap();
#endif
}

//! 2^x on the special function unit; exp2(-inf) = 0.
ESC_DEVICE float exp2Approx(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

//! d += a * b for one warp: mma.sync m16n8k16, A row-major 16x16 fp16 (4 registers of 2 halves), B column-major
//! 16x8 fp16 (2 registers), C/D 16x8 fp32 (4 registers), fragments in the PTX ISA's layout for this shape.
ESC_DEVICE void mmaF16F32(float (&d)[4], uint32_t const (&a)[4], uint32_t b0, uint32_t b1)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap(); // the launcher takes the tensor-core body only on sm_80 and newer
#endif
}

} // namespace device
} // namespace esc
