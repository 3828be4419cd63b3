/*
 * The fused window attention's kernel bodies and launch plan, run on the CPU by cudaEmulation.h.
 *
 * Exposes the C entry point of escWindowAttentionKernel.h on host pointers, for ctypes (tests/engines):
 * the arguments are checked and planned by the same escWindowAttentionPlan.h as the CUDA launcher, and every
 * planned block runs the same source (escWindowAttentionSimt.cuh / escWindowAttentionMma.cuh) the GPU runs.
 */
#include "cudaEmulation.h" // first: the primitives the kernel bodies are written against

#include "escWindowAttentionMma.cuh"
#include "escWindowAttentionPlan.h"
#include "escWindowAttentionSimt.cuh"

#include <cstdio>
#include <exception>
#include <type_traits>

namespace
{

enum EmulationStatus : int32_t
{
    kOK = 0,
    kINVALID_VALUE = 1,
    kFAILED = 2,
};

template <typename T, typename TableT, int32_t kHeadSize>
int32_t emulate(void const* qkv, void const* table, void* out, int32_t batch, int32_t numHeads, int32_t height,
    int32_t width, int32_t windowSize, bool tensorCores, int32_t* body)
{
    esc::LaunchPlan plan{};
    bool const halfTensors = std::is_same_v<T, __half>;
    switch (esc::planWindowAttention<kHeadSize>(
        batch, numHeads, height, width, windowSize, halfTensors && tensorCores, plan))
    {
    case esc::PlanStatus::kLAUNCH: break;
    case esc::PlanStatus::kEMPTY: return kOK;
    case esc::PlanStatus::kINVALID: return kINVALID_VALUE;
    }
    *body = static_cast<int32_t>(plan.body);
    auto const* typedQkv = static_cast<T const*>(qkv);
    auto const* typedTable = static_cast<TableT const*>(table);
    auto* typedOut = static_cast<T*>(out);
    auto const runBlock = [&]()
    {
        if constexpr (std::is_same_v<T, __half>)
        {
            if (plan.body == esc::KernelBody::kTENSOR_CORE)
            {
                esc::dispatchMmaWindow<int32_t>(plan.geometry.window,
                    [&](auto window)
                    {
                        esc::device::mmaWindowAttention<TableT, kHeadSize, decltype(window)::value>(
                            typedQkv, typedTable, typedOut, plan.geometry);
                        return 0;
                    });
                return;
            }
        }
        esc::device::simtWindowAttention<T, TableT, kHeadSize>(typedQkv, typedTable, typedOut, plan.geometry);
    };
    for (uint32_t z = 0; z < plan.blocks[2]; ++z)
    {
        for (uint32_t y = 0; y < plan.blocks[1]; ++y)
        {
            for (uint32_t x = 0; x < plan.blocks[0]; ++x)
            {
                esc::device::EmulatedBlock::run(runBlock, plan.threads, x, y, z, plan.sharedBytes);
            }
        }
    }
    return kOK;
}

} // namespace

//! Same arguments as escWindowAttention (host pointers instead of device pointers, no stream), plus whether the
//! tensor-core body may be planned (as on sm_80+) and where to write the KernelBody that ran. Returns 0, 1 for
//! arguments the launcher refuses (cudaErrorInvalidValue there), 2 when the emulation itself failed.
extern "C" int32_t escWindowAttentionEmulated(int32_t dtype, int32_t tableType, void const* qkv, void const* table,
    void* out, int32_t batch, int32_t channels, int32_t numHeads, int32_t height, int32_t width, int32_t windowSize,
    int32_t tensorCores, int32_t* body)
{
    if (numHeads < 1 || channels < 1 || channels % numHeads != 0 || body == nullptr)
    {
        return kINVALID_VALUE;
    }
    try
    {
        return esc::dispatchKernelTypes(static_cast<esc::EscDataType>(dtype), static_cast<esc::EscDataType>(tableType),
            channels / numHeads, static_cast<int32_t>(kINVALID_VALUE),
            [&](auto types)
            {
                using Types = decltype(types);
                return emulate<typename Types::Element, typename Types::Table, Types::kHeadSize>(
                    qkv, table, out, batch, numHeads, height, width, windowSize, tensorCores != 0, body);
            });
    }
    catch (std::exception const& error)
    {
        std::fprintf(stderr, "escWindowAttentionEmulated: %s\n", error.what());
        return kFAILED;
    }
}
