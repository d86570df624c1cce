"""The unit catalog as shipped: every quantity the ledger can hold.

Units stay modality-native (DESIGN.md "Money and units"); each is disjoint from
the others, so summing a call's lines never counts a token twice. The catalog
is seeded into `pricing.Unit` by a migration; a new modality is a new row.
"""

from dataclasses import dataclass

from .choices import Modality

__all__ = ["CatalogUnit", "UNIT_CATALOG"]


@dataclass(frozen=True)
class CatalogUnit:
    code: str
    name: str
    modality: str
    description: str


UNIT_CATALOG: tuple[CatalogUnit, ...] = (
    CatalogUnit("input_token", "Input token", Modality.TEXT, "Uncached text input, excluding cache reads and writes"),
    CatalogUnit("cached_input_token", "Cached input token", Modality.TEXT, "Text input served from the prompt cache"),
    CatalogUnit("cache_write_token", "Cache write token (5 min)", Modality.TEXT, "Input written to the 5-minute cache"),
    CatalogUnit("cache_write_1h_token", "Cache write token (1 h)", Modality.TEXT, "Input written to the 1-hour cache"),
    CatalogUnit("output_token", "Output token", Modality.TEXT, "Text output, excluding reasoning"),
    CatalogUnit("reasoning_token", "Reasoning token", Modality.TEXT, "Reasoning output, billed as output"),
    CatalogUnit("audio_input_token", "Audio input token", Modality.AUDIO, "Uncached audio input tokens"),
    CatalogUnit("cached_audio_input_token", "Cached audio input token", Modality.AUDIO, "Audio input from cache"),
    CatalogUnit("audio_output_token", "Audio output token", Modality.AUDIO, "Audio output tokens"),
    CatalogUnit("audio_input_second", "Audio input second", Modality.AUDIO, "Seconds of audio input"),
    CatalogUnit("audio_output_second", "Audio output second", Modality.AUDIO, "Seconds of audio output"),
    CatalogUnit("transcription_second", "Transcription second", Modality.AUDIO, "Seconds of audio transcribed"),
    CatalogUnit("character", "Speech character", Modality.AUDIO, "Characters turned into speech"),
    CatalogUnit("image_input_token", "Image input token", Modality.IMAGE, "Uncached image input tokens"),
    CatalogUnit("cached_image_input_token", "Cached image input token", Modality.IMAGE, "Image input from cache"),
    CatalogUnit("image_output_token", "Image output token", Modality.IMAGE, "Image output tokens"),
    CatalogUnit("image_tile", "Image tile", Modality.IMAGE, "512-px tiles of an image input"),
    CatalogUnit("image", "Generated image", Modality.IMAGE, "An image generated, tiered by quality and size"),
    CatalogUnit("realtime_second", "Realtime second", Modality.REALTIME, "Seconds of a realtime voice session"),
    CatalogUnit("embedding_token", "Embedding token", Modality.EMBEDDING, "Tokens embedded"),
    CatalogUnit("vector_query", "Vector query", Modality.VECTOR_STORE, "Queries against a vector store"),
    CatalogUnit("vector_gb_day", "Vector store GB-day", Modality.VECTOR_STORE, "Vector storage, GB held for a day"),
    CatalogUnit("vector_gb_month", "Vector store GB-month", Modality.VECTOR_STORE, "Vector storage, GB held a month"),
    CatalogUnit("tool_call", "Tool call", Modality.TOOL, "A billed tool call (web search, file search)"),
    CatalogUnit("container_session", "Container session", Modality.TOOL, "A code interpreter container session"),
    CatalogUnit("request", "Request", Modality.TOOL, "A billed request"),
    CatalogUnit("gpu_second", "GPU second", Modality.COMPUTE, "Seconds of GPU time"),
    CatalogUnit("gb_month", "GB-month", Modality.STORAGE, "Storage, GB held a month"),
)
