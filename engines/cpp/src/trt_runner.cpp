// esc_trt_runner: load the plugin, deserialize an ESC engine, upscale a PNG/PPM (tiled beyond the
// engine profile's maximum), print the latency.
//
//   esc_trt_runner --engine build/esc-light_x4.plan --plugin build/plugin/libesc_trt_plugin.so
//                  --input in.png --output out.png [--tile N] [--overlap 32] [--align 32] [--iters 20]
//
// TensorRT 10/11 API (and TensorRT for RTX, which shares 11's): IRuntime::deserializeCudaEngine,
// IExecutionContext::setInputShape / setTensorAddress / enqueueV3. Engine I/O: "input" [B, 3, H, W] and
// "output" [B, 3, sH, sW], float32. Every failure is one line on stderr and exit status 2; what can be
// checked without a GPU (arguments, files, the plugin's header major) is checked before the GPU is touched.
#include <NvInfer.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "esc/image.h"
#include "esc/tiling.h"

namespace {

constexpr char const* kInput = "input";
constexpr char const* kOutput = "output";

#define ESC_CUDA(call)                                                                                  \
    do {                                                                                                \
        const cudaError_t status_ = (call);                                                             \
        if (status_ != cudaSuccess)                                                                     \
            throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(status_));          \
    } while (0)

// Errors are kept for the one line that reports a failure; warnings are printed only with --verbose.
class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, char const* msg) noexcept override {
        if (severity <= Severity::kERROR) lastError = msg;
        else if (verbose && severity <= Severity::kWARNING) std::fprintf(stderr, "[TensorRT] %s\n", msg);
    }
    std::string lastError;
    bool verbose = false;
};

constexpr char const* kUsage =
    "usage: esc_trt_runner --engine ENGINE --input IMAGE --output IMAGE [--plugin LIB]... [--tile N]\n"
    "                      [--overlap N] [--align N] [--warmup N] [--iters N] [--verbose]\n"
    "Upscale a PNG/PPM with an ESC TensorRT engine (tiled beyond its profile) and print the latency.\n";

// The plugin-interface major of this build's headers (TensorRT for RTX 1.x headers speak 11's interfaces).
constexpr int kHeaderMajor = NV_TENSORRT_MAJOR == 1 ? 11 : NV_TENSORRT_MAJOR;

struct Options {
    std::string engine, input, output;
    std::vector<std::string> plugins;
    bool help = false;
    bool verbose = false;
    int tile = 0;  // 0: the profile's maximum
    int overlap = 32;
    int align = 32;
    int warmup = 3;
    int iters = 20;
};

Options parseArgs(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            o.help = true;
            return o;
        }
        if (arg == "--verbose") {
            o.verbose = true;
            continue;
        }
        if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
        const std::string value = argv[++i];
        if (arg == "--engine") o.engine = value;
        else if (arg == "--plugin") o.plugins.push_back(value);
        else if (arg == "--input") o.input = value;
        else if (arg == "--output") o.output = value;
        else if (arg == "--tile") o.tile = std::stoi(value);
        else if (arg == "--overlap") o.overlap = std::stoi(value);
        else if (arg == "--align") o.align = std::stoi(value);
        else if (arg == "--warmup") o.warmup = std::stoi(value);
        else if (arg == "--iters") o.iters = std::stoi(value);
        else throw std::invalid_argument("unknown option " + arg);
    }
    if (o.engine.empty() || o.input.empty() || o.output.empty())
        throw std::invalid_argument("--engine, --input and --output are required");
    if (o.iters < 1 || o.warmup < 0) throw std::invalid_argument("--iters must be >= 1 and --warmup >= 0");
    return o;
}

// The header major an engines/plugin library was built with, read from its file (escPluginBuildInfo)
// without loading it; -1 for another plugin library, which is loaded as it is.
int pluginHeaderMajor(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open plugin " + path);
    std::string const bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.compare(0, 4, "\x7f" "ELF") != 0) throw std::runtime_error("plugin " + path + " is not a shared library");
    std::string const marker = "esc-trt-plugin tensorrt-headers-major=";
    size_t const at = bytes.find(marker);
    if (at == std::string::npos) return -1;
    return std::atoi(bytes.c_str() + at + marker.size());
}

void checkPlugins(const std::vector<std::string>& paths) {
    for (const std::string& path : paths) {
        int const major = pluginHeaderMajor(path);
        if (major >= 0 && major != kHeaderMajor)
            throw std::runtime_error("plugin " + path + " was built with TensorRT " + std::to_string(major) +
                                     ".x headers; this runner uses TensorRT " + std::to_string(kHeaderMajor) +
                                     ".x: rebuild the plugin with the runner's headers");
    }
}

// dlopen each plugin library before deserialization (its static registration finds the runtime); a library
// that exports getCreators (IPluginV3) or getPluginCreators is also handed to the registry, which the ESC
// plugin tolerates without registering twice (engines/plugin/escPluginRuntime.h).
std::vector<void*> loadPlugins(const std::vector<std::string>& paths, nvinfer1::IRuntime& runtime) {
    std::vector<void*> handles;
    for (const std::string& path : paths) {
        void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
        if (handle == nullptr) throw std::runtime_error("cannot load plugin " + path + ": " + dlerror());
        if (dlsym(handle, "getCreators") != nullptr || dlsym(handle, "getPluginCreators") != nullptr) {
            if (runtime.getPluginRegistry().loadLibrary(path.c_str()) == nullptr)
                throw std::runtime_error("TensorRT could not register the plugins of " + path);
        }
        handles.push_back(handle);
    }
    return handles;
}

std::vector<char> readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw std::runtime_error("cannot open engine " + path);
    std::vector<char> bytes(static_cast<size_t>(in.tellg()));
    if (bytes.empty()) throw std::runtime_error("engine " + path + " is empty");
    in.seekg(0);
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return bytes;
}

size_t volume(nvinfer1::Dims const& d) {
    size_t v = 1;
    for (int i = 0; i < d.nbDims; ++i) v *= static_cast<size_t>(std::max<int64_t>(d.d[i], 0));
    return v;
}

// One engine, one execution context, device buffers sized for the profile's maximum shapes.
class Runner {
public:
    Runner(nvinfer1::ICudaEngine& engine, int scale) : engine_(engine), scale_(scale) {
        for (char const* name : {kInput, kOutput}) {
            if (engine_.getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
                throw std::runtime_error(std::string("expected float32 tensor '") + name + "' in the engine");
        }
        if (engine_.getTensorIOMode(kInput) != nvinfer1::TensorIOMode::kINPUT ||
            engine_.getTensorIOMode(kOutput) != nvinfer1::TensorIOMode::kOUTPUT)
            throw std::runtime_error("expected engine input 'input' and output 'output'");
        maxIn_ = engine_.getProfileShape(kInput, 0, nvinfer1::OptProfileSelector::kMAX);
        minIn_ = engine_.getProfileShape(kInput, 0, nvinfer1::OptProfileSelector::kMIN);
        if (maxIn_.nbDims != 4 || minIn_.d[0] > 1) throw std::runtime_error("expected a [B, 3, H, W] profile with batch 1");
        context_.reset(engine_.createExecutionContext());
        if (!context_) throw std::runtime_error("createExecutionContext failed");
        ESC_CUDA(cudaStreamCreate(&stream_));
        const size_t inCount = 3 * static_cast<size_t>(maxIn_.d[2]) * maxIn_.d[3];
        ESC_CUDA(cudaMalloc(&dIn_, inCount * sizeof(float)));
        ESC_CUDA(cudaMalloc(&dOut_, inCount * scale_ * scale_ * sizeof(float)));
    }
    ~Runner() {
        cudaFree(dIn_);
        cudaFree(dOut_);
        if (stream_) cudaStreamDestroy(stream_);
    }
    Runner(Runner const&) = delete;
    Runner& operator=(Runner const&) = delete;

    int maxHeight() const { return static_cast<int>(maxIn_.d[2]); }
    int maxWidth() const { return static_cast<int>(maxIn_.d[3]); }

    esc::Image operator()(esc::Image const& tile) {
        if (tile.height < minIn_.d[2] || tile.width < minIn_.d[3])
            throw std::runtime_error("tile " + std::to_string(tile.width) + "x" + std::to_string(tile.height) +
                                     " is below the profile minimum");
        if (!context_->setInputShape(kInput, nvinfer1::Dims4{1, 3, tile.height, tile.width}))
            throw std::runtime_error("setInputShape rejected the tile shape");
        nvinfer1::Dims const outDims = context_->getTensorShape(kOutput);
        if (outDims.nbDims != 4 || outDims.d[2] != int64_t(tile.height) * scale_ || outDims.d[3] != int64_t(tile.width) * scale_)
            throw std::runtime_error("unexpected output shape from the engine");
        esc::Image out(tile.width * scale_, tile.height * scale_);
        ESC_CUDA(cudaMemcpyAsync(dIn_, tile.data.data(), tile.data.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
        if (!context_->setTensorAddress(kInput, dIn_) || !context_->setTensorAddress(kOutput, dOut_))
            throw std::runtime_error("setTensorAddress failed");
        if (!context_->enqueueV3(stream_)) throw std::runtime_error("enqueueV3 failed");
        ESC_CUDA(cudaMemcpyAsync(out.data.data(), dOut_, volume(outDims) * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        ESC_CUDA(cudaStreamSynchronize(stream_));
        return out;
    }

private:
    nvinfer1::ICudaEngine& engine_;
    int scale_;
    nvinfer1::Dims maxIn_{}, minIn_{};
    std::unique_ptr<nvinfer1::IExecutionContext> context_;
    cudaStream_t stream_ = nullptr;
    void* dIn_ = nullptr;
    void* dOut_ = nullptr;
};

// The scale from one shape query: output H / input H at the profile's minimum shape.
int engineScale(nvinfer1::ICudaEngine& engine) {
    std::unique_ptr<nvinfer1::IExecutionContext> ctx(engine.createExecutionContext());
    nvinfer1::Dims const minIn = engine.getProfileShape(kInput, 0, nvinfer1::OptProfileSelector::kMIN);
    if (!ctx || !ctx->setInputShape(kInput, minIn)) throw std::runtime_error("cannot set the profile's minimum shape");
    nvinfer1::Dims const out = ctx->getTensorShape(kOutput);
    if (out.nbDims != 4 || out.d[2] % minIn.d[2] != 0) throw std::runtime_error("cannot infer the upscaling factor");
    return static_cast<int>(out.d[2] / minIn.d[2]);
}

// TensorRT would log its CUDA initialisation failure and hand back a runtime that crashes on first use.
void requireGpu() {
    int count = 0;
    cudaError_t const status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0)
        throw std::runtime_error(std::string("no CUDA GPU is usable: ") +
                                 (status != cudaSuccess ? cudaGetErrorString(status) : "no device found") +
                                 " (TensorRT engines run on an NVIDIA GPU)");
}

int run(Options const& o) {
    std::vector<char> const blob = readFile(o.engine);
    esc::Image const image = esc::readImage(o.input);
    checkPlugins(o.plugins);
    requireGpu();
    Logger logger;
    logger.verbose = o.verbose;
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    if (!runtime) throw std::runtime_error("createInferRuntime failed: " + logger.lastError);
    std::vector<void*> plugins = loadPlugins(o.plugins, *runtime);
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine)
        throw std::runtime_error("cannot deserialize " + o.engine + ": " + logger.lastError +
                                 " (not an engine, or built by another TensorRT, for another GPU or plugin)");
    int const scale = engineScale(*engine);
    esc::Image result;
    std::vector<double> ms;
    {
        Runner runner(*engine, scale);
        int const th = o.tile > 0 ? std::min(o.tile, runner.maxHeight()) : runner.maxHeight();
        int const tw = o.tile > 0 ? std::min(o.tile, runner.maxWidth()) : runner.maxWidth();
        int const align = std::min(th, tw) - o.overlap >= o.align ? o.align : 1;
        auto upscale = [&](esc::Image const& t) { return runner(t); };
        for (int i = 0; i < o.warmup + o.iters; ++i) {
            auto const start = std::chrono::steady_clock::now();
            result = esc::upscaleTiled(image, upscale, scale, th, tw, o.overlap, align);
            std::chrono::duration<double, std::milli> const dt = std::chrono::steady_clock::now() - start;
            if (i >= o.warmup) ms.push_back(dt.count());
        }
        std::printf("tiles: %zu of up to %dx%d (overlap %d, align %d)\n",
                    esc::tileGrid(image.height, image.width, th, tw, o.overlap, align).size(), tw, th, o.overlap, align);
    }
    esc::writeImage(o.output, result);
    std::sort(ms.begin(), ms.end());
    double mean = 0;
    for (double v : ms) mean += v / ms.size();
    cudaDeviceProp prop{};
    ESC_CUDA(cudaGetDeviceProperties(&prop, 0));
    std::printf("%s: %dx%d -> %dx%d (x%d); TensorRT %d, GPU %s; %d warm-up + %d iterations, end to end "
                "(host copies included): median %.3f ms, mean %.3f ms, min %.3f ms\n",
                o.output.c_str(), image.width, image.height, result.width, result.height, scale,
                getInferLibVersion(), prop.name, o.warmup, o.iters, ms[ms.size() / 2], mean, ms.front());
    engine.reset();
    runtime.reset();
    for (void* h : plugins) dlclose(h);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        Options const options = parseArgs(argc, argv);
        if (options.help) {
            std::fputs(kUsage, stdout);
            return 0;
        }
        return run(options);
    } catch (std::exception const& e) {
        std::fprintf(stderr, "esc_trt_runner: error: %s\n", e.what());
        return 2;
    }
}
