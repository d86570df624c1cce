"""Image inputs billed by tiles (DESIGN.md "Money and units").

Low detail is a flat base. High detail: fit within 2048x2048, scale the
shortest side to 768, count 512-px tiles; tokens = base + per-tile x tiles.
"""

import math

__all__ = ["ImageTokenRate", "image_tile_count", "image_input_tokens", "image_token_rate"]


class ImageTokenRate(tuple):
    """(base tokens, tokens per tile) for a model family."""

    __slots__ = ()

    def __new__(cls, base: int, per_tile: int):
        return super().__new__(cls, (base, per_tile))


# Published per model family; the first prefix that matches wins.
_RATES: tuple[tuple[str, ImageTokenRate], ...] = (
    ("gpt-4o-mini", ImageTokenRate(2833, 5667)),
    ("o1", ImageTokenRate(75, 150)),
    ("o3", ImageTokenRate(75, 150)),
    ("computer-use", ImageTokenRate(65, 129)),
)
_DEFAULT_RATE = ImageTokenRate(85, 170)  # GPT-4o, GPT-4.1, GPT-4.5


def image_token_rate(model: str) -> ImageTokenRate:
    for prefix, rate in _RATES:
        if model.startswith(prefix):
            return rate
    return _DEFAULT_RATE


def image_tile_count(width: int, height: int, detail: str) -> int:
    """512-px tiles an image of this size is billed as; 0 in low detail."""
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    if detail == "low":
        return 0
    if detail not in {"high", "auto"}:
        raise ValueError(f"detail must be low, high or auto, not {detail!r}")
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(w / 512) * math.ceil(h / 512)


def image_input_tokens(width: int, height: int, detail: str, model: str) -> int:
    base, per_tile = image_token_rate(model)
    return base + per_tile * image_tile_count(width, height, detail)
