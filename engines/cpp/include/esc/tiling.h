// Tile grid and blend weights: the rules of esc/tiling.py, repeated in C++ (a test compares them).
#pragma once

#include <functional>
#include <vector>

#include "esc/image.h"

namespace esc {

struct Span {
    int start;
    int length;
};

struct Tile {
    int y, x, height, width;
};

// (start, length) of each tile along an axis; throws std::invalid_argument on bad arguments.
std::vector<Span> tileSpans(int size, int tile, int overlap, int align = 1);

// Per tile, the normalised linear-ramp weight of each of its length*scale output pixels.
std::vector<std::vector<double>> axisWeights(const std::vector<Span>& spans, int scale);

// Every tile as (y, x, height, width), row by row.
std::vector<Tile> tileGrid(int height, int width, int tileHeight, int tileWidth, int overlap, int align = 1);

// Upscale `image` by `scale` calling `upscale` on each tile and blending with axisWeights.
using Upscaler = std::function<Image(const Image&)>;
Image upscaleTiled(const Image& image, const Upscaler& upscale, int scale, int tileHeight, int tileWidth,
                   int overlap, int align = 1);

Image crop(const Image& image, const Tile& tile);

}  // namespace esc
