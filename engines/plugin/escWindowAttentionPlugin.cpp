/*
 * TensorRT IPluginV3 wrapper of ESC's fused window attention; see escWindowAttentionPlugin.h for the node.
 *
 * Nothing throws across the library boundary: attribute and shape checks throw std::invalid_argument inside
 * try/catch (logged through TensorRT's logger, reported as nullptr or a non-zero status); CUDA failures are
 * logged and returned as non-zero from enqueue.
 */
#include "escWindowAttentionPlugin.h"

#include "escPluginRuntime.h"
#include "escWindowAttentionKernel.h"

#include <exception>
#include <limits>
#include <stdexcept>
#include <string>

namespace esc
{
namespace plugin
{
namespace
{

//! Validate-and-throw; the message is built only on failure. Callers catch (see guarded()).
#define ESC_VALIDATE(condition, message)                                                                              \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(condition))                                                                                              \
        {                                                                                                              \
            throw std::invalid_argument(std::string(kPLUGIN_NAME) + ": " + (message));                                \
        }                                                                                                              \
    } while (false)

//! Check-CUDA-and-return: logs the failing call and returns 1 from the enclosing function.
#define ESC_CHECK_CUDA(call)                                                                                           \
    do                                                                                                                 \
    {                                                                                                                  \
        cudaError_t const escStatus_ = (call);                                                                         \
        if (escStatus_ != cudaSuccess)                                                                                 \
        {                                                                                                              \
            logCudaError(#call, escStatus_);                                                                           \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (false)

void logError(char const* message) noexcept
{
    nvinfer1::ILogger* const logger = pluginLogger();
    if (logger != nullptr)
    {
        logger->log(nvinfer1::ILogger::Severity::kERROR, message);
    }
}

void logCudaError(char const* call, cudaError_t status) noexcept
{
    try
    {
        std::string const message = std::string(kPLUGIN_NAME) + ": " + call + " failed: " + cudaGetErrorName(status)
            + " (" + cudaGetErrorString(status) + ")";
        logError(message.c_str());
    }
    catch (...)
    {
        logError("ESCWindowAttention: a CUDA call failed");
    }
}

//! Runs body(); an exception becomes a logged error and status 1.
template <typename Body>
int32_t guarded(Body&& body) noexcept
{
    try
    {
        body();
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    catch (...)
    {
        logError("ESCWindowAttention: unknown exception");
    }
    return 1;
}

std::string toString(nvinfer1::Dims const& dims)
{
    std::string text = "[";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        text += (i > 0 ? ", " : "") + std::to_string(dims.d[i]);
    }
    return text + "]";
}

bool isSupportedType(nvinfer1::DataType type) noexcept
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

int32_t readIntField(nvinfer1::PluginField const& field)
{
    std::string const name{field.name};
    ESC_VALIDATE(field.data != nullptr && field.length == 1, "expected one value in field " + name);
    int64_t value = 0;
    switch (field.type)
    {
    case nvinfer1::PluginFieldType::kINT32: value = *static_cast<int32_t const*>(field.data); break;
    case nvinfer1::PluginFieldType::kINT64: value = *static_cast<int64_t const*>(field.data); break;
    case nvinfer1::PluginFieldType::kINT16: value = *static_cast<int16_t const*>(field.data); break;
    case nvinfer1::PluginFieldType::kINT8: value = *static_cast<int8_t const*>(field.data); break;
    default: throw std::invalid_argument(std::string(kPLUGIN_NAME) + ": expected an integer field " + name);
    }
    ESC_VALIDATE(value >= std::numeric_limits<int32_t>::min() && value <= std::numeric_limits<int32_t>::max(),
        "field " + name + " out of the int32 range: " + std::to_string(value));
    return static_cast<int32_t>(value);
}

} // namespace

// ---------------------------------------------------------------------------------------------------------------
// EscWindowAttentionPlugin

EscWindowAttentionPlugin::EscWindowAttentionPlugin(int32_t numHeads, int32_t windowSize)
    : mNumHeads(numHeads)
    , mWindowSize(windowSize)
{
    ESC_VALIDATE(numHeads >= 1 && numHeads <= kMAX_NUM_HEADS,
        std::string("expected ") + kATTR_NUM_HEADS + " in [1, " + std::to_string(kMAX_NUM_HEADS) + "], found "
            + std::to_string(numHeads));
    ESC_VALIDATE(windowSize >= kMIN_WINDOW_SIZE && windowSize <= kMAX_WINDOW_SIZE,
        std::string("expected ") + kATTR_WINDOW_SIZE + " in [" + std::to_string(kMIN_WINDOW_SIZE) + ", "
            + std::to_string(kMAX_WINDOW_SIZE) + "], found " + std::to_string(windowSize));
    mCacheId = std::string(kPLUGIN_NAME) + "_" + kPLUGIN_VERSION + "_heads" + std::to_string(numHeads) + "_window"
        + std::to_string(windowSize);
}

nvinfer1::IPluginCapability* EscWindowAttentionPlugin::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* EscWindowAttentionPlugin::clone() noexcept
{
    try
    {
        return new EscWindowAttentionPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

char const* EscWindowAttentionPlugin::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* EscWindowAttentionPlugin::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* EscWindowAttentionPlugin::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

void EscWindowAttentionPlugin::checkDims(nvinfer1::Dims const& qkv, nvinfer1::Dims const& table) const
{
    ESC_VALIDATE(qkv.nbDims == 4, "expected qkv of shape [B, 3C, H, W], found " + toString(qkv));
    ESC_VALIDATE(table.nbDims == 2, "expected a table of shape [heads, (2w-1)^2], found " + toString(table));
    int64_t const channels3 = qkv.d[1];
    if (channels3 >= 0)
    {
        int64_t const heads3 = int64_t{3} * mNumHeads; // int64: no overflow for any int32 attribute
        int64_t const headSize = channels3 / heads3;
        ESC_VALIDATE(channels3 % heads3 == 0 && (headSize == kHEAD_SIZE_SMALL || headSize == kHEAD_SIZE_LARGE),
            "expected qkv channels 3 * " + std::to_string(mNumHeads) + " heads * head size 16 or 32, found "
                + std::to_string(channels3));
    }
    int64_t const side = 2 * mWindowSize - 1;
    ESC_VALIDATE((table.d[0] < 0 || table.d[0] == mNumHeads) && (table.d[1] < 0 || table.d[1] == side * side),
        "expected a table of shape [" + std::to_string(mNumHeads) + ", " + std::to_string(side * side) + "], found "
            + toString(table));
    for (int32_t axis = 2; axis < 4; ++axis)
    {
        int64_t const size = qkv.d[axis];
        ESC_VALIDATE(size <= std::numeric_limits<int32_t>::max(), "qkv dimension too large: " + toString(qkv));
        if (size > 0)
        {
            int32_t const pad = windowPadding(static_cast<int32_t>(size), mWindowSize);
            ESC_VALIDATE(pad < size,
                "expected H and W larger than their reflect padding to a multiple of window " + std::to_string(mWindowSize)
                    + ", found qkv " + toString(qkv));
        }
    }
}

int32_t EscWindowAttentionPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return guarded([&] {
        ESC_VALIDATE(in != nullptr && nbInputs == kNUM_INPUTS && nbOutputs == kNUM_OUTPUTS,
            "expected 2 inputs and 1 output");
        checkDims(in[0].desc.dims, in[1].desc.dims);
    });
}

int32_t EscWindowAttentionPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != kNUM_OUTPUTS || nbInputs != kNUM_INPUTS)
    {
        logError("ESCWindowAttention: expected 2 inputs and 1 output");
        return 1;
    }
    outputTypes[0] = inputTypes[0]; // strongly typed networks: the output has the type of qkv
    return 0;
}

int32_t EscWindowAttentionPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    return guarded([&] {
        ESC_VALIDATE(inputs != nullptr && outputs != nullptr && nbInputs == kNUM_INPUTS && nbOutputs == kNUM_OUTPUTS,
            "expected 2 inputs and 1 output");
        nvinfer1::DimsExprs const& qkv = inputs[0];
        ESC_VALIDATE(qkv.nbDims == 4 && inputs[1].nbDims == 2,
            "expected qkv [B, 3C, H, W] and table [heads, (2w-1)^2], found " + std::to_string(qkv.nbDims) + "-D and "
                + std::to_string(inputs[1].nbDims) + "-D inputs");
        nvinfer1::IDimensionExpr const* const three = exprBuilder.constant(3);
        ESC_VALIDATE(three != nullptr, "IExprBuilder::constant failed");
        outputs[0].nbDims = 4;
        outputs[0].d[0] = qkv.d[0];
        outputs[0].d[1] = exprBuilder.operation(nvinfer1::DimensionOperation::kFLOOR_DIV, *qkv.d[1], *three);
        outputs[0].d[2] = qkv.d[2];
        outputs[0].d[3] = qkv.d[3];
        ESC_VALIDATE(outputs[0].d[1] != nullptr, "IExprBuilder::operation failed");
    });
}

bool EscWindowAttentionPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNUM_INPUTS || nbOutputs != kNUM_OUTPUTS || pos < 0
        || pos >= kNUM_INPUTS + kNUM_OUTPUTS)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    switch (pos)
    {
    case 0: return isSupportedType(desc.type);                                                // qkv
    case 1: return desc.type == nvinfer1::DataType::kFLOAT || desc.type == inOut[0].desc.type; // table
    default: return desc.type == inOut[0].desc.type;                                          // out
    }
}

int32_t EscWindowAttentionPlugin::getNbOutputs() const noexcept
{
    return kNUM_OUTPUTS;
}

char const* EscWindowAttentionPlugin::getTimingCacheID() noexcept
{
    return mCacheId.c_str();
}

char const* EscWindowAttentionPlugin::getMetadataString() noexcept
{
    return mCacheId.c_str();
}

int32_t EscWindowAttentionPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded([&] {
        ESC_VALIDATE(in != nullptr && out != nullptr && nbInputs == kNUM_INPUTS && nbOutputs == kNUM_OUTPUTS,
            "expected 2 inputs and 1 output");
        nvinfer1::Dims const& qkv = in[0].dims;
        checkDims(qkv, in[1].dims);
        for (int32_t axis = 0; axis < 4; ++axis)
        {
            ESC_VALIDATE(qkv.d[axis] >= 0 && qkv.d[axis] <= std::numeric_limits<int32_t>::max(),
                "expected known qkv dimensions within int32, found " + toString(qkv));
        }
        ESC_VALIDATE(isSupportedType(in[0].type) && out[0].type == in[0].type
                && (in[1].type == nvinfer1::DataType::kFLOAT || in[1].type == in[0].type),
            "expected fp32 or fp16 qkv and output of one type, and an fp32 or qkv-typed table");
        mType = in[0].type;
        mTableType = in[1].type;
        mBatch = static_cast<int32_t>(qkv.d[0]);
        mChannels = static_cast<int32_t>(qkv.d[1] / 3);
        mHeight = static_cast<int32_t>(qkv.d[2]);
        mWidth = static_cast<int32_t>(qkv.d[3]);
    });
}

int32_t EscWindowAttentionPlugin::enqueue(nvinfer1::PluginTensorDesc const* /*inputDesc*/,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    EscDataType const tableType
        = mTableType == nvinfer1::DataType::kHALF ? EscDataType::kFLOAT16 : EscDataType::kFLOAT32;
    switch (mType)
    {
    case nvinfer1::DataType::kFLOAT:
        ESC_CHECK_CUDA(windowAttention(EscDataType::kFLOAT32, tableType, inputs[0], inputs[1], outputs[0], mBatch,
            mChannels, mNumHeads, mHeight, mWidth, mWindowSize, stream));
        return 0;
    case nvinfer1::DataType::kHALF:
        ESC_CHECK_CUDA(windowAttention(EscDataType::kFLOAT16, tableType, inputs[0], inputs[1], outputs[0], mBatch,
            mChannels, mNumHeads, mHeight, mWidth, mWindowSize, stream));
        return 0;
    default: logError("ESCWindowAttention: enqueue before onShapeChange or with an unsupported type"); return 1;
    }
}

nvinfer1::IPluginV3* EscWindowAttentionPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

nvinfer1::PluginFieldCollection const* EscWindowAttentionPlugin::getFieldsToSerialize() noexcept
{
    mFields[0] = nvinfer1::PluginField(kATTR_NUM_HEADS, &mNumHeads, nvinfer1::PluginFieldType::kINT32, 1);
    mFields[1] = nvinfer1::PluginField(kATTR_WINDOW_SIZE, &mWindowSize, nvinfer1::PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
    return &mFieldCollection;
}

// ---------------------------------------------------------------------------------------------------------------
// EscWindowAttentionPluginCreator

EscWindowAttentionPluginCreator::EscWindowAttentionPluginCreator() noexcept
    : mFields{nvinfer1::PluginField(kATTR_NUM_HEADS, nullptr, nvinfer1::PluginFieldType::kINT32, 1),
        nvinfer1::PluginField(kATTR_WINDOW_SIZE, nullptr, nvinfer1::PluginFieldType::kINT32, 1)}
{
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* EscWindowAttentionPluginCreator::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* EscWindowAttentionPluginCreator::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* EscWindowAttentionPluginCreator::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

nvinfer1::PluginFieldCollection const* EscWindowAttentionPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

nvinfer1::IPluginV3* EscWindowAttentionPluginCreator::createPlugin(
    char const* /*name*/, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try
    {
        ESC_VALIDATE(fc != nullptr && (fc->nbFields == 0 || fc->fields != nullptr), "no plugin fields");
        int32_t numHeads = 0;
        int32_t windowSize = 0;
        bool hasNumHeads = false;
        bool hasWindowSize = false;
        for (int32_t i = 0; i < fc->nbFields; ++i)
        {
            nvinfer1::PluginField const& field = fc->fields[i];
            ESC_VALIDATE(field.name != nullptr, "a plugin field without a name");
            std::string const name{field.name};
            if (name == kATTR_NUM_HEADS)
            {
                numHeads = readIntField(field);
                hasNumHeads = true;
            }
            else if (name == kATTR_WINDOW_SIZE)
            {
                windowSize = readIntField(field);
                hasWindowSize = true;
            }
            else
            {
                // plugin_version / plugin_namespace select the creator; anything else is a mistake.
                ESC_VALIDATE(name == kATTR_PLUGIN_VERSION || name == kATTR_PLUGIN_NAMESPACE,
                    "unknown field " + name + " (expected " + kATTR_NUM_HEADS + ", " + kATTR_WINDOW_SIZE + ")");
            }
        }
        ESC_VALIDATE(hasNumHeads && hasWindowSize,
            std::string("expected the fields ") + kATTR_NUM_HEADS + " and " + kATTR_WINDOW_SIZE + ", found "
                + (hasNumHeads ? kATTR_NUM_HEADS : hasWindowSize ? kATTR_WINDOW_SIZE : "neither"));
        return new EscWindowAttentionPlugin(numHeads, windowSize);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    catch (...)
    {
        logError("ESCWindowAttention: unknown exception in createPlugin");
    }
    return nullptr;
}

} // namespace plugin
} // namespace esc
