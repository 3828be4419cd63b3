// Same rules as esc/tiling.py (read its module docstring); tests/test_main.cpp prints them for comparison.
#include "esc/tiling.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace esc {

std::vector<Span> tileSpans(int size, int tile, int overlap, int align) {
    if (size < 1) throw std::invalid_argument("size must be positive, got " + std::to_string(size));
    if (tile < 1) throw std::invalid_argument("tile must be positive, got " + std::to_string(tile));
    if (align < 1) throw std::invalid_argument("align must be positive, got " + std::to_string(align));
    if (overlap < 0 || overlap >= tile)
        throw std::invalid_argument("overlap must be in [0, tile), got " + std::to_string(overlap));
    if (size <= tile) return {{0, size}};
    const int stride = (tile - overlap) / align * align;
    if (stride < 1) throw std::invalid_argument("tile - overlap must be at least align");
    const int last = (size - tile + align - 1) / align * align;  // first multiple of align >= size - tile
    std::vector<int> starts{0};
    while (starts.back() + tile < size) starts.push_back(std::min(starts.back() + stride, last));
    std::vector<Span> spans;
    for (int s : starts) spans.push_back({s, std::min(tile, size - s)});
    return spans;
}

std::vector<std::vector<double>> axisWeights(const std::vector<Span>& spans, int scale) {
    std::vector<std::vector<double>> raw;
    for (size_t i = 0; i < spans.size(); ++i) {
        const int outLen = spans[i].length * scale;
        std::vector<double> w(outLen, 1.0);
        const double left = i > 0 ? double(spans[i - 1].start + spans[i - 1].length - spans[i].start) * scale : 0.0;
        const double right = i + 1 < spans.size() ? double(spans[i].start + spans[i].length - spans[i + 1].start) * scale : 0.0;
        for (int j = 0; j < outLen; ++j) {
            const double pos = j + 0.5;  // pixel centre from the tile start
            if (left > 0) w[j] = std::min(w[j], pos / left);
            if (right > 0) w[j] = std::min(w[j], (outLen - pos) / right);
        }
        raw.push_back(std::move(w));
    }
    const Span& end = spans.back();
    std::vector<double> total(static_cast<size_t>(end.start + end.length) * scale, 0.0);
    for (size_t i = 0; i < spans.size(); ++i)
        for (size_t j = 0; j < raw[i].size(); ++j) total[spans[i].start * scale + j] += raw[i][j];
    for (size_t i = 0; i < spans.size(); ++i)
        for (size_t j = 0; j < raw[i].size(); ++j) raw[i][j] /= total[spans[i].start * scale + j];
    return raw;
}

std::vector<Tile> tileGrid(int height, int width, int tileHeight, int tileWidth, int overlap, int align) {
    std::vector<Tile> tiles;
    for (const Span& r : tileSpans(height, tileHeight, overlap, align))
        for (const Span& c : tileSpans(width, tileWidth, overlap, align)) tiles.push_back({r.start, c.start, r.length, c.length});
    return tiles;
}

Image crop(const Image& image, const Tile& t) {
    Image out(t.width, t.height);
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < t.height; ++y)
            for (int x = 0; x < t.width; ++x) out.at(c, y, x) = image.at(c, t.y + y, t.x + x);
    return out;
}

Image upscaleTiled(const Image& image, const Upscaler& upscale, int scale, int tileHeight, int tileWidth,
                   int overlap, int align) {
    if (scale < 1) throw std::invalid_argument("scale must be positive");
    const std::vector<Span> rows = tileSpans(image.height, tileHeight, overlap, align);
    const std::vector<Span> cols = tileSpans(image.width, tileWidth, overlap, align);
    if (rows.size() == 1 && cols.size() == 1) return upscale(image);  // one tile: untiled inference
    const auto rowW = axisWeights(rows, scale);
    const auto colW = axisWeights(cols, scale);
    Image out(image.width * scale, image.height * scale);
    for (size_t i = 0; i < rows.size(); ++i) {
        for (size_t j = 0; j < cols.size(); ++j) {
            const Tile t{rows[i].start, cols[j].start, rows[i].length, cols[j].length};
            const Image up = upscale(crop(image, t));
            if (up.width != t.width * scale || up.height != t.height * scale)
                throw std::runtime_error("upscaler returned " + std::to_string(up.width) + "x" + std::to_string(up.height) +
                                         ", expected " + std::to_string(t.width * scale) + "x" + std::to_string(t.height * scale));
            for (int c = 0; c < 3; ++c)
                for (int y = 0; y < up.height; ++y)
                    for (int x = 0; x < up.width; ++x)
                        out.at(c, t.y * scale + y, t.x * scale + x) +=
                            static_cast<float>(rowW[i][y] * colW[j][x]) * up.at(c, y, x);
        }
    }
    return out;
}

}  // namespace esc
