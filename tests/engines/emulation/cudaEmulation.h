/*
 * CPU emulation of the device primitives of engines/plugin/escDevicePrimitives.cuh, so that the kernel bodies
 * (the exact source the GPU runs) can be checked on machines without a GPU.
 *
 * A block runs as one fiber (ucontext) per CUDA thread on a single OS thread. Between two block barriers
 * (syncBlock) the warps run one at a time, each to the barrier, in alternating forward and reverse order, so that
 * a missing barrier between one warp's shared-memory writes and another's reads shows up as a wrong result. Warp
 * primitives (shuffleXor, mmaF16F32) wait for the 32 lanes of the warp, which exchange their registers through a
 * per-warp buffer; the lanes must all be at the same primitive. mma.sync is computed from the fragment layout of
 * the PTX ISA (m16n8k16, f16 inputs, f32 accumulation) with float math, ldmatrix (x4, plain and .trans) from the
 * ISA's fragment layout with each lane's row address checked (16-byte aligned, inside shared memory), and any-vote.
 * cp.async (16 bytes) follows the PTX ISA's groups: a copy joins its thread's open group, commit_group closes it,
 * wait_group N completes all but the thread's N newest committed groups. The emulation copies at the wait, the
 * latest moment the ISA allows, so that a read of a buffer before its issuer's wait and a barrier sees stale
 * data (or the NaN poison); a thread that ends with copies not waited for is an error. Shared memory starts as
 * NaN bytes (as garbage would on a GPU) and is followed by a guard region checked after the block.
 * Not emulated: timing, memory ordering beyond the barriers, and the hardware's rounding inside mma and ex2.
 */
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <cuda_fp16.h>
#include <memory>
#include <stdexcept>
#include <string>
#include <ucontext.h>
#include <vector>
#include <vector_functions.h>
#include <vector_types.h>

#define ESC_DEVICE inline

namespace esc
{
namespace device
{

//! One emulated thread block: its fibers, its shared memory and the warps' exchange buffers.
class EmulatedBlock
{
public:
    static constexpr int32_t kWarpSize = 32;
    static constexpr int32_t kExchangeWords = 8; //!< registers one lane contributes to a warp primitive

    enum class State
    {
        kREADY,
        kAT_BLOCK_BARRIER,
        kAT_WARP_BARRIER,
        kDONE,
    };

    //! Warp primitives, recorded per lane so that a barrier where lanes disagree is an error.
    enum class WarpOp : int32_t
    {
        kSHUFFLE = 1,
        kMMA = 2,
        kLOAD_MATRIX = 3,
        kVOTE = 4,
    };

    //! Runs `body` once per thread of a block of `threads` threads (a multiple of 32) at block index (x, y, z).
    template <typename Body>
    static void run(Body const& body, int32_t threads, uint32_t x, uint32_t y, uint32_t z, std::size_t sharedBytes)
    {
        if (threads <= 0 || threads % kWarpSize != 0)
        {
            throw std::invalid_argument("emulated blocks need a positive multiple of 32 threads");
        }
        EmulatedBlock block(threads, x, y, z, sharedBytes);
        block.mBody = [](void const* context) { (*static_cast<Body const*>(context))(); };
        block.mBodyContext = &body;
        block.schedule();
        block.checkGuard();
    }

    static EmulatedBlock& current()
    {
        return *sCurrent;
    }

    int32_t threadRank() const
    {
        return mRunning;
    }

    int32_t blockSize() const
    {
        return static_cast<int32_t>(mFibers.size());
    }

    uint32_t blockIndex(int32_t axis) const
    {
        return mBlockIndex[axis];
    }

    void* shared()
    {
        return mShared.data();
    }

    //! Throws unless [p, p + bytes) lies in the planned shared memory and p is `alignment`-aligned.
    void checkShared(void const* p, std::size_t bytes, std::size_t alignment, char const* what) const
    {
        auto const* const base = reinterpret_cast<unsigned char const*>(mShared.data());
        auto const* const q = static_cast<unsigned char const*>(p);
        if (q < base || q + bytes > base + mSharedBytes || reinterpret_cast<uintptr_t>(q) % alignment != 0)
        {
            throw std::runtime_error(std::string(what) + ": shared address outside the " + std::to_string(mSharedBytes)
                + " planned bytes or not " + std::to_string(alignment) + "-byte aligned");
        }
    }

    //! cp.async of 16 bytes into the running thread's open group.
    void copyAsync(void* destination, void const* source)
    {
        checkShared(destination, 16, 16, "cp.async destination");
        if (reinterpret_cast<uintptr_t>(source) % 16 != 0)
        {
            throw std::runtime_error("cp.async source not 16-byte aligned");
        }
        mFibers[mRunning].copies.push_back(AsyncCopy{destination, source, -1});
    }

    void commitAsync()
    {
        Fiber& fiber = mFibers[mRunning];
        for (auto& copy : fiber.copies)
        {
            if (copy.group < 0)
            {
                copy.group = fiber.committedGroups;
            }
        }
        ++fiber.committedGroups;
    }

    //! Completes the copies of every committed group of the running thread but its `pending` newest.
    void waitAsync(int32_t pending)
    {
        Fiber& fiber = mFibers[mRunning];
        int32_t const last = fiber.committedGroups - 1 - pending; // groups up to this one complete
        std::vector<AsyncCopy> still;
        for (auto const& copy : fiber.copies)
        {
            if (copy.group >= 0 && copy.group <= last)
            {
                std::memcpy(copy.destination, copy.source, 16);
            }
            else
            {
                still.push_back(copy);
            }
        }
        fiber.copies.swap(still);
    }

    //! Parks the running fiber at a barrier and returns once the barrier is released.
    void wait(State barrier)
    {
        Fiber& fiber = mFibers[mRunning];
        fiber.state = barrier;
        swapcontext(&fiber.context, &mScheduler);
    }

    //! Starts a warp primitive for the running lane: records it and returns the lane's exchange slot. Two buffers
    //! are used alternately, so a lane may write the next primitive's registers while slower lanes still read
    //! this one's.
    uint32_t* beginWarpOp(WarpOp op, int32_t argument)
    {
        Fiber& fiber = mFibers[mRunning];
        fiber.warpOp = op;
        fiber.warpArgument = argument;
        return exchange(mRunning % kWarpSize, fiber.warpGeneration);
    }

    //! Ends the running lane's warp primitive: waits for the warp and returns the warp's exchange buffer.
    uint32_t const* exchangeOfWarp()
    {
        int32_t const generation = mFibers[mRunning].warpGeneration++;
        wait(State::kAT_WARP_BARRIER);
        return exchange(0, generation);
    }

private:
    struct AsyncCopy
    {
        void* destination;
        void const* source;
        int32_t group; //!< -1 while the group is open
    };

    struct Fiber
    {
        std::vector<AsyncCopy> copies; //!< issued, not yet completed
        int32_t committedGroups = 0;
        ucontext_t context{};
        State state = State::kREADY;
        int32_t warpGeneration = 0;
        WarpOp warpOp = WarpOp::kSHUFFLE;
        int32_t warpArgument = 0;
    };

    static constexpr std::size_t kStackBytes = 256 * 1024;
    static constexpr std::size_t kGuardBytes = 256;
    static constexpr unsigned char kSharedPoison = 0xff; // NaN in fp16 and fp32
    static constexpr unsigned char kGuardPattern = 0xa5;
    static inline EmulatedBlock* sCurrent = nullptr;

    EmulatedBlock(int32_t threads, uint32_t x, uint32_t y, uint32_t z, std::size_t sharedBytes)
        : mFibers(static_cast<std::size_t>(threads))
        , mShared((sharedBytes + kGuardBytes + 15) / 16)
        , mSharedBytes(sharedBytes)
        , mBlockIndex{x, y, z}
    {
        auto* const bytes = reinterpret_cast<unsigned char*>(mShared.data());
        std::memset(bytes, kSharedPoison, sharedBytes);
        std::memset(bytes + sharedBytes, kGuardPattern, mShared.size() * 16 - sharedBytes);
        for (auto& buffer : mExchange)
        {
            buffer.assign(static_cast<std::size_t>(threads) * kExchangeWords, 0U);
        }
    }

    //! The fibers' stacks, kept from block to block of this OS thread: a fresh zeroed 256 KiB per fiber and block
    //! (64 MiB for 256 threads) took most of the emulation's time, in page faults.
    static std::vector<std::unique_ptr<char[]>>& stackPool()
    {
        static thread_local std::vector<std::unique_ptr<char[]>> pool;
        return pool;
    }

    uint32_t* exchange(int32_t lane, int32_t generation)
    {
        int32_t const warpBase = mRunning - mRunning % kWarpSize;
        return mExchange[generation % 2].data() + static_cast<std::size_t>(warpBase + lane) * kExchangeWords;
    }

    static void fiberMain()
    {
        EmulatedBlock& block = *sCurrent;
        block.mBody(block.mBodyContext);
        Fiber& fiber = block.mFibers[block.mRunning];
        if (!fiber.copies.empty())
        {
            block.mError = "thread " + std::to_string(block.mRunning) + " ended with cp.async copies not waited for";
        }
        fiber.state = State::kDONE; // then uc_link returns to the scheduler
    }

    void schedule()
    {
        sCurrent = this;
        auto& stacks = stackPool();
        while (stacks.size() < mFibers.size())
        {
            stacks.emplace_back(new char[kStackBytes]); // uninitialised: a fiber touches only the pages it uses
        }
        for (std::size_t t = 0; t < mFibers.size(); ++t)
        {
            Fiber& fiber = mFibers[t];
            getcontext(&fiber.context);
            fiber.context.uc_stack.ss_sp = stacks[t].get();
            fiber.context.uc_stack.ss_size = kStackBytes;
            fiber.context.uc_link = &mScheduler;
            makecontext(&fiber.context, &EmulatedBlock::fiberMain, 0);
        }
        int32_t const warps = blockSize() / kWarpSize;
        for (int32_t phase = 0;; ++phase)
        {
            // Each warp runs alone up to the next block barrier (or its end); the order alternates per phase.
            for (int32_t i = 0; i < warps; ++i)
            {
                runWarp(phase % 2 == 0 ? i : warps - 1 - i);
            }
            if (!releaseBlock())
            {
                break;
            }
        }
        sCurrent = nullptr;
        if (!mError.empty())
        {
            throw std::runtime_error(mError);
        }
        for (int32_t t = 0; t < blockSize(); ++t)
        {
            if (mFibers[t].state != State::kDONE)
            {
                throw std::runtime_error("emulated block deadlocked: thread " + std::to_string(t)
                    + " waits at a barrier that not every thread of its block or warp reaches");
            }
        }
    }

    //! Runs the lanes of one warp, releasing its warp barriers, until none of them can go on.
    void runWarp(int32_t warp)
    {
        int32_t const base = warp * kWarpSize;
        while (true)
        {
            bool ran = false;
            for (mRunning = base; mRunning < base + kWarpSize; ++mRunning)
            {
                if (mFibers[mRunning].state == State::kREADY)
                {
                    swapcontext(&mScheduler, &mFibers[mRunning].context);
                    ran = true;
                }
            }
            mRunning = -1;
            if (!releaseWarp(base) && !ran)
            {
                return;
            }
        }
    }

    bool releaseWarp(int32_t base)
    {
        Fiber const& first = mFibers[base];
        for (int32_t lane = 0; lane < kWarpSize; ++lane)
        {
            Fiber const& fiber = mFibers[base + lane];
            if (fiber.state != State::kAT_WARP_BARRIER)
            {
                return false;
            }
            if (fiber.warpGeneration != first.warpGeneration || fiber.warpOp != first.warpOp
                || fiber.warpArgument != first.warpArgument)
            {
                throw std::runtime_error("lanes " + std::to_string(base) + " and " + std::to_string(base + lane)
                    + " met at different warp primitives");
            }
        }
        for (int32_t lane = 0; lane < kWarpSize; ++lane)
        {
            mFibers[base + lane].state = State::kREADY;
        }
        return true;
    }

    bool releaseBlock()
    {
        bool any = false;
        for (auto const& fiber : mFibers)
        {
            if (fiber.state == State::kREADY || fiber.state == State::kAT_WARP_BARRIER)
            {
                return false; // a warp stuck at a warp barrier: reported as a deadlock
            }
            any = any || fiber.state == State::kAT_BLOCK_BARRIER;
        }
        for (auto& fiber : mFibers)
        {
            if (fiber.state == State::kAT_BLOCK_BARRIER)
            {
                fiber.state = State::kREADY;
            }
        }
        return any;
    }

    void checkGuard() const
    {
        auto const* const bytes = reinterpret_cast<unsigned char const*>(mShared.data());
        for (std::size_t i = mSharedBytes; i < mShared.size() * 16; ++i)
        {
            if (bytes[i] != kGuardPattern)
            {
                throw std::runtime_error("shared memory written past its " + std::to_string(mSharedBytes)
                    + " planned bytes (at byte " + std::to_string(i) + ")");
            }
        }
    }

    std::vector<Fiber> mFibers;
    std::vector<float4> mShared; // float4 keeps the 16-byte alignment of CUDA's dynamic shared memory
    std::size_t mSharedBytes;
    std::vector<uint32_t> mExchange[2];
    uint32_t mBlockIndex[3];
    ucontext_t mScheduler{};
    int32_t mRunning = -1;
    std::string mError; //!< set inside a fiber (which cannot throw across the context switch)
    void (*mBody)(void const*) = nullptr;
    void const* mBodyContext = nullptr;
};

inline int32_t threadRank()
{
    return EmulatedBlock::current().threadRank();
}

inline int32_t blockSize()
{
    return EmulatedBlock::current().blockSize();
}

inline int32_t blockX()
{
    return static_cast<int32_t>(EmulatedBlock::current().blockIndex(0));
}

inline int32_t blockY()
{
    return static_cast<int32_t>(EmulatedBlock::current().blockIndex(1));
}

inline int32_t blockZ()
{
    return static_cast<int32_t>(EmulatedBlock::current().blockIndex(2));
}

inline void syncBlock()
{
    EmulatedBlock::current().wait(EmulatedBlock::State::kAT_BLOCK_BARRIER);
}

inline void* sharedMemory()
{
    return EmulatedBlock::current().shared();
}

//! An optimisation barrier on the GPU (the value is unchanged); nothing to hide from the host compiler.
inline int32_t opaqueValue(int32_t v)
{
    return v;
}

template <typename T>
inline T loadReadOnly(T const* p)
{
    return *p;
}

inline float exp2Approx(float x)
{
    return std::exp2(x);
}

inline void copyAsync16(void* sharedDestination, void const* globalSource)
{
    EmulatedBlock::current().copyAsync(sharedDestination, globalSource);
}

inline void commitAsyncGroup()
{
    EmulatedBlock::current().commitAsync();
}

template <int32_t kPending>
inline void waitAsyncGroups()
{
    EmulatedBlock::current().waitAsync(kPending);
}

namespace detail
{

//! Publishes this lane's registers for primitive `op`, waits for the warp, and returns the warp's exchange buffer
//! of this round and the lane.
template <int32_t kWords>
inline uint32_t const* exchangeWithWarp(
    EmulatedBlock::WarpOp op, int32_t argument, uint32_t const (&words)[kWords], int32_t& lane)
{
    static_assert(kWords <= EmulatedBlock::kExchangeWords, "exchange slot too small");
    EmulatedBlock& block = EmulatedBlock::current();
    lane = block.threadRank() % EmulatedBlock::kWarpSize;
    std::memcpy(block.beginWarpOp(op, argument), words, sizeof(words));
    return block.exchangeOfWarp();
}

inline float halfAt(uint32_t word, int32_t which)
{
    __half_raw raw;
    raw.x = static_cast<uint16_t>(which == 0 ? word & 0xffffU : word >> 16);
    return __half2float(__half(raw));
}

} // namespace detail

inline float shuffleXor(float v, int32_t laneMask)
{
    uint32_t words[1];
    std::memcpy(words, &v, sizeof(v));
    int32_t lane = 0;
    uint32_t const* const warp = detail::exchangeWithWarp(EmulatedBlock::WarpOp::kSHUFFLE, laneMask, words, lane);
    float result;
    std::memcpy(&result, warp + (lane ^ laneMask) * EmulatedBlock::kExchangeWords, sizeof(result));
    return result;
}

inline bool anyInWarp(bool predicate)
{
    uint32_t const words[1] = {predicate ? 1U : 0U};
    int32_t lane = 0;
    uint32_t const* const warp = detail::exchangeWithWarp(EmulatedBlock::WarpOp::kVOTE, 0, words, lane);
    bool any = false;
    for (int32_t l = 0; l < EmulatedBlock::kWarpSize; ++l)
    {
        any = any || warp[l * EmulatedBlock::kExchangeWords] != 0;
    }
    return any;
}

//! ldmatrix.x4 (b16): lanes 8i..8i+7 give the row addresses of matrix i; lane l receives in r[i] row l/4, halves
//! 2(l%4) and 2(l%4)+1 or, transposed, halves l/4 of rows 2(l%4) and 2(l%4)+1 (PTX ISA, ldmatrix fragments).
template <bool kTranspose>
inline void loadMatrices(uint32_t (&r)[4], void const* sharedRow)
{
    EmulatedBlock& block = EmulatedBlock::current();
    block.checkShared(sharedRow, 16, 16, "ldmatrix row");
    uint32_t words[2];
    std::memcpy(words, &sharedRow, sizeof(sharedRow));
    int32_t lane = 0;
    uint32_t const* const warp = detail::exchangeWithWarp(
        EmulatedBlock::WarpOp::kLOAD_MATRIX, kTranspose ? 1 : 0, words, lane);
    auto const rowOf = [warp](int32_t sourceLane)
    {
        unsigned char const* row = nullptr;
        std::memcpy(&row, warp + sourceLane * EmulatedBlock::kExchangeWords, sizeof(row));
        return row;
    };
    for (int32_t i = 0; i < 4; ++i)
    {
        if constexpr (kTranspose)
        {
            uint16_t lo = 0;
            uint16_t hi = 0;
            std::memcpy(&lo, rowOf(8 * i + 2 * (lane % 4)) + 2 * (lane / 4), 2);
            std::memcpy(&hi, rowOf(8 * i + 2 * (lane % 4) + 1) + 2 * (lane / 4), 2);
            r[i] = static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
        }
        else
        {
            std::memcpy(&r[i], rowOf(8 * i + lane / 4) + 4 * (lane % 4), 4);
        }
    }
}

//! d += a * b with the m16n8k16 fragment layout: lane = 4 * group + quad.
//! A element (row, k): lane 4 * (row % 8) + (k % 8) / 2, register (row / 8) + 2 * (k / 8), half k % 2.
//! B element (k, n): lane 4 * n + (k % 8) / 2, register k / 8, half k % 2.
//! C element: register i of lane holds (group + 8 * (i / 2), 2 * quad + i % 2).
inline void mmaF16F32(float (&d)[4], uint32_t const (&a)[4], uint32_t b0, uint32_t b1)
{
    uint32_t const words[6] = {a[0], a[1], a[2], a[3], b0, b1};
    int32_t lane = 0;
    uint32_t const* const warp = detail::exchangeWithWarp(EmulatedBlock::WarpOp::kMMA, 0, words, lane);
    auto const aAt = [warp](int32_t row, int32_t k)
    {
        uint32_t const* const regs = warp + (4 * (row % 8) + (k % 8) / 2) * EmulatedBlock::kExchangeWords;
        return detail::halfAt(regs[row / 8 + 2 * (k / 8)], k % 2);
    };
    auto const bAt = [warp](int32_t k, int32_t n)
    {
        uint32_t const* const regs = warp + (4 * n + (k % 8) / 2) * EmulatedBlock::kExchangeWords;
        return detail::halfAt(regs[4 + k / 8], k % 2);
    };
    int32_t const group = lane / 4;
    int32_t const quad = lane % 4;
    for (int32_t i = 0; i < 4; ++i)
    {
        int32_t const row = group + 8 * (i / 2);
        int32_t const col = 2 * quad + i % 2;
        float sum = d[i];
        for (int32_t k = 0; k < 16; ++k)
        {
            sum += aAt(row, k) * bAt(k, col);
        }
        d[i] = sum;
    }
}

} // namespace device
} // namespace esc
