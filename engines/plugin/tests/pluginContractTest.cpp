/*
 * The ESCWindowAttention plugin through a real TensorRT plugin registry, without a GPU.
 *
 *   escPluginContractTest <TensorRT runtime library> <plugin library> [--expect-gpu]
 *
 * The runtime library is dlopen'ed the way Python bindings load it (RTLD_LOCAL); its getPluginRegistry()
 * loads the plugin with IPluginRegistry::loadLibrary, and the creator it hands out is exercised directly:
 * both phases, every capability interface, type and shape inference over all type/format combinations,
 * configure/shape change, serialization round trip, clone/attach, enqueue (an error without a GPU), and
 * bad attribute sets that must each be refused with exactly one logged message. The static-registration
 * path (plain dlopen of the plugin, then loadLibrary) must not register the creator twice.
 * Prints one line per failed check; exits 0 only when every check passed.
 */
#include "NvInferRuntime.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace
{

using nvinfer1::DataType;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorFormat;

int gFailures = 0;
int gChecks = 0;

void check(bool ok, std::string const& what)
{
    ++gChecks;
    if (!ok)
    {
        ++gFailures;
        std::printf("FAIL: %s\n", what.c_str());
    }
}

//! Records what the plugin logs, so that each refusal can be counted.
class RecordingLogger : public nvinfer1::ILogger
{
public:
    void log(Severity severity, char const* message) noexcept override
    {
        if (severity <= Severity::kERROR)
        {
            errors.emplace_back(message);
        }
    }
    std::vector<std::string> errors;
};

class Finder : public nvinfer1::ILoggerFinder
{
public:
    explicit Finder(nvinfer1::ILogger* logger)
        : mLogger(logger)
    {
    }
    nvinfer1::ILogger* findLogger() override
    {
        return mLogger;
    }

private:
    nvinfer1::ILogger* mLogger;
};

// ------------------------------------------------------------------------------------ a small IExprBuilder

class ConstantImpl : public nvinfer1::apiv::VDimensionExpr
{
public:
    explicit ConstantImpl(int64_t value)
        : mValue(value)
    {
    }
    bool isConstant() const override
    {
        return true;
    }
    int64_t getConstantValue() const override
    {
        return mValue;
    }
    bool isSizeTensor() const override
    {
        return false;
    }

private:
    int64_t mValue;
};

class Constant : public nvinfer1::IDimensionExpr
{
public:
    explicit Constant(int64_t value)
        : mValueImpl(value)
    {
        mImpl = &mValueImpl;
    }

private:
    ConstantImpl mValueImpl;
};

//! Folds every operation on constants; enough to evaluate getOutputShapes on known dims.
class Folder : public nvinfer1::apiv::VExprBuilder
{
public:
    nvinfer1::IDimensionExpr const* constant(int64_t value) override
    {
        mExprs.push_back(std::make_unique<Constant>(value));
        return mExprs.back().get();
    }
    nvinfer1::IDimensionExpr const* operation(nvinfer1::DimensionOperation op, nvinfer1::IDimensionExpr const& a,
        nvinfer1::IDimensionExpr const& b) override
    {
        int64_t const x = a.getConstantValue();
        int64_t const y = b.getConstantValue();
        switch (op)
        {
        case nvinfer1::DimensionOperation::kSUM: return constant(x + y);
        case nvinfer1::DimensionOperation::kPROD: return constant(x * y);
        case nvinfer1::DimensionOperation::kFLOOR_DIV: return y == 0 ? nullptr : constant(x / y);
        case nvinfer1::DimensionOperation::kSUB: return constant(x - y);
        default: return nullptr;
        }
    }
    nvinfer1::IDimensionExpr const* declareSizeTensor(
        int32_t, nvinfer1::IDimensionExpr const&, nvinfer1::IDimensionExpr const&) override
    {
        return nullptr;
    }

private:
    std::vector<std::unique_ptr<Constant>> mExprs;
};

class ExprBuilder : public nvinfer1::IExprBuilder
{
public:
    ExprBuilder()
    {
        mImpl = &mFolder;
    }

private:
    Folder mFolder;
};

// ------------------------------------------------------------------------------------ helpers

nvinfer1::Dims dims(std::vector<int64_t> const& values)
{
    nvinfer1::Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    for (size_t i = 0; i < values.size(); ++i)
    {
        d.d[i] = values[i];
    }
    return d;
}

nvinfer1::DynamicPluginTensorDesc dynamicDesc(std::vector<int64_t> const& shape, DataType type)
{
    nvinfer1::DynamicPluginTensorDesc desc{};
    desc.desc.dims = dims(shape);
    desc.desc.type = type;
    desc.desc.format = TensorFormat::kLINEAR;
    desc.min = desc.opt = desc.max = dims(shape);
    return desc;
}

nvinfer1::PluginTensorDesc tensorDesc(std::vector<int64_t> const& shape, DataType type)
{
    nvinfer1::PluginTensorDesc desc{};
    desc.dims = dims(shape);
    desc.type = type;
    desc.format = TensorFormat::kLINEAR;
    desc.scale = 1.F;
    return desc;
}

struct Attributes
{
    std::string label;
    std::vector<PluginField> fields;
    bool nullCollection{false};
    bool nullFieldArray{false};
};

int32_t gHeads = 4;
int32_t gWindow = 32;

PluginFieldCollection collection(std::vector<PluginField>& fields)
{
    PluginFieldCollection fc{};
    fc.nbFields = static_cast<int32_t>(fields.size());
    fc.fields = fields.data();
    return fc;
}

struct Plugin
{
    nvinfer1::IPluginV3* base{nullptr};
    nvinfer1::IPluginV3OneCore* core{nullptr};
    nvinfer1::IPluginV3OneBuild* build{nullptr};
    nvinfer1::IPluginV3OneRuntime* runtime{nullptr};
};

Plugin capabilities(nvinfer1::IPluginV3* plugin)
{
    Plugin p{plugin};
    p.core = static_cast<nvinfer1::IPluginV3OneCore*>(plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kCORE));
    p.build
        = static_cast<nvinfer1::IPluginV3OneBuild*>(plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
    p.runtime = static_cast<nvinfer1::IPluginV3OneRuntime*>(
        plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
    return p;
}

bool isSupportedType(DataType t)
{
    return t == DataType::kFLOAT || t == DataType::kHALF;
}

//! The plugin's format contract, written independently of its code: linear only; qkv fp32/fp16; table fp32
//! or qkv's type; output qkv's type.
bool expectedSupport(int32_t pos, DataType qkv, DataType type, TensorFormat format)
{
    if (format != TensorFormat::kLINEAR)
    {
        return false;
    }
    switch (pos)
    {
    case 0: return isSupportedType(type);
    case 1: return type == DataType::kFLOAT || type == qkv;
    default: return type == qkv;
    }
}

// ------------------------------------------------------------------------------------ the checks

void checkPlugin(Plugin const& p, RecordingLogger& logger, bool expectGpu)
{
    check(p.core != nullptr && p.build != nullptr && p.runtime != nullptr, "every capability interface");
    if (p.core == nullptr || p.build == nullptr || p.runtime == nullptr)
    {
        return;
    }
    check(std::strcmp(p.core->getPluginName(), "ESCWindowAttention") == 0, "plugin name");
    check(std::strcmp(p.core->getPluginVersion(), "1") == 0, "plugin version");
    check(std::strcmp(p.core->getPluginNamespace(), "") == 0, "plugin namespace");
    check(std::string(p.core->getInterfaceInfo().kind) == "PLUGIN_V3ONE_CORE", "core interface kind");
    check(p.build->getNbOutputs() == 1, "one output");
    check(std::string(p.build->getTimingCacheID()) == "ESCWindowAttention_1_heads4_window32", "timing cache id");

    // getOutputDataTypes
    DataType out = DataType::kINT8;
    DataType const halfIn[] = {DataType::kHALF, DataType::kFLOAT};
    check(p.build->getOutputDataTypes(&out, 1, halfIn, 2) == 0 && out == DataType::kHALF, "output type of fp16 qkv");
    DataType const floatIn[] = {DataType::kFLOAT, DataType::kFLOAT};
    check(p.build->getOutputDataTypes(&out, 1, floatIn, 2) == 0 && out == DataType::kFLOAT, "output type of fp32 qkv");
    size_t errors = logger.errors.size();
    check(p.build->getOutputDataTypes(&out, 1, floatIn, 1) != 0 && logger.errors.size() == errors + 1,
        "getOutputDataTypes refuses one input, with one message");

    // supportsFormatCombination over every type x format, for each position
    int32_t const nbTypes = nvinfer1::EnumMax<DataType>();
    int32_t const nbFormats = nvinfer1::EnumMax<TensorFormat>();
    int32_t mismatches = 0;
    int32_t combinations = 0;
    for (int32_t q = 0; q < nbTypes; ++q)
    {
        for (int32_t pos = 0; pos < 3; ++pos)
        {
            for (int32_t t = 0; t < nbTypes; ++t)
            {
                for (int32_t f = 0; f < nbFormats; ++f)
                {
                    nvinfer1::DynamicPluginTensorDesc io[3]
                        = {dynamicDesc({1, 192, 32, 32}, static_cast<DataType>(q)), dynamicDesc({4, 3969}, DataType::kFLOAT),
                            dynamicDesc({1, 64, 32, 32}, static_cast<DataType>(q))};
                    io[pos].desc.type = static_cast<DataType>(t);
                    io[pos].desc.format = static_cast<TensorFormat>(f);
                    DataType const qkv = io[0].desc.type;
                    bool const got = p.build->supportsFormatCombination(pos, io, 2, 1);
                    bool const want = expectedSupport(pos, qkv, io[pos].desc.type, io[pos].desc.format);
                    mismatches += got != want ? 1 : 0;
                    ++combinations;
                }
            }
        }
    }
    check(mismatches == 0, "supportsFormatCombination: " + std::to_string(mismatches) + " of "
            + std::to_string(combinations) + " type/format combinations differ from the contract");
    nvinfer1::DynamicPluginTensorDesc good[3]
        = {dynamicDesc({1, 192, 32, 32}, DataType::kHALF), dynamicDesc({4, 3969}, DataType::kFLOAT),
            dynamicDesc({1, 64, 32, 32}, DataType::kHALF)};
    check(!p.build->supportsFormatCombination(3, good, 2, 1) && !p.build->supportsFormatCombination(-1, good, 2, 1)
            && !p.build->supportsFormatCombination(0, nullptr, 2, 1),
        "supportsFormatCombination refuses positions out of range and null descriptors");

    // getOutputShapes on known dims: [2, 192, 40, 50] -> [2, 64, 40, 50]
    ExprBuilder builder;
    nvinfer1::DimsExprs in[2]{};
    in[0].nbDims = 4;
    int64_t const qkvShape[] = {2, 192, 40, 50};
    for (int32_t i = 0; i < 4; ++i)
    {
        in[0].d[i] = builder.constant(qkvShape[i]);
    }
    in[1].nbDims = 2;
    in[1].d[0] = builder.constant(4);
    in[1].d[1] = builder.constant(3969);
    nvinfer1::DimsExprs outShape{};
    check(p.build->getOutputShapes(in, 2, nullptr, 0, &outShape, 1, builder) == 0, "getOutputShapes succeeds");
    bool const shapeOk = outShape.nbDims == 4 && outShape.d[0]->getConstantValue() == 2
        && outShape.d[1]->getConstantValue() == 64 && outShape.d[2]->getConstantValue() == 40
        && outShape.d[3]->getConstantValue() == 50;
    check(shapeOk, "getOutputShapes gives [2, 64, 40, 50]");
    errors = logger.errors.size();
    in[0].nbDims = 3;
    check(p.build->getOutputShapes(in, 2, nullptr, 0, &outShape, 1, builder) != 0 && logger.errors.size() == errors + 1,
        "getOutputShapes refuses a 3-D qkv with one message");

    // configurePlugin
    check(p.build->configurePlugin(good, 2, good + 2, 1) == 0, "configurePlugin on [1, 192, 32, 32]");
    nvinfer1::DynamicPluginTensorDesc dynamic[3]
        = {dynamicDesc({-1, 192, -1, -1}, DataType::kHALF), dynamicDesc({4, 3969}, DataType::kFLOAT),
            dynamicDesc({-1, 64, -1, -1}, DataType::kHALF)};
    check(p.build->configurePlugin(dynamic, 2, dynamic + 2, 1) == 0, "configurePlugin with unknown dims");
    nvinfer1::DynamicPluginTensorDesc bad[3]
        = {dynamicDesc({1, 100, 32, 32}, DataType::kHALF), dynamicDesc({4, 3969}, DataType::kFLOAT),
            dynamicDesc({1, 64, 32, 32}, DataType::kHALF)};
    errors = logger.errors.size();
    check(p.build->configurePlugin(bad, 2, bad + 2, 1) != 0 && logger.errors.size() == errors + 1,
        "configurePlugin refuses 100 qkv channels with one message");
    bad[0] = dynamicDesc({1, 192, 32, 32}, DataType::kHALF);
    bad[1] = dynamicDesc({4, 100}, DataType::kFLOAT);
    errors = logger.errors.size();
    check(p.build->configurePlugin(bad, 2, bad + 2, 1) != 0 && logger.errors.size() == errors + 1,
        "configurePlugin refuses a table of the wrong size with one message");

    // onShapeChange, then enqueue (no GPU: an error status, never a crash)
    nvinfer1::PluginTensorDesc shapeIn[2] = {tensorDesc({1, 192, 20, 24}, DataType::kHALF), tensorDesc({4, 3969}, DataType::kFLOAT)};
    nvinfer1::PluginTensorDesc shapeOut[1] = {tensorDesc({1, 64, 20, 24}, DataType::kHALF)};
    check(p.runtime->onShapeChange(shapeIn, 2, shapeOut, 1) == 0, "onShapeChange on [1, 192, 20, 24]");
    nvinfer1::PluginTensorDesc tooSmall[2] = {tensorDesc({1, 192, 12, 24}, DataType::kHALF), tensorDesc({4, 3969}, DataType::kFLOAT)};
    errors = logger.errors.size();
    check(p.runtime->onShapeChange(tooSmall, 2, shapeOut, 1) != 0 && logger.errors.size() == errors + 1,
        "onShapeChange refuses a side at or below its reflect padding with one message");
    check(p.runtime->onShapeChange(shapeIn, 2, shapeOut, 1) == 0, "onShapeChange again after a refusal");
    if (!expectGpu)
    {
        void const* inputs[2] = {nullptr, nullptr};
        void* outputs[1] = {nullptr};
        errors = logger.errors.size();
        int32_t const status = p.runtime->enqueue(shapeIn, shapeOut, inputs, outputs, nullptr, nullptr);
        check(status != 0 && logger.errors.size() == errors + 1, "enqueue without a GPU returns an error, with one message");
    }

    // serialization round trip through the creator happens in main (it needs the creator)
    nvinfer1::IPluginV3* const copy = p.base->clone();
    check(copy != nullptr, "clone");
    delete copy;
    nvinfer1::IPluginV3* const attached = p.runtime->attachToContext(nullptr);
    check(attached != nullptr, "attachToContext");
    delete attached;
}

std::vector<Attributes> badAttributeSets()
{
    static int32_t zero = 0;
    static int32_t negative = -3;
    static int32_t int32Max = std::numeric_limits<int32_t>::max();
    static int32_t tooManyHeads = 65536;
    static int32_t window7 = 7;
    static int32_t window65 = 65;
    static int64_t huge = int64_t{1} << 40;
    static int64_t int64Min = std::numeric_limits<int64_t>::min();
    static int16_t negative16 = -32;
    static float floatHeads = 4.F;
    static char charWindow[] = "32";
    static int32_t two[2] = {4, 4};
    PluginField const heads{"num_heads", &gHeads, PluginFieldType::kINT32, 1};
    PluginField const window{"window_size", &gWindow, PluginFieldType::kINT32, 1};
    auto withHeads = [&](PluginField f) { return std::vector<PluginField>{f, window}; };
    auto withWindow = [&](PluginField f) { return std::vector<PluginField>{heads, f}; };
    return {
        {"no collection", {}, true, false},
        {"a field count with no field array", {heads}, false, true},
        {"no fields", {}},
        {"missing num_heads", {window}},
        {"missing window_size", {heads}},
        {"num_heads of type float32", withHeads({"num_heads", &floatHeads, PluginFieldType::kFLOAT32, 1})},
        {"window_size of type char", withWindow({"window_size", charWindow, PluginFieldType::kCHAR, 2})},
        {"num_heads with two values", withHeads({"num_heads", two, PluginFieldType::kINT32, 2})},
        {"num_heads with no data", withHeads({"num_heads", nullptr, PluginFieldType::kINT32, 1})},
        {"num_heads 0", withHeads({"num_heads", &zero, PluginFieldType::kINT32, 1})},
        {"num_heads -3", withHeads({"num_heads", &negative, PluginFieldType::kINT32, 1})},
        {"num_heads INT32_MAX (3 * heads overflows int32)", withHeads({"num_heads", &int32Max, PluginFieldType::kINT32, 1})},
        {"num_heads 65536 (above the grid limit)", withHeads({"num_heads", &tooManyHeads, PluginFieldType::kINT32, 1})},
        {"num_heads INT64_MIN", withHeads({"num_heads", &int64Min, PluginFieldType::kINT64, 1})},
        {"window_size 7", withWindow({"window_size", &window7, PluginFieldType::kINT32, 1})},
        {"window_size 65", withWindow({"window_size", &window65, PluginFieldType::kINT32, 1})},
        {"window_size 2^40 as int64", withWindow({"window_size", &huge, PluginFieldType::kINT64, 1})},
        {"window_size -32 as int16", withWindow({"window_size", &negative16, PluginFieldType::kINT16, 1})},
        {"an unknown field", {heads, window, PluginField{"stride", &gHeads, PluginFieldType::kINT32, 1}}},
        {"a field without a name", {heads, window, PluginField{nullptr, &gHeads, PluginFieldType::kINT32, 1}}},
    };
}

template <typename Fn>
Fn symbol(void* handle, char const* name)
{
    return reinterpret_cast<Fn>(dlsym(handle, name));
}

int32_t countCreators(nvinfer1::IPluginRegistry& registry)
{
    int32_t n = 0;
    nvinfer1::IPluginCreatorInterface* const* all = registry.getAllCreators(&n);
    int32_t found = 0;
    for (int32_t i = 0; i < n; ++i)
    {
        auto const* creator = dynamic_cast<nvinfer1::IPluginCreatorV3One const*>(all[i]);
        if (creator != nullptr && std::strcmp(creator->getPluginName(), "ESCWindowAttention") == 0)
        {
            ++found;
        }
    }
    return found;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 3 || std::strcmp(argv[1], "--help") == 0)
    {
        std::printf("usage: %s <TensorRT runtime library> <plugin library> [--expect-gpu]\n", argv[0]);
        return argc < 3 ? 2 : 0;
    }
    char const* runtimePath = argv[1];
    char const* pluginPath = argv[2];
    bool const expectGpu = argc > 3 && std::strcmp(argv[3], "--expect-gpu") == 0;

    void* const runtime = dlopen(runtimePath, RTLD_NOW | RTLD_LOCAL);
    if (runtime == nullptr)
    {
        std::printf("FAIL: cannot load %s: %s\n", runtimePath, dlerror());
        return 1;
    }
    auto const getRegistry = symbol<nvinfer1::IPluginRegistry* (*) ()>(runtime, "getPluginRegistry");
    auto const getVersion = symbol<int32_t (*)()>(runtime, "getInferLibVersion");
    if (getRegistry == nullptr || getVersion == nullptr)
    {
        std::printf("FAIL: %s exports no getPluginRegistry/getInferLibVersion\n", runtimePath);
        return 1;
    }
    std::printf("runtime %s, version %d\n", runtimePath, getVersion());
    nvinfer1::IPluginRegistry& registry = *getRegistry();

    // dlopen first (static registration), then the registry's own loader: one creator, never two.
    void* const plugin = dlopen(pluginPath, RTLD_NOW | RTLD_LOCAL);
    check(plugin != nullptr, std::string("dlopen of the plugin: ") + (plugin == nullptr ? dlerror() : "ok"));
    if (plugin == nullptr)
    {
        return 1;
    }
    check(countCreators(registry) == 1, "dlopen registers the creator once (static registration)");
    auto const library = registry.loadLibrary(pluginPath);
    check(library != nullptr, "IPluginRegistry::loadLibrary accepts the plugin");
    check(countCreators(registry) == 1, "after loadLibrary the creator is registered once");
    if (library != nullptr)
    {
        registry.deregisterLibrary(library);
        check(countCreators(registry) == 0, "deregisterLibrary removes the creator");
        auto const again = registry.loadLibrary(pluginPath);
        check(again != nullptr && countCreators(registry) == 1, "loadLibrary again after deregisterLibrary");
    }

    // Our logger, through the entry point TensorRT's loader calls.
    RecordingLogger logger;
    Finder finder(&logger);
    auto const setLoggerFinder = symbol<void (*)(nvinfer1::ILoggerFinder*)>(plugin, "setLoggerFinder");
    check(setLoggerFinder != nullptr && symbol<void*>(plugin, "getCreators") != nullptr,
        "the plugin exports setLoggerFinder and getCreators");
    if (setLoggerFinder != nullptr)
    {
        setLoggerFinder(&finder);
    }

    auto* const creator = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(registry.getCreator("ESCWindowAttention", "1", ""));
    check(creator != nullptr, "the registry gives an IPluginCreatorV3One for ESCWindowAttention v1");
    if (creator == nullptr)
    {
        return 1;
    }
    PluginFieldCollection const* names = creator->getFieldNames();
    check(names != nullptr && names->nbFields == 2 && std::strcmp(names->fields[0].name, "num_heads") == 0
            && std::strcmp(names->fields[1].name, "window_size") == 0,
        "getFieldNames lists num_heads and window_size");

    std::vector<PluginField> goodFields{{"num_heads", &gHeads, PluginFieldType::kINT32, 1},
        {"window_size", &gWindow, PluginFieldType::kINT32, 1}};
    PluginFieldCollection const good = collection(goodFields);
    for (nvinfer1::TensorRTPhase phase : {nvinfer1::TensorRTPhase::kBUILD, nvinfer1::TensorRTPhase::kRUNTIME})
    {
        std::string const label = phase == nvinfer1::TensorRTPhase::kBUILD ? "build" : "runtime";
        nvinfer1::IPluginV3* const made = creator->createPlugin("attn", &good, phase);
        check(made != nullptr, "createPlugin in the " + label + " phase");
        if (made == nullptr)
        {
            continue;
        }
        Plugin const p = capabilities(made);
        checkPlugin(p, logger, expectGpu);
        // getFieldsToSerialize -> createPlugin(kRUNTIME): the same attributes come back.
        PluginFieldCollection const* serialized = p.runtime->getFieldsToSerialize();
        nvinfer1::IPluginV3* const restored = creator->createPlugin("attn", serialized, nvinfer1::TensorRTPhase::kRUNTIME);
        check(restored != nullptr, label + ": a plugin from its serialized fields");
        if (restored != nullptr)
        {
            Plugin const r = capabilities(restored);
            check(std::string(r.build->getTimingCacheID()) == p.build->getTimingCacheID(),
                label + ": the restored plugin has the same attributes");
            delete restored;
        }
        delete made;
    }

    int32_t refused = 0;
    std::vector<Attributes> sets = badAttributeSets();
    for (Attributes& set : sets)
    {
        PluginFieldCollection fc = collection(set.fields);
        if (set.nullFieldArray)
        {
            fc.fields = nullptr;
        }
        size_t const before = logger.errors.size();
        nvinfer1::IPluginV3* const made
            = creator->createPlugin("attn", set.nullCollection ? nullptr : &fc, nvinfer1::TensorRTPhase::kBUILD);
        size_t const messages = logger.errors.size() - before;
        bool const ok = made == nullptr && messages == 1
            && logger.errors.back().rfind("ESCWindowAttention", 0) == 0;
        check(ok, "bad attributes (" + set.label + "): expected nullptr and one message, got "
                + (made == nullptr ? "nullptr" : "a plugin") + " and " + std::to_string(messages) + " messages");
        refused += ok ? 1 : 0;
        delete made;
    }
    std::printf("bad attribute sets refused with one message: %d of %zu\n", refused, sets.size());
    for (size_t i = 0; i < logger.errors.size() && i < 3; ++i)
    {
        std::printf("  e.g. %s\n", logger.errors[i].c_str());
    }
    if (setLoggerFinder != nullptr)
    {
        setLoggerFinder(nullptr);
    }
    std::printf("%d checks, %d failed\n", gChecks, gFailures);
    return gFailures == 0 ? 0 : 1;
}
